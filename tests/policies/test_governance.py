"""Data-governance checks over manifest rows, the manifest reader and the report image mode."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from policies import check_governance, report_image_mode
from policies.loader import policy_from_dict
from policies.schema import GovernanceConfig

NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)
SECRET_EMAIL = "jane.doe@example.org"
SECRET_PHONE = "+44 20 7946 0958"


def _row(i: int, **over: str) -> dict[str, str]:
    row = {
        "sample_id": f"s{i}",
        "path": f"img/{i}.png",
        "label": "3",
        "camera": "A",
        "capture_date": "2024-06-01",
        "consent": "yes",
        "purpose": "model evaluation",
        "lawful_basis": "consent",
        "region": "EU",
        "contains_face": "false",
        "biometric_basis": "",
    }
    row.update(over)
    return row


def _config(**checks) -> GovernanceConfig:
    return GovernanceConfig.model_validate(checks)


def _by_check(findings):
    return {f["check"]: f for f in findings}


def test_clean_manifest_passes_every_check():
    config = _config(
        retention={"period_days": 365},
        consent={},
        purpose={},
        lawful_basis={},
        pii={},
        biometric={},
        region={"allowed": ["EU"]},
    )
    findings = check_governance([_row(i) for i in range(5)], config=config, now=NOW)
    assert {f["check"] for f in findings} == {
        "retention_expired",
        "date_unparseable",
        "date_in_future",
        "consent_missing",
        "consent_withdrawn",
        "purpose_missing",
        "lawful_basis_missing",
        "pii_columns",
        "pii_values",
        "biometric_without_basis",
        "region_not_allowed",
    }
    assert all(f["status"] == "pass" and f["count"] == 0 and f["total"] == 5 for f in findings)


def test_only_configured_checks_run():
    assert check_governance([_row(1)], config=_config(), now=NOW) == []
    findings = check_governance([_row(1)], config=_config(consent={"enabled": False}, purpose={}), now=NOW)
    assert [f["check"] for f in findings] == ["purpose_missing"]


def test_retention_uses_injected_now():
    rows = [_row(1, capture_date="2020-01-01"), _row(2, capture_date="2024-12-31"), _row(3)]
    config = _config(retention={"period_days": 365, "blocking": True})
    found = _by_check(check_governance(rows, config=config, now=NOW))["retention_expired"]
    assert (found["status"], found["count"], found["sample_ids"], found["blocking"]) == (
        "fail",
        1,
        ["s1"],
        True,
    )
    later = _by_check(check_governance(rows, config=config, now=datetime(2030, 1, 1)))["retention_expired"]
    assert later["count"] == 3


def test_unparseable_dates_are_a_finding_not_a_crash():
    rows = [_row(1, capture_date="31/12/2023"), _row(2, capture_date=""), _row(3)]
    found = _by_check(check_governance(rows, config=_config(retention={"period_days": 3650}), now=NOW))
    assert found["date_unparseable"]["count"] == 2 and found["date_unparseable"]["sample_ids"] == [
        "s1",
        "s2",
    ]
    assert found["date_unparseable"]["status"] == "warn"
    assert found["retention_expired"]["status"] == "warn" and "not verified" in found["retention_expired"]["message"]
    day_first = _config(retention={"period_days": 3650}, date_format="day_first")
    assert _by_check(check_governance(rows[:1], config=day_first, now=NOW))["date_unparseable"]["count"] == 0


def test_consent_missing_and_withdrawn():
    rows = [_row(1, consent=""), _row(2, consent="Withdrawn"), _row(3, consent="maybe"), _row(4)]
    found = _by_check(check_governance(rows, config=_config(consent={"blocking": True}), now=NOW))
    assert found["consent_missing"]["sample_ids"] == ["s1", "s3"]
    assert found["consent_withdrawn"]["sample_ids"] == ["s2"] and found["consent_withdrawn"]["status"] == "fail"


def test_a_column_absent_from_the_manifest_cannot_be_judged():
    rows = [{"sample_id": "a"}, {"sample_id": "b"}]
    found = _by_check(check_governance(rows, config=_config(consent={}, lawful_basis={}), now=NOW))
    for check, column in (("consent_missing", "consent"), ("lawful_basis_missing", "lawful_basis")):
        f = found[check]
        assert (f["status"], f["count"], f["judgeable"]) == ("insufficient_data", None, False)
        assert f"column '{column}' is absent from the manifest" in f["message"]


def test_empty_values_in_a_present_column_are_counted():
    rows = [
        {"sample_id": "a", "consent": "", "lawful_basis": ""},
        {"sample_id": "b", "consent": "", "lawful_basis": ""},
    ]
    found = _by_check(check_governance(rows, config=_config(consent={}, lawful_basis={}), now=NOW))
    assert found["consent_missing"]["count"] == 2 and found["lawful_basis_missing"]["count"] == 2


def test_purpose_and_lawful_basis_allowed_lists():
    rows = [_row(1, lawful_basis="because"), _row(2, purpose="marketing"), _row(3)]
    config = _config(purpose={"allowed": ["model evaluation"]}, lawful_basis={"allowed": ["consent", "contract"]})
    found = _by_check(check_governance(rows, config=config, now=NOW))
    assert found["purpose_missing"]["sample_ids"] == ["s2"]
    assert found["lawful_basis_missing"]["sample_ids"] == ["s1"]


def test_pii_columns_and_values_never_leak_values():
    rows = [
        _row(1, **{"E-mail": SECRET_EMAIL}),
        _row(2, note=f"call {SECRET_PHONE}"),
        _row(3, note="ssn 123-45-6789"),
        _row(4, note="taken 2024-03-01 12:30, 1024x768, id 123e4567-e89b-12d3-a456-426614174000"),
    ]
    findings = check_governance(rows, config=_config(pii={"blocking": True}), now=NOW)
    found = _by_check(findings)
    assert found["pii_columns"]["sample_ids"] == ["s1"] and found["pii_columns"]["columns"] == ["E-mail"]
    assert found["pii_values"]["sample_ids"] == ["s1", "s2", "s3"]
    assert found["pii_values"]["columns"] == ["E-mail", "note"]
    text = json.dumps(findings)
    for secret in (SECRET_EMAIL, SECRET_PHONE, "123-45-6789", "jane"):
        assert secret not in text


def test_sample_id_that_is_personal_data_is_replaced():
    rows = [{"sample_id": SECRET_EMAIL, "consent": ""}]
    found = check_governance(rows, config=_config(consent={}), now=NOW)[0]
    assert found["sample_ids"] == ["row 1"]


def test_id_falls_back_to_path_then_row_number():
    rows = [{"path": "img/x.png", "consent": ""}, {"consent": ""}]
    found = check_governance(rows, config=_config(consent={}), id_column="uid", now=NOW)[0]
    assert found["sample_ids"] == ["img/x.png", "row 2"]


def test_biometric_without_basis():
    rows = [
        _row(1, contains_face="true"),
        _row(2, contains_face="yes", biometric_basis="explicit consent"),
        _row(3),
    ]
    found = _by_check(check_governance(rows, config=_config(biometric={}), now=NOW))["biometric_without_basis"]
    assert found["sample_ids"] == ["s1"] and found["biometric_rows"] == 2 and found["status"] == "warn"
    no_column = check_governance([{"sample_id": "a"}], config=_config(biometric={}), now=NOW)[0]
    assert no_column["status"] == "insufficient_data" and "cannot be judged" in no_column["message"]


def test_region_allowed_list_and_columns():
    rows = [
        _row(1, region="US"),
        _row(2, region=""),
        _row(3, region="eu", processing_region="US"),
        _row(4),
    ]
    config = _config(region={"allowed": ["EU"], "columns": ["region", "processing_region"], "blocking": True})
    found = check_governance(rows, config=config, now=NOW)[0]
    assert found["sample_ids"] == ["s1", "s2", "s3", "s4"]  # s4 has no processing_region
    assert found["columns"] == ["processing_region", "region"] and found["status"] == "fail"


def test_max_ids_limits_the_list_not_the_count():
    rows = [_row(i, consent="") for i in range(50)]
    found = check_governance(rows, config=_config(consent={}, max_ids=3), now=NOW)[0]
    assert found["count"] == 50 and found["sample_ids"] == ["s0", "s1", "s2"]


def test_clause_is_carried():
    found = check_governance([_row(1)], config=_config(consent={"clause": "GDPR Art. 7"}), now=NOW)
    assert found[0]["clause"] == "GDPR Art. 7"


def _policy(**report):
    return policy_from_dict({"version": 1, "name": "p", "report": report})


@pytest.mark.parametrize(
    ("report", "findings", "requested", "expected"),
    [
        ({}, [], "raw", "anonymized"),
        ({"images": "raw"}, [], "raw", "raw"),
        ({"images": "raw"}, [], "none", "none"),
        ({"images": "raw"}, [{"check": "pii_values", "status": "warn", "count": 2}], "raw", "none"),
        (
            {"images": "raw"},
            [{"check": "biometric_without_basis", "status": "fail", "count": 1}],
            "anonymized",
            "none",
        ),
        (
            {"images": "raw", "images_with_personal_data": "anonymized"},
            [{"check": "pii_columns", "status": "fail", "count": 1}],
            "raw",
            "anonymized",
        ),
        (
            {"images": "raw"},
            [
                {
                    "check": "biometric_without_basis",
                    "status": "pass",
                    "count": 0,
                    "biometric_rows": 4,
                }
            ],
            "raw",
            "none",  # biometric data with a basis: still none unless the policy allows more
        ),
        (
            {"images": "raw"},
            [{"check": "biometric_without_basis", "status": "warn", "count": 0}],
            "raw",
            "raw",
        ),
        (
            {"images": "raw"},
            [{"check": "consent_missing", "status": "fail", "count": 9}],
            "raw",
            "raw",
        ),
    ],
)
def test_report_image_mode(report, findings, requested, expected):
    assert report_image_mode(_policy(**report), findings, requested) == expected


def test_report_image_mode_rejects_unknown_mode():
    with pytest.raises(ValueError, match="none, anonymized, raw"):
        report_image_mode(None, [], "blurred")


def test_policy_instead_of_config_and_no_governance():
    policy = policy_from_dict({"version": 1, "name": "p", "governance": {"consent": {}}})
    found = check_governance([_row(1, consent="")], policy=policy, now=NOW)
    assert [(f["check"], f["count"]) for f in found] == [
        ("consent_missing", 1),
        ("consent_withdrawn", 0),
    ]
    assert check_governance([_row(1)], policy=_policy()) == []
    assert check_governance([_row(1)]) == []
