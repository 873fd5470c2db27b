"""Audit datasets: a CSV/JSONL manifest, an ImageFolder tree, or an ``.npz`` file.

Images are decoded lazily by a :class:`torch.utils.data.DataLoader` (with
workers), never all held in memory. Every sample yields a float image in
[0, 1] of shape (C, H, W) at the model's input size, its label, a stable
sample id and its subgroup attribute values.

Conversions (documented in docs/running.md):
- grayscale images are replicated to three channels (or kept as one channel
  for a one-channel model); colour images for a one-channel model use the
  ITU-R BT.601 luma;
- the EXIF orientation is applied or ignored (``data.exif``), before anything else;
- RGBA / LA images are composited over a white background, or their alpha channel is
  dropped (``data.alpha``; :func:`drop_alpha`);
- 16-bit images (``I;16``, ``I``) are scaled by 1/65535;
- images are resized (and center-cropped) to ``model.input_size`` as
  :mod:`audit.evaluation.preprocess` describes; by default straight to
  ``input_size`` with antialiased bilinear interpolation.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from audit.contract.config import DEFAULT_IMAGE_FORMATS, DEFAULT_MAX_IMAGE_PIXELS, DataConfig, ModelConfig
from audit.contract.errors import AuditError, echo
from audit.contract.manifest import CHUNK_ROWS, ManifestChunk, read_manifest_chunks
from audit.contract.text import neutralise, valid_text
from audit.evaluation.preprocess import Geometry
from audit.evaluation.table import (
    MISSING,
    CodeBuilder,
    PathColumn,
    SampleTable,
    StringColumn,
    TextBuilder,
    check_unique_ids,
    first_repeat,
)

__all__ = [
    "MISSING",
    "AuditDataset",
    "SampleTable",
    "check_label_range",
    "collate",
    "make_loader",
    "read_samples",
    "sample_keys_of",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}

#: Called with every chunk of manifest rows as it is read (the governance checks), before the rows are dropped.
ChunkHook = Callable[[ManifestChunk], None]


# ----------------------------------------------------------------------- reading


def _is_integer(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _label_values(
    raw_labels: Sequence[str], *, class_names: Sequence[str] | None
) -> tuple[list[int | None], list[str | None]]:
    """The integer label of every distinct raw label, and why it has none (None where it has one).

    Whether labels are class names or integer indices is decided once per manifest: mixing the
    two readings would silently mislabel samples when class names look like integers, so the
    whole column must be of one kind. With ``class_names``, a column that holds any class name
    that is not an integer holds class names: every other value (an integer included) is the
    error, not the class names around it. Integer labels must be class indices (0 or more, below
    the number of class names when they are given).
    """
    names = list(class_names) if class_names is not None else None
    index = {n: i for i, n in enumerate(names)} if names is not None else {}
    if names is not None and all(r in index for r in raw_labels):
        return [index[r] for r in raw_labels], [None] * len(raw_labels)
    if names is not None and any(r in index and not _is_integer(r) for r in raw_labels):
        example = next(r for r in raw_labels if r in index and not _is_integer(r))
        problem = f"is not one of model.class_names {names} (other rows give class names, such as {example!r})"
        values = [index.get(r) for r in raw_labels]
        return values, [None if v is not None else problem for v in values]
    out: list[int | None] = []
    problems: list[str | None] = []
    for raw in raw_labels:
        value = int(raw) if _is_integer(raw) else None
        if value is None:
            known = f" or a class name (model.class_names: {names})" if names else ""
            problems.append("is empty" if raw == "" else f"is not an integer{known}")
        elif value < 0:
            problems.append("is negative (integer labels are class indices 0, 1, ...)")
        elif names is not None and value >= len(names):
            problems.append(f"is not a class index of model.class_names (0..{len(names) - 1})")
        else:
            problems.append(None)
        out.append(value if problems[-1] is None else None)
    return out, problems


def _data_root(cfg: DataConfig, default: Path) -> Path | None:
    """The folder every image must lie in (``data.root``, else ``default``), resolved; None when unbounded."""
    if cfg.allow_outside_root:
        return None
    root = cfg.root if cfg.root is not None else default
    try:
        return root.resolve()
    except (OSError, RuntimeError, ValueError) as err:
        raise AuditError(f"data.root {root}: cannot be resolved ({err})") from None


def _outside(resolved: Path, root: Path, where: str, given: str) -> AuditError:
    return AuditError(
        f"{where}: image path {echo(given)} resolves to {resolved}, outside the data root {root} "
        "(set data.root to a folder that holds every image, or data.allow_outside_root: true)"
    )


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
        raise _outside(resolved, root, where, given)
    return resolved


class _RootGuard:
    """Checks that a manifest's image paths stay inside the data root, chunk by chunk.

    The same decision as :func:`_contained` (``..`` and symbolic links resolved) at a
    million rows without a system call per row: every distinct folder is resolved once and
    listed once (``os.scandir``, whose entries say whether they are symbolic links), and a
    file is resolved on its own only when it is a symbolic link. A file that does not exist
    is left to the decoder, which reports it as not found.

    The check runs when the manifest is read; the decoder opens the paths later. A symbolic link
    planted in the data folder between the two is not seen: the check guards against manifests
    and folders as they are given, not against someone who can write to the data folder during
    the run.
    """

    def __init__(self, base: Path, root: Path) -> None:
        self.base, self.root = str(base), str(root)
        self._prefix = self.root if self.root.endswith(os.sep) else self.root + os.sep
        self._folders: dict[str, tuple[str, frozenset[str] | None]] = {}

    def _folder(self, folder: str) -> tuple[str, frozenset[str] | None]:
        """The folder resolved, and the names of the symbolic links in it (None: it cannot be listed)."""
        known = self._folders.get(folder)
        if known is None:
            real = os.path.realpath(folder)
            try:
                with os.scandir(real) as entries:
                    links: frozenset[str] | None = frozenset(e.name for e in entries if e.is_symlink())
            except OSError:  # missing or unreadable: ask per file
                links = None
            known = self._folders[folder] = (real, links)
        return known

    def _resolve(self, full: str) -> str:
        folder, _, name = full.rpartition(os.sep)
        if name in ("", ".", "..") or not folder:
            return os.path.realpath(full, strict=False)
        real, links = self._folder(folder)
        candidate = real + name if real.endswith(os.sep) else real + os.sep + name
        if links is None:
            try:
                is_link = stat.S_ISLNK(os.lstat(candidate).st_mode)
            except FileNotFoundError:
                is_link = False
        else:
            is_link = name in links
        return os.path.realpath(candidate) if is_link else candidate

    def _inside(self, resolved: str) -> bool:
        return resolved == self.root or resolved.startswith(self._prefix)

    def check(self, given: Sequence[str], where: Callable[[int], str]) -> None:
        """Raise for the first of ``given`` (paths as written) that resolves outside the root."""
        base = self.base + os.sep
        for text in dict.fromkeys(given):  # each distinct path once
            if not text:
                continue  # an empty path is reported on its own
            try:
                resolved = self._resolve(text if text.startswith(os.sep) else base + text)
            except (OSError, ValueError) as err:  # a symbolic-link loop, an embedded NUL
                raise AuditError(
                    f"{where(given.index(text))}: image path {echo(text)} cannot be resolved ({err})"
                ) from None
            if not self._inside(resolved):
                raise _outside(Path(resolved), Path(self.root), where(given.index(text)), text)


def manifest_table(
    path: Path, cfg: DataConfig, *, class_names: Sequence[str] | None, on_chunk: ChunkHook | None = None
) -> SampleTable:
    """The sample table of a CSV/TSV/JSON(L) manifest, read chunk by chunk (the rows are not kept).

    Args:
        on_chunk: called with every chunk of rows after its columns were checked.

    Raises:
        AuditError: an empty manifest, a missing column, an empty path, a label that is neither an
            integer nor a class name, a repeated sample id (one line naming the file and line).
    """
    path_column, label_column = cfg.path_column, cfg.label_column
    required = (path_column, label_column, *cfg.attributes)
    ids, paths = TextBuilder(keys=True), TextBuilder()
    attributes = {a: CodeBuilder(_attribute_value) for a in cfg.attributes}
    labels = CodeBuilder(_label_text)
    label_first: dict[str, tuple[int, int]] = {}  # label text -> (position, line) of its first row
    first_keys: list[str] | None = None
    empty_path: tuple[int, int] | None = None
    lines: list[np.ndarray] = []
    path_keys: list[np.ndarray] = []  # hashes of the normalised paths (the duplicate check)
    root = _data_root(cfg, path.parent)
    guard = _RootGuard(path.parent, root) if root is not None else None
    for chunk in read_manifest_chunks(path):
        if first_keys is None:
            first_keys = chunk.keys_of(0)
        _check_columns(chunk, required, cfg, path)
        raw_paths = chunk.column(path_column)
        stripped = list(map(str.strip, raw_paths))
        chunk_ids = _sample_ids(chunk.column(cfg.id_column), stripped) if cfg.id_column in first_keys else stripped
        ids.extend(chunk_ids)
        if guard is not None:
            guard.check(stripped, lambda j: f"{path}: line {chunk.lines[j]} (sample {chunk_ids[j]})")  # noqa: B023
        if empty_path is None and not all(stripped):
            j = stripped.index("")
            empty_path = (chunk.start + j, chunk.lines[j])
        paths.extend(stripped)
        lines.append(np.asarray(chunk.lines, dtype=np.int64))
        if not cfg.allow_duplicate_paths:
            normalised = _normalised_paths(stripped, path.parent)
            path_keys.append(np.fromiter(map(hash, normalised), dtype=np.int64, count=len(normalised)))
        raw_labels = chunk.column(label_column)
        for j, text in _first_positions(raw_labels, label_first):
            label_first[text] = (chunk.start + j, chunk.lines[j])
        labels.extend(raw_labels)
        for a, builder in attributes.items():
            builder.extend(chunk.column(a))
        if on_chunk is not None:
            on_chunk(chunk)
    if first_keys is None:
        raise AuditError(f"{path}: the dataset is empty (no rows)")
    if cfg.id_column not in first_keys and "id_column" in cfg.model_fields_set:
        raise AuditError(f"{path}: data.id_column {cfg.id_column!r} is not a column (columns: {sorted(first_keys)})")
    id_column, keys = ids.build(), ids.build_keys()
    label_column_values = labels.build()
    values, problems = _label_values(label_column_values.values, class_names=class_names)
    bad = [label_first[label_column_values.values[k]] + (k,) for k, v in enumerate(values) if v is None]
    bad_label = min(bad) if bad else None
    if empty_path is not None and (bad_label is None or empty_path[0] <= bad_label[0]):
        pos, line = empty_path
        raise AuditError(f"{path}: line {line} (sample {id_column[pos]}): empty path (column {path_column!r})")
    if bad_label is not None:
        pos, line, k = bad_label
        raise AuditError(
            f"{path}: line {line} (sample {id_column[pos]}): label {label_column_values.values[k]!r} "
            f"(column {label_column!r}) {problems[k]}"
        )
    table = SampleTable(
        path,
        id_column,
        np.asarray(values, dtype=np.int64)[label_column_values.codes],
        {a: b.build() for a, b in attributes.items()},
        paths=PathColumn(paths.build(), path.parent),
        keys=keys,
        lines=np.concatenate(lines),
    )
    check_unique_ids(table.ids, table.keys, path)
    if not cfg.allow_duplicate_paths:
        _check_unique_paths(table, np.concatenate(path_keys), path)
    return table


def _normalised_paths(texts: list[str], base: Path) -> list[str]:
    """Image paths with ``.``, ``..`` and repeated separators removed, relative to ``base`` when inside it.

    Only string operations (no file system access), and only where a path can need them: a chunk
    of plain relative paths (``img/0.png``) is returned as it is.
    """
    joined = "\n".join(texts)
    sep = os.sep
    if not (
        f".{sep}" in joined
        or f"{sep}.\n" in joined
        or joined.endswith(f"{sep}.")
        or sep * 2 in joined
        or joined.startswith(sep)
        or f"\n{sep}" in joined
        or (os.altsep is not None and os.altsep in joined)
        or ":" in joined  # a drive letter
    ):
        return texts
    prefix = str(base) + sep
    out = []
    for text in texts:
        full = os.path.normpath(text if os.path.isabs(text) else prefix + text)
        out.append(full[len(prefix) :] if full.startswith(prefix) else full)
    return out


def _check_unique_paths(table: SampleTable, path_keys: np.ndarray, source: Path) -> None:
    """Two rows naming the same image are an error naming both (``data.allow_duplicate_paths`` allows them)."""
    texts, base = table.paths.texts, source.parent

    def normalised(i: int) -> str:
        return _normalised_paths([texts[i]], base)[0]

    repeat = first_repeat(path_keys, lambda i, j: normalised(i) == normalised(j))
    if repeat is None:
        return
    first, later = repeat
    again = "" if texts[first] == texts[later] else f" as {echo(texts[later])}"
    raise AuditError(
        f"{source}: {table.where(later)}: image {echo(texts[first])} is already listed at {table.where(first)}{again}; "
        "each image may appear once (data.allow_duplicate_paths: true to allow it)"
    )


def _attribute_value(raw: str) -> str:
    return (raw or "").strip() or MISSING


def _label_text(raw: str) -> str:
    return (raw or "").strip()


def _sample_ids(raw_ids: Sequence[str], stripped_paths: list[str]) -> list[str]:
    """A row's id is its id column, or its path where that is empty (before stripping, as always)."""
    ids = list(map(str.strip, raw_ids))
    if "" in raw_ids:
        for j, raw in enumerate(raw_ids):
            if not raw:
                ids[j] = stripped_paths[j]
    return ids


