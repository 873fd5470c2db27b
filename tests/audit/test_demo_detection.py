"""The detection demo: deterministic scenes, a COCO file cvaudit reads, shipped weights that detect."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import stressors
from audit.contract.errors import CvauditError
from audit.demo_detection import (
    AUDIT_IMAGES,
    CLASS_NAMES,
    DETECTION_POLICY_RULES,
    DETECTION_WEIGHTS,
    DETECTION_WEIGHTS_SHA256,
    build_scenes,
    load_detection_demo_weights,
    measure_detector,
    shapes_detector,
    train_detector,
    write_detection_demo,
)
from audit.evaluation.detection.annotations import join_manifest, read_coco, size_class
from audit.evaluation.detection.outputs import decode_yolo

#: SHA-256 of the first audit scene's pixels (uint8, row-major): the same on every CPU.
FIRST_SCENE_SHA256 = "41f21c23c947cabcd0fb27ed78f16e90bd6963d74e63246da4d1d7324481183a"


@pytest.fixture(scope="module")
def audit_scenes():
    return build_scenes(0, AUDIT_IMAGES, split="audit")


@pytest.fixture(scope="module")
def shipped():
    return load_detection_demo_weights()


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detection-demo")
    config = write_detection_demo(folder, log=lambda _: None)
    return folder, config


def test_scenes_are_the_same_bytes_every_time():
    first, second = build_scenes(0, 6), build_scenes(0, 6)
    for a, b in zip(first, second):
        assert a.image.tobytes() == b.image.tobytes()
        assert a.boxes.tobytes() == b.boxes.tobytes() and a.labels.tolist() == b.labels.tolist()
        assert (a.camera, a.lighting, a.occluded.tolist()) == (b.camera, b.lighting, b.occluded.tolist())
    assert hashlib.sha256(first[0].image.tobytes()).hexdigest() == FIRST_SCENE_SHA256
    # scene i depends on (seed, split, i) only: a shorter list is a prefix, another split or seed differs
    assert build_scenes(0, 3)[2].image.tobytes() == first[2].image.tobytes()
    assert build_scenes(1, 1)[0].image.tobytes() != first[0].image.tobytes()
    assert build_scenes(0, 1, split="train")[0].image.tobytes() != first[0].image.tobytes()


def test_scenes_reject_a_bad_split():
    with pytest.raises(ValueError, match="split"):
        build_scenes(0, 1, split="validation")


def test_audit_scenes_cover_classes_sizes_and_attributes(audit_scenes):
    labels = np.concatenate([s.labels for s in audit_scenes])
    areas = np.concatenate([s.boxes[:, 2] * s.boxes[:, 3] for s in audit_scenes])
    occluded = np.concatenate([s.occluded for s in audit_scenes])
    assert set(labels.tolist()) == set(range(len(CLASS_NAMES)))
    sizes = [size_class(a) for a in areas.tolist()]
    assert all(sizes.count(k) >= 20 for k in ("small", "medium", "large"))
    assert 0.15 < occluded.mean() < 0.45
    assert sum(len(s.labels) == 0 for s in audit_scenes) >= 10  # images without objects
    cameras = [s.camera for s in audit_scenes]
    assert 0.4 < cameras.count("B") / len(cameras) < 0.6
    assert {s.lighting for s in audit_scenes} == {"day", "dusk"}
    for s in audit_scenes:  # boxes inside the image, positive size, objects apart
        assert s.image.shape == (128, 128, 3) and s.image.dtype == np.uint8
        assert ((s.boxes[:, :2] >= 0) & (s.boxes[:, :2] + s.boxes[:, 2:] <= 128)).all()
        assert (s.boxes[:, 2:] > 0).all()


def test_camera_b_has_less_contrast_than_a(audit_scenes):
    def spread(camera):
        imgs = np.stack([s.image for s in audit_scenes if s.camera == camera and s.lighting == "day"]).astype(float)
        return imgs.std(axis=(1, 2, 3)).mean()

    assert spread("B") < 0.7 * spread("A")


def test_written_coco_file_reads_and_joins_the_manifest(demo_folder, audit_scenes):
    folder, _ = demo_folder
    truth = read_coco(folder / "instances.json", root=folder, object_attributes=["occluded"])
    assert truth.class_names == CLASS_NAMES and truth.category_ids == (1, 2, 3)
    assert len(truth.images) == AUDIT_IMAGES
    assert truth.num_objects == sum(len(s.labels) for s in audit_scenes)
    joined = join_manifest(truth, folder / "manifest.csv")
    assert len(joined.images) == AUDIT_IMAGES and not joined.skipped
    for image, scene in zip(joined.images[:50], audit_scenes):
        assert image.attributes["camera"] == scene.camera and image.attributes["lighting"] == scene.lighting
        assert [o.box for o in image.objects] == [(x, y, x + w, y + h) for x, y, w, h in scene.boxes.tolist()]
        assert [o.attributes["occluded"] for o in image.objects] == [str(v).lower() for v in scene.occluded]
        assert np.asarray(Image.open(image.path).convert("RGB")).tobytes() == scene.image.tobytes()
    sizes = {o.size for image in joined.images for o in image.objects}
    assert sizes == {"small", "medium", "large"}


def test_written_manifest_has_governance_violations(demo_folder):
    folder, _ = demo_folder
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == AUDIT_IMAGES
    assert sum(r["consent"] == "withdrawn" for r in rows) >= 1
    assert sum(r["capture_date"] < "2020" for r in rows) >= 1
    assert sum(r["region"] not in ("eu-west", "eu-central") for r in rows) >= 1
    assert sum(r["lawful_basis"] == "" for r in rows) >= 1
    assert len({r["sample_id"] for r in rows}) == AUDIT_IMAGES


def test_written_config_names_the_demo_files(demo_folder):
    folder, config = demo_folder
    cfg = yaml.safe_load(config.read_text())
    assert cfg["task"] == "detection"
    assert cfg["model"]["factory"] == "audit.demo_detection:shapes_detector"
    assert Path(cfg["model"]["weights"]) == DETECTION_WEIGHTS
    assert cfg["detection"] == {
        "annotations": "instances.json",
        "object_attributes": ["occluded"],
        "output": "yolo",
        "score_threshold": 0.5,
        "iou_threshold": 0.5,
    }
    assert {s["name"] for s in cfg["stressors"]} == {"night", "occlusion", "blur", "rotation"}
    moving = [s for s in cfg["stressors"] if stressors.box_support(stressors.factory(s["name"])) == "geometric"]
    assert [s["severities"] for s in moving] == [[1, 3, 5]]  # a camera shift, with breaking points
    assert {"name": "occlusion", "label": "occluded_objects", "target": "objects", "severities": [1, 3, 5]} in cfg[
        "stressors"
    ]
    policy = yaml.safe_load((folder / cfg["policy"]).read_text())
    assert policy["rules"] == DETECTION_POLICY_RULES
    assert policy["governance"]["region"]["allowed"] == ["eu-west", "eu-central"]
    assert (folder / cfg["data"]["manifest"]).is_file() and (folder / "instances.json").is_file()
    json.loads((folder / "instances.json").read_text())


def test_shipped_weights_match_their_digest(tmp_path, monkeypatch):
    assert hashlib.sha256(DETECTION_WEIGHTS.read_bytes()).hexdigest() == DETECTION_WEIGHTS_SHA256
    assert DETECTION_WEIGHTS.stat().st_size < 1_100_000
    altered = tmp_path / DETECTION_WEIGHTS.name
    blob = bytearray(DETECTION_WEIGHTS.read_bytes())
    blob[-10] ^= 1
    altered.write_bytes(bytes(blob))
    monkeypatch.setattr("audit.demo_detection.DETECTION_WEIGHTS", altered)
    with pytest.raises(CvauditError, match="SHA-256"):
        load_detection_demo_weights()


def test_factory_output_is_the_yolo_export_layout(shipped):
    assert not shapes_detector().training
    x = torch.from_numpy(np.stack([s.image for s in build_scenes(0, 4)])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        out = shipped(x)
    assert out.shape == (4, 4 + len(CLASS_NAMES), (128 // 4) ** 2)
    assert bool((out[:, 4:] >= 0).all() and (out[:, 4:] <= 1).all() and (out[:, 2:4] > 0).all())
    dets = decode_yolo(
        out, image_ids=["a", "b", "c", "d"], num_classes=len(CLASS_NAMES), score_threshold=0.5, iou_threshold=0.5
    )
    assert len(dets) == 4


def test_shipped_detector_reaches_map50_on_clean_held_out_scenes(shipped, audit_scenes):
    clean = measure_detector(shipped, audit_scenes)
    assert clean.map50 >= 0.5
    assert clean.fp_per_image <= 0.5


def test_demo_shows_real_drops_and_a_camera_gap(shipped, audit_scenes):
    """What the demo is for: night and occlusion cost AP and recall, and camera B misses more objects."""
    clean = measure_detector(shipped, audit_scenes)
    night = measure_detector(shipped, audit_scenes, stressor="night", severity=3)
    occlusion = measure_detector(shipped, audit_scenes, stressor="occlusion", severity=3)
    assert night.map50 < clean.map50 - 0.2 and night.recall < clean.recall - 0.2
    assert occlusion.map50 < clean.map50 - 0.2 and occlusion.recall < clean.recall - 0.1
    assert clean.recall_by_camera["A"] - clean.recall_by_camera["B"] > 0.15
    assert clean.recall_by_occlusion["false"] > clean.recall_by_occlusion["true"]


@pytest.mark.slow
def test_training_reaches_map50_on_clean_held_out_scenes(audit_scenes):
    model = train_detector(seed=0)
    assert measure_detector(model, audit_scenes).map50 >= 0.5
