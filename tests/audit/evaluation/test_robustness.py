"""Robustness summaries on small hand-made results, checked against hand arithmetic."""

from __future__ import annotations

import pytest
from results_builder import typed_part

from audit.contract.results import ConditionResult
from audit.evaluation.robustness import (
    accuracy_drops,
    compare_to_baseline,
    corruption_errors,
    error_shift,
    robustness_disparity,
)


def _cond(cid, stressor, severity, acc, groups=(), n=100, confusion=None):
    return {
        "id": cid,
        "stressor": stressor,
        "severity": severity,
        "metrics": {"n": n, "accuracy": acc},
        "confusion": confusion,
        "groups": [{"attribute": a, "value": v, "metrics": {"n": gn, "accuracy": ga}} for a, v, gn, ga in groups],
    }


@pytest.fixture()
def conditions():
    return [
        _cond(
            "clean",
            None,
            0,
            0.9,
            [("tone", "light", 60, 0.92), ("tone", "dark", 40, 0.87), ("tone", "x", 3, 1.0)],
            confusion=[[45, 5], [5, 45]],
        ),
        _cond(
            "night@1",
            "night",
            1,
            0.8,
            [("tone", "light", 60, 0.85), ("tone", "dark", 40, 0.72), ("tone", "x", 3, 0.0)],
            confusion=[[40, 10], [10, 40]],
        ),
        _cond(
            "night@3",
            "night",
            3,
            0.6,
            [("tone", "light", 60, 0.70), ("tone", "dark", 40, 0.45)],
            confusion=[[50, 0], [40, 10]],
        ),
        _cond(
            "blur@1",
            "blur",
            1,
            0.85,
            [("tone", "light", 60, 0.85), ("tone", "dark", 40, 0.85)],
            confusion=[[42, 8], [7, 43]],
        ),
    ]


def test_accuracy_drops(conditions):
    rows = {r["condition"]: r for r in accuracy_drops(conditions)}
    assert set(rows) == {"night@1", "night@3", "blur@1"}
    assert rows["night@3"]["drop"] == pytest.approx(0.3)
    assert rows["blur@1"] == {
        "condition": "blur@1",
        "stressor": "blur",
        "severity": 1,
        "accuracy": 0.85,
        "clean_accuracy": 0.9,
        "drop": pytest.approx(0.05),
    }


def test_corruption_errors_and_reference_normalisation(conditions):
    result = corruption_errors(conditions)
    night = next(r for r in result["stressors"] if r["stressor"] == "night")
    assert night["severities"] == [1, 3]
    assert night["ce"] == pytest.approx((0.2 + 0.4) / 2)
    assert night["relative_ce"] == pytest.approx((0.1 + 0.3) / 2)
    assert result["mce"] == pytest.approx(((0.2 + 0.4) / 2 + 0.15) / 2)
    assert result["relative_mce"] == pytest.approx((0.2 + 0.05) / 2)
    assert result["normalized_mce"] is None
    reference = {
        "conditions": [
            _cond("clean", None, 0, 0.8),
            _cond("night@1", "night", 1, 0.5),
            _cond("night@3", "night", 3, 0.3),
        ]
    }
    result = corruption_errors(conditions, reference=reference)
    night = next(r for r in result["stressors"] if r["stressor"] == "night")
    assert night["normalized_ce"] == pytest.approx((0.2 + 0.4) / (0.5 + 0.7))
    assert night["normalized_relative_ce"] == pytest.approx((0.1 + 0.3) / (0.3 + 0.5))
    assert result["normalized_mce"] == pytest.approx(night["normalized_ce"])  # blur absent from the reference


def _typed(conditions):
    return [typed_part(ConditionResult, {k: v for k, v in c.items() if v is not None}) for c in conditions]


def test_compare_to_baseline_finds_where_we_regressed(conditions):
    baseline = [dict(c) for c in conditions]
    baseline[2] = _cond("night@3", "night", 3, 0.65, [("tone", "light", 60, 0.70), ("tone", "dark", 40, 0.60)])
    baseline = baseline[:3]  # blur@1 not in the baseline
    rows = compare_to_baseline(_typed(conditions), _typed(baseline), tolerance=0.02, min_group_size=10)
    by_key = {(r.condition, r.attribute, r.value): r for r in rows}
    overall = by_key[("night@3", None, None)]
    assert overall.delta == pytest.approx(-0.05) and overall.regressed and overall.status == "regressed"
    assert by_key[("night@3", "tone", "dark")].delta == pytest.approx(-0.15)
    assert by_key[("night@3", "tone", "light")].status == "ok"
    assert by_key[("night@1", "tone", "x")].status == "insufficient_data"
    assert by_key[("blur@1", None, None)].status == "missing_in_baseline"
    assert {r.status for r in rows if r.condition == "clean"} <= {"ok", "insufficient_data"}
    regressed = [(r.condition, r.value) for r in rows if r.regressed]
    assert regressed == [("night@3", None), ("night@3", "dark")]


def test_robustness_disparity_uses_each_groups_own_clean_accuracy(conditions):
    rows = {r["condition"]: r for r in robustness_disparity(conditions, min_group_size=10)}
    night = rows["night@1"]
    assert night["attribute"] == "tone" and night["worst_group"] == "dark"
    assert night["drops"] == {"light": pytest.approx(0.07), "dark": pytest.approx(0.15)}
    assert night["disparity"] == pytest.approx(0.08)
    assert night["excluded"] == ["x"]
    # equal stressed accuracy (0.85), but light fell further from its own clean 0.92
    assert rows["blur@1"]["worst_group"] == "light" and rows["blur@1"]["disparity"] == pytest.approx(0.05)
    single = robustness_disparity(conditions, min_group_size=50)
    assert all(r["worst_group"] is None and r["disparity"] is None for r in single)


def test_error_shift_ranks_growing_confusions(conditions):
    rows = {r["condition"]: r for r in error_shift(conditions, top=2)}
    top = rows["night@3"]["pairs"][0]
    # clean errors split 5/5; at night@3 all 40 errors are true 1 -> predicted 0
    assert (top["true"], top["predicted"]) == (1, 0)
    assert top["clean_share"] == 0.5 and top["share"] == 1.0 and top["share_change"] == 0.5
    assert top["rate"] == pytest.approx(0.4) and top["clean_rate"] == pytest.approx(0.05)
    assert rows["night@3"]["pairs"][1]["share_change"] == -0.5


def test_missing_clean_condition_is_an_error(conditions):
    with pytest.raises(ValueError, match="no clean condition"):
        accuracy_drops(conditions[1:])
