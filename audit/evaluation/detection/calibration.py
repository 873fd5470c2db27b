"""Detection calibration: D-ECE (Küppers et al. 2020) at a stated IoU threshold, with its reliability diagram.

Definition (Küppers, Kronenberger, Shantia and Haselhoff, "Multivariate Confidence
Calibration for Object Detection", CVPR Workshops 2020; confidence-only form):

- every detection scoring ``>= score_floor`` is a sample; it is *matched* (1) when the
  operating point's greedy matching (:func:`~audit.evaluation.detection.operating_point.match_image`
  at ``score_threshold=score_floor``) makes it a true positive at ``iou_threshold`` (an
  object of its category, IoU ``>= iou_threshold``), else *unmatched* (0). A detection
  absorbed by a crowd region is ignored, as COCO ignores it: neither sample nor error
  (its count per image is kept in :attr:`CalibrationCounts.ignored`);
- the confidences are clipped to ``[eps, 1 - eps]`` (``eps`` the float64 machine epsilon,
  as netcal does) and put in ``bins`` equal-width bins of ``[0, 1]``, edges
  ``numpy.linspace(0, 1, bins + 1)``: bin ``b`` is ``[e_b, e_{b+1})``, the last one closed,
  so a confidence of 0 is in the first bin and 1 in the last (``numpy.histogramdd``'s rule);
- ``D-ECE = sum_b (N_b / N) |precision(b) - confidence(b)|`` with ``N_b`` the samples in
  bin ``b``, ``N`` all samples, ``precision(b)`` the fraction of them matched and
  ``confidence(b)`` their mean confidence; empty bins add nothing. Equivalently
  ``sum_b |matched_b - confidence_sum_b| / N``, which is how it is computed from the sums.

Reference: this equals ``netcal.metrics.ECE(bins=bins, detection=True).measure(confidence,
matched)`` (netcal 1.4, default ``bins=10``, ``sample_threshold=1``, equal intervals) to
1e-9, a test. netcal given box features as further columns of ``X`` bins them jointly
with the confidence (the multivariate D-ECE of the paper); that position-dependent form
is not built here: only the confidence enters.

Sufficient statistics: per image and bin, the count, the sum of confidences and the
number matched (:class:`CalibrationCounts`, arrays ``[image, bin]`` that add up). D-ECE
and the reliability diagram are derived from them (:func:`summarize`) for any multiset of
image rows — an image-level subgroup or a cluster-bootstrap resample of images — without
matching again.

Performance: matching is the operating point's (one IoU matrix per image); binning and
tallying are one ``numpy.bincount`` each over all detections.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from audit.contract.errors import AuditError
from audit.evaluation.detection.coco_metrics import ImageDetections, ImageTruth
from audit.evaluation.detection.operating_point import match_images

__all__ = [
    "DEFAULT_BINS",
    "CalibrationCounts",
    "CalibrationSamples",
    "ReliabilityDiagram",
    "assign_bins",
    "calibration_counts",
    "calibration_samples",
    "detection_ece",
    "summarize",
]

#: netcal's default number of bins for ``ECE`` (also in detection mode).
DEFAULT_BINS = 10

_EPS = float(np.finfo(np.float64).eps)


def _check_bins(bins: int) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise AuditError(f"detection calibration: bins must be a positive integer, got {bins!r}")
    return int(bins)


def _check_confidence(confidence: np.ndarray, what: str) -> np.ndarray:
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    bad = ~np.isfinite(conf) | (conf < 0.0) | (conf > 1.0)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise AuditError(f"detection calibration: {what} {k} has confidence {conf[k]}, expected a number in [0, 1]")
    return conf


def assign_bins(confidence: np.ndarray, *, bins: int = DEFAULT_BINS) -> np.ndarray:
    """The bin of each confidence: equal-width bins of ``[0, 1]``, netcal's (and ``histogramdd``'s) edges.

    Confidences are clipped to ``[eps, 1 - eps]`` first, as netcal does.

    Shape:
        confidence ``(N,)`` -> ``(N,)`` int64 in ``[0, bins)``.

    Raises:
        AuditError: a confidence outside ``[0, 1]`` or not finite; ``bins`` not a positive integer.
    """
    bins = _check_bins(bins)
    conf = np.clip(_check_confidence(confidence, "detection"), _EPS, 1.0 - _EPS)
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.minimum(np.searchsorted(edges, conf, side="right") - 1, bins - 1).astype(np.int64)


def detection_ece(confidence: np.ndarray, matched: np.ndarray, *, bins: int = DEFAULT_BINS) -> float | None:
    """Confidence-only D-ECE of detections given as arrays (the module's definition); ``None`` with none.

    Args:
        confidence: each detection's confidence, in ``[0, 1]``.
        matched: 1 (or ``True``) where the detection matched an object, else 0.
        bins: the number of equal-width bins.

    Shape:
        confidence, matched ``(N,)``.

    Raises:
        AuditError: unequal lengths, a confidence outside ``[0, 1]``, a ``matched`` value not 0 or 1.

    Example:
        >>> detection_ece(np.array([0.9, 0.9, 0.2]), np.array([1, 0, 0]), bins=10)
        0.3333333333333333
    """
    conf, hit = _check_arrays(confidence, matched)
    counts = _tally(np.zeros(len(conf), dtype=np.int64), 1, conf, hit, _check_bins(bins))
    return _ece(counts[0].sum(axis=0), counts[1].sum(axis=0), counts[2].sum(axis=0))


def _check_arrays(confidence: np.ndarray, matched: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    conf = _check_confidence(confidence, "detection")
    hit = np.asarray(matched).reshape(-1)
    if hit.shape != conf.shape:
        raise AuditError(f"detection calibration: {conf.size} confidences but {hit.size} matched flags")
    if hit.size and not np.isin(hit, (0, 1)).all():
        raise AuditError("detection calibration: matched flags must be 0 or 1")
    return conf, hit.astype(np.int64)


def _tally(
    rows: np.ndarray, n_rows: int, conf: np.ndarray, hit: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, confidence sum and matched count per ``[row, bin]``, by one ``bincount`` each."""
    cell = rows * bins + assign_bins(conf, bins=bins)
    size = n_rows * bins
    clipped = np.clip(conf, _EPS, 1.0 - _EPS)
    count = np.bincount(cell, minlength=size).reshape(n_rows, bins).astype(np.int64)
    conf_sum = np.bincount(cell, weights=clipped, minlength=size).reshape(n_rows, bins)
    matched = np.bincount(cell, weights=hit, minlength=size).reshape(n_rows, bins).astype(np.int64)
    return count, conf_sum, matched


def _ece(count: np.ndarray, conf_sum: np.ndarray, matched: np.ndarray) -> float | None:
    total = int(count.sum())
    if total == 0:
        return None
    return float(np.abs(matched - conf_sum).sum() / total)


@dataclass(frozen=True)
class CalibrationSamples:
    """The calibration samples of a set of images: each kept, not-ignored detection.

    Attributes:
        image_ids: the images, in the order of the ground truth given.
        image_row: per sample, its image's position in ``image_ids``.
        confidence: per sample, the detection's score.
        matched: per sample, 1 if it matched an object at the IoU threshold, else 0.
        ignored: per image, detections absorbed by a crowd region (not samples).
        score_floor, iou_threshold: the thresholds used.

    Shape:
        image_row, confidence, matched ``(N,)``; ignored ``(n_images,)``.
    """

    image_ids: tuple[int, ...]
    image_row: np.ndarray
    confidence: np.ndarray
    matched: np.ndarray
    ignored: np.ndarray
    score_floor: float
    iou_threshold: float


def calibration_samples(
    truths: Sequence[ImageTruth],
    detections: Iterable[ImageDetections],
    *,
    score_floor: float,
    iou_threshold: float,
) -> CalibrationSamples:
    """Match every image once and return the (confidence, matched) samples of D-ECE.

    Args:
        truths: the ground truth per image; an image without objects is valid.
        detections: the detections per image (an image left out has none).
        score_floor: detections scoring at least this are samples.
        iou_threshold: the IoU a match needs, in ``(0, 1]``.

    Raises:
        AuditError: as :func:`~audit.evaluation.detection.operating_point.match_images`; a
            sample's score outside ``[0, 1]``.
    """
    dets = list(detections)
    matches = match_images(truths, dets, score_threshold=score_floor, iou_threshold=iou_threshold)
    scores = {int(d.image_id): np.asarray(d.scores, dtype=np.float64) for d in dets}
    rows, conf, hit, ignored = [], [], [], np.zeros(len(matches), dtype=np.int64)
    for row, m in enumerate(matches):
        outcome = m.detection_outcome
        keep = outcome >= 0
        ignored[row] = int((outcome == -1).sum())
        if keep.any():
            conf.append(scores[m.image_id][keep])
            hit.append((outcome[keep] == 1).astype(np.int64))
            rows.append(np.full(int(keep.sum()), row, dtype=np.int64))
    confidence = np.concatenate(conf) if conf else np.zeros(0)
    if confidence.size:
        bad = ~np.isfinite(confidence) | (confidence < 0.0) | (confidence > 1.0)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            image = matches[int(np.concatenate(rows)[k])].image_id
            raise AuditError(
                f"detection calibration, image {image}: score {confidence[k]} outside [0, 1]; D-ECE needs confidences"
            )
    return CalibrationSamples(
        image_ids=tuple(m.image_id for m in matches),
        image_row=np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64),
        confidence=confidence,
        matched=np.concatenate(hit) if hit else np.zeros(0, dtype=np.int64),
        ignored=ignored,
        score_floor=float(score_floor),
        iou_threshold=float(iou_threshold),
    )


