"""Issue 30: a gate never passes on nothing.

- a policy with nothing that can fail (no rules, or none blocking, and no blocking governance
  check) is refused, unless it says ``report_only: true``; then every output says so;
- ``required: false`` means the same whichever way a condition is written;
- a bound no difference between groups can meet is a load-time error naming the rule and key;
- a group rule with an attribute glob is not applicable (when it says so) in a run without
  attributes, so ``ci-gate`` judges a first audit without subgroups.
"""

from __future__ import annotations

import copy
import json
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import typed

from audit.cli.policy import policy_group
from audit.cli.summary import summary_json, verdict_line
from audit.contract.results import PolicyOutcome
from policies import PolicyError, check_policy, load_policy
from policies.loader import policy_from_dict
from reports.junit import write_junit
from reports.summary_md import render_markdown_summary

CLEAN = {"id": "clean-accuracy", "condition": "clean", "metric": "accuracy", "min": 0.9}


def _policy(*rules: dict[str, Any], **top: Any):
    return policy_from_dict({"version": 1, "name": "t", "rules": list(rules), **top}, source="t.yaml")


def _one_line(out) -> str:
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert len(lines) == 1, out.output
    assert "internal error" not in lines[0] and "Traceback" not in out.output
    return lines[0]


@pytest.fixture
def runner_cli() -> CliRunner:
    return CliRunner()


# 1. no blocking rule ----------------------------------------------------------------------------------

NOTHING_TO_FAIL = {
    "no rules key": ("version: 1\nname: empty\n", "the policy has no rules"),
    "empty rule list": ("version: 1\nname: empty\nrules: []\n", "the policy has no rules"),
    "only non-blocking rules": (
        "version: 1\nname: empty\nrules:\n"
        "  - {id: a, condition: clean, metric: accuracy, min: 0.99, blocking: false}\n"
        "governance:\n  consent: {}\n",  # a non-blocking check blocks nothing either
        "no rule is blocking (all 1 say 'blocking: false'; no governance check blocks)",
    ),
}


@pytest.mark.parametrize("text, problem", NOTHING_TO_FAIL.values(), ids=NOTHING_TO_FAIL.keys())
def test_a_policy_with_nothing_that_can_fail_is_refused(runner_cli, results_file, write_policy, text, problem):
    path = write_policy(text)
    for command in (["check", str(results_file), "--policy", str(path)], ["show", str(path)]):
        out = runner_cli.invoke(policy_group, command)
        assert out.exit_code == 2, out.output
        line = _one_line(out)
        assert line.startswith(f"cvaudit: error: {path}: key 'rules': {problem}"), line
        assert line.endswith("or set 'report_only: true' to report without a pass/fail gate"), line


def test_a_blocking_governance_check_is_something_that_can_fail(results):
    findings = [{"check": "consent_missing", "status": "fail", "blocking": True, "count": 2}]
    section = check_policy(typed(results), _policy(governance={"consent": {"blocking": True}}), findings=findings)
    assert section["verdict"] == "fail" and "governance.consent_missing" in section["blocking_failures"]


def test_a_gate_whose_blocking_rules_all_do_not_apply_is_refused(results):
    absent = {"id": "fog", "condition": "fog@*", "metric": "accuracy", "min": 0.5, "required": False}
    with pytest.raises(PolicyError) as info:
        check_policy(typed(results), _policy(absent, {**CLEAN, "blocking": False}))
    assert str(info.value) == (
        "t.yaml: key 'rules': no blocking rule applies to results.json, so the gate would pass on nothing "
        "(fog: 'fog@*' is not in this run (required: false))"
    )
    applies = check_policy(typed(results), _policy(absent, CLEAN))  # one blocking rule that applies is enough
    assert [r["status"] for r in applies["rules"]] == ["not_applicable", "pass"]


