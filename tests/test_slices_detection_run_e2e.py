"""``cvaudit run`` of a real detection audit (PNG scenes, a COCO file, a TorchScript detector), then ``cvaudit slices``
on its run folder: objects.csv carries the annotated boxes' geometry, image_properties.csv the decoded images'
properties, and the search finds the camera the detector is blind to (:class:`detection_fixtures.ColourBoxNet` misses
every object of camera ``B``, whose images are dimmed to 70 %) — by name, and by brightness alone."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from detection_fixtures import make_detection_dataset, save_detector, write_detection_config
from PIL import Image
from property_reference import image_properties_reference

from audit.contract.image_properties import PROPERTY_COLUMNS

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

    # image properties of each decoded image (at its own size, no letterbox band), against numpy on the PNG files
    manifest = {r["sample_id"]: r["path"] for r in csv.DictReader((tmp_path / "manifest.csv").open(newline=""))}
    with (out / "image_properties.csv").open(newline="") as f:
        props = list(csv.DictReader(f))
    assert tuple(props[0]) == PROPERTY_COLUMNS and [r["id"] for r in props] == list(manifest)
    for row in props:
        img = np.asarray(Image.open(tmp_path / manifest[row["id"]]).convert("RGB"), dtype=np.float64) / 255
        got = [float(row[c]) for c in PROPERTY_COLUMNS[1:6]]
        assert got == pytest.approx(image_properties_reference(img), rel=1e-5, abs=1e-7), row["id"]
        assert (float(row["width"]), float(row["height"]), float(row["aspect_ratio"])) == (96, 64, 1.5)

    # the blind camera is found by the images' brightness alone (the camera attribute left out of the search;
    # two bins: a decile of 80 images has fewer than the 10 images per half the cluster-robust test needs)
    by_light = tmp_path / "slices_brightness.csv"
    done = _cli(
        "slices",
        str(out),
        "--out",
        str(by_light),
        "--min-size",
        "10",
        "--depth",
        "1",
        "--attribute",
        "brightness",
        "--bins",
        "2",
    )
    assert done.returncode == 0, done.stderr
    with by_light.open(newline="") as f:
        rows = list(csv.DictReader(f))
    dark = max(float(r["brightness"]) for r in props if int(r["id"][1:]) % 2 == 1)  # camera B: odd images
    assert rows and rows[0]["definition"].startswith("brightness"), rows
    definition = json.loads(rows[0]["definition_json"])["all"][0]
    assert definition.get("min") is None and definition["max"] > dark  # the slice holds every dimmed image
    assert float(rows[0]["value"]) == 0.0 and rows[0]["fairness"] == "false"  # a property is not protected
    assert int(rows[0]["n"]) == sum(1 for r in clean if int(r["sample_id"][1:]) % 2 == 1)  # every object of B

    slices = tmp_path / "slices.csv"
    done = _cli("slices", str(out), "--out", str(slices), "--min-size", "10", "--depth", "2")
    assert done.returncode == 0, done.stderr
    assert f"{len(clean)} objects of clean" in done.stderr
    with slices.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and rows[0]["metric"] == "recall"
    assert "camera = B" in rows[0]["definition"] and float(rows[0]["value"]) == 0.0
    assert rows[0]["fairness"] == "true"  # camera is a manifest attribute of data.attributes
    promoted = _cli("slices", str(out), "--out", str(slices), "--promote", "1")
    assert promoted.returncode == 0, promoted.stderr
    assert "    metric: gap.recall\n" in promoted.stdout and f"    entry: {rows[0]['id']}\n" in promoted.stdout
