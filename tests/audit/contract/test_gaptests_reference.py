"""The gap tests' vectorised implementation against the per-pair one it replaced (the reference, verbatim).

The reference below is ``audit/contract/gaptests.py``'s ``pair_tests`` / ``holm`` / ``_power_summary`` /
``decide_targets`` as they were before the tests became arrays (commit 806e8f6), with only its
``TargetTest`` renamed to a local copy that still holds every pair. Every field of every target must
agree to 1e-12 on random inputs, ties, zero counts, two groups and degenerate standard errors.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from audit.contract.gaptests import (
    POWER,
    PROPORTION_METRICS,
    Estimate,
    PairTest,
    _cdf,
    _proportion,
    _z,
    decide_targets,
    pair_tests,
)

Mode = str
Kind = str


@dataclass(frozen=True)
class RefTarget:
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


# ---- the reference: the per-pair implementation, verbatim but for names --------------------------------


def _folded_p(d: float, se: float, tolerance: float) -> float:
    """P(|D| >= |d|) for D ~ N(tolerance, se²)."""
    if se <= 0:
        return 0.0 if abs(d) > tolerance else 1.0
    a = abs(d)
    return min(1.0, _cdf((tolerance - a) / se) + _cdf((-a - tolerance) / se))


def ref_pair_tests(items: Sequence[Estimate], *, kind: Kind, tolerance: float, mode: Mode) -> list[PairTest]:
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


def ref_holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (monotone, capped at 1), in the input order."""
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


def ref_decide_targets(
    targets: Sequence[Sequence[Estimate] | None],
    *,
    kind: Kind,
    tolerance: float,
    mode: Mode = "detect",
    confidence: float = 0.95,
    proportions: bool = True,
) -> list[RefTarget]:
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
        ref_pair_tests(items, kind=kind, tolerance=tolerance, mode=mode) if items is not None else None
        for items in targets
    ]
    flat = [p for pairs in per_target if pairs for p in pairs]
    family_size = len(flat)
    adjusted = iter(ref_holm([p.p_value for p in flat]) if mode == "detect" else [p.p_value for p in flat])
    out = []
    for items, pairs in zip(targets, per_target):
        if pairs is None:
            out.append(
                RefTarget(None, None, 0, family_size, None, None, None, note="a group lacks what the test needs")
            )
            continue
        pairs = [PairTest(p.family, p.low, p.high, p.contrast, p.se, p.p_value, next(adjusted)) for p in pairs]
        if not pairs:
            out.append(RefTarget(None, None, 0, family_size, None, None, None, note="fewer than two groups to compare"))
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
            RefTarget(decision, p_value, len(pairs), family_size, detectable, testable, needed, decisive, "", pairs)
        )
    return out


# ---- the comparison ----------------------------------------------------------------------------------------

TOL = 1e-12


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= TOL


def _same_pair(new: PairTest | None, old: PairTest | None) -> None:
    assert (new is None) == (old is None)
    if new is None or old is None:
        return
    assert (new.family, new.low.group, new.high.group) == (old.family, old.low.group, old.high.group)
    for name in ("contrast", "se", "p_value", "adjusted"):
        assert _close(getattr(new, name), getattr(old, name)), (name, new, old)


def _compare(targets, **kw) -> None:
    new = decide_targets(targets, **kw)
    old = ref_decide_targets(targets, **kw)
    assert len(new) == len(old)
    for a, b in zip(new, old):
        assert (a.decision, a.pairs, a.family_size, a.testable, a.samples_needed, a.note) == (
            b.decision,
            b.pairs,
            b.family_size,
            b.testable,
            b.samples_needed,
            b.note,
        ), (a, b)
        assert _close(a.p_value, b.p_value) and _close(a.min_detectable, b.min_detectable), (a, b)
        _same_pair(a.decisive, b.decisive)
        smallest = min((x.n for pair in b.all_pairs for x in (pair.low, pair.high)), default=None)
        assert a.smallest_n == smallest


