"""Group-difference tests against statsmodels (Agresti-Caffo, TOST, Holm) and scipy."""

from __future__ import annotations

import math

import pytest
from scipy.stats import norm
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import test_proportions_2indep as two_proportions_test
from statsmodels.stats.proportion import tost_proportions_2indep

from audit.contract.gaptests import Estimate, _proportion, decide_targets, estimates, holm, pair_tests

CASES = [(90, 100, 70, 100, 0.05), (45, 50, 40, 60, 0.0), (280, 300, 250, 290, 0.02), (29, 30, 25, 30, 0.1)]


@pytest.mark.parametrize(("k1", "n1", "k2", "n2", "tol"), CASES)
def test_detect_p_value_is_the_folded_agresti_caffo_test(k1, n1, k2, n2, tol):
    (pair,) = pair_tests(
        [_proportion("a", "x", k1, n1), _proportion("a", "y", k2, n2)], kind="gap", tolerance=tol, mode="detect"
    )
    sm = two_proportions_test(k1, n1, k2, n2, value=tol, method="agresti-caffo", compare="diff", alternative="larger")
    std = (pair.contrast - tol) / sm.statistic
    assert math.isclose(std, pair.se, rel_tol=1e-9)
    expected = sm.pvalue + norm.cdf((-pair.contrast - tol) / std)  # P(|D| >= |d|), D ~ N(tol, se^2)
    assert math.isclose(pair.p_value, expected, rel_tol=1e-9, abs_tol=1e-15)
    if tol == 0:  # the folded test is the two-sided test
        two = two_proportions_test(k1, n1, k2, n2, value=0, method="agresti-caffo", compare="diff")
        assert math.isclose(pair.p_value, two.pvalue, rel_tol=1e-9)


@pytest.mark.parametrize(("k1", "n1", "k2", "n2", "tol"), [c for c in CASES if c[4] > 0])
def test_demonstrate_p_value_is_statsmodels_tost(k1, n1, k2, n2, tol):
    (pair,) = pair_tests(
        [_proportion("a", "x", k1, n1), _proportion("a", "y", k2, n2)], kind="gap", tolerance=tol, mode="demonstrate"
    )
    sm = tost_proportions_2indep(k1, n1, k2, n2, -tol, tol, method="agresti-caffo", compare="diff")
    assert math.isclose(pair.p_value, sm.pvalue, rel_tol=1e-9, abs_tol=1e-15)


def test_ratio_contrast_by_hand():
    hi, lo = _proportion("a", "x", 90, 100), _proportion("a", "y", 70, 100)
    (pair,) = pair_tests([lo, hi], kind="ratio", tolerance=0.9, mode="detect")
    p_hi, p_lo = 91 / 102, 71 / 102
    c = 0.9 * p_hi - p_lo
    se = math.sqrt(0.81 * p_hi * (1 - p_hi) / 102 + p_lo * (1 - p_lo) / 102)
    assert math.isclose(pair.contrast, c, rel_tol=1e-12) and math.isclose(pair.p_value, norm.sf(c / se), rel_tol=1e-9)
    (shown,) = pair_tests([lo, hi], kind="ratio", tolerance=0.9, mode="demonstrate")
    assert math.isclose(shown.p_value, norm.cdf(c / se), rel_tol=1e-9)


def test_holm_matches_statsmodels():
    p = [0.001, 0.2, 0.013, 0.04, 0.0105, 0.9, 0.03]
    assert holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]), abs=1e-15)


def test_min_detectable_gap_has_80_percent_power():
    groups = [
        {"value": "a", "n": 200, "confusion": [[180, 20], [0, 0]]},
        {"value": "b", "n": 300, "confusion": [[255, 45], [0, 0]]},
    ]
    items = estimates(groups, "accuracy", min_group_size=1)
    for tol in (0.0, 0.05):
        (t,) = decide_targets([items], kind="gap", tolerance=tol)
        p = (180 + 255) / 500
        se = math.sqrt(p * (1 - p) * (1 / 200 + 1 / 300))
        # the folded test's critical value at alpha (one pair), and its power at the detectable gap
        k = next(
            x / 1e4 for x in range(1, 10**6) if norm.sf(x / 1e4 - tol / se) + norm.cdf(-x / 1e4 - tol / se) <= 0.05
        )
        delta = t.min_detectable / se
        power = norm.sf(k - delta) + norm.cdf(-k - delta)
        assert abs(power - 0.8) < 1e-3, (tol, power)
    (t,) = decide_targets([items], kind="gap", tolerance=0.05)
    assert t.testable is False and t.samples_needed > 300


