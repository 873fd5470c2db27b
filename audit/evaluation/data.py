"""Audit datasets: a CSV/JSONL manifest, an ImageFolder tree, or an ``.npz`` file.

Images are decoded lazily by a :class:`torch.utils.data.DataLoader` (with
workers), never all held in memory. Every sample yields a float image in
[0, 1] of shape (C, H, W) at the model's input size, its label, a stable
sample id and its subgroup attribute values.

Conversions (documented in the README):
- grayscale images are replicated to three channels (or kept as one channel
  for a one-channel model); colour images for a one-channel model use the
  ITU-R BT.601 luma;
- RGBA / LA images are composited over a white background;
- 16-bit images (``I;16``, ``I``) are scaled by 1/65535;
- images are resized (and center-cropped) to ``model.input_size`` as
  :mod:`audit.evaluation.preprocess` describes; by default straight to
  ``input_size`` with antialiased bilinear interpolation.
"""

from __future__ import annotations

import contextlib
import struct
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from audit.contract.config import DEFAULT_MAX_IMAGE_PIXELS, DataConfig, ModelConfig
from audit.contract.errors import AuditError, echo
from audit.contract.manifest import read_manifest
from audit.contract.seeds import sample_key
from audit.evaluation.preprocess import Geometry

MISSING = "<missing>"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}


@dataclass
class SampleTable:
    """What is known about the samples before any image is decoded.

    Attributes:
        source: the manifest / folder / npz path (for messages and digests).
        ids: sample ids (unique strings).
        labels: integer labels.
        attributes: attribute name -> one value per sample (strings, ``<missing>`` if absent).
        paths: image paths (None for npz data).
        rows: the raw manifest rows (all columns), for governance checks.
        class_names: class names known from the data (ImageFolder), else None.
    """

    source: Path
    ids: list[str]
    labels: list[int]
    attributes: dict[str, list[str]]
    paths: list[Path] | None = None
    rows: list[dict[str, str]] = field(default_factory=list)
    class_names: list[str] | None = None
    npz_images: Any = None

    def __len__(self) -> int:
        return len(self.ids)


# ----------------------------------------------------------------------- reading


def _label_reader(raw_labels: list[str], *, path: Path, class_names: Sequence[str] | None):
    """Decide once per manifest whether labels are class names or integer indices.

    Mixing the two readings would silently mislabel samples when class names look
    like integers, so the whole column must be of one kind.
    """
    names = list(class_names) if class_names is not None else None
    if names is not None and all(r in names for r in raw_labels):
        return lambda raw, where: names.index(raw)

    def as_int(raw: str, where: str) -> int:
        try:
            return int(raw)
        except ValueError:
            known = f"; known class names: {names}" if names else ""
            raise AuditError(f"{where}: label {raw!r} is not an integer or a class name{known}") from None

    return as_int


def _data_root(cfg: DataConfig, default: Path) -> Path | None:
    """The folder every image must lie in (``data.root``, else ``default``), resolved; None when unbounded."""
    if cfg.allow_outside_root:
        return None
    root = cfg.root if cfg.root is not None else default
    try:
        return root.resolve()
    except (OSError, RuntimeError, ValueError) as err:
        raise AuditError(f"data.root {root}: cannot be resolved ({err})") from None


def _contained(path: Path, root: Path | None, where: str, given: str) -> Path:
    """``path`` with ``..`` and symbolic links resolved; an error when it leaves ``root``.

    Args:
        path: The image path (absolute, or joined to the manifest's folder).
        root: The resolved data root, or None (``data.allow_outside_root``).
        where: The manifest row or folder entry, for the message.
        given: The path as written, for the message.

    Raises:
        AuditError: the resolved path is outside ``root``, or cannot be resolved.
    """
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError, ValueError) as err:  # a symbolic-link loop, an embedded NUL
        raise AuditError(f"{where}: image path {echo(given)} cannot be resolved ({err})") from None
    if root is not None and not resolved.is_relative_to(root):
        raise AuditError(
            f"{where}: image path {echo(given)} resolves to {resolved}, outside the data root {root} "
            "(set data.root to a folder that holds every image, or data.allow_outside_root: true)"
        )
    return resolved


