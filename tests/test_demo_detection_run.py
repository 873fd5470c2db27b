"""``cvaudit demo --task detection`` end to end: the shipped detector, the generated scenes, the signed outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from audit.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo-detection") / "out"
    result = CliRunner().invoke(main, ["demo", "--task", "detection", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "verdict: PASS" in result.output and "detection per condition" in result.output
    return out


def test_the_demo_shows_real_drops_a_real_gap_and_an_honest_verdict(demo):
    results = json.loads((demo / "results.json").read_text())
    assert results["task"] == "detection"
    conditions = {c["id"]: c for c in results["detection"]["conditions"]}
    clean = conditions["clean"]["metrics"]
    assert clean["map_50"] >= 0.5  # the bar for the demo detector
    for stressed in ("night@3", "occlusion@3"):  # a real drop under night and occlusion
        assert conditions[stressed]["metrics"]["map_50"] < 0.6 * clean["map_50"], stressed
    camera = next(
        t for t in results["detection"]["gap_tests"] if (t["condition"], t["attribute"]) == ("clean", "camera")
    )
    assert camera["gap"] > 0.2 and camera["p_holm"] < 0.001  # a real subgroup gap, shown by its test
    rules = {r["id"]: r for r in results["policy"]["rules"]}
    assert rules["clean-map50"]["status"] == "pass" and rules["clean-fp-per-image"]["status"] == "pass"
    for warned in ("night3-map50", "occlusion3-map50", "clean-camera-recall-gap"):
        assert rules[warned]["status"] == "warn", warned
    findings = {f["check"]: f for f in results["governance"]["findings"]}
    for check in ("retention_expired", "consent_withdrawn", "region_not_allowed", "lawful_basis_missing"):
        assert findings[check]["count"] > 0, check


def test_the_demo_writes_and_signs_every_output(demo):
    for name in ("results.json", "detections.json", "detections.csv", "groups.csv", "report.html", "report.pdf"):
        assert (demo / name).is_file(), name
    verify = CliRunner().invoke(main, ["verify", str(demo), "--key", str(demo / "workspace" / "keys")])
    assert verify.exit_code == 0, verify.output
    html = (demo / "report.html").read_text()
    assert 'id="detection"' in html and "MISSED" in html  # the example images with their boxes
