"""Tests of differences between groups: the one definition behind every gap and ratio decision.

A gap rule (``aggregate: gap, max: τ``), a ratio rule (``aggregate: ratio, min: ρ``) or an
equalized-odds / demographic-parity rule (``max: τ``) compares groups whose estimates are
noisy. Comparing the point spread with the tolerance fails a fair model more often the more
groups there are (the largest of many noisy differences is large). These tests decide instead:

- ``detect`` (the default): the rule fails only when the data show, at the rule's confidence
  ``1 - α``, that some difference exceeds the tolerance. Every pair of groups (within each
  class and rate for equalized odds and demographic parity) is tested, and the p-values are
  corrected with Holm's step-down method across all pairs of all the rule's targets (a glob
  such as ``attribute: "*"`` adds every target's pairs to one family).
- ``demonstrate``: the rule passes only when the data show that every difference is within
  the tolerance (an equivalence test per pair). Passing needs every pair to be shown, so no
  correction is needed (an intersection-union test is level α as it stands).

Per pair the statistic is normal:

- proportions (accuracy, top-k accuracy, per-class TPR / FPR, selection rates) use the
  Agresti-Caffo adjustment: each group's estimate is ``(k + 1) / (n + 2)`` with variance
  ``p(1 - p) / (n + 2)`` (one success and one failure added to each group); the counts come
  from the stored confusion matrices, so the test is exact under any split of the run;
- other metrics (ECE, Brier, NLL, macro-F1, balanced accuracy, the debiased calibration
  error) use the group's estimate with the standard error read from its stored bootstrap
  interval, ``(high - low) / (2 z)`` (a Wald test with bootstrap standard errors).

With ``d`` the difference, ``se`` its standard error and ``τ`` the tolerance:

- gap, detect: H0 ``|d| <= τ``; p-value ``P(|D| >= |d̂|)`` for ``D ~ N(τ, se²)`` (the folded
  normal, exact at the boundary ``|d| = τ``; two-sided when ``τ = 0``);
- gap, demonstrate: H0 ``|d| >= τ``; two one-sided tests, p-value the larger of
  ``Φ((d̂ - τ)/se)`` and ``1 - Φ((d̂ + τ)/se)``;
- ratio ``ρ`` (``min / max >= ρ``), per pair with ``hi`` the higher estimate: contrast
  ``c = ρ·hi - lo`` with ``se² = ρ² se_hi² + se_lo²``; detect: H0 ``c <= 0``, p-value
  ``1 - Φ(ĉ/se)``; demonstrate: H0 ``c >= 0``, p-value ``Φ(ĉ/se)``.

Power: the *minimum detectable* value is the smallest true gap (for ratio rules: the largest
true ratio) that the rule detects with 80 % probability, for the pair with the largest
standard error (the smallest groups), at Holm's first-step level ``α / m`` (``m`` the number of
pairs tested); proportions use the pooled rate ``p̄`` of the target's groups for the variance.
A detect rule with tolerance ``τ > 0`` is *testable* when its minimum detectable gap is at
most ``2τ``; a demonstrate rule when a true gap of 0 would be shown within ``τ`` with 80 %
probability. For proportion gaps the samples per group needed for that are given.

Cost: each pair's statistic is computed once, on arrays (O(k²) per family of k groups, no object
per pair; 8 bytes of memory a pair), Holm's correction from one sort of all the p-values, and the
pooled rate once per family; 1,000 groups × 10 classes take seconds (benchmarks/bench_gaptests.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
from scipy.special import erfc

from audit.contract.metric_specs import (
    ACCURACY,
    DEMOGRAPHIC_PARITY_DIFFERENCE,
    proportion_metric_names,
    rate_difference_names,
)
from audit.contract.participation import takes_part

__all__ = [
    "PROPORTION_METRICS",
    "RATE_DIFFERENCES",
    "Estimate",
    "PairTest",
    "TargetTest",
    "decide_targets",
    "entry_tests",
    "estimates",
    "family_members",
    "holm",
    "pair_arrays",
    "pair_tests",
    "rule_too_few_to_tell",
    "stored_decision",
    "too_few_to_tell",
]

Mode = Literal["detect", "demonstrate"]
Kind = Literal["gap", "ratio"]

#: Group metrics that are proportions of counts stored in the group (tested with Agresti-Caffo; from the registry).
PROPORTION_METRICS = proportion_metric_names()
#: Fairness-entry statistics that are the largest per-class difference of a rate across groups.
RATE_DIFFERENCES = rate_difference_names()
POWER = 0.8
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Estimate:
    """One group's estimate within one family (a metric, or one class and rate).

    Attributes:
        family: what is compared (``accuracy``, ``tpr[3]``, ``fpr[3]``, ``selection[3]`` ...).
        group: the group's value.
        value: the estimate the test uses (Agresti-Caffo adjusted for proportions).
        se: its standard error.
        n: samples behind it (the rate's denominator).
        rate: the unadjusted estimate (k / n for proportions).
    """

    family: str
    group: str
    value: float
    se: float
    n: int
    rate: float


@dataclass(frozen=True)
class PairTest:
    """One pair of groups within one family."""

    family: str
    low: Estimate
    high: Estimate
    contrast: float
    se: float
    p_value: float
    adjusted: float | None = None


@dataclass(frozen=True)
class TargetTest:
    """The test of one target (one condition and grouping) of a rule.

    Attributes:
        decision: ``violation`` / ``no_evidence`` (detect) or ``within`` / ``not_shown``
            (demonstrate); None when fewer than two groups (or no defined rate) can be compared.
        p_value: detect: the smallest Holm-adjusted p-value of the target's pairs; demonstrate:
            the largest per-pair p-value (the pair hardest to show within tolerance).
        pairs: the pairs tested for this target.
        family_size: pairs in the whole family (every target of the rule).
        min_detectable: see the module docstring (a gap, or a ratio for ratio rules).
        testable: see the module docstring; None where it is not defined (τ = 0).
        samples_needed: samples per group for the rule to be testable (proportion gaps and
            ratios; None otherwise).
        decisive: the pair with the smallest adjusted p (detect) or the largest p (demonstrate).
        note: why the target could not be tested, when it could not.
        smallest_n: the fewest samples behind an estimate of the target's pairs (None untested).
    """

    decision: str | None
    p_value: float | None
    pairs: int
    family_size: int
    min_detectable: float | None
    testable: bool | None
    samples_needed: int | None
    decisive: PairTest | None = None
    note: str = ""
    smallest_n: int | None = None


def too_few_to_tell(decision: str | None, testable: bool | None) -> bool:
    """Whether a test's outcome is "these data are too few to tell": the one definition of "cannot be tested".

    True when the target is not testable (see the module docstring) and the test showed nothing
    (``no_evidence`` or ``not_shown``). A test that showed something (a ``violation``, or the rule
    kept ``within`` its tolerance) was decided by the data, whatever its power. The policy's rule
    message and the report's summary both say "cannot be tested" from this function only.

    >>> too_few_to_tell("violation", False), too_few_to_tell("no_evidence", False)
    (False, True)
    """
    return testable is False and decision in ("no_evidence", "not_shown")


def stored_decision(rule: Mapping[str, Any]) -> str | None:
    """The decision of a tested rule as stored in results.json (``policy.rules[]``), or None.

    The decision follows from the rule's ``test`` and its judged outcome: a tested rule with a
    p-value fails (``fail``, or ``warn`` when not blocking) exactly when the test showed a
    violation (detect) or did not show the rule kept (demonstrate).
    """
    if rule.get("p_value") is None:
        return None
    failed = {"fail": True, "warn": True, "pass": False}.get(str(rule.get("status")))
    if failed is None:
        return None
    if rule.get("test") == "detect":
        return "violation" if failed else "no_evidence"
    if rule.get("test") == "demonstrate":
        return "not_shown" if failed else "within"
    return None


def rule_too_few_to_tell(rule: Mapping[str, Any]) -> bool:
    """:func:`too_few_to_tell` of a rule result as stored in results.json."""
    return too_few_to_tell(stored_decision(rule), rule.get("testable"))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _cdf(x: float) -> float:
    """The standard normal CDF, accurate in both tails (``statistics.NormalDist.cdf`` is not in the lower one)."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _z(q: float) -> float:
    return _NORMAL.inv_cdf(q)


def _proportion(family: str, group: str, k: int, n: int) -> Estimate:
    adjusted = (k + 1) / (n + 2)
    return Estimate(family, group, adjusted, math.sqrt(adjusted * (1 - adjusted) / (n + 2)), n, k / n if n else 0.0)


def _confusion(group: Mapping[str, Any]) -> list[list[int]] | None:
    cm = group.get("confusion")
    if not isinstance(cm, list) or not cm or not all(isinstance(row, list) for row in cm):
        return None
    return cm


def estimates(
    groups: Sequence[Mapping[str, Any]],
    statistic: str,
    *,
    min_group_size: int,
    min_positives: int = 0,
    level: float = 0.95,
) -> list[Estimate] | None:
    """Per-group estimates of the groups that take part, for one statistic.

    Args:
        groups: one dict per group (``value``, ``n``, ``confusion`` and the group metrics,
            with ``<metric>_ci`` intervals), as stored in results.json.
        statistic: a group metric (the gap or ratio of it is tested), or
            ``equalized_odds_difference`` / ``demographic_parity_difference``.
        min_group_size: groups with fewer samples take no part
            (:func:`audit.contract.participation.takes_part`).
        min_positives: per-class rates with a smaller denominator (positives of the class
            for a TPR, negatives for an FPR) are left out; an undefined rate (denominator 0)
            has no estimate and is always left out of a test.
        level: the coverage of the stored intervals (``evaluation.confidence_level``).

    Returns:
        The estimates, or None when a group that takes part lacks what the test needs
        (a confusion matrix, a value or an interval).
    """
    taking_part = [g for g in groups if takes_part(g.get("n"), min_group_size)]
    out: list[Estimate] = []
    z = _z(0.5 + level / 2)
    for g in taking_part:
        name, n = str(g.get("value")), int(g["n"])
        if statistic in RATE_DIFFERENCES or statistic == ACCURACY.name:
            cm = _confusion(g)
            if cm is None:
                return None
            k = len(cm)
            diag = [cm[c][c] for c in range(k)]
            if statistic == ACCURACY.name:
                out.append(_proportion(ACCURACY.name, name, sum(diag), n))
                continue
            positives = [sum(cm[c]) for c in range(k)]
            predicted = [sum(cm[r][c] for r in range(k)) for c in range(k)]
            for c in range(k):
                if statistic == DEMOGRAPHIC_PARITY_DIFFERENCE.name:
                    out.append(_proportion(f"selection[{c}]", name, predicted[c], n))
                    continue
                negatives, false_pos = n - positives[c], predicted[c] - diag[c]
                if positives[c] > 0 and positives[c] >= min_positives:
                    out.append(_proportion(f"tpr[{c}]", name, diag[c], positives[c]))
                if negatives > 0 and negatives >= min_positives:
                    out.append(_proportion(f"fpr[{c}]", name, false_pos, negatives))
            continue
        value = _number(g.get(statistic))
        if value is None:
            return None
        if statistic in PROPORTION_METRICS:
            out.append(_proportion(statistic, name, round(value * n), n))
            continue
        ci = g.get(f"{statistic}_ci")
        if not isinstance(ci, (list, tuple)) or len(ci) != 2 or None in (_number(ci[0]), _number(ci[1])):
            return None
        se = max(float(ci[1]) - float(ci[0]), 0.0) / (2 * z)
        out.append(Estimate(statistic, name, value, se, n, value))
    return out


def _folded_p(d: float, se: float, tolerance: float) -> float:
    """P(|D| >= |d|) for D ~ N(tolerance, se²)."""
    if se <= 0:
        return 0.0 if abs(d) > tolerance else 1.0
    a = abs(d)
    return min(1.0, _cdf((tolerance - a) / se) + _cdf((-a - tolerance) / se))


def _cdf_array(x: np.ndarray) -> np.ndarray:
    """:func:`_cdf` elementwise."""
    return 0.5 * erfc(-x / math.sqrt(2.0))


def _order(members: Sequence[Estimate]) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``(i, j)``, ``i < j`` in row order, as ``(lo, hi)``: the member with the lower / higher
    estimate (``lo`` the first on a tie), as :class:`PairTest` orders them."""
    i, j = np.triu_indices(len(members), 1)
    value = np.array([e.value for e in members], dtype=float)
    first_low = value[i] <= value[j]
    return np.where(first_low, i, j), np.where(first_low, j, i)


def _contrast(
    members: Sequence[Estimate], lo: np.ndarray, hi: np.ndarray, *, kind: Kind, tolerance: float
) -> np.ndarray:
    value = np.array([e.value for e in members], dtype=float)
    return value[hi] - value[lo] if kind == "gap" else tolerance * value[hi] - value[lo]


def _statistics(
    members: Sequence[Estimate], lo: np.ndarray, hi: np.ndarray, *, kind: Kind, tolerance: float, mode: Mode
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(contrast, se, p)`` of the pairs ``(lo, hi)``, vectorised (the module docstring's tests, pair by pair)."""
    sd = np.array([e.se for e in members], dtype=float)
    contrast = _contrast(members, lo, hi, kind=kind, tolerance=tolerance)
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "gap":
            se = np.hypot(sd[hi], sd[lo])
            if mode == "detect":
                a = np.abs(contrast)
                tested = np.minimum(1.0, _cdf_array((tolerance - a) / se) + _cdf_array((-a - tolerance) / se))
                degenerate = np.where(a > tolerance, 0.0, 1.0)
            else:
                tested = np.maximum(_cdf_array((contrast - tolerance) / se), _cdf_array(-(contrast + tolerance) / se))
                degenerate = np.where(contrast < tolerance, 0.0, 1.0)
        else:
            se = np.hypot(tolerance * sd[hi], sd[lo])
            z = contrast / se
            if mode == "detect":
                tested = _cdf_array(-z)
                if tolerance >= 1.0:  # both orders can violate: two-sided
                    tested = np.minimum(1.0, 2 * tested)
                degenerate = (contrast <= 0).astype(float)
            else:
                tested = _cdf_array(z)
                degenerate = (contrast >= 0).astype(float)
        p = np.clip(np.where(se <= 0, degenerate, tested), 0.0, 1.0)
    return contrast, se, p


@dataclass(frozen=True)
class _Family:
    """One family of a target: its members and the raw p-value of every pair (in :func:`_order`'s order).

    Only the p-values are kept (8 bytes a pair), so a target of a thousand groups and twenty
    per-class rates holds 80 MB, not ten million :class:`PairTest` objects; the rest is
    recomputed for the few pairs that need it.
    """

    name: str
    members: list[Estimate]
    kind: Kind
    tolerance: float
    mode: Mode
    p: np.ndarray

    def pair(self, index: int, adjusted: float | None = None) -> PairTest:
        """The :class:`PairTest` of pair ``index`` (computed as for every pair)."""
        lo, hi = _order(self.members)
        lo, hi = lo[index : index + 1], hi[index : index + 1]
        contrast, se, p = _statistics(self.members, lo, hi, kind=self.kind, tolerance=self.tolerance, mode=self.mode)
        return PairTest(
            self.name,
            self.members[int(lo[0])],
            self.members[int(hi[0])],
            float(contrast[0]),
            float(se[0]),
            float(p[0]),
            adjusted,
        )


def _families(items: Sequence[Estimate], *, kind: Kind, tolerance: float, mode: Mode) -> list[_Family]:
    """The families of one target's estimates (in the order of their first estimate), with their pairs' p-values."""
    grouped: dict[str, list[Estimate]] = {}
    for e in items:
        grouped.setdefault(e.family, []).append(e)
    how: dict[str, Any] = {"kind": kind, "tolerance": tolerance, "mode": mode}
    return [
        _Family(name, members, kind, tolerance, mode, _statistics(members, *_order(members), **how)[2])
        for name, members in grouped.items()
        if len(members) > 1
    ]


def family_members(items: Sequence[Estimate]) -> dict[str, list[Estimate]]:
    """The families of one target's estimates with at least two members, in the order of their first estimate."""
    grouped: dict[str, list[Estimate]] = {}
    for e in items:
        grouped.setdefault(e.family, []).append(e)
    return {name: members for name, members in grouped.items() if len(members) > 1}


def pair_arrays(
    members: Sequence[Estimate], *, kind: Kind, tolerance: float, mode: Mode
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(lo, hi, contrast, se, p)`` of every pair of one family, as arrays in :func:`pair_tests`' order.

    For callers that need one or two pairs of a large family (the hardest pair of a power calculation)
    without building one object per pair.
    """
    lo, hi = _order(members)
    contrast, se, p = _statistics(members, lo, hi, kind=kind, tolerance=tolerance, mode=mode)
    return lo, hi, contrast, se, p


def pair_tests(items: Sequence[Estimate], *, kind: Kind, tolerance: float, mode: Mode) -> list[PairTest]:
    """Every pair of groups within each family, with its raw p-value (see the module docstring).

    One object per pair: for a few groups (:func:`decide_targets` works on arrays and never builds
    this list).

    Args:
        items: from :func:`estimates`.
        kind: ``gap`` (tolerance τ on the difference) or ``ratio`` (ρ = tolerance on min / max).
        tolerance: τ, or ρ for ratios.
        mode: ``detect`` or ``demonstrate``.

    Returns:
        One :class:`PairTest` per pair (``high`` the group with the higher estimate), families in
        the order of their first estimate, pairs ``(i, j)`` with ``i < j`` in the order of the items.
    """
    out = []
    for f in _families(items, kind=kind, tolerance=tolerance, mode=mode):
        lo, hi = _order(f.members)
        contrast, se, p = _statistics(f.members, lo, hi, kind=kind, tolerance=tolerance, mode=mode)
        out += [
            PairTest(f.name, f.members[int(a)], f.members[int(b)], float(c), float(s), float(q))
            for a, b, c, s, q in zip(lo, hi, contrast, se, p)
        ]
    return out


def decide_pairs(
    pairs: Sequence[tuple[float, float]], *, tolerance: float, mode: Mode, alpha: float
) -> tuple[bool, float | None]:
    """Decide a gap rule from stored pair differences and standard errors (a detector's recall gaps).

    Each pair is ``(d, se)``, ``d >= 0`` the difference of its two groups; the p-values are the module
    docstring's for gaps. ``detect``: the gap is shown to exceed ``tolerance`` when the smallest
    Holm-adjusted p-value is below ``alpha``; ``demonstrate``: every pair is shown within ``tolerance``
    when the largest p-value is below ``alpha`` (an intersection-union test).

    Returns:
        ``(shown, p)``: whether the data show it, and the p-value that decided (None without a pair).
    """
    if not pairs:
        return False, None
    if mode == "detect":
        adjusted = holm([_folded_p(d, se, tolerance) for d, se in pairs])
        p = min(adjusted)
        return p < alpha, p
    ps = []
    for d, se in pairs:
        if se <= 0:
            ps.append(0.0 if d < tolerance else 1.0)
        else:
            ps.append(max(_cdf((d - tolerance) / se), _cdf(-(d + tolerance) / se)))
    p = max(ps)
    return p < alpha, p


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (monotone, capped at 1), in the input order.

    Example:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _critical(alpha: float, t: float) -> float:
    """k with P(|Z + t| >= k) = alpha (the folded test's critical value, standardised)."""
    lo, hi = 0.0, t + 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        size = (1 - _cdf(mid - t)) + _cdf(-mid - t)
        lo, hi = (mid, hi) if size > alpha else (lo, mid)
    return (lo + hi) / 2


def _gap_detectable(alpha: float, tolerance: float, se: float) -> float:
    """The true gap detected with probability POWER by the folded test at level alpha."""
    if se <= 0:
        return tolerance
    k = _critical(alpha, tolerance / se)
    lo, hi = tolerance / se, tolerance / se + k + 40
    for _ in range(200):
        mid = (lo + hi) / 2
        power = (1 - _cdf(k - mid)) + _cdf(-k - mid)
        lo, hi = (mid, hi) if power < POWER else (lo, mid)
    return se * (lo + hi) / 2


def _pooled(members: Sequence[Estimate]) -> float:
    """The pooled rate of one family's groups (0.5 without samples)."""
    total = sum(e.n for e in members)
    return sum(e.rate * e.n for e in members) / total if total else 0.5


def _proportion_se(p: float, n1: int, n2: int) -> float:
    p = min(max(p, 1e-3), 1 - 1e-3)  # a pooled rate of exactly 0 or 1 still has sampling noise
    return math.sqrt(p * (1 - p) * (1 / max(n1, 1) + 1 / max(n2, 1)))


def _pair_se(family: _Family, *, kind: Kind, tolerance: float, proportions: bool) -> np.ndarray:
    """The standard error of each pair's contrast used for power (pooled within the family for proportions)."""
    lo, hi = _order(family.members)
    if not proportions:
        sd = np.array([e.se for e in family.members], dtype=float)
        return np.hypot(sd[hi], sd[lo]) if kind == "gap" else np.hypot(tolerance * sd[hi], sd[lo])
    p = _pooled(family.members)
    n = np.array([max(e.n, 1) for e in family.members], dtype=float)
    if kind == "gap":
        q = min(max(p, 1e-3), 1 - 1e-3)  # as _proportion_se, elementwise
        return np.sqrt(q * (1 - q) * (1 / n[lo] + 1 / n[hi]))
    v = p * (1 - p) / n
    return np.sqrt(tolerance**2 * v[hi] + v[lo])


def _power_summary(
    families: Sequence[_Family],
    *,
    kind: Kind,
    tolerance: float,
    mode: Mode,
    alpha: float,
    family_size: int,
    proportions: bool,
) -> tuple[float | None, bool | None, int | None]:
    """(min_detectable, testable, samples_needed) of one target (see the module docstring)."""
    hardest: tuple[float, _Family, PairTest] | None = None
    best: tuple[float, _Family, int] | None = None
    for f in families:
        ses = _pair_se(f, kind=kind, tolerance=tolerance, proportions=proportions)
        x = int(np.argmax(ses))  # the first pair with the largest standard error, as max() over the pairs
        if best is None or ses[x] > best[0]:
            best = (float(ses[x]), f, x)
    if best is not None:
        hardest = (best[0], best[1], best[1].pair(best[2]))
    if hardest is None:
        return None, None, None
    se, family, pair = hardest
    level = alpha / max(family_size, 1)
    p_bar = _pooled(family.members) if proportions else None
    if mode == "demonstrate":
        if kind == "gap":
            testable = tolerance > 0 and tolerance / max(se, 1e-12) >= _z(1 - alpha) + _z(0.5 + POWER / 2)
            needed = None
            if proportions and tolerance > 0 and family.name in PROPORTION_METRICS:
                q = min(max(p_bar, 1e-3), 1 - 1e-3)
                needed = math.ceil(2 * q * (1 - q) * ((_z(1 - alpha) + _z(0.5 + POWER / 2)) / tolerance) ** 2)
            return None, testable, needed
        p = p_bar if p_bar is not None else max(pair.high.value, 1e-3)
        testable = p * (1 - tolerance) / max(se, 1e-12) >= _z(1 - alpha) + _z(POWER)
        return None, testable, None
    if kind == "ratio":
        p = p_bar if p_bar is not None else max(pair.high.value, 1e-3)
        detectable = tolerance - (_z(1 - level) + _z(POWER)) * se / max(p, 1e-6)
        return detectable, None, None
    detectable = _gap_detectable(level, tolerance, se)
    if tolerance <= 0:
        return detectable, None, None
    testable = detectable <= 2 * tolerance
    needed = None
    if proportions and family.name in PROPORTION_METRICS:  # per-class rates have no "samples per group"
        q = p_bar if p_bar is not None else 0.5
        lo, hi = 2, 10**9
        while lo < hi:  # smallest equal group size whose detectable gap is at most 2τ
            mid = (lo + hi) // 2
            if _gap_detectable(level, tolerance, _proportion_se(q, mid, mid)) <= 2 * tolerance:
                hi = mid
            else:
                lo = mid + 1
        needed = lo
    return detectable, testable, needed


def _holm_curve(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sorted p, Holm-adjusted p at each rank)``: :func:`holm` without an index array.

    Equal p-values have equal adjusted values (the step-down never rises within a tie), so a
    pair's adjusted p is the curve's value at the first rank of its p.
    """
    ranked = np.sort(p, kind="stable")
    adjusted = np.arange(len(ranked), 0, -1, dtype=float)  # m - rank, as in holm()
    adjusted *= ranked
    np.minimum(adjusted, 1.0, out=adjusted)
    np.maximum.accumulate(adjusted, out=adjusted)
    return ranked, adjusted


def _decisive(families: Sequence[_Family], bound: float, adjusted: float, *, equal: bool) -> PairTest:
    """The pair with the largest ``|contrast|`` among those with ``p <= bound`` (``p == bound`` when ``equal``),
    the first on a tie (as ``min``/``max`` over the pairs in order)."""
    best: tuple[float, _Family, int] | None = None
    for f in families:
        mask = f.p == bound if equal else f.p <= bound
        if not mask.any():
            continue
        contrast = _contrast(f.members, *_order(f.members), kind=f.kind, tolerance=f.tolerance)
        size = np.where(mask, np.abs(contrast), -np.inf)
        x = int(np.argmax(size))
        if best is None or size[x] > best[0]:
            best = (float(size[x]), f, x)
    assert best is not None, "the bound is one of the pairs' p-values"
    _, f, x = best
    return f.pair(x, adjusted)


def decide_targets(
    targets: Sequence[Sequence[Estimate] | None],
    *,
    kind: Kind,
    tolerance: float,
    mode: Mode = "detect",
    confidence: float = 0.95,
    proportions: bool = True,
) -> list[TargetTest]:
    """Test every target of one rule, corrected across all their pairs (detect mode).

    Cost: O(m log m) time for the m pairs of all targets (each pair's statistic once, a sort for
    Holm) and 8 bytes a pair of memory; no object is built per pair.

    Args:
        targets: per target (condition × grouping), its estimates from :func:`estimates`,
            or None where they could not be formed.
        kind: ``gap`` or ``ratio``.
        tolerance: the rule's τ (gap) or ρ (ratio).
        mode: ``detect`` or ``demonstrate``.
        confidence: 1 - α.
        proportions: the estimates are proportions (pooled variance for the power summary).

    Returns:
        One :class:`TargetTest` per target, in order.

    Raises:
        ValueError: ``confidence`` outside (0, 1), or a negative tolerance.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0; got {tolerance!r}")
    alpha = 1.0 - confidence
    per_target = [
        _families(items, kind=kind, tolerance=tolerance, mode=mode) if items is not None else None for items in targets
    ]
    family_size = sum(len(f.p) for fams in per_target if fams for f in fams)
    curve = None
    if mode == "detect" and family_size:
        curve = _holm_curve(np.concatenate([f.p for fams in per_target if fams for f in fams]))
    out = []
    for families in per_target:
        if families is None:
            out.append(
                TargetTest(None, None, 0, family_size, None, None, None, note="a group lacks what the test needs")
            )
            continue
        pairs = sum(len(f.p) for f in families)
        if not pairs:
            out.append(
                TargetTest(None, None, 0, family_size, None, None, None, note="fewer than two groups to compare")
            )
            continue
        detectable, testable, needed = _power_summary(
            families,
            kind=kind,
            tolerance=tolerance,
            mode=mode,
            alpha=alpha,
            family_size=family_size,
            proportions=proportions,
        )
        if curve is not None:
            ranked, adjusted = curve
            smallest = min(float(f.p.min()) for f in families)
            p_value = float(adjusted[np.searchsorted(ranked, smallest, side="left")])
            last = int(np.searchsorted(adjusted, p_value, side="right")) - 1  # the last rank adjusted to p_value
            bound = ranked[last]
            decisive = _decisive(families, float(bound), p_value, equal=False)
            decision = "violation" if p_value <= alpha else "no_evidence"
        else:
            p_value = max(float(f.p.max()) for f in families)
            decisive = _decisive(families, p_value, p_value, equal=True)
            decision = "within" if p_value <= alpha else "not_shown"
        smallest_n = min(e.n for f in families for e in f.members)
        out.append(
            TargetTest(decision, p_value, pairs, family_size, detectable, testable, needed, decisive, "", smallest_n)
        )
    return out


def entry_tests(
    groups: Sequence[Mapping[str, Any]], *, statistics: Sequence[str], min_group_size: int, level: float = 0.95
) -> dict[str, dict[str, Any]]:
    """The stored test of each group statistic of one fairness entry: is there any difference?

    For each statistic (``<metric>_gap`` for a group metric, or a rate difference), the detect
    test with tolerance 0 at confidence ``level`` over the entry's own pairs.

    Returns:
        ``{key: {p_value, pairs, min_detectable, method}}`` for every statistic that could be
        tested (``key`` is ``<metric>_gap`` or the rate difference's name).
    """
    out: dict[str, dict[str, Any]] = {}
    for statistic in statistics:
        items = estimates(groups, statistic, min_group_size=min_group_size, level=level)
        if items is None:
            continue
        proportions = statistic in PROPORTION_METRICS or statistic in RATE_DIFFERENCES
        (result,) = decide_targets([items], kind="gap", tolerance=0.0, confidence=level, proportions=proportions)
        if result.decision is None:
            continue
        key = statistic if statistic in RATE_DIFFERENCES else f"{statistic}_gap"
        out[key] = {
            "p_value": result.p_value,
            "pairs": result.pairs,
            "min_detectable": result.min_detectable,
            "method": "agresti-caffo" if proportions else "wald-bootstrap-se",
        }
    return out
