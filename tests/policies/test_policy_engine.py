"""The rule engine against the hand-made results in conftest.py.

Expected values are worked out by hand from the fixture's table, not by
calling the code under test.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from conftest import _condition, make_results, typed

from policies import PolicyError, check_policy, load_policy
from policies.loader import policy_from_dict

#: A blocking rule that applies to the fixture and passes, so a policy built around one rule under test
#: (non-blocking, or not applicable) is still a gate (policies.validate.check_gate).
ANCHOR = {"id": "anchor", "condition": "clean", "metric": "accuracy", "min": 0.0}


def _policy(*rules: dict[str, Any], **top: Any):
    return policy_from_dict({"version": 1, "name": "t", "rules": list(rules), **top}, source="t.yaml")


def _rule(results: dict[str, Any], rule: dict[str, Any], **top: Any) -> dict[str, Any]:
    rule = {"id": "r", **rule}
    section = check_policy(typed(results), _policy(rule, ANCHOR, **top))
    return section["rules"][0]


def test_point_pass_and_fail(results):
    ok = _rule(results, {"condition": "clean", "metric": "accuracy", "min": 0.9})
    assert ok["status"] == "pass" and ok["observed"] == 0.95 and ok["threshold"] == 0.9
    bad = _rule(results, {"condition": "clean", "metric": "accuracy", "min": 0.96})
    assert bad["status"] == "fail" and bad["blocking"] is True
    assert "0.95 < min 0.96" in bad["message"]
    assert bad["condition"] == "clean" and bad["group"] is None


def test_non_blocking_failure_is_a_warning(results):
    rule = _rule(results, {"condition": "night@5", "metric": "ece", "max": 0.05, "blocking": False})
    assert rule["status"] == "warn" and rule["observed"] == 0.2


def test_judge_interval_bounds(results):
    lo, hi = results["conditions"][0]["metrics"]["accuracy_ci"]
    rule = _rule(results, {"condition": "clean", "metric": "accuracy", "judge": "ci_lower", "min": 0.94})
    assert rule["observed"] == lo and rule["status"] == ("pass" if lo >= 0.94 else "fail")
    assert lo < 0.94 and rule["status"] == "fail"
    rule = _rule(results, {"condition": "clean", "metric": "ece", "judge": "ci_upper", "max": 0.05})
    assert rule["observed"] == 0.039 and rule["status"] == "pass"
    assert hi > 0.95


def test_glob_takes_the_worst_condition(results):
    rule = _rule(results, {"condition": "night@*", "metric": "accuracy", "min": 0.5})
    assert rule["status"] == "fail" and rule["condition"] == "night@5" and rule["observed"] == 0.45
    assert len(rule["evaluations"]) == 5
    assert [e["status"] for e in rule["evaluations"]] == ["pass"] * 4 + ["fail"]


def test_stressor_and_severity_select(results):
    rule = _rule(results, {"stressor": "blur", "severity": 3, "metric": "accuracy", "min": 0.5})
    assert rule["condition"] == "blur@3" and rule["observed"] == 0.81
    rule = _rule(results, {"stressor": "pgd", "severity": 0.0078, "metric": "accuracy", "min": 0.5})
    assert rule["condition"] == "pgd@0.0078" and rule["status"] == "fail"
    rule = _rule(results, {"stressor": "blur", "metric": "accuracy", "max": 1.0})
    assert len(rule["evaluations"]) == 3 and rule["observed"] == 0.92  # worst for a max rule = highest


def test_one_group(results):
    rule = _rule(
        results,
        {
            "condition": "night@3",
            "attribute": "camera",
            "value": "B",
            "metric": "accuracy",
            "min": 0.8,
        },
    )
    assert rule["status"] == "fail" and rule["observed"] == 0.76 and rule["group"] == "camera=B" and rule["n"] == 500


def test_intersectional_group_flagged_insufficient(results):
    rule = _rule(
        results,
        {
            "condition": "clean",
            "attribute": "camera×ink",
            "value": "B×thick",
            "metric": "accuracy",
            "min": 0.8,
        },
    )
    assert rule["status"] == "fail" and "flagged insufficient_data" in rule["message"]  # fail closed by default


def test_gap_ratio_worst_computed_from_groups(results):
    gap = _rule(
        results,
        {
            "condition": "night@3",
            "attribute": "camera",
            "aggregate": "gap",
            "metric": "accuracy",
            "max": 0.02,
            "blocking": False,
        },
    )
    assert gap["status"] == "warn" and math.isclose(gap["observed"], 0.84 - 0.76)
    assert gap["group"] == "camera" and "camera=B 0.76 vs camera=A 0.84" in gap["message"]
    ratio = _rule(
        results,
        {
            "condition": "night@3",
            "attribute": "camera",
            "aggregate": "ratio",
            "metric": "accuracy",
            "min": 0.8,
        },
    )
    assert math.isclose(ratio["observed"], 0.76 / 0.84) and ratio["status"] == "pass"
    worst = _rule(
        results,
        {
            "condition": "night@3",
            "attribute": "ink",
            "aggregate": "worst",
            "metric": "accuracy",
            "min": 0.8,
        },
    )
    assert worst["group"] == "ink=thin" and worst["observed"] == 0.78 and worst["status"] == "fail"


def test_gap_leaves_out_insufficient_groups(results):
    # B×thick (n=12, accuracy 0.5) is flagged: the gap is over the other three cells.
    rule = _rule(
        results,
        {
            "condition": "clean",
            "attribute": "camera×ink",
            "aggregate": "gap",
            "metric": "accuracy",
            "max": 0.1,
        },
    )
    assert math.isclose(rule["observed"], (0.96 + 0.97) / 2 - (0.94 + 0.93) / 2)
    assert "1 small group(s) left out" in rule["message"]


def test_min_samples_excludes_small_groups_then_needs_two(results):
    rule = _rule(
        results,
        {
            "condition": "clean",
            "attribute": "camera×ink",
            "aggregate": "gap",
            "metric": "accuracy",
            "max": 0.1,
            "min_samples": 250,
        },
        on_insufficient_data="warn",
    )
    assert rule["status"] == "insufficient_data" and "fewer than two" in rule["message"]


def test_attribute_glob_covers_every_attribute(results):
    rule = _rule(
        results,
        {
            "condition": "clean",
            "attribute": "*",
            "aggregate": "gap",
            "metric": "accuracy",
            "max": 0.03,
            "test": "point",
        },
    )
    assert rule["status"] == "fail" and rule["group"] == "ink" and math.isclose(rule["observed"], 0.04)
    assert {e["group"] for e in rule["evaluations"]} == {"camera", "ink", "camera×ink"}


def test_fairness_metric_is_read_from_fairness(results):
    rule = _rule(
        results,
        {
            "condition": "night@3",
            "attribute": "camera",
            "metric": "equalized_odds_difference",
            "max": 0.1,
            "test": "point",  # the stored value against the bound (a detect test on these few images is untestable)
        },
    )
    stored = next(f for f in results["fairness"] if (f["condition"], f["attribute"]) == ("night@3", "camera"))
    assert rule["observed"] == stored["equalized_odds_difference"]  # selected, never recomputed
    assert rule["status"] == ("fail" if stored["equalized_odds_difference"] > 0.1 else "pass")


def test_an_interval_of_a_gap_is_refused_before_judging(results):
    with pytest.raises(PolicyError, match="key 'judge': judge 'ci_upper' needs an interval of the gap"):
        _rule(
            results,
            {
                "condition": "clean",
                "attribute": "camera",
                "aggregate": "gap",
                "metric": "accuracy",
                "judge": "ci_upper",
                "max": 0.1,
            },
        )


def test_min_samples_makes_rule_insufficient(results):
    rule = _rule(
        results,
        {"condition": "clean", "metric": "accuracy", "min": 0.5, "min_samples": 5000},
        on_insufficient_data="warn",
    )
    assert rule["status"] == "insufficient_data" and "n=1000 < min_samples 5000" in rule["message"]


@pytest.mark.parametrize(
    ("mode", "blocking", "status", "verdict"),
    [
        ("warn", True, "insufficient_data", "pass"),
        ("fail", True, "fail", "fail"),
        ("fail", False, "warn", "pass"),
        ("pass", True, "pass", "pass"),
    ],
)
def test_on_insufficient_data(results, mode, blocking, status, verdict):
    rule = {
        "id": "r",
        "condition": "clean",
        "metric": "accuracy",
        "min": 0.5,
        "min_samples": 5000,
        "blocking": blocking,
    }
    section = check_policy(typed(results), _policy(rule, ANCHOR, on_insufficient_data=mode))
    assert section["rules"][0]["status"] == status
    assert section["verdict"] == verdict


def test_rule_overrides_on_insufficient_data(results):
    rule = {
        "condition": "clean",
        "metric": "accuracy",
        "min": 0.5,
        "min_samples": 5000,
        "on_insufficient_data": "fail",
    }
    assert _rule(results, rule, on_insufficient_data="warn")["status"] == "fail"


def test_null_metric_is_insufficient(results):
    rule = _rule(results, {"condition": "pgd@*", "metric": "ece", "max": 0.1}, on_insufficient_data="warn")
    assert rule["status"] == "insufficient_data" and "null" in rule["message"]


def test_an_absent_condition_is_an_error_unless_the_rule_is_optional(results):
    # defocus_blur is a registered stressor the fixture did not run: a rule about it can never match
    with pytest.raises(PolicyError) as info:
        _rule(results, {"condition": "defocus_blur@*", "metric": "accuracy", "min": 0.5})
    assert str(info.value).startswith("t.yaml: rule 'r': key 'condition': 'defocus_blur@*' matches no condition")
    assert "clean, night@1" in str(info.value)
    rule = _rule(results, {"condition": "fog@*", "metric": "accuracy", "min": 0.5, "required": False})
    assert rule["status"] == "not_applicable" and "'fog@*' is not in this run" in rule["message"]
    with pytest.raises(PolicyError, match="key 'condition': no stressor 'fog' in the run"):
        _rule(results, {"condition": "fog@1", "metric": "accuracy", "min": 0.5, "required": True})


def test_a_severity_near_one_of_the_run_is_an_error_even_when_optional(results):
    with pytest.raises(PolicyError, match="no condition 'pgd@0.0077' in the run; pgd runs pgd@0.0078"):
        _rule(results, {"condition": "pgd@0.0077", "metric": "accuracy", "min": 0.5, "required": False})
    rule = _rule(results, {"condition": "night@4.5", "metric": "accuracy", "min": 0.5, "required": False})
    assert rule["status"] == "not_applicable"


def test_unknown_metric_is_an_error(results):
    with pytest.raises(PolicyError) as info:
        _rule(results, {"condition": "clean", "metric": "acuracy", "min": 0.5})
    assert (info.value.rule_id, info.value.key) == ("r", "metric")
    assert "(metrics: n, accuracy," in str(info.value) and "\n" not in str(info.value)


def test_missing_interval_is_an_error(results):
    with pytest.raises(PolicyError) as info:
        _rule(results, {"condition": "clean", "metric": "brier", "judge": "ci_upper", "max": 0.5})
    assert info.value.key == "judge"


@pytest.mark.parametrize(
    ("rule", "key"),
    [
        ({"attribute": "skin_tone", "value": "V"}, "attribute"),
        ({"attribute": "camera", "value": "C"}, "value"),
        ({"attribute": "camera", "aggregate": "gap", "metric": "precision"}, "metric"),
    ],
)
def test_unknown_group_is_an_error(results, rule, key):
    rule = {"condition": "clean", "metric": "accuracy", "min": 0.5, **rule}
    with pytest.raises(PolicyError) as info:
        _rule(results, rule)
    assert info.value.key == key and "t.yaml: rule 'r'" in str(info.value)


def test_section_rules(results):
    rule = {"section": "robustness", "entry": "night@*", "metric": "drop", "max": 0.3}
    rule = _rule(results, {**rule, "blocking": False})
    assert rule["status"] == "warn" and rule["observed"] == 0.5
    assert rule["condition"] == "robustness[night@5]" and len(rule["evaluations"]) == 5
    rule = _rule(results, {"section": "robustness_summary", "metric": "mce", "max": 0.25})
    assert rule["status"] == "pass" and rule["observed"] == 0.21
    rule = _rule(results, {"section": "dataset", "metric": "num_skipped", "max": 0})
    assert rule["status"] == "pass"
    rule = _rule(results, {"section": "dataset", "metric": "attributes.camera.B", "min": 100})
    assert rule["observed"] == 500
    rule = _rule(
        results,
        {
            "section": "conditions",
            "entry": "clean",
            "metric": "groups[value=A].metrics.accuracy",
            "min": 0.9,
        },
    )
    assert rule["observed"] == 0.96
    with pytest.raises(PolicyError, match="section 'calibration_curves' is not written by this run"):
        _rule(results, {"section": "calibration_curves", "metric": "x", "max": 1, "required": False})
    with pytest.raises(PolicyError, match="key 'entry'"):
        _rule(results, {"section": "robustness", "metric": "drop", "max": 0.3})


def test_finding_rules_over_adversarial_checks(results):
    rule = _rule(results, {"kind": "finding", "check": "adversarial.monotone_in_epsilon"})
    assert rule["status"] == "pass"
    rule = _rule(results, {"kind": "finding", "check": "*zero_epsilon*"})
    assert rule["status"] == "warn" and rule["observed"] == "warn"
    rule = _rule(results, {"kind": "finding", "check": "*zero_epsilon*", "fail_on": ["warn", "fail"]})
    assert rule["status"] == "fail"
    results["adversarial_checks"][0]["status"] = "fail"
    section = check_policy(
        typed(results), _policy({"id": "m", "kind": "finding", "check": "adversarial.monotone_in_epsilon"})
    )
    assert section["rules"][0]["status"] == "fail" and section["verdict"] == "fail"
    assert section["blocking_failures"] == ["m"]


def test_finding_rule_absent_check(results):
    with pytest.raises(PolicyError, match="key 'check': no check 'label_leakage' in the run"):
        _rule(results, {"kind": "finding", "check": "label_leakage"})
    rule = _rule(results, {"kind": "finding", "check": "label_leakage", "required": False})
    assert rule["status"] == "not_applicable"


def test_governance_findings_drive_the_verdict(results):
    findings = [
        {"check": "consent_missing", "status": "fail", "blocking": True, "count": 3},
        {"check": "consent_withdrawn", "status": "pass", "blocking": True, "count": 0},
        {"check": "purpose_missing", "status": "warn", "blocking": False, "count": 1},
    ]
    governance = {"consent": {"blocking": True}, "purpose": {}}
    section = check_policy(typed(results), _policy(governance=governance), findings=findings)
    assert section["verdict"] == "fail" and section["blocking_failures"] == ["governance.consent_missing"]
    rule = {"id": "consent", "kind": "finding", "check": "consent_*"}
    judged = check_policy(typed(results), _policy(rule, governance=governance), findings=findings)
    assert judged["rules"][0]["status"] == "fail"
    results["governance"]["findings"] = findings
    assert check_policy(typed(results), _policy(governance=governance))["verdict"] == "fail"
    assert section["failures"][0] == {
        "id": "governance.consent_missing",
        "kind": "governance",
        "observed": 3,
        "threshold": 0,
        "op": "max",
        "message": "",
    }


def test_a_configured_governance_check_that_was_not_counted_fails_closed(results):
    findings = [{"check": "consent_missing", "status": "pass", "blocking": True, "count": 0}]
    section = check_policy(typed(results), _policy(governance={"consent": {"blocking": True}}), findings=findings)
    assert section["blocking_failures"] == ["governance.consent_withdrawn"]
    relaxed = check_policy(
        typed(results),
        _policy(governance={"consent": {"blocking": True}}, on_insufficient_data="warn"),
        findings=findings,
    )
    assert relaxed["verdict"] == "pass" and relaxed["governance_counts"]["insufficient_data"] == 1


def test_verdict_is_fail_iff_a_blocking_rule_failed(results):
    rules = [
        {"id": "a", "condition": "clean", "metric": "accuracy", "min": 0.9},
        {"id": "b", "condition": "night@5", "metric": "accuracy", "min": 0.9, "blocking": False},
    ]
    section = check_policy(typed(results), _policy(*rules))
    assert section["verdict"] == "pass" and section["counts"] == {"pass": 1, "warn": 1}
    rules[0]["min"] = 0.99
    assert check_policy(typed(results), _policy(*rules))["verdict"] == "fail"


def test_section_shape_and_builtin_demo(results):
    policy = load_policy("demo")
    section = check_policy(typed(results), policy)
    assert set(section) >= {"name", "version", "sha256", "verdict", "rules"}
    assert section["sha256"] == policy.sha256
    assert section["verdict"] == "pass"
    by_id = {r["id"]: r for r in section["rules"]}
    assert by_id["night3-camera-gap"]["status"] == "warn"
    assert by_id["night5-calibration"]["status"] == "warn"
    for rule in section["rules"]:
        assert set(rule) >= {
            "id",
            "status",
            "blocking",
            "observed",
            "threshold",
            "message",
            "condition",
            "group",
            "clause",
        }


def test_demo_tolerates_missing_conditions(results):
    results["conditions"] = [c for c in results["conditions"] if c["id"] in ("clean", "night@1")]
    results["fairness"] = [f for f in results["fairness"] if f["condition"] in ("clean", "night@1")]
    del results["adversarial_checks"]
    section = check_policy(typed(results), load_policy("demo"))
    assert section["verdict"] == "pass"
    # four absent conditions, the absent autoattack conditions, the absent adversarial checks (adversarial-sanity,
    # autoattack-strongest), and dataset.skipped_share (older results lack it)
    assert section["counts"]["not_applicable"] == 8
    by_id = {r["id"]: r for r in section["rules"]}
    assert by_id["autoattack-accuracy"]["status"] == by_id["autoattack-strongest"]["status"] == "not_applicable"


def _with_ensemble(results: dict[str, Any], accuracy: float, strongest: str) -> dict[str, Any]:
    """``results`` plus an autoattack condition at pgd's ε and its ensemble-versus-pgd finding."""
    groups = {"A": accuracy, "B": accuracy, "thin": accuracy, "thick": accuracy}
    cond = _condition("autoattack@0.0078", "autoattack", 0.0078, accuracy, None, groups)
    probe = _condition("autoattack@0.5", "autoattack", 0.5, 0.01, None, {k: 0.01 for k in groups})
    for c in (cond, probe):
        c["model_aware"] = True
    probe["probe"] = True
    results["conditions"] += [cond, probe]
    results["adversarial_checks"].append(
        {
            "check": "adversarial.ensemble_at_least_as_strong",
            "status": strongest,
            "attack": "autoattack",
            "observed": None if strongest == "insufficient_data" else 0.0,
            "message": "autoattack versus pgd",
        }
    )
    return results


