"""The detection audit's data and its one streaming pass (``task: detection``).

**Data** (:func:`read_detection_data`): the ground truth (a COCO instances JSON or a YOLO folder,
:mod:`audit.evaluation.detection.annotations`) joined to ``data.manifest`` by image path; the manifest
gives the image-level attributes (``data.attributes``) and the governance columns, which the policy's
governance checks see as the manifest is read. An image's sample id is the manifest's ``data.id_column``
when the manifest has it, else its ``file_name``; its stressor randomness is keyed by that id
(:func:`audit.contract.seeds.sample_key`), as for classifiers.

**The pass** (:func:`evaluate_detector`): each image is decoded at its own size (the checks of
classifier images: ``data.max_image_pixels`` before decoding, ``data.exif``, ``data.alpha``; a decoded
size that differs from the annotation's ``width`` x ``height`` is an error, since every box would be
misplaced), brought to ``model.input_size`` by ``detection.resize`` (letterbox or resize,
:mod:`audit.evaluation.detection.letterbox`), then stressed per condition at the model's input (the
letterbox padding is stressed with the image, as a camera's frame would be), and given to the detector
(:mod:`audit.evaluation.detection.model`). Its boxes are mapped back to the original pixels exactly and
spilled to disk per condition (memory stays flat in the number of images). A bad image follows
``data.on_bad_image``: an error naming the file, or skipped and listed.

**Each condition's own truth.** A stressor that moves pixels (``moves_pixels``: rotation, translation,
zoom ...) moves the objects: the ground-truth boxes are brought to the model input's frame with the image
(:func:`~audit.evaluation.detection.letterbox.boxes_to_input`), stressed with it
(:func:`stressors.boxes.stress_with_boxes`, ``detection.min_visibility``), and the boxes kept are mapped back
to the original pixels and spilled with the detections, so every metric of that condition is computed
against that condition's truth (:meth:`DetectionPass.truths`). The original image's frame is the frame of
record: with ``letterbox``, what a stressor moves into the padding band has left the image, so an object's
visibility is the share of its moved box inside the image's own area, and an object below
``detection.min_visibility`` is dropped from the condition's truth (counted, and listed as not ``present``
in objects.csv). A photometric stressor leaves the boxes where they are: its condition is scored against
the clean truth itself (no copy, no spill), and so are stressors that only read the boxes (occlusion of
``target: objects``), whose per-object measures (``occluded_fraction``) are spilled. A stressor that does not
declare ``moves_pixels`` is refused before any image is read (:func:`check_box_support`).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from audit.contract.config import DEFAULT_IMAGE_FORMATS, AuditConfig
from audit.contract.errors import AuditError, CvauditError, echo
from audit.contract.manifest import ManifestChunk
from audit.contract.seeds import sample_key
from audit.evaluation.conditions import Condition
from audit.evaluation.data import DECODE_ERRORS, decode_error, open_image
from audit.evaluation.detection.annotations import GroundTruth, join_manifest, read_coco, read_yolo, size_class
from audit.evaluation.detection.coco_metrics import ImageDetections, ImageTruth
from audit.evaluation.detection.letterbox import (
    ResizeParams,
    apply_resize,
    boxes_to_input,
    boxes_to_original,
    plan_resize,
)
from audit.evaluation.image_properties import PropertyRecorder

__all__ = [
    "ConditionObjects",
    "DetectionData",
    "DetectionImages",
    "DetectionPass",
    "box_mode",
    "check_box_support",
    "evaluate_detector",
    "read_detection_data",
    "read_objects_spill",
    "read_spill",
    "spill_path",
    "stress_detection_batch",
]


@dataclass(frozen=True)
class DetectionData:
    """The images of a detection audit with their ground truth and groups.

    Attributes:
        truth: the joined ground truth (images in the annotation file's order, manifest attributes attached).
        manifest: the manifest file.
        sample_ids: per image, its sample id (the manifest's ``data.id_column``, else its ``file_name``).
        keys: per image, :func:`audit.contract.seeds.sample_key` of its sample id.
        attributes: the image-level attributes (``data.attributes``), in config order.
        object_attributes: the object-level groupings, ``object.size``, ``object.class``, then
            ``object.<key>`` per ``detection.object_attributes``.
        truths: per image, its :class:`ImageTruth` (COCO ``[x, y, w, h]`` boxes) for the evaluators.
        categories: COCO category id -> class name.
        object_groups: grouping -> image id -> the group value of each of the image's objects (file order).
    """

    truth: GroundTruth
    manifest: Path
    sample_ids: tuple[str, ...]
    keys: np.ndarray
    attributes: tuple[str, ...]
    object_attributes: tuple[str, ...]
    truths: tuple[ImageTruth, ...]
    categories: dict[int, str]
    object_groups: dict[str, dict[int, list[str]]]

    def __len__(self) -> int:
        return len(self.truth.images)

    def image_values(self, attribute: str) -> list[str]:
        """Per image, its value of the image-level ``attribute``."""
        return [image.attributes[attribute] for image in self.truth.images]


def read_detection_data(cfg: AuditConfig, *, on_chunk: Callable[[ManifestChunk], None] | None = None) -> DetectionData:
    """Read the ground truth and join the manifest (see the module docstring).

    Args:
        cfg: a config with ``task: detection`` (paths resolved by :func:`audit.contract.config.load_config`).
        on_chunk: called with every chunk of manifest rows as it is read (the governance checks).

    Raises:
        AuditError: one line naming the file, the image / annotation / line and the problem.
    """
    det, data = cfg.detection, cfg.data
    if det is None or data.manifest is None:
        raise AuditError("task: detection needs the detection section and data.manifest")
    limits = {
        "max_image_pixels": data.max_image_pixels,
        "data_root": data.root,
        "allow_outside_root": data.allow_outside_root,
        "on_bad_annotation": det.on_bad_annotation,
    }
    if det.annotations is not None:
        root = det.images_root if det.images_root is not None else det.annotations.parent
        truth = read_coco(det.annotations, root=root, object_attributes=det.object_attributes, **limits)
    else:
        assert det.yolo is not None  # the config's validator: exactly one source
        truth = read_yolo(det.yolo, exif=data.exif or "ignore", formats=data.image_formats, **limits)
    truth = join_manifest(
        truth,
        data.manifest,
        path_column=data.path_column,
        on_bad_annotation=det.on_bad_annotation,
        on_chunk=on_chunk,
    )
    if not truth.images:
        raise AuditError(f"{data.manifest}: no image of {truth.source} is in the manifest; nothing to audit")
    first = truth.images[0].attributes
    for name in data.attributes:
        if name not in first:
            raise AuditError(
                f"{data.manifest}: data.attributes: column {name!r} is not in the manifest (columns: {echo(sorted(first))})"
            )
    with_ids = data.id_column in first
    sample_ids = tuple(
        image.attributes[data.id_column] if with_ids else image.file_name.replace("\\", "/") for image in truth.images
    )
    seen: dict[str, int] = {}
    for image, sid in zip(truth.images, sample_ids):
        if sid in seen:
            raise AuditError(
                f"{data.manifest}: sample id {echo(sid)} is given to images {seen[sid]} and {image.image_id}; "
                f"sample ids ({data.id_column!r}, else the file name) must be unique"
            )
        seen[sid] = image.image_id
    categories = dict(zip(truth.category_ids, truth.class_names))
    truths = tuple(
        ImageTruth(
            image_id=image.image_id,
            width=image.width,
            height=image.height,
            boxes=np.array(
                [[o.box[0], o.box[1], o.box[2] - o.box[0], o.box[3] - o.box[1]] for o in image.objects],
                dtype=np.float64,
            ).reshape(-1, 4),
            category_ids=np.array([o.category_id for o in image.objects], dtype=np.int64),
            iscrowd=np.array([o.iscrowd for o in image.objects], dtype=bool),
            area=np.array([o.area for o in image.objects], dtype=np.float64),
        )
        for image in truth.images
    )
    groups: dict[str, dict[int, list[str]]] = {"object.size": {}, "object.class": {}}
    for key in det.object_attributes:
        groups[f"object.{key}"] = {}
    for image in truth.images:
        groups["object.size"][image.image_id] = [size_class(o.area) for o in image.objects]
        groups["object.class"][image.image_id] = [truth.class_names[o.category] for o in image.objects]
        for key in det.object_attributes:
            groups[f"object.{key}"][image.image_id] = [o.attributes.get(key, "<missing>") for o in image.objects]
    return DetectionData(
        truth=truth,
        manifest=data.manifest,
        sample_ids=sample_ids,
        keys=np.array([sample_key(s) for s in sample_ids], dtype=np.int64),
        attributes=tuple(data.attributes),
        object_attributes=tuple(groups),
        truths=truths,
        categories=categories,
        object_groups=groups,
    )


class DetectionImages(Dataset):
    """The images of :class:`DetectionData` decoded at their own size: ``{"index", "image"}`` or ``{"index", "error"}``.

    Never raises on a bad image (DataLoader workers included): the error is returned so the caller applies
    ``data.on_bad_image`` with the image named. ``image`` is a (C, H, W) float tensor in [0, 1].
    """

    def __init__(
        self,
        paths: Sequence[Path],
        sizes: Sequence[tuple[int, int]],
        *,
        channels: int,
        max_pixels: int,
        exif: str,
        alpha: str,
        indices: Sequence[int] | None = None,
        formats: Sequence[str] = DEFAULT_IMAGE_FORMATS,
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.sizes = list(sizes)  # (width, height) the annotations give
        self.channels, self.max_pixels, self.exif, self.alpha = channels, max_pixels, exif, alpha
        self.indices = list(range(len(self.paths))) if indices is None else list(indices)
        self.formats = tuple(formats)  # data.image_formats: the only Pillow plugins tried

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, pos: int) -> dict[str, Any]:
        i = self.indices[pos]
        item: dict[str, Any] = {"index": i}
        try:
            arr = open_image(
                self.paths[i],
                max_pixels=self.max_pixels,
                exif=self.exif,  # type: ignore[arg-type]
                alpha=self.alpha,  # type: ignore[arg-type]
                formats=self.formats,
            )
        except DECODE_ERRORS as err:
            item["error"] = decode_error(err)
            return item
        height, width = arr.shape[:2]
        if (width, height) != tuple(self.sizes[i]):
            item["mismatch"] = (width, height)
            return item
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
        if t.shape[0] == 1 and self.channels == 3:
            t = t.expand(3, -1, -1)
        elif t.shape[0] == 3 and self.channels == 1:
            t = (0.299 * t[0] + 0.587 * t[1] + 0.114 * t[2]).unsqueeze(0)
        item["image"] = t.contiguous()
        return item


def _collate(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


#: How a condition treats the ground truth (:func:`box_mode`).
BOX_MODES = ("none", "measured", "geometric")


def _overrides_object_measures(stressor: Any) -> bool:
    from stressors.base import ImageStressor

    own = getattr(type(stressor), "object_measures", None)
    return own is not None and own is not getattr(ImageStressor, "object_measures", None)


def box_mode(stressor: Any) -> str:
    """How a condition's stressor treats the ground truth.

    - ``"none"``: clean, or a photometric stressor that neither reads nor measures the boxes: the condition is
      scored against the clean truth and nothing is spilled besides the detections (the cheap path);
    - ``"measured"``: the boxes stay where they are but the stressor reads them (``needs_boxes``, e.g.
      occlusion of ``target: objects``) or measures them (``object_measures``): clean truth, per-object measures
      spilled;
    - ``"geometric"``: the stressor moves pixels (``moves_pixels``): the condition's own truth is spilled.

    Raises:
        AuditError: a stressor that does not declare ``moves_pixels`` (:func:`stressors.boxes.box_support`
            fails closed: its boxes could be anywhere).
    """
    if stressor is None:
        return "none"
    import stressors

    try:
        support = stressors.box_support(stressor)
    except CvauditError as err:
        raise AuditError(str(err)) from None
    if support == "geometric":
        return "geometric"
    if getattr(stressor, "needs_boxes", False) or _overrides_object_measures(stressor):
        return "measured"
    return "none"


def check_box_support(conditions: Sequence[Condition], *, source: str = "config") -> dict[str, str]:
    """Every condition's :func:`box_mode`, checked before any image is read.

    Returns:
        condition id -> ``"none"``, ``"measured"`` or ``"geometric"``.

    Raises:
        AuditError: one line naming ``source``, the condition and why its stressor cannot be audited on boxes.
    """
    modes: dict[str, str] = {}
    for cond in conditions:
        if cond.model_aware:
            # an attack on detectors moves no object (its boxes are the clean truth); a classifier attack is
            # refused by the caller, with its own message
            modes[cond.id] = "none"
            continue
        try:
            modes[cond.id] = box_mode(cond.stressor)
        except AuditError as err:
            raise AuditError(
                f"{source}: stressor condition {cond.id!r} cannot be audited on a detector: {err}"
            ) from None
    return modes


@dataclass(frozen=True)
class ConditionObjects:
    """One image's ground-truth objects under one condition (every object of the annotation, file order).

    Attributes:
        image_id: the image.
        kept: ``(K,)`` bool, the object is in the condition's truth (its visible share is at least
            ``detection.min_visibility``; always true unless the stressor moves pixels).
        visibility: ``(K,)`` float64, the share of the object's moved box inside the image (1 when nothing
            moves; for an object the stressor itself dropped, the share inside the model input it reported).
        occluded_fraction: ``(K,)`` float64, the share of the object the stressor covers (its
            ``object_measures``), NaN where the stressor reports none.
        boxes: ``(kept.sum(), 4)`` float64 xyxy in the original image's pixels, the moved boxes of the kept
            objects; None when the boxes did not move (the condition's truth is the clean truth).
        area_scale: ``(kept.sum(),)`` float64, how much the stressor scaled each kept object's area before
            clipping (:attr:`stressors.BoxedBatch.area_scale`: 1 under a rotation, not the growth of its hull);
            None with ``boxes`` None.
    """

    image_id: int
    kept: np.ndarray
    visibility: np.ndarray
    occluded_fraction: np.ndarray
    boxes: np.ndarray | None = None
    area_scale: np.ndarray | None = None

    @classmethod
    def unchanged(cls, image_id: int, n: int) -> ConditionObjects:
        """``n`` objects left where they were: all kept, fully visible, no measure."""
        return cls(image_id, np.ones(n, dtype=bool), np.ones(n), np.full(n, np.nan))


def condition_truth(clean: ImageTruth, objects: ConditionObjects | None) -> ImageTruth:
    """One image's truth under a condition: ``clean`` itself unless the stressor moved the boxes.

    Moved boxes keep their category and crowd flag; their COCO ``area`` (which decides the size class) is the
    clean area times the stressor's scaling of areas (``area_scale``: 1 for a rotation, whose hull grows but
    whose object does not; the zoom factor squared for a zoom) times the object's visible share (a
    segmentation area stays one; an object neither scaled nor clipped keeps its area exactly).
    """
    if objects is None or objects.boxes is None:
        return clean
    keep = objects.kept
    b = np.asarray(objects.boxes, dtype=np.float64).reshape(-1, 4)
    xywh = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
    if objects.area_scale is not None:
        ratio = np.asarray(objects.area_scale, dtype=np.float64) * np.asarray(objects.visibility)[keep]
    else:
        before = clean.boxes[keep]
        ratio = (xywh[:, 2] * xywh[:, 3]) / (before[:, 2] * before[:, 3])
    ratio = np.where(np.abs(ratio - 1.0) < 1e-9, 1.0, ratio)
    assert clean.area is not None  # ImageTruth fills it
    return ImageTruth(
        image_id=clean.image_id,
        width=clean.width,
        height=clean.height,
        boxes=xywh,
        category_ids=clean.category_ids[keep],
        iscrowd=clean.iscrowd[keep],
        area=clean.area[keep] * ratio,
    )


@dataclass
class DetectionPass:
    """What the streaming pass produced.

    Attributes:
        spills: condition id -> its spill files, one per rank (:func:`read_spill`, :meth:`detections`).
        evaluated: the image rows evaluated (dataset order once merged across ranks).
        skipped: ``{"sample", "reason"}`` per image skipped under ``data.on_bad_image: skip``.
        objects: condition id -> its object spill files, one per rank (:func:`read_objects_spill`), for the
            conditions whose :func:`box_mode` is not ``"none"``.
        noise: attack condition id -> the spill files of the detections on its random-noise baseline
            (:mod:`audit.evaluation.detection.attack_pass`), one per rank.
        losses: attack condition id -> the spill files of ``(image id, objective on the clean image, on the
            attacked one)`` rows, one per rank.
    """

    spills: dict[str, list[Path]]
    evaluated: list[int] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    skipped_rows: list[int] = field(default_factory=list)
    objects: dict[str, list[Path]] = field(default_factory=dict)
    noise: dict[str, list[Path]] = field(default_factory=dict)
    losses: dict[str, list[Path]] = field(default_factory=dict)

    def noise_detections(self, condition: str, data: DetectionData) -> list[ImageDetections]:
        """An attack condition's noise-baseline detections from every rank's spill, in dataset order."""
        row_of = {image.image_id: r for r, image in enumerate(data.truth.images)}
        dets = [d for path in self.noise[condition] for d in read_spill(path)]
        return sorted(dets, key=lambda d: row_of[int(d.image_id)])

    def attack_losses(self, condition: str) -> tuple[np.ndarray, np.ndarray]:
        """An attack condition's per-image objective (clean, attacked) over every rank, by image id."""
        rows: list[tuple[int, float, float]] = []
        for path in self.losses[condition]:
            with path.open("rb") as f:
                while True:
                    try:
                        rows.extend(pickle.load(f))  # written by this process's own pass (_Spill)
                    except EOFError:
                        break
        rows.sort(key=lambda r: r[0])
        return np.array([r[1] for r in rows], dtype=np.float64), np.array([r[2] for r in rows], dtype=np.float64)

    def detections(self, condition: str, data: DetectionData) -> list[ImageDetections]:
        """One condition's detections from every rank's spill, in dataset order (whatever the sharding)."""
        row_of = {image.image_id: r for r, image in enumerate(data.truth.images)}
        dets = [d for path in self.spills[condition] for d in read_spill(path)]
        return sorted(dets, key=lambda d: row_of[int(d.image_id)])

    def condition_objects(self, condition: str) -> dict[int, ConditionObjects] | None:
        """image id -> its objects under ``condition`` (every rank's spill); None when the condition leaves the
        objects as they are (:func:`box_mode` ``"none"``: every object kept, fully visible, no measure)."""
        if condition not in self.objects:
            return None
        return {o.image_id: o for path in self.objects[condition] for o in read_objects_spill(path)}

    def merged(self, gather: Callable[[list[Any]], list[Any]]) -> DetectionPass:
        """This rank's pass with every rank's evaluated rows and skipped images (``gather`` concatenates across
        ranks, e.g. :func:`audit.evaluation.distributed.gather_lists`), both in dataset order."""
        evaluated = sorted(gather(self.evaluated))
        skipped = gather([(row, s) for row, s in zip(self.skipped_rows, self.skipped)])
        skipped.sort(key=lambda pair: pair[0])
        return DetectionPass(
            spills=self.spills,
            evaluated=evaluated,
            skipped=[s for _, s in skipped],
            skipped_rows=[row for row, _ in skipped],
            objects=self.objects,
            noise=self.noise,
            losses=self.losses,
        )


