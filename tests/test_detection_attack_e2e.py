"""``cvaudit run`` with detection attacks: the demo detector under ``detection_pgd`` end to end (the robust-mAP
curve and its checks in results.json and the report), and the one-line refusals (exit 2, nothing written) of an
ONNX detector and of ``mislabel`` on a detector that returns only its detections."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from detection_fixtures import ColourBoxNet, make_detection_dataset, save_detector, write_detection_config

pytestmark = pytest.mark.slow

POLICY = """\
version: 1
name: attack-test
rules:
  - id: clean-map
    condition: clean
    metric: map
    min: 0.1
"""


def _run(cfg: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "audit", "run", str(cfg), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ},
    )


def test_demo_detector_under_a_vanishing_attack(tmp_path):
    from audit.demo_detection import write_detection_demo

    cfg_path = write_detection_demo(tmp_path / "demo", log=lambda _: None)
    root = cfg_path.parent
    with (root / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    with (root / "manifest.csv").open("w", newline="") as f:  # 24 images keep the test short
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[:24])
    coco = json.loads((root / "instances.json").read_text())
    keep = {image["id"] for image in coco["images"][:24]}
    coco["images"] = coco["images"][:24]
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep]
    (root / "instances.json").write_text(json.dumps(coco))
    (root / "policy.yaml").write_text(POLICY)
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["stressors"] = [{"name": "detection_pgd", "epsilons": [0, "4/255", 0.3], "steps": 3}]
    cfg["report"] = {"formats": ["html"]}
    cfg["data"] = {"manifest": "manifest.csv", "attributes": ["camera"]}
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    done = _run(cfg_path, tmp_path / "out")
    assert done.returncode in (0, 1), done.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    section = results["detection"]
    maps = {c["id"]: c["metrics"]["map"] for c in section["conditions"]}
    assert list(maps) == ["clean", "detection_pgd@0", "detection_pgd@0.01569", "detection_pgd@0.3"]
    assert maps["detection_pgd@0"] == maps["clean"]  # the eps = 0 replay is the clean pass
    assert maps["detection_pgd@0.01569"] < 0.5 * maps["clean"] and maps["detection_pgd@0.3"] < 0.01
    assert section["robustness"] is None  # mPC covers image stressors only
    (attack,) = section["attacks"]
    assert (attack["attack"], attack["norm"], attack["objective"]) == ("detection_pgd", "linf", "vanishing")
    assert [p["epsilon"] for p in attack["points"]] == pytest.approx([0, 4 / 255, 0.3])
    assert [p["map"] for p in attack["points"]] == [maps[k] for k in list(maps)[1:]]
    assert attack["points"][1]["map_noise"] > attack["points"][1]["map"] + 0.2
    assert {c["check"]: c["status"] for c in attack["checks"]} == {
        "detection_attack.zero_epsilon_matches_clean": "pass",
        "detection_attack.monotone_in_epsilon": "pass",
        "detection_attack.stronger_than_noise": "pass",
        "detection_attack.large_epsilon_zero_recall": "pass",
        "detection_attack.loss_decreases": "pass",
    }
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Gradient attacks on the detector (robust mAP)" in html


@pytest.fixture
def scenes(tmp_path: Path) -> Path:
    make_detection_dataset(tmp_path, n=8)
    save_detector(tmp_path / "detector.pt")
    (tmp_path / "policy.yaml").write_text(POLICY)
    return tmp_path


def test_an_onnx_detector_is_refused_with_one_line_and_nothing_written(scenes):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    onnx = scenes / "detector.onnx"
    torch.onnx.export(ColourBoxNet().eval(), (torch.rand(2, 3, 64, 64),), str(onnx), dynamo=True,
                      dynamic_shapes=({0: torch.export.Dim("b")},))  # fmt: skip
    cfg = write_detection_config(
        scenes, onnx, stressors=[{"name": "detection_pgd", "epsilons": [0]}], policy="policy.yaml"
    )
    done = _run(cfg, scenes / "out")
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "stressor condition 'detection_pgd@0': detection_pgd: the detector has no gradients (an ONNX model runs "
            "in onnxruntime, which gives no gradient); gradient attacks cannot run on it"
        )
    )
    assert not (scenes / "out").exists()


def test_mislabel_on_a_boxes_detector_is_refused_with_one_line(scenes):
    cfg = write_detection_config(
        scenes,
        scenes / "detector.pt",
        stressors=[{"name": "detection_pgd_l2", "epsilons": [0], "objective": "mislabel"}],
        policy="policy.yaml",
    )
    done = _run(cfg, scenes / "out")
    assert done.returncode == 2
    assert "detection_pgd_l2: objective 'mislabel' needs every class's score per candidate" in done.stderr
    assert not (scenes / "out").exists()


def test_a_boxes_detector_under_a_vanishing_attack(scenes):
    cfg = write_detection_config(
        scenes,
        scenes / "detector.pt",
        stressors=[{"name": "detection_pgd", "epsilons": [0, 0.3], "steps": 3}],
        policy="policy.yaml",
    )
    done = _run(cfg, scenes / "out")
    assert done.returncode in (0, 1), done.stderr
    section = json.loads((scenes / "out" / "results.json").read_text())["detection"]
    maps = {c["id"]: c["metrics"]["map"] for c in section["conditions"]}
    assert maps["detection_pgd@0"] == maps["clean"] and maps["detection_pgd@0.3"] < maps["clean"]
