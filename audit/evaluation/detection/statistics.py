"""Statistics of detection results: cluster-bootstrap intervals, recall gap tests, mPC and rPC.

Objects in one image are not independent (one image is dark, crowded or out of focus for all
its objects), so every interval here resamples *images*, never objects or detections:

- **Weights.** Replicate ``b`` gives image ``i`` the Poisson(1) weight
  :func:`audit.evaluation.bootstrap.poisson_weights` draws for ``(seed, image key, b)`` — the
  classifier's counter-based Poisson bootstrap with images as the sampling units. A weight is a
  pure function of the image's key, so an image-level subgroup's resample is the restriction of
  the whole set's resample, and any split of the images (batches, shards, ranks) gives the same
  replicate sums. Image keys must be unique (e.g. :func:`audit.contract.seeds.sample_key` of the
  image's sample id). Poisson, not multinomial: the number of images drawn varies between
  replicates (Poisson(N) in all), which for these ratio statistics is asymptotically the
  multinomial bootstrap (Hanley and MacGibbon 2006; Chamandy et al. 2012), and it is what lets a
  weight depend on its image alone — a multinomial draw of N images needs all N at once.
- **Replicates.** A metric's replicate is the metric of the weighted sums of its per-image
  sufficient statistics (:class:`~audit.evaluation.detection.operating_point.OperatingPointCounts`,
  :class:`~audit.evaluation.detection.operating_point.ObjectGroupCounts`,
  :class:`~audit.evaluation.detection.calibration.CalibrationCounts`): drawing an image ``w``
  times counts its objects and detections ``w`` times. A replicate without a denominator (no
  object drawn, say) is dropped.
- **Intervals** are percentile intervals (numpy's linear quantiles) of the replicates; ``None``
  where the estimate itself has no denominator. Their coverage is measured by simulation
  (``benchmarks/bench_detection_coverage.py``; docs/statistics.md, "Detectors").
- **mAP** (:func:`map_bootstrap_replicates`): faster-coco-eval matches each image once
  (``COCOeval_faster(separate_eval=True)``); each replicate hands the evaluator's own C++
  accumulation (``COCOevalAccumulate``) the per-image results with image ``i`` repeated ``w``
  times, then COCO's ``summarize``. This equals a COCO evaluation of a dataset in which each
  image is copied ``w`` times under new ids (a test compares the two).

Performance: the operating point, object-subgroup and D-ECE intervals are one ``(images,
replicates)`` weight block times the per-image sums, in blocks of 4096 images (memory flat in the
number of images). The mAP intervals cost one C++ accumulation per replicate: about 12 to 17 COCO
evaluations' worth for 200 replicates of 500 images (``benchmarks/README.md``), 40 to 80 with
``sizes=True``.

Coverage: the operating point's intervals cover at least 0.93 from 200 images in the simulations;
the mAP percentile intervals do not (0.87 at 200 images, 0.90 at 1000: mAP is biased upwards at
finite size, and at 200 images its bootstrap spread is too small), so results carry mAP without an
interval.

Gap tests (:func:`recall_gap_tests`) compare recall at the operating point between the subgroups
of one attribute (image-level such as camera, through :func:`image_group_counts`; object-level
such as size or occlusion, :func:`~audit.evaluation.detection.operating_point.object_group_counts`).
Every pair of groups with at least ``min_group_size`` objects is tested; the variance of the
difference of the two ratio estimators is cluster-robust (a delete-one-image jackknife, so two
groups sharing an image are correlated as they should be), the p-value is a normal (Wald) test,
and Holm's step-down correction runs over all pairs of all attributes given.

Robustness (:func:`corruption_robustness`): Michaelis et al. 2019's mPC, the mean over stressors
of the mean over each stressor's severities of mAP, and rPC = mPC / mAP on clean images.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
import torch

from audit.contract.errors import AuditError
from audit.contract.gaptests import holm
from audit.evaluation.bootstrap import poisson_weights
from audit.evaluation.detection.calibration import CalibrationCounts
from audit.evaluation.detection.coco_metrics import (
    CocoEvaluator,
    LoadedDetections,
    _quiet,
)
from audit.evaluation.detection.operating_point import ObjectGroupCounts, OperatingPointCounts, summarize

__all__ = [
    "MAP_METRICS_ALL_SIZES",
    "MAP_METRICS_BY_SIZE",
    "OPERATING_POINT_METRICS",
    "AttributeRecallGap",
    "CorruptionRobustness",
    "RecallGapTest",
    "RecallGapTests",
    "calibration_interval",
    "cluster_bootstrap_intervals",
    "corruption_robustness",
    "image_bootstrap_weights",
    "image_group_counts",
    "map_bootstrap_intervals",
    "map_bootstrap_replicates",
    "object_group_recall_intervals",
    "percentile_interval",
    "recall_gap_tests",
]

Interval = tuple[float, float]

#: The operating point's rates that :func:`cluster_bootstrap_intervals` gives an interval for.
OPERATING_POINT_METRICS = ("precision", "recall", "f1", "fp_per_image", "missed_per_image")

# Images per block when drawing weights: a block's (images, replicates) weights stay small.
_IMAGE_BLOCK = 4096


def _check_keys(image_keys: np.ndarray, n_rows: int) -> np.ndarray:
    keys = np.asarray(image_keys)
    if keys.ndim != 1 or keys.shape[0] != n_rows:
        raise AuditError(f"image bootstrap: expected {n_rows} image keys (one per image row), got shape {keys.shape}")
    if keys.size and (not np.issubdtype(keys.dtype, np.integer) or keys.min() < 0 or keys.max() > 2**63 - 1):
        raise AuditError("image bootstrap: image keys must be integers in [0, 2**63) (e.g. seeds.sample_key)")
    keys = keys.astype(np.int64)
    if np.unique(keys).size != keys.size:
        raise AuditError("image bootstrap: two image rows have the same key; each image needs its own")
    return keys


def _check_rows(n_rows: int, image_index: Sequence[int] | np.ndarray | None) -> np.ndarray:
    if image_index is None:
        return np.arange(n_rows)
    rows = np.asarray(image_index, dtype=np.int64).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
        raise AuditError(f"image subset: rows must be in [0, {n_rows}), got {rows.min()}..{rows.max()}")
    if np.unique(rows).size != rows.size:
        raise AuditError("image subset: a row is given twice (a subgroup is a set of images)")
    return rows


def _check_replicates(n_bootstrap: int, level: float) -> None:
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 1:
        raise AuditError(f"image bootstrap: n_bootstrap must be a positive integer, got {n_bootstrap!r}")
    if not 0.0 < level < 1.0:
        raise AuditError(f"image bootstrap: level must be in (0, 1), got {level}")


def image_bootstrap_weights(image_keys: np.ndarray, n_bootstrap: int, *, seed: int) -> np.ndarray:
    """Poisson(1) weight of every image in every replicate, keyed by image key, replicate and seed.

    Entry ``[i, b]`` depends only on ``(seed, image_keys[i], b)``
    (:func:`audit.evaluation.bootstrap.poisson_weights`).

    Shape:
        image_keys ``(N,)`` -> ``(N, n_bootstrap)`` int64.

    Raises:
        AuditError: keys not non-negative integers or not unique; ``n_bootstrap`` < 1.
    """
    keys = _check_keys(image_keys, len(np.asarray(image_keys).reshape(-1)))
    _check_replicates(n_bootstrap, 0.95)
    return poisson_weights(torch.from_numpy(keys), int(n_bootstrap), seed=seed).numpy()


def _replicate_sums(
    keys: np.ndarray, columns: np.ndarray, n_bootstrap: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(W.T @ columns, W.sum(0))`` for the image weights ``W``, drawn in blocks of images.

    Shape:
        keys ``(N,)``, columns ``(N, k)`` -> ``(n_bootstrap, k)``, ``(n_bootstrap,)``.
    """
    sums = np.zeros((n_bootstrap, columns.shape[1]), dtype=np.float64)
    n_images = np.zeros(n_bootstrap, dtype=np.float64)
    for lo in range(0, len(keys), _IMAGE_BLOCK):
        w = poisson_weights(torch.from_numpy(keys[lo : lo + _IMAGE_BLOCK]), n_bootstrap, seed=seed).numpy()
        sums += w.T.astype(np.float64) @ columns[lo : lo + _IMAGE_BLOCK].astype(np.float64)
        n_images += w.sum(axis=0)
    return sums, n_images


