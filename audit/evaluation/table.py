"""The per-sample table, column by column: what is known about the samples before any image is decoded.

A million samples must not cost a million Python objects per column, and DataLoader
workers must not inherit (or, with the ``spawn``/``forkserver`` start methods, receive)
more than they decode. So every column is a few NumPy arrays:

- :class:`StringColumn`: strings as one UTF-8 buffer plus offsets (sample ids, image paths);
- :class:`CodedColumn`: a categorical column, its sorted distinct values plus one small
  integer code per sample (subgroup attributes);
- :class:`PathColumn`: image paths as a :class:`StringColumn` relative to a base folder;
- labels and the 63-bit sample keys (:func:`audit.contract.seeds.sample_key`) as int64 arrays.

Memory at a million samples with 12-character ids, 30-character paths and two attributes:
about 12 + 30 MB of text, 8 MB of offsets per text column, 8 MB of labels, 8 MB of keys and
2 x 4 MB of attribute codes. The raw manifest rows are never kept: they are read in chunks
(:func:`audit.contract.manifest.read_manifest_chunks`), handed to the governance checks chunk
by chunk, and dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audit.contract.errors import AuditError
from audit.contract.seeds import MASK63, sample_key

__all__ = ["CodeBuilder", "CodedColumn", "PathColumn", "SampleTable", "StringColumn", "TextBuilder"]

MISSING = "<missing>"


class StringColumn:
    """Immutable strings stored as one UTF-8 buffer and ``len + 1`` offsets.

    ``column[i]`` decodes one string; iteration decodes them in order. Pickling copies
    the buffer and the offsets only (two objects, whatever the number of strings).
    """

    __slots__ = ("_buffer", "_offsets")

    def __init__(self, buffer: bytes, offsets: np.ndarray) -> None:
        self._buffer = buffer
        self._offsets = offsets

    @classmethod
    def from_strings(cls, values: Iterable[str]) -> StringColumn:
        """A column of ``values`` (each a ``str``)."""
        builder = TextBuilder()
        builder.extend(list(values))
        return builder.build()

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> str:
        offsets = self._offsets
        return self._buffer[offsets[i] : offsets[i + 1]].decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        buffer, offsets = self._buffer, self._offsets.tolist()
        for a, b in zip(offsets, offsets[1:]):
            yield buffer[a:b].decode("utf-8")

    def tolist(self) -> list[str]:
        """Every string, as a list."""
        return list(self)

    @property
    def nbytes(self) -> int:
        """Bytes held (buffer and offsets)."""
        return len(self._buffer) + self._offsets.nbytes

    def __repr__(self) -> str:
        return f"StringColumn({len(self)} strings, {self.nbytes} bytes)"


class TextBuilder:
    """Appends strings chunk by chunk and builds a :class:`StringColumn` without a copy per string.

    Args:
        keys: also compute every string's sample key (:func:`audit.contract.seeds.sample_key`)
            from its UTF-8 bytes while they are at hand (``build_keys``).
    """

    def __init__(self, *, keys: bool = False) -> None:
        self._parts: list[bytes] = []
        self._lengths: list[np.ndarray] = []
        self._keys: list[np.ndarray] | None = [] if keys else None

    def extend(self, values: Sequence[str]) -> None:
        """Append ``values`` (strings)."""
        encoded = list(map(str.encode, values))  # UTF-8
        self._lengths.append(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)))
        self._parts.append(b"".join(encoded))
        if self._keys is not None:
            self._keys.append(sample_keys_of_bytes(encoded))

    def build(self) -> StringColumn:
        """The column of everything appended (the builder is emptied)."""
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)
        buffer = b"".join(self._parts)
        self._parts, self._lengths = [], []
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64 if len(buffer) >= 2**31 else np.int32)
        np.cumsum(lengths, out=offsets[1:])
        return StringColumn(buffer, offsets)

    def build_keys(self) -> np.ndarray:
        """The sample keys of everything appended (int64), when the builder was made with ``keys=True``."""
        assert self._keys is not None, "TextBuilder(keys=True) computes keys"
        keys = np.concatenate(self._keys) if self._keys else np.zeros(0, np.int64)
        self._keys = []
        return keys


def sample_keys_of_bytes(encoded: Sequence[bytes]) -> np.ndarray:
    """:func:`audit.contract.seeds.sample_key` of every UTF-8 encoded id, as int64 (one array op per step).

    The key is the first 8 bytes of the id's SHA-256 read little-endian, top bit cleared.
    """
    sha256 = hashlib.sha256
    digests = b"".join([sha256(e).digest()[:8] for e in encoded])
    return (np.frombuffer(digests, dtype="<u8") & np.uint64(MASK63)).astype(np.int64)


@dataclass(frozen=True, eq=False)
class CodedColumn:
    """A categorical column: ``values[codes[i]]`` is sample ``i``'s value.

    Attributes:
        values: the distinct values present, sorted (Python string order).
        codes: one integer per sample (int32), an index into ``values``.
    """

    values: tuple[str, ...]
    codes: np.ndarray

    @classmethod
    def from_strings(cls, values: Iterable[str]) -> CodedColumn:
        """A column of ``values`` (strings)."""
        builder = CodeBuilder()
        builder.extend(list(values))
        return builder.build()

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, i: int) -> str:
        return self.values[self.codes[i]]

    def __iter__(self) -> Iterator[str]:
        values = self.values
        return (values[c] for c in self.codes.tolist())

    def tolist(self) -> list[str]:
        """Every sample's value, as a list."""
        return list(self)

    def counts(self, keep: np.ndarray | None = None) -> dict[str, int]:
        """Value -> number of samples (only those where ``keep`` is True, when given); values
        without a sample are left out; sorted by value."""
        codes = self.codes if keep is None else self.codes[keep]
        found = np.bincount(codes, minlength=len(self.values))
        return {v: int(c) for v, c in zip(self.values, found.tolist()) if c}


