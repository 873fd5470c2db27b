"""Detection ground truth: a COCO instances JSON or a YOLO folder, read into one typed model.

The model (all frozen dataclasses):

- :class:`GroundTruth` — the source file or folder, the ordered class names, their COCO
  category ids, the images (in file order) and the annotations that were skipped;
- :class:`GroundTruthImage` — image id, ``file_name`` as written, its ``path`` resolved under
  the data root, ``width`` and ``height`` in pixels, its objects, and the image-level attributes
  a manifest adds (:func:`join_manifest`; empty until then);
- :class:`GroundTruthObject` — the box in **xyxy input pixels** (floats, ``x1 < x2``,
  ``y1 < y2``, inside the image), the class index into :attr:`GroundTruth.class_names`, the COCO
  ``category_id``, ``iscrowd``, ``area`` and its COCO size class, and the named object attributes.

Size classes follow COCO (``pycocotools.cocoeval.Params``): by the annotation's ``area`` (for
COCO the segment's area as the file gives it, not the box's), ``small`` below 32², ``medium``
below 96², ``large`` from 96². COCOeval's own area ranges are closed at both ends, so it counts an
object of area exactly 32² (96²) in both adjacent ranges; here each object has one class, the
larger one.

Readers:

- :func:`read_coco` — ``images`` (``id``, ``file_name``, ``width``, ``height``), ``annotations``
  (``id``, ``image_id``, ``category_id``, ``bbox`` as ``[x, y, w, h]``; ``iscrowd`` 0/1, default 0;
  ``area``, default ``w * h``) and ``categories`` (``id``, ``name``). Classes are ordered by
  ascending category id. Images without objects are valid.
- :func:`read_yolo` — ``images/`` (any depth), ``labels/`` mirroring it with one ``.txt`` per image
  (``class cx cy w h`` a line, normalised to [0, 1]; blank lines ignored; no label file means no
  objects) and ``data.yaml`` whose ``names`` is a list or a ``{index: name}`` mapping. Image sizes
  come from the image headers (Pillow opens the file lazily; no pixel is decoded).
- :func:`join_manifest` — attaches a manifest's columns to the images, matching the manifest's
  path column (resolved against the manifest's folder, as the classifier reader does) to each
  image's resolved path.

Bad input is an :class:`~audit.contract.errors.AuditError` whose message is one line naming the
file, the annotation / image id or the line, and the problem: a box outside the image (beyond
:data:`BOX_TOLERANCE` pixels) or with a non-positive width or height, an unknown category id or
class index, an image id or annotation id given twice, an annotation for an image id not in
``images``, a missing or ill-typed key, a number that is NaN or infinite. With
``on_bad_annotation="skip"`` a bad **annotation** (object) is dropped instead and listed in
:attr:`GroundTruth.skipped` as (file, id, reason); problems with images, categories or the file as
a whole are errors in either mode.

Hostile input is bounded: a COCO file larger than ``max_bytes`` (default :data:`MAX_JSON_BYTES`)
or a YOLO label file larger than :data:`MAX_LABEL_BYTES` is refused before it is parsed; JSON
nested too deeply, integers with too many digits and YAML alias bombs are one-line errors (the
YAML goes through :func:`audit.contract.yaml_loader.load_yaml`); every quoted value is cut
(:func:`~audit.contract.errors.echo`). Image paths must resolve (``..`` and symbolic links
followed) inside the data root, as for classifiers, unless ``allow_outside_root``; an image whose
size exceeds ``max_image_pixels`` is refused before any pixel is decoded.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError

from audit.contract.config import DEFAULT_IMAGE_FORMATS, DEFAULT_MAX_IMAGE_PIXELS
from audit.contract.errors import AuditError, echo
from audit.contract.files import check_path_name, read_bounded
from audit.contract.manifest import ManifestChunk, as_text, read_manifest_chunks
from audit.contract.text import valid_text
from audit.contract.yaml_loader import YamlError, load_yaml, read_yaml_file
from audit.evaluation.data import IMAGE_SUFFIXES, _contained, _pillow_pixel_limit
from audit.evaluation.table import MISSING

__all__ = [
    "BOX_TOLERANCE",
    "MAX_JSON_BYTES",
    "MAX_LABEL_BYTES",
    "GroundTruth",
    "GroundTruthImage",
    "GroundTruthObject",
    "SkippedAnnotation",
    "join_manifest",
    "read_coco",
    "read_yolo",
    "size_class",
]

#: Largest COCO instances JSON read (bytes): COCO's own train2017 file is about 450 MB.
MAX_JSON_BYTES = 1 << 30
#: Largest YOLO label file read (bytes): about 400,000 objects in one image.
MAX_LABEL_BYTES = 16 << 20
#: How far (pixels) a box may reach past the image's edge, for rounding in exported files.
BOX_TOLERANCE = 0.01
#: COCO's size-class bounds on ``area`` (pixels²): small below 32², medium below 96².
SMALL_AREA, MEDIUM_AREA = 32.0**2, 96.0**2

OnBad = Literal["error", "skip"]
SizeClass = Literal["small", "medium", "large"]


def size_class(area: float) -> SizeClass:
    """COCO's size class of an object of ``area`` pixels² (see the module docstring).

    >>> size_class(1023.9), size_class(1024), size_class(9216)
    ('small', 'medium', 'large')
    """
    if area < SMALL_AREA:
        return "small"
    return "medium" if area < MEDIUM_AREA else "large"


@dataclass(frozen=True)
class GroundTruthObject:
    """One annotated object.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in the image's pixels (COCO's ``[x, y, w, h]`` is ``(x, y, x + w, y + h)``).
        category: the class index into :attr:`GroundTruth.class_names`.
        category_id: the COCO category id (YOLO: the class index).
        iscrowd: COCO's crowd flag (a crowd region: detections inside it are neither true nor false positives).
        area: COCO's ``area`` (default the box's); YOLO: the box's area.
        annotation_id: the COCO annotation id (YOLO: the line of the label file).
        attributes: the named object attributes as text (:func:`audit.contract.manifest.as_text`);
            ``"<missing>"`` where the annotation lacks the key or holds null or "".
    """

    box: tuple[float, float, float, float]
    category: int
    category_id: int
    iscrowd: bool
    area: float
    annotation_id: int
    attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def size(self) -> SizeClass:
        """COCO's size class by :attr:`area` (:func:`size_class`)."""
        return size_class(self.area)


