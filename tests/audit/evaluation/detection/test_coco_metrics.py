"""COCO metrics by faster-coco-eval equal pycocotools' COCOeval on the same detections.json."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from detection_scenes import random_scene
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from audit.contract.errors import AuditError
from audit.evaluation.detection.coco_metrics import (
    COCO_METRIC_NAMES,
    CocoEvaluator,
    CocoMetrics,
    ImageDetections,
    ImageTruth,
    coco_ground_truth,
    write_detections_json,
)

CATEGORIES = {1: "car", 2: "person", 3: "dog", 4: "cat", 5: "bike"}


def _pycocotools_stats(truths, path: Path, image_ids=None) -> np.ndarray:
    """The reference: pycocotools' COCOeval on the same ground truth and the same file."""
    gt = COCO()
    gt.dataset = coco_ground_truth(truths, CATEGORIES)
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(str(path))
        ev = COCOeval(gt, dt, "bbox")
        if image_ids is not None:
            ev.params.imgIds = sorted(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, dtype=np.float64)


def _as_stats(metrics: CocoMetrics) -> np.ndarray:
    return np.array([-1.0 if (v := getattr(metrics, name)) is None else v for name in COCO_METRIC_NAMES])


def _write(tmp_path: Path, truths, dets) -> Path:
    path = tmp_path / "detections.json"
    write_detections_json(path, dets, image_ids=[t.image_id for t in truths], categories=CATEGORIES)
    return path


