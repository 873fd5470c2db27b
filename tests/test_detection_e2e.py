"""``cvaudit run`` with ``task: detection`` end to end: real PNG files, a real COCO file, a TorchScript detector.

Checks the numbers against the field's own evaluator (pycocotools on the attested detections.json),
the per-image CSV against results.json, the outputs and their attestation, and every bad input's one
line and exit code 2 with no output written.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from detection_fixtures import CLASSES, make_detection_dataset, save_detector, write_detection_config

from audit.contract.results import SCHEMA_VERSION

pytestmark = pytest.mark.slow

POLICY = """\
version: 1
name: detection-test
on_insufficient_data: fail
rules:
  - id: clean-map
    condition: clean
    metric: map
    min: 0.2
  - id: clean-fp
    condition: clean
    metric: fp_per_image
    max: 0.5
"""


def _cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "audit", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def scenes(tmp_path: Path) -> Path:
    make_detection_dataset(tmp_path, n=24)
    save_detector(tmp_path / "detector.pt")
    (tmp_path / "policy.yaml").write_text(POLICY)
    return tmp_path


def _config(root: Path, **overrides) -> Path:
    overrides.setdefault("policy", "policy.yaml")
    return write_detection_config(root, root / "detector.pt", **overrides)


def _run(root: Path, cfg: Path, out: str = "out") -> subprocess.CompletedProcess:
    return _cli("run", str(cfg), "--out", str(root / out), "--quiet")


def test_detection_run_matches_pycocotools_on_its_own_detections(scenes):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    done = _run(scenes, _config(scenes))
    assert done.returncode in (0, 1), done.stderr
    out = scenes / "out"
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "detection" and results["schema_version"] == SCHEMA_VERSION
    assert "conditions" not in results  # the classification keys are absent
    section = results["detection"]
    assert [c["id"] for c in section["conditions"]] == ["clean", "night@3"]
    records = json.loads((out / "detections.json").read_text())
    gt = COCO(str(scenes / "instances.json"))
    for cond in section["conditions"]:
        mine = [{k: v for k, v in r.items() if k != "condition"} for r in records if r["condition"] == cond["id"]]
        assert mine, cond["id"]
        ev = COCOeval(gt, gt.loadRes(mine), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        m = cond["metrics"]
        for k, name in enumerate(("map", "map_50", "map_75")):
            assert m[name] == pytest.approx(ev.stats[k], abs=1e-6), (cond["id"], name)
    # the detector sees camera A's colours only: a real camera gap and a real drop under night
    clean = section["conditions"][0]
    recall = {g["value"]: g["metrics"]["recall"] for g in clean["groups"] if g["attribute"] == "camera"}
    assert recall["A"] > 0.9 and recall["B"] == 0.0
    assert section["conditions"][1]["metrics"]["map"] < 0.5 * clean["metrics"]["map"]


def test_per_image_csv_adds_up_to_the_operating_point(scenes):
    assert _run(scenes, _config(scenes)).returncode in (0, 1)
    out = scenes / "out"
    section = json.loads((out / "results.json").read_text())["detection"]
    with (out / "detections.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24 * 2
    for cond in section["conditions"]:
        mine = [r for r in rows if r["condition"] == cond["id"]]
        for key in ("tp", "fp", "fn"):
            assert sum(int(r[key]) for r in mine) == cond["metrics"][key]
        assert sum(int(r["objects"]) for r in mine) == cond["metrics"]["n_objects"]


def test_boxes_come_back_in_original_pixels(scenes):
    assert _run(scenes, _config(scenes)).returncode in (0, 1)
    instances = json.loads((scenes / "instances.json").read_text())
    truth = {(a["image_id"], a["category_id"]): a["bbox"] for a in instances["annotations"]}
    records = json.loads((scenes / "out" / "detections.json").read_text())
    found = 0
    for r in records:
        key = (r["image_id"], r["category_id"])
        if r["condition"] == "clean" and r["score"] > 0.5 and key in truth:
            # 96x64 letterboxed into 64x64 (scale 2/3) and back: within the 1.5 px one input pixel spans
            assert np.allclose(r["bbox"], truth[key], atol=1.6), (r, truth[key])
            found += 1
    assert found >= 10


def test_outputs_are_attested_and_verify(scenes):
    import base64

    assert _cli("keygen", "--out", str(scenes / "keys")).returncode == 0
    cfg = _config(scenes, report={"formats": ["html", "pdf"], "sign_key": "keys"})
    done = _run(scenes, cfg)
    assert done.returncode in (0, 1), done.stderr
    out = scenes / "out"
    envelope = json.loads((out / "attestation.dsse.json").read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    subjects = {s["name"] for s in statement["subject"]}
    assert {"results.json", "detections.json", "detections.csv", "groups.csv", "skipped.csv", "junit.xml"} <= subjects
    assert {"report.html", "report.pdf", "annotations:instances.json", "dataset:manifest.csv"} <= subjects
    verify = _cli("verify", str(out), "--key", str(scenes / "keys"))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    data = bytearray((out / "detections.json").read_bytes())
    data[-5] ^= 1
    (out / "detections.json").write_bytes(bytes(data))
    tampered = _cli("verify", str(out), "--key", str(scenes / "keys"))
    assert tampered.returncode == 1 and "detections.json" in tampered.stdout + tampered.stderr


def test_bad_annotation_is_one_line_exit_2_and_nothing_written(scenes):
    instances = json.loads((scenes / "instances.json").read_text())
    instances["annotations"][0]["bbox"] = [90, 10, 30, 10]  # leaves the 96-pixel-wide image
    (scenes / "instances.json").write_text(json.dumps(instances))
    done = _run(scenes, _config(scenes))
    assert done.returncode == 2
    line = done.stderr.strip()
    assert "\n" not in line and "instances.json" in line and "annotation 1" in line, line
    assert not (scenes / "out").exists() or not any((scenes / "out").iterdir())


def test_skipped_annotation_is_listed(scenes):
    instances = json.loads((scenes / "instances.json").read_text())
    instances["annotations"][0]["category_id"] = 99
    (scenes / "instances.json").write_text(json.dumps(instances))
    done = _run(scenes, _config(scenes, detection={"on_bad_annotation": "skip"}))
    assert done.returncode in (0, 1), done.stderr
    results = json.loads((scenes / "out" / "results.json").read_text())
    skipped = results["detection"]["skipped_annotations"]
    assert len(skipped) == 1 and "99" in skipped[0]["reason"]
    assert "99" in (scenes / "out" / "skipped.csv").read_text()


def test_image_of_another_size_than_annotated_is_an_error(scenes):
    instances = json.loads((scenes / "instances.json").read_text())
    instances["images"][3]["width"] = 128
    (scenes / "instances.json").write_text(json.dumps(instances))
    done = _run(scenes, _config(scenes))
    assert done.returncode == 2
    assert "decodes to 96x64 pixels but its annotation says 128x64" in done.stderr


def test_attacks_are_refused_before_any_image(scenes):
    done = _run(scenes, _config(scenes, stressors=[{"name": "fgsm", "epsilons": ["2/255"]}]))
    assert done.returncode == 2
    assert "attack on classifiers" in done.stderr


def test_classification_rule_on_a_detection_run_is_refused(scenes):
    (scenes / "policy.yaml").write_text(POLICY.replace("metric: map", "metric: accuracy"))
    done = _run(scenes, _config(scenes))
    assert done.returncode == 2
    assert "clean-map" in done.stderr


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


def test_two_ranks_equal_one_process(scenes):
    cfg = _config(scenes, stressors=[{"name": "night", "severities": [2]}, {"name": "blur", "severities": [2]}])
    env = {**os.environ, "CVAUDIT_DIST_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}
    assert _cli("run", str(cfg), "--out", str(scenes / "one"), "--quiet", env=env).returncode in (0, 1)
    multi = subprocess.run(
        [*_torchrun(), "--standalone", "--nproc-per-node", "2", "-m", "audit", "run", str(cfg)]
        + ["--out", str(scenes / "two"), "--quiet"],
        env=env,
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
    assert one["detection"] == two["detection"]
    assert two["provenance"]["world_size"] == 2
    assert (scenes / "one" / "detections.json").read_bytes() == (scenes / "two" / "detections.json").read_bytes()
    assert (scenes / "one" / "detections.csv").read_bytes() == (scenes / "two" / "detections.csv").read_bytes()


def test_yolo_folder_gives_the_same_results_as_coco(scenes):
    instances = json.loads((scenes / "instances.json").read_text())
    yolo = scenes / "yolo"
    (yolo / "labels").mkdir(parents=True)
    shutil.copytree(scenes / "images", yolo / "images")
    (yolo / "data.yaml").write_text("names: [" + ", ".join(CLASSES) + "]\n")
    by_image: dict[int, list[str]] = {}
    for a in instances["annotations"]:
        x, y, w, h = a["bbox"]
        by_image.setdefault(a["image_id"], []).append(
            f"{a['category_id'] - 1} {(x + w / 2) / 96} {(y + h / 2) / 64} {w / 96} {h / 64}"
        )
    for image in instances["images"]:
        stem = Path(image["file_name"]).stem
        (yolo / "labels" / f"{stem}.txt").write_text("\n".join(by_image.get(image["id"], [])) + "\n")
    manifest = (scenes / "manifest.csv").read_text().replace("images/", "yolo/images/")
    (scenes / "manifest_yolo.csv").write_text(manifest)
    coco = _run(scenes, _config(scenes), out="coco")
    assert coco.returncode in (0, 1), coco.stderr
    cfg = _config(
        scenes,
        data={"manifest": "manifest_yolo.csv"},
        detection={"annotations": None, "yolo": "yolo", "object_attributes": []},
    )
    done = _run(scenes, cfg, out="yolo-out")
    assert done.returncode in (0, 1), done.stderr
    a = json.loads((scenes / "coco" / "results.json").read_text())["detection"]["conditions"]
    b = json.loads((scenes / "yolo-out" / "results.json").read_text())["detection"]["conditions"]
    for ca, cb in zip(a, b):
        assert ca["metrics"]["map"] == pytest.approx(cb["metrics"]["map"], abs=1e-9)
        assert ca["metrics"]["recall"] == cb["metrics"]["recall"]