def _proportions(rng: random.Random, k: int, family: str = "accuracy") -> list[Estimate]:
    out = []
    for g in range(k):
        n = rng.choice([0, 1, 2, 5, 30, 50, 200, 1000])
        kind = rng.random()
        correct = 0 if kind < 0.15 else n if kind < 0.3 else rng.randint(0, n)
        out.append(_proportion(family, f"g{g}", correct, n))
    return out


def _wald(rng: random.Random, k: int, family: str = "ece") -> list[Estimate]:
    out = []
    for g in range(k):
        value = rng.choice([0.05, 0.10, rng.random() * 0.3])  # ties on purpose
        se = rng.choice([0.0, 0.01, rng.random() * 0.05])  # a zero standard error on purpose
        out.append(Estimate(family, f"g{g}", value, se, rng.randint(1, 500), value))
    return out


CASES = [
    (kind, mode, tolerance)
    for kind, tolerances in (("gap", (0.0, 0.02, 0.05, 0.2)), ("ratio", (0.8, 0.95, 1.0)))
    for mode in ("detect", "demonstrate")
    for tolerance in tolerances
]


@pytest.mark.parametrize(("kind", "mode", "tolerance"), CASES)
def test_decide_targets_matches_the_per_pair_reference(kind: str, mode: str, tolerance: float) -> None:
    rng = random.Random(f"{kind}{mode}{tolerance}")
    for trial in range(15):
        proportions = trial % 2 == 0
        make = _proportions if proportions else _wald
        targets: list[list[Estimate] | None] = []
        for _ in range(rng.randint(1, 4)):
            k = rng.choice([1, 2, 2, 3, 7, 25])
            if proportions and rng.random() < 0.4:  # per-class rates: several families in one target
                items = [e for c in range(3) for e in _proportions(rng, k, f"tpr[{c}]")]
            else:
                items = make(rng, k)
            targets.append(items)
        if rng.random() < 0.2:
            targets.append(None)
        _compare(
            targets,
            kind=kind,
            tolerance=tolerance,
            mode=mode,
            confidence=rng.choice([0.9, 0.95, 0.99]),
            proportions=proportions,
        )


def test_identical_groups_tie_everywhere() -> None:
    for mode in ("detect", "demonstrate"):
        same = [_proportion("accuracy", f"g{i}", 45, 50) for i in range(6)]
        _compare([same, same[:2]], kind="gap", tolerance=0.05, mode=mode)
        _compare([same], kind="ratio", tolerance=0.9, mode=mode)
        zeros = [_proportion("accuracy", f"g{i}", 0, 0) for i in range(3)]
        _compare([zeros], kind="gap", tolerance=0.0, mode=mode)


def test_a_violation_is_decided_like_the_reference() -> None:
    rng = random.Random(7)
    items = [_proportion("accuracy", f"g{i}", rng.randint(170, 185), 200) for i in range(30)]
    items.append(_proportion("accuracy", "bad", 120, 200))
    new, old = (
        decide_targets([items], kind="gap", tolerance=0.05)[0],
        ref_decide_targets([items], kind="gap", tolerance=0.05)[0],
    )
    assert new.decision == old.decision == "violation"
    assert new.decisive is not None and "bad" in (new.decisive.low.group, new.decisive.high.group)
    _compare([items, items[:5]], kind="gap", tolerance=0.05)


@pytest.mark.parametrize(("kind", "mode", "tolerance"), CASES)
def test_pair_tests_match_the_reference(kind: str, mode: str, tolerance: float) -> None:
    rng = random.Random(f"pairs{kind}{mode}{tolerance}")
    items = _proportions(rng, 8) + _wald(rng, 6) + _proportions(rng, 1, "tpr[0]")
    new, old = (
        pair_tests(items, kind=kind, tolerance=tolerance, mode=mode),
        ref_pair_tests(items, kind=kind, tolerance=tolerance, mode=mode),
    )
    assert len(new) == len(old) == 28 + 15
    for a, b in zip(new, old):
        _same_pair(a, b)
