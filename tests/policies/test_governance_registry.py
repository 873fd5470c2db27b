"""The governance registry: every check is one class, and everything that lists checks reads it.

A check registered here (and nowhere else) is scanned, reported, validated, judged, ordered in
governance.csv and held back by the labelling queue; no check name is written in more than two
product files.
"""

from __future__ import annotations

import ast
import csv
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audit.contract.plan import PlannedCondition, RunPlan
from audit.loop.queue import _held_back, held_back_checks
from policies import check_governance, report_image_mode
from policies.errors import PolicyError
from policies.findings import judge_findings
from policies.governance import (
    BUILTIN_CHECKS,
    CHECK_SECTIONS,
    PERSONAL_DATA_CHECKS,
    ChunkView,
    GovernanceCheck,
    GovernanceScan,
    Hit,
    check_names,
    governance_checks,
    register_check,
    unregister_check,
)
from policies.loader import policy_from_dict
from policies.schema import _GOVERNANCE_CHECKS, CheckConfig, GovernanceConfig
from policies.validate import validate_policy
from reports.governance_csv import write_governance_csv

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("audit", "reports", "policies", "stressors")
NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)

#: Every section configured, with column names that differ from the defaults (so each message shows its own).
EVERYTHING = {
    "date_format": "day_first",
    "columns": {
        "capture_date": "taken",
        "consent": "agreed",
        "purpose": "why",
        "lawful_basis": "basis",
        "region": "where",
        "contains_face": "face",
        "biometric_basis": "face_basis",
    },
    "retention": {"period_days": 30},
    "consent": {},
    "purpose": {},
    "lawful_basis": {},
    "pii": {},
    "biometric": {},
    "region": {"allowed": ["EU"]},
}

#: The messages as written before the checks became classes (governance.csv and results.json keep them).
MESSAGES = {
    "retention_expired": "capture date + 30 days has passed",
    "date_unparseable": "'taken' missing or not a day-first date (DD/MM/YYYY)",
    "date_in_future": "'taken' lies in the future",
    "consent_missing": "no consent recorded in 'agreed'",
    "consent_withdrawn": "consent withdrawn in 'agreed'",
    "purpose_missing": "'why' missing or not an allowed purpose",
    "lawful_basis_missing": "'basis' missing or not an allowed lawful basis",
    "pii_columns": "forbidden personal-data columns hold values",
    "pii_values": "values look like e-mail addresses, phone numbers or national ids",
    "biometric_without_basis": "'face' is true but 'face_basis' is empty",
    "region_not_allowed": "storage/processing region missing or not allowed",
}


def _config(**over: Any) -> GovernanceConfig:
    return GovernanceConfig.model_validate({**EVERYTHING, **over})


def _bad_row(i: int) -> dict[str, str]:
    """A row every built-in check flags (one check per date kind: see ``_DATES``)."""
    return {
        "sample_id": f"s{i}",
        "path": f"img/{i}.png",
        "taken": ["01/01/2020", "not a date", "01/01/2099"][i % 3],
        "agreed": ["", "withdrawn"][i % 2],
        "why": "",
        "basis": "",
        "where": "US",
        "face": "true",
        "face_basis": "",
        "patient_name": "A. Person",
        "notes": "mail jane.doe@example.org",
    }


# ----------------------------------------------------------------------------- every registered check


def test_the_builtin_checks_are_registered_in_report_order():
    assert governance_checks()[: len(BUILTIN_CHECKS)] == BUILTIN_CHECKS
    assert check_names() == list(CHECK_SECTIONS) == list(MESSAGES)
    assert len(set(check_names())) == len(check_names())


@pytest.mark.parametrize("check", BUILTIN_CHECKS, ids=lambda c: c.name)
def test_every_check_has_a_section_of_the_config_model(check):
    for section in (check.section, check.counted_with or check.section):
        field = GovernanceConfig.model_fields[section]
        types = (field.annotation, *getattr(field.annotation, "__args__", ()))
        assert any(isinstance(t, type) and issubclass(t, CheckConfig) for t in types)
        assert section in _GOVERNANCE_CHECKS  # so Policy.blocking_governance sees it
    assert CHECK_SECTIONS[check.name] == check.section


