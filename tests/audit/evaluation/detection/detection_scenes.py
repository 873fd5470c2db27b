"""Random detection scenes for the detection metric tests (ground truth plus noisy detections)."""

from __future__ import annotations

import numpy as np

from audit.evaluation.detection.coco_metrics import ImageDetections, ImageTruth

WIDTH, HEIGHT = 640, 480


def random_scene(
    seed: int,
    *,
    n_images: int = 30,
    gt_categories: tuple[int, ...] = (1, 2, 3),
    det_categories: tuple[int, ...] | None = None,
    crowd_rate: float = 0.0,
    empty_gt_rate: float = 0.1,
    empty_det_rate: float = 0.1,
    max_objects: int = 8,
    extra_dets: tuple[int, int] = (0, 5),
    segment_area: bool = True,
    grid_boxes: bool = False,
) -> tuple[list[ImageTruth], list[ImageDetections]]:
    """``n_images`` images of objects from tiny to large, with detections that hit, miss and hallucinate.

    Detections: a jittered copy of most objects (sometimes of the wrong category, sometimes
    twice), plus ``extra_dets`` random boxes per image; scores uniform, some rounded to
    two decimals so that equal scores occur. ``grid_boxes`` puts every coordinate on a
    4-pixel grid so that equal IoUs occur too.
    """
    rng = np.random.default_rng(seed)
    det_categories = det_categories or gt_categories
    truths, dets = [], []
    for image_id in range(1, n_images + 1):
        n = 0 if rng.random() < empty_gt_rate else int(rng.integers(1, max_objects + 1))
        size = np.exp(rng.uniform(np.log(4), np.log(300), size=(n, 2)))
        xy = rng.uniform(0, 1, size=(n, 2)) * (np.array([WIDTH, HEIGHT]) - size)
        boxes = np.concatenate([xy, size], axis=1)
        if grid_boxes:
            boxes = np.maximum(np.round(boxes / 4) * 4, [0, 0, 4, 4])
        cats = rng.choice(gt_categories, size=n)
        crowd = rng.random(n) < crowd_rate
        area = boxes[:, 2] * boxes[:, 3] * (rng.uniform(0.5, 1.0, n) if segment_area else 1.0)
        truths.append(ImageTruth(image_id, WIDTH, HEIGHT, boxes, cats, crowd, area))
        if rng.random() < empty_det_rate:
            continue
        out_boxes, out_cats = [], []
        for box, cat in zip(boxes, cats):
            for _ in range(int(rng.choice([0, 1, 1, 1, 2]))):
                jitter = rng.normal(0, rng.choice([0.04, 0.2]), 4) * np.r_[box[2:], box[2:]]
                x1, y1 = box[:2] + jitter[:2]
                x2, y2 = box[:2] + box[2:] + jitter[2:]
                out_boxes.append([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)])
                out_cats.append(cat if rng.random() < 0.85 else rng.choice(det_categories))
        for _ in range(int(rng.integers(extra_dets[0], extra_dets[1] + 1))):
            x1, y1 = rng.uniform(0, WIDTH - 10), rng.uniform(0, HEIGHT - 10)
            out_boxes.append([x1, y1, x1 + rng.uniform(2, 200), y1 + rng.uniform(2, 200)])
            out_cats.append(rng.choice(det_categories))
        out = np.array(out_boxes, dtype=np.float64).reshape(-1, 4)
        if grid_boxes:
            out = np.round(out / 4) * 4
            out[:, 2:] = np.maximum(out[:, 2:], out[:, :2])
        scores = rng.uniform(0, 1, len(out))
        scores = np.where(rng.random(len(out)) < 0.3, np.round(scores, 2), scores)
        dets.append(ImageDetections(image_id, out, scores, np.array(out_cats, dtype=np.int64)))
    return truths, dets