def test_report_only_runs_and_says_so_everywhere(results, tmp_path):
    warned = {**CLEAN, "min": 0.99, "blocking": False}
    section = check_policy(typed(results), _policy(warned, report_only=True))
    assert section["verdict"] == "pass" and section["report_only"] is True
    assert section["rules"][0]["status"] == "warn"
    assert PolicyOutcome.model_validate(section).report_only is True  # a typed field of the contract
    assert verdict_line(typed({"policy": section})).startswith(
        "verdict: REPORT ONLY (policy t gates nothing: report_only, no blocking rule; rules: 1 warn;"
    )
    assert summary_json(typed({"policy": section, "conditions": []}), tmp_path)["report_only"] is True
    junit = ET.parse(write_junit(PolicyOutcome.model_validate(section), [], tmp_path / "junit.xml")).getroot()
    properties = {p.get("name"): p.get("value") for p in junit.iter("property")}
    assert properties["policy.report_only"] == "True" and properties["policy.verdict"] == "pass"
    assert render_markdown_summary(typed({"policy": section})).startswith("## ℹ️ cvaudit: REPORT ONLY")
    gate = check_policy(typed(results), _policy(CLEAN))
    assert "report_only" not in gate and not verdict_line(typed({"policy": gate})).startswith("verdict: REPORT ONLY")


def test_report_only_on_the_command_line(runner_cli, results_file, write_policy):
    path = write_policy("version: 1\nname: look\nreport_only: true\n")
    out = runner_cli.invoke(policy_group, ["check", str(results_file), "--policy", str(path)])
    assert out.exit_code == 0, out.output
    assert (
        out.output.startswith("policy look (sha256 ")
        and "verdict REPORT ONLY (report_only: gates nothing)" in (out.output.splitlines()[0])
    )
    out = runner_cli.invoke(policy_group, ["check", str(results_file), "--policy", str(path), "--format", "json"])
    assert json.loads(out.stdout)["policy"]["report_only"] is True


@pytest.mark.parametrize(
    "extra, where",
    [
        ({"rules": [CLEAN]}, "rule 'clean-accuracy': key 'blocking'"),  # rules block by default
        ({"governance": {"pii": {"blocking": True}}}, "key 'governance.pii.blocking'"),
        ({"governance": {"retention": {"period_days": 30, "blocking": True}}}, "key 'governance.retention.blocking'"),
    ],
    ids=["blocking-rule", "blocking-check", "blocking-retention"],
)
def test_a_report_only_policy_that_blocks_is_a_contradiction(extra, where):
    with pytest.raises(PolicyError) as info:
        policy_from_dict({"version": 1, "name": "t", "report_only": True, **extra}, source="t.yaml")
    assert str(info.value).startswith(f"t.yaml: {where}: a report_only policy blocks nothing"), str(info.value)


# 2. required: false, whatever the spelling ------------------------------------------------------------

SPELLINGS = {
    # night runs at 1..5: severity 6 did not run
    "severity not run": ({"condition": "night@6"}, {"stressor": "night", "severity": 6}),
    # fog never ran
    "stressor not run": ({"condition": "fog@2"}, {"stressor": "fog", "severity": 2}),
    "whole stressor": ({"condition": "fog@*"}, {"stressor": "fog"}),
    "stressor glob": ({"condition": "fo?@2"}, {"stressor": "fo?", "severity": 2}),
}


@pytest.mark.parametrize("as_condition, as_stressor", SPELLINGS.values(), ids=SPELLINGS.keys())
def test_required_false_means_the_same_whatever_the_spelling(results, as_condition, as_stressor):
    outcomes = []
    for target in (as_condition, as_stressor):
        rule = {"id": "r", "metric": "accuracy", "min": 0.5, "required": False, **target}
        section = check_policy(typed(results), _policy(rule, CLEAN))
        assert section["verdict"] == "pass"
        outcomes.append(section["rules"][0]["status"])
        with pytest.raises(PolicyError, match="rule 'r'"):  # without required: false: never matches
            check_policy(typed(results), _policy({**rule, "required": True}, CLEAN))
    assert outcomes == ["not_applicable", "not_applicable"]