def test_samples_needed_is_where_the_detectable_gap_reaches_twice_the_tolerance():
    def target(n):
        groups = [{"value": v, "n": n, "confusion": [[round(0.9 * n), n - round(0.9 * n)], [0, 0]]} for v in "ab"]
        return decide_targets([estimates(groups, "accuracy", min_group_size=1)], kind="gap", tolerance=0.05)[0]

    needed = target(100).samples_needed
    assert target(needed + 10).testable is True and target(needed - 10).testable is False


def test_holm_runs_across_every_target_of_a_rule():
    fair = [{"value": v, "n": 200, "confusion": [[180, 20], [0, 0]]} for v in "abc"]
    unfair = [
        {"value": "a", "n": 200, "confusion": [[180, 20], [0, 0]]},
        {"value": "b", "n": 200, "confusion": [[150, 50], [0, 0]]},
    ]
    alone = decide_targets([estimates(unfair, "accuracy", min_group_size=1)], kind="gap", tolerance=0.0)[0]
    both = decide_targets(
        [estimates(fair, "accuracy", min_group_size=1), estimates(unfair, "accuracy", min_group_size=1)],
        kind="gap",
        tolerance=0.0,
    )
    assert both[1].family_size == 4 and math.isclose(both[1].p_value, min(1.0, 4 * alone.p_value), rel_tol=1e-9)
    assert both[0].decision == "no_evidence" and both[1].decision == "violation"


def test_demonstrate_needs_every_pair_within_tolerance():
    close = [{"value": v, "n": 2000, "confusion": [[1800, 200], [0, 0]]} for v in "ab"]
    (t,) = decide_targets(
        [estimates(close, "accuracy", min_group_size=1)], kind="gap", tolerance=0.05, mode="demonstrate"
    )
    assert t.decision == "within" and t.testable is True
    small = [{"value": v, "n": 50, "confusion": [[45, 5], [0, 0]]} for v in "ab"]
    (t,) = decide_targets(
        [estimates(small, "accuracy", min_group_size=1)], kind="gap", tolerance=0.05, mode="demonstrate"
    )
    assert t.decision == "not_shown" and t.testable is False and t.samples_needed > 50


def test_untestable_targets_say_why():
    one = [{"value": "a", "n": 50, "confusion": [[45, 5], [0, 0]]}]
    (t,) = decide_targets([estimates(one, "accuracy", min_group_size=1)], kind="gap", tolerance=0.05)
    assert t.decision is None and "fewer than two" in t.note
    no_ci = [{"value": v, "n": 50, "ece": 0.1} for v in "ab"]
    assert estimates(no_ci, "ece", min_group_size=1) is None
    (t,) = decide_targets([None], kind="gap", tolerance=0.05)
    assert t.decision is None and "lacks" in t.note


def test_interval_metrics_use_the_bootstrap_standard_error():
    groups = [
        {"value": "a", "n": 500, "ece": 0.02, "ece_ci": [0.01, 0.03]},
        {"value": "b", "n": 500, "ece": 0.10, "ece_ci": [0.08, 0.12]},
    ]
    items = estimates(groups, "ece", min_group_size=1)
    z = norm.ppf(0.975)
    assert [e.se for e in items] == pytest.approx([0.02 / (2 * z), 0.04 / (2 * z)])
    (pair,) = pair_tests(items, kind="gap", tolerance=0.0, mode="detect")
    se = math.hypot(0.01 / z, 0.02 / z)
    assert math.isclose(pair.p_value, 2 * norm.sf(0.08 / se), rel_tol=1e-9)


def test_bad_settings():
    e = [Estimate("a", "x", 0.5, 0.1, 10, 0.5), Estimate("a", "y", 0.6, 0.1, 10, 0.6)]
    with pytest.raises(ValueError, match="confidence"):
        decide_targets([e], kind="gap", tolerance=0.1, confidence=1.0)
    with pytest.raises(ValueError, match="tolerance"):
        decide_targets([e], kind="gap", tolerance=-0.1)
