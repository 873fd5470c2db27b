"""The slice search: weak slices of the data found on one random half and confirmed on the other.

Input: per-sample values of one metric (:data:`SEARCH_METRICS`: the registry's metrics that are a
mean of a per-sample value stored in predictions.csv) and attribute columns (categorical text, or
numbers binned into quantiles). Output: the slices whose metric is worse than the rest of the data
by more than a tolerance, with the family-wise error rate controlled.

The procedure (:func:`search`), with ``settings`` a :class:`SearchSettings`:

1. **Predicates.** A categorical attribute gives one predicate per value held by at least
   ``min_size`` samples (a rarer value cannot make a slice of ``min_size``); a numeric attribute
   (every value a finite number, more distinct values than ``bins``) gives ``bins`` quantile bins
   ``[q_i, q_{i+1})``, the lowest open below and the highest open above. Missing values (an empty
   cell, a property not computed) are in no predicate of that attribute.
2. **Candidates.** Every conjunction of predicates on 1 to ``depth`` distinct attributes with at
   least ``min_size`` samples in the whole run.
3. **Split.** The samples are split at random (``seed``) into two halves of equal size (the first
   half one larger when the count is odd): discovery and confirmation.
4. **Discovery.** On the discovery half each candidate gets the one-sided statistic ``z`` of the test
   below; candidates with discovery p-value below ``discovery_alpha`` (at most ``pool`` of them) are
   ranked by ``z - sqrt(2 ln m_d)``, ``m_d`` the number of candidates of their depth (the size of the
   largest of ``m_d`` null statistics: a refinement must beat its simpler parent by more than noise
   would); ties: fewer predicates first, then the text. Going down the ranking, a candidate is merged
   into a slice already kept when it selects the same samples; when it lies inside the kept slice and
   the discovery half does not show it worse than the rest of that slice (one-sided, level
   ``discovery_alpha``); when it contains the kept slice and the discovery half does not show its other
   samples worse than the rest; or, otherwise, when the two overlap with a Jaccard index of at least
   ``overlap``. A candidate not merged is kept, until ``max_confirm`` slices are kept.
5. **Confirmation.** Each kept slice is tested once on the confirmation half, which discovery never
   looked at; the p-values are adjusted with Holm's step-down method over the kept slices, and a
   slice is reported when its adjusted p-value is at most ``alpha``.

The test, per slice ``S`` against the rest ``R`` of the same half, on the per-sample *badness*
``b`` (an error for accuracy; the loss for Brier and NLL) with tolerance ``τ``:
H0 ``E[b | S] - E[b | R] <= τ`` against H1 ``> τ``, ``z = (b̂_S - b̂_R - τ) / se``, p ``= 1 - Φ(z)``;
for accuracy with the Agresti-Caffo estimates ``(k + 1) / (n + 2)`` and variance ``p(1-p)/(n+2)``
(as the group-gap tests of :mod:`audit.contract.gaptests`), for Brier and NLL a Welch z with the
sample variances.

Guarantee: conditional on the attributes (fixed design) with the samples' outcomes independent, the
probability that any reported slice has a true gap of at most ``τ`` is at most ``alpha`` (up to the
normal approximation of each test): discovery depends on the confirmation half only through its
attributes, so each kept slice's confirmation p-value is valid, and Holm controls the family-wise error
over the kept slices. What it does not control: slices not among the ``max_confirm`` kept are never
reported (low power for many similar candidates), and merged descriptions are the strongest of their
group in discovery, not necessarily the true cause.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from audit.contract.gaptests import holm
from audit.contract.intervals import wilson
from audit.contract.slices import MAX_DEPTH, Predicate, SliceDefinition, SliceError

__all__ = [
    "DETECTION_METRICS",
    "SEARCH_METRICS",
    "Column",
    "Finding",
    "SearchMetric",
    "SearchResult",
    "SearchSettings",
    "categorical_column",
    "cluster_test",
    "cluster_value",
    "columns_from_table",
    "numeric_column",
    "one_sided_p",
    "search",
]

_NORMAL = NormalDist()


@dataclass(frozen=True)
class SearchMetric:
    """A metric the search can use: the mean of a per-sample value (``higher_is_better`` as in the registry).

    ``proportion``: the per-sample value is 0 or 1 (accuracy), tested with Agresti-Caffo estimates and
    given a Wilson interval; otherwise a Welch z-test and a normal interval of the mean.
    """

    name: str
    higher_is_better: bool
    proportion: bool


#: The metrics of the registry (:mod:`audit.contract.metric_specs`) that are the mean of a per-sample value
#: predictions.csv stores: accuracy (prediction == label), Brier (prob_sq_sum - 2 p_true + 1), NLL
#: (-log max(p_true, eps)). Balanced accuracy, macro F1, ECE and the other calibration errors are not a
#: mean over samples, so a slice cannot be compared with them sample by sample.
SEARCH_METRICS: dict[str, SearchMetric] = {
    "accuracy": SearchMetric("accuracy", True, True),
    "brier": SearchMetric("brier", False, False),
    "nll": SearchMetric("nll", False, False),
}


#: Clustered search (detection): a slice, and the rest, must hold units of at least this many clusters (images) in
#: the half tested, or the test does not count it (p = 1). The sandwich variance of a slice inside one or two images
#: is no variance at all (each image's term is zero), so such a slice would be tested as if its objects were
#: independent; simulated null runs with rare image attributes reported a slice in up to 32 % of runs before this
#: bound (2 images per value, 30 objects each, image effect σ 2), against the 5 % promised.
MIN_SLICE_CLUSTERS = 10

#: The detection metric: the recall of the ground-truth objects (badness: an object present and not found). Its
#: units are objects clustered in images (:func:`search` with ``clusters``), tested with :func:`cluster_test`.
DETECTION_METRICS: dict[str, SearchMetric] = {
    "recall": SearchMetric("recall", True, True),
}


@dataclass(frozen=True)
class SearchSettings:
    """The settings of one search (the defaults are cvaudit's).

    Raises:
        SliceError: a setting out of its range (one line naming it).
    """

    depth: int = 3
    bins: int = 10
    tolerance: float = 0.0
    min_size: int = 50
    alpha: float = 0.05
    seed: int = 0
    max_confirm: int = 5
    discovery_alpha: float = 0.05
    overlap: float = 0.5
    pool: int = 500

    def __post_init__(self) -> None:
        if isinstance(self.depth, bool) or not 1 <= self.depth <= MAX_DEPTH:
            raise SliceError(f"depth must be 1 to {MAX_DEPTH}; got {self.depth!r}")
        if not 2 <= self.bins <= 100:
            raise SliceError(f"bins must be 2 to 100; got {self.bins!r}")
        if not (math.isfinite(self.tolerance) and 0.0 <= self.tolerance <= 1.0):
            raise SliceError(f"tolerance must be in [0, 1]; got {self.tolerance!r}")
        if self.min_size < 2:
            raise SliceError(f"min size must be at least 2; got {self.min_size!r}")
        for name in ("alpha", "discovery_alpha"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise SliceError(f"{name} must be in (0, 1); got {value!r}")
        if self.max_confirm < 1:
            raise SliceError(f"max_confirm must be at least 1; got {self.max_confirm!r}")
        if not 0.0 < self.overlap <= 1.0:
            raise SliceError(f"overlap must be in (0, 1]; got {self.overlap!r}")


@dataclass(frozen=True)
class Column:
    """One attribute as the search sees it: a code per sample (-1: in none of its predicates)."""

    name: str
    codes: np.ndarray
    predicates: tuple[Predicate, ...]
    numeric: bool


def categorical_column(name: str, values: Sequence[str] | np.ndarray, *, min_size: int) -> Column:
    """A categorical attribute: one predicate per value held by at least ``min_size`` samples (text order)."""
    array = np.asarray(values).astype(str)
    uniques, inverse, counts = np.unique(array, return_inverse=True, return_counts=True)
    keep = counts >= min_size
    remap = np.full(len(uniques), -1, dtype=np.int64)
    remap[keep] = np.arange(int(keep.sum()))
    predicates = tuple(Predicate(attribute=name, equals=str(v)) for v in uniques[keep])
    return Column(name, remap[inverse.reshape(-1)], predicates, False)


def numeric_column(name: str, values: Sequence[float] | np.ndarray, *, bins: int) -> Column:
    """A numeric attribute cut at its ``bins``-quantiles (edges that coincide are merged): half-open bins,
    the lowest open below and the highest open above; a non-finite value is in no bin."""
    array = np.asarray(values, dtype=float)
    finite = np.isfinite(array)
    codes = np.full(array.shape, -1, dtype=np.int64)
    if not finite.any():
        return Column(name, codes, (), True)
    inner = np.unique(np.quantile(array[finite], np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    inner = inner[inner > array[finite].min()]  # a cut at the minimum would leave an empty lowest bin
    if len(inner) == 0:  # one value: nothing to cut
        return Column(name, codes, (), True)
    edges = [None, *[float(e) for e in inner], None]
    predicates = tuple(Predicate(attribute=name, min=lo, max=hi) for lo, hi in itertools.pairwise(edges))
    codes[finite] = np.searchsorted(inner, array[finite], side="right")
    return Column(name, codes, predicates, True)


def one_sided_p(
    bad_s: np.ndarray,
    n_s: np.ndarray,
    bad_r: np.ndarray,
    n_r: np.ndarray,
    *,
    tolerance: float,
    proportion: bool,
    sq_s: np.ndarray | None = None,
    sq_r: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(z, p)`` of H0 ``E[b|S] - E[b|R] <= tolerance`` per slice, from sums of badness (and of its square).

    Proportions: Agresti-Caffo; means: Welch (a group of fewer than 2 samples gives p = 1).
    """
    n_s = np.asarray(n_s, dtype=float)
    n_r = np.asarray(n_r, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if proportion:
            p_s = (bad_s + 1.0) / (n_s + 2.0)
            p_r = (bad_r + 1.0) / (n_r + 2.0)
            se = np.sqrt(p_s * (1 - p_s) / (n_s + 2.0) + p_r * (1 - p_r) / (n_r + 2.0))
            z = (p_s - p_r - tolerance) / se
        else:
            m_s = bad_s / n_s
            m_r = bad_r / n_r
            v_s = np.maximum(sq_s - n_s * m_s**2, 0.0) / (n_s - 1.0)  # type: ignore[operator]
            v_r = np.maximum(sq_r - n_r * m_r**2, 0.0) / (n_r - 1.0)  # type: ignore[operator]
            se = np.sqrt(v_s / n_s + v_r / n_r)
            diff = m_s - m_r - tolerance
            z = np.where(se > 0, diff / np.where(se > 0, se, 1.0), np.where(diff > 0, np.inf, -np.inf))
            z = np.where((n_s < 2) | (n_r < 2), -np.inf, z)
    z = np.nan_to_num(np.asarray(z, dtype=float), nan=-np.inf)
    p = np.array([1.0 - _NORMAL.cdf(v) if math.isfinite(v) else (0.0 if v > 0 else 1.0) for v in z.ravel()])
    return z, p.reshape(z.shape)


def _cluster_variance(d: np.ndarray, groups: int) -> float:
    """The sandwich variance of a sum of per-cluster influences ``d`` over ``groups`` clusters (G/(G-1) corrected)."""
    return float((d * d).sum()) * groups / (groups - 1) if groups > 1 else math.inf


def _ac_variance(bad_s: np.ndarray, n_s: np.ndarray, bad_r: np.ndarray, n_r: np.ndarray) -> np.ndarray:
    """The Agresti-Caffo variance of the difference of two proportions (objects counted as independent)."""
    p_s = (bad_s + 1.0) / (n_s + 2.0)
    p_r = (bad_r + 1.0) / (n_r + 2.0)
    return p_s * (1 - p_s) / (n_s + 2.0) + p_r * (1 - p_r) / (n_r + 2.0)


def _z_to_p(z: np.ndarray) -> np.ndarray:
    z = np.nan_to_num(np.asarray(z, dtype=float), nan=-np.inf)
    p = np.array([1.0 - _NORMAL.cdf(v) if math.isfinite(v) else (0.0 if v > 0 else 1.0) for v in z.ravel()])
    return p.reshape(z.shape)


def cluster_test(
    bad: np.ndarray, cluster: np.ndarray, in_s: np.ndarray, in_r: np.ndarray, *, groups: int, tolerance: float
) -> tuple[float, float]:
    """``(z, p)`` of H0 ``P_S - P_R <= tolerance`` for the ratio estimators ``P = sum(bad) / count`` of two disjoint
    sets of units ``S`` and ``R`` that are clustered (``cluster``: each unit's cluster id, a whole number from 0; the
    clusters independent, the units of one cluster not; ``groups``: the number of clusters of the half tested).

    The variance of ``P̂_S - P̂_R`` is the delta-method (sandwich) variance over clusters: with ``m_Si, n_Si`` the
    bad units and the units of ``S`` in cluster ``i`` (likewise ``R``), ``d_i = (m_Si - P̂_S n_Si) / N_S -
    (m_Ri - P̂_R n_Ri) / N_R`` and ``V = G / (G - 1) * sum_i d_i^2`` (``G = groups``, the clusters of the half,
    those without a unit of S or R included). It is floored at the Agresti-Caffo variance of independent units
    (the sandwich underestimates with few clusters or no bad unit). ``z = (P̂_S - P̂_R - tolerance) / sqrt(V)``,
    ``p = 1 - Φ(z)``; an S or R with units in fewer than :data:`MIN_SLICE_CLUSTERS` clusters (an empty one
    included) gives ``(-inf, 1)``: not testable.
    """
    bad = np.asarray(bad, dtype=float)
    n_s, n_r = float(np.count_nonzero(in_s)), float(np.count_nonzero(in_r))
    if n_s == 0 or n_r == 0:
        return -math.inf, 1.0
    size = int(cluster.max()) + 1
    m_s = np.bincount(cluster[in_s], weights=bad[in_s], minlength=size)
    c_s = np.bincount(cluster[in_s], minlength=size).astype(float)
    m_r = np.bincount(cluster[in_r], weights=bad[in_r], minlength=size)
    c_r = np.bincount(cluster[in_r], minlength=size).astype(float)
    if np.count_nonzero(c_s) < MIN_SLICE_CLUSTERS or np.count_nonzero(c_r) < MIN_SLICE_CLUSTERS:
        return -math.inf, 1.0
    p_s, p_r = m_s.sum() / n_s, m_r.sum() / n_r
    d = (m_s - p_s * c_s) / n_s - (m_r - p_r * c_r) / n_r
    floor = float(_ac_variance(np.array(m_s.sum()), np.array(n_s), np.array(m_r.sum()), np.array(n_r)))
    se = math.sqrt(max(_cluster_variance(d, groups), floor))
    z = (p_s - p_r - tolerance) / se
    return float(z), float(_z_to_p(np.array([z]))[0])


def cluster_value(
    bad: np.ndarray, cluster: np.ndarray, in_s: np.ndarray, *, groups: int
) -> tuple[float, list[float] | None]:
    """Recall ``1 - P̂`` of the units ``in_s`` and its 95% normal interval from the cluster (sandwich) variance of the
    ratio ``P̂ = sum(bad) / count`` (:func:`cluster_test`), clipped to [0, 1]. As in the test, the variance is
    floored at that of independent units (``p̃ (1 - p̃) / (n + 2)``, ``p̃ = (bad + 1) / (n + 2)``), so a slice in one
    image, or without a miss, does not get a zero-width interval."""
    n = float(np.count_nonzero(in_s))
    if n == 0:
        return math.nan, None
    size = int(cluster.max()) + 1
    m = np.bincount(cluster[in_s], weights=np.asarray(bad, dtype=float)[in_s], minlength=size)
    c = np.bincount(cluster[in_s], minlength=size).astype(float)
    p = m.sum() / n
    tilde = (m.sum() + 1.0) / (n + 2.0)
    se = math.sqrt(max(_cluster_variance((m - p * c) / n, groups), tilde * (1.0 - tilde) / (n + 2.0)))
    half = 1.959963984540054 * se
    return 1.0 - p, [max(0.0, 1.0 - p - half), min(1.0, 1.0 - p + half)]


def _cluster_discovery(
    cell: np.ndarray,
    ok: np.ndarray,
    count: int,
    bad_d: np.ndarray,
    in_d: np.ndarray,
    cluster: np.ndarray,
    totals: tuple[np.ndarray, np.ndarray, int],
    tolerance: float,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cluster_test` of every cell ``ok`` against the rest of the discovery half at once: ``d_i`` is linear in
    the cell's and the cluster's counts, so ``sum_i d_i^2`` comes from per-cell sums of their products."""
    big_m, big_n, groups = totals  # per cluster of the half: bad units, units; the number of clusters
    c_total = len(big_m)
    key = cell[in_d] * c_total + cluster[in_d]
    pairs, inverse = np.unique(key, return_inverse=True)
    m = np.bincount(inverse, weights=bad_d[in_d])
    n = np.bincount(inverse).astype(float)
    pc, pk = pairs // c_total, pairs % c_total
    mm, nn = big_m[pk], big_n[pk]

    def per_cell(weights: np.ndarray) -> np.ndarray:
        return np.bincount(pc, weights=weights, minlength=count + 1)[:count][ok]

    s_m, s_n = per_cell(m), per_cell(n)
    s_images = per_cell(np.ones(len(pairs)))  # the clusters holding units of the cell
    s_mm, s_nn, s_mn = per_cell(m * m), per_cell(n * n), per_cell(m * n)
    s_mM, s_mN, s_nM, s_nN = per_cell(m * mm), per_cell(m * nn), per_cell(n * mm), per_cell(n * nn)
    t_m, t_n = float(big_m.sum()), float(big_n.sum())
    t_MM, t_MN, t_NN = float((big_m * big_m).sum()), float((big_m * big_n).sum()), float((big_n * big_n).sum())
    r_m, r_n = t_m - s_m, t_n - s_n
    with np.errstate(divide="ignore", invalid="ignore"):
        p_s, p_r = s_m / s_n, r_m / r_n
        a = 1.0 / s_n + 1.0 / r_n
        b = -(p_s / s_n + p_r / r_n)
        c = -1.0 / r_n
        e = p_r / r_n
        total = (
            a * a * s_mm
            + b * b * s_nn
            + 2 * a * b * s_mn
            + 2 * a * (c * s_mM + e * s_mN)
            + 2 * b * (c * s_nM + e * s_nN)
            + c * c * t_MM
            + 2 * c * e * t_MN
            + e * e * t_NN
        )
        variance = np.maximum(total, 0.0) * groups / (groups - 1) if groups > 1 else np.full(len(s_m), np.inf)
        se = np.sqrt(np.maximum(variance, _ac_variance(s_m, s_n, r_m, r_n)))
        z = (p_s - p_r - tolerance) / se
    rest_images = np.count_nonzero(big_n) - per_cell((n == nn).astype(float))  # less those wholly in the cell
    z = np.where((s_images < MIN_SLICE_CLUSTERS) | (rest_images < MIN_SLICE_CLUSTERS), -np.inf, z)
    z = np.nan_to_num(np.asarray(z, dtype=float), nan=-np.inf)
    return z, _z_to_p(z)


@dataclass
class Finding:
    """One confirmed slice, with its numbers on the confirmation half (``value`` in the metric's own
    direction: accuracy as accuracy) and its size in the whole run (``n``)."""

    definition: SliceDefinition
    n: int
    n_confirm: int
    value: float
    interval: list[float] | None
    rest_n_confirm: int
    rest_value: float
    rest_interval: list[float] | None
    effect: float
    p_value: float
    p_raw: float
    z_discovery: float
    merged: int


@dataclass
class SearchResult:
    """What one search did: the findings (confirmed, by adjusted p-value) and the counts behind them."""

    metric: str
    settings: SearchSettings
    attributes: list[str]
    n: int
    n_discovery: int
    candidates: int
    discovered: int
    confirmed_family: int
    findings: list[Finding] = field(default_factory=list)
    #: every slice tested on the confirmation half: (definition, unadjusted p-value, Holm-adjusted p-value)
    tested: list[tuple[SliceDefinition, float, float]] = field(default_factory=list)


def _interval(metric: SearchMetric, bad: float, sq: float, n: int) -> tuple[float, list[float] | None]:
    """The metric's value and 95% interval from the badness sum (and sum of squares) of ``n`` samples."""
    if n == 0:
        return math.nan, None
    mean = bad / n
    if metric.proportion:
        errors = round(bad)
        low, high = wilson(n - errors, n) or [math.nan, math.nan]
        return 1.0 - mean, [low, high]
    if n < 2:
        return mean, None
    sd = math.sqrt(max(sq - n * mean * mean, 0.0) / (n - 1))
    half = 1.959963984540054 * sd / math.sqrt(n)
    return mean, [mean - half, mean + half]


def _cells(codes: list[np.ndarray], sizes: list[int]) -> tuple[np.ndarray, np.ndarray, int]:
    """Each sample's cell of the attributes' joint codes (-1: in no cell) and each cell's digits."""
    valid = np.ones(codes[0].shape, dtype=bool)
    for c in codes:
        valid &= c >= 0
    combined = np.zeros(codes[0].shape, dtype=np.int64)
    for c, k in zip(codes, sizes, strict=True):
        combined = combined * k + np.where(valid, c, 0)
    total = math.prod(sizes)
    if total <= 4 * len(combined) + 1024:
        cell = np.where(valid, combined, total)
        return cell, np.arange(total, dtype=np.int64), total
    uniques, inverse = np.unique(combined[valid], return_inverse=True)
    cell = np.full(combined.shape, len(uniques), dtype=np.int64)
    cell[valid] = inverse.reshape(-1)
    return cell, uniques, len(uniques)


def search(
    columns: Sequence[Column],
    bad: np.ndarray,
    metric: SearchMetric,
    settings: SearchSettings,
    *,
    clusters: np.ndarray | None = None,
) -> SearchResult:
    """Search the conjunctions of ``columns`` for slices whose ``bad`` (per-sample badness) is higher than the
    rest's by more than ``settings.tolerance``, controlling the family-wise error (module docstring).

    ``clusters`` (detection: each object's image): the samples are units clustered in independent clusters; the
    split puts all units of a cluster in the same half and every test is :func:`cluster_test` (values and
    intervals :func:`cluster_value`). Without it (classification) the samples are independent.

    Raises:
        SliceError: fewer than 4 samples (or clusters), no attribute, or columns whose length is not the samples'.
    """
    bad = np.asarray(bad, dtype=float)
    n = len(bad)
    if n < 4:
        raise SliceError(f"the slice search needs at least 4 samples; got {n}")
    if not columns:
        raise SliceError("the slice search needs at least one attribute")
    for c in columns:
        if len(c.codes) != n:
            raise SliceError(f"attribute {c.name!r} has {len(c.codes)} values for {n} samples")
    rng = np.random.default_rng(settings.seed)
    discovery = np.zeros(n, dtype=bool)
    cluster: np.ndarray | None = None
    if clusters is None:
        discovery[rng.permutation(n)[: (n + 1) // 2]] = True
    else:
        if len(clusters) != n:
            raise SliceError(f"{len(clusters)} cluster ids for {n} samples")
        cluster = np.unique(np.asarray(clusters), return_inverse=True)[1].reshape(-1)
        g = int(cluster.max()) + 1
        if g < 4:
            raise SliceError(f"the slice search needs at least 4 images; got {g}")
        first = np.zeros(g, dtype=bool)
        first[rng.permutation(g)[: (g + 1) // 2]] = True
        discovery = first[cluster]
    confirm = ~discovery
    weights_d = discovery.astype(float)
    bad_d = bad * weights_d
    sq_d = bad * bad * weights_d
    total_n_d = float(weights_d.sum())
    total_bad_d = float(bad_d.sum())
    total_sq_d = float(sq_d.sum())
    if cluster is not None:
        g_d = int(np.unique(cluster[discovery]).size)
        g_c = int(np.unique(cluster[confirm]).size)
        big_n = np.bincount(cluster[discovery], minlength=g).astype(float)
        big_m = np.bincount(cluster[discovery], weights=bad[discovery], minlength=g)

    usable = [c for c in columns if c.predicates]
    z_parts: list[np.ndarray] = []
    keys: list[tuple[tuple[int, ...], np.ndarray]] = []
    candidates = 0
    per_depth: dict[int, int] = {}
    for depth in range(1, min(settings.depth, len(usable)) + 1):
        for combo in itertools.combinations(range(len(usable)), depth):
            sizes = [len(usable[i].predicates) for i in combo]
            cell, digits, count = _cells([usable[i].codes for i in combo], sizes)
            n_all = np.bincount(cell, minlength=count + 1)[:count]
            ok = np.flatnonzero(n_all >= settings.min_size)
            if len(ok) == 0:
                continue
            candidates += len(ok)
            per_depth[depth] = per_depth.get(depth, 0) + len(ok)
            n_s = np.bincount(cell, weights=weights_d, minlength=count + 1)[:count][ok]
            b_s = np.bincount(cell, weights=bad_d, minlength=count + 1)[:count][ok]
            s_s = None if metric.proportion else np.bincount(cell, weights=sq_d, minlength=count + 1)[:count][ok]
            if cluster is not None:
                z, p = _cluster_discovery(
                    cell, ok, count, bad, discovery, cluster, (big_m, big_n, g_d), settings.tolerance
                )
            else:
                z, p = one_sided_p(
                    b_s,
                    n_s,
                    total_bad_d - b_s,
                    total_n_d - n_s,
                    tolerance=settings.tolerance,
                    proportion=metric.proportion,
                    sq_s=s_s,
                    sq_r=None if s_s is None else total_sq_d - s_s,
                )
            hit = p < settings.discovery_alpha
            if hit.any():
                z_parts.append(z[hit])
                keys.append((combo, digits[ok[hit]]))
    result = SearchResult(
        metric=metric.name,
        settings=settings,
        attributes=[c.name for c in columns],
        n=n,
        n_discovery=int(total_n_d),
        candidates=candidates,
        discovered=int(sum(len(z) for z in z_parts)),
        confirmed_family=0,
    )
    if not z_parts:
        return result

    # rank the discovered candidates by z less the depth's penalty (the expected largest z of that many null
    # candidates, sqrt(2 ln m_d)): a refinement must beat its simpler parent by more than noise would
    penalty = {d: math.sqrt(2.0 * math.log(max(m, 2))) for d, m in per_depth.items()}
    zs = np.concatenate(z_parts)
    scores = np.concatenate([z - penalty[len(keys[i][0])] for i, z in enumerate(z_parts)])
    owner = np.concatenate([np.full(len(z), i) for i, z in enumerate(z_parts)])
    offsets = np.concatenate([np.arange(len(z)) for z in z_parts])
    order = np.lexsort((owner, -scores))[: settings.pool]

    def mask_of(parts: tuple[tuple[int, int], ...]) -> np.ndarray:
        mask = np.ones(n, dtype=bool)
        for i, d in parts:
            mask &= usable[i].codes == d
        return mask

    def test_d(in_s: np.ndarray, in_r: np.ndarray, tolerance: float) -> tuple[float, float]:
        s, r = in_s & discovery, in_r & discovery
        if cluster is not None:
            return cluster_test(bad, cluster, s, r, groups=g_d, tolerance=tolerance)
        z, p = one_sided_p(
            np.array([bad[s].sum()]),
            np.array([s.sum()]),
            np.array([bad[r].sum()]),
            np.array([r.sum()]),
            tolerance=tolerance,
            proportion=metric.proportion,
            sq_s=np.array([(bad[s] ** 2).sum()]),
            sq_r=np.array([(bad[r] ** 2).sum()]),
        )
        return float(z[0]), float(p[0])

    unique: dict[tuple[tuple[int, int], ...], list] = {}  # parts -> [z, definition, mask, merged, score, parts]
    for j in order:
        combo, digits = keys[owner[j]]
        code = int(digits[offsets[j]])
        rev = []
        for i in reversed(combo):
            k = len(usable[i].predicates)
            rev.append((i, code % k))
            code //= k
        parts = tuple(reversed(rev))
        mask = mask_of(parts)
        z = float(zs[j])
        score = float(scores[j])
        if parts in unique:
            unique[parts][3] += 1
            continue
        definition = SliceDefinition(all=[usable[i].predicates[d] for i, d in parts])
        unique[parts] = [z, definition, mask, 0, score, frozenset(parts)]
    pool = sorted(unique.values(), key=lambda item: (-item[4], item[1].depth, item[1].text()))

    kept: list[list] = []  # [z, definition, mask, size, merged, parts]
    for z, definition, mask, merged, _, parts in pool:
        size = int(mask.sum())
        merged_into = None
        for slot in kept:
            inter = int(np.count_nonzero(mask & slot[2]))
            if inter == size == slot[3]:  # the same samples under another description
                same = True
            elif inter == size:  # inside a kept slice: merged unless worse than the rest of that slice
                _, p_refine = test_d(mask, slot[2] & ~mask, 0.0)
                same = p_refine >= settings.discovery_alpha
            elif inter == slot[3]:  # around a kept slice: merged unless worse than the rest without it
                _, p_wider = test_d(mask & ~slot[2], ~mask, settings.tolerance)
                same = p_wider >= settings.discovery_alpha
            else:  # overlapping: merged when the Jaccard index is at least `overlap`
                same = inter / max(1, size + slot[3] - inter) >= settings.overlap
            if same:
                merged_into = slot
                break
        if merged_into is not None:
            merged_into[4] += 1 + merged
            continue
        if len(kept) == settings.max_confirm:
            continue
        kept.append([z, definition, mask, size, merged, parts])

    result.confirmed_family = len(kept)
    rows = []
    for z, definition, mask, size, _merged, _ in kept:
        in_s = mask & confirm
        in_r = ~mask & confirm
        n_s, n_r = int(in_s.sum()), int(in_r.sum())
        b_s, b_r = float(bad[in_s].sum()), float(bad[in_r].sum())
        q_s, q_r = float((bad[in_s] ** 2).sum()), float((bad[in_r] ** 2).sum())
        if cluster is not None:
            p = np.array([cluster_test(bad, cluster, in_s, in_r, groups=g_c, tolerance=settings.tolerance)[1]])
            value, interval = cluster_value(bad, cluster, in_s, groups=g_c)
            rest_value, rest_interval = cluster_value(bad, cluster, in_r, groups=g_c)
        else:
            _, p = one_sided_p(
                np.array([b_s]),
                np.array([n_s]),
                np.array([b_r]),
                np.array([n_r]),
                tolerance=settings.tolerance,
                proportion=metric.proportion,
                sq_s=np.array([q_s]),
                sq_r=np.array([q_r]),
            )
            value, interval = _interval(metric, b_s, q_s, n_s)
            rest_value, rest_interval = _interval(metric, b_r, q_r, n_r)
        effect = (b_s / n_s if n_s else math.nan) - (b_r / n_r if n_r else math.nan)
        rows.append((definition, size, n_s, value, interval, n_r, rest_value, rest_interval, effect, float(p[0]), z))
    adjusted = holm([r[9] for r in rows])
    result.tested = [(r[0], r[9], p_adj) for r, p_adj in zip(rows, adjusted, strict=True)]
    for row, p_adj, (_, _, _, _, merged, _) in zip(rows, adjusted, kept, strict=True):
        if p_adj <= settings.alpha:
            definition, size, n_s, value, interval, n_r, rest_value, rest_interval, effect, p_raw, z = row
            result.findings.append(
                Finding(
                    definition=definition,
                    n=size,
                    n_confirm=n_s,
                    value=value,
                    interval=interval,
                    rest_n_confirm=n_r,
                    rest_value=rest_value,
                    rest_interval=rest_interval,
                    effect=effect,
                    p_value=p_adj,
                    p_raw=p_raw,
                    z_discovery=z,
                    merged=merged,
                )
            )
    result.findings.sort(key=lambda f: (f.p_value, -f.effect, f.definition.text()))
    return result


def columns_from_table(
    table: Mapping[str, np.ndarray], numeric: Mapping[str, bool], settings: SearchSettings
) -> list[Column]:
    """The search's columns of a table: numeric ones binned (``settings.bins``), the others categorical."""
    return [
        numeric_column(name, values, bins=settings.bins)
        if numeric[name]
        else categorical_column(name, values, min_size=settings.min_size)
        for name, values in table.items()
    ]
