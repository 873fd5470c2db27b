"""Power of a ``detect`` difference rule against a stated alternative, and the samples that give it.

A ``detect`` rule (:mod:`audit.contract.gaptests`) passes when the data do not show the tolerance
exceeded. Such a pass means something only if the test could have seen a real violation, so every
detect target carries the probability that its test finds a stated alternative:

- **the alternative**: a true gap of ``2τ`` for a gap rule with tolerance ``τ > 0`` (also equalized
  odds and demographic parity); a true ratio of ``2ρ - 1`` for a ratio rule ``min: ρ`` (``ρ < 1``):
  the distance from parity doubled. A rule with ``τ = 0`` (or ``ρ >= 1``) states no alternative and
  has no power here.
- **the pair**: the pair with the largest standard error under the pooled rate (the smallest groups;
  for equalized odds and demographic parity, the per-class rate with the fewest samples behind it),
  at Holm's first-step level ``α / m`` (``m`` the pairs of the whole rule). Holm rejects something
  exactly when its smallest p-value is at most ``α / m``, so this is the probability that the rule
  fails if that one pair differs by the alternative (a lower bound when other pairs differ as well).
- **proportions** (accuracy, top-k accuracy, per-class rates): the two groups' true rates are
  ``p̄ - τ`` and ``p̄ + τ`` around the pooled rate ``p̄`` of the family (moved inside [0, 1] when they
  leave it); the power is computed exactly over both binomial distributions with the test itself
  (Agresti-Caffo, the folded-normal or ratio p-value). For each count of one group the rejected
  counts of the other are its two tails (the statistic is monotone in it), found by bisection, so
  the sum is exact but for the first group's two binomial tails of mass 1e-20 each.
- **other metrics** (bootstrap standard errors): the normal power of the same test with the pair's
  standard error.

``samples needed`` (proportions of a group metric, not per-class rates): the equal group size from
which the power *stays* at or above 80 %. Power over a discrete distribution is not monotone in n
(it zigzags), so the sizes are scanned exactly, from 1.5 times the size of the normal approximation
(whose power there is about 90 %) downwards, and the answer is one more
than the largest scanned size whose power is below 80 %.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from audit.contract.gaptests import Estimate, PairTest, family_members, pair_arrays

__all__ = [
    "MAX_SCANNED",
    "TARGET_POWER",
    "Alternative",
    "TargetPower",
    "alternative",
    "candidate_pairs",
    "exact_power",
    "normal_power",
    "samples_for_power",
    "target_power",
    "target_samples",
]

#: The power a pass must have had against the alternative for the rule to count as testable.
TARGET_POWER = 0.8
#: The largest group size (of the normal approximation) for which :func:`samples_for_power` scans.
MAX_SCANNED = 20_000
Kind = Literal["gap", "ratio"]
_SEARCHED = 0.1  # up to this level the rejected counts are searched as two tails (see _powers)
_TAIL = 1e-20  # the mass of each tail of the first group's binomial left out


@dataclass(frozen=True)
class Alternative:
    """The true rates of the two groups under the stated alternative.

    Attributes:
        against: the alternative as the rule states it (a gap ``2τ`` or a ratio ``2ρ - 1``).
        low: the true rate of the lower group.
        high: the true rate of the higher group.
    """

    against: float
    low: float
    high: float


def alternative(kind: Kind, tolerance: float, pooled: float) -> Alternative | None:
    """The alternative of a rule (see the module docstring), placed around the pooled rate.

    Returns None when the rule states none (``τ = 0``, ``2τ >= 1``, ``ρ >= 1`` or ``ρ <= 0.5``).

    >>> alternative("gap", 0.05, 0.9)
    Alternative(against=0.1, low=0.85, high=0.95)
    >>> alternative("gap", 0.1, 0.95)  # moved inside [0, 1]
    Alternative(against=0.2, low=0.8, high=1.0)
    """
    if kind == "gap":
        if not 0.0 < tolerance < 0.5:
            return None
        gap = 2 * tolerance
        low = min(max(pooled - tolerance, 0.0), 1.0 - gap)
        return Alternative(round(gap, 12), round(low, 12), round(low + gap, 12))
    if not 0.5 < tolerance < 1.0:
        return None
    ratio = 2 * tolerance - 1
    high = min(2 * pooled / (1 + ratio), 1.0)  # the two rates average the pooled rate
    return Alternative(round(ratio, 12), round(ratio * high, 12), round(high, 12))


def _ndtr(x: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(x)


def _gap_p(a1: np.ndarray, n1: int, a2: np.ndarray, n2: int, tolerance: float) -> np.ndarray:
    """The detect p-value of :func:`audit.contract.gaptests.pair_tests` for a gap, vectorised (adjusted rates)."""
    se = np.sqrt(a1 * (1 - a1) / (n1 + 2) + a2 * (1 - a2) / (n2 + 2))
    d = np.abs(a2 - a1)
    return np.minimum(1.0, _ndtr((tolerance - d) / se) + _ndtr((-d - tolerance) / se))


def _ratio_p(a1: np.ndarray, n1: int, a2: np.ndarray, n2: int, rho: float) -> np.ndarray:
    """The detect p-value of :func:`audit.contract.gaptests.pair_tests` for a ratio ``rho < 1``, vectorised."""
    v1, v2 = a1 * (1 - a1) / (n1 + 2), a2 * (1 - a2) / (n2 + 2)
    first_high = a1 > a2
    hi, lo = np.where(first_high, a1, a2), np.where(first_high, a2, a1)
    v_hi, v_lo = np.where(first_high, v1, v2), np.where(first_high, v2, v1)
    se = np.sqrt(rho**2 * v_hi + v_lo)
    return _ndtr(-(rho * hi - lo) / se)


def exact_power(kind: Kind, tolerance: float, level: float, n1: int, n2: int, p1: float, p2: float) -> float:
    """The probability that the detect test of one pair rejects at ``level`` (exact over the binomials).

    Args:
        kind: ``gap`` (tolerance τ) or ``ratio`` (tolerance ρ < 1).
        tolerance: τ or ρ.
        level: the level the pair's p-value is compared with (``α / m``, Holm's first step).
        n1, n2: the groups' sizes (rate denominators).
        p1, p2: their true rates.

    Returns:
        ``P(p-value <= level)`` with ``k1 ~ Bin(n1, p1)``, ``k2 ~ Bin(n2, p2)`` independent and the
        p-value computed from the Agresti-Caffo adjusted rates, as the rule computes it.
    """
    return float(_powers(kind, tolerance, level, np.array([n1]), np.array([n2]), p1, p2)[0])


def _powers(
    kind: Kind, tolerance: float, level: float, n1: np.ndarray, n2: np.ndarray, p1: float, p2: float
) -> np.ndarray:
    """:func:`exact_power` for many pairs of sizes at once (one flat array over every case and count)."""
    from scipy.stats import binom

    if kind == "ratio" and not tolerance < 1.0:
        raise ValueError("the ratio power is defined for rho < 1")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1); got {level!r}")
    n1, n2 = np.asarray(n1, dtype=np.int64), np.asarray(n2, dtype=np.int64)
    if np.any(n1 < 1) or np.any(n2 < 1):
        raise ValueError("group sizes must be >= 1")
    p_of: Callable[..., np.ndarray] = _gap_p if kind == "gap" else _ratio_p
    lo1 = np.maximum(0, binom.ppf(_TAIL, n1, p1).astype(np.int64) - 1)  # the counts outside have mass < 2e-20
    hi1 = np.minimum(n1, binom.isf(_TAIL, n1, p1).astype(np.int64) + 1)
    counts = hi1 - lo1 + 1
    case = np.repeat(np.arange(len(n1)), counts)
    k1 = lo1[case] + (np.arange(case.size) - np.repeat(np.cumsum(counts) - counts, counts))
    m1, m2 = n1[case], n2[case]
    f1 = binom.pmf(k1, m1, p1)
    a1 = (k1 + 1) / (m1 + 2)

    def rejects(k2: np.ndarray) -> np.ndarray:
        return p_of(a1, m1, (k2 + 1) / (m2 + 2), m2, tolerance) <= level

    # the count of group 2 whose adjusted rate is nearest below a1 never rejects at level <= 0.1 (|d| <
    # 1 / (n2 + 2) is within 1.2 standard errors); each side of it, the rejected counts are a tail (the
    # statistic is monotone in k2; checked against full enumeration in the tests)
    centre = np.clip(np.floor(a1 * (m2 + 2) - 1).astype(np.int64), 0, m2)
    if level > _SEARCHED:  # a rule of confidence below 0.9: every count of group 2 (slower, same sum)
        out = np.zeros(len(n1))
        for i in range(len(n1)):
            mine = case == i
            k2 = np.arange(n2[i] + 1)
            a2 = (k2 + 1) / (n2[i] + 2)
            grid = p_of(a1[mine][:, None], n1[i], a2[None, :], n2[i], tolerance) <= level
            out[i] = f1[mine] @ (grid.astype(float) @ binom.pmf(k2, n2[i], p2))
        return np.clip(out, 0.0, 1.0)
    lo, hi = np.full_like(centre, -1), centre.copy()  # lower tail: its largest count (-1: none)
    while np.any(active := hi - lo > 1):
        mid = (lo + hi) // 2
        r = rejects(mid)
        lo, hi = np.where(active & r, mid, lo), np.where(active & ~r, mid, hi)
    lower = lo
    lo, hi = centre.copy(), m2 + 1  # upper tail: its smallest count (n2 + 1: none)
    while np.any(active := hi - lo > 1):
        mid = (lo + hi) // 2
        r = rejects(mid)
        lo, hi = np.where(active & ~r, mid, lo), np.where(active & r, mid, hi)
    mass = binom.cdf(lower, m2, p2) + binom.sf(hi - 1, m2, p2)
    return np.clip(np.bincount(case, weights=f1 * mass, minlength=len(n1)), 0.0, 1.0)


def _critical(tolerance: float, se: float, level: float) -> float:
    """The gap |d| at which the folded-normal p-value of a gap equals ``level``."""
    lo, hi = 0.0, tolerance + 40 * se
    for _ in range(200):
        mid = (lo + hi) / 2
        p = float(_ndtr(np.array([(tolerance - mid) / se, (-mid - tolerance) / se])).sum())
        lo, hi = (mid, hi) if p > level else (lo, mid)
    return (lo + hi) / 2


def normal_power(kind: Kind, tolerance: float, level: float, se: float, high: float = 1.0) -> float:
    """The normal power of the detect test for one pair with standard error ``se`` (non-proportions).

    A gap: ``P(|D| >= c)`` with ``D ~ N(2τ, se²)`` and ``c`` the critical gap of the folded test at
    ``level``. A ratio: the contrast ``ρ·hi - lo`` has mean ``(1 - ρ)·high`` under a true ratio of
    ``2ρ - 1`` (``high`` the higher group's value); power ``1 - Φ(z_{1-level} - mean / se)``.
    """
    if se <= 0:
        return 1.0
    if kind == "gap":
        c = _critical(tolerance, se, level)
        mean = 2 * tolerance
        return float(_ndtr(np.array([(mean - c) / se, (-c - mean) / se])).sum())
    from statistics import NormalDist

    z = NormalDist().inv_cdf(1 - level)
    return float(_ndtr(np.array([(1 - tolerance) * high / se - z]))[0])


def _normal_proportion_power(kind: Kind, tolerance: float, level: float, n: int, alt: Alternative) -> float:
    """The normal approximation of :func:`exact_power` for two groups of ``n`` (brackets the exact scan)."""
    v = (alt.low * (1 - alt.low) + alt.high * (1 - alt.high)) / n
    if kind == "gap":
        return normal_power("gap", tolerance, level, math.sqrt(max(v, 1e-300)))
    se = math.sqrt((tolerance**2 * alt.high * (1 - alt.high) + alt.low * (1 - alt.low)) / n)
    return normal_power("ratio", tolerance, level, max(se, 1e-300), alt.high)


def samples_for_power(
    kind: Kind, tolerance: float, level: float, alt: Alternative, *, target: float = TARGET_POWER
) -> int | None:
    """The equal group size from which the exact power against ``alt`` stays at or above ``target``.

    See the module docstring: the sizes from 1.5 times the normal approximation's downwards are
    scanned exactly. None when the normal approximation's size exceeds :data:`MAX_SCANNED` per group
    (the scan's cost grows with the size to the power 1.5).
    """
    lo, hi = 2, 2
    while _normal_proportion_power(kind, tolerance, level, hi, alt) < target:
        hi *= 2
        if hi > 2 * MAX_SCANNED:
            return None
    while lo < hi:  # the normal approximation's size (its power is monotone in n)
        mid = (lo + hi) // 2
        if _normal_proportion_power(kind, tolerance, level, mid, alt) >= target:
            hi = mid
        else:
            lo = mid + 1
    if lo > MAX_SCANNED:
        return None
    start, stop = max(2, lo // 2), (3 * lo) // 2 + 10
    batch = 256
    top = stop
    while top >= start:  # from the top down: the first size below target found is the largest one
        sizes = np.arange(max(start, top - batch + 1), top + 1)
        power = _powers(kind, tolerance, level, sizes, sizes, alt.low, alt.high)
        below = np.nonzero(power < target)[0]
        if below.size:
            return int(sizes[below[-1]]) + 1
        top = int(sizes[0]) - 1
    return start


@dataclass(frozen=True)
class TargetPower:
    """The power of one detect target (see the module docstring).

    Attributes:
        power: the probability of failing the rule if the hardest pair differs by ``against``.
        against: the alternative (a true gap, or a true ratio).
        level: Holm's first-step level ``α / m`` the power was computed at.
        alt: the true rates of the hardest pair (None for metrics with bootstrap errors).
        exact: computed exactly over the binomials (False: normal, bootstrap standard error).
        sizes: the hardest pair's group sizes (the rates' denominators).
        per_group: the pair compares a group metric's proportions, so "samples per group" has a meaning.
    """

    power: float
    against: float
    level: float
    alt: Alternative | None
    exact: bool
    sizes: tuple[int, int]
    per_group: bool


def _pooled_rates(items: Sequence[Estimate]) -> dict[str, float]:
    totals: dict[str, list[float]] = {}
    for e in items:
        t = totals.setdefault(e.family, [0.0, 0.0])
        t[0] += e.rate * e.n
        t[1] += e.n
    return {f: (k / n if n else 0.5) for f, (k, n) in totals.items()}


def candidate_pairs(items: Sequence[Estimate], *, kind: Kind, tolerance: float, mode: str = "detect") -> list[PairTest]:
    """The pairs :func:`target_power` can pick as the hardest, without one object per pair of the target.

    Per family, the first pair (in :func:`audit.contract.gaptests.pair_tests`' order) of the largest
    standard error and the first of the largest pooled standard error: the maximum of either key over
    every pair is among them, and in the same order, so ``target_power(items, candidate_pairs(items))``
    equals ``target_power(items, pair_tests(items))`` in O(pairs) time and 8 bytes a pair of memory.
    """
    pooled = _pooled_rates(items)
    out: list[PairTest] = []
    for name, members in family_members(items).items():
        lo, hi, contrast, se, p = pair_arrays(members, kind=kind, tolerance=tolerance, mode=mode)  # type: ignore[arg-type]
        n = np.array([max(m.n, 1) for m in members], dtype=float)
        q = min(max(pooled[name], 1e-3), 1 - 1e-3)
        v_lo, v_hi = q * (1 - q) / n[lo], q * (1 - q) / n[hi]
        pooled_se = np.sqrt(v_lo + v_hi) if kind == "gap" else np.sqrt(v_lo + tolerance**2 * v_hi)
        for k in sorted({int(np.argmax(se)), int(np.argmax(pooled_se))}):
            out.append(
                PairTest(name, members[int(lo[k])], members[int(hi[k])], float(contrast[k]), float(se[k]), float(p[k]))
            )
    return out


def target_power(
    items: Sequence[Estimate],
    pairs: Sequence[PairTest],
    *,
    kind: Kind,
    tolerance: float,
    alpha: float,
    family_size: int,
    proportions: bool,
    per_group_families: frozenset[str] | set[str] = frozenset(),
) -> TargetPower | None:
    """The power of one detect target against its alternative, at its hardest pair.

    Args:
        items: the target's estimates (:func:`audit.contract.gaptests.estimates`).
        pairs: its pair tests.
        kind: ``gap`` or ``ratio``.
        tolerance: τ or ρ.
        alpha: 1 - the rule's confidence.
        family_size: the pairs of the whole rule (Holm's ``m``).
        proportions: the estimates are proportions of counts (exact power); else normal power.
        per_group_families: families that are a group metric (accuracy ...), whose sizes are samples per group.

    Returns:
        None when the rule states no alternative (see :func:`alternative`) or there is no pair.
    """
    if not pairs:
        return None
    level = alpha / max(family_size, 1)
    if not proportions:
        hardest = max(pairs, key=lambda p: p.se)
        against = alternative(kind, tolerance, 0.5)
        if against is None:
            return None
        power = normal_power(kind, tolerance, level, hardest.se, hardest.high.value)
        return TargetPower(power, against.against, level, None, False, (hardest.low.n, hardest.high.n), False)
    pooled = _pooled_rates(items)

    def pooled_se(p: PairTest) -> float:
        q = min(max(pooled[p.family], 1e-3), 1 - 1e-3)
        v_lo, v_hi = q * (1 - q) / max(p.low.n, 1), q * (1 - q) / max(p.high.n, 1)
        return math.sqrt(v_lo + v_hi) if kind == "gap" else math.sqrt(v_lo + tolerance**2 * v_hi)

    hardest = max(pairs, key=pooled_se)
    alt = alternative(kind, tolerance, pooled[hardest.family])
    if alt is None:
        return None
    small, large = sorted((hardest.low.n, hardest.high.n))
    # Either group may be the worse one: the power is the lower of the two placements (the smaller group at the
    # rate nearer 0.5 has the larger variance; for a pooled rate below 0.5 that is the higher rate).
    power = min(
        exact_power(kind, tolerance, level, small, large, alt.low, alt.high),
        exact_power(kind, tolerance, level, large, small, alt.low, alt.high),
    )
    return TargetPower(power, alt.against, level, alt, True, (small, large), hardest.family in per_group_families)


def target_samples(kind: Kind, tolerance: float, power: TargetPower) -> int | None:
    """Samples per group from which ``power``'s target keeps 80 % power (:func:`samples_for_power`).

    None where "samples per group" has no meaning (per-class rates) or the power is not exact.
    """
    if not power.exact or not power.per_group or power.alt is None:
        return None
    return samples_for_power(kind, tolerance, power.level, power.alt)