@dataclass(frozen=True)
class GroundTruthImage:
    """One image and its objects (possibly none).

    Attributes:
        image_id: the COCO image id (YOLO: the position in sorted file order, from 0).
        file_name: the path as the annotation file gives it (YOLO: relative to ``images/``, with ``/``).
        path: the image's path with ``..`` and symbolic links resolved (inside the data root).
        width, height: the image's size in pixels.
        objects: the image's objects, in file order.
        attributes: image-level columns from a manifest (:func:`join_manifest`); empty before.
    """

    image_id: int
    file_name: str
    path: Path
    width: int
    height: int
    objects: tuple[GroundTruthObject, ...]
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SkippedAnnotation:
    """An entry dropped under ``on_bad_annotation="skip"``: the file, which entry, and why (one line)."""

    source: str
    id: str
    reason: str


@dataclass(frozen=True)
class GroundTruth:
    """What a reader returns: the classes, the images with their objects, and what was skipped.

    Attributes:
        source: the COCO file or YOLO folder read.
        class_names: the classes in index order (COCO: by ascending category id; YOLO: by index).
        category_ids: the COCO category id of each class (YOLO: ``0 .. n - 1``).
        images: every image, in the file's order (YOLO: sorted by path).
        skipped: the entries dropped under ``on_bad_annotation="skip"`` (empty under ``"error"``).
    """

    source: Path
    class_names: tuple[str, ...]
    category_ids: tuple[int, ...]
    images: tuple[GroundTruthImage, ...]
    skipped: tuple[SkippedAnnotation, ...] = ()

    @property
    def num_objects(self) -> int:
        """Objects over all images (crowd regions included)."""
        return sum(len(image.objects) for image in self.images)


class _Bad(Exception):
    """A bad annotation: raised inside a reader, then raised as AuditError or listed as skipped."""

    def __init__(self, id_text: str, reason: str) -> None:
        super().__init__(reason)
        self.id_text, self.reason = id_text, reason


