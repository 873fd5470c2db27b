"""``cvaudit run`` of a real detection audit (PNG scenes, a COCO file, a TorchScript detector), then ``cvaudit slices``
on its run folder: objects.csv carries the annotated boxes' geometry, and the search finds the camera the
detector is blind to (:class:`detection_fixtures.ColourBoxNet` misses every object of camera ``B``)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from detection_fixtures import make_detection_dataset, save_detector, write_detection_config

pytestmark = pytest.mark.slow

POLICY = """\
version: 1
name: detection-slices-test
rules:
  - id: clean-map
    condition: clean
    metric: map
    min: 0.2
"""


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "audit", *args], capture_output=True, text=True, timeout=600, env={**os.environ}
    )


def test_a_real_detection_run_is_searched_on_its_objects(tmp_path: Path):
    make_detection_dataset(tmp_path, n=80)
    save_detector(tmp_path / "detector.pt")
    (tmp_path / "policy.yaml").write_text(POLICY)
    cfg = write_detection_config(tmp_path, tmp_path / "detector.pt", policy="policy.yaml")
    out = tmp_path / "out"
    done = _cli("run", str(cfg), "--out", str(out), "--quiet")
    assert done.returncode in (0, 1), done.stderr

    instances = json.loads((tmp_path / "instances.json").read_text())
    with (out / "objects.csv").open(newline="") as f:
        clean = [row for row in csv.DictReader(f) if row["condition"] == "clean"]
    assert len(clean) == len(instances["annotations"])
    for row, a in zip(clean, instances["annotations"], strict=True):
        x, y, w, h = a["bbox"]
        assert float(row["area_share"]) == pytest.approx(w * h / (96 * 64), rel=1e-12)
        assert float(row["center_x"]) == pytest.approx((x + w / 2) / 96, rel=1e-12)
        assert float(row["center_y"]) == pytest.approx((y + h / 2) / 64, rel=1e-12)

    slices = tmp_path / "slices.csv"
    done = _cli("slices", str(out), "--out", str(slices), "--min-size", "10", "--depth", "2")
    assert done.returncode == 0, done.stderr
    assert f"{len(clean)} objects of clean" in done.stderr
    with slices.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and rows[0]["metric"] == "recall"
    assert "camera = B" in rows[0]["definition"] and float(rows[0]["value"]) == 0.0
    assert rows[0]["fairness"] == "true"  # camera is a manifest attribute of data.attributes
    refused = _cli("slices", str(out), "--out", str(slices), "--promote", "1")
    assert refused.returncode == 2 and "classification-only" in refused.stderr