@dataclass(frozen=True)
class CalibrationCounts:
    """Per image and bin: samples, confidence sum, matched samples — D-ECE's sufficient statistics.

    Attributes:
        image_ids: the rows.
        bin_edges: the ``bins + 1`` edges, ``linspace(0, 1, bins + 1)``.
        count: samples per image and bin.
        confidence_sum: the sum of their (clipped) confidences.
        matched: how many of them matched.
        ignored: detections absorbed by crowd regions, per image.

    Shape:
        count, matched ``(n_images, bins)`` int64; confidence_sum ``(n_images, bins)``
        float64; ignored ``(n_images,)``; bin_edges ``(bins + 1,)``.
    """

    image_ids: tuple[int, ...]
    bin_edges: np.ndarray
    count: np.ndarray
    confidence_sum: np.ndarray
    matched: np.ndarray
    ignored: np.ndarray


def calibration_counts(samples: CalibrationSamples, *, bins: int = DEFAULT_BINS) -> CalibrationCounts:
    """Tally :class:`CalibrationSamples` into per-image, per-bin sums (:class:`CalibrationCounts`)."""
    bins = _check_bins(bins)
    conf, hit = _check_arrays(samples.confidence, samples.matched)
    count, conf_sum, matched = _tally(samples.image_row, len(samples.image_ids), conf, hit, bins)
    return CalibrationCounts(
        image_ids=samples.image_ids,
        bin_edges=np.linspace(0.0, 1.0, bins + 1),
        count=count,
        confidence_sum=conf_sum,
        matched=matched,
        ignored=samples.ignored.copy(),
    )