def percentile_interval(replicates: np.ndarray, *, level: float = 0.95) -> Interval | None:
    """Percentile interval of the finite replicates (numpy's linear quantiles); ``None`` with none finite.

    Example:
        >>> percentile_interval(np.array([1.0, 2.0, 3.0, np.nan]), level=0.5)
        (1.5, 2.5)
    """
    values = np.asarray(replicates, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def cluster_bootstrap_intervals(
    counts: OperatingPointCounts,
    *,
    image_keys: np.ndarray,
    n_bootstrap: int,
    seed: int,
    level: float = 0.95,
    image_index: Sequence[int] | np.ndarray | None = None,
) -> dict[str, Interval | None]:
    """Cluster-bootstrap intervals of the operating point's rates over the image rows ``image_index``.

    Args:
        counts: per image and category TP / FP / FN.
        image_keys: one unique non-negative int64 key per row of ``counts`` (all rows, also
            when ``image_index`` picks a subgroup, so its resample is the whole set's restricted).
        n_bootstrap: replicates.
        seed: the audit seed.
        level: the intervals' coverage.
        image_index: the rows of an image-level subgroup (distinct); default all.

    Returns:
        ``precision``, ``recall``, ``f1``, ``fp_per_image``, ``missed_per_image`` -> ``(low, high)``,
        or ``None`` where the estimate (:func:`~audit.evaluation.detection.operating_point.summarize`)
        is ``None``.

    Raises:
        AuditError: keys of the wrong length, repeated or negative; rows out of range or repeated;
            ``n_bootstrap`` < 1; ``level`` outside (0, 1).
    """
    _check_replicates(n_bootstrap, level)
    keys = _check_keys(image_keys, len(counts.image_ids))
    rows = _check_rows(len(counts.image_ids), image_index)
    estimate = summarize(counts, image_index=rows)
    columns = np.stack([a[rows].sum(axis=1) for a in (counts.tp, counts.fp, counts.fn)], axis=1)
    sums, n = _replicate_sums(keys[rows], columns, n_bootstrap, seed)
    tp, fp, fn = sums.T
    replicates = {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "fp_per_image": _ratio(fp, n),
        "missed_per_image": _ratio(fn, n),
    }
    return {
        name: None if getattr(estimate, name) is None else percentile_interval(values, level=level)
        for name, values in replicates.items()
    }


def object_group_recall_intervals(
    groups: ObjectGroupCounts,
    *,
    image_keys: np.ndarray,
    n_bootstrap: int,
    seed: int,
    level: float = 0.95,
    image_index: Sequence[int] | np.ndarray | None = None,
) -> dict[str, Interval | None]:
    """Cluster-bootstrap intervals of recall per object subgroup (every subgroup kept; ``None`` without objects).

    Arguments and errors as :func:`cluster_bootstrap_intervals`; ``image_keys`` has one key per row
    of ``groups``.
    """
    _check_replicates(n_bootstrap, level)
    keys = _check_keys(image_keys, len(groups.image_ids))
    rows = _check_rows(len(groups.image_ids), image_index)
    columns = np.concatenate([groups.matched[rows], groups.total[rows]], axis=1)
    sums, _ = _replicate_sums(keys[rows], columns, n_bootstrap, seed)
    k = len(groups.groups)
    recall = _ratio(sums[:, :k], sums[:, k:])
    estimate = groups.recall(image_index=rows)
    return {
        g: None if estimate[g] is None else percentile_interval(recall[:, j], level=level)
        for j, g in enumerate(groups.groups)
    }


def calibration_interval(
    counts: CalibrationCounts,
    *,
    image_keys: np.ndarray,
    n_bootstrap: int,
    seed: int,
    level: float = 0.95,
    image_index: Sequence[int] | np.ndarray | None = None,
) -> Interval | None:
    """Cluster-bootstrap percentile interval of D-ECE; ``None`` with no detection in the rows.

    The plug-in D-ECE is biased upwards (noise in a bin's precision adds to ``|precision -
    confidence|``) and so are its replicates; this interval's coverage is not measured. Arguments
    and errors as :func:`cluster_bootstrap_intervals`.
    """
    _check_replicates(n_bootstrap, level)
    keys = _check_keys(image_keys, len(counts.image_ids))
    rows = _check_rows(len(counts.image_ids), image_index)
    if int(counts.count[rows].sum()) == 0:
        return None
    bins = counts.count.shape[1]
    columns = np.concatenate([counts.count[rows], counts.confidence_sum[rows], counts.matched[rows]], axis=1)
    sums, _ = _replicate_sums(keys[rows], columns, n_bootstrap, seed)
    count, conf_sum, matched = sums[:, :bins], sums[:, bins : 2 * bins], sums[:, 2 * bins :]
    ece = _ratio(np.abs(matched - conf_sum).sum(axis=1), count.sum(axis=1))
    return percentile_interval(ece, level=level)


#: The COCO metrics that need only the area range ``all``, and those by object size.
MAP_METRICS_ALL_SIZES = ("map", "ap50", "ap75", "ar1", "ar10", "ar100")
MAP_METRICS_BY_SIZE = ("ap_small", "ap_medium", "ap_large", "ar_small", "ar_medium", "ar_large")


def map_bootstrap_replicates(
    evaluator: CocoEvaluator,
    detections: Path | LoadedDetections,
    *,
    image_keys: np.ndarray,
    n_bootstrap: int,
    seed: int,
    image_ids: Sequence[int] | None = None,
    sizes: bool = False,
) -> dict[str, np.ndarray]:
    """COCO's box metrics on every cluster-bootstrap replicate of the images.

    faster-coco-eval matches each image of ``image_ids`` once; replicate ``b`` accumulates the
    per-image results with image ``i`` taken ``w[i, b]`` times (the Poisson weights of
    :func:`image_bootstrap_weights`) by faster-coco-eval's own C++ accumulation, then COCO's
    ``summarize``. That is exactly the evaluation of a dataset holding ``w[i, b]`` copies of
    each image under new ids (detections of equal score in different images are ranked in
    image order in both; a test compares the two).

    Args:
        evaluator: holds the ground truth (COCO's default parameters: maxDets 1, 10, 100).
        detections: the condition's ``detections.json`` (or it loaded).
        image_keys: one unique key per image of ``evaluator.image_ids``, in that order.
        n_bootstrap: replicates.
        seed: the audit seed.
        image_ids: an image-level subgroup (default: every image).
        sizes: also the metrics by object size (``MAP_METRICS_BY_SIZE``); accumulating the four
            area ranges instead of one costs about six times as much.

    Returns:
        metric name -> ``(n_bootstrap,)`` float64 replicates, for ``MAP_METRICS_ALL_SIZES`` (and
        ``MAP_METRICS_BY_SIZE`` with ``sizes``); NaN where COCO reports -1 (undefined) or a
        replicate drew no image.

    Raises:
        AuditError: as :meth:`CocoEvaluator.evaluate`; keys as :func:`cluster_bootstrap_intervals`.
    """
    _check_replicates(n_bootstrap, 0.95)
    keys = _check_keys(image_keys, len(evaluator.image_ids))
    key_of = dict(zip(evaluator.image_ids, keys.tolist()))
    loaded = detections if isinstance(detections, LoadedDetections) else evaluator.load(detections)
    ids = sorted(evaluator.image_ids if image_ids is None else {int(i) for i in image_ids})
    unknown = set(ids) - set(key_of)
    if unknown:
        raise AuditError(f"image subset: image id {min(unknown)} has no ground truth")
    # COCOeval_faster.summarize's order: AP (all, .50, .75), [AP by size], AR per maxDets, [AR by size]
    names = ("map", "ap50", "ap75", *MAP_METRICS_BY_SIZE[:3], "ar1", "ar10", "ar100", *MAP_METRICS_BY_SIZE[3:])
    names = names if sizes else MAP_METRICS_ALL_SIZES
    out = np.full((n_bootstrap, len(names)), np.nan)
    if ids:
        _accumulate_replicates(evaluator, loaded, ids, [key_of[i] for i in ids], seed, sizes, out)
    return {name: out[:, j] for j, name in enumerate(names)}


def _accumulate_replicates(
    evaluator: CocoEvaluator,
    loaded: LoadedDetections,
    ids: list[int],
    keys: list[int],
    seed: int,
    sizes: bool,
    out: np.ndarray,
) -> None:
    """Fill ``out[b]`` with replicate ``b``'s summary (first ``out.shape[1]`` stats of ``summarize``)."""
    from faster_coco_eval.faster_eval_api_cpp import COCOevalAccumulate

    # the evaluator's faster-coco-eval and indexed ground truth, reused rather than indexed again
    ev = evaluator._fce.COCOeval_faster(evaluator._gt, loaded.coco, "bbox", print_function=_quiet, separate_eval=True)
    ev.params.imgIds = list(ids)
    ev.evaluate()
    params = copy.copy(ev._paramsEval)  # faster-coco-eval's frozen parameters of evaluate()
    n_cats, n_areas = len(params.catIds) if params.useCats else 1, len(params.areaRng)
    per_image = np.empty(len(ev._evalImgs_cpp), dtype=object)
    per_image[:] = ev._evalImgs_cpp
    per_image = per_image.reshape(n_cats, n_areas, len(ids))  # the C++ layout: [category, area, image]
    if not sizes:  # the first area range is COCO's "all"
        per_image = per_image[:, :1]
        params.areaRng, params.areaRngLbl = params.areaRng[:1], params.areaRngLbl[:1]
    weights = image_bootstrap_weights(np.asarray(keys, dtype=np.int64), out.shape[0], seed=seed)
    rows = np.arange(len(ids))
    for b in range(out.shape[0]):
        draw = np.repeat(rows, weights[:, b])
        if draw.size == 0:
            continue
        p = copy.copy(params)
        p.imgIds = list(range(draw.size))
        ev.params = p
        ev.eval = COCOevalAccumulate(p, per_image[:, :, draw].reshape(-1).tolist())
        ev.summarize()
        stats = np.asarray(ev.stats[: out.shape[1]], dtype=np.float64)
        out[b] = np.where(stats == -1.0, np.nan, stats)


def map_bootstrap_intervals(
    evaluator: CocoEvaluator,
    detections: Path | LoadedDetections,
    *,
    image_keys: np.ndarray,
    n_bootstrap: int,
    seed: int,
    level: float = 0.95,
    image_ids: Sequence[int] | None = None,
    sizes: bool = False,
) -> dict[str, Interval | None]:
    """Percentile intervals of COCO's box metrics from :func:`map_bootstrap_replicates`.

    Returns:
        metric name -> ``(low, high)`` for the metrics of :func:`map_bootstrap_replicates`;
        ``None`` where the metric is undefined on the images themselves
        (:meth:`CocoEvaluator.evaluate` gives ``None``).
    """
    _check_replicates(n_bootstrap, level)
    loaded = detections if isinstance(detections, LoadedDetections) else evaluator.load(detections)
    replicates = map_bootstrap_replicates(
        evaluator,
        loaded,
        image_keys=image_keys,
        n_bootstrap=n_bootstrap,
        seed=seed,
        image_ids=image_ids,
        sizes=sizes,
    )
    estimate = evaluator.evaluate(loaded, image_ids=image_ids).as_dict()
    return {
        name: None if estimate[name] is None else percentile_interval(values, level=level)
        for name, values in replicates.items()
    }


def image_group_counts(
    counts: OperatingPointCounts, labels: Sequence[str], *, groups: Sequence[str] | None = None
) -> ObjectGroupCounts:
    """An image-level attribute as object subgroups: every object of an image is in its image's group.

    Matched objects are the image's true positives (a TP is a matched object of its own category),
    total objects its TP + FN, so each group's recall is the operating point's recall on its images.

    Args:
        counts: the operating point's counts.
        labels: the attribute's value per row of ``counts``.
        groups: the subgroups, in order (kept when empty); default: the values seen, sorted.

    Raises:
        AuditError: a labels list of the wrong length, or a value not in ``groups``.
    """
    names = [str(v) for v in labels]
    if len(names) != len(counts.image_ids):
        raise AuditError(f"image subgroups: {len(names)} values for {len(counts.image_ids)} images")
    order = tuple(sorted(set(names)) if groups is None else (str(g) for g in groups))
    column = {g: k for k, g in enumerate(order)}
    unknown = sorted(set(names) - column.keys())
    if unknown:
        raise AuditError(f"image subgroups: unknown subgroup {unknown[0]!r}")
    matched = np.zeros((len(names), len(order)), dtype=np.int64)
    total = np.zeros_like(matched)
    rows = np.arange(len(names))
    cols = np.array([column[v] for v in names], dtype=np.int64)
    matched[rows, cols] = counts.tp.sum(axis=1)
    total[rows, cols] = (counts.tp + counts.fn).sum(axis=1)
    return ObjectGroupCounts(counts.image_ids, order, matched, total)


@dataclass(frozen=True)
class RecallGapTest:
    """One pair of subgroups of one attribute: the recall gap and its test.

    Attributes:
        attribute: the attribute (e.g. ``camera``, ``object.size``).
        groups: the two subgroups, the higher recall first.
        recalls: their recalls.
        n_objects: their (non-crowd) objects.
        gap: ``recalls[0] - recalls[1]`` (>= 0).
        se: its cluster-robust standard error.
        p_value: the test's p-value (H0: the true gap is at most ``tolerance``).
        p_holm: Holm-adjusted over every pair of every attribute tested together.
    """

    attribute: str
    groups: tuple[str, str]
    recalls: tuple[float, float]
    n_objects: tuple[int, int]
    gap: float
    se: float
    p_value: float
    p_holm: float


@dataclass(frozen=True)
class AttributeRecallGap:
    """An attribute's recall gap: the largest minus the smallest recall of the groups taking part.

    Attributes:
        attribute: the attribute.
        groups: the subgroups taking part (at least ``min_group_size`` objects), in the attribute's order.
        recalls, n_objects: theirs.
        excluded: the subgroups with fewer objects (they take no part).
        gap: largest minus smallest recall; ``None`` with fewer than two groups taking part.
        p_holm: the smallest Holm-adjusted p-value of the attribute's pairs (a gap is shown at
            level α when it is below α); ``None`` without a pair.
    """

    attribute: str
    groups: tuple[str, ...]
    recalls: tuple[float, ...]
    n_objects: tuple[int, ...]
    excluded: tuple[str, ...]
    gap: float | None
    p_holm: float | None


@dataclass(frozen=True)
class RecallGapTests:
    """Every pair test of a run (one Holm family) and each attribute's summary."""

    tests: tuple[RecallGapTest, ...]
    attributes: tuple[AttributeRecallGap, ...]


_NORMAL = NormalDist()


def _gap_p_value(gap: float, se: float, tolerance: float) -> float:
    """P(|D| >= |gap|) for D ~ N(tolerance, se²): two-sided at tolerance 0, the folded normal above it."""
    if se <= 0.0:
        return 0.0 if abs(gap) > tolerance else 1.0
    t = abs(gap)
    return min(1.0, (1.0 - _NORMAL.cdf((t - tolerance) / se)) + _NORMAL.cdf((-t - tolerance) / se))


def _gap_se(m_a: np.ndarray, t_a: np.ndarray, m_b: np.ndarray, t_b: np.ndarray) -> float:
    """Standard error of ``M_a / T_a - M_b / T_b`` with images as clusters: delete-one-image jackknife.

    Where leaving an image out empties a group (all its objects in that image) the jackknife is
    undefined; the linearisation ``sqrt(n / (n - 1) * sum_i z_i²)`` is used instead.
    """
    n = len(m_a)
    if n < 2:
        return 0.0
    big_m_a, big_t_a, big_m_b, big_t_b = m_a.sum(), t_a.sum(), m_b.sum(), t_b.sum()
    rest_a, rest_b = big_t_a - t_a, big_t_b - t_b
    if (rest_a > 0).all() and (rest_b > 0).all():
        loo = (big_m_a - m_a) / rest_a - (big_m_b - m_b) / rest_b
        return math.sqrt((n - 1) / n * float(((loo - loo.mean()) ** 2).sum()))
    r_a, r_b = big_m_a / big_t_a, big_m_b / big_t_b
    z = (m_a - r_a * t_a) / big_t_a - (m_b - r_b * t_b) / big_t_b
    return math.sqrt(n / (n - 1) * float(z @ z))


def recall_gap_tests(
    attributes: Mapping[str, ObjectGroupCounts],
    *,
    min_group_size: int,
    tolerance: float = 0.0,
    image_index: Sequence[int] | np.ndarray | None = None,
) -> RecallGapTests:
    """Test the recall gap between every pair of subgroups of each attribute, Holm-corrected over all.

    Per pair ``(a, b)`` with recalls ``r = M / T`` (matched over total objects in the rows), the
    gap ``d = r_a - r_b`` gets the delete-one-image jackknife standard error: with ``d_(i)`` the gap
    without image ``i``, ``se² = (n - 1) / n * sum_i (d_(i) - mean d_(.))²`` over the ``n`` images of
    the rows (images are the clusters, so two groups sharing images are correlated as they are).
    ``p = P(|D| >= |d|)`` for ``D ~ N(tolerance, se²)`` (two-sided when ``tolerance`` is 0); Holm's
    correction (:func:`audit.contract.gaptests.holm`) runs over every pair of every attribute.

    Args:
        attributes: attribute name -> its subgroups' counts (all over the same image rows); an
            image-level attribute through :func:`image_group_counts`.
        min_group_size: a subgroup with fewer objects in the rows takes no part.
        tolerance: the gap the null hypothesis allows (0: no gap).
        image_index: the image rows (distinct; default all).

    Raises:
        AuditError: attributes over different images, ``min_group_size`` < 1, ``tolerance`` < 0.
    """
    if isinstance(min_group_size, bool) or not isinstance(min_group_size, (int, np.integer)) or min_group_size < 1:
        raise AuditError(f"recall gap tests: min_group_size must be a positive integer, got {min_group_size!r}")
    if not (math.isfinite(tolerance) and tolerance >= 0.0):
        raise AuditError(f"recall gap tests: tolerance must be a number >= 0, got {tolerance}")
    image_ids = {tuple(c.image_ids) for c in attributes.values()}
    if len(image_ids) > 1:
        raise AuditError("recall gap tests: the attributes' counts are over different images")
    pending: list[tuple[str, tuple[str, str], tuple[float, float], tuple[int, int], float, float, float]] = []
    summaries: list[tuple[str, tuple[str, ...], tuple[float, ...], tuple[int, ...], tuple[str, ...]]] = []
    for name, counts in attributes.items():
        rows = _check_rows(len(counts.image_ids), image_index)
        m, t = counts.matched[rows].astype(np.float64), counts.total[rows].astype(np.float64)
        total = t.sum(axis=0)
        keep = [k for k in range(len(counts.groups)) if total[k] >= min_group_size]
        recall = {k: float(m[:, k].sum() / total[k]) for k in keep}
        for x, a in enumerate(keep):
            for b in keep[x + 1 :]:
                hi, lo = (a, b) if recall[a] >= recall[b] else (b, a)
                se = _gap_se(m[:, hi], t[:, hi], m[:, lo], t[:, lo])
                gap = recall[hi] - recall[lo]
                pending.append(
                    (
                        name,
                        (counts.groups[hi], counts.groups[lo]),
                        (recall[hi], recall[lo]),
                        (int(total[hi]), int(total[lo])),
                        gap,
                        se,
                        _gap_p_value(gap, se, tolerance),
                    )
                )
        summaries.append(
            (
                name,
                tuple(counts.groups[k] for k in keep),
                tuple(recall[k] for k in keep),
                tuple(int(total[k]) for k in keep),
                tuple(g for k, g in enumerate(counts.groups) if k not in keep),
            )
        )
    adjusted = holm([p[-1] for p in pending])
    tests = tuple(RecallGapTest(*p, p_holm=q) for p, q in zip(pending, adjusted))
    out = []
    for name, groups, recalls, n_objects, excluded in summaries:
        mine = [s.p_holm for s in tests if s.attribute == name]
        out.append(
            AttributeRecallGap(
                attribute=name,
                groups=groups,
                recalls=recalls,
                n_objects=n_objects,
                excluded=excluded,
                gap=max(recalls) - min(recalls) if len(recalls) >= 2 else None,
                p_holm=min(mine) if mine else None,
            )
        )
    return RecallGapTests(tests=tests, attributes=tuple(out))


@dataclass(frozen=True)
class CorruptionRobustness:
    """Corruption robustness (Michaelis et al. 2019).

    Attributes:
        clean: mAP on clean images (``P_clean``).
        mpc: mean performance under corruption: the mean over stressors of each stressor's mean
            mAP over its severities; ``None`` with no stressor condition or an undefined mAP.
        rpc: relative performance under corruption, ``mpc / clean``; ``None`` where either is
            ``None`` or ``clean`` is 0.
        per_stressor: stressor -> the mean mAP over its severities (``None`` if one is undefined).
    """

    clean: float | None
    mpc: float | None
    rpc: float | None
    per_stressor: dict[str, float | None]


def corruption_robustness(
    map_by_condition: Mapping[str, float | None], clean: float | None, stressor_of: Mapping[str, str]
) -> CorruptionRobustness:
    """mPC and rPC over the stressor conditions.

    ``mPC = (1 / S) sum_s (1 / N_s) sum_k mAP(s, k)`` over stressors ``s`` with severities
    ``k = 1..N_s`` (Michaelis et al. 2019, eq. 1); ``rPC = mPC / mAP_clean``. mmdetection's
    ``tools/analysis_tools/robustness_eval.py`` averages all (corruption, severity) cells at once,
    which is the same number when every stressor has the same number of severities (it always
    has five there); with unequal numbers each stressor still weighs the same here.

    Args:
        map_by_condition: condition -> its mAP (``None``: undefined), stressor conditions only.
        clean: mAP on clean images.
        stressor_of: condition -> its stressor (a stressor's conditions are its severities).

    Raises:
        AuditError: a condition without a stressor.

    Example:
        >>> maps = {"fog:1": 0.4, "fog:2": 0.2, "blur:1": 0.5}
        >>> r = corruption_robustness(maps, 0.6, {"fog:1": "fog", "fog:2": "fog", "blur:1": "blur"})
        >>> round(r.mpc, 10), round(r.rpc, 10)
        (0.4, 0.6666666667)
    """
    by_stressor: dict[str, list[float | None]] = {}
    for condition, value in map_by_condition.items():
        if condition not in stressor_of:
            raise AuditError(f"corruption robustness: condition {condition!r} has no stressor")
        by_stressor.setdefault(str(stressor_of[condition]), []).append(value)
    per_stressor: dict[str, float | None] = {
        s: None if any(v is None for v in values) else float(np.mean(np.asarray(values, dtype=np.float64)))
        for s, values in by_stressor.items()
    }
    means = list(per_stressor.values())
    mpc = None if not means or any(v is None for v in means) else float(np.mean(np.asarray(means, dtype=np.float64)))
    rpc = None if mpc is None or clean is None or clean == 0 else mpc / float(clean)
    return CorruptionRobustness(clean=clean, mpc=mpc, rpc=rpc, per_stressor=per_stressor)
