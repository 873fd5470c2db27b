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

from audit.contract.config import AuditConfig
from audit.contract.errors import AuditError, echo
from audit.contract.manifest import ManifestChunk
from audit.contract.seeds import sample_key
from audit.evaluation.conditions import Condition
from audit.evaluation.data import DECODE_ERRORS, decode_error, open_image
from audit.evaluation.detection.annotations import GroundTruth, join_manifest, read_coco, read_yolo, size_class
from audit.evaluation.detection.coco_metrics import ImageDetections, ImageTruth
from audit.evaluation.detection.letterbox import apply_resize, boxes_to_original, plan_resize

__all__ = [
    "DetectionData",
    "DetectionImages",
    "DetectionPass",
    "evaluate_detector",
    "read_detection_data",
    "read_spill",
    "spill_path",
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
        truth = read_yolo(det.yolo, exif=data.exif or "ignore", **limits)
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
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.sizes = list(sizes)  # (width, height) the annotations give
        self.channels, self.max_pixels, self.exif, self.alpha = channels, max_pixels, exif, alpha
        self.indices = list(range(len(self.paths))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, pos: int) -> dict[str, Any]:
        i = self.indices[pos]
        item: dict[str, Any] = {"index": i}
        try:
            arr = open_image(self.paths[i], max_pixels=self.max_pixels, exif=self.exif, alpha=self.alpha)  # type: ignore[arg-type]
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


@dataclass
class DetectionPass:
    """What the streaming pass produced.

    Attributes:
        spills: condition id -> its spill files, one per rank (:func:`read_spill`, :meth:`detections`).
        evaluated: the image rows evaluated (dataset order once merged across ranks).
        skipped: ``{"sample", "reason"}`` per image skipped under ``data.on_bad_image: skip``.
    """

    spills: dict[str, list[Path]]
    evaluated: list[int] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    skipped_rows: list[int] = field(default_factory=list)

    def detections(self, condition: str, data: DetectionData) -> list[ImageDetections]:
        """One condition's detections from every rank's spill, in dataset order (whatever the sharding)."""
        row_of = {image.image_id: r for r, image in enumerate(data.truth.images)}
        dets = [d for path in self.spills[condition] for d in read_spill(path)]
        return sorted(dets, key=lambda d: row_of[int(d.image_id)])

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
        )


def spill_path(work: Path, condition: int, rank: int) -> Path:
    """The spill file of one condition (by position) and rank in the shared work folder."""
    return work / f"detections-{condition:04d}.rank-{rank:05d}.pkl"


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


class _Spill:
    """One condition's detections appended to disk batch by batch (float64 boxes in original pixels)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO = path.open("wb")

    def write(self, rows: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]) -> None:
        pickle.dump(rows, self._file, protocol=pickle.HIGHEST_PROTOCOL)

    def close(self) -> None:
        self._file.close()


def _stress(cond: Condition, images: torch.Tensor, keys: torch.Tensor, seed: int) -> torch.Tensor:
    if cond.stressor is None:
        return images
    params = cond.stressor.sample_params(keys, cond.severity, seed=seed)
    return cond.stressor.apply(images, params)


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
) -> DetectionPass:
    """Run the detector on every image under every condition; detections spilled per condition into ``work``.

    Args:
        detector: ``detector(images (B, C, H, W) in [0, 1] at model.input_size, image_ids=[...])`` ->
            one :class:`~audit.evaluation.detection.outputs.Detections` per image, boxes in input pixels.
        data: :func:`read_detection_data`'s result.
        conditions: clean first, then the stressor conditions (model-aware attacks are refused).
        cfg: the run's config (``model.input_size``, ``detection.resize``, ``batch_size``, ``seed``,
            ``data.on_bad_image``).
        device: where the detector runs.
        work: a private folder for the spill files.
        num_workers: DataLoader workers decoding images.
        decoding: ``max_pixels``, ``exif``, ``alpha`` of the decoding (the runner's decided values).
        progress: called with the number of images done after each batch.
        indices: the image rows this process evaluates (a rank's shard); default every image.
        rank, world: this process's rank and the number of processes; every rank's spill files are
            named in the result, so rank 0 can read them all once every rank is done.

    Raises:
        AuditError: an attack condition; an image that cannot be decoded under ``on_bad_image: error``
            or whose decoded size differs from its annotation (named by file); a detector output that
            breaks the output contract (named by image).
    """
    det = cfg.detection
    assert det is not None
    attacks = [c.id for c in conditions if c.model_aware]
    if attacks:
        raise AuditError(
            f"stressor condition {attacks[0]!r} is an attack on classifiers; a detection audit takes image stressors only"
        )
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
    )
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate)
    spills = {c.id: _Spill(spill_path(work, k, rank)) for k, c in enumerate(conditions)}
    outcome = DetectionPass(
        spills={c.id: [spill_path(work, k, r) for r in range(world)] for k, c in enumerate(conditions)}
    )
    category_of = np.asarray(data.truth.category_ids, dtype=np.int64)
    keys_all = torch.from_numpy(data.keys)
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
                sizes = [(images[i].height, images[i].width) for i in rows]
                params = plan_resize(sizes, input_size=tuple(cfg.model.input_size), mode=det.resize)
                x = apply_resize([it["image"] for it in good], params).to(device)
                keys = keys_all[rows].to(device)
                ids = [data.sample_ids[i] for i in rows]
                for cond in conditions:
                    with torch.no_grad():
                        stressed = _stress(cond, x, keys, cfg.seed)
                    out = detector(stressed, image_ids=ids)
                    spill_rows = []
                    for k, (i, dets) in enumerate(zip(rows, out)):
                        boxes = boxes_to_original(dets.boxes.detach().to("cpu", torch.float64), params[k])
                        labels = dets.labels.detach().cpu().numpy()
                        spill_rows.append(
                            (
                                images[i].image_id,
                                boxes.numpy(),
                                dets.scores.detach().to("cpu", torch.float64).numpy(),
                                category_of[labels] if labels.size else labels.astype(np.int64),
                            )
                        )
                    spills[cond.id].write(spill_rows)
                outcome.evaluated.extend(rows)
            if progress is not None:
                progress(len(batch))
    finally:
        for spill in spills.values():
            spill.close()
    return outcome