def test_every_check_section_of_the_config_model_configures_a_check():
    assert set(_GOVERNANCE_CHECKS) == {check.section for check in BUILTIN_CHECKS}


@pytest.mark.parametrize("check", BUILTIN_CHECKS, ids=lambda c: c.name)
def test_every_check_has_its_message_columns_and_settings(check):
    config = _config()
    assert check.describe(config) == MESSAGES[check.name]
    needed = check.needed_columns(config)
    assert isinstance(needed, list) and all(isinstance(c, str) for c in needed)
    assert check.settings(config)
    assert check.is_configured(config)
    for blocking in (True, False):
        section = {**EVERYTHING.get(check.section, {}), "blocking": blocking}
        assert check.is_blocking(_config(**{check.section: section})) is blocking
    assert not check.is_configured(_config(**{check.section: {**section, "enabled": False}}))


def test_needed_columns_are_those_without_which_a_check_cannot_be_judged():
    rows = [{"sample_id": "s1", "path": "img/1.png"}]
    findings = {f["check"]: f for f in check_governance(rows, config=_config(), now=NOW)}
    for check in BUILTIN_CHECKS:
        unjudged = findings[check.name]["status"] == "insufficient_data"
        assert unjudged == bool(check.needed_columns(_config())), check.name


def test_every_registered_check_is_reached_by_the_scan():
    affected: list[dict[str, Any]] = []
    findings = check_governance([_bad_row(i) for i in range(6)], config=_config(), now=NOW, affected=affected)
    assert [f["check"] for f in findings] == check_names()
    for finding in findings:
        assert finding["count"] > 0, finding["check"]
        assert finding["message"].endswith(MESSAGES[finding["check"]])
    assert {row["check"] for row in affected} == set(check_names())
    assert {type(c) for c in GovernanceScan(_config(), now=NOW).checks} == set(BUILTIN_CHECKS)


def test_the_traits_lists_are_derived_from_the_classes():
    assert set(PERSONAL_DATA_CHECKS) == {"pii_columns", "pii_values", "biometric_without_basis"}
    assert set(held_back_checks()) == set(MESSAGES) - {"date_in_future", "pii_columns", "pii_values"}


# ----------------------------------------------------------------------------- a check added in one place


class ConsentBlank(GovernanceCheck):
    """A check written only here: the consent value is empty."""

    name = "consent_blank"
    section = "consent"
    message = "'{columns.consent}' is empty"
    holds_back_images = True

    def scan(self, chunk: ChunkView) -> Hit:
        col = chunk.coded(self.config.columns.consent)
        rows = np.flatnonzero(col.mask([not str(v).strip() for v in col.uniques])).tolist()
        return Hit(rows, values=[{"reason": "consent empty"}] * len(rows))

    @classmethod
    def settings(cls, config: GovernanceConfig) -> dict[str, Any]:
        return {"column": config.columns.consent}

    @classmethod
    def needed_columns(cls, config: GovernanceConfig) -> list[str]:
        return [config.columns.consent]


class NotesWithNames(ConsentBlank):
    """A personal-data check written only here: the notes column holds a value."""

    name = "notes_with_names"
    message = "notes hold values"
    holds_back_images = False
    personal_data = True

    def scan(self, chunk: ChunkView) -> Hit:
        rows = [j for j, v in enumerate(chunk.column("notes")) if str(v).strip()]
        return Hit(rows, values=[{"reason": "notes"}] * len(rows))


@pytest.fixture
def registered() -> Iterator[None]:
    register_check(ConsentBlank)
    register_check(NotesWithNames)
    try:
        yield
    finally:
        unregister_check(ConsentBlank)
        unregister_check(NotesWithNames)
    assert governance_checks() == BUILTIN_CHECKS


ROWS = [
    {"sample_id": "a", "path": "a.png", "consent": "yes", "notes": ""},
    {"sample_id": "b", "path": "b.png", "consent": "", "notes": ""},
    {"sample_id": "c", "path": "c.png", "consent": "no", "notes": "Dr. Who"},
]
POLICY = {
    "version": 1,
    "name": "p",
    "governance": {"consent": {"blocking": True}},
    "rules": [{"id": "blank", "kind": "finding", "check": "consent_blank"}],
}