def test_demo_judges_the_ensemble(results):
    """The demo policy judges the ensemble's robust accuracy (min 0.55, not blocking; the large-ε probe is
    left out of the wildcard) and warns when the ensemble is weaker than another attack."""
    policy = load_policy("demo")
    section = check_policy(typed(_with_ensemble(results, 0.41, "pass")), policy)
    by_id = {r["id"]: r for r in section["rules"]}
    accuracy, strongest = by_id["autoattack-accuracy"], by_id["autoattack-strongest"]
    assert (
        accuracy["status"] == "warn" and accuracy["observed"] == 0.41 and accuracy["condition"] == "autoattack@0.0078"
    )
    assert accuracy["blocking"] is False and strongest["status"] == "pass"
    assert section["verdict"] == "pass"
    ok = check_policy(typed(_with_ensemble(make_results(), 0.60, "fail")), policy)
    by_id = {r["id"]: r for r in ok["rules"]}
    assert by_id["autoattack-accuracy"]["status"] == "pass"  # 0.60 >= 0.55; the probe's 0.01 is not judged
    assert by_id["autoattack-strongest"]["status"] == "warn"  # a failed flag warns (the rule is not blocking)
    assert ok["verdict"] == "pass"


def test_demo_ensemble_flag_that_could_not_be_evaluated_does_not_pass(results):
    section = check_policy(typed(_with_ensemble(results, 0.60, "insufficient_data")), load_policy("demo"))
    by_id = {r["id"]: r for r in section["rules"]}
    assert by_id["autoattack-strongest"]["status"] == "insufficient_data"  # on_insufficient_data: warn
    assert by_id["adversarial-sanity"]["status"] != "pass"