class _Skips:
    """Applies ``on_bad_annotation``: raise the first bad annotation, or collect them all."""

    def __init__(self, source: Path, mode: OnBad) -> None:
        if mode not in ("error", "skip"):
            raise AuditError(f"{source}: on_bad_annotation must be 'error' or 'skip', not {echo(mode)}")
        self.source, self.mode = source, mode
        self.items: list[SkippedAnnotation] = []

    def bad(self, err: _Bad) -> None:
        if self.mode == "error":
            raise AuditError(f"{self.source}: {err.id_text}: {err.reason}")
        self.items.append(SkippedAnnotation(str(self.source), err.id_text, err.reason))


def _root_bound(root: Path, data_root: Path | None, allow_outside_root: bool) -> Path | None:
    if allow_outside_root:
        return None
    bound = data_root if data_root is not None else root
    try:
        return bound.resolve()
    except (OSError, RuntimeError, ValueError) as err:
        raise AuditError(f"data root {bound}: cannot be resolved ({err})") from None


# ----------------------------------------------------------------------- field checks


def _number(value: Any, what: str, id_text: str) -> float:
    """A finite JSON number (not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(id_text, f"{what} must be a number, got {echo(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float's range
        raise _Bad(id_text, f"{what} is too large; it must be finite") from None
    if not math.isfinite(number):
        raise _Bad(id_text, f"{what} is {echo(value)}; it must be finite")
    return number


def _integer(value: Any, what: str, id_text: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(id_text, f"{what} must be an integer, got {echo(value)}")
    return value


def _key(entry: Mapping[str, Any], key: str, id_text: str) -> Any:
    if key not in entry:
        raise _Bad(id_text, f"key {key!r} is missing (keys: {echo(sorted(map(str, entry))[:20])})")
    return entry[key]


def _check_box(box: tuple[float, float, float, float], width: int, height: int, id_text: str, given: str) -> None:
    x1, y1, x2, y2 = box
    if not (x2 > x1 and y2 > y1):
        raise _Bad(id_text, f"box {given} has a non-positive width or height")
    if x1 < -BOX_TOLERANCE or y1 < -BOX_TOLERANCE or x2 > width + BOX_TOLERANCE or y2 > height + BOX_TOLERANCE:
        raise _Bad(id_text, f"box {given} (xyxy {_fmt_box(box)}) is outside the image ({width}x{height} pixels)")


def _fmt_box(box: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in box) + "]"


def _object_attributes(entry: Mapping[str, Any], names: Sequence[str]) -> dict[str, str]:
    out = {}
    for name in names:
        text = valid_text(as_text(entry.get(name))).strip()
        out[name] = text if text else MISSING
    return out


def _check_pixels(width: int, height: int, max_image_pixels: int, where: str) -> None:
    if width * height > max_image_pixels:
        raise AuditError(
            f"{where}: image is {width}x{height} = {width * height} pixels, more than max_image_pixels "
            f"({max_image_pixels}); refused before decoding"
        )


# ----------------------------------------------------------------------- COCO


def _load_json(path: Path, max_bytes: int) -> Any:
    # opened once, checked on the descriptor: a device, FIFO, socket, folder or larger file is refused unread
    raw = read_bounded(path, limit=max_bytes, what="annotation file", error=AuditError)
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise AuditError(f"{path}: annotation file is not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise AuditError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None
    except ValueError as err:  # Python's limit on the digits of an integer
        raise AuditError(f"{path}: not valid JSON ({str(err)[:120]})") from None
    except RecursionError:
        raise AuditError(f"{path}: JSON nested too deeply") from None


def _list_of(data: Mapping[str, Any], key: str, path: Path, *, required: bool = True) -> list[Any]:
    if key not in data:
        if required:
            raise AuditError(
                f"{path}: key {key!r} is missing (a COCO instances file has images, annotations, categories)"
            )
        return []
    value = data[key]
    if not isinstance(value, list):
        raise AuditError(f"{path}: {key!r} must be a list, got {type(value).__name__}")
    return value


def _coco_categories(items: list[Any], path: Path) -> tuple[tuple[str, ...], tuple[int, ...]]:
    by_id: dict[int, str] = {}
    for n, item in enumerate(items, start=1):
        where = f"category {echo(item.get('id')) if isinstance(item, dict) else f'#{n}'}"
        try:
            if not isinstance(item, dict):
                raise _Bad(f"category #{n}", f"must be a JSON object, got {type(item).__name__}")
            cid = _integer(_key(item, "id", where), "'id'", where)
            name = _key(item, "name", where)
            if not isinstance(name, str) or not name.strip():
                raise _Bad(where, f"'name' must be a non-empty string, got {echo(name)}")
            name = valid_text(name)  # a lone surrogate (JSON "\\ud800") as its visible escape
        except _Bad as err:
            raise AuditError(f"{path}: {err.id_text}: {err.reason}") from None
        if cid in by_id:
            raise AuditError(f"{path}: category {cid}: category id given twice")
        if name in by_id.values():
            raise AuditError(f"{path}: category {cid}: name {echo(name)} is also the name of another category")
        by_id[cid] = name
    if not by_id:
        raise AuditError(f"{path}: 'categories' is empty (a detector needs at least one class)")
    ids = tuple(sorted(by_id))
    return tuple(by_id[i] for i in ids), ids


def _coco_image(
    item: Any, n: int, root: Path, bound: Path | None, path: Path, max_image_pixels: int
) -> tuple[int, str, Path, int, int]:
    where = f"image {echo(item.get('id'))}" if isinstance(item, dict) and "id" in item else f"image #{n}"
    try:
        if not isinstance(item, dict):
            raise _Bad(where, f"must be a JSON object, got {type(item).__name__}")
        image_id = _integer(_key(item, "id", where), "'id'", where)
        file_name = _key(item, "file_name", where)
        if not isinstance(file_name, str) or not file_name.strip():
            raise _Bad(where, f"'file_name' must be a non-empty string, got {echo(file_name)}")
        width = _integer(_key(item, "width", where), "'width'", where)
        height = _integer(_key(item, "height", where), "'height'", where)
        if width <= 0 or height <= 0:
            raise _Bad(where, f"size {width}x{height} must be positive")
    except _Bad as err:
        raise AuditError(f"{path}: {err.id_text}: {err.reason}") from None
    _check_pixels(width, height, max_image_pixels, f"{path}: {where} ({echo(file_name)})")
    resolved = _contained(root / file_name, bound, f"{path}: {where}", file_name)
    return image_id, file_name, resolved, width, height


def _coco_object(
    item: Any, n: int, images: Mapping[int, tuple[int, int]], category_index: Mapping[int, int], names: Sequence[str]
) -> tuple[int, GroundTruthObject]:
    if not isinstance(item, dict):
        raise _Bad(f"annotation #{n}", f"must be a JSON object, got {type(item).__name__}")
    raw_id = item.get("id")
    where = f"annotation {echo(raw_id)}" if "id" in item else f"annotation #{n}"
    ann_id = _integer(_key(item, "id", where), "'id'", where)
    image_id = _integer(_key(item, "image_id", where), "'image_id'", where)
    if image_id not in images:
        raise _Bad(where, f"image_id {image_id} is not an image of 'images'")
    category_id = _integer(_key(item, "category_id", where), "'category_id'", where)
    if category_id not in category_index:
        raise _Bad(where, f"category_id {category_id} is not a category (ids: {echo(sorted(category_index))})")
    bbox = _key(item, "bbox", where)
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise _Bad(where, f"'bbox' must be a list [x, y, width, height], got {echo(bbox)}")
    x, y, w, h = (_number(v, f"bbox[{k}]", where) for k, v in enumerate(bbox))
    box = (x, y, x + w, y + h)
    width, height = images[image_id]
    if w <= 0 or h <= 0:
        raise _Bad(where, f"box {_fmt_box((x, y, w, h))} (xywh) has a non-positive width or height")
    _check_box(box, width, height, where, f"{_fmt_box((x, y, w, h))} (xywh) of image {image_id}")
    crowd = item.get("iscrowd", 0)
    if isinstance(crowd, bool):
        crowd = int(crowd)
    if crowd not in (0, 1) or not isinstance(crowd, int):
        raise _Bad(where, f"'iscrowd' must be 0 or 1, got {echo(crowd)}")
    area = _number(item["area"], "'area'", where) if "area" in item else w * h
    if area < 0:
        raise _Bad(where, f"'area' {area:.6g} is negative")
    try:
        attributes = _object_attributes(item, names)
    except RecursionError:
        raise _Bad(where, "an object attribute is nested too deeply") from None
    obj = GroundTruthObject(box, category_index[category_id], category_id, bool(crowd), area, ann_id, attributes)
    return image_id, obj


def read_coco(
    instances_json: str | Path,
    *,
    root: str | Path,
    object_attributes: Sequence[str] = (),
    on_bad_annotation: OnBad = "error",
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    max_bytes: int = MAX_JSON_BYTES,
    data_root: str | Path | None = None,
    allow_outside_root: bool = False,
) -> GroundTruth:
    """Read a COCO instances JSON (see the module docstring for the rules).

    Args:
        instances_json: the annotation file.
        root: the folder the images' ``file_name`` s are relative to.
        object_attributes: annotation keys kept as object attributes (e.g. ``occluded``, ``truncated``).
        on_bad_annotation: ``"error"`` (raise for the first bad annotation) or ``"skip"`` (drop and list it).
        max_image_pixels: the most pixels (``width * height`` as the file gives them) an image may have.
        max_bytes: the largest file read.
        data_root: the folder every image must resolve inside (default ``root``).
        allow_outside_root: no containment check.

    Returns:
        The :class:`GroundTruth`, images in file order, objects in file order per image.

    Raises:
        AuditError: one line naming the file, the image / annotation / category id and the problem.
    """
    path = Path(instances_json)
    root = Path(root)
    skips = _Skips(path, on_bad_annotation)
    bound = _root_bound(root, Path(data_root) if data_root is not None else None, allow_outside_root)
    data = _load_json(path, max_bytes)
    if not isinstance(data, dict):
        raise AuditError(f"{path}: expected a JSON object with images, annotations and categories")
    names, ids = _coco_categories(_list_of(data, "categories", path), path)
    category_index = {cid: k for k, cid in enumerate(ids)}
    images: dict[int, tuple[str, Path, int, int]] = {}
    file_names: dict[str, int] = {}
    for n, item in enumerate(_list_of(data, "images", path), start=1):
        image_id, file_name, resolved, width, height = _coco_image(item, n, root, bound, path, max_image_pixels)
        if image_id in images:
            raise AuditError(f"{path}: image {image_id}: image id given twice")
        if file_name in file_names:
            raise AuditError(
                f"{path}: image {image_id}: file_name {echo(file_name)} is also image {file_names[file_name]}"
            )
        images[image_id] = (file_name, resolved, width, height)
        file_names[file_name] = image_id
    sizes = {i: (w, h) for i, (_, _, w, h) in images.items()}
    objects: dict[int, list[GroundTruthObject]] = {i: [] for i in images}
    seen: set[int] = set()
    for n, item in enumerate(_list_of(data, "annotations", path, required=False), start=1):
        try:
            image_id, obj = _coco_object(item, n, sizes, category_index, object_attributes)
            if obj.annotation_id in seen:
                raise _Bad(f"annotation {obj.annotation_id}", "annotation id given twice")
        except _Bad as err:
            skips.bad(err)
            continue
        seen.add(obj.annotation_id)
        objects[image_id].append(obj)
    # file names as text (reports, detections.json): valid UTF-8; the resolved path keeps the name as given
    out = tuple(GroundTruthImage(i, valid_text(f), p, w, h, tuple(objects[i])) for i, (f, p, w, h) in images.items())
    return GroundTruth(path, names, ids, out, tuple(skips.items))


# ----------------------------------------------------------------------- YOLO


def _yolo_names(path: Path) -> tuple[str, ...]:
    if not os.path.lexists(path):
        raise AuditError(f"{path}: data.yaml not found (a YOLO folder names its classes there)")
    raw = read_yaml_file(path, what="data.yaml", error=AuditError)  # bounded, regular files only
    try:
        data = load_yaml(raw, source=str(path))
    except YamlError as err:
        raise AuditError(str(err)) from None
    if not isinstance(data, dict) or "names" not in data:
        raise AuditError(f"{path}: key 'names' is missing (the class names, a list or an index -> name mapping)")
    names = data["names"]
    if isinstance(names, dict):
        keys = list(names)
        if any(isinstance(k, bool) or not isinstance(k, int) for k in keys) or sorted(keys) != list(range(len(keys))):
            raise AuditError(f"{path}: 'names' keys must be the class indices 0..{len(keys) - 1}, got {echo(keys)}")
        names = [names[k] for k in range(len(keys))]
    if not isinstance(names, list) or not names:
        raise AuditError(f"{path}: 'names' must be a non-empty list or mapping, got {echo(names)}")
    for k, name in enumerate(names):
        if not isinstance(name, (str, int)) or isinstance(name, bool) or not str(name).strip():
            raise AuditError(f"{path}: names[{k}] must be a non-empty string, got {echo(name)}")
    texts = tuple(valid_text(str(n)) for n in names)
    if len(set(texts)) != len(texts):
        repeat = next(t for t in texts if texts.count(t) > 1)
        raise AuditError(f"{path}: class name {echo(repeat)} appears twice in 'names'")
    return texts


def _image_size(
    path: Path, where: str, max_image_pixels: int, exif: Literal["apply", "ignore"], formats: Sequence[str]
) -> tuple[int, int]:
    """The image's size from its header (no pixel decoded); swapped for EXIF orientations 5-8 under ``apply``.

    Only the Pillow plugins of ``formats`` (``data.image_formats``) are tried; whatever a plugin raises is one
    line naming the image.
    """
    try:
        with _pillow_pixel_limit(max_image_pixels), Image.open(path, formats=list(formats)) as img:
            width, height = img.size
            if exif == "apply" and img.getexif().get(0x0112) in (5, 6, 7, 8):
                width, height = height, width
    except FileNotFoundError:
        raise AuditError(f"{where}: image file not found") from None
    except UnidentifiedImageError:
        raise AuditError(f"{where}: not a readable image (corrupt or unknown format)") from None
    except Image.DecompressionBombError as err:
        raise AuditError(f"{where}: refused as a decompression bomb ({err})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise AuditError(f"{where}: cannot read the image header ({valid_text(str(err)[:200])})") from None
    except Exception as err:  # any plugin's own error type: a bad image, not a bug of cvaudit
        raise AuditError(
            f"{where}: cannot read the image header ({type(err).__name__}: {valid_text(str(err)[:200])})"
        ) from None
    _check_pixels(width, height, max_image_pixels, where)
    return width, height


def _yolo_line(text: str, line: int, width: int, height: int, num_classes: int, where: str) -> GroundTruthObject:
    id_text = f"{where}: line {line}"
    fields = text.split()
    if len(fields) != 5:
        raise _Bad(id_text, f"expected 5 fields 'class cx cy w h', got {len(fields)}: {echo(text.strip())}")
    try:
        category = int(fields[0])
    except ValueError:
        raise _Bad(id_text, f"class {echo(fields[0])} is not an integer") from None
    if not 0 <= category < num_classes:
        raise _Bad(id_text, f"class {category} is not a class index of data.yaml's names (0..{num_classes - 1})")
    values = []
    for name, raw in zip(("cx", "cy", "w", "h"), fields[1:]):
        try:
            value = float(raw)
        except ValueError:
            raise _Bad(id_text, f"{name} {echo(raw)} is not a number") from None
        if not math.isfinite(value):
            raise _Bad(id_text, f"{name} is {echo(raw)}; it must be finite")
        if not 0.0 <= value <= 1.0:
            raise _Bad(id_text, f"{name} {raw} is outside [0, 1] (YOLO coordinates are normalised)")
        values.append(value)
    cx, cy, w, h = values
    if w <= 0 or h <= 0:
        raise _Bad(id_text, f"box 'cx cy w h' {_fmt_box(values)} has a non-positive width or height")
    box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
    _check_box(box, width, height, id_text, f"'cx cy w h' {_fmt_box(values)}")
    area = (box[2] - box[0]) * (box[3] - box[1])
    return GroundTruthObject(box, category, category, False, area, line, {})


def _read_label_file(path: Path, where: str) -> str:
    try:  # opened once, checked on the descriptor: a device, FIFO or larger file is refused unread
        raw = read_bounded(path, limit=MAX_LABEL_BYTES, what="label file", error=AuditError)
    except AuditError as err:  # the message names the label file as the user knows it (`where`)
        raise AuditError(f"{where}: {str(err).removeprefix(f'{path}: ')}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AuditError(f"{where}: label file is not UTF-8 text") from None


def read_yolo(
    folder: str | Path,
    *,
    on_bad_annotation: OnBad = "error",
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    exif: Literal["apply", "ignore"] = "ignore",
    data_root: str | Path | None = None,
    allow_outside_root: bool = False,
    formats: Sequence[str] = DEFAULT_IMAGE_FORMATS,
) -> GroundTruth:
    """Read a YOLO-format folder (see the module docstring for the layout and rules).

    A label file without an image (``labels/a.txt`` and no ``images/a.*``) is a bad annotation: an
    error, or skipped and listed. ``exif="apply"`` reads the size of an image whose EXIF orientation
    turns it by 90° swapped, as Ultralytics does (its labels refer to the turned image).

    Args:
        folder: holds ``images/``, ``labels/`` and ``data.yaml``.
        on_bad_annotation: ``"error"`` or ``"skip"`` (a bad line is dropped and listed).
        max_image_pixels: the most pixels an image's header may announce.
        exif: ``"apply"`` or ``"ignore"`` the EXIF orientation when reading sizes.
        data_root: the folder every image and label file must resolve inside (default ``folder``).
        allow_outside_root: no containment check.
        formats: the Pillow formats image headers are read with (``data.image_formats``).

    Returns:
        The :class:`GroundTruth`: images sorted by path, ``image_id`` their position.

    Raises:
        AuditError: one line naming the file (and line) and the problem.
    """
    folder = check_path_name(folder, what="YOLO folder", error=AuditError)
    skips = _Skips(folder, on_bad_annotation)
    if not (folder / "images").is_dir():
        raise AuditError(f"{folder}: no 'images' folder (a YOLO folder holds images/, labels/ and data.yaml)")
    names = _yolo_names(folder / "data.yaml")
    bound = _root_bound(folder, Path(data_root) if data_root is not None else None, allow_outside_root)
    image_dir, label_dir = folder / "images", folder / "labels"
    files = sorted(
        (f for f in image_dir.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()),
        key=lambda f: f.relative_to(image_dir).as_posix(),
    )
    images = []
    stems: set[str] = set()
    for image_id, file in enumerate(files):
        relative = file.relative_to(image_dir).as_posix()
        stem = relative.rsplit(".", 1)[0]
        if stem in stems:
            raise AuditError(
                f"{image_dir}: {echo(relative)}: another image has the same name; labels/{stem}.txt is ambiguous"
            )
        stems.add(stem)
        where = f"{image_dir}: {relative}"
        resolved = _contained(file, bound, where, f"images/{relative}")
        width, height = _image_size(resolved, where, max_image_pixels, exif, formats)
        label = label_dir / f"{stem}.txt"
        objects: list[GroundTruthObject] = []
        if label.is_file():
            label_where = f"labels/{stem}.txt"
            label = _contained(label, bound, f"{folder}: {label_where}", label_where)
            text = _read_label_file(label, f"{folder}: {label_where}")
            for line, row in enumerate(text.splitlines(), start=1):
                if not row.strip():
                    continue
                try:
                    objects.append(_yolo_line(row, line, width, height, len(names), label_where))
                except _Bad as err:
                    skips.bad(err)
        images.append(GroundTruthImage(image_id, valid_text(relative), resolved, width, height, tuple(objects)))
    if label_dir.is_dir():
        for label in sorted(label_dir.rglob("*.txt")):
            stem = label.relative_to(label_dir).as_posix()[: -len(".txt")]
            if stem not in stems and label.name != "classes.txt":
                skips.bad(_Bad(f"labels/{stem}.txt", "has no image of the same name in images/"))
    ids = tuple(range(len(names)))
    return GroundTruth(folder, names, ids, tuple(images), tuple(skips.items))


# ----------------------------------------------------------------------- manifest join


def join_manifest(
    truth: GroundTruth,
    manifest: str | Path,
    *,
    path_column: str = "path",
    columns: Sequence[str] | None = None,
    on_bad_annotation: OnBad = "error",
    on_chunk: Callable[[ManifestChunk], None] | None = None,
) -> GroundTruth:
    """Attach a manifest's columns (image attributes, governance columns) to the images.

    A manifest row matches an image when its ``path_column``, joined to the manifest's folder
    (unless absolute) and resolved (``..`` and symbolic links), is the image's resolved
    :attr:`GroundTruthImage.path` — the same image, however each file spells it. The manifest is
    read with :func:`audit.contract.manifest.read_manifest_chunks`; values are stripped and an
    empty value reads ``"<missing>"``.

    Unmatched entries are decided as the classifier decides a row it cannot use (fail closed): an
    image of the annotation file that no manifest row names (no governance record, an "annotation
    for an image not in the manifest") and a manifest row that names no image of the annotation file
    (its ground truth is unknown) are each an error — or, with ``on_bad_annotation="skip"``, dropped
    from the result and listed in :attr:`GroundTruth.skipped`. Two rows naming the same image are an
    error either way.

    Args:
        truth: what :func:`read_coco` or :func:`read_yolo` returned.
        manifest: a ``.csv``, ``.tsv``, ``.jsonl``, ``.ndjson`` or ``.json`` manifest.
        path_column: the manifest's column of image paths.
        columns: the columns attached (default: every column but ``path_column``); each must exist.
        on_bad_annotation: ``"error"`` or ``"skip"`` for unmatched images and rows.
        on_chunk: called with every chunk of rows as it is read (the governance checks).

    Returns:
        A new :class:`GroundTruth`: the matched images in the annotation file's order, each with
        :attr:`GroundTruthImage.attributes` set; :attr:`GroundTruth.skipped` extended.

    Raises:
        AuditError: a missing column, an empty or unresolvable path, a repeated image, an unmatched
            image or row under ``"error"`` (one line naming the file and the line or image id).
    """
    manifest = Path(manifest)
    skips = _Skips(manifest, on_bad_annotation)
    by_path = {image.path: image for image in truth.images}
    found: dict[Path, tuple[int, dict[str, str]]] = {}
    base = manifest.parent
    wanted: list[str] | None = list(columns) if columns is not None else None
    any_rows = False
    for chunk in read_manifest_chunks(manifest):
        any_rows = True
        for j in range(len(chunk)):
            keys = chunk.keys_of(j)
            line = chunk.lines[j]
            for name in [path_column, *(wanted or [])]:
                if name not in keys:
                    raise AuditError(f"{manifest}: line {line}: column {name!r} is missing (columns: {echo(keys)})")
            text = str(chunk.column(path_column)[j]).strip()
            if not text:
                raise AuditError(f"{manifest}: line {line}: empty path (column {path_column!r})")
            try:
                resolved = Path(os.path.realpath(text if os.path.isabs(text) else base / text))
            except (OSError, ValueError) as err:
                raise AuditError(
                    f"{manifest}: line {line}: image path {echo(text)} cannot be resolved ({err})"
                ) from None
            if resolved in found:
                raise AuditError(
                    f"{manifest}: line {line}: image {echo(text)} is already listed at line {found[resolved][0]}"
                )
            if resolved not in by_path:
                skips.bad(_Bad(f"line {line}", f"image {echo(text)} is not an image of {truth.source}"))
                continue
            names = wanted if wanted is not None else [k for k in keys if k != path_column]
            values = {}
            for name in names:
                value = str(chunk.column(name)[j]).strip()
                values[name] = value if value else MISSING
            found[resolved] = (line, values)
        if on_chunk is not None:
            on_chunk(chunk)
    if not any_rows:
        raise AuditError(f"{manifest}: the manifest is empty (no rows)")
    images = []
    for image in truth.images:
        if image.path not in found:
            skips.bad(
                _Bad(f"image {image.image_id}", f"{echo(image.file_name)} of {truth.source} is not in the manifest")
            )
            continue
        images.append(replace(image, attributes=found[image.path][1]))
    return replace(truth, images=tuple(images), skipped=truth.skipped + tuple(skips.items))