@dataclass(frozen=True)
class ReliabilityDiagram:
    """D-ECE and the reliability diagram's data over a multiset of images.

    Attributes:
        d_ece: the detection expected calibration error; ``None`` with no sample.
        n_detections: the samples (with repetition, for a resample).
        n_images: the images (with repetition).
        bin_edges: the ``bins + 1`` edges.
        count: samples per bin (empty bins kept, count 0).
        mean_confidence: mean confidence per bin; NaN for an empty bin.
        precision: fraction matched per bin; NaN for an empty bin.

    Shape:
        count, mean_confidence, precision ``(bins,)``.
    """

    d_ece: float | None
    n_detections: int
    n_images: int
    bin_edges: np.ndarray
    count: np.ndarray
    mean_confidence: np.ndarray
    precision: np.ndarray


def summarize(
    counts: CalibrationCounts, *, image_index: Sequence[int] | np.ndarray | None = None
) -> ReliabilityDiagram:
    """D-ECE and the reliability diagram for the image rows ``image_index`` (default: all).

    ``image_index`` holds row positions into ``counts`` and may repeat a row (a cluster
    bootstrap draws an image's detections each time it draws the image).
    """
    n = len(counts.image_ids)
    rows = np.arange(n) if image_index is None else np.asarray(image_index, dtype=np.int64).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise AuditError(f"detection calibration: image rows must be in [0, {n}), got {rows.min()}..{rows.max()}")
    count = counts.count[rows].sum(axis=0)
    conf_sum = counts.confidence_sum[rows].sum(axis=0)
    matched = counts.matched[rows].sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_conf = np.where(count > 0, conf_sum / count, np.nan)
        precision = np.where(count > 0, matched / count, np.nan)
    return ReliabilityDiagram(
        d_ece=_ece(count, conf_sum, matched),
        n_detections=int(count.sum()),
        n_images=len(rows),
        bin_edges=counts.bin_edges.copy(),
        count=count,
        mean_confidence=mean_conf,
        precision=precision,
    )