def _first_positions(raw_labels: Sequence[str], known: dict[str, tuple[int, int]]) -> list[tuple[int, str]]:
    """(position in the chunk, label text) of the first row of every label text not seen before."""
    out = []
    for raw in dict.fromkeys(raw_labels):
        text = _label_text(raw)
        if text not in known and all(t != text for _, t in out):
            out.append((raw_labels.index(raw), text))
    return sorted(out)


def _check_columns(chunk: ManifestChunk, required: Sequence[str], cfg: DataConfig, path: Path) -> None:
    """The first row that lacks a required column (the path and label columns, the attributes) is an error."""
    rows: Sequence[Mapping[str, Any]] = chunk.rows if chunk.rows is not None else [dict.fromkeys(chunk.columns)]
    keys = {cfg.path_column: ("data.path_column", "image paths"), cfg.label_column: ("data.label_column", "labels")}
    for j, row in enumerate(rows):
        for name in required:
            if name not in row:
                what = "attribute " if name in cfg.attributes else ""
                hint = f"; set {keys[name][0]} to the column of the {keys[name][1]}" if name in keys else ""
                raise AuditError(
                    f"{path}: line {chunk.lines[j]}: {what}column {name!r} is missing "
                    f"(columns: {', '.join(map(repr, row))}){hint}"
                )


