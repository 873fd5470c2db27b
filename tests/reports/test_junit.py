"""junit.xml: parsed back with xml.etree; one case per rule and per governance check."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

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


def _cases(root):
    return {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}


def test_one_case_per_rule_and_check(tmp_path):
    path = write_junit(SECTION, FINDINGS, tmp_path / "junit.xml")
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
    assert warn.find("failure") is None and warn.find("system-out").text.startswith("WARNING:")
    assert "<too> big & \\x07bell" in warn.find("system-out").text  # a visible escape
    assert cases[("cvaudit.policy.demo", "pgd")].find("skipped") is not None
    gov = cases[("cvaudit.governance", "consent_withdrawn")].find("failure")
    assert "s1, s2" in gov.text
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["policy.verdict"] == "fail"


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text("old", encoding="utf-8")
    write_junit({"name": "p", "rules": []}, [], path)
    assert ET.parse(path).getroot().get("tests") == "0"
    assert os.listdir(tmp_path) == ["junit.xml"]