def test_an_absent_section_entry_with_required_false_is_not_applicable_too(results):
    by_entry = {"id": "r", "section": "robustness", "entry": "fog@*", "metric": "drop", "max": 0.3, "required": False}
    by_condition = {"id": "r", "condition": "fog@*", "metric": "accuracy", "min": 0.5, "required": False}
    for rule in (by_entry, by_condition):
        judged = check_policy(typed(results), _policy(rule, CLEAN))["rules"][0]
        assert judged["status"] == "not_applicable", judged
    assert judged["message"] == "not applicable: 'fog@*' is not in this run (required: false)"
    # found absent only while judging: the verdict still refuses a gate left with nothing to judge
    with pytest.raises(
        PolicyError, match=r"^t\.yaml: key 'rules': no blocking rule or check could be judged on these results"
    ):
        check_policy(typed(results), _policy(by_entry, {**CLEAN, "blocking": False}))


@pytest.mark.parametrize("target", [{"condition": "pgd@0.0077"}, {"stressor": "pgd", "severity": 0.0077}])
def test_a_near_miss_is_an_error_whatever_the_spelling(results, target):
    rule = {"id": "r", "metric": "accuracy", "min": 0.5, "required": False, **target}
    with pytest.raises(PolicyError, match="no condition 'pgd@0.0077' in the run; pgd runs pgd@0.0078"):
        check_policy(typed(results), _policy(rule, CLEAN))


@pytest.mark.parametrize("required, code", [(False, 0), (True, 2)])
def test_both_spellings_give_the_same_exit_code(runner_cli, results_file, write_policy, required, code):
    lines = []
    for target in ("condition: night@6", "stressor: night, severity: 6"):
        path = write_policy(
            f"version: 1\nname: t\nrules:\n  - {{id: r, {target}, metric: accuracy, min: 0.5, "
            f"required: {str(required).lower()}}}\n  - {{id: clean, condition: clean, metric: accuracy, min: 0.5}}\n"
        )
        out = runner_cli.invoke(policy_group, ["check", str(results_file), "--policy", str(path)])
        assert out.exit_code == code, out.output
        lines.append(out.output.splitlines()[0] if code == 2 else out.output.splitlines()[1])
    if code == 0:
        assert lines[0].split()[:2] == lines[1].split()[:2] == ["NOT_APPLICABLE", "r"]
    else:
        assert "key 'condition': no condition 'night@6' in the run; night runs night@1" in lines[0]
        assert "key 'severity': no condition 'night@6' in the run; night runs night@1" in lines[1]


def _with_probe(results: dict[str, Any]) -> dict[str, Any]:
    """The fixture plus an attack sanity probe pgd@0.5 (accuracy 0.01, as a working attack gives)."""
    results = copy.deepcopy(results)
    probe = copy.deepcopy(next(c for c in results["conditions"] if c["id"] == "pgd@0.0078"))
    probe.update(id="pgd@0.5", severity=0.5, probe=True)
    probe["metrics"]["accuracy"] = 0.01
    results["conditions"].append(probe)
    return results


@pytest.mark.parametrize(
    "as_condition, as_stressor, picked",
    [
        ({"condition": "pgd@*"}, {"stressor": "pgd"}, "pgd@0.0078"),  # a wildcard leaves the probe out
        ({"condition": "pgd@0.5"}, {"stressor": "pgd", "severity": 0.5}, "pgd@0.5"),  # naming it judges it
    ],
)
def test_probes_are_picked_the_same_whatever_the_spelling(results, as_condition, as_stressor, picked):
    results = _with_probe(results)
    judged = [
        check_policy(typed(results), _policy({"id": "r", "metric": "accuracy", "min": 0.0, **target}))["rules"][0]
        for target in (as_condition, as_stressor)
    ]
    assert [(r["condition"], r["observed"], "evaluations" in r) for r in judged] == [
        (picked, 0.41 if picked == "pgd@0.0078" else 0.01, False)
    ] * 2


