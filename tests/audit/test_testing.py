"""Assertion helpers on hand-made results (no audit run needed)."""

import copy

import pytest
from results_builder import complete_results

from audit.testing import AuditResults, assert_metric, assert_no_regression


def _results(acc_clean=0.9, acc_b=0.8):
    def group(v, acc, n):
        return {
            "attribute": "camera",
            "value": v,
            "insufficient_data": n < 30,
            "metrics": {"n": n, "accuracy": acc, "accuracy_ci": [acc - 0.05, acc + 0.05]},
        }

    return complete_results(
        {
            "dataset": {"attributes": {"camera": {"A": 100, "B": 100, "C": 5}}},
            "evaluation": {"min_group_size": 30},
            "conditions": [
                {
                    "id": "clean",
                    "stressor": None,
                    "metrics": {"n": 205, "accuracy": acc_clean},
                    "groups": [group("A", 0.95, 100), group("B", acc_b, 100), group("C", 0.2, 5)],
                }
            ],
        }
    )


def test_query_api():
    res = AuditResults(_results())
    assert res.metric("accuracy", condition="clean", group=("camera", "B")) == 0.8
    with pytest.raises(KeyError, match="values: \\['A', 'B', 'C'\\]"):
        res.group("clean", "camera", "Z")


def test_no_regression_passes_within_tolerance_and_ignores_small_groups():
    new = _results(acc_clean=0.895)
    new["conditions"][0]["groups"][2]["metrics"]["accuracy"] = 0.0  # n = 5: not judged
    assert_no_regression(new, _results(), tolerance=0.01)


def test_regression_names_condition_and_group():
    with pytest.raises(AssertionError) as err:
        assert_no_regression(_results(acc_b=0.7), _results(), tolerance=0.01)
    assert "clean camera=B: 0.800 -> 0.700 (-10.0 pp)" in str(err.value)
    assert "1 place(s)" in str(err.value)


def test_assert_metric_message_has_interval_n_and_group_table():
    with pytest.raises(AssertionError) as err:
        assert_metric(copy.deepcopy(_results()), "accuracy", ">=", 0.9, group=("camera", "B"))
    message = str(err.value)
    assert "accuracy >= 0.9 failed for clean, camera=B" in message
    assert "observed: 0.800" in message and "n: 100" in message
    assert "(insufficient data)" in message  # group C in the table