def test_a_registered_check_is_scanned_and_reported(registered):
    affected: list[dict[str, Any]] = []
    findings = check_governance(ROWS, config=GovernanceConfig(consent={"blocking": True}), now=NOW, affected=affected)
    assert [f["check"] for f in findings] == [
        "consent_missing",
        "consent_withdrawn",
        "consent_blank",
        "notes_with_names",
    ]
    blank = findings[2]
    assert (blank["status"], blank["count"], blank["sample_ids"]) == ("fail", 1, ["b"])
    assert blank["message"] == "1 of 3 samples: 'consent' is empty"
    assert blank["settings"] == {"column": "consent"}
    assert {"sample_id": "b", "check": "consent_blank", "reason": "consent empty"} in affected


def test_a_registered_check_is_unjudgeable_without_its_column(registered):
    rows = [{"sample_id": "a", "path": "a.png"}]
    blank = check_governance(rows, config=GovernanceConfig(consent={"blocking": True}), now=NOW)[2]
    assert blank["status"] == "insufficient_data" and blank["count"] is None


def test_a_registered_check_is_validated_and_judged(registered):
    policy = policy_from_dict(POLICY)
    plan = RunPlan("config.yaml", (PlannedCondition("clean"),), {})
    assert validate_policy(policy, plan) == {}
    judged = {f["check"]: f for f in judge_findings([], policy)}
    assert judged["consent_blank"]["judgeable"] is False and judged["consent_blank"]["status"] == "fail"
    counted = judge_findings(check_governance(ROWS, policy=policy, now=NOW), policy)
    assert {f["check"]: f["status"] for f in counted}["consent_blank"] == "fail"


def test_an_unregistered_check_is_refused_by_the_validator():
    with pytest.raises(PolicyError, match="no check 'consent_blank'"):
        validate_policy(policy_from_dict(POLICY), RunPlan("config.yaml", (PlannedCondition("clean"),), {}))


def test_a_registered_check_orders_governance_csv_and_holds_images_back(registered, tmp_path):
    affected: list[dict[str, Any]] = []
    check_governance(ROWS, config=GovernanceConfig(consent={"blocking": True}), now=NOW, affected=affected)
    path = write_governance_csv(affected, tmp_path / "governance.csv", check_order=check_names())
    order = [row["check"] for row in csv.DictReader(path.open(encoding="utf-8"))]
    assert order == ["consent_missing", "consent_withdrawn", "consent_blank", "notes_with_names"]
    assert "consent_blank" in held_back_checks() and "notes_with_names" not in held_back_checks()
    held = _held_back(affected, {"a", "b", "c"})
    assert held == {"b": ["consent_missing", "consent_blank"], "c": ["consent_withdrawn"]}


def test_a_registered_personal_data_check_caps_the_report_images(registered):
    findings = check_governance(ROWS, config=GovernanceConfig(consent={"blocking": True}), now=NOW)
    assert "notes_with_names" in PERSONAL_DATA_CHECKS
    assert report_image_mode(None, findings, "anonymized") == "none"
    assert report_image_mode(None, [f for f in findings if f["check"] != "notes_with_names"], "anonymized") == (
        "anonymized"
    )


def test_registering_refuses_a_duplicate_name_or_an_unknown_section():
    class Duplicate(ConsentBlank):
        name = "consent_missing"

    class Elsewhere(ConsentBlank):
        name = "elsewhere"
        section = "columns"

    with pytest.raises(ValueError, match="registered already"):
        register_check(Duplicate)
    with pytest.raises(ValueError, match="not a check section"):
        register_check(Elsewhere)
    with pytest.raises(ValueError, match="built-in"):
        unregister_check(BUILTIN_CHECKS[0])
    assert governance_checks() == BUILTIN_CHECKS


# ----------------------------------------------------------------------------- names written once


def _string_values(path: Path) -> set[str]:
    """The string constants of a module that are values (docstrings, which describe, left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    }


def test_no_check_name_is_written_in_more_than_two_product_files():
    names = set(check_names())
    files: dict[str, list[str]] = defaultdict(list)
    for package in PRODUCT_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in _string_values(path) & names:
                files[name].append(str(path.relative_to(ROOT)))
    assert set(files) == names  # each name is written somewhere: its definition
    spread = {name: where for name, where in files.items() if len(where) > 2}
    assert not spread, f"check names written in more than two product files (list them in the registry): {spread}"
