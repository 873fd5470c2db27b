"""junit.xml: parsed back with xml.etree; one case per rule and per governance check."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from results_builder import typed_part

from audit.contract.results import GovernanceFinding, PolicyOutcome
from reports.junit import write_junit

SECTION = {
    "name": "demo",
    "version": 1,
    "sha256": "ab" * 32,
    "verdict": "fail",
    "rules": [
        {
            "id": "clean-accuracy",
            "status": "fail",
            "blocking": True,
            "observed": 0.71,
            "threshold": 0.8,
            "op": "min",
            "condition": "clean",
            "group": None,
            "clause": "EU AI Act Art. 15",
            "message": "accuracy on clean = 0.71 < min 0.8",
        },
        {
            "id": "night-gap",
            "status": "warn",
            "blocking": False,
            "observed": 0.08,
            "threshold": 0.02,
            "op": "max",
            "condition": "night@3",
            "group": "camera",
            "message": "gap <too> big & \x07bell",
        },
        {
            "id": "pgd",
            "status": "insufficient_data",
            "blocking": False,
            "observed": None,
            "threshold": 0.5,
            "op": "min",
            "message": "no condition 'pgd@*' in the results",
        },
        {
            "id": "ece",
            "status": "pass",
            "blocking": True,
            "observed": 0.03,
            "threshold": 0.1,
            "op": "max",
            "message": "ok",
        },
    ],
}
FINDINGS = [
    {
        "check": "consent_withdrawn",
        "status": "fail",
        "blocking": True,
        "count": 2,
        "sample_ids": ["s1", "s2"],
        "message": "2 of 9 samples",
    },
    {
        "check": "purpose_missing",
        "status": "warn",
        "blocking": False,
        "count": 1,
        "sample_ids": ["s3"],
        "message": "1 of 9",
    },
    {
        "check": "pii_values",
        "status": "pass",
        "blocking": True,
        "count": 0,
        "sample_ids": [],
        "message": "none",
    },
]


def _policy(section):
    return typed_part(PolicyOutcome, {**section, "rules": [{"kind": "metric", **r} for r in section["rules"]]})


def _findings(findings):
    return [typed_part(GovernanceFinding, f) for f in findings]


def _cases(root):
    return {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}


def test_one_case_per_rule_and_check(tmp_path):
    path = write_junit(_policy(SECTION), _findings(FINDINGS), tmp_path / "junit.xml")
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("7", "2", "0")
    assert root.get("skipped") is None  # junit-10.xsd allows it on <testsuite> only
    assert sum(int(s.get("skipped")) for s in root.iter("testsuite")) == 1
    cases = _cases(root)
    assert set(cases) == {
        ("cvaudit.policy.demo", "clean-accuracy"),
        ("cvaudit.policy.demo", "night-gap"),
        ("cvaudit.policy.demo", "pgd"),
        ("cvaudit.policy.demo", "ece"),
        ("cvaudit.governance", "consent_withdrawn"),
        ("cvaudit.governance", "purpose_missing"),
        ("cvaudit.governance", "pii_values"),
    }
    failure = cases[("cvaudit.policy.demo", "clean-accuracy")].find("failure")
    assert "observed 0.71" in failure.get("message") and "threshold min 0.8" in failure.get("message")
    assert "EU AI Act Art. 15" in failure.text
    warn = cases[("cvaudit.policy.demo", "night-gap")]
    assert warn.find("failure") is None and warn.find("skipped") is None  # a warning does not block
    assert "<too> big & \\x07bell" in warn.find("system-err").text  # a visible escape
    assert cases[("cvaudit.policy.demo", "pgd")].find("skipped") is not None
    gov = cases[("cvaudit.governance", "consent_withdrawn")].find("failure")
    assert "s1, s2" in gov.text
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["policy.verdict"] == "fail"


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text("old", encoding="utf-8")
    write_junit(_policy({"name": "p", "rules": []}), [], path)
    assert ET.parse(path).getroot().get("tests") == "0"
    assert os.listdir(tmp_path) == ["junit.xml"]


def test_warned_cases_are_visible_to_ci_and_the_file_stays_valid(tmp_path):
    """A warned rule or check: WARNING text in <system-err> (Jenkins shows it on the case's page) and its name
    in its suite's cvaudit.warn properties; passing cases have no <system-err>; junit-10.xsd still holds."""
    xmlschema = pytest.importorskip("xmlschema")
    path = write_junit(_policy(SECTION), _findings(FINDINGS), tmp_path / "junit.xml")
    xmlschema.XMLSchema(str(Path(__file__).parent / "schemas" / "junit-10.xsd")).validate(str(path))
    root = ET.parse(path).getroot()
    cases = _cases(root)
    for key in (("cvaudit.policy.demo", "night-gap"), ("cvaudit.governance", "purpose_missing")):
        err = cases[key].find("system-err")
        assert err is not None and err.text.startswith("WARNING: "), key
        assert cases[key].find("system-out") is not None  # the case's text, as for a pass
    for key in (("cvaudit.policy.demo", "ece"), ("cvaudit.governance", "pii_values")):
        assert cases[key].find("system-err") is None, key
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    for suite, warned in (("policy.demo", ["night-gap"]), ("governance", ["purpose_missing"])):
        props = [(p.get("name"), p.get("value")) for p in suites[suite].iter("property")]
        assert [v for n, v in props if n == "cvaudit.warn"] == warned
        assert ("cvaudit.warnings", "1") in props
    empty = write_junit(_policy({"name": "p", "rules": []}), [], tmp_path / "empty.xml")
    properties = [(p.get("name"), p.get("value")) for p in ET.parse(empty).getroot().iter("property")]
    assert [v for n, v in properties if n == "cvaudit.warnings"] == ["0", "0"]
    assert not [n for n, _ in properties if n == "cvaudit.warn"]
