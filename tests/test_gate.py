"""The CI gate end to end: rules checked before the run, fail-closed verdicts, every failure named everywhere,
probes kept out of wildcard rules, governance findings a reviewer can act on, no stale judgements."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from cvaudit_fixtures import ColourNet, make_dataset, save_model, write_config

from audit.cli import main


def run(cfg: Path, out: Path, *args: str):
    return CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet", *args])


def configure(root: Path, policy: str, **kwargs) -> Path:
    cfg = write_config(root, **kwargs)
    (root / "policy.yaml").write_text(policy)
    return cfg


PGD = "  - {name: pgd, epsilons: [0, 2/255, 0.5], steps: 5}\n"


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        # the README's old example: a severity written differently from the run's
        (
            "{id: pgd-robust, metric: accuracy, condition: 'pgd@0.0078', min: 0.5}",
            "rule 'pgd-robust': key 'condition': no condition 'pgd@0.0078' in the run; pgd runs pgd@0, pgd@0.007843, pgd@0.5",
        ),
        (
            "{id: cam, metric: accuracy, condition: clean, attribute: camra, aggregate: gap, max: 0.1}",
            "rule 'cam': key 'attribute': no attribute 'camra' in the run (attributes: camera)",
        ),
        (
            "{id: ci, metric: ece, condition: clean, judge: ci_upper, max: 0.5}",
            "rule 'ci': key 'judge': judge 'ci_upper' needs an interval of 'ece': intervals exist for accuracy",
        ),
        (
            "{id: tk, metric: top_k_accuracy, condition: clean, min: 0.5}",
            "rule 'tk': key 'metric': top_k_accuracy is not computed in this run; set evaluation.top_k",
        ),
        (
            "{id: g, metric: accuracy, condition: clean, attribute: camera, value: C, min: 0.5}",
            "rule 'g': key 'value': no group camera=C in the data (camera: A, B)",
        ),
    ],
    ids=["near-miss", "attribute-typo", "no-interval", "no-top-k", "no-value"],
)
def test_a_rule_that_can_never_match_is_an_error_before_anything_runs(workspace, rule, expected):
    policy = f"version: 1\nname: p\nrules:\n  - {rule}\n"
    cfg = configure(workspace, policy, stressors=PGD, model="missing.pt")  # the model is never loaded
    text = cfg.read_text().replace("n_bootstrap: 50", "n_bootstrap: 0")
    cfg.write_text(text)
    result = run(cfg, workspace / "out")
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith(f"cvaudit: error: {workspace / 'policy.yaml'}: ") and expected in lines[0], lines[0]
    assert not (workspace / "out").exists()


@pytest.mark.slow
def test_equivalent_spellings_match_and_probes_stay_out_of_wildcards(workspace):
    policy = """\
version: 1
name: p
rules:
  - {id: fraction, metric: accuracy, condition: "pgd@2/255", min: 0.0}
  - {id: decimal, metric: accuracy, condition: "pgd@0.0078431", min: 0.0}
  - {id: every-pgd, metric: accuracy, condition: "pgd@*", min: 0.2}
  - {id: probe, metric: accuracy, condition: "pgd@0.5", max: 0.05}
"""
    cfg = configure(workspace, policy, stressors=PGD)
    result = run(cfg, workspace / "out")
    results = json.loads((workspace / "out" / "results.json").read_text())
    assert {c["id"]: c["probe"] for c in results["conditions"]} == {
        "clean": False,
        "pgd@0": True,
        "pgd@0.007843": False,
        "pgd@0.5": True,
    }
    rules = {r["id"]: r for r in results["policy"]["rules"]}
    assert rules["fraction"]["condition"] == rules["decimal"]["condition"] == "pgd@0.007843"
    # the wildcard judges the one real robustness measurement, not the probes (pgd@0.5 is at 0 % by design)
    assert rules["every-pgd"]["condition"] == "pgd@0.007843" and "evaluations" not in rules["every-pgd"]
    assert rules["probe"]["condition"] == "pgd@0.5" and rules["probe"]["status"] == "pass"
    assert result.exit_code == 0, result.output
    assert "pgd@0.5 (probe)" in result.output


def test_a_blocking_rule_that_cannot_be_judged_fails_unless_the_policy_says_warn(workspace):
    rule = "  - {id: big, metric: accuracy, condition: clean, min: 0.5, min_samples: 1000}\n"
    cfg = configure(workspace, f"version: 1\nname: p\nrules:\n{rule}", stressors="")
    failed = run(cfg, workspace / "a")
    assert failed.exit_code == 1, failed.output
    assert "FAIL big:" in failed.output and "n=24 < min_samples 1000" in failed.output
    # with warn, a gate that judged something else still passes...
    judged = "  - {id: some, metric: accuracy, condition: clean, min: 0.01}\n"
    (workspace / "policy.yaml").write_text(f"version: 1\nname: p\non_insufficient_data: warn\nrules:\n{rule}{judged}")
    assert run(cfg, workspace / "b").exit_code == 0
    # ... but a gate that could judge nothing at all does not say PASS (issue 30: fail closed)
    (workspace / "policy.yaml").write_text(f"version: 1\nname: p\non_insufficient_data: warn\nrules:\n{rule}")
    nothing = run(cfg, workspace / "c")
    assert nothing.exit_code == 2 and "no blocking rule or check could be judged" in nothing.output, nothing.output


GOVERNED = """\
version: 1
name: governed
rules:
  - {id: clean-accuracy, metric: accuracy, condition: clean, min: 1.01}
