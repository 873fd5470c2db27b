"""Policy rules judge detection results (task: detection): the classification rule syntax on the detector's
conditions, groups, gaps and robustness; validated before the run; fail-closed (issue 25, point 4).

Verdicts are checked against numbers read independently from the results (the hand-made ones of
``tests/detection_results.py``, and a real pass of the colour-box detector of ``tests/detection_fixtures.py``).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from detection_results import detection_dict, detection_results

from audit.contract.plan import PlannedCondition, RunPlan
from policies import check_policy, load_policy
from policies.early_stop import stop_targets
from policies.errors import PolicyError
from policies.gate import PolicyGate
from policies.schema import Policy


def _policy(*rules: dict, **settings) -> Policy:
    return Policy.model_validate({"version": 1, "name": "det", "rules": list(rules), **settings})


def _judge(*rules: dict, results=None, **settings) -> dict[str, dict]:
    outcome = check_policy(results or detection_results(), _policy(*rules, **settings), findings=[])
    return {r["id"]: r for r in outcome["rules"]}


def _one(rule: dict, results=None, **settings) -> dict:
    return _judge({"id": "r", **rule}, results=results, **settings)["r"]


def runner_plan(**changes) -> RunPlan:
    """The plan the runner builds for a detection run (conditions, image attributes and object groupings)."""
    plan = {
        "source": "config.yaml",
        "conditions": (PlannedCondition("clean"), PlannedCondition("night@3", "night", 3.0)),
        "attributes": {
            "camera": ("A", "B"),
            "object.size": ("large", "medium", "small"),
            "object.class": ("car", "person"),
            "object.occluded": ("false", "true"),
        },
        "intervals": frozenset({"precision", "recall", "f1", "fp_per_image", "missed_per_image"}),
        "sections": frozenset({"detection", "dataset", "evaluation", "model", "governance", "provenance"}),
        "checks": frozenset(),
        "task": "detection",
    }
    return RunPlan(**{**plan, **changes})


# --- conditions and groups ---------------------------------------------------------------------------------


def test_condition_metrics_point_and_interval_ends():
    got = _judge(
        {"id": "clean-map", "condition": "clean", "metric": "map", "min": 0.6},
        {"id": "night-map", "condition": "night@*", "metric": "map", "min": 0.4},
        {"id": "fp", "condition": "clean", "metric": "fp_per_image", "max": 0.2},
        {"id": "fp-upper", "condition": "clean", "metric": "fp_per_image", "max": 0.12, "judge": "ci_upper"},
        {"id": "recall-lower", "condition": "clean", "metric": "recall", "min": 0.76, "judge": "ci_lower"},
    )
    assert (got["clean-map"]["status"], got["clean-map"]["observed"]) == ("pass", 0.62)
    assert (got["night-map"]["status"], got["night-map"]["condition"], got["night-map"]["observed"]) == (
        "fail",
        "night@3",
        0.35,
    )
    assert (got["fp"]["status"], got["fp"]["observed"]) == ("pass", 0.10)
    assert (got["fp-upper"]["status"], got["fp-upper"]["observed"]) == ("fail", 0.15)  # the interval's upper end
    assert got["recall-lower"]["status"] == "fail" and got["recall-lower"]["observed"] == pytest.approx(0.75)


def test_detection_calibration_error_of_a_condition():
    got = _judge(
        {"id": "dece", "condition": "clean", "metric": "dece", "max": 0.05},
        {"id": "night", "condition": "night@3", "metric": "dece", "max": 0.1},
    )
    assert (got["dece"]["status"], got["dece"]["observed"], got["dece"]["n"]) == ("fail", 0.06, 450)
    assert got["night"]["status"] == "fail" and "no calibration stored for night@3" in got["night"]["message"]


def test_an_interval_of_the_calibration_error_is_refused_before_judging():
    with pytest.raises(PolicyError, match="needs an interval of 'dece'"):
        _judge({"id": "dece-lower", "condition": "clean", "metric": "dece", "max": 0.05, "judge": "ci_lower"})


def test_image_and_object_groups():
    got = _judge(
        {"id": "cam-b", "condition": "clean", "attribute": "camera", "value": "B", "metric": "recall", "min": 0.6},
        {
            "id": "small",
            "condition": "clean",
            "attribute": "object.size",
            "value": "small",
            "metric": "recall",
            "min": 0.65,
        },
        {
            "id": "small-map",
            "condition": "clean",
            "attribute": "object.size",
            "value": "small",
            "metric": "map",
            "min": 0.4,
        },
        {
            "id": "cam-a-fp",
            "condition": "night@3",
            "attribute": "camera",
            "value": "A",
            "metric": "fp_per_image",
            "max": 0.1,
        },
    )
    assert (got["cam-b"]["status"], got["cam-b"]["observed"], got["cam-b"]["group"]) == ("pass", 0.70, "camera=B")
    assert got["cam-b"]["n"] == 99  # images, for an image-level group
    assert (got["small"]["status"], got["small"]["observed"], got["small"]["n"]) == ("fail", 0.60, 150)  # objects
    assert (got["small-map"]["status"], got["small-map"]["observed"]) == ("pass", pytest.approx(0.42))
    assert (got["cam-a-fp"]["status"], got["cam-a-fp"]["observed"]) == ("pass", 0.08)


@pytest.mark.parametrize(
    ("mode", "blocking", "status"),
    [("fail", True, "fail"), ("fail", False, "warn"), ("warn", True, "insufficient_data"), ("pass", True, "pass")],
)
def test_a_group_flagged_insufficient_data_fails_closed(mode, blocking, status):
    rule = {"id": "r", "condition": "clean", "attribute": "camera", "value": "C", "metric": "recall", "min": 0.1}
    judged = {"id": "judged", "condition": "clean", "metric": "map", "min": 0.5}  # a gate needs a judged rule
    got = _judge({**rule, "blocking": blocking}, judged, on_insufficient_data=mode)["r"]
    assert got["status"] == status
    assert "insufficient data" in got["message"] and "camera=C" in got["message"]


def test_a_null_metric_is_insufficient_data():
    def no_map(d):
        d["detection"]["conditions"][1]["metrics"]["map"] = None

    got = _one({"condition": "night@3", "metric": "map", "min": 0.1}, results=detection_results(no_map))
    assert got["status"] == "fail" and "null" in got["message"]


def test_worst_group_skips_insufficient_groups():
    got = _one({"condition": "clean", "attribute": "object.*", "aggregate": "worst", "metric": "recall", "min": 0.7})
    # object.occluded=true (0.25, 4 objects) is flagged; the worst group judged is object.size=small
    assert (got["status"], got["observed"], got["group"]) == ("fail", 0.60, "object.size=small")
    got = _one({"condition": "clean", "attribute": "camera", "aggregate": "worst", "metric": "recall", "min": 0.7})
    assert (got["status"], got["observed"], got["group"]) == ("pass", 0.70, "camera=B")  # camera=C left out


# --- gaps ------------------------------------------------------------------------------------------------


def test_point_gap_and_ratio_over_the_groups_with_enough_data():
    got = _judge(
        {"id": "gap", "condition": "clean", "attribute": "camera", "aggregate": "gap", "metric": "recall",
         "max": 0.1, "test": "point"},
        {"id": "map-gap", "condition": "clean", "attribute": "camera", "aggregate": "gap", "metric": "map",
         "max": 0.12, "test": "point"},
        {"id": "ratio", "condition": "clean", "attribute": "object.size", "aggregate": "ratio", "metric": "recall",
         "min": 0.6, "test": "point"},
    )  # fmt: skip
    assert got["gap"]["status"] == "fail" and got["gap"]["observed"] == pytest.approx(0.20)  # C (0.20) left out
    assert "camera=B 0.7 vs camera=A 0.9" in got["gap"]["message"]
    assert got["map-gap"]["status"] == "pass" and got["map-gap"]["observed"] == pytest.approx(0.10)
    assert got["ratio"]["status"] == "pass" and got["ratio"]["observed"] == pytest.approx(0.60 / 0.95)


@pytest.mark.parametrize(
    ("test", "bound", "status", "words"),
    [
        # camera: gap 0.20, se 0.04 (one pair); the folded-normal / TOST p-values of audit.contract.gaptests
        ("detect", 0.10, "fail", "shown to break max 0.1"),  # p = Φ((0.10 - 0.20) / 0.04) = 0.006
        ("detect", 0.15, "pass", "not shown to break max 0.15"),  # p = Φ(-1.25) = 0.11
        ("demonstrate", 0.30, "pass", "shown to keep max 0.3"),  # p = Φ((0.20 - 0.30) / 0.04) = 0.006
        ("demonstrate", 0.25, "fail", "not shown to keep max 0.25"),  # p = Φ(-1.25) = 0.11
    ],
)
def test_tested_gap_is_decided_by_the_stored_pairs(test, bound, status, words):
    rule = {"condition": "clean", "attribute": "camera", "aggregate": "gap", "metric": "recall", "max": bound}
    got = _one({**rule, "test": test} if test != "detect" else rule)  # detect is the default for a gap
    assert got["test"] == test and got["status"] == status
    assert got["observed"] == pytest.approx(0.20)
    assert words in got["message"] and "1 pair" in got["message"]


def test_tested_gap_p_value_equals_a_hand_computation():
    from statistics import NormalDist

    from scipy.optimize import brentq

    from audit.contract.gaptests import decide_pairs

    rule = {"condition": "clean", "attribute": "object.size", "aggregate": "gap", "metric": "recall", "max": 0.1}
    got = _one(rule)
    phi = NormalDist().cdf
    # pairs large-small 0.35, medium-small 0.20, large-medium 0.15, se 0.16: folded normal at τ = 0.1, Holm
    raw = sorted(phi((0.1 - d) / 0.16) + phi((-d - 0.1) / 0.16) for d in (0.35, 0.20, 0.15))
    holm = min(1.0, 3 * raw[0])
    shown, p = decide_pairs([(d, 0.16) for d in (0.35, 0.20, 0.15)], tolerance=0.1, mode="detect", alpha=0.05)
    assert not shown and p == pytest.approx(holm, rel=1e-12)
    # A standard error of 0.16 leaves the test no power against a true gap of 2τ = 0.2 (issue 32): not a PASS
    # but insufficient evidence, failing closed; the power is the folded normal's at Holm's first step α/3.
    level, se = 0.05 / 3, 0.16
    c = brentq(lambda c: phi((0.1 - c) / se) + phi((-c - 0.1) / se) - level, 0.1, 5.0)
    power = phi((0.2 - c) / se) + phi((-c - 0.2) / se)
    assert got["status"] == "fail" and got["insufficient_evidence"] is True
    assert got["power"] == pytest.approx(power, rel=1e-9) and got["power_against"] == pytest.approx(0.2)


def test_gap_judged_by_an_end_of_its_interval():
    rule = {"condition": "clean", "attribute": "object.size", "aggregate": "gap", "metric": "recall", "max": 0.4}
    assert _one({**rule, "judge": "ci_lower"})["observed"] == pytest.approx(0.05)
    got = _one({**rule, "judge": "ci_upper"})
    assert (got["status"], got["observed"]) == ("fail", pytest.approx(0.50))


def test_a_glob_over_attributes_takes_the_worst_and_star_means_image_attributes():
    rule = {"condition": "*", "attribute": "*", "aggregate": "gap", "metric": "recall", "max": 0.10}
    got = _one(rule)
    targets = {(e["condition"], e["group"]): e["status"] for e in got["evaluations"]}
    # night@3: not shown above 0.10, without the power to show it (insufficient evidence); no object grouping
    assert targets == {("clean", "camera"): "fail", ("night@3", "camera"): "insufficient_data"}
    assert got["status"] == "fail" and got["condition"] == "clean"
    got = _one({**rule, "attribute": "object.*", "condition": "clean"})
    groups = {e["group"]: e["status"] for e in got["evaluations"]}
    # object.size: not shown (Holm p 0.36) with se 0.16, no power against 0.20: insufficient evidence;
    # object.occluded: one group with enough data; object.class: no stored gap test to decide it
    assert groups == {
        "object.class": "insufficient_data",
        "object.occluded": "insufficient_data",
        "object.size": "insufficient_data",
    }
    assert got["status"] == "fail" and "no stored gap test for object.class" in got["message"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"min_samples": 130}, "the stored gap test compares"),  # large (120 objects) left out, small and medium kept
    ],
)
def test_a_stored_test_that_cannot_decide_the_rule_fails_closed(change, reason):
    rule = {"condition": "clean", "attribute": "object.size", "aggregate": "gap", "metric": "recall", "max": 0.1}
    got = _one({**rule, **change})
    assert got["status"] == "fail" and reason in got["message"] and "insufficient data" in got["message"]


def test_a_missing_gap_test_or_interval_fails_closed():
    def no_interval(d):
        d["detection"]["gap_tests"][0]["gap_ci"] = None

    rule = {"condition": "clean", "attribute": "camera", "aggregate": "gap", "metric": "recall", "max": 0.5}
    got = _one({**rule, "judge": "ci_lower", "test": "point"}, results=detection_results(no_interval))
    assert got["status"] == "fail" and "no interval" in got["message"]

    def no_tests(d):
        d["detection"]["gap_tests"] = []

    got = _one(rule, results=detection_results(no_tests))
    assert got["status"] == "fail" and "no stored gap test" in got["message"]


# --- sections --------------------------------------------------------------------------------------------


def test_detection_section_robustness():
    got = _judge(
        {"id": "rpc", "section": "detection", "metric": "robustness.rpc", "min": 0.6},
        {"id": "mpc", "section": "detection", "entry": "robustness", "metric": "mpc", "min": 0.3},
    )
    assert got["rpc"]["status"] == "fail" and got["rpc"]["observed"] == pytest.approx(0.35 / 0.62)
    assert got["mpc"]["status"] == "pass" and got["mpc"]["observed"] == pytest.approx(0.35)

    def no_stressors(d):
        d["detection"]["robustness"] = None

    got = _one(
        {"section": "detection", "metric": "robustness.rpc", "min": 0.6}, results=detection_results(no_stressors)
    )
    assert got["status"] == "fail" and "robustness is null" in got["message"]


# --- validation before the run ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "key", "words"),
    [
        ({"condition": "clean", "metric": "accuracy", "min": 0.5}, "metric", "classification metric"),
        ({"condition": "clean", "metric": "mAP", "min": 0.5}, "metric", "unknown metric 'mAP'"),
        ({"condition": "fog@1", "metric": "map", "min": 0.5}, "condition", "no stressor 'fog'"),
        ({"condition": "night@2", "metric": "map", "min": 0.5}, "condition", "night runs night@3"),
        ({"condition": "clean", "attribute": "lens", "value": "x", "metric": "recall", "min": 0.5}, "attribute", "lens"),
        ({"condition": "clean", "attribute": "object.size", "value": "tiny", "metric": "recall", "min": 0.5},
         "value", "object.size: large, medium, small"),
        ({"condition": "clean", "attribute": "object.occluded", "value": "true", "metric": "precision", "min": 0.5},
         "metric", "not computed for the object-level groups of object.occluded"),
        ({"condition": "clean", "attribute": "object.size", "value": "small", "metric": "map_50", "min": 0.5},
         "metric", "not computed"),
        ({"condition": "clean", "metric": "map", "min": 0.5, "judge": "ci_lower"}, "judge", "interval of 'map'"),
        ({"condition": "clean", "attribute": "camera", "metric": "recall", "max": 0.1}, "aggregate", "no fairness"),
        ({"condition": "clean", "attribute": "camera", "aggregate": "gap", "metric": "map", "max": 0.1},
         "test", "recall only; set test: point"),
        ({"condition": "clean", "attribute": "camera", "aggregate": "ratio", "metric": "recall", "min": 0.8},
         "test", "set test: point"),
        ({"condition": "clean", "attribute": "camera", "value": "A", "metric": "dece", "max": 0.1},
         "metric", "per condition, not per group"),
        ({"condition": "clean", "metric": "dece", "max": 0.1, "judge": "ci_upper"}, "judge", "interval of 'dece'"),
        ({"section": "robustness", "metric": "auc", "min": 0.5}, "section", "classification key"),
        ({"section": "detection", "metric": "robustness.rcp", "min": 0.5}, "metric", "keys: clean_map, mpc, rpc"),
    ],
)  # fmt: skip
def test_a_rule_that_cannot_match_a_detection_run_is_an_error_before_the_run(rule, key, words):
    gate = PolicyGate(_policy({"id": "bad-rule", **rule}))
    with pytest.raises(PolicyError) as err:
        gate.plan(runner_plan())
    text = str(err.value)
    assert "\n" not in text and "rule 'bad-rule'" in text and f"key '{key}'" in text and words in text, text


def test_a_tested_gap_needs_no_bootstrap_but_judging_its_interval_ends_does():
    rule = {"id": "gap", "condition": "clean", "attribute": "camera", "aggregate": "gap", "metric": "recall",
            "max": 0.1}  # fmt: skip
    PolicyGate(_policy(rule)).plan(runner_plan(intervals=frozenset()))  # pairs' jackknife tests: always stored
    with pytest.raises(PolicyError, match="needs an interval"):
        PolicyGate(
            _policy({"id": "m", "condition": "clean", "metric": "recall", "min": 0.5, "judge": "ci_lower"})
        ).plan(runner_plan(intervals=frozenset()))


def test_a_detection_metric_on_a_classification_run_is_an_error():
    plan = runner_plan(task="classification", attributes={"camera": ("A", "B")}, intervals=frozenset())
    with pytest.raises(PolicyError, match="detection metric and this is a classification run"):
        PolicyGate(_policy({"id": "m", "condition": "clean", "metric": "map", "min": 0.5})).plan(plan)
    with pytest.raises(PolicyError, match="a detection run writes it"):
        PolicyGate(_policy({"id": "s", "section": "detection", "metric": "robustness.rpc", "min": 0.5})).plan(plan)


def test_star_needs_image_attributes():
    rule = {"id": "gap", "condition": "clean", "attribute": "*", "aggregate": "gap", "metric": "recall", "max": 0.1}
    only_objects = runner_plan(attributes={"object.size": ("small", "large")})
    with pytest.raises(PolicyError, match="matches no attribute"):
        PolicyGate(_policy(rule)).plan(only_objects)
    other = {"id": "map", "condition": "clean", "metric": "map", "min": 0.5}
    assert PolicyGate(_policy({**rule, "required": False}, other)).plan(only_objects) == {
        "gap": "the run has no subgroup attributes (attribute '*' matches none; required: false)"
    }


def test_plan_from_stored_detection_results():
    plan = RunPlan.from_results(detection_results())
    assert plan.task == "detection"
    assert plan.condition_ids == ["clean", "night@3"] and plan.stressors == ["night"]
    assert plan.attributes["camera"] == ("A", "B", "C")
    assert plan.attributes["object.size"] == ("small", "medium", "large")
    assert plan.intervals == {"recall", "fp_per_image"}  # D-ECE carries no interval (coverage unmeasured)
    assert "detection" in plan.sections and "conditions" not in plan.sections
    assert stop_targets(_policy({"id": "m", "condition": "clean", "metric": "recall", "min": 0.5}), plan) == []


def test_policy_check_cli_judges_stored_detection_results(tmp_path):
    from results_builder import complete_results

    from audit.cli.policy import policy_group

    path = tmp_path / "results.json"
    path.write_text(json.dumps(complete_results(detection_dict())))
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nname: p\nrules:\n  - {id: m, condition: clean, metric: map, min: 0.7}\n")
    junit, markdown = tmp_path / "junit.xml", tmp_path / "summary.md"
    argv = ["check", str(path), "--policy", str(policy), "--junit", str(junit), "--markdown", str(markdown)]
    out = CliRunner().invoke(policy_group, argv)
    assert out.exit_code == 1 and "map on clean = 0.62 < min 0.7" in out.output, out.output
    assert 'failures="1"' in junit.read_text() and "| m | ❌ fail |" in markdown.read_text()
    policy.write_text("version: 1\nname: p\nrules:\n  - {id: acc, condition: clean, metric: accuracy, min: 0.7}\n")
    out = CliRunner().invoke(policy_group, ["check", str(path), "--policy", str(policy)])
    assert out.exit_code == 2 and "rule 'acc'" in out.output and "classification metric" in out.output


# --- the built-in detection gate -------------------------------------------------------------------------


def test_detection_gate_is_listed_validated_and_judges():
    from audit.cli.policy import policy_group

    rows = json.loads(CliRunner().invoke(policy_group, ["list", "--format", "json"]).output)
    assert "detection-gate" in [r["name"] for r in rows]
    gate = PolicyGate.load("detection-gate")
    assert gate.plan(runner_plan()) == {"mild-stress-map": "'*@1' is not in this run (required: false)"}

    outcome = gate.judge(detection_results(), findings=[])
    status = {r["id"]: r["status"] for r in outcome["rules"]}
    assert status == {
        "clean-map": "pass",  # 0.62 >= 0.50
        "clean-false-positives": "pass",  # 0.10 <= 0.20
        "clean-subgroup-recall-gap": "fail",  # camera gap interval [0.12, 0.28] lies above 0.10
        "clean-object-size-recall-gap": "warn",  # not shown above 0.10, no power to show it; non-blocking
        "mild-stress-map": "not_applicable",
        "dataset-skipped-share": "pass",
    }
    rules_failed = [f for f in outcome["blocking_failures"] if not f.startswith("governance.")]
    assert outcome["verdict"] == "fail" and rules_failed == ["clean-subgroup-recall-gap"]


def test_detection_gate_refuses_classification_results():
    from results_builder import typed_results

    classification = typed_results({"conditions": []})
    with pytest.raises(PolicyError, match="rule 'clean-map'.*detection metric and this is a classification run"):
        check_policy(classification, load_policy("detection-gate"), findings=[])


# --- a real pass of a detector ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_results(tmp_path_factory):
    from detection_fixtures import detection_section
    from results_builder import typed_results

    section = detection_section(tmp_path_factory.mktemp("detection"))
    return typed_results({"task": "detection", "detection": section.to_dict()}), section


def test_rules_on_a_real_detection_pass(real_results):
    results, section = real_results
    clean = next(c for c in section.conditions if c.id == "clean")
    night = next(c for c in section.conditions if c.id == "night@3")
    recall = {(g.attribute, g.value): g.metrics.recall for g in clean.groups}
    got = _judge(
        {"id": "map", "condition": "clean", "metric": "map", "min": 0.3},
        {"id": "night", "condition": "night@*", "metric": "map", "min": 0.3},
        {"id": "fp", "condition": "clean", "metric": "fp_per_image", "max": 0.2},
        {"id": "cam-b", "condition": "clean", "attribute": "camera", "value": "B", "metric": "recall", "min": 0.6},
        {"id": "gap", "condition": "clean", "attribute": "camera", "aggregate": "gap", "metric": "recall",
         "max": 0.1, "test": "point"},
        results=results,
    )  # fmt: skip
    # the colour-box detector is blind to camera B and to night images (tests/detection_fixtures.py)
    assert (got["map"]["status"], got["map"]["observed"]) == ("pass", clean.metrics.map)
    assert (got["night"]["status"], got["night"]["observed"]) == ("fail", night.metrics.map)
    assert (got["fp"]["status"], got["fp"]["observed"]) == ("pass", clean.metrics.fp_per_image)
    assert (got["cam-b"]["status"], got["cam-b"]["observed"]) == ("fail", recall[("camera", "B")])
    gap = recall[("camera", "A")] - recall[("camera", "B")]
    assert (got["gap"]["status"], got["gap"]["observed"]) == ("fail", pytest.approx(gap))


def test_the_documented_detection_policy_validates_and_judges():
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "docs" / "policies.md").read_text(encoding="utf-8")
    block = text.split("## Detection rules", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    policy = Policy.model_validate(yaml.safe_load(block))
    assert PolicyGate(policy).plan(runner_plan()) == {}
    outcome = check_policy(detection_results(), policy, findings=[])
    assert {r["id"] for r in outcome["rules"] if r["status"] == "fail"} == {
        "camera-gap",  # interval [0.12, 0.28] above 0.10
        "rpc",  # 0.35 / 0.62 < 0.6
        "size-gap",  # not shown above its tolerance, without the power to show it: insufficient evidence
    }


# --- cvaudit run with task: detection --------------------------------------------------------------------

RUN_POLICY = """\
version: 1
name: run-gate
rules:
  - {id: clean-map, condition: clean, metric: map, min: 0.3}
  - {id: camera-gap, condition: clean, attribute: "*", aggregate: gap, metric: recall, max: 0.1, test: point}
  - {id: camera-b, condition: clean, attribute: camera, value: B, metric: recall, min: 0.5}
  - {id: occluded, condition: clean, attribute: object.occluded, value: "true", metric: recall, min: 0.2}
  - {id: visible, condition: clean, attribute: object.occluded, value: false, metric: recall, min: 0.2}
