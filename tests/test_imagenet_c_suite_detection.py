"""The ImageNet-C suite on a detector: mPC and rPC over the suite's conditions, judged by a policy rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from detection_fixtures import make_detection_dataset, save_detector, write_detection_config

from audit.cli import main

POLICY = """\
version: 1
name: det-suite
rules:
  - {id: rpc, section: imagenet_c, metric: rpc, min: 0.0}
  - {id: mpc, section: imagenet_c, metric: mpc, min: 0.0, blocking: false}
"""


def _run(root: Path, **overrides):
    (root / "policy.yaml").write_text(POLICY)
    cfg = write_detection_config(root, root / "detector.pt", policy="policy.yaml", stressors=[], **overrides)
    return CliRunner().invoke(main, ["run", str(cfg), "--out", str(root / "out"), "--quiet"])


@pytest.fixture
def scenes(tmp_path: Path) -> Path:
    make_detection_dataset(tmp_path, n=12)
    save_detector(tmp_path / "detector.pt")
    return tmp_path


@pytest.mark.slow
def test_a_detector_suite_gives_mpc_and_rpc(scenes):
    result = _run(scenes, benchmark={"corruptions": ["gaussian_noise", "contrast"], "severities": [1, 5]})
    assert result.exit_code == 0, result.output
    results = json.loads((scenes / "out" / "results.json").read_text())
    section = results["imagenet_c"]
    maps = {c["id"]: c["metrics"]["map"] for c in results["detection"]["conditions"]}
    ids = [f"{c}@{s}" for c in ("gaussian_noise", "contrast") for s in (1, 5)]
    mpc = sum(maps[i] for i in ids) / 4
    assert section["task"] == "detection" and section["mpc"] == pytest.approx(mpc)
    assert section["rpc"] == pytest.approx(mpc / maps["clean"]) and section["clean_map"] == maps["clean"]
    assert "mce" not in section and "baseline" not in section
    assert {r["id"]: r["observed"] for r in results["policy"]["rules"]}["rpc"] == pytest.approx(section["rpc"])
    html = (scenes / "out" / "report.html").read_text()
    assert "<title>Corruption mAP by severity. gaussian_noise: severity 1 " in html
    assert f'<th scope="row">rPC</th><td class="num">{section["rpc"]:.3f}</td>' in html


def test_a_detector_suite_refuses_a_baseline_and_a_classification_metric(scenes):
    result = _run(scenes, benchmark={"corruptions": ["contrast"], "baseline": "alexnet"})
    assert result.exit_code == 2 and "benchmark.baseline: a detector's suite gives mPC and rPC" in result.output
    (scenes / "policy.yaml").write_text(POLICY)
    cfg = write_detection_config(
        scenes, scenes / "detector.pt", policy="policy.yaml", benchmark={"corruptions": ["contrast"]}
    )
    (scenes / "policy.yaml").write_text(POLICY + "  - {id: mce, section: imagenet_c, metric: mce, max: 1.0}\n")
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(scenes / "out2"), "--quiet"])
    assert result.exit_code == 2 and "'mce' is a classification metric" in result.output, result.output
