"""``cvaudit run`` with a stressor that moves pixels: each condition is scored against its own, moved truth.

Real runs (``python -m audit run``) of :class:`ColourBoxNet` over bright scenes (it finds every object exactly)
with ``test_shift``, a pure translation installed as a plugin (:mod:`detection_shift_plugin`). The model input is
at the images' own scale (``resize`` into 64 x 96, or ``letterbox`` into 96 x 96: 16 grey rows above and below), so
a shift of the input is the same shift in the original pixels and the moved truth is written here by hand: every
box shifted, clipped to the image, dropped below ``detection.min_visibility``. The numbers are checked against
pycocotools on that hand-moved truth, ``dropped_objects`` against the hand count, and objects.csv's ``present``,
``visibility`` and ``found`` against a hand-written matching.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from detection_fixtures import make_detection_dataset, save_detector, write_detection_config
from detection_shift_plugin import SHIFTS, install_plugin

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 96, 64
POLICY = """\
version: 1
name: geometric-test
rules:
  - id: clean-map
    condition: clean
    metric: map
    min: 0.2
"""


@pytest.fixture
def scenes(tmp_path: Path) -> Path:
    make_detection_dataset(tmp_path, n=16, dim_camera_b=False)
    save_detector(tmp_path / "detector.pt")
    (tmp_path / "policy.yaml").write_text(POLICY)
    install_plugin(tmp_path / "plugin")
    return tmp_path


def _env(root: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(root / "plugin"), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "CVAUDIT_DIST_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}


def _run(root: Path, out: str, *, resize: str = "resize", min_visibility: float | None = None, **overrides):
    detection = {"resize": resize}
    if min_visibility is not None:
        detection["min_visibility"] = min_visibility
    overrides.setdefault("stressors", [{"name": "test_shift"}])
    cfg = write_detection_config(root, root / "detector.pt", policy="policy.yaml", detection=detection, **overrides)
    text = yaml.safe_load(cfg.read_text())
    text["model"]["input_size"] = [64, 96] if resize == "resize" else [96, 96]  # the images' own scale
    cfg.write_text(yaml.safe_dump(text, sort_keys=False))
    return subprocess.run(
        [sys.executable, "-m", "audit", "run", str(cfg), "--out", str(root / out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(root),
        cwd=root,
    )


def _moved_truth(instances: dict, shift: tuple[int, int], min_visibility: float) -> tuple[dict, dict[int, tuple]]:
    """The hand-moved COCO truth, and per annotation id (present, visibility, moved xywh box)."""
    dx, dy = shift
    annotations, state = [], {}
    for a in instances["annotations"]:
        x, y, w, h = a["bbox"]
        x1, y1 = min(max(x + dx, 0), WIDTH), min(max(y + dy, 0), HEIGHT)
        x2, y2 = min(max(x + w + dx, 0), WIDTH), min(max(y + h + dy, 0), HEIGHT)
        visibility = (x2 - x1) * (y2 - y1) / (w * h)
        present = visibility >= min_visibility and x2 > x1 and y2 > y1
        box = [x1, y1, x2 - x1, y2 - y1]
        state[a["id"]] = (present, visibility, box)
        if present:
            annotations.append({**a, "bbox": box, "area": a["area"] * visibility})
    return {**instances, "annotations": annotations}, state


def _coco_stats(truth: dict, records: list[dict]) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    gt.dataset = json.loads(json.dumps(truth))
    gt.createIndex()
    ev = COCOeval(gt, gt.loadRes(records), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev.stats


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.mark.parametrize("resize", ["resize", "letterbox"])
def test_each_condition_is_scored_against_its_moved_truth(scenes, resize):
    done = _run(scenes, "out", resize=resize)
    assert done.returncode in (0, 1), done.stderr
    out = scenes / "out"
    instances = json.loads((scenes / "instances.json").read_text())
    section = json.loads((out / "results.json").read_text())["detection"]
    conditions = {c["id"]: c for c in section["conditions"]}
    assert list(conditions) == ["clean", "test_shift@1", "test_shift@2"]
    assert conditions["clean"]["metrics"]["map"] == pytest.approx(1.0) and "dropped_objects" not in conditions["clean"]
    records = json.loads((out / "detections.json").read_text())
    with (out / "objects.csv").open() as f:
        rows = list(csv.DictReader(f))
    n = len(instances["annotations"])
    assert len(rows) == 3 * n  # conditions x objects
    row_of = {image["id"]: r for r, image in enumerate(instances["images"])}
    by_image: dict[int, list[dict]] = {}
    for a in instances["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    for level, shift in [(0, (0, 0)), *SHIFTS.items()]:
        cid = "clean" if level == 0 else f"test_shift@{level}"
        truth, state = _moved_truth(instances, shift, 0.3)
        mine = [{k: v for k, v in r.items() if k != "condition"} for r in records if r["condition"] == cid]
        stats = _coco_stats(truth, mine)
        metrics = conditions[cid]["metrics"]
        for k, name in enumerate(("map", "map_50", "map_75")):
            assert metrics[name] == pytest.approx(stats[k], abs=1e-6), (cid, name)
        dropped = sum(1 for present, _, _ in state.values() if not present)
        assert metrics["n_objects"] == n - dropped
        if level:
            assert conditions[cid]["dropped_objects"] == dropped
        # objects.csv against a hand-written matching: a kept detection of the object's class at IoU >= 0.5
        expected = []
        for image in instances["images"]:
            for k, a in enumerate(by_image.get(image["id"], [])):
                present, visibility, box = state[a["id"]]
                found = present and any(
                    d["image_id"] == image["id"]
                    and d["category_id"] == a["category_id"]
                    and d["score"] >= 0.5
                    and _iou(d["bbox"], box) >= 0.5
                    for d in mine
                )
                expected.append((cid, str(row_of[image["id"]]), str(k), present, found, visibility))
        got = [
            (r["condition"], r["image_row"], r["object_index"], r["present"] == "true", r["found"] == "true")
            for r in rows
            if r["condition"] == cid
        ]
        assert got == [e[:5] for e in expected], cid
        vis = [float(r["visibility"]) for r in rows if r["condition"] == cid]
        assert vis == pytest.approx([e[5] for e in expected], abs=1e-9)
        assert sum(e[4] for e in expected) == metrics["tp"]
    # the shifts really move objects out: some dropped, some kept in part
    assert conditions["test_shift@1"]["dropped_objects"] > 0 and conditions["test_shift@2"]["dropped_objects"] > 0
    partly = [r for r in rows if r["condition"] != "clean" and r["present"] == "true" and float(r["visibility"]) < 1]
    assert partly


def test_a_perfect_detector_keeps_map_one_under_a_shift(scenes):
    """With min_visibility 0 every sliver in view stays an object; the detector finds each exactly."""
    done = _run(scenes, "out", min_visibility=0.0)
    assert done.returncode in (0, 1), done.stderr
    section = json.loads((scenes / "out" / "results.json").read_text())["detection"]
    instances = json.loads((scenes / "instances.json").read_text())
    for cond in section["conditions"]:
        assert cond["metrics"]["map"] == pytest.approx(1.0), cond["id"]
        assert cond["metrics"]["recall"] == 1.0 and cond["metrics"]["fp"] == 0, cond["id"]
    for level, shift in SHIFTS.items():
        _, state = _moved_truth(instances, shift, 0.0)
        gone = sum(1 for present, _, _ in state.values() if not present)  # wholly out of the frame
        assert section["conditions"][level]["dropped_objects"] == gone > 0


def test_objects_csv_is_attested(scenes):
    assert (
        subprocess.run(
            [sys.executable, "-m", "audit", "keygen", "--out", str(scenes / "keys")], capture_output=True
        ).returncode
        == 0
    )
    done = _run(scenes, "out", report={"formats": ["html"], "sign_key": "keys"})
    assert done.returncode in (0, 1), done.stderr
    out = scenes / "out"
    html = (out / "report.html").read_text()
    assert "dropped" in html
    # the per-object breaking points are derived from objects.csv (two shift levels: one track)
    section = json.loads((out / "results.json").read_text())["detection"]
    entry = next(e for e in section["breaking_points"]["entries"] if e["id"] == "test_shift")
    n = len(json.loads((scenes / "instances.json").read_text())["annotations"])
    assert entry["n"] + entry["missed_on_clean"] == n and entry["dropped"] > 0
    assert (out / "object_breaking_points.csv").is_file()
    (out / "objects.csv").write_text((out / "objects.csv").read_text().replace("true", "false", 1))
    verify = subprocess.run(
        [sys.executable, "-m", "audit", "verify", str(out), "--key", str(scenes / "keys")],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 1 and "objects.csv" in verify.stdout + verify.stderr


def test_a_stressor_that_does_not_declare_moving_pixels_is_refused(scenes):
    done = _run(scenes, "out", stressors=[{"name": "test_undeclared"}])
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert "\n" not in line and "test_undeclared@1" in line and "moves_pixels" in line, line
    assert not (scenes / "out").exists() or not any((scenes / "out").iterdir())


@pytest.mark.parametrize("value", [1.5, -0.1])
def test_min_visibility_out_of_range_is_a_config_error(scenes, value):
    done = _run(scenes, "out", min_visibility=value)
    assert done.returncode == 2
    line = done.stderr.strip()
    assert "\n" not in line and "min_visibility" in line, line


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


def test_two_ranks_equal_one_process_under_a_shift(scenes):
    assert _run(scenes, "one").returncode in (0, 1)
    cfg = scenes / "config.yaml"
    multi = subprocess.run(
        [*_torchrun(), "--standalone", "--nproc-per-node", "2", "-m", "audit", "run", str(cfg)]
        + ["--out", str(scenes / "two"), "--quiet"],
        env=_env(scenes),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=scenes,
    )
    # torchrun exits 1 both for a failed policy and for a rank that crashed: results.json tells them apart
    assert multi.returncode in (0, 1), multi.stderr[-3000:]
    assert (scenes / "two" / "results.json").is_file(), multi.stderr[-3000:]
    one = json.loads((scenes / "one" / "results.json").read_text())
    two = json.loads((scenes / "two" / "results.json").read_text())
    assert one["detection"] == two["detection"] and two["provenance"]["world_size"] == 2
    for name in ("detections.json", "detections.csv", "objects.csv", "image_properties.csv"):
        assert (scenes / "one" / name).read_bytes() == (scenes / "two" / name).read_bytes(), name