def manifest_table(path: Path, cfg: DataConfig, *, class_names: Sequence[str] | None) -> SampleTable:
    numbered = [(row.line, row) for row in read_manifest(path)]
    if not numbered:
        raise AuditError(f"{path}: the dataset is empty (no rows)")
    rows = [row for _, row in numbered]
    for lineno, row in numbered:
        for required in ("path", "label", *cfg.attributes):
            if required not in row:
                what = "attribute " if required in cfg.attributes else ""
                raise AuditError(
                    f"{path}: line {lineno}: {what}column {required!r} is missing (columns: {sorted(row)})"
                )
    use_ids = cfg.id_column in rows[0]
    if not use_ids and "id_column" in cfg.model_fields_set:
        raise AuditError(f"{path}: data.id_column {cfg.id_column!r} is not a column (columns: {sorted(rows[0])})")
    read_label = _label_reader([(r["label"] or "").strip() for r in rows], path=path, class_names=class_names)
    base = path.parent
    root = _data_root(cfg, base)
    ids, labels, paths = [], [], []
    for lineno, row in numbered:
        sid = ((row.get(cfg.id_column) if use_ids else None) or row["path"]).strip()
        where = f"{path}: line {lineno} (sample {sid})"
        if not row["path"].strip():
            raise AuditError(f"{where}: empty path")
        ids.append(sid)
        labels.append(read_label((row["label"] or "").strip(), where))
        given = row["path"].strip()
        p = Path(given)
        paths.append(_contained(p if p.is_absolute() else base / p, root, where, given))
    _check_unique(ids, path)
    attributes = {a: [(r.get(a) or "").strip() or MISSING for r in rows] for a in cfg.attributes}
    return SampleTable(path, ids, labels, attributes, paths=paths, rows=rows)


def read_image_folder(root: Path, cfg: DataConfig, *, class_names: Sequence[str] | None = None) -> SampleTable:
    """An ImageFolder tree: one folder per class. Labels follow ``model.class_names`` when
    given (every folder must be one of them), else the sorted folder names."""
    if not root.is_dir():
        raise AuditError(f"{root}: image folder not found")
    if cfg.attributes:
        raise AuditError(f"{root}: data.attributes needs a manifest; an ImageFolder has no attribute columns")
    folders = sorted(d.name for d in root.iterdir() if d.is_dir())
    classes = list(class_names) if class_names is not None else folders
    unknown = [f for f in folders if f not in classes]
    if unknown:
        raise AuditError(f"{root}: class folder {unknown[0]!r} is not in model.class_names {classes}")
    bound = _data_root(cfg, root)
    ids, labels, paths = [], [], []
    for cls in folders:
        for f in sorted((root / cls).rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                sid = f.relative_to(root).as_posix()
                ids.append(sid)
                labels.append(classes.index(cls))
                paths.append(_contained(f, bound, f"{root}: {sid}", sid))
    if not ids:
        raise AuditError(f"{root}: the dataset is empty (no images in class folders)")
    rows = [{"sample_id": i, "path": str(p), "label": str(y)} for i, p, y in zip(ids, paths, labels)]
    return SampleTable(root, ids, labels, {}, paths=paths, rows=rows, class_names=classes)


def read_npz(path: Path, cfg: DataConfig) -> SampleTable:
    """An ``.npz`` with ``images`` (N,H,W), (N,H,W,C) or (N,C,H,W) with C in 1 or 3 — uint8,
    uint16 or float in [0, 1] — integer ``labels`` (N,), optional ``sample_ids`` and one (N,)
    array per attribute. The arrays are memory-mapped only as far as NumPy's npz reader
    allows: an npz is loaded whole, so use a manifest for datasets larger than memory."""
    try:
        archive = np.load(path, allow_pickle=False)
        files = archive.files
        for key in ("images", "labels"):
            if key not in files:
                raise AuditError(f"{path}: array {key!r} is missing (arrays: {files})")
        images, labels = archive["images"], archive["labels"]
        extra = {k: archive[k] for k in ["sample_ids", *cfg.attributes] if k in files}
    except FileNotFoundError:
        raise AuditError(f"{path}: npz file not found") from None
    except (OSError, ValueError) as err:
        raise AuditError(f"{path}: not a readable .npz file ({str(err).splitlines()[0]})") from None
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or np.all(labels == np.round(labels))):
        raise AuditError(
            f"{path}: 'labels' must be a 1-D array of integers (got shape {labels.shape}, dtype {labels.dtype})"
        )
    n = len(labels)
    if n == 0:
        raise AuditError(f"{path}: the dataset is empty (no samples)")
    channels_ok = images.ndim == 3 or (images.ndim == 4 and (images.shape[-1] in (1, 3) or images.shape[1] in (1, 3)))
    if images.shape[0] != n or not channels_ok or images.dtype.kind not in "uif":
        raise AuditError(
            f"{path}: 'images' must be (N,H,W), (N,H,W,C) or (N,C,H,W) with C = 1 or 3 and N = {n} labels, "
            f"numeric; got shape {images.shape}, dtype {images.dtype}"
        )
    ids = [str(s) for s in extra["sample_ids"]] if "sample_ids" in extra else [str(i) for i in range(n)]
    _check_unique(ids, path)
    attributes = {}
    for attr in cfg.attributes:
        if attr not in extra:
            raise AuditError(f"{path}: attribute {attr!r} named in data.attributes is not an array in the file")
        if extra[attr].shape != (n,):
            raise AuditError(f"{path}: attribute {attr!r} has shape {extra[attr].shape}; expected ({n},)")
        attributes[attr] = [str(v) if str(v) != "" else MISSING for v in extra[attr]]
    int_labels = [int(y) for y in labels]
    rows = [
        {"sample_id": i, "label": str(y), **{a: attributes[a][j] for a in attributes}}
        for j, (i, y) in enumerate(zip(ids, int_labels))
    ]
    return SampleTable(path, ids, int_labels, attributes, rows=rows, npz_images=images)