def _emit(on_chunk: ChunkHook | None, columns: dict[str, list[str]]) -> None:
    """Hand synthetic rows (an image folder's or an npz file's) to ``on_chunk``, chunk by chunk."""
    if on_chunk is None:
        return
    n = len(next(iter(columns.values())))
    for start in range(0, n, CHUNK_ROWS):
        part = {k: v[start : start + CHUNK_ROWS] for k, v in columns.items()}
        on_chunk(ManifestChunk(start, part, list(range(start + 1, start + 1 + len(part["label"])))))


def read_image_folder(
    root: Path, cfg: DataConfig, *, class_names: Sequence[str] | None = None, on_chunk: ChunkHook | None = None
) -> SampleTable:
    """An ImageFolder tree: one folder per class. Labels follow ``model.class_names`` when
    given (every folder must be one of them), else the sorted folder names. ``on_chunk`` sees
    rows ``sample_id, path, label``."""
    if not root.is_dir():
        raise AuditError(f"{root}: image folder not found")
    if cfg.attributes:
        raise AuditError(f"{root}: data.attributes needs a manifest; an ImageFolder has no attribute columns")
    folders = sorted(d.name for d in root.iterdir() if d.is_dir())
    names = {folder: valid_text(folder) for folder in folders}  # a non-UTF-8 name as its visible escapes
    classes = list(class_names) if class_names is not None else [names[f] for f in folders]
    unknown = [names[f] for f in folders if names[f] not in classes]
    if unknown:
        raise AuditError(f"{root}: class folder {echo(unknown[0])} is not in model.class_names {echo(classes)}")
    bound = _data_root(cfg, root)
    ids, labels, paths = [], [], []
    for cls in folders:
        for f in sorted((root / cls).rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                sid = f.relative_to(root).as_posix()
                if valid_text(sid) != sid:  # a file name that is not UTF-8 cannot be a sample id or a path text
                    raise AuditError(f"{root}: '{neutralise(sid)}': the file name is not UTF-8 text; rename the file")
                ids.append(sid)
                labels.append(classes.index(names[cls]))
                paths.append(str(_contained(f, bound, f"{root}: {sid}", sid)))
    if not ids:
        raise AuditError(f"{root}: the dataset is empty (no images in class folders)")
    _emit(on_chunk, {"sample_id": ids, "path": paths, "label": [str(y) for y in labels]})
    path_column = PathColumn(StringColumn.from_strings(paths))
    return SampleTable(root, ids, labels, {}, paths=path_column, class_names=classes)


def read_npz(path: Path, cfg: DataConfig, *, on_chunk: ChunkHook | None = None) -> SampleTable:
    """An ``.npz`` with ``images`` (N,H,W), (N,H,W,C) or (N,C,H,W) with C in 1 or 3 — uint8,
    uint16 or float in [0, 1] — integer ``labels`` (N,), optional ``sample_ids`` and one (N,)
    array per attribute. The arrays are memory-mapped only as far as NumPy's npz reader
    allows: an npz is loaded whole, so use a manifest for datasets larger than memory.
    ``on_chunk`` sees rows ``sample_id, label`` and the attributes."""
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
    attributes = {}
    for attr in cfg.attributes:
        if attr not in extra:
            raise AuditError(f"{path}: attribute {attr!r} named in data.attributes is not an array in the file")
        if extra[attr].shape != (n,):
            raise AuditError(f"{path}: attribute {attr!r} has shape {extra[attr].shape}; expected ({n},)")
        attributes[attr] = [str(v) if str(v) != "" else MISSING for v in extra[attr]]
    int_labels = [int(y) for y in labels]
    table = SampleTable(path, ids, int_labels, attributes, npz_images=images)
    check_unique_ids(table.ids, table.keys, path)
    _emit(on_chunk, {"sample_id": ids, "label": [str(y) for y in int_labels], **attributes})
    return table


def check_label_range(table: SampleTable, num_classes: int) -> None:
    """Every label must be a class of the model: the first that is not is an error naming its line.

    Checked once the model's width is known, before any image is decoded.

    Raises:
        AuditError: ``<source>: line <n> (sample <id>): label <k> is outside the model's <K> classes``.
    """
    bad = np.flatnonzero((table.labels < 0) | (table.labels >= num_classes))
    if len(bad):
        i = int(bad[0])
        raise AuditError(
            f"{table.source}: {table.where(i)}: label {int(table.labels[i])} is outside the model's "
            f"{num_classes} classes (0..{num_classes - 1})"
        )


def read_samples(
    cfg: DataConfig, *, class_names: Sequence[str] | None, on_chunk: ChunkHook | None = None
) -> SampleTable:
    """Read the sample table of whichever source the config names.

    Args:
        on_chunk: called with the rows (in chunks) as they are read: the manifest's rows, or an
            image folder's / npz file's ``sample_id, path, label`` (and attribute) values.
    """
    if cfg.manifest is not None:
        return manifest_table(cfg.manifest, cfg, class_names=class_names, on_chunk=on_chunk)
    if cfg.images is not None:
        return read_image_folder(cfg.images, cfg, class_names=class_names, on_chunk=on_chunk)
    assert cfg.npz is not None
    return read_npz(cfg.npz, cfg, on_chunk=on_chunk)


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


def drop_alpha(img: Image.Image) -> Image.Image:
    """The image without its transparency, every pixel keeping its colour (``data.alpha: drop``).

    ``RGBA`` / ``PA`` / transparent-palette images become ``RGB`` and ``LA`` becomes ``L`` by Pillow's
    ``convert``, which discards the alpha channel (as ``transformers.image_utils.load_image``'s
    ``convert("RGB")`` does); a transparent colour (``info["transparency"]``) is forgotten. Other images,
    and 16-bit and float ones (whose transparency is never read), are returned as they are.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return img
    if "A" in img.getbands() or "transparency" in img.info:
        img = img.convert("L" if img.mode in ("1", "L", "LA", "La") else "RGB")
        img.info.pop("transparency", None)
    return img


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
    before it is decoded (an EXIF rotation changes no pixel count), as is one
    Pillow itself refuses as a decompression bomb. ``exif`` and ``alpha`` are the
    decided ``data.exif`` and ``data.alpha`` (:meth:`DataConfig.decoding_for`);
    an npz array has neither an orientation tag nor an alpha channel. Files are
    opened only by the Pillow plugins of ``formats`` (``data.image_formats``):
    a file of any other format, whatever its name, is a bad image, and no
    plugin that starts a program (EPS's Ghostscript) is ever tried. Whatever a
    decoder raises (any exception type) is a bad image with its reason.
    """

    def __init__(
        self,
        table: SampleTable,
        model_cfg: ModelConfig,
        indices: Sequence[int] | None = None,
        *,
        max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        exif: Literal["apply", "ignore"] = "ignore",
        alpha: Literal["drop", "composite_white"] = "composite_white",
        formats: Sequence[str] = DEFAULT_IMAGE_FORMATS,
    ):
        # Only what decoding needs: DataLoader workers receive (or inherit) nothing else of the table.
        self.paths = table.paths
        self.npz_images = table.npz_images
        self.size = tuple(model_cfg.input_size)
        self.geometry = Geometry.of(model_cfg)
        self.channels = model_cfg.channels
        if indices is None:
            indices = range(len(table))
        self.indices = indices if isinstance(indices, range) else np.asarray(indices, dtype=np.int64)
        self.max_pixels = max_pixels
        self.exif, self.alpha = exif, alpha
        self.formats = list(formats)

    def __len__(self) -> int:
        return len(self.indices)

    def _decode(self, i: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """The image at the model's input size and its decoded size (width, height) before resizing."""
        if self.npz_images is not None:
            arr = np.asarray(self.npz_images[i])
            if arr.ndim == 2:
                arr = arr[..., None]
            elif arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
                arr = arr.transpose(1, 2, 0)
            size = (int(arr.shape[1]), int(arr.shape[0]))
            if arr.dtype == np.uint8 and self.geometry.backend == "pil":
                img = Image.fromarray(np.ascontiguousarray(arr[..., 0] if arr.shape[-1] == 1 else arr))
                return pil_to_tensor(img, channels=self.channels, geometry=self.geometry), size
            if arr.dtype == np.uint8:
                arr = arr.astype(np.float32) / 255.0
            elif arr.dtype == np.uint16:
                arr = arr.astype(np.float32) / 65535.0
            else:
                arr = arr.astype(np.float32)
                _check_unit_range(arr, f"{self.npz_images.dtype} pixels")
            return to_tensor(arr, channels=self.channels, geometry=self.geometry), size
        with _pillow_pixel_limit(self.max_pixels), Image.open(self.paths[i], formats=self.formats) as img:
            width, height = img.size
            if width * height > self.max_pixels:
                raise _ImageTooLarge(
                    f"image is {width}x{height} = {width * height} pixels, more than data.max_image_pixels "
                    f"({self.max_pixels}); refused before decoding"
                )
            img.load()
            if self.exif == "apply":
                ImageOps.exif_transpose(img, in_place=True)  # as transformers' load_image, without a copy
            if self.alpha == "drop":
                img = drop_alpha(img)  # composite_white: to_float_array / _eight_bit composite
            return pil_to_tensor(img, channels=self.channels, geometry=self.geometry), img.size

    def __getitem__(self, pos: int) -> dict[str, Any]:
        i = int(self.indices[pos])
        item: dict[str, Any] = {"index": i}
        try:
            item["image"], item["size"] = self._decode(i)
        except DECODE_ERRORS as err:
            item["error"] = decode_error(err)
        return item


#: What decoding a bad image file raises (:func:`decode_error` words each as one line): anything. Pillow's
#: plugins raise OSError, SyntaxError, ValueError, EOFError, struct.error, their own exception types and, for
#: a plugin that starts a program, that program's errors; each is a bad image (``on_bad_image``), never an
#: internal error that ends the run from inside a DataLoader worker.
DECODE_ERRORS: tuple[type[Exception], ...] = (Exception,)

#: The decoder errors :func:`decode_error` words by their message alone (others also by their type).
_KNOWN_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error)


def decode_error(err: BaseException) -> str:
    """Why an image could not be decoded, in one line (``skipped.csv``'s reason)."""
    if isinstance(err, FileNotFoundError):
        return "image file not found"
    if isinstance(err, UnidentifiedImageError):
        return "not a readable image (corrupt or unknown format)"
    if isinstance(err, _ImageTooLarge):
        return str(err)
    if isinstance(err, Image.DecompressionBombError):
        return valid_text(f"refused as a decompression bomb ({err})")
    if isinstance(err, _KNOWN_ERRORS):
        return valid_text(f"cannot decode image ({str(err)[:200]})")
    return valid_text(f"cannot decode image ({type(err).__name__}: {str(err)[:200]})")


def open_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int,
    exif: Literal["apply", "ignore"],
    alpha: Literal["drop", "composite_white"],
    formats: Sequence[str] = DEFAULT_IMAGE_FORMATS,
) -> np.ndarray:
    """Decode one image file at its own size to float32 HWC in [0, 1], as :class:`AuditDataset` decodes it.

    The header's pixel count is checked against ``max_pixels`` before any pixel is decoded; the EXIF
    orientation is applied when ``exif`` is ``apply``; ``alpha`` as ``data.alpha``; only the Pillow plugins of
    ``formats`` (``data.image_formats``) are tried.

    Raises:
        One of :data:`DECODE_ERRORS` (worded by :func:`decode_error`).
    """
    with _pillow_pixel_limit(max_pixels), Image.open(path, formats=list(formats)) as img:
        width, height = img.size
        if width * height > max_pixels:
            raise _ImageTooLarge(
                f"image is {width}x{height} = {width * height} pixels, more than data.max_image_pixels "
                f"({max_pixels}); refused before decoding"
            )
        img.load()
        if exif == "apply":
            ImageOps.exif_transpose(img, in_place=True)
        if alpha == "drop":
            img = drop_alpha(img)
        return to_float_array(img)


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the good images (and their decoded sizes, (B, 2) as width, height); pass the failures on as (index, reason)."""
    good = [it for it in items if "image" in it]
    return {
        "index": torch.tensor([it["index"] for it in good], dtype=torch.int64),
        "images": torch.stack([it["image"] for it in good]) if good else None,
        "sizes": torch.tensor([it["size"] for it in good], dtype=torch.int64).reshape(-1, 2),
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
    """Stable 63-bit keys of every sample id (see :func:`audit.contract.seeds.sample_key`), sharing the table's memory."""
    return torch.from_numpy(table.keys)
