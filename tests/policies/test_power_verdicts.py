"""Power-aware detect verdicts (issue 32): an untestable blocking rule is insufficient evidence and follows
``on_insufficient_data``; every detect result records its power against a gap of twice the tolerance."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import typed
from cvaudit_fixtures import write_config
from scipy.stats import binom

from audit.cli import main
from audit.contract.gaptests import estimates, pair_tests
from policies import check_policy
from policies.loader import policy_from_dict


def _group(value: str, correct: int, n: int) -> dict:
    half = n // 2
    tp0 = min(half, correct // 2)
    cm = [[tp0, half - tp0], [n - half - (correct - tp0), correct - tp0]]
    metrics = {"n": n, "accuracy": correct / n, "confusion": cm}
    return {"attribute": "site", "value": value, "insufficient_data": False, "metrics": metrics}


def _results(groups: list[dict]) -> dict:
    return {
        "model": {"class_names": ["zero", "one"]},
        "evaluation": {"min_group_size": 30, "confidence_level": 0.95},
        "conditions": [{"id": "clean", "stressor": None, "severity": 0, "metrics": {"n": 1}, "groups": groups}],
        "fairness": [],
    }


RULE = {"id": "gap", "condition": "clean", "attribute": "site", "aggregate": "gap", "metric": "accuracy", "max": 0.1}


def _judge(groups: list[dict], **extra) -> dict:
    policy = policy_from_dict({"version": 1, "name": "t", "rules": [{**RULE, **extra}]}, source="t.yaml")
    return check_policy(typed(_results(groups)), policy)["rules"][0]


def _brute_power(n1: int, n2: int, p1: float, p2: float, level: float) -> float:
    """Every pair of counts, judged by the rule's own pair test (a hand-written reference)."""
    total = 0.0
    for k1 in range(n1 + 1):
        for k2 in range(n2 + 1):
            g = [{"value": "a", **_group("a", k1, n1)["metrics"]}, {"value": "b", **_group("b", k2, n2)["metrics"]}]
            (pair,) = pair_tests(estimates(g, "accuracy", min_group_size=1), kind="gap", tolerance=0.1, mode="detect")
            if pair.p_value <= level:
                total += binom.pmf(k1, n1, p1) * binom.pmf(k2, n2, p2)
    return total


def test_a_detect_pass_records_its_power_against_twice_the_tolerance():
    groups = [_group("a", 135, 150), _group("b", 133, 150)]  # pooled accuracy 0.893: 0.793 vs 0.993
    rule = _judge(groups)
    assert rule["status"] == "pass" and rule["insufficient_evidence"] is False and rule["testable"] is True
    assert rule["power_against"] == 0.2
    pooled = (135 + 133) / 300
    expected = _brute_power(150, 150, pooled - 0.1, pooled + 0.1, 0.05)
    assert math.isclose(rule["power"], expected, rel_tol=1e-9) and rule["power"] >= 0.8
    assert f"power {100 * expected:.1f}% against a true gap of 0.2" in rule["message"]
    assert rule["samples_needed"] is not None and rule["samples_needed"] <= 150


def test_an_untestable_detect_rule_is_insufficient_evidence_not_a_pass():
    groups = [_group("a", 36, 40), _group("b", 35, 40)]
    rule = _judge(groups)
    assert rule["status"] == "fail" and rule["insufficient_evidence"] is True and rule["testable"] is False
    assert rule["message"].startswith("insufficient evidence for gap of accuracy")
    assert "not shown to break max 0.1" in rule["message"] and "on_insufficient_data=fail" in rule["message"]
    pooled = 71 / 80
    assert math.isclose(rule["power"], _brute_power(40, 40, pooled - 0.1, pooled + 0.1, 0.05), rel_tol=1e-9)
    assert rule["power"] < 0.8 and rule["samples_needed"] > 40
    assert f"cannot be tested below {rule['samples_needed']} samples per group" in rule["message"]
    # a tolerance of 0 states no alternative: no power, decided by the test as before
    zero = _judge(groups, max=0.0)
    assert zero["status"] == "pass" and zero["power"] is None and zero["insufficient_evidence"] is None


def _workspace(root: Path, on_insufficient: str) -> Path:
    cfg = write_config(root)
    policy = (
        "version: 1\nname: p\n"
        f"on_insufficient_data: {on_insufficient}\n"
        "rules:\n"
        "  - {id: clean-accuracy, condition: clean, metric: accuracy, min: 0.5}\n"
        "  - {id: camera-gap, condition: clean, attribute: camera, aggregate: gap, metric: accuracy, max: 0.05,"
        " min_samples: 2}\n"
    )
    (root / "policy.yaml").write_text(policy)
    return cfg


@pytest.mark.slow
def test_through_the_cli_an_untestable_blocking_rule_fails_closed_with_insufficient_evidence(workspace):
    cfg = _workspace(workspace, "fail")
    out = workspace / "out"
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "FAIL camera-gap" in result.output and "insufficient evidence for gap of accuracy" in result.output
    assert "1 blocking failure, 1 of them insufficient evidence" in result.output
    rule = next(r for r in json.loads((out / "results.json").read_text())["policy"]["rules"] if r["id"] == "camera-gap")
    assert rule["insufficient_evidence"] is True and rule["power"] < 0.8 and rule["power_against"] == 0.1


@pytest.mark.slow
def test_through_the_cli_a_stated_warn_warns(workspace):
    cfg = _workspace(workspace, "warn")
    out = workspace / "out"
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rule = next(r for r in json.loads((out / "results.json").read_text())["policy"]["rules"] if r["id"] == "camera-gap")
    assert rule["status"] == "insufficient_data" and rule["insufficient_evidence"] is True
    assert rule["message"].startswith("insufficient evidence") and "on_insufficient_data=warn" in rule["message"]
