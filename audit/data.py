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
- images are resized to ``model.input_size`` with antialiased bilinear
  interpolation.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from audit.config import DataConfig, ModelConfig
from audit.errors import AuditError
from stressors.base import sample_key

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


def _read_manifest_rows(path: Path) -> list[dict[str, str]]:
    try:
        if path.suffix.lower() == ".jsonl":
            rows = []
            with path.open(encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError:
                        raise AuditError(f"{path}: line {lineno}: not valid JSON") from None
                    if not isinstance(obj, dict):
                        raise AuditError(f"{path}: line {lineno}: expected a JSON object")
                    rows.append({k: "" if v is None else str(v) for k, v in obj.items()})
            return rows
        with path.open(encoding="utf-8", newline="") as fh:
            return [dict(r) for r in csv.DictReader(fh)]
    except FileNotFoundError:
        raise AuditError(f"{path}: manifest not found") from None
    except UnicodeDecodeError:
        raise AuditError(f"{path}: manifest is not UTF-8 text") from None


def _parse_label(raw: str, *, where: str, class_names: Sequence[str] | None) -> int:
    raw = (raw or "").strip()
    if class_names is not None and raw in class_names:
        return list(class_names).index(raw)
    try:
        return int(raw)
    except ValueError:
        known = f"; known class names: {list(class_names)}" if class_names else ""
        raise AuditError(f"{where}: label {raw!r} is not an integer or a class name{known}") from None


def read_manifest(path: Path, cfg: DataConfig, *, class_names: Sequence[str] | None) -> SampleTable:
    rows = _read_manifest_rows(path)
    if not rows:
        raise AuditError(f"{path}: the dataset is empty (no rows)")
    columns = set(rows[0])
    for required in ("path", "label"):
        if required not in columns:
            raise AuditError(f"{path}: column {required!r} is missing (columns: {sorted(columns)})")
    for attr in cfg.attributes:
        if attr not in columns:
            raise AuditError(f"{path}: attribute {attr!r} named in data.attributes is not a column")
    base = path.parent
    ids, labels, paths = [], [], []
    for i, row in enumerate(rows):
        sid = (row.get(cfg.id_column) or row["path"]).strip()
        where = f"{path}: row {i + 2} (sample {sid})"
        if not row["path"]:
            raise AuditError(f"{where}: empty path")
        ids.append(sid)
        labels.append(_parse_label(row["label"], where=where, class_names=class_names))
        p = Path(row["path"])
        paths.append(p if p.is_absolute() else base / p)
    _check_unique(ids, path)
    attributes = {a: [(r.get(a) or "").strip() or MISSING for r in rows] for a in cfg.attributes}
    return SampleTable(path, ids, labels, attributes, paths=paths, rows=rows)


def read_image_folder(root: Path, cfg: DataConfig) -> SampleTable:
    if not root.is_dir():
        raise AuditError(f"{root}: image folder not found")
    if cfg.attributes:
        raise AuditError(f"{root}: data.attributes needs a manifest; an ImageFolder has no attribute columns")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    ids, labels, paths = [], [], []
    for k, cls in enumerate(classes):
        for f in sorted((root / cls).rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                ids.append(f.relative_to(root).as_posix())
                labels.append(k)
                paths.append(f)
    if not ids:
        raise AuditError(f"{root}: the dataset is empty (no images in class folders)")
    rows = [{"sample_id": i, "path": str(p), "label": str(y)} for i, p, y in zip(ids, paths, labels)]
    return SampleTable(root, ids, labels, {}, paths=paths, rows=rows, class_names=classes)


def read_npz(path: Path, cfg: DataConfig) -> SampleTable:
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise AuditError(f"{path}: npz file not found") from None
    except (OSError, ValueError) as err:
        raise AuditError(f"{path}: not a readable .npz file ({err})") from None
    for key in ("images", "labels"):
        if key not in archive.files:
            raise AuditError(f"{path}: array {key!r} is missing (arrays: {archive.files})")
    images, labels = archive["images"], archive["labels"]
    n = len(labels)
    if n == 0:
        raise AuditError(f"{path}: the dataset is empty (no samples)")
    if images.shape[0] != n:
        raise AuditError(f"{path}: {images.shape[0]} images but {n} labels")
    ids = [str(s) for s in archive["sample_ids"]] if "sample_ids" in archive.files else [str(i) for i in range(n)]
    _check_unique(ids, path)
    attributes = {}
    for attr in cfg.attributes:
        if attr not in archive.files:
            raise AuditError(f"{path}: attribute {attr!r} named in data.attributes is not an array in the file")
        attributes[attr] = [str(v) if str(v) != "" else MISSING for v in archive[attr]]
    rows = [{"sample_id": i, "label": str(int(y)), **{a: attributes[a][j] for a in attributes}} for j, (i, y) in enumerate(zip(ids, labels))]
    return SampleTable(path, ids, [int(y) for y in labels], attributes, rows=rows, npz_images=images)


def _check_unique(ids: list[str], source: Path) -> None:
    seen: set[str] = set()
    for sid in ids:
        if sid in seen:
            raise AuditError(f"{source}: sample id {sid!r} appears more than once")
        seen.add(sid)


def read_samples(cfg: DataConfig, *, class_names: Sequence[str] | None) -> SampleTable:
    """Read the sample table of whichever source the config names."""
    if cfg.manifest is not None:
        return read_manifest(cfg.manifest, cfg, class_names=class_names)
    if cfg.images is not None:
        return read_image_folder(cfg.images, cfg)
    assert cfg.npz is not None
    return read_npz(cfg.npz, cfg)


# ----------------------------------------------------------------------- decoding


def to_float_array(img: Image.Image) -> np.ndarray:
    """Decode a PIL image to float32 HWC in [0, 1] (see the module docstring)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return (np.clip(arr / scale, 0, 1)[..., None]).astype(np.float32)
    if img.mode == "F":
        return np.clip(np.asarray(img, dtype=np.float32), 0, 1)[..., None]
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
    elif img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr if arr.ndim == 3 else arr[..., None]


def to_tensor(arr: np.ndarray, *, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """HWC float array -> (channels, H, W) float tensor at ``size`` (H, W)."""
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float()
    if t.shape[0] == 1 and channels == 3:
        t = t.expand(3, -1, -1)
    elif t.shape[0] == 3 and channels == 1:
        t = (0.299 * t[0] + 0.587 * t[1] + 0.114 * t[2]).unsqueeze(0)
    if tuple(t.shape[1:]) != tuple(size):
        t = F.interpolate(t.unsqueeze(0), size=tuple(size), mode="bilinear", antialias=True, align_corners=False)[0]
    return t.clamp(0, 1).contiguous()


class AuditDataset(Dataset):
    """Map-style dataset over a :class:`SampleTable`, optionally restricted to ``indices``.

    ``__getitem__`` never raises on a bad image: it returns the error so that the
    collate step can apply ``on_bad_image`` with the sample named.
    """

    def __init__(self, table: SampleTable, model_cfg: ModelConfig, indices: Sequence[int] | None = None):
        self.table = table
        self.size = tuple(model_cfg.input_size)
        self.channels = model_cfg.channels
        self.indices = list(range(len(table))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def _decode(self, i: int) -> torch.Tensor:
        if self.table.npz_images is not None:
            arr = np.asarray(self.table.npz_images[i])
            if arr.ndim == 2:
                arr = arr[..., None]
            elif arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
                arr = arr.transpose(1, 2, 0)
            if arr.dtype == np.uint8:
                arr = arr.astype(np.float32) / 255.0
            elif arr.dtype == np.uint16:
                arr = arr.astype(np.float32) / 65535.0
            else:
                arr = arr.astype(np.float32)
                if arr.min() < 0 or arr.max() > 1:
                    raise ValueError("float pixel values outside [0, 1]")
            return to_tensor(arr, channels=self.channels, size=self.size)
        with Image.open(self.table.paths[i]) as img:
            img.load()
            return to_tensor(to_float_array(img), channels=self.channels, size=self.size)

    def __getitem__(self, pos: int) -> dict[str, Any]:
        i = self.indices[pos]
        item: dict[str, Any] = {"index": i}
        try:
            item["image"] = self._decode(i)
        except FileNotFoundError:
            item["error"] = "image file not found"
        except UnidentifiedImageError:
            item["error"] = "not a readable image (corrupt or unknown format)"
        except (OSError, ValueError, SyntaxError) as err:
            item["error"] = f"cannot decode image ({err})"
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
    """Stable 63-bit keys of every sample id (see :func:`stressors.base.sample_key`)."""
    return torch.tensor([sample_key(s) for s in table.ids], dtype=torch.int64)