def _check_unique(ids: list[str], source: Path) -> None:
    seen: set[str] = set()
    for sid in ids:
        if sid in seen:
            raise AuditError(f"{source}: sample id {sid!r} appears more than once")
        seen.add(sid)


def read_samples(cfg: DataConfig, *, class_names: Sequence[str] | None) -> SampleTable:
    """Read the sample table of whichever source the config names."""
    if cfg.manifest is not None:
        return manifest_table(cfg.manifest, cfg, class_names=class_names)
    if cfg.images is not None:
        return read_image_folder(cfg.images, cfg, class_names=class_names)
    assert cfg.npz is not None
    return read_npz(cfg.npz, cfg)


# ----------------------------------------------------------------------- decoding


def _check_unit_range(arr: np.ndarray, what: str) -> None:
    """Raise ValueError (a bad image) for NaN/inf or values outside [0, 1]: never clip silently."""
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contain NaN or inf")
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(f"{what} outside [0, 1] (got {arr.min():.3g}..{arr.max():.3g})")


def to_float_array(img: Image.Image) -> np.ndarray:
    """Decode a PIL image to float32 HWC in [0, 1] (see the module docstring)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return (np.clip(arr / scale, 0, 1)[..., None]).astype(np.float32)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        _check_unit_range(arr, "float image")
        return arr[..., None]
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
    elif img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr if arr.ndim == 3 else arr[..., None]


def _channels(t: torch.Tensor, channels: int) -> torch.Tensor:
    if t.shape[0] == 1 and channels == 3:
        return t.expand(3, -1, -1)
    if t.shape[0] == 3 and channels == 1:
        return (0.299 * t[0] + 0.587 * t[1] + 0.114 * t[2]).unsqueeze(0)
    return t


def to_tensor(arr: np.ndarray, *, channels: int, geometry: Geometry) -> torch.Tensor:
    """HWC float array in [0, 1] -> (channels, H, W) float tensor at ``geometry.size``."""
    if geometry.backend == "pil":
        t = torch.from_numpy(geometry.resize_pil_float(arr))
        return _channels(t, channels).clamp(0, 1).contiguous()
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float()
    return geometry.resize_tensor(_channels(t, channels)).clamp(0, 1).contiguous()


def _eight_bit(img: Image.Image) -> Image.Image | None:
    """An 8-bit ``L`` or ``RGB`` image (transparency composited over white), or None for 16-bit and float."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return None
    if "A" in img.getbands() or img.info.get("transparency") is not None:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return img if img.mode in ("L", "RGB") else img.convert("RGB")


def pil_to_tensor(img: Image.Image, *, channels: int, geometry: Geometry) -> torch.Tensor:
    """A decoded image -> (channels, H, W) float tensor in [0, 1] at ``geometry.size``.

    With the ``pil`` backend an 8-bit image is resized in 8 bits (as the Hugging Face image
    processors do); everything else goes through :func:`to_float_array` and :func:`to_tensor`.
    """
    eight = _eight_bit(img) if geometry.backend == "pil" else None
    if eight is None:
        return to_tensor(to_float_array(img), channels=channels, geometry=geometry)
    t = torch.from_numpy(geometry.resize_pil(eight))
    return _channels(t, channels).contiguous()