class CodeBuilder:
    """Appends values chunk by chunk and builds a :class:`CodedColumn` (values sorted at the end).

    Args:
        normalise: applied to each distinct raw value once (e.g. strip and mark empties missing).
    """

    def __init__(self, normalise: Callable[[str], str] | None = None) -> None:
        self._normalise = normalise
        self._raw: dict[str, int] = {}  # raw value -> code
        self._index: dict[str, int] = {}  # normalised value -> code
        self._codes: list[np.ndarray] = []

    def extend(self, values: Sequence[str]) -> None:
        """Append ``values`` (strings)."""
        raw, index = self._raw, self._index
        for value in dict.fromkeys(values):  # the chunk's distinct values, at C speed
            if value not in raw:
                text = self._normalise(value) if self._normalise is not None else value
                raw[value] = index.setdefault(text, len(index))
        self._codes.append(np.fromiter(map(raw.__getitem__, values), dtype=np.int32, count=len(values)))

    def build(self) -> CodedColumn:
        """The column of everything appended."""
        first_seen = list(self._index)
        order = sorted(range(len(first_seen)), key=first_seen.__getitem__)
        remap = np.empty(len(first_seen), dtype=np.int32)
        remap[order] = np.arange(len(first_seen), dtype=np.int32)
        codes = np.concatenate(self._codes) if self._codes else np.zeros(0, np.int32)
        return CodedColumn(tuple(first_seen[k] for k in order), remap[codes] if len(codes) else codes)


class PathColumn:
    """Image paths: ``column[i]`` is ``base / text`` for a relative text, ``Path(text)`` for an absolute one."""

    __slots__ = ("base", "texts")

    def __init__(self, texts: StringColumn, base: Path | None = None) -> None:
        self.texts = texts
        self.base = base

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> Path:
        path = Path(self.texts[i])
        return path if self.base is None or path.is_absolute() else self.base / path

    def __iter__(self) -> Iterator[Path]:
        return (self[i] for i in range(len(self)))


def _keys_of(ids: StringColumn) -> np.ndarray:
    """The 63-bit sample key of every id (:func:`audit.contract.seeds.sample_key`), as int64."""
    return sample_keys_of_bytes([s.encode("utf-8") for s in ids])


