"""`cvaudit policy list|show|check` through click's test runner."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from audit.cli.policy import policy_group


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_list(runner):
    out = runner.invoke(policy_group, ["list"])
    assert out.exit_code == 0 and "ci-gate" in out.output and "high-risk" in out.output
    rows = json.loads(runner.invoke(policy_group, ["list", "--format", "json"]).output)
    assert [r["name"] for r in rows] == ["ci-gate", "demo", "detection-gate", "high-risk"]


def test_show(runner, write_policy):
    out = runner.invoke(policy_group, ["show", "demo"])
    assert out.exit_code == 0 and "night3-camera-gap" in out.output
    bad = write_policy("version: 1\nname: x\nrules: [{id: a, kind: metric}]\n")
    out = runner.invoke(policy_group, ["show", str(bad)])
    assert out.exit_code == 2 and "rule 'a'" in out.output


def test_check_pass_writes_junit_and_markdown(runner, results_file, tmp_path):
    junit, md = tmp_path / "out" / "junit.xml", tmp_path / "summary.md"
    out = runner.invoke(
        policy_group,
        [
            "check",
            str(results_file),
            "--policy",
            "demo",
            "--junit",
            str(junit),
            "--markdown",
            str(md),
        ],
    )
    assert out.exit_code == 0, out.output
    assert "verdict PASS" in out.output and "night3-camera-gap" in out.output
    suites = ET.parse(junit).getroot()
    assert suites.tag == "testsuites" and suites.get("failures") == "0"
    assert "PASS" in md.read_text(encoding="utf-8")


def test_check_fail_exit_1_and_json(runner, results_file, write_policy):
    policy = write_policy(
        "version: 1\nname: strict\nrules:\n  - {id: acc, condition: clean, metric: accuracy, min: 0.99}\n"
    )
    out = runner.invoke(policy_group, ["check", str(results_file), "--policy", str(policy), "--format", "json"])
    assert out.exit_code == 1
    data = json.loads(out.stdout)
    assert data["policy"]["verdict"] == "fail" and data["policy"]["rules"][0]["observed"] == 0.95


def test_check_with_manifest_runs_governance(runner, results_file, tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "sample_id,capture_date,consent,purpose,lawful_basis,contains_face,biometric_basis,email\n"
        "a,2024-01-01,yes,eval,consent,false,,\n"
        "b,2024-01-01,withdrawn,eval,consent,false,,bob@example.com\n",
        encoding="utf-8",
    )
    out = runner.invoke(
        policy_group,
        [
            "check",
            str(results_file),
            "--policy",
            "demo",
            "--manifest",
            str(manifest),
            "--now",
            "2025-01-01",
            "--format",
            "json",
        ],
    )
    assert out.exit_code == 0, out.output  # demo governance checks warn, they do not block
    findings = {f["check"]: f for f in json.loads(out.stdout)["governance"]["findings"]}
    assert findings["consent_withdrawn"]["status"] == "warn" and findings["consent_withdrawn"]["sample_ids"] == ["b"]
    assert "bob@example.com" not in out.output
    out = runner.invoke(
        policy_group,
        ["check", str(results_file), "--policy", "ci-gate", "--manifest", str(manifest)],
    )
    assert out.exit_code == 1 and "governance.pii_columns" in out.output


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        ("bad_json", "not valid JSON"),
        ("missing", "results file not found"),
        ("bad_policy", "no-such-policy"),
        ("bad_manifest", "unknown manifest type"),
        ("bad_now", "--now"),
        ("unknown_metric", "key 'metric'"),
    ],
)
def test_check_bad_input_exit_2_one_line(runner, results_file, tmp_path, write_policy, setup, match):
    args = ["check", str(results_file), "--policy", "demo"]
    if setup == "bad_json":
        results_file.write_text("{nope", encoding="utf-8")
    elif setup == "missing":
        args[1] = str(tmp_path / "absent.json")
    elif setup == "bad_policy":
        args[3] = "no-such-policy"
    elif setup == "bad_manifest":
        (tmp_path / "m.xlsx").write_text("x", encoding="utf-8")
        args += ["--manifest", str(tmp_path / "m.xlsx")]
    elif setup == "bad_now":
        args += ["--now", "soon"]
    else:
        args[3] = str(write_policy("version: 1\nname: x\nrules: [{id: a, condition: clean, metric: acc, min: 1}]\n"))
    out = runner.invoke(policy_group, args)
    assert out.exit_code == 2, out.output
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0]