"""


@pytest.mark.slow
def test_cvaudit_run_validates_before_the_run_and_judges_a_detector(tmp_path):
    import subprocess
    import sys

    from detection_fixtures import make_detection_dataset, save_detector, write_detection_config

    make_detection_dataset(tmp_path, n=24)
    cfg = write_detection_config(tmp_path, save_detector(tmp_path / "detector.pt"), policy="policy.yaml")

    def run(policy: str, out: str) -> subprocess.CompletedProcess:
        (tmp_path / "policy.yaml").write_text(policy)
        argv = [sys.executable, "-m", "audit", "run", str(cfg), "--out", str(tmp_path / out), "--quiet"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=tmp_path)

    typo = RUN_POLICY.replace('value: "true"', "value: maybe")
    done = run(typo, "refused")
    assert done.returncode == 2 and not (tmp_path / "refused").exists()
    assert "rule 'occluded': key 'value': no group object.occluded=maybe" in done.stderr, done.stderr

    done = run(RUN_POLICY, "out")
    assert done.returncode == 1, done.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    clean = results["detection"]["conditions"][0]
    recall = {(g["attribute"], g["value"]): g["metrics"]["recall"] for g in clean["groups"]}
    rules = {r["id"]: r for r in results["policy"]["rules"]}
    assert (rules["clean-map"]["status"], rules["clean-map"]["observed"]) == ("pass", clean["metrics"]["map"])
    assert rules["camera-gap"]["status"] == "fail"
    assert rules["camera-gap"]["observed"] == pytest.approx(recall[("camera", "A")] - recall[("camera", "B")])
    assert (rules["camera-b"]["status"], rules["camera-b"]["observed"]) == ("fail", recall[("camera", "B")])
    assert rules["visible"]["observed"] == recall[("object.occluded", "false")]  # value: false (a YAML boolean)
    assert results["policy"]["verdict"] == "fail"


def test_rule_words_name_detection_metrics():
    from reports.rule_words import rule_in_words

    got = _judge(
        {"id": "map", "condition": "clean", "metric": "map", "min": 0.5},
        {"id": "fp", "condition": "clean", "metric": "fp_per_image", "max": 0.2},
        {"id": "gap", "condition": "clean", "attribute": "object.size", "aggregate": "gap", "metric": "recall",
         "max": 0.1},
        {"id": "rpc", "section": "detection", "metric": "robustness.rpc", "min": 0.6},
    )  # fmt: skip
    assert rule_in_words(got["map"]) == "The mAP (COCO AP@[.5:.95]) on clean must be at least 0.5"
    assert rule_in_words(got["fp"]) == "False positives per image on clean must be at most 0.2"
    assert rule_in_words(got["gap"]) == (
        "The gap in recall at the operating point between the object.size groups on clean must be at most 0.1; "
        "it fails only when the data show it larger (95% confidence)"
    )
    assert rule_in_words(got["rpc"]) == "The rPC (mPC ÷ clean mAP) in detection must be at least 0.6"


def test_a_section_path_reaches_the_tide_errors_of_a_condition():
    def with_tide(d):
        d["detection"]["conditions"][0]["tide"] = [{"error": "missed", "count": 12, "dap": 0.08}]

    rule = {"section": "detection", "metric": "conditions[id=clean].tide[error=missed].dap", "max": 0.05}
    got = _one(rule, results=detection_results(with_tide))
    assert (got["status"], got["observed"]) == ("fail", 0.08)
    with pytest.raises(PolicyError, match="unknown metric 'conditions\\[id=clean\\].tide\\[error=missed\\].dAP'"):
        PolicyGate(_policy({"id": "t", **rule, "metric": rule["metric"].replace("dap", "dAP")})).plan(runner_plan())