def test_a_wildcard_that_only_finds_probes_matches_nothing(results):
    results = _with_probe(results)
    for cond in results["conditions"]:
        cond["probe"] = cond["id"].startswith("pgd@")
    with pytest.raises(PolicyError, match=r"key 'stressor': stressor 'pgd' \('pgd@\*'\) matches no condition"):
        check_policy(typed(results), _policy({"id": "r", "stressor": "pgd", "metric": "accuracy", "min": 0.0}))
    optional = {"id": "r", "condition": "pgd@*", "metric": "accuracy", "min": 0.0, "required": False}
    assert check_policy(typed(results), _policy(optional, CLEAN))["rules"][0]["status"] == "not_applicable"


def test_a_stressor_label_with_dots_is_one_spelling(results):
    results = copy.deepcopy(results)
    for cond in results["conditions"]:
        if cond["stressor"] == "blur":
            cond["stressor"], cond["id"] = "blur.v2", cond["id"].replace("blur", "blur.v2")
    rule = {"id": "r", "metric": "accuracy", "min": 0.5}
    by_condition = check_policy(typed(results), _policy({**rule, "condition": "blur.v2@3"}))["rules"][0]
    by_stressor = check_policy(typed(results), _policy({**rule, "stressor": "blur.v2", "severity": 3}))["rules"][0]
    assert by_condition["condition"] == by_stressor["condition"] == "blur.v2@3"
    assert by_condition["observed"] == by_stressor["observed"] == 0.81


# 3. bounds no difference can meet ----------------------------------------------------------------------

IMPOSSIBLE = {
    "gap below 0": (
        {"condition": "clean", "attribute": "camera", "aggregate": "gap", "metric": "accuracy", "max": -0.01},
        "max",
        "a gap of accuracy is never negative, so max -0.01 can never be met; expected a bound >= 0",
    ),
    "point gap below 0": (
        {"condition": "clean", "attribute": "camera", "aggregate": "gap", "metric": "accuracy", "max": -0.01}
        | {"test": "point"},
        "max",
        "a gap of accuracy is never negative",
    ),
    "ratio below 0": (
        {"condition": "clean", "attribute": "camera", "aggregate": "ratio", "metric": "accuracy", "min": -0.5},
        "min",
        "a ratio of accuracy is never negative, so min -0.5 is met whatever the data (the rule judges nothing)",
    ),
    "point ratio above 1": (
        {"condition": "clean", "attribute": "camera", "aggregate": "ratio", "metric": "accuracy", "max": 1.5}
        | {"test": "point"},
        "max",
        "a ratio of accuracy (smallest group over largest) is at most 1, so max 1.5 is met whatever the data",
    ),
    "point gap with a negative min": (
        {"condition": "clean", "attribute": "camera", "aggregate": "gap", "metric": "accuracy", "min": -0.1}
        | {"test": "point"},
        "min",
        "a gap of accuracy is never negative, so min -0.1 is met whatever the data",
    ),
    "ratio above 1": (
        {"condition": "clean", "attribute": "camera", "aggregate": "ratio", "metric": "accuracy", "min": 1.2},
        "min",
        "a ratio of accuracy (smallest group over largest) is at most 1, so min 1.2 can never be met",
    ),
    "equalized odds below 0": (
        {"condition": "clean", "attribute": "camera", "metric": "equalized_odds_difference", "max": -0.1},
        "max",
        "a gap of equalized_odds_difference is never negative",
    ),
    "blocking gap with min 0": (
        {"condition": "clean", "attribute": "camera", "aggregate": "gap", "metric": "accuracy", "min": 0.0}
        | {"test": "point"},
        "min",
        "a gap of accuracy is always >= 0, so min 0 is met whatever the data",
    ),
    "blocking ratio with max 1": (
        {"condition": "clean", "attribute": "camera", "aggregate": "ratio", "metric": "accuracy", "max": 1.0}
        | {"test": "point"},
        "max",
        "a ratio of accuracy is always <= 1, so max 1 is met whatever the data",
    ),
    "named gap below 0": (
        {"condition": "clean", "attribute": "camera", "metric": "accuracy_gap", "max": -0.1},
        "max",
        "a gap of accuracy is never negative",
    ),
}


