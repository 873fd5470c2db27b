"""Regression tests for review findings B3, B4, B7, B8, B9, B10 and the nits."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import stored_results as as_stored
from conftest import typed

from audit.cli.policy import policy_group
from policies import PolicyError, check_governance, check_policy, parse_date, report_image_mode
from policies.loader import load_policy, policy_from_dict
from policies.pii import pii_column_kind
from policies.schema import GovernanceConfig

NOW = datetime(2025, 6, 1, tzinfo=timezone.utc)


def _policy(*rules: dict[str, Any], **top: Any):
    return policy_from_dict({"version": 1, "name": "t", "rules": list(rules), **top}, source="t.yaml")


def _stored(check: str, status: str, blocking: bool, count: int) -> dict[str, Any]:
    return {
        "check": check,
        "status": status,
        "blocking": blocking,
        "count": count,
        "total": 10,
        "sample_ids": ["s1"][:count],
        "message": f"{count} of 10",
    }


# B3 ---------------------------------------------------------------------------------------


@pytest.fixture
def stored_results(tmp_path, results):
    results["governance"] = {
        "findings": [
            _stored("consent_withdrawn", "warn", False, 4),
            _stored("pii_values", "fail", True, 2),
        ]
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(as_stored(results)), encoding="utf-8")
    return path


def test_stored_findings_are_judged_by_the_current_policy(stored_results, write_policy):
    runner = CliRunner()
    strict = write_policy("version: 1\nname: s\ngovernance:\n  consent: {blocking: true}\n")
    out = runner.invoke(policy_group, ["check", str(stored_results), "--policy", str(strict), "--format", "json"])
    assert out.exit_code == 1, out.output
    body = json.loads(out.output)
    # consent_missing is configured but was not counted by the run: it cannot be judged, so it fails closed
    assert body["policy"]["blocking_failures"] == ["governance.consent_withdrawn", "governance.consent_missing"]
    by_check = {f["check"]: f for f in body["governance"]["findings"]}
    assert by_check["consent_withdrawn"]["status"] == "fail"
    assert by_check["consent_withdrawn"]["sample_ids"] == ["s1"]
    assert by_check["consent_missing"]["status"] == "fail" and by_check["consent_missing"]["judgeable"] is False
    assert "--manifest" in by_check["consent_missing"]["message"]
    # not configured now: informational, never blocking
    assert by_check["pii_values"]["blocking"] is False and by_check["pii_values"]["informational"]

    # a policy with nothing that can fail (no rule, no blocking check) is no gate: refused, not PASS
    bare = write_policy("version: 1\nname: bare\n", name="bare.yaml")
    out = runner.invoke(policy_group, ["check", str(stored_results), "--policy", str(bare)])
    assert out.exit_code == 2, out.output
    assert out.output.startswith(f"cvaudit: error: {bare}: key 'rules': the policy has no rules"), out.output


def test_findings_from_the_same_policy_are_unchanged():
    policy = _policy(governance={"retention": {"period_days": 30}, "pii": {"blocking": True}, "biometric": {}})
    rows = [
        {"sample_id": "a", "capture_date": "2025-05-30", "email": "x@example.org"},
        {"sample_id": "b", "capture_date": "garbage"},
    ]
    findings = check_governance(rows, policy=policy, now=NOW)
    from policies.findings import judge_findings

    judged = judge_findings(findings, policy)
    assert [f["count"] for f in judged] == [f["count"] for f in findings]  # counts stand under the same settings
    assert judge_findings(judged, policy) == judged  # judging is idempotent
    assert judge_findings(judge_findings([], policy), policy) == judge_findings([], policy)
    face = next(f for f in judged if f["check"] == "biometric_without_basis")  # no contains_face column
    assert face["status"] == "warn" and face["judgeable"] is False  # non-blocking under a fail-closed policy


# B4 ---------------------------------------------------------------------------------------


def test_unparseable_dates_inherit_retention_blocking():
    policy = _policy(governance={"retention": {"period_days": 1095, "blocking": True}})
    findings = check_governance([{"sample_id": "a", "capture_date": "31/12/2010"}], policy=policy, now=NOW)
    bad = next(f for f in findings if f["check"] == "date_unparseable")
    assert bad["status"] == "fail" and bad["blocking"] is True
    assert check_policy(typed({"conditions": []}), policy, findings=findings)["verdict"] == "fail"
    assert "not an ISO date" in bad["message"]
    explicit = _policy(
        governance={"retention": {"period_days": 1095, "blocking": True}, "unparseable_dates": {"blocking": False}}
    )
    findings = check_governance([{"sample_id": "a", "capture_date": "31/12/2010"}], policy=explicit, now=NOW)
    assert next(f for f in findings if f["check"] == "date_unparseable")["status"] == "warn"


# B7 ---------------------------------------------------------------------------------------


def test_explicit_strptime_pattern_wins_over_iso_basic():
    assert parse_date("20201203", date_format="%Y%d%m").date().isoformat() == "2020-03-12"
    assert parse_date("31122020", date_format="%d%m%Y").date().isoformat() == "2020-12-31"
    assert parse_date("2020-12-31", date_format="%d%m%Y").date().isoformat() == "2020-12-31"
    with pytest.raises(ValueError, match="not an ISO date"):
        parse_date("31/12/2010")


def test_bad_strptime_pattern_is_a_policy_error():
    with pytest.raises(PolicyError, match="key 'governance.date_format'"):
        _policy(governance={"date_format": "%Q"})


# B8 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "column",
    [
        "patient_name",
        "home_address",
        "mobile_number",
        "customer_email",
        "E-mail Address",
        "date_of_birth",
        "passport_no",
        "tax_id",
        "customerPhone",
    ],
)
def test_pii_columns_by_token(column):
    assert pii_column_kind(column) is not None
    policy = _policy(governance={"pii": {"blocking": True, "scan": False}})
    findings = check_governance([{"sample_id": "a", column: "x"}], policy=policy, now=NOW)
    assert next(f for f in findings if f["check"] == "pii_columns")["status"] == "fail"


@pytest.mark.parametrize(
    "column",
    [
        "file_name",
        "class_name",
        "image_name",
        "filename",
        "camera_name",
        "site_name",
        "sample_id",
        "capture_date",
        "lawful_basis",
        "contains_face",
        "label",
        "path",
    ],
)
def test_innocent_columns_are_not_pii(column):
    assert pii_column_kind(column) is None


def test_pii_allow_columns_and_token_switch():
    rows = [{"sample_id": "a", "patient_name": "x"}]
    for pii in ({"allow_columns": ["patient_name"]}, {"match_tokens": False}):
        policy = _policy(governance={"pii": {"blocking": True, "scan": False, **pii}})
        found = check_governance(rows, policy=policy, now=NOW)
        assert next(f for f in found if f["check"] == "pii_columns")["status"] == "pass"


# B9 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        {"stressor": "nite", "metric": "accuracy", "min": 0.5},
        {"condition": "nigth@*", "metric": "accuracy", "min": 0.5},
        {"section": "robustnes", "metric": "auc", "min": 0.5},
    ],
)
def test_typos_in_selectors_are_errors(results, rule):
    with pytest.raises(PolicyError, match="nite|nigth|robustnes"):
        check_policy(typed(results), _policy({"id": "r", **rule}))
    if "section" in rule:  # section names are known to the schema: a typo stays an error
        with pytest.raises(PolicyError, match="robustnes"):
            check_policy(typed(results), _policy({"id": "r", "required": False, **rule}))
        return
    anchor = {"id": "anchor", "condition": "clean", "metric": "accuracy", "min": 0.0}  # the gate's applicable rule
    relaxed = check_policy(typed(results), _policy({"id": "r", "required": False, **rule}, anchor))
    assert relaxed["rules"][0]["status"] == "not_applicable"


def test_a_stressor_that_did_not_run_is_an_error_whatever_is_installed(results):
    # the verdict on stored results does not depend on which stressor plugins are installed
    with pytest.raises(PolicyError, match="no stressor 'defocus_blur' in the run"):
        check_policy(typed(results), _policy({"id": "r", "stressor": "defocus_blur", "metric": "accuracy", "min": 0.5}))


def test_typo_exits_2_with_one_cvaudit_error_line(tmp_path, results, write_policy):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(as_stored(results)), encoding="utf-8")
    policy = write_policy("version: 1\nname: x\nrules:\n  - {id: a, stressor: nite, metric: accuracy, min: 0.5}\n")
    out = CliRunner().invoke(policy_group, ["check", str(path), "--policy", str(policy)])
    assert out.exit_code == 2
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cvaudit: error: ")
    assert "rule 'a': key 'stressor': no stressor 'nite' in the run" in lines[0]


@pytest.mark.parametrize("name", ["ci-gate", "demo"])
def test_builtins_work_without_attacks(results, name):
    results["conditions"] = [c for c in results["conditions"] if c["id"] == "clean"]
    results.pop("adversarial_checks", None)
    results.pop("robustness", None)
    check_policy(typed(results), load_policy(name))


def test_high_risk_refuses_a_run_without_stress_or_attacks(results):
    results["conditions"] = [c for c in results["conditions"] if c["id"] == "clean"]
    results.pop("adversarial_checks", None)
    with pytest.raises(PolicyError, match="builtin:high-risk: rule 'moderate-stress-accuracy': key 'condition'"):
        check_policy(typed(results), load_policy("high-risk"))


# B10 --------------------------------------------------------------------------------------


def test_personal_data_means_no_images_unless_anonymized_explicitly():
    pii = [{"check": "pii_values", "status": "fail", "count": 2}]
    face = [{"check": "biometric_without_basis", "status": "pass", "count": 0, "biometric_rows": 3}]
    for findings in (pii, face):
        assert report_image_mode(_policy(report={"images": "raw"}), findings, "raw") == "none"
        allowed = _policy(report={"images": "raw", "images_with_personal_data": "anonymized"})
        assert report_image_mode(allowed, findings, "raw") == "anonymized"
    with pytest.raises(PolicyError, match="images_with_personal_data"):
        _policy(report={"images_with_personal_data": "raw"})


# nits -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_thresholds_are_errors(bad):
    with pytest.raises(PolicyError, match="key 'min'"):
        _policy({"id": "r", "condition": "clean", "metric": "accuracy", "min": bad})


def test_numeric_group_value_is_a_string():
    policy = _policy(
        {"id": "r", "condition": "clean", "attribute": "camera", "value": 1, "metric": "accuracy", "min": 0.5}
    )
    assert policy.rules[0].value == "1"


def test_future_capture_dates_are_flagged():
    config = GovernanceConfig(retention={"period_days": 30})
    findings = check_governance(
        [{"sample_id": "a", "capture_date": "2030-01-01"}, {"sample_id": "b", "capture_date": "2025-05-31"}],
        config=config,
        now=NOW,
    )
    future = next(f for f in findings if f["check"] == "date_in_future")
    assert future["status"] == "warn" and future["sample_ids"] == ["a"]