def spill_path(work: Path, condition: int, rank: int, kind: str = "detections") -> Path:
    """The spill file of one condition (by position) and rank in the shared work folder (``kind``:
    ``detections``, ``objects``, or for an attack ``noise`` and ``losses``)."""
    return work / f"{kind}-{condition:04d}.rank-{rank:05d}.pkl"


def read_spill(path: Path) -> Iterator[ImageDetections]:
    """The detections a pass spilled for one condition, image by image in dataset order."""
    with path.open("rb") as f:
        while True:
            try:
                chunk = pickle.load(f)  # written by this process's own pass (_Spill), never by a user
            except EOFError:
                return
            for image_id, boxes, scores, cats in chunk:
                yield ImageDetections(image_id, boxes, scores, cats)


def read_objects_spill(path: Path) -> Iterator[ConditionObjects]:
    """The objects a pass spilled for one condition, image by image in this rank's order."""
    with path.open("rb") as f:
        while True:
            try:
                chunk = pickle.load(f)  # written by this process's own pass (_Spill), never by a user
            except EOFError:
                return
            for image_id, kept, visibility, occluded, boxes, area_scale in chunk:
                yield ConditionObjects(image_id, kept, visibility, occluded, boxes, area_scale)


class _Spill:
    """One condition's rows appended to disk batch by batch (float64 boxes in original pixels)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO = path.open("wb")

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        pickle.dump(rows, self._file, protocol=pickle.HIGHEST_PROTOCOL)

    def close(self) -> None:
        self._file.close()


def _input_boxes(data: DetectionData, rows: Sequence[int], params: ResizeParams) -> list[torch.Tensor]:
    """The clean ground-truth boxes (xyxy, every object, file order) of ``rows`` in the model input's pixels,
    clipped to the input frame (the annotation reader accepts a box reaching up to
    :data:`~audit.evaluation.detection.annotations.BOX_TOLERANCE` px past its image's edge)."""
    out = []
    for k, r in enumerate(rows):
        boxes = torch.tensor([o.box for o in data.truth.images[r].objects], dtype=torch.float64).reshape(-1, 4)
        moved = boxes_to_input(boxes, params[k])
        p = params[k]
        moved[:, 0::2] = moved[:, 0::2].clamp(0.0, float(p.input_width))
        moved[:, 1::2] = moved[:, 1::2].clamp(0.0, float(p.input_height))
        out.append(moved)
    return out


def stress_detection_batch(
    cond: Condition,
    mode: str,
    images: torch.Tensor,
    keys: torch.Tensor,
    *,
    data: DetectionData,
    rows: Sequence[int],
    params: ResizeParams,
    seed: int,
    min_visibility: float,
) -> tuple[torch.Tensor, list[ConditionObjects] | None]:
    """One batch (at the model input, ``plan_resize``'s ``params``) stressed under ``cond``, with its objects.

    Args:
        cond: the condition; ``mode``: its :func:`box_mode`.
        images: ``(B, C, H, W)`` at the model input; ``keys``: their sample keys; ``rows``: their image rows.
        data: the audit's data (the clean boxes of ``rows``).
        seed, min_visibility: ``seed`` and ``detection.min_visibility`` of the run.

    Returns:
        The stressed images, and per image its :class:`ConditionObjects` (None for mode ``"none"``: the
        objects are as annotated). Mode ``"none"`` stresses exactly as a classifier audit
        (``sample_params`` + ``apply``), so a photometric condition's images are unchanged.
    """
    if cond.stressor is None:
        return images, None
    if mode == "none":
        with torch.no_grad():
            stressed = cond.stressor.apply(images, cond.stressor.sample_params(keys, cond.severity, seed=seed))
        return stressed, None
    import stressors

    boxes = _input_boxes(data, rows, params)
    with torch.no_grad():
        boxed = stressors.stress_with_boxes(
            cond.stressor,
            images,
            boxes,
            sample_ids=keys,
            severity=cond.severity,
            seed=seed,
            min_visibility=min_visibility,
        )
    occluded = boxed.measures.get("occluded_fraction")
    objects = []
    for k, r in enumerate(rows):
        image = data.truth.images[r]
        n = len(image.objects)
        occ = np.full(n, np.nan) if occluded is None else occluded[k].detach().to("cpu", torch.float64).numpy()
        if mode == "measured":
            same = ConditionObjects.unchanged(image.image_id, n)
            objects.append(ConditionObjects(image.image_id, same.kept, same.visibility, occ))
            continue
        kept = boxed.kept[k].detach().cpu().numpy().astype(bool)
        visibility = boxed.visibility[k].detach().to("cpu", torch.float64).numpy().copy()
        moved = boxed.boxes[k].detach().to("cpu", torch.float64).reshape(-1, 4)
        # the original image's frame is the frame of record: clip to it, and count what the letterbox
        # padding holds as outside (the share inside the image = the stressor's share x this clip's share)
        inside = boxes_to_original(moved, params[k]).numpy()
        raw = boxes_to_original(moved, params[k], clip=False).numpy()
        area_inside = np.clip(inside[:, 2] - inside[:, 0], 0, None) * np.clip(inside[:, 3] - inside[:, 1], 0, None)
        area_raw = (raw[:, 2] - raw[:, 0]) * (raw[:, 3] - raw[:, 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(area_raw > 0, area_inside / area_raw, 0.0)
        share = np.where(share > 1.0 - 1e-9, 1.0, share)
        index = np.flatnonzero(kept)
        visibility[index] = visibility[index] * share
        stays = (visibility[index] >= min_visibility) & (inside[:, 2] > inside[:, 0]) & (inside[:, 3] > inside[:, 1])
        kept[index[~stays]] = False
        scale = boxed.area_scale[k].detach().to("cpu", torch.float64).numpy()[index[stays]]
        objects.append(ConditionObjects(image.image_id, kept, visibility, occ, inside[stays], scale))
    return boxed.images, objects


def _spill_rows(
    out: Sequence[Any], image_ids: Sequence[int], params: ResizeParams, category_of: np.ndarray
) -> list[tuple[Any, ...]]:
    """One batch's detections as spill rows: boxes mapped back to the original pixels, labels as category ids."""
    rows = []
    for k, (image_id, dets) in enumerate(zip(image_ids, out)):
        boxes = boxes_to_original(dets.boxes.detach().to("cpu", torch.float64), params[k])
        labels = dets.labels.detach().cpu().numpy()
        rows.append(
            (
                image_id,
                boxes.numpy(),
                dets.scores.detach().to("cpu", torch.float64).numpy(),
                category_of[labels] if labels.size else labels.astype(np.int64),
            )
        )
    return rows


def evaluate_detector(
    *,
    detector: Callable[..., list[Any]],
    data: DetectionData,
    conditions: Sequence[Condition],
    cfg: AuditConfig,
    device: torch.device,
    work: Path,
    num_workers: int = 0,
    decoding: dict[str, Any] | None = None,
    progress: Callable[..., None] | None = None,
    indices: Sequence[int] | None = None,
    rank: int = 0,
    world: int = 1,
    properties_path: Path | None = None,
) -> DetectionPass:
    """Run the detector on every image under every condition; detections spilled per condition into ``work``,
    and, for a condition whose stressor reads, measures or moves the boxes (:func:`box_mode`), its objects
    (:class:`ConditionObjects`, :meth:`DetectionPass.condition_objects`).

    Args:
        detector: ``detector(images (B, C, H, W) in [0, 1] at model.input_size, image_ids=[...])`` ->
            one :class:`~audit.evaluation.detection.outputs.Detections` per image, boxes in input pixels.
        data: :func:`read_detection_data`'s result.
        conditions: clean first, then the stressor conditions; a model-aware one must be an attack on
            detectors (:mod:`audit.evaluation.detection.attack_pass`), which also runs its noise baseline.
        cfg: the run's config (``model.input_size``, ``detection.resize``, ``detection.min_visibility``,
            ``batch_size``, ``seed``, ``data.on_bad_image``).
        device: where the detector runs.
        work: a private folder for the spill files.
        num_workers: DataLoader workers decoding images.
        decoding: ``max_pixels``, ``exif``, ``alpha`` of the decoding (the runner's decided values).
        progress: called with the number of images done after each batch.
        indices: the image rows this process evaluates (a rank's shard); default every image.
        rank, world: this process's rank and the number of processes; every rank's spill files are
            named in the result, so rank 0 can read them all once every rank is done.
        properties_path: where this process writes the image properties of its decoded images
            (:mod:`audit.contract.image_properties`): computed on each clean image as decoded, at its own size,
            before the resize to ``model.input_size`` (a letterbox's padding band is not the image), one image
            at a time as it is read; none when None.

    Raises:
        AuditError: a classifier attack or a detection attack the detector cannot take; a stressor that does
            not declare ``moves_pixels`` (:func:`check_box_support`, before any image is read); an image that cannot be decoded under ``on_bad_image: error``
            or whose decoded size differs from its annotation (named by file); a detector output that
            breaks the output contract (named by image).
    """
    det = cfg.detection
    assert det is not None
    from audit.evaluation.detection.attack_pass import attack_batch, check_attacks, is_detection_attack

    targets = check_attacks(conditions, detector)
    modes = check_box_support(conditions)
    decoding = decoding or {}
    images = data.truth.images
    dataset = DetectionImages(
        [image.path for image in images],
        [(image.width, image.height) for image in images],
        channels=cfg.model.channels,
        max_pixels=int(decoding.get("max_pixels", cfg.data.max_image_pixels)),
        exif=str(decoding.get("exif") or "ignore"),
        alpha=str(decoding.get("alpha") or "composite_white"),
        indices=indices,
        formats=tuple(decoding.get("formats") or cfg.data.image_formats),
    )
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate)
    spills = {c.id: _Spill(spill_path(work, k, rank)) for k, c in enumerate(conditions)}
    boxed = [(k, c) for k, c in enumerate(conditions) if modes[c.id] != "none"]
    object_spills = {c.id: _Spill(spill_path(work, k, rank, "objects")) for k, c in boxed}
    attacked = [(k, c) for k, c in enumerate(conditions) if c.id in targets]
    noise_spills = {c.id: _Spill(spill_path(work, k, rank, "noise")) for k, c in attacked}
    loss_spills = {c.id: _Spill(spill_path(work, k, rank, "losses")) for k, c in attacked}
    outcome = DetectionPass(
        spills={c.id: [spill_path(work, k, r) for r in range(world)] for k, c in enumerate(conditions)},
        objects={c.id: [spill_path(work, k, r, "objects") for r in range(world)] for k, c in boxed},
        noise={c.id: [spill_path(work, k, r, "noise") for r in range(world)] for k, c in attacked},
        losses={c.id: [spill_path(work, k, r, "losses") for r in range(world)] for k, c in attacked},
    )
    category_of = np.asarray(data.truth.category_ids, dtype=np.int64)
    keys_all = torch.from_numpy(data.keys)
    recorder = PropertyRecorder() if properties_path is not None else None
    try:
        for batch in loader:
            good = []
            for item in batch:
                i = item["index"]
                if "mismatch" in item:
                    w, h = item["mismatch"]
                    raise AuditError(
                        f"{images[i].path}: the image decodes to {w}x{h} pixels but its annotation says "
                        f"{images[i].width}x{images[i].height} (image id {images[i].image_id}); every box would be misplaced"
                    )
                if "error" in item:
                    if cfg.data.on_bad_image == "error":
                        raise AuditError(f"{images[i].path}: {item['error']} (data.on_bad_image: skip to skip it)")
                    outcome.skipped.append({"sample": data.sample_ids[i], "reason": item["error"]})
                    outcome.skipped_rows.append(i)
                    continue
                good.append(item)
            if good:
                rows = [it["index"] for it in good]
                if recorder is not None:  # each image at its own size: detection inputs differ in size
                    for it in good:
                        image = it["image"]
                        recorder.add(
                            torch.tensor([it["index"]]),
                            image.unsqueeze(0).to(device),
                            torch.tensor([[image.shape[-1], image.shape[-2]]]),
                        )
                sizes = [(images[i].height, images[i].width) for i in rows]
                params = plan_resize(sizes, input_size=tuple(cfg.model.input_size), mode=det.resize)
                x = apply_resize([it["image"] for it in good], params).to(device)
                keys = keys_all[rows].to(device)
                ids = [data.sample_ids[i] for i in rows]
                image_ids = [images[i].image_id for i in rows]
                for cond in conditions:
                    if is_detection_attack(cond):
                        hit = attack_batch(
                            cond,
                            targets[cond.id],
                            x,
                            keys,
                            objects=[images[i].objects for i in rows],
                            params=params,
                            seed=cfg.seed,
                        )
                        stressed = hit.images
                        noise_spills[cond.id].write(
                            _spill_rows(detector(hit.noise, image_ids=ids), image_ids, params, category_of)
                        )
                        loss_spills[cond.id].write(
                            [
                                (images[i].image_id, float(a), float(b))
                                for i, a, b in zip(rows, hit.loss_clean, hit.loss_final)
                            ]
                        )
                    else:
                        stressed, objects = stress_detection_batch(
                            cond,
                            modes[cond.id],
                            x,
                            keys,
                            data=data,
                            rows=rows,
                            params=params,
                            seed=cfg.seed,
                            min_visibility=det.min_visibility,
                        )
                        if objects is not None:
                            object_spills[cond.id].write(
                                [
                                    (o.image_id, o.kept, o.visibility, o.occluded_fraction, o.boxes, o.area_scale)
                                    for o in objects
                                ]
                            )
                    spills[cond.id].write(
                        _spill_rows(detector(stressed, image_ids=ids), image_ids, params, category_of)
                    )
                outcome.evaluated.extend(rows)
            if progress is not None:
                progress(len(batch))
    finally:
        for spill in [*spills.values(), *object_spills.values(), *noise_spills.values(), *loss_spills.values()]:
            spill.close()
    if recorder is not None and properties_path is not None:
        recorder.write(properties_path, list(data.sample_ids))
    return outcome