@dataclass(eq=False)
class SampleTable:
    """What is known about the samples before any image is decoded (see the module docstring).

    Lists are accepted and turned into columns, so small tables can be written by hand.

    Attributes:
        source: the manifest / folder / npz path (for messages and digests).
        ids: sample ids (unique).
        labels: integer labels (int64).
        attributes: attribute name -> its categorical column (``<missing>`` where empty).
        paths: image paths (None for npz data).
        class_names: class names known from the data (ImageFolder), else None.
        npz_images: the image array of an ``.npz`` source, else None.
        keys: the sample keys (int64), computed from the ids when not given.
        lines: the manifest line of every sample (int64), for messages; None for other sources.
    """

    source: Path
    ids: StringColumn
    labels: np.ndarray
    attributes: dict[str, CodedColumn]
    paths: PathColumn | None = None
    class_names: list[str] | None = None
    npz_images: Any = None
    keys: np.ndarray = field(default=None)  # type: ignore[assignment]
    lines: np.ndarray | None = None
    _order: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.ids, StringColumn):
            self.ids = StringColumn.from_strings(self.ids)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.attributes = {
            a: v if isinstance(v, CodedColumn) else CodedColumn.from_strings(v) for a, v in self.attributes.items()
        }
        if self.paths is not None and not isinstance(self.paths, PathColumn):
            self.paths = PathColumn(StringColumn.from_strings(str(p) for p in self.paths))
        if self.keys is None:
            self.keys = _keys_of(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def where(self, i: int) -> str:
        """Sample ``i`` for a message: ``line <n> (sample <id>)`` for a manifest, else ``sample <id>``."""
        if self.lines is not None:
            return f"line {int(self.lines[i])} (sample {self.ids[i]})"
        return f"sample {self.ids[i]}"

    def indices_of(self, sample_ids: Sequence[str]) -> np.ndarray:
        """The positions of ``sample_ids`` (each must be an id of the table), found through the keys.

        Raises:
            KeyError: an id that is not in the table.
        """
        if self._order is None:
            self._order = np.argsort(self.keys, kind="stable")
        order, sorted_keys = self._order, self.keys[self._order]
        wanted = np.fromiter((sample_key(s) for s in sample_ids), dtype=np.int64, count=len(sample_ids))
        lo = np.searchsorted(sorted_keys, wanted, side="left")
        hi = np.searchsorted(sorted_keys, wanted, side="right")
        out = np.empty(len(sample_ids), dtype=np.int64)
        for j, sid in enumerate(sample_ids):
            hits = [int(order[k]) for k in range(int(lo[j]), int(hi[j])) if self.ids[int(order[k])] == sid]
            if not hits:
                raise KeyError(sid)
            out[j] = hits[0]
        return out


def first_repeat(keys: np.ndarray, same: Callable[[int, int], bool]) -> tuple[int, int] | None:
    """The earliest repeat among values given by their 64-bit ``keys``: (first position, repeat position).

    Equal keys are confirmed with ``same(i, j)`` (keys may collide). Of all repeats, the one whose
    repeat comes first is returned, with the earliest position holding the same value. One sort of
    integers, so a million values cost a fraction of a second.
    """
    n = len(keys)
    if n < 2:
        return None
    plain = np.sort(keys)  # the usual case, no equal keys, costs one unstable sort and no more
    if not (plain[1:] == plain[:-1]).any():
        return None
    order = np.argsort(keys, kind="stable")  # stable: equal keys keep file order
    ordered = keys[order]
    new = np.ones(n, dtype=bool)
    new[1:] = ordered[1:] != ordered[:-1]
    group_start = np.maximum.accumulate(np.where(new, np.arange(n), 0))
    best: tuple[int, int] | None = None
    for k in np.flatnonzero(~new).tolist():
        later = int(order[k])
        if best is not None and later >= best[1]:
            continue
        for h in range(int(group_start[k]), k):  # file order: the first match is the earliest
            earlier = int(order[h])
            if same(earlier, later):
                best = (earlier, later)
                break
    return best


def check_unique_ids(ids: StringColumn, keys: np.ndarray, source: Path) -> None:
    """Raise when an id appears twice, naming the id whose repeat comes first in the file.

    Duplicates are found through the 63-bit keys (a sort of integers), then confirmed on the strings.

    Raises:
        AuditError: ``<source>: sample id '<id>' appears more than once``.
    """
    order = np.argsort(keys, kind="stable")  # stable: equal keys keep file order
    ordered = keys[order]
    repeats = []
    for k in (np.flatnonzero(ordered[1:] == ordered[:-1]) + 1).tolist():
        later, g = int(order[k]), k - 1
        text = ids[later]
        while g >= 0 and ordered[g] == ordered[k]:
            if ids[int(order[g])] == text:
                repeats.append(later)
                break
            g -= 1
    if repeats:
        raise AuditError(f"{source}: sample id {ids[min(repeats)]!r} appears more than once")
