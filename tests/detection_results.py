"""Hand-made detection results with numbers chosen so tests can state verdicts exactly.

clean: mAP 0.62, recall 0.80 [0.75, 0.85], fp_per_image 0.10 [0.05, 0.15]; camera A / B recall
0.90 / 0.70 (gap 0.20, stored interval [0.12, 0.28]), camera C recall 0.20 on 5 objects (flagged
insufficient_data); object.size small / medium / large recall 0.60 / 0.80 / 0.95 on 150 / 200 / 120
objects (gap 0.35, stored interval [0.05, 0.50]); object.class car / person recall 0.85 / 0.75 (no stored
gap test); object.occluded true on 4 objects (insufficient_data).
clean D-ECE 0.06 [0.04, 0.08] over 450 detections. night@3: mAP 0.35, recall 0.55; camera A / B 0.60 / 0.50
(no calibration). Robustness: mPC 0.35, rPC 0.35 / 0.62.
"""

from __future__ import annotations

import copy
from typing import Any

from results_builder import typed_results

from audit.contract.results import Results


def _metrics(n_images: int, n_objects: int, *, recall: float, **values: Any) -> dict[str, Any]:
    tp = round(recall * n_objects)
    return {"n_images": n_images, "n_objects": n_objects, "tp": tp, "fn": n_objects - tp, "recall": recall, **values}


def _group(attribute: str, value: str, recall: float, n_objects: int, *, n_images: int = 100, **more: Any):
    level = "object" if attribute.startswith("object.") else "image"
    return {
        "attribute": attribute,
        "level": level,
        "value": value,
        "metrics": _metrics(n_images, n_objects, recall=recall, **more),
        "insufficient_data": n_objects < 30,
    }


def _condition(cid: str, stressor: str | None, severity: int, m: float, recall: float, cams: tuple[float, float]):
    a, b = cams
    return {
        "id": cid,
        "stressor": stressor,
        "severity": severity,
        "metrics": _metrics(
            200,
            500,
            map=m,
            map_50=m + 0.2,
            recall=recall,
            recall_ci=[recall - 0.05, recall + 0.05],
            precision=0.9,
            fp_per_image=0.10,
            fp_per_image_ci=[0.05, 0.15],
        ),
        "groups": [
            _group("camera", "A", a, 240, n_images=96, map=m + 0.05, fp_per_image=0.08),
            _group("camera", "B", b, 255, n_images=99, map=m - 0.05, fp_per_image=0.12),
            _group("camera", "C", 0.20, 5, n_images=5, map=0.1, fp_per_image=0.5),
            _group("object.size", "small", 0.60, 150, map=m - 0.2),
            _group("object.size", "medium", 0.80, 200, map=m),
            _group("object.size", "large", 0.95, 120, map=m + 0.2),
            _group("object.class", "car", 0.85, 250, map=m + 0.03),
            _group("object.class", "person", 0.75, 250, map=m - 0.03),
            _group("object.occluded", "false", 0.81, 496),
            _group("object.occluded", "true", 0.25, 4),
        ],
    }


def _gap_test(cid: str, attribute: str, recalls: dict[str, float], ci: list[float], p_holm: float, se: float):
    """A stored gap test; every pair's standard error is ``se`` (the policy decides from the pairs)."""
    ranked = sorted(recalls, key=recalls.__getitem__, reverse=True)
    pairs = [
        {"higher": a, "lower": b, "gap": recalls[a] - recalls[b], "se": se, "p_value": p_holm / 2, "p_holm": p_holm}
        for i, a in enumerate(ranked)
        for b in ranked[i + 1 :]
    ]
    return {
        "pairs": pairs,
        "condition": cid,
        "attribute": attribute,
        "level": "object" if attribute.startswith("object.") else "image",
        "recalls": recalls,
        "objects": dict.fromkeys(recalls, 100),
        "worst_group": min(recalls, key=recalls.__getitem__),
        "best_group": max(recalls, key=recalls.__getitem__),
        "gap": max(recalls.values()) - min(recalls.values()),
        "gap_ci": ci,
        "p_value": p_holm / 2,
        "p_holm": p_holm,
        "excluded": [],
    }


def detection_dict() -> dict[str, Any]:
    """results.json (a dict) of a detection audit with the numbers of the module docstring."""
    clean = _condition("clean", None, 0, 0.62, 0.80, (0.90, 0.70))
    clean["calibration"] = {
        "iou_threshold": 0.5,
        "bins": 10,
        "detections": 450,
        "dece": 0.06,
        "reliability": [],
    }
    return {
        "task": "detection",
        "dataset": {"attributes": {"camera": {"A": 96, "B": 99, "C": 5}}, "skipped_share": 0.0},
        "evaluation": {"min_group_size": 30, "n_bootstrap": 200, "confidence_level": 0.95},
        "detection": {
            "settings": {"score_threshold": 0.5, "iou_threshold": 0.5, "output": "boxes", "max_detections": 100},
            "class_names": ["car", "person"],
            "conditions": [
                clean,
                _condition("night@3", "night", 3, 0.35, 0.55, (0.60, 0.50)),
            ],
            "robustness": {
                "clean_map": 0.62,
                "mpc": 0.35,
                "rpc": 0.35 / 0.62,
                "stressors": [{"stressor": "night", "mean_map": 0.35, "relative": 0.35 / 0.62}],
            },
            "gap_tests": [
                _gap_test("clean", "camera", {"A": 0.90, "B": 0.70}, [0.12, 0.28], 0.001, se=0.04),
                _gap_test(
                    "clean", "object.size", {"small": 0.60, "medium": 0.80, "large": 0.95}, [0.05, 0.50], 0.04, se=0.16
                ),
                _gap_test("night@3", "camera", {"A": 0.60, "B": 0.50}, [0.0, 0.22], 0.3, se=0.06),
            ],
        },
    }


def detection_results(edit: Any = None) -> Results:
    """:func:`detection_dict` (after ``edit(d)`` changes it in place), completed and read by the one reader."""
    data = copy.deepcopy(detection_dict())
    if edit is not None:
        edit(data)
    return typed_results(data)