governance:
  retention: {period_days: 30, blocking: true}
  consent: {}
"""


@pytest.fixture()
def failed_run(workspace):
    cfg = configure(workspace, GOVERNED, stressors="")
    keys = workspace / "keys"
    assert CliRunner().invoke(main, ["keygen", "--out", str(keys)]).exit_code == 0
    cfg.write_text(
        cfg.read_text().replace("report:\n  formats: [html]\n", f"report:\n  formats: [html]\n  sign_key: {keys}\n")
    )
    result = run(cfg, workspace / "out")
    assert result.exit_code == 1, result.output
    return workspace, result


def test_every_failure_is_named_in_every_output(failed_run):
    workspace, result = failed_run
    out = workspace / "out"
    expected = ["clean-accuracy", "governance.retention_expired"]
    results = json.loads((out / "results.json").read_text())
    policy = results["policy"]
    assert policy["blocking_failures"] == expected
    assert [f["id"] for f in policy["failures"]] == expected
    assert policy["failures"][1]["observed"] == 24 and policy["failures"][1]["threshold"] == 0
    # the terminal: each failure with observed and required values, the counts of results.json, the verdict last
    stdout = result.stdout.strip().splitlines()
    assert any(line.startswith("  FAIL clean-accuracy: observed 1, required >= 1.01") for line in stdout)
    assert any(line.startswith("  FAIL governance.retention_expired: observed 24, required <= 0") for line in stdout)
    assert stdout[-1] == (
        "verdict: FAIL (policy governed: 2 blocking failures; rules: 1 fail; governance: 1 fail, 4 pass)"
    )
    # JUnit: the <failure> elements are exactly these
    root = ET.parse(out / "junit.xml").getroot()
    failed = sorted(case.get("name") for case in root.iter("testcase") if case.find("failure") is not None)
    assert failed == ["clean-accuracy", "retention_expired"]
    # the report's banner names them
    html = (out / "report.html").read_text()
    banner = html[html.index('id="verdict"') : html.index('id="summary"')]
    assert "clean-accuracy" in banner and "governance.retention_expired" in banner
    # --format json carries the same list
    again = CliRunner().invoke(
        main, ["run", str(workspace / "config.yaml"), "--out", str(workspace / "o2"), "--quiet", "--format", "json"]
    )
    body = json.loads(again.stdout)
    assert body["blocking_failures"] == expected and body["counts"] == policy["counts"]


def test_governance_findings_list_every_affected_sample(failed_run):
    workspace, _ = failed_run
    out = workspace / "out"
    results = json.loads((out / "results.json").read_text())
    governance = results["governance"]
    assert governance["policy"] == "governed" and governance["audit_date"]
    expired = next(f for f in governance["findings"] if f["check"] == "retention_expired")
    assert expired["count"] == 24 and len(expired["sample_ids"]) == 20  # the first 20 in results and report
    assert expired["settings"]["period_days"] == 30
    with open(out / "governance.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 24 and {r["check"] for r in rows} == {"retention_expired"}
    assert rows[0]["sample_id"] == "s000" and rows[0]["capture_date"] == "2026-01-01"
    assert "retention of 30 days ended" in rows[0]["reason"]
    html = (out / "report.html").read_text()
    assert "s019" in html and "(4 more in governance.csv)" in html and "retention period of 30 days" in html
    # governance.csv is attested: tampering with it is detected
    verify = CliRunner().invoke(main, ["verify", str(out), "--key", str(workspace / "keys")])
    assert verify.exit_code == 0, verify.output
    (out / "governance.csv").write_text("sample_id,check,reason\n", encoding="utf-8")
    tampered = CliRunner().invoke(main, ["verify", str(out), "--key", str(workspace / "keys")])
    assert tampered.exit_code == 1 and "governance.csv" in tampered.output


def test_policy_check_does_not_reuse_counts_made_under_other_settings(failed_run):
    workspace, _ = failed_run
    results = workspace / "out" / "results.json"
    same = CliRunner().invoke(main, ["policy", "check", str(results), "--policy", str(workspace / "policy.yaml")])
    assert same.exit_code == 1
    assert "24 of 24 samples: capture date + 30 days has passed (counted under policy governed)" in same.output
    other = workspace / "other.yaml"
    other.write_text(GOVERNED.replace("period_days: 30", "period_days: 3650").replace("min: 1.01", "min: 0.5"))
    stale = CliRunner().invoke(main, ["policy", "check", str(results), "--policy", str(other), "--format", "json"])
    body = json.loads(stale.stdout)
    expired = next(f for f in body["governance"]["findings"] if f["check"] == "retention_expired")
    assert expired["count"] is None and expired["judgeable"] is False
    assert "not re-judged: counted under policy governed" in expired["message"]
    assert "period_days: 30 then, 3650 now" in expired["message"]
    assert expired["status"] == "fail" and stale.exit_code == 1  # a blocking check it cannot judge: fail closed
    recounted = CliRunner().invoke(
        main,
        [
            "policy",
            "check",
            str(results),
            "--policy",
            str(other),
            "--manifest",
            str(workspace / "manifest.csv"),
            "--now",
            "2026-12-01",
        ],
    )
    assert recounted.exit_code == 0, recounted.output  # 2026-01-01 + 3650 days has not passed


def test_skipped_images_are_reported_on_stderr(workspace):
    (workspace / "img" / "3.png").write_bytes(b"not a png")
    cfg = configure(workspace, "version: 1\nname: p\nreport_only: true\n", stressors="", extra="")
    cfg.write_text(cfg.read_text().replace("  num_workers: 0\n", "  num_workers: 0\n  on_bad_image: skip\n"))
    result = run(cfg, workspace / "out")
    assert result.exit_code == 0, result.output
    assert "warning: 1 image(s) could not be decoded and were skipped: s003" in result.stderr


def test_worst_group_is_blank_when_no_group_differs(workspace):
    cfg = configure(workspace, "version: 1\nname: p\nreport_only: true\n", stressors="")
    result = run(cfg, workspace / "out")
    clean_row = next(line for line in result.stdout.splitlines() if line.startswith("│ clean"))
    assert clean_row.rstrip().endswith("│") and "camera=" not in clean_row  # both cameras at 100 %


# issue 30: a gate never passes on nothing


def test_a_policy_with_nothing_that_can_fail_is_refused_before_anything_runs(workspace):
    cfg = configure(workspace, "version: 1\nname: p\nrules: []\n", stressors="", model="missing.pt")
    result = run(cfg, workspace / "out")
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith(f"cvaudit: error: {workspace / 'policy.yaml'}: key 'rules': the policy has no rules")
    assert not (workspace / "out").exists()


def test_a_report_only_run_says_so_in_every_output(workspace):
    cfg = configure(workspace, "version: 1\nname: look\nreport_only: true\n", stressors="")
    result = run(cfg, workspace / "out")
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().splitlines()[-1].startswith("verdict: REPORT ONLY (policy look gates nothing")
    stored = json.loads((workspace / "out" / "results.json").read_text())
    assert stored["policy"]["report_only"] is True and stored["policy"]["verdict"] == "pass"
    html = (workspace / "out" / "report.html").read_text()
    banner = html[html.index('id="verdict"') : html.index('id="summary"')]
    assert "REPORT ONLY" in banner and ">PASS<" not in banner
    properties = {p.get("name"): p.get("value") for p in ET.parse(workspace / "out" / "junit.xml").iter("property")}
    assert properties["policy.report_only"] == "True"
    from reports.verify import Check, _Acc, _read_signed_results  # what `cvaudit verify` says of these results

    signed = _read_signed_results(workspace / "out", None, _Acc(checks=[Check("results.json", True, "intact")]))
    assert signed is not None and signed.to_text().startswith("signed results: verdict REPORT ONLY")


def test_ci_gate_audits_a_model_without_subgroup_attributes(tmp_path):
    make_dataset(tmp_path, n=120)  # clean-accuracy judges from 100 images
    save_model(tmp_path / "model.pt", ColourNet())
    cfg = write_config(tmp_path, stressors="")
    cfg.write_text(cfg.read_text().replace("  attributes: [camera]\n", "").replace("policy.yaml", "ci-gate"))
    result = run(cfg, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert (
        "NOT APPLICABLE clean-subgroup-gap: the run has no subgroup attributes (attribute '*' matches none; "
        "required: false)"
    ) in " ".join(result.stdout.split())  # the terminal may wrap it
    rules = {r["id"]: r for r in json.loads((tmp_path / "out" / "results.json").read_text())["policy"]["rules"]}
    assert rules["clean-accuracy"]["status"] == "pass" and rules["clean-accuracy"]["n"] == 120
    assert rules["clean-subgroup-gap"]["status"] == "not_applicable"