def test_high_risk_fails_what_it_cannot_judge(results):
    results["adversarial_checks"][0]["status"] = "insufficient_data"  # e.g. no large-epsilon probe ran
    results["adversarial_checks"][1]["status"] = "insufficient_data"
    section = check_policy(typed(results), load_policy("high-risk"))
    by_id = {r["id"]: r for r in section["rules"]}
    assert by_id["adversarial-sanity"]["status"] == "fail"
    assert by_id["moderate-stress-accuracy"]["status"] == "fail"  # occlusion@2 ci_lower < 0.75
    assert section["verdict"] == "fail"


def test_a_contract_key_older_results_lack_is_insufficient_data_not_an_error(results):
    for cond in results["conditions"]:
        cond["metrics"].pop("debiased_l2_ce", None)
        cond["metrics"].pop("debiased_l2_ce_ci", None)
    rule = _rule(results, {"condition": "clean", "metric": "debiased_l2_ce", "max": 0.1}, on_insufficient_data="warn")
    assert rule["status"] == "insufficient_data" and "debiased_l2_ce is not stored" in rule["message"]
    with pytest.raises(PolicyError, match="unknown metric 'debiased_l2'"):
        _rule(results, {"condition": "clean", "metric": "debiased_l2", "max": 0.1})


@pytest.mark.parametrize(("policy", "status"), [("ci-gate", "fail"), ("demo", "warn")])
def test_builtin_policies_bound_the_share_of_unreadable_images(results, policy, status):
    results["dataset"]["skipped_share"] = 0.02
    rule = next(
        r for r in check_policy(typed(results), load_policy(policy))["rules"] if r["id"] == "dataset-skipped-share"
    )
    assert (rule["status"], rule["observed"], rule["threshold"]) == (status, 0.02, 0.01)
    results["dataset"]["skipped_share"] = 0.0
    rule = next(
        r for r in check_policy(typed(results), load_policy(policy))["rules"] if r["id"] == "dataset-skipped-share"
    )
    assert rule["status"] == "pass"


def test_high_risk_still_allows_no_unreadable_image(results):
    results["dataset"]["num_skipped"] = 1
    rule = next(
        r for r in check_policy(typed(results), load_policy("high-risk"))["rules"] if r["id"] == "dataset-complete"
    )
    assert rule["status"] == "fail"
