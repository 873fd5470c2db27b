"""A detector at its operating point: TP/FP/FN, precision, recall, F1, false positives and misses per image.

A deployed detector keeps the detections scoring at least ``score_threshold``
and lives by how many of them are right. Matching, per image (:func:`match_image`):

- kept detections are taken by descending score (equal scores: the detector's
  order, a stable sort, as COCO does);
- each one matches the unmatched non-crowd ground truth object of its own
  category with the highest IoU ``>= iou_threshold`` (equal IoU: the last
  object in ground-truth order, as COCO's loop picks) and is a true positive;
- failing that, a detection whose IoU with a crowd region of its category is
  ``>= iou_threshold`` is absorbed by it: neither TP nor FP (COCO's rule; a crowd
  region absorbs any number of detections, and its IoU is the intersection over
  the *detection's* area, as in COCO);
- any other kept detection is a false positive; a non-crowd object left
  unmatched is a false negative (a missed object). Crowd regions are never missed.

IoU is computed as COCO's ``bbIou`` does, on the ``[x, y, w, h]`` boxes that
``detections.json`` holds (:attr:`ImageDetections.boxes_xywh`). An
``iou_threshold`` of 1 is taken as ``1 - 1e-10`` (COCO's cap, so that a box
equal to the object up to rounding matches).

The counts are kept per image and category (:class:`OperatingPointCounts`,
arrays ``[image, category]`` that add up), and every rate is derived from them
at the end (:func:`summarize`), for any multiset of image rows: an image-level
subgroup, or a cluster-bootstrap resample of images. Object-level subgroups
(size class, a named object attribute) tally each object's match, computed once
on the full image, by the object's subgroup (:func:`object_group_counts`); only
recall is defined for them. AP per object subgroup is COCO's size ranges
(:mod:`audit.evaluation.detection.coco_metrics`); AP per named attribute is not
built yet.

Performance: one ``(M, N)`` IoU matrix per image in numpy and a Python loop
over the kept detections; counts are small integer arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from audit.contract.errors import AuditError
from audit.evaluation.detection.coco_metrics import ImageDetections, ImageTruth

__all__ = [
    "ImageMatch",
    "ObjectGroupCounts",
    "OperatingPointCounts",
    "OperatingPointMetrics",
    "coco_box_iou",
    "count_matches",
    "match_image",
    "match_images",
    "object_group_counts",
    "size_class",
    "summarize",
    "summarize_per_class",
]

#: COCO's size limits (areas in pixels²): small below 32², medium below 96², large from 96².
SMALL_AREA, LARGE_AREA = 32.0**2, 96.0**2


def coco_box_iou(dets: np.ndarray, gts: np.ndarray, iscrowd: np.ndarray) -> np.ndarray:
    """IoU of ``[x, y, w, h]`` boxes exactly as COCO's ``maskApi.bbIou`` computes it.

    For a crowd ground truth box the denominator is the detection's area (not the union).

    Shape:
        dets ``(M, 4)``, gts ``(N, 4)``, iscrowd ``(N,)`` -> ``(M, N)``.
    """
    d, g = dets[:, None, :], gts[None, :, :]
    w = np.minimum(d[..., 2] + d[..., 0], g[..., 2] + g[..., 0]) - np.maximum(d[..., 0], g[..., 0])
    h = np.minimum(d[..., 3] + d[..., 1], g[..., 3] + g[..., 1]) - np.maximum(d[..., 1], g[..., 1])
    inter = w * h
    da, ga = d[..., 2] * d[..., 3], g[..., 2] * g[..., 3]
    union = np.where(iscrowd[None, :], da, da + ga - inter)
    overlap = (w > 0) & (h > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(overlap, inter / np.where(overlap, union, 1.0), 0.0)


@dataclass(frozen=True)
class ImageMatch:
    """The matching of one image at the operating point.

    Attributes:
        image_id: the image.
        detection_outcome: per detection (the input order): 1 true positive, 0 false
            positive, -1 absorbed by a crowd region, -2 below the score threshold.
        matched_detection: per ground truth object, the index of the detection it
            matched, or -1 (missed, or a crowd region).
        truth_category_ids, truth_iscrowd, detection_category_ids: copied from the inputs.
    """

    image_id: int
    detection_outcome: np.ndarray
    matched_detection: np.ndarray
    truth_category_ids: np.ndarray
    truth_iscrowd: np.ndarray
    detection_category_ids: np.ndarray

    @property
    def missed(self) -> np.ndarray:
        """Per ground truth object: a non-crowd object no detection matched. Shape ``(N,)``."""
        return (self.matched_detection < 0) & ~self.truth_iscrowd


def _check_thresholds(score_threshold: float, iou_threshold: float) -> None:
    if not np.isfinite(score_threshold):
        raise AuditError(f"detection.score_threshold: expected a finite number, got {score_threshold}")
    if not 0.0 < iou_threshold <= 1.0:
        raise AuditError(f"detection.iou_threshold: expected a number in (0, 1], got {iou_threshold}")


def match_image(
    truth: ImageTruth, detections: ImageDetections, *, score_threshold: float, iou_threshold: float
) -> ImageMatch:
    """Greedy matching of one image's kept detections (score ``>= score_threshold``) to its objects.

    The rules are the module's. Raises :class:`AuditError` for another image's
    detections or a threshold out of range.
    """
    _check_thresholds(score_threshold, iou_threshold)
    if int(truth.image_id) != int(detections.image_id):
        raise AuditError(f"operating point: detections of image {detections.image_id} given for {truth.image_id}")
    n_det, n_gt = len(detections.scores), len(truth.category_ids)
    outcome = np.full(n_det, -2, dtype=np.int8)
    matched = np.full(n_gt, -1, dtype=np.int64)
    kept = np.flatnonzero(detections.scores >= score_threshold)
    if kept.size:
        order = kept[np.argsort(-detections.scores[kept], kind="stable")]
        iou = coco_box_iou(detections.boxes_xywh, truth.boxes, truth.iscrowd)
        crowd = truth.iscrowd
        for d in order:
            same = truth.category_ids == detections.category_ids[d]
            close = same & (iou[d] >= min(iou_threshold, 1 - 1e-10))  # COCO's cap: 1.0 accepts IoU 1 - 1e-10
            free = close & ~crowd & (matched < 0)
            if free.any():
                candidates = np.where(free, iou[d], -1.0)[::-1]
                g = n_gt - 1 - int(np.argmax(candidates))  # equal IoU: the last object, as COCO's loop
                matched[g] = d
                outcome[d] = 1
            else:
                outcome[d] = -1 if (close & crowd).any() else 0
    return ImageMatch(
        image_id=int(truth.image_id),
        detection_outcome=outcome,
        matched_detection=matched,
        truth_category_ids=truth.category_ids,
        truth_iscrowd=truth.iscrowd,
        detection_category_ids=detections.category_ids,
    )


def match_images(
    truths: Sequence[ImageTruth],
    detections: Iterable[ImageDetections],
    *,
    score_threshold: float,
    iou_threshold: float,
) -> list[ImageMatch]:
    """:func:`match_image` for every image of ``truths`` (in that order); an image without detections has none.

    Raises:
        AuditError: detections of an image not in ``truths``, or an image given twice.
    """
    by_id: dict[int, ImageDetections] = {}
    index = {int(t.image_id) for t in truths}
    for dets in detections:
        image_id = int(dets.image_id)
        if image_id not in index:
            raise AuditError(f"operating point: detections of image {image_id}, which has no ground truth")
        if image_id in by_id:
            raise AuditError(f"operating point: detections of image {image_id} given twice")
        by_id[image_id] = dets
    empty = np.zeros((0, 4))
    return [
        match_image(
            t,
            by_id.get(int(t.image_id)) or ImageDetections(t.image_id, empty, empty[:, 0], empty[:, 0]),
            score_threshold=score_threshold,
            iou_threshold=iou_threshold,
        )
        for t in truths
    ]


@dataclass(frozen=True)
class OperatingPointCounts:
    """TP, FP and FN per image and category: the sufficient statistics of the operating point.

    Attributes:
        image_ids: the rows.
        category_ids: the columns.
        tp, fp, fn: counts. A detection absorbed by a crowd region or below the score
            threshold is in none of them.

    Shape:
        tp, fp, fn ``(n_images, n_categories)``, int64.
    """

    image_ids: tuple[int, ...]
    category_ids: tuple[int, ...]
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray


def count_matches(matches: Sequence[ImageMatch], category_ids: Iterable[int]) -> OperatingPointCounts:
    """Tally matches into :class:`OperatingPointCounts` (columns in the order of ``category_ids``).

    Raises:
        AuditError: a detection or object of a category not in ``category_ids``.
    """
    cats = tuple(int(c) for c in category_ids)
    column = {c: k for k, c in enumerate(cats)}
    tp, fp, fn = (np.zeros((len(matches), len(cats)), dtype=np.int64) for _ in range(3))
    for row, m in enumerate(matches):
        for name, labels in (("detection", m.detection_category_ids), ("object", m.truth_category_ids)):
            unknown = set(labels.tolist()) - column.keys()
            if unknown:
                raise AuditError(f"operating point, image {m.image_id}: {name} of unknown category {min(unknown)}")
        det_cols = np.array([column[c] for c in m.detection_category_ids.tolist()], dtype=np.int64)
        gt_cols = np.array([column[c] for c in m.truth_category_ids.tolist()], dtype=np.int64)
        np.add.at(tp[row], det_cols[m.detection_outcome == 1], 1)
        np.add.at(fp[row], det_cols[m.detection_outcome == 0], 1)
        np.add.at(fn[row], gt_cols[m.missed], 1)
    return OperatingPointCounts(tuple(m.image_id for m in matches), cats, tp, fp, fn)


@dataclass(frozen=True)
class OperatingPointMetrics:
    """The operating point's rates from summed counts; ``None`` where a rate has no denominator.

    Attributes:
        tp, fp, fn: summed counts.
        n_images: the images they come from (with repetition, for a resample).
        precision: ``tp / (tp + fp)``; ``None`` with no kept detection.
        recall: ``tp / (tp + fn)``; ``None`` with no (non-crowd) object.
        f1: ``2 tp / (2 tp + fp + fn)`` (the harmonic mean of the two where both exist);
            ``None`` with neither detections nor objects.
        fp_per_image: ``fp / n_images``; ``None`` with no image.
        missed_per_image: ``fn / n_images``; ``None`` with no image.
    """

    tp: int
    fp: int
    fn: int
    n_images: int
    precision: float | None
    recall: float | None
    f1: float | None
    fp_per_image: float | None
    missed_per_image: float | None

    @classmethod
    def from_counts(cls, tp: int, fp: int, fn: int, n_images: int) -> OperatingPointMetrics:
        """The rates of summed counts."""

        def ratio(num: int, den: int) -> float | None:
            return num / den if den > 0 else None

        return cls(
            tp=tp,
            fp=fp,
            fn=fn,
            n_images=n_images,
            precision=ratio(tp, tp + fp),
            recall=ratio(tp, tp + fn),
            f1=ratio(2 * tp, 2 * tp + fp + fn),
            fp_per_image=ratio(fp, n_images),
            missed_per_image=ratio(fn, n_images),
        )


def _rows(n: int, image_index: Sequence[int] | np.ndarray | None) -> np.ndarray:
    return np.arange(n) if image_index is None else np.asarray(image_index, dtype=np.int64).reshape(-1)


def summarize(
    counts: OperatingPointCounts, *, image_index: Sequence[int] | np.ndarray | None = None
) -> OperatingPointMetrics:
    """The operating point over all categories, for the image rows ``image_index`` (default: all).

    ``image_index`` holds row positions into ``counts`` and may repeat a row (a bootstrap
    resample counts that image's objects and detections each time it is drawn).
    """
    rows = _rows(len(counts.image_ids), image_index)
    return OperatingPointMetrics.from_counts(
        int(counts.tp[rows].sum()), int(counts.fp[rows].sum()), int(counts.fn[rows].sum()), len(rows)
    )


def summarize_per_class(
    counts: OperatingPointCounts, *, image_index: Sequence[int] | np.ndarray | None = None
) -> dict[int, OperatingPointMetrics]:
    """:func:`summarize` per category (false positives and misses per image of that category)."""
    rows = _rows(len(counts.image_ids), image_index)
    tp, fp, fn = (a[rows].sum(axis=0) for a in (counts.tp, counts.fp, counts.fn))
    return {
        cat: OperatingPointMetrics.from_counts(int(tp[k]), int(fp[k]), int(fn[k]), len(rows))
        for k, cat in enumerate(counts.category_ids)
    }


def size_class(area: np.ndarray) -> np.ndarray:
    """COCO's size class per object area: ``small`` below 32², ``medium`` below 96², else ``large``.

    Each object gets one class (COCO's AP ranges are closed, so an area of exactly 32² or
    96² is in two ranges there; here it is ``medium`` or ``large``).
    """
    area = np.asarray(area, dtype=np.float64)
    return np.where(area < SMALL_AREA, "small", np.where(area < LARGE_AREA, "medium", "large")).astype(object)


@dataclass(frozen=True)
class ObjectGroupCounts:
    """Matched and total non-crowd objects per image and object subgroup.

    Shape:
        matched, total ``(n_images, n_groups)``, int64.
    """

    image_ids: tuple[int, ...]
    groups: tuple[str, ...]
    matched: np.ndarray
    total: np.ndarray

    def recall(self, *, image_index: Sequence[int] | np.ndarray | None = None) -> dict[str, float | None]:
        """Recall per subgroup over the image rows ``image_index`` (default all; repeats allowed).

        A subgroup without objects is kept, with recall ``None``.
        """
        rows = _rows(len(self.image_ids), image_index)
        matched, total = self.matched[rows].sum(axis=0), self.total[rows].sum(axis=0)
        return {g: (int(matched[k]) / int(total[k]) if total[k] else None) for k, g in enumerate(self.groups)}


def object_group_counts(
    matches: Sequence[ImageMatch],
    object_groups: Mapping[int, Sequence[str]],
    *,
    groups: Sequence[str] | None = None,
) -> ObjectGroupCounts:
    """Tally each non-crowd object's match (made on the full image) by the object's subgroup.

    Args:
        matches: :func:`match_images`' result.
        object_groups: image id -> one subgroup name per ground truth object (the order
            of :attr:`ImageTruth.boxes`; crowd regions' names are ignored). An image
            left out must have no objects.
        groups: the subgroups, in order (kept when empty); default: the names seen, sorted.

    Raises:
        AuditError: a names list of the wrong length, a missing image with objects, or a
            name not in ``groups``.
    """
    for m in matches:
        labels = object_groups.get(m.image_id, ())
        if len(labels) != len(m.truth_category_ids):
            raise AuditError(
                f"object subgroups of image {m.image_id}: {len(labels)} names for {len(m.truth_category_ids)} objects"
            )
    seen = sorted({str(name) for m in matches for name in object_groups.get(m.image_id, ())})
    names = tuple(seen if groups is None else (str(g) for g in groups))
    column = {g: k for k, g in enumerate(names)}
    matched = np.zeros((len(matches), len(names)), dtype=np.int64)
    total = np.zeros_like(matched)
    for row, m in enumerate(matches):
        hit = m.matched_detection >= 0
        for k, name in enumerate(object_groups.get(m.image_id, ())):
            if m.truth_iscrowd[k]:
                continue
            if str(name) not in column:
                raise AuditError(f"object subgroups of image {m.image_id}, object {k}: unknown subgroup {name!r}")
            total[row, column[str(name)]] += 1
            matched[row, column[str(name)]] += int(hit[k])
    return ObjectGroupCounts(tuple(m.image_id for m in matches), names, matched, total)