SCENARIOS = {
    "random": {},
    "random_other_seed": {"seed": 7, "n_images": 60},
    "crowd_boxes": {"crowd_rate": 0.3, "seed": 3},
    "images_without_detections": {"empty_det_rate": 0.5, "seed": 4},
    "images_without_ground_truth": {"empty_gt_rate": 0.5, "seed": 5},
    "over_100_detections_per_image": {"n_images": 8, "extra_dets": (120, 260), "seed": 6},
    "categories_without_ground_truth": {"gt_categories": (1, 2), "det_categories": (1, 2, 3, 4, 5), "seed": 8},
    "box_area_and_equal_scores_on_a_grid": {"segment_area": False, "grid_boxes": True, "seed": 9},
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_equals_pycocotools_on_the_same_detections_json(tmp_path, name):
    params = {"seed": 0, **SCENARIOS[name]}
    truths, dets = random_scene(params.pop("seed"), **params)
    path = _write(tmp_path, truths, dets)
    ours = CocoEvaluator(truths=truths, categories=CATEGORIES).evaluate(path)
    ref = _pycocotools_stats(truths, path)
    np.testing.assert_allclose(_as_stats(ours), ref, rtol=0, atol=1e-6)
    assert ours.n_images == len(truths)
    assert ours.map is not None and 0 < ours.map < 1  # a real score, not an empty evaluation


def test_scenes_cover_what_the_equality_test_claims():
    """The scenarios really contain crowds, >100 detections, and images without GT or detections."""
    truths, dets = random_scene(6, n_images=8, extra_dets=(120, 260))
    assert max(len(d.scores) for d in dets) > 100
    truths, dets = random_scene(3, crowd_rate=0.3)
    assert sum(int(t.iscrowd.sum()) for t in truths) > 5
    truths, dets = random_scene(4, empty_det_rate=0.5)
    assert len(dets) < len(truths) - 5
    truths, _ = random_scene(5, empty_gt_rate=0.5)
    assert sum(len(t.category_ids) == 0 for t in truths) > 5
    truths, dets = random_scene(9, segment_area=False, grid_boxes=True)
    scores = np.concatenate([d.scores for d in dets])
    assert len(np.unique(scores)) < len(scores)


def test_image_subsets_equal_pycocotools(tmp_path):
    truths, dets = random_scene(11, n_images=50, crowd_rate=0.1, empty_gt_rate=0.2)
    path = _write(tmp_path, truths, dets)
    evaluator = CocoEvaluator(truths=truths, categories=CATEGORIES)
    rng = np.random.default_rng(1)
    ids = [t.image_id for t in truths]
    subsets = {
        "half": rng.choice(ids, size=25, replace=False).tolist(),
        "three": ids[:3],
        "objects_only": [t.image_id for t in truths if len(t.category_ids)],
    }
    loaded = evaluator.load(path)
    results = evaluator.evaluate_subsets(loaded, subsets)
    for name, subset in subsets.items():
        np.testing.assert_allclose(
            _as_stats(results[name]), _pycocotools_stats(truths, path, subset), rtol=0, atol=1e-6, err_msg=name
        )
        assert results[name].n_images == len(subset)
    full = evaluator.evaluate(loaded)
    assert full != results["half"]


def test_undefined_metrics_are_none_where_coco_reports_minus_one(tmp_path):
    truths = [
        ImageTruth(1, 200, 200, [[10, 10, 20, 20], [50, 50, 60, 60]], [1, 1]),  # small, medium; no large
        ImageTruth(2, 200, 200, np.zeros((0, 4)), []),
    ]
    dets = [ImageDetections(1, [[10, 10, 30, 30]], [0.9], [1]), ImageDetections(2, [[0, 0, 150, 150]], [0.8], [1])]
    path = _write(tmp_path, truths, dets)
    evaluator = CocoEvaluator(truths=truths, categories=CATEGORIES)
    metrics = evaluator.evaluate(path)
    assert metrics.ap_large is None and metrics.ar_large is None
    assert metrics.ap_small is not None and metrics.ap_medium == 0.0
    np.testing.assert_allclose(_as_stats(metrics), _pycocotools_stats(truths, path), rtol=0, atol=1e-6)
    no_truth = evaluator.evaluate(path, image_ids=[2])  # only a false positive: nothing is defined
    assert all(getattr(no_truth, name) is None for name in COCO_METRIC_NAMES)
    assert evaluator.evaluate(path, image_ids=[]) == CocoMetrics.from_stats([-1] * 12, n_images=0)


def test_no_detections_at_all_scores_zero(tmp_path):
    truths, _ = random_scene(2, n_images=5, empty_gt_rate=0.0)
    path = _write(tmp_path, truths, [])
    assert json.loads(path.read_text()) == []
    metrics = CocoEvaluator(truths=truths, categories=CATEGORIES).evaluate(path)
    assert metrics.map == 0.0 and metrics.ar100 == 0.0


def test_detections_json_holds_exactly_the_boxes_and_scores(tmp_path):
    truths, dets = random_scene(12, n_images=10)
    path = _write(tmp_path, truths, dets)
    records = json.loads(path.read_text())
    assert set(records[0]) == {"image_id", "category_id", "bbox", "score"}
    expected = [
        (d.image_id, int(c), b.tolist(), float(s))
        for d in dets
        for b, s, c in zip(d.boxes_xywh, d.scores, d.category_ids)
    ]
    assert [(r["image_id"], r["category_id"], r["bbox"], r["score"]) for r in records] == expected
    assert records[0]["bbox"][2] == dets[0].boxes[0, 2] - dets[0].boxes[0, 0]  # xyxy -> xywh


def test_bad_ground_truth_and_detections_are_one_line_errors(tmp_path):
    with pytest.raises(AuditError, match="image 3, object 1: box .* non-positive size"):
        ImageTruth(3, 10, 10, [[0, 0, 2, 2], [1, 1, 0, 3]], [1, 1])
    with pytest.raises(AuditError, match="2 boxes but 1 category ids"):
        ImageTruth(3, 10, 10, [[0, 0, 2, 2], [1, 1, 1, 3]], [1])
    with pytest.raises(AuditError, match="x2 < x1"):
        ImageDetections(4, [[5, 0, 2, 2]], [0.5], [1])
    with pytest.raises(AuditError, match="not finite"):
        ImageDetections(4, [[0, 0, 2, 2]], [float("nan")], [1])
    truth = ImageTruth(1, 10, 10, [[0, 0, 2, 2]], [1])
    with pytest.raises(AuditError, match="image id 1 appears twice"):
        coco_ground_truth([truth, truth], CATEGORIES)
    with pytest.raises(AuditError, match="object 0: unknown category id 9"):
        coco_ground_truth([ImageTruth(1, 10, 10, [[0, 0, 2, 2]], [9])], CATEGORIES)
    path = tmp_path / "d.json"
    with pytest.raises(AuditError, match="image id 2 has no ground truth"):
        write_detections_json(
            path, [ImageDetections(2, [[0, 0, 1, 1]], [1], [1])], image_ids=[1], categories=CATEGORIES
        )
    with pytest.raises(AuditError, match="image 1: unknown category id 9"):
        write_detections_json(
            path, [ImageDetections(1, [[0, 0, 1, 1]], [1], [9])], image_ids=[1], categories=CATEGORIES
        )
    evaluator = CocoEvaluator(truths=[truth], categories=CATEGORIES)
    for record, problem in [
        ({"image_id": 5, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}, "image_id 5 is not an image"),
        ({"image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1], "score": 1}, "category_id 7 is not a known"),
        ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1], "score": 1}, "bbox .* is not four finite numbers"),
        ({"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 1}, "bbox .* has a negative width"),
        ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": "x"}, "score 'x' is not a finite"),
    ]:
        path.write_text(json.dumps([record]))
        with pytest.raises(AuditError, match=f"d.json, detection 0: {problem}"):
            evaluator.evaluate(path)
    path.write_text("{}")
    with pytest.raises(AuditError, match="expected a JSON list"):
        evaluator.load(path)
    with pytest.raises(AuditError, match="image id 8 has no ground truth"):
        evaluator.evaluate(_write(tmp_path, [truth], []), image_ids=[1, 8])
