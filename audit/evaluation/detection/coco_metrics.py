"""COCO box metrics (mAP@[.5:.95], AP50, AP75, AP and AR by size, AR@1/10/100) by faster-coco-eval.

cvaudit does not compute average precision itself: it writes the detections to
its own ``detections.json`` in the COCO results format and has the field's
evaluator (``faster-coco-eval``, equal to ``pycocotools``' ``COCOeval`` to
1e-6, a test) score that file, so what is attested is what was scored.

Box conventions (one each, on purpose):

- ground truth boxes are COCO's ``[x, y, width, height]`` in image pixels
  (:class:`ImageTruth`), so a COCO annotation file's boxes reach the evaluator
  unchanged;
- detections are the model output contract's ``[x1, y1, x2, y2]`` in input
  image pixels (:class:`ImageDetections`); they become ``[x, y, x2 - x1,
  y2 - y1]`` once, in :attr:`ImageDetections.boxes_xywh`, which is what
  ``detections.json`` holds and what the operating point
  (:mod:`audit.evaluation.detection.operating_point`) matches.

Subgroups: an image-level subgroup is a subset of image ids
(:meth:`CocoEvaluator.evaluate`); for objects, AP by size is COCO's own area
ranges (``ap_small`` ...). AP per named object attribute (e.g. occluded) is not
built yet; recall per object subgroup is in
:mod:`audit.evaluation.detection.operating_point`.

Performance: one :class:`CocoEvaluator` holds the indexed ground truth; each
condition's file is read and indexed once (:meth:`CocoEvaluator.load`) and
every image-level subgroup of it is one ``COCOeval_faster`` run over its
``imgIds`` (C++ matching and accumulation). The IoU matrices are recomputed for
each subgroup; for many subgroups of one condition that is the cost to watch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audit.contract.errors import AuditError, echo
from audit.contract.files import read_bounded
from audit.contract.load import MAX_DETECTIONS_BYTES

__all__ = [
    "COCO_METRIC_NAMES",
    "CocoEvaluator",
    "CocoMetrics",
    "ImageDetections",
    "ImageTruth",
    "LoadedDetections",
    "coco_ground_truth",
    "detection_records",
    "write_detections_json",
]

#: ``COCOeval.stats`` positions, in order, as :class:`CocoMetrics` names them.
COCO_METRIC_NAMES = (
    "map",
    "ap50",
    "ap75",
    "ap_small",
    "ap_medium",
    "ap_large",
    "ar1",
    "ar10",
    "ar100",
    "ar_small",
    "ar_medium",
    "ar_large",
)


def _array(value: Any, dtype: Any, shape_tail: tuple[int, ...], what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype)
    if arr.size == 0:
        arr = arr.reshape((0, *shape_tail))
    if arr.ndim != 1 + len(shape_tail) or arr.shape[1:] != shape_tail:
        raise AuditError(f"{what}: expected shape (N, {', '.join(map(str, shape_tail))}), got {arr.shape}")
    return arr


@dataclass(frozen=True)
class ImageTruth:
    """The ground truth of one image, in memory.

    Args:
        image_id: the image's id (unique within an evaluation).
        width: the image's width in pixels.
        height: the image's height in pixels.
        boxes: ``[x, y, width, height]`` per object, image pixels (COCO's ``bbox``); width
            and height must be positive.
        category_ids: the category id per object.
        iscrowd: ``True`` per crowd region (COCO ``iscrowd``); empty means none is crowd.
        area: COCO ``area`` per object (for a COCO file, the segmentation's area), which
            decides the small/medium/large size class; ``None`` means box width × height.

    Shape:
        boxes ``(N, 4)``, category_ids, iscrowd and area ``(N,)``; ``N = 0`` is an image
        without objects.

    Raises:
        AuditError: mismatched lengths, a non-finite value or a box of non-positive size.
    """

    image_id: int
    width: int
    height: int
    boxes: np.ndarray
    category_ids: np.ndarray
    iscrowd: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    area: np.ndarray | None = None

    def __post_init__(self) -> None:
        what = f"ground truth of image {echo(self.image_id)}"
        boxes = _array(self.boxes, np.float64, (4,), f"{what}, boxes")
        n = len(boxes)
        cats = _array(self.category_ids, np.int64, (), f"{what}, category_ids")
        crowd = np.asarray(self.iscrowd, dtype=bool).reshape(-1)
        crowd = np.zeros(n, dtype=bool) if crowd.size == 0 else crowd
        area = boxes[:, 2] * boxes[:, 3] if self.area is None else np.asarray(self.area, np.float64).reshape(-1)
        if not len(cats) == len(crowd) == len(area) == n:
            raise AuditError(f"{what}: {n} boxes but {len(cats)} category ids, {len(crowd)} iscrowd, {len(area)} areas")
        if not (np.isfinite(boxes).all() and np.isfinite(area).all()):
            raise AuditError(f"{what}: a box or area is not finite")
        bad = np.flatnonzero((boxes[:, 2] <= 0) | (boxes[:, 3] <= 0))
        if bad.size:
            raise AuditError(f"{what}, object {bad[0]}: box {boxes[bad[0]].tolist()} has non-positive size")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "category_ids", cats)
        object.__setattr__(self, "iscrowd", crowd)
        object.__setattr__(self, "area", area)


@dataclass(frozen=True)
class ImageDetections:
    """A detector's output for one image (the model output contract).

    Args:
        image_id: the image's id, as in its :class:`ImageTruth`.
        boxes: ``[x1, y1, x2, y2]`` per detection, input image pixels (``x2 >= x1``,
            ``y2 >= y1``).
        scores: the confidence per detection.
        category_ids: the predicted category id per detection.

    Shape:
        boxes ``(M, 4)``, scores and category_ids ``(M,)``; ``M = 0`` is an image without
        detections. The order is kept: detections of equal score are ranked in this order
        (COCO's stable sort, and the operating point's).

    Raises:
        AuditError: mismatched lengths, a non-finite value or ``x2 < x1`` / ``y2 < y1``.
    """

    image_id: int
    boxes: np.ndarray
    scores: np.ndarray
    category_ids: np.ndarray

    def __post_init__(self) -> None:
        what = f"detections of image {echo(self.image_id)}"
        boxes = _array(self.boxes, np.float64, (4,), f"{what}, boxes")
        scores = _array(self.scores, np.float64, (), f"{what}, scores")
        cats = _array(self.category_ids, np.int64, (), f"{what}, category_ids")
        if not len(scores) == len(cats) == len(boxes):
            raise AuditError(f"{what}: {len(boxes)} boxes but {len(scores)} scores, {len(cats)} category ids")
        if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
            raise AuditError(f"{what}: a box or score is not finite")
        bad = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
        if bad.size:
            raise AuditError(f"{what}, detection {bad[0]}: box {boxes[bad[0]].tolist()} has x2 < x1 or y2 < y1")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "category_ids", cats)

    @property
    def boxes_xywh(self) -> np.ndarray:
        """``[x1, y1, x2 - x1, y2 - y1]``: the boxes as ``detections.json`` holds them. Shape ``(M, 4)``."""
        b = self.boxes
        return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def _check_categories(categories: Mapping[int, str]) -> set[int]:
    if not categories:
        raise AuditError("detection categories: none given")
    return {int(c) for c in categories}


def coco_ground_truth(truths: Iterable[ImageTruth], categories: Mapping[int, str]) -> dict[str, Any]:
    """The COCO instances dataset (``images``, ``annotations``, ``categories``) of ``truths``.

    Annotation ids are 1, 2, ... in the order of ``truths`` and their objects (COCO
    reserves 0). Both evaluators are given exactly this dict.

    Raises:
        AuditError: a duplicate image id, or a category id not in ``categories``.
    """
    known = _check_categories(categories)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    seen: set[int] = set()
    for truth in truths:
        image_id = int(truth.image_id)
        if image_id in seen:
            raise AuditError(f"ground truth: image id {image_id} appears twice")
        seen.add(image_id)
        images.append({"id": image_id, "width": int(truth.width), "height": int(truth.height)})
        for k, (box, cat, crowd, area) in enumerate(
            zip(truth.boxes.tolist(), truth.category_ids.tolist(), truth.iscrowd.tolist(), truth.area.tolist())
        ):
            if cat not in known:
                raise AuditError(f"ground truth of image {image_id}, object {k}: unknown category id {cat}")
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": box,
                    "area": area,
                    "iscrowd": int(crowd),
                }
            )
    cats = [{"id": int(c), "name": str(name)} for c, name in sorted(categories.items())]
    return {"images": images, "annotations": annotations, "categories": cats}


def detection_records(detections: ImageDetections) -> list[dict[str, Any]]:
    """One image's detections as COCO result records ``{image_id, category_id, bbox, score}`` (bbox xywh)."""
    return [
        {"image_id": int(detections.image_id), "category_id": cat, "bbox": box, "score": score}
        for box, score, cat in zip(
            detections.boxes_xywh.tolist(), detections.scores.tolist(), detections.category_ids.tolist()
        )
    ]


def write_detections_json(
    path: Path, detections: Iterable[ImageDetections], *, image_ids: Iterable[int], categories: Mapping[int, str]
) -> int:
    """Write cvaudit's ``detections.json``: a COCO results list, streamed image by image.

    Each record is ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``; floats
    are written with Python's shortest round-trip repr, so reading the file gives back
    the very boxes and scores. Records keep the order of ``detections`` and, within an
    image, the detector's order.

    Args:
        path: the file to write (replaced if it exists).
        detections: one :class:`ImageDetections` per image with a model output (images
            left out have no detections).
        image_ids: the ids of the images with ground truth (every detection's image must
            be one of them).
        categories: category id -> name; every detection's category must be one of them.

    Returns:
        The number of records written.

    Raises:
        AuditError: an unknown image id or category id, or an image given twice.
    """
    known_images = {int(i) for i in image_ids}
    known_cats = _check_categories(categories)
    seen: set[int] = set()
    written = 0
    with path.open("w", encoding="utf-8") as out:
        out.write("[")
        for dets in detections:
            image_id = int(dets.image_id)
            if image_id not in known_images:
                raise AuditError(f"detections: image id {image_id} has no ground truth")
            if image_id in seen:
                raise AuditError(f"detections: image id {image_id} given twice")
            seen.add(image_id)
            unknown = sorted(set(dets.category_ids.tolist()) - known_cats)
            if unknown:
                raise AuditError(f"detections of image {image_id}: unknown category id {unknown[0]}")
            for record in detection_records(dets):
                out.write(("\n" if written == 0 else ",\n") + json.dumps(record))
                written += 1
        out.write("\n]\n")
    return written


@dataclass(frozen=True)
class CocoMetrics:
    """COCO's twelve box metrics over a set of images; ``None`` where COCO reports -1.

    COCO reports -1, here ``None``, when a metric is undefined: no non-crowd ground truth
    object in its size range (e.g. ``ap_large`` with no large objects), or none at all.
    Averages over categories skip categories without ground truth in the images scored
    (their detections then count nowhere), as COCO does.

    Attributes:
        map: AP averaged over IoU 0.50:0.05:0.95, all sizes, 100 detections per image.
        ap50, ap75: AP at IoU 0.50 and 0.75.
        ap_small, ap_medium, ap_large: AP over objects of area < 32², 32²-96², > 96²
            (COCO's closed ranges: an area of exactly 32² or 96² is in both neighbours).
        ar1, ar10, ar100: recall averaged over IoU 0.50:0.95 with at most 1, 10, 100
            detections per image (the highest-scoring).
        ar_small, ar_medium, ar_large: AR@100 by size.
        n_images: the images scored.
    """

    map: float | None
    ap50: float | None
    ap75: float | None
    ap_small: float | None
    ap_medium: float | None
    ap_large: float | None
    ar1: float | None
    ar10: float | None
    ar100: float | None
    ar_small: float | None
    ar_medium: float | None
    ar_large: float | None
    n_images: int

    @classmethod
    def from_stats(cls, stats: Sequence[float], n_images: int) -> CocoMetrics:
        """From ``COCOeval.stats`` (its first twelve values), -1 becoming ``None``."""
        values = [None if float(v) == -1.0 else float(v) for v in list(stats)[: len(COCO_METRIC_NAMES)]]
        return cls(**dict(zip(COCO_METRIC_NAMES, values)), n_images=n_images)

    def as_dict(self) -> dict[str, float | int | None]:
        """The metrics by name (``None`` for undefined), plus ``n_images``."""
        return asdict(self)


def _faster_coco_eval() -> Any:
    try:
        import faster_coco_eval
    except ImportError:
        raise AuditError("detection metrics need faster-coco-eval: pip install 'cvaudit[detection]'") from None
    return faster_coco_eval


def _quiet(*_args: object, **_kwargs: object) -> None:
    """faster-coco-eval's print function: cvaudit reports progress itself."""


@dataclass(frozen=True)
class LoadedDetections:
    """A ``detections.json`` read, checked and indexed for evaluation (:meth:`CocoEvaluator.load`)."""

    path: Path
    n_records: int
    coco: Any = field(repr=False)


class CocoEvaluator:
    """Scores ``detections.json`` files against one set of ground truth.

    Args:
        truths: the ground truth of every image (images without objects included).
        categories: category id -> name (every category that ground truth or detections use).

    Raises:
        AuditError: see :func:`coco_ground_truth`; faster-coco-eval not installed.

    Example: ``CocoEvaluator(truths=t, categories=c).evaluate(path, image_ids=night_ids)``.
    """

    def __init__(self, *, truths: Iterable[ImageTruth], categories: Mapping[int, str]) -> None:
        self.categories = dict(categories)
        dataset = coco_ground_truth(truths, self.categories)
        self.image_ids = tuple(image["id"] for image in dataset["images"])
        self._fce = _faster_coco_eval()
        self._gt = self._fce.COCO(dataset, print_function=_quiet)

    def load(self, path: Path) -> LoadedDetections:
        """Read and check a COCO results file once, for several :meth:`evaluate` calls.

        The file is opened once, checked on its descriptor and read with the bound
        :data:`audit.contract.load.MAX_DETECTIONS_BYTES` (:func:`audit.contract.files.read_bounded`).

        Raises:
            AuditError: missing, not a regular file, over the limit, not a JSON list, or a record (named by its index) without an int
                ``image_id`` of a known image, a known ``category_id``, four finite
                ``bbox`` numbers with non-negative width and height, or a finite ``score``.
        """
        raw = read_bounded(path, limit=MAX_DETECTIONS_BYTES, what="detections file", error=AuditError)
        try:
            records = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise AuditError(f"{path}: not a JSON detections file ({err})") from None
        if not isinstance(records, list):
            raise AuditError(f"{path}: expected a JSON list of detections")
        images, cats = set(self.image_ids), set(self.categories)
        for k, rec in enumerate(records):
            problem = _record_problem(rec, images, cats)
            if problem:
                raise AuditError(f"{path}, detection {k}: {problem}")
        coco = self._gt.loadRes(records)
        return LoadedDetections(path=path, n_records=len(records), coco=coco)

    def evaluate(
        self,
        detections: Path | LoadedDetections,
        *,
        image_ids: Iterable[int] | None = None,
        category_ids: Iterable[int] | None = None,
    ) -> CocoMetrics:
        """COCO's box metrics of ``detections`` over ``image_ids`` (default: every image).

        An image-level subgroup is a subset of image ids: COCO's ``params.imgIds`` is
        restricted to it, so only its images' ground truth and detections count. Duplicate
        ids count once. An empty subset has every metric ``None`` and ``n_images`` 0.
        ``category_ids`` restricts ``params.catIds`` the same way (one id: that class's AP).

        Raises:
            AuditError: an id of an image without ground truth or an unknown category; see :meth:`load`.
        """
        loaded = detections if isinstance(detections, LoadedDetections) else self.load(detections)
        ids = self.image_ids if image_ids is None else tuple(sorted({int(i) for i in image_ids}))
        unknown = set(ids) - set(self.image_ids)
        if unknown:
            raise AuditError(f"image subset: image id {min(unknown)} has no ground truth")
        if not ids:
            return CocoMetrics.from_stats([-1.0] * len(COCO_METRIC_NAMES), n_images=0)
        ev = self._fce.COCOeval_faster(self._gt, loaded.coco, "bbox", print_function=_quiet)
        ev.params.imgIds = list(ids)
        if category_ids is not None:
            cats = sorted({int(c) for c in category_ids})
            if set(cats) - set(self.categories):
                raise AuditError(f"category subset: category id {min(set(cats) - set(self.categories))} is not known")
            ev.params.catIds = cats
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return CocoMetrics.from_stats(ev.stats, n_images=len(ids))

    def evaluate_subsets(
        self, detections: Path | LoadedDetections, subsets: Mapping[str, Iterable[int] | None]
    ) -> dict[str, CocoMetrics]:
        """:meth:`evaluate` for each named image subset (``None``: every image), reading the file once."""
        loaded = detections if isinstance(detections, LoadedDetections) else self.load(detections)
        return {name: self.evaluate(loaded, image_ids=ids) for name, ids in subsets.items()}


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _record_problem(rec: object, images: set[int], cats: set[int]) -> str | None:
    """What is wrong with one results record, or ``None``."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    image_id, cat, bbox, score = (rec.get(k) for k in ("image_id", "category_id", "bbox", "score"))
    if not isinstance(image_id, int) or isinstance(image_id, bool) or image_id not in images:
        return f"image_id {echo(image_id)} is not an image with ground truth"
    if not isinstance(cat, int) or isinstance(cat, bool) or cat not in cats:
        return f"category_id {echo(cat)} is not a known category"
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_finite_number(v) for v in bbox)):
        return f"bbox {echo(bbox)} is not four finite numbers"
    if bbox[2] < 0 or bbox[3] < 0:
        return f"bbox {echo(bbox)} has a negative width or height"
    if not _finite_number(score):
        return f"score {echo(score)} is not a finite number"
    return None
