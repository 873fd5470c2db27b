"""Small real :class:`DetectionData` and per-object outcomes for the object breaking-point tests.

The outcomes follow the documented structure of ``audit.evaluation.detection.objects.ObjectOutcomes``
(columns ``condition``, ``image_row``, ``object_index``, ``present``, ``found``, ``visibility``,
``occluded_fraction`` as arrays; :func:`columns`); they are built here so the tests do not depend on how
a run produces them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from audit.contract.seeds import sample_key
from audit.evaluation.detection.annotations import GroundTruth, GroundTruthImage, GroundTruthObject
from audit.evaluation.detection.coco_metrics import ImageTruth
from audit.evaluation.detection.evaluate import DetectionData
from audit.evaluation.detection.operating_point import size_class

CLASSES = ("car", "person")


@dataclass(frozen=True)
class Row:
    """One per-object outcome row (the ObjectOutcomes row structure)."""

    condition: str
    image_row: int
    object_index: int
    present: bool
    found: bool
    visibility: float = 1.0
    occluded_fraction: float = math.nan


@dataclass(frozen=True)
class Obj:
    """A ground-truth object of a fixture: class index, side length in pixels, attributes, crowd flag."""

    category: int = 0
    side: float = 20.0
    occluded: str = "no"
    crowd: bool = False


def columns(rows: Sequence[Row]) -> SimpleNamespace:
    """The rows as ObjectOutcomes' columns (numpy arrays of equal length)."""
    return SimpleNamespace(
        condition=np.array([r.condition for r in rows], dtype=object),
        image_row=np.array([r.image_row for r in rows], dtype=np.int64),
        object_index=np.array([r.object_index for r in rows], dtype=np.int64),
        present=np.array([r.present for r in rows], dtype=bool),
        found=np.array([r.found for r in rows], dtype=bool),
        visibility=np.array([r.visibility for r in rows], dtype=np.float64),
        occluded_fraction=np.array([r.occluded_fraction for r in rows], dtype=np.float64),
    )


def make_data(images: Sequence[tuple[dict[str, str], Sequence[Obj]]]) -> DetectionData:
    """A DetectionData of ``images`` (image attributes, objects), object attribute ``occluded``."""
    gt_images, truths = [], []
    for k, (attrs, objs) in enumerate(images):
        objects = tuple(
            GroundTruthObject(
                box=(1.0, 1.0, 1.0 + o.side, 1.0 + o.side),
                category=o.category,
                category_id=o.category + 1,
                iscrowd=o.crowd,
                area=o.side * o.side,
                annotation_id=100 * k + i,
                attributes={"occluded": o.occluded},
            )
            for i, o in enumerate(objs)
        )
        gt_images.append(
            GroundTruthImage(k + 1, f"img{k}.png", Path(f"img{k}.png"), 400, 300, objects, dict(attrs, id=f"s{k}"))
        )
        truths.append(
            ImageTruth(
                image_id=k + 1,
                width=400,
                height=300,
                boxes=np.array([[1.0, 1.0, o.side, o.side] for o in objs]).reshape(-1, 4),
                category_ids=np.array([o.category + 1 for o in objs], dtype=np.int64),
                iscrowd=np.array([o.crowd for o in objs], dtype=bool),
                area=np.array([o.side * o.side for o in objs]),
            )
        )
    truth = GroundTruth(Path("instances.json"), CLASSES, (1, 2), tuple(gt_images))
    groups: dict[str, dict[int, list[str]]] = {"object.size": {}, "object.class": {}, "object.occluded": {}}
    for image in truth.images:
        groups["object.size"][image.image_id] = [str(size_class(np.array(o.area))) for o in image.objects]
        groups["object.class"][image.image_id] = [CLASSES[o.category] for o in image.objects]
        groups["object.occluded"][image.image_id] = [o.attributes["occluded"] for o in image.objects]
    sample_ids = tuple(f"s{k}" for k in range(len(images)))
    attributes = tuple(images[0][0]) if images else ()
    return DetectionData(
        truth=truth,
        manifest=Path("manifest.csv"),
        sample_ids=sample_ids,
        keys=np.array([sample_key(s) for s in sample_ids], dtype=np.int64),
        attributes=attributes,
        object_attributes=tuple(groups),
        truths=tuple(truths),
        categories={1: "car", 2: "person"},
        object_groups=groups,
    )


def conditions(stressor: str, levels: Sequence[float]) -> list[SimpleNamespace]:
    """Condition stand-ins (id, stressor_name, severity, model_aware): clean, then the levels."""
    out = [SimpleNamespace(id="clean", stressor_name=None, severity=0.0, model_aware=False)]
    out += [
        SimpleNamespace(id=f"{stressor}@{lv:g}", stressor_name=stressor, severity=float(lv), model_aware=False)
        for lv in levels
    ]
    return out


def config(*, n_bootstrap: int = 0, min_group_size: int = 1, seed: int = 0) -> SimpleNamespace:
    """The config keys the breaking-point step reads."""
    return SimpleNamespace(
        seed=seed,
        evaluation=SimpleNamespace(n_bootstrap=n_bootstrap, min_group_size=min_group_size),
        detection=SimpleNamespace(score_threshold=0.5, iou_threshold=0.5),
    )