@pytest.mark.parametrize("rule, key, problem", IMPOSSIBLE.values(), ids=IMPOSSIBLE.keys())
def test_a_bound_no_difference_can_meet_is_refused_at_load(rule, key, problem):
    with pytest.raises(PolicyError) as info:
        _policy({"id": "g", **rule})
    assert str(info.value).startswith(f"t.yaml: rule 'g': key '{key}': {problem}"), str(info.value)


def test_a_negative_gap_bound_is_one_line_exit_2_not_an_internal_error(runner_cli, results_file, write_policy):
    path = write_policy(
        "version: 1\nname: t\nrules:\n"
        "  - {id: gap, condition: clean, attribute: camera, aggregate: gap, metric: accuracy, max: -0.01}\n"
    )
    out = runner_cli.invoke(policy_group, ["check", str(results_file), "--policy", str(path)])
    assert out.exit_code == 2
    assert _one_line(out).startswith(f"cvaudit: error: {path}: rule 'gap': key 'max': a gap of accuracy is never")


@pytest.mark.parametrize("rule", [{"aggregate": "gap", "max": 0.0}, {"aggregate": "ratio", "min": 1.0}])
def test_the_edges_of_the_range_stay_allowed(results, rule):
    full = {"id": "g", "condition": "clean", "attribute": "camera", "metric": "accuracy", **rule}
    assert check_policy(typed(results), _policy(full, CLEAN))["rules"][0]["status"] in ("pass", "fail")


# 4. a run without attributes ---------------------------------------------------------------------------


def _without_attributes(results: dict[str, Any]) -> dict[str, Any]:
    results = copy.deepcopy(results)
    results["dataset"]["attributes"] = {}
    results["fairness"] = []
    for cond in results["conditions"]:
        cond["groups"] = []
    return results


def test_ci_gate_judges_a_run_without_attributes(results):
    section = check_policy(typed(_without_attributes(results)), load_policy("ci-gate"))
    by_id = {r["id"]: r for r in section["rules"]}
    assert by_id["clean-subgroup-gap"]["status"] == "not_applicable"
    assert by_id["clean-subgroup-gap"]["message"] == (
        "not applicable: the run has no subgroup attributes (attribute '*' matches none; required: false)"
    )
    assert by_id["clean-accuracy"]["status"] == "pass"
    # what fails is ci-gate's PII check, configured but never counted for these results: fail closed
    assert section["blocking_failures"] == ["governance.pii_columns", "governance.pii_values"]


@pytest.mark.parametrize(
    "rule, problem",
    [
        (
            {"attribute": "camera", "aggregate": "gap", "required": False},
            "key 'attribute': no attribute 'camera' in the run (attributes: none)",
        ),
        (
            {"attribute": "*", "aggregate": "gap"},
            "key 'attribute': '*' matches no attribute of the run (attributes: none); "
            "set 'required: false' if the run may have no attributes",
        ),
    ],
    ids=["named", "glob-without-required-false"],
)
def test_a_group_rule_that_can_never_match_stays_an_error(results, rule, problem):
    full = {"id": "g", "condition": "clean", "metric": "accuracy", "max": 0.1, **rule}
    with pytest.raises(PolicyError, match=re.escape(f"t.yaml: rule 'g': {problem} (in results.json)")):
        check_policy(typed(_without_attributes(results)), _policy(full, CLEAN))


@pytest.mark.parametrize("name", ["high-risk", "demo"])
def test_other_builtins_still_need_their_attributes(results, name):
    with pytest.raises(PolicyError, match="key 'attribute'"):
        check_policy(typed(_without_attributes(results)), load_policy(name))


def test_a_glob_that_matches_no_attribute_of_a_run_with_attributes_stays_an_error(results):
    rule = {"id": "g", "condition": "clean", "attribute": "cam*ra?", "aggregate": "gap", "metric": "accuracy"}
    with pytest.raises(PolicyError, match=r"'cam\*ra\?' matches no attribute of the run \(attributes: camera"):
        check_policy(typed(results), _policy({**rule, "max": 0.1, "required": False}, CLEAN))