class _ImageTooLarge(ValueError):
    """An image whose header announces more pixels than ``data.max_image_pixels``."""


@contextlib.contextmanager
def _pillow_pixel_limit(max_pixels: int) -> Iterator[None]:
    """Pillow's own decompression-bomb limit set to ``max_pixels`` while one image is opened.

    Pillow raises :class:`PIL.Image.DecompressionBombError` above twice its
    ``MAX_IMAGE_PIXELS`` and warns above it; cvaudit's own check
    (:meth:`AuditDataset._decode`) refuses anything above ``max_pixels`` before
    a pixel is decoded, so the warning is not needed.
    """
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


class AuditDataset(Dataset):
    """Map-style dataset over a :class:`SampleTable`, optionally restricted to ``indices``.

    ``__getitem__`` never raises on a bad image: it returns the error so that the
    collate step can apply ``on_bad_image`` with the sample named. This holds in
    DataLoader workers too. An image whose header announces more than
    ``max_pixels`` pixels (``data.max_image_pixels``) is a bad image, refused
    before it is decoded, as is one Pillow itself refuses as a decompression bomb.
    """

    def __init__(
        self,
        table: SampleTable,
        model_cfg: ModelConfig,
        indices: Sequence[int] | None = None,
        *,
        max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ):
        self.table = table
        self.size = tuple(model_cfg.input_size)
        self.geometry = Geometry.of(model_cfg)
        self.channels = model_cfg.channels
        self.indices = list(range(len(table))) if indices is None else list(indices)
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.indices)

    def _decode(self, i: int) -> torch.Tensor:
        if self.table.npz_images is not None:
            arr = np.asarray(self.table.npz_images[i])
            if arr.ndim == 2:
                arr = arr[..., None]
            elif arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
                arr = arr.transpose(1, 2, 0)
            if arr.dtype == np.uint8 and self.geometry.backend == "pil":
                img = Image.fromarray(np.ascontiguousarray(arr[..., 0] if arr.shape[-1] == 1 else arr))
                return pil_to_tensor(img, channels=self.channels, geometry=self.geometry)
            if arr.dtype == np.uint8:
                arr = arr.astype(np.float32) / 255.0
            elif arr.dtype == np.uint16:
                arr = arr.astype(np.float32) / 65535.0
            else:
                arr = arr.astype(np.float32)
                _check_unit_range(arr, f"{self.table.npz_images.dtype} pixels")
            return to_tensor(arr, channels=self.channels, geometry=self.geometry)
        with _pillow_pixel_limit(self.max_pixels), Image.open(self.table.paths[i]) as img:
            width, height = img.size
            if width * height > self.max_pixels:
                raise _ImageTooLarge(
                    f"image is {width}x{height} = {width * height} pixels, more than data.max_image_pixels "
                    f"({self.max_pixels}); refused before decoding"
                )
            img.load()
            return pil_to_tensor(img, channels=self.channels, geometry=self.geometry)

    def __getitem__(self, pos: int) -> dict[str, Any]:
        i = self.indices[pos]
        item: dict[str, Any] = {"index": i}
        try:
            item["image"] = self._decode(i)
        except FileNotFoundError:
            item["error"] = "image file not found"
        except UnidentifiedImageError:
            item["error"] = "not a readable image (corrupt or unknown format)"
        except _ImageTooLarge as err:
            item["error"] = str(err)
        except Image.DecompressionBombError as err:
            item["error"] = f"refused as a decompression bomb ({err})"
        except (OSError, ValueError, SyntaxError, EOFError, struct.error) as err:
            item["error"] = f"cannot decode image ({str(err)[:200]})"
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the good images; pass the failures on as (index, reason)."""
    good = [it for it in items if "image" in it]
    return {
        "index": torch.tensor([it["index"] for it in good], dtype=torch.int64),
        "images": torch.stack([it["image"] for it in good]) if good else None,
        "bad": [(it["index"], it["error"]) for it in items if "error" in it],
    }


def make_loader(dataset: AuditDataset, *, batch_size: int, num_workers: int) -> DataLoader:
    """A deterministic (unshuffled) DataLoader with workers for streaming decode."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate,
        persistent_workers=False,
    )


def sample_keys_of(table: SampleTable) -> torch.Tensor:
    """Stable 63-bit keys of every sample id (see :func:`audit.contract.seeds.sample_key`)."""
    return torch.tensor([sample_key(s) for s in table.ids], dtype=torch.int64)
