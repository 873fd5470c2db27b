"""Detection results for the report tests: a real pass of the colour-box detector, completed by hand.

:func:`detection_results` runs :func:`detection_fixtures.detection_section` (a real evaluation of
``ColourBoxNet`` over the synthetic scenes) and adds what that small run does not produce but the
report must draw: intervals, corruption robustness, gap tests, a group with too few objects, skipped
annotations, a reliability bin with a gap, and example images with boxes of every kind.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
from detection_fixtures import detection_section
from PIL import Image
from results_builder import typed_results

from audit.contract.results import Results

#: The example image's size: the boxes below are in its pixels.
EXAMPLE_W, EXAMPLE_H = 96, 64


def example_png() -> str:
    """A 96 × 64 grey scene with a red and a blue rectangle, as a PNG data URI."""
    pixels = np.full((EXAMPLE_H, EXAMPLE_W, 3), 110, dtype=np.uint8)
    pixels[10:30, 8:30] = (255, 0, 0)
    pixels[30:50, 60:85] = (0, 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _box(box: list[float], label: str, outcome: str, score: float | None = None) -> dict[str, Any]:
    return {"box": box, "label": label, "outcome": outcome, "score": score}


EXAMPLE_TRUTH = [
    _box([8, 10, 30, 30], "red", "matched"),
    _box([60, 30, 85, 50], "blue", "missed"),
    _box([40, 2, 56, 14], "green", "crowd"),
]
EXAMPLE_DETECTIONS = [
    _box([9, 10, 31, 29], "red", "tp", 0.93),
    _box([2, 40, 20, 60], "green", "fp", 0.61),
]


def detection_dict(root: Path) -> dict[str, Any]:
    """results.json's ``detection`` of a real pass, with the keys the small run leaves empty filled in."""
    det = detection_section(root).to_dict()
    clean, worst = det["conditions"][0], det["conditions"][-1]
    clean["metrics"].update(
        recall_ci=[0.41, 0.60], precision_ci=[0.95, 1.0], f1_ci=[0.58, 0.75],
        fp_per_image_ci=[0.0, 0.08], missed_per_image_ci=[0.9, 1.4],
    )  # fmt: skip
    clean["calibration"]["reliability"][7].update(count=5, confidence=0.75, precision=0.6)
    clean["groups"].append(
        {
            "attribute": "object.occluded",
            "level": "object",
            "value": "heavily",
            "insufficient_data": True,
            "metrics": {"n_images": 2, "n_objects": 2, "tp": 0, "fn": 2, "recall": 0.0},
        }
    )
    det["robustness"] = {
        "clean_map": clean["metrics"]["map"],
        "mpc": worst["metrics"]["map"],
        "rpc": 0.0,
        "stressors": [{"stressor": "night", "mean_map": worst["metrics"]["map"], "relative": 0.0}],
    }
    det["gap_tests"] = [
        {
            "condition": "clean",
            "attribute": "camera",
            "level": "image",
            "recalls": {"A": 1.0, "B": 0.0},
            "objects": {"A": 28, "B": 27},
            "worst_group": "B",
            "best_group": "A",
            "gap": 1.0,
            "gap_ci": [0.9, 1.0],
            "p_value": 0.0004,
            "p_holm": 0.0012,
            "excluded": [],
        },
        {
            "condition": "clean",
            "attribute": "object.occluded",
            "level": "object",
            "recalls": {"false": 0.4865, "true": 0.5556},
            "objects": {"false": 37, "true": 18},
            "worst_group": "false",
            "best_group": "true",
            "gap": 0.0691,
            "gap_ci": [-0.2, 0.3],
            "p_value": 0.62,
            "p_holm": 1.0,
            "excluded": ["heavily"],
        },
    ]
    det["skipped_annotations"] = [
        {"source": "instances.json", "id": "annotation 77", "reason": "box outside the image (x2 = 120 > width 96)"},
        {"source": "instances.json", "id": "annotation 78", "reason": "unknown category id 9"},
    ]
    det["examples"] = [
        {
            "condition": "clean",
            "sample_id": "s001",
            "reason": "most missed objects under clean",
            "image": example_png(),
            "width": EXAMPLE_W,
            "height": EXAMPLE_H,
            "truth": EXAMPLE_TRUTH,
            "detections": EXAMPLE_DETECTIONS,
        }
    ]
    return det


def detection_results(root: Path, **extra: Any) -> Results:
    """Complete detection results (``task: detection``) around :func:`detection_dict`; ``extra``: more top-level keys."""
    return typed_results(
        {
            "task": "detection",
            "detection": detection_dict(root),
            "model": {"path": "detector.pt", "class_names": ["red", "green", "blue"], "num_classes": 3},
            "dataset": {"num_samples": 24, "num_skipped": 1, "skipped": [{"sample": "s999", "reason": "unreadable"}]},
            **extra,
        }
    )
