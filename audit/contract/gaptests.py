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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal

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
    "holm",
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
    all_pairs: list[PairTest] = field(default_factory=list)


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


def pair_tests(items: Sequence[Estimate], *, kind: Kind, tolerance: float, mode: Mode) -> list[PairTest]:
    """Every pair of groups within each family, with its raw p-value (see the module docstring).

    Args:
        items: from :func:`estimates`.
        kind: ``gap`` (tolerance τ on the difference) or ``ratio`` (ρ = tolerance on min / max).
        tolerance: τ, or ρ for ratios.
        mode: ``detect`` or ``demonstrate``.

    Returns:
        One :class:`PairTest` per pair (``high`` the group with the higher estimate).
    """
    families: dict[str, list[Estimate]] = {}
    for e in items:
        families.setdefault(e.family, []).append(e)
    out = []
    for family, members in families.items():
        for i in range(len(members)):
            for j in range(i + 1, len(members)):
                a, b = members[i], members[j]
                low, high = (a, b) if a.value <= b.value else (b, a)
                if kind == "gap":
                    d = high.value - low.value
                    se = math.hypot(high.se, low.se)
                    if mode == "detect":
                        p = _folded_p(d, se, tolerance)
                    elif se <= 0:
                        p = 0.0 if d < tolerance else 1.0
                    else:
                        p = max(_cdf((d - tolerance) / se), _cdf(-(d + tolerance) / se))
                    contrast = d
                else:
                    contrast = tolerance * high.value - low.value
                    se = math.hypot(tolerance * high.se, low.se)
                    if se <= 0:
                        p = float(contrast <= 0) if mode == "detect" else float(contrast >= 0)
                    else:
                        z = contrast / se
                        p = _cdf(-z) if mode == "detect" else _cdf(z)
                        if mode == "detect" and tolerance >= 1.0:  # both orders can violate: two-sided
                            p = min(1.0, 2 * p)
                out.append(PairTest(family, low, high, contrast, se, min(max(p, 0.0), 1.0)))
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


def _pooled(items: Sequence[Estimate], family: str) -> float:
    members = [e for e in items if e.family == family]
    total = sum(e.n for e in members)
    return sum(e.rate * e.n for e in members) / total if total else 0.5


def _proportion_se(p: float, n1: int, n2: int) -> float:
    p = min(max(p, 1e-3), 1 - 1e-3)  # a pooled rate of exactly 0 or 1 still has sampling noise
    return math.sqrt(p * (1 - p) * (1 / max(n1, 1) + 1 / max(n2, 1)))


def _power_summary(
    items: Sequence[Estimate],
    pairs: Sequence[PairTest],
    *,
    kind: Kind,
    tolerance: float,
    mode: Mode,
    alpha: float,
    family_size: int,
    proportions: bool,
) -> tuple[float | None, bool | None, int | None]:
    """(min_detectable, testable, samples_needed) of one target (see the module docstring)."""
    if not pairs:
        return None, None, None

    def pair_se(pair: PairTest) -> float:
        if not proportions:
            return pair.se
        p = _pooled(items, pair.family)
        if kind == "gap":
            return _proportion_se(p, pair.low.n, pair.high.n)
        v_hi, v_lo = p * (1 - p) / max(pair.high.n, 1), p * (1 - p) / max(pair.low.n, 1)
        return math.sqrt(tolerance**2 * v_hi + v_lo)

    hardest = max(pairs, key=pair_se)
    se = pair_se(hardest)
    level = alpha / max(family_size, 1)
    p_bar = _pooled(items, hardest.family) if proportions else None
    if mode == "demonstrate":
        if kind == "gap":
            testable = tolerance > 0 and tolerance / max(se, 1e-12) >= _z(1 - alpha) + _z(0.5 + POWER / 2)
            needed = None
            if proportions and tolerance > 0 and hardest.family in PROPORTION_METRICS:
                q = min(max(p_bar, 1e-3), 1 - 1e-3)
                needed = math.ceil(2 * q * (1 - q) * ((_z(1 - alpha) + _z(0.5 + POWER / 2)) / tolerance) ** 2)
            return None, testable, needed
        p = p_bar if p_bar is not None else max(hardest.high.value, 1e-3)
        testable = p * (1 - tolerance) / max(se, 1e-12) >= _z(1 - alpha) + _z(POWER)
        return None, testable, None
    if kind == "ratio":
        p = p_bar if p_bar is not None else max(hardest.high.value, 1e-3)
        detectable = tolerance - (_z(1 - level) + _z(POWER)) * se / max(p, 1e-6)
        return detectable, None, None
    detectable = _gap_detectable(level, tolerance, se)
    if tolerance <= 0:
        return detectable, None, None
    testable = detectable <= 2 * tolerance
    needed = None
    if proportions and hardest.family in PROPORTION_METRICS:  # per-class rates have no "samples per group"
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
        pair_tests(items, kind=kind, tolerance=tolerance, mode=mode) if items is not None else None for items in targets
    ]
    flat = [p for pairs in per_target if pairs for p in pairs]
    family_size = len(flat)
    adjusted = iter(holm([p.p_value for p in flat]) if mode == "detect" else [p.p_value for p in flat])
    out = []
    for items, pairs in zip(targets, per_target):
        if pairs is None:
            out.append(
                TargetTest(None, None, 0, family_size, None, None, None, note="a group lacks what the test needs")
            )
            continue
        pairs = [PairTest(p.family, p.low, p.high, p.contrast, p.se, p.p_value, next(adjusted)) for p in pairs]
        if not pairs:
            out.append(
                TargetTest(None, None, 0, family_size, None, None, None, note="fewer than two groups to compare")
            )
            continue
        detectable, testable, needed = _power_summary(
            items or [],
            pairs,
            kind=kind,
            tolerance=tolerance,
            mode=mode,
            alpha=alpha,
            family_size=family_size,
            proportions=proportions,
        )
        if mode == "detect":
            decisive = min(pairs, key=lambda p: (p.adjusted, -abs(p.contrast)))
            p_value = decisive.adjusted
            decision = "violation" if p_value is not None and p_value <= alpha else "no_evidence"
        else:
            decisive = max(pairs, key=lambda p: (p.p_value, abs(p.contrast)))
            p_value = decisive.p_value
            decision = "within" if p_value <= alpha else "not_shown"
        out.append(
            TargetTest(decision, p_value, len(pairs), family_size, detectable, testable, needed, decisive, "", pairs)
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
