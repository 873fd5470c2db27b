"""The one reader of dataset manifests, used by the evaluator and the governance checks alike.

A manifest lists one sample per row: ``path``, ``label`` and any other columns
(subgroup attributes, governance metadata such as ``capture_date`` or
``consent``). Every value is read as a string, the same way for every caller:

- ``.csv`` (comma) and ``.tsv`` (tab) with a header line; a UTF-8 byte-order
  mark (as Excel writes it) is skipped; a row with more or fewer fields than
  the header is an error naming its line; a header that names a column twice
  is an error;
- ``.jsonl`` / ``.ndjson`` (one object a line, blank lines skipped) and
  ``.json`` (a list of objects);
- JSON ``null`` becomes ``""`` (a missing value), ``true``/``false`` become
  ``"true"``/``"false"``, numbers their JSON text (``3``, ``0.5``), and nested
  objects or lists their compact JSON (sorted keys);
- a missing key in a JSON row reads as ``""``, like an empty CSV cell;
- every key and value is valid text (:func:`audit.contract.text.valid_text`): a lone surrogate from a JSON
  ``"\\ud800"`` escape becomes those six visible characters, so no writer fails on it later.

Limits, checked before the text is held: the file is opened once by
:func:`audit.contract.files.open_bounded` (a regular file, not a FIFO or a device) and may be at most
:data:`MAX_MANIFEST_BYTES` (a ``.json`` list, parsed whole, :data:`MAX_JSON_MANIFEST_BYTES`); each
line, with its line break, at most :data:`MAX_LINE_BYTES`, read with a bound before it is decoded,
so a 1 GB line costs one line's bound of memory, not the line.

Problems are one-line :class:`ManifestError`\\ s naming the file and line.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import itertools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audit.contract.errors import CvauditError, echo
from audit.contract.files import open_bounded, read_bounded
from audit.contract.text import valid_text

__all__ = [
    "CHUNK_ROWS",
    "MANIFEST_SUFFIXES",
    "MAX_JSON_MANIFEST_BYTES",
    "MAX_LINE_BYTES",
    "MAX_MANIFEST_BYTES",
    "ManifestChunk",
    "ManifestError",
    "ManifestRow",
    "chunks_of_rows",
    "read_manifest",
    "read_manifest_chunks",
    "read_manifest_rows",
]

_LINE_BREAK = re.compile(r"\r\n?|\n")

#: Rows per :class:`ManifestChunk`: the most raw manifest text held at once by a chunked reader.
CHUNK_ROWS = 16384

MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")

#: The largest CSV/TSV/JSONL manifest read (16 GiB: a hundred million rows of ~150 bytes); they are streamed.
MAX_MANIFEST_BYTES = 16 << 30

#: The largest ``.json`` manifest (a list parsed whole, so held in memory several times over): 256 MiB.
MAX_JSON_MANIFEST_BYTES = 256 << 20

#: The longest manifest line, its line break included (1 MiB); a longer line is refused before it is decoded.
MAX_LINE_BYTES = 1 << 20

_BOM = b"\xef\xbb\xbf"
#: A decoded line split where a bare carriage return ends a line too (as text mode with ``newline=""`` splits).
_PIECES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_OTHER_BREAKS = re.compile("[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


class ManifestError(CvauditError):
    """The manifest cannot be read; ``str`` is one line naming the file (and line)."""


class ManifestRow(dict):
    """One manifest row (column -> string value) that remembers its line number.

    Attributes:
        line: the line of the file the row starts on (the JSON list position for ``.json``).
    """

    line: int

    def __init__(self, values: dict[str, str], line: int) -> None:
        super().__init__(values)
        self.line = line


@contextlib.contextmanager
def _read_errors(path: Path) -> Iterator[None]:
    """Reading errors of a manifest file as one-line :class:`ManifestError` s naming it."""
    try:
        yield
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found") from None
    except IsADirectoryError:
        raise ManifestError(f"{path}: is a folder, not a manifest file") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: manifest is not UTF-8 text") from None
    except csv.Error as exc:
        raise ManifestError(f"{path}: not a readable CSV file ({exc})") from None


def _line_blocks(path: Path, *, max_line: int = MAX_LINE_BYTES) -> Iterator[list[str]]:
    """The manifest's lines as text, a list per block read (line breaks kept: ``\\n``, ``\\r\\n`` or a bare ``\\r``), the UTF-8 BOM skipped.

    The file goes through :func:`open_bounded` (a regular file of at most :data:`MAX_MANIFEST_BYTES`). It is
    read in blocks of ``max_line`` bytes cut after their last line break, so no more than about two blocks
    are held: a line longer than ``max_line`` bytes (its line break included) is refused, naming it, before
    it is decoded, whatever its length in the file. Lines are decoded a block at a time (a line break is
    never inside a UTF-8 sequence).

    Raises:
        ManifestError: the file is missing, not a regular file or too large; a line is too long or not UTF-8.
    """
    with open_bounded(path, limit=MAX_MANIFEST_BYTES, what="manifest", error=ManifestError) as handle:
        number, rest, first = 0, b"", True  # number: lines yielded so far
        while True:
            block = handle.read(max_line)
            if not block:
                if rest:
                    yield _decoded(rest, path, number)
                return
            cut = block.rfind(b"\n")
            if cut < 0:
                rest += block
                if len(rest) > max_line:
                    raise ManifestError(f"{path}: line {number + 1} is longer than {max_line} bytes")
                continue
            if len(rest) + block.find(b"\n") + 1 > max_line:
                raise ManifestError(f"{path}: line {number + 1} is longer than {max_line} bytes")
            data, rest = rest + block[: cut + 1], block[cut + 1 :]
            if first and data.startswith(_BOM):
                data = data[len(_BOM) :]
            first = False
            pieces = _decoded(data, path, number)
            number += len(pieces)
            yield pieces


def _decoded(data: bytes, path: Path, number: int) -> list[str]:
    """Whole lines of bytes as text lines (line breaks kept), the first of them line ``number + 1``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = number + 1 + data.count(b"\n", 0, err.start)
        raise ManifestError(f"{path}: line {line}: not UTF-8 text") from None
    # str.splitlines (fast) also splits at the characters of _OTHER_BREAKS, which are no line break here
    return _PIECES.findall(text) if _OTHER_BREAKS.search(text) else text.splitlines(keepends=True)


def read_manifest(path: str | Path) -> Iterator[ManifestRow]:
    """Stream the rows of a manifest (see the module docstring for the rules).

    Args:
        path: a ``.csv``, ``.tsv``, ``.jsonl``, ``.ndjson`` or ``.json`` file.

    Yields:
        One :class:`ManifestRow` per sample, in file order.

    Raises:
        ManifestError: missing or unreadable file, unknown extension, not UTF-8,
            a malformed line, a ragged row or a duplicate column.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MANIFEST_SUFFIXES:
        raise ManifestError(f"{path}: unknown manifest type {suffix!r} (expected {', '.join(MANIFEST_SUFFIXES)})")
    with _read_errors(path):
        if suffix in (".csv", ".tsv"):
            yield from _read_csv(path, "\t" if suffix == ".tsv" else ",")
        elif suffix == ".json":
            yield from _read_json(path)
        else:
            yield from _read_jsonl(path)


@dataclass(frozen=True)
class ManifestChunk:
    """Consecutive manifest rows, column by column (what the columnar readers work on).

    Attributes:
        start: the position (0-based, in file order) of the chunk's first row.
        columns: column -> one value per row of the chunk, in the manifest's column order
            (the CSV header; for JSON, the order in which keys first appear). A JSON row
            that lacks a key reads as ``""`` there, as :func:`read_manifest` describes.
        lines: the line (or JSON list position) each row starts on.
        rows: the rows as :class:`ManifestRow` dicts when rows may differ in their keys
            (JSON manifests, rows given as mappings); ``None`` for CSV/TSV, whose rows all
            have the header's columns.
    """

    start: int
    columns: dict[str, Sequence[Any]]
    lines: list[int]
    rows: list[Mapping[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.lines)

    def keys_of(self, j: int) -> list[str]:
        """The columns row ``j`` of the chunk has (every column for CSV/TSV)."""
        return list(self.rows[j]) if self.rows is not None else list(self.columns)

    def column(self, name: str) -> Sequence[Any]:
        """The values of ``name`` (``""`` for every row when no row of the chunk has it)."""
        values = self.columns.get(name)
        return values if values is not None else [""] * len(self.lines)


def read_manifest_chunks(path: str | Path, *, rows_per_chunk: int = CHUNK_ROWS) -> Iterator[ManifestChunk]:
    """Stream a manifest as :class:`ManifestChunk` s of at most ``rows_per_chunk`` rows.

    The same rules and errors as :func:`read_manifest` (it reads the same rows); a CSV/TSV
    file is read without building one dict per row, so a million rows cost a few seconds
    and never more memory than one chunk of text.

    Raises:
        ManifestError: as :func:`read_manifest`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv"):
        yield from chunks_of_rows(read_manifest(path), rows_per_chunk=rows_per_chunk)
        return
    with _read_errors(path):
        yield from _csv_chunks(path, "\t" if suffix == ".tsv" else ",", rows_per_chunk)


def chunks_of_rows(rows: Iterable[Mapping[str, Any]], *, rows_per_chunk: int = CHUNK_ROWS) -> Iterator[ManifestChunk]:
    """Rows given as mappings (e.g. :func:`read_manifest`'s) as :class:`ManifestChunk` s.

    A row's line is its ``line`` attribute when it has one (a :class:`ManifestRow`), else its
    1-based position. Values are kept as given; a key a row lacks reads as ``""``.
    """
    start, batch = 0, []
    for row in rows:
        batch.append(row)
        if len(batch) == rows_per_chunk:
            yield _chunk_of(start, batch)
            start += len(batch)
            batch = []
    if batch:
        yield _chunk_of(start, batch)


def _chunk_of(start: int, rows: list[Mapping[str, Any]]) -> ManifestChunk:
    names: dict[str, None] = {}
    for row in rows:
        for key in row:
            names.setdefault(key, None)
    columns = {name: [row.get(name, "") for row in rows] for name in names}
    lines = [getattr(row, "line", start + j + 1) for j, row in enumerate(rows)]
    return ManifestChunk(start, columns, lines, rows)


def _csv_header(reader: Any, path: Path) -> list[str] | None:
    """The header's column names (stripped), or None for an empty file; a repeated name is an error."""
    header = next(reader, None)
    if header is None:
        return None
    columns = [c.strip() for c in header]
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            raise ManifestError(f"{path}: line 1: column {echo(column)} appears twice in the header")
        seen.add(column)
    return columns


def _csv_chunks(path: Path, delimiter: str, rows_per_chunk: int) -> Iterator[ManifestChunk]:
    blocks = _line_blocks(path)
    with contextlib.closing(blocks):  # closes the file when the caller stops early
        reader = csv.reader(itertools.chain.from_iterable(blocks), delimiter=delimiter)
        columns = _csv_header(reader, path)
        if columns is None:
            return
        start, last_line = 0, reader.line_num
        while True:
            chunk, last_line = _csv_block(reader, path, columns, start, last_line, rows_per_chunk)
            if chunk is None:
                return
            if len(chunk):
                yield chunk
                start += len(chunk)


def _csv_block(
    reader: Any, path: Path, columns: list[str], start: int, last_line: int, size: int
) -> tuple[ManifestChunk | None, int]:
    """Up to ``size`` records as one chunk, and the last line read (None when the file is done).

    Built at C speed (``islice``, ``zip``) with the cyclic garbage collector paused: tens of
    thousands of fresh row lists would otherwise trigger collections over everything alive.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        records = list(itertools.islice(reader, size))
        if not records:
            return None, last_line
        end = reader.line_num
        if end - last_line == len(records):  # one line per record: the usual case
            starts = np.arange(last_line + 1, end + 1, dtype=np.int64)
        else:  # quoted fields with line breaks: a record spans 1 + its fields' line breaks
            spans = np.fromiter(
                (1 + sum(len(_LINE_BREAK.findall(f)) for f in r) for r in records), dtype=np.int64, count=len(records)
            )
            starts = last_line + 1 + np.concatenate(([0], np.cumsum(spans)[:-1]))
        widths = np.fromiter(map(len, records), dtype=np.int64, count=len(records))
        filled = widths > 0  # csv yields [] for a blank line
        ragged = np.flatnonzero(filled & (widths != len(columns)))
        if len(ragged):
            k = int(ragged[0])
            raise ManifestError(f"{path}: line {starts[k]}: expected {len(columns)} fields, got {widths[k]}")
        if not filled.all():
            records = tuple(r for r, keep in zip(records, filled.tolist()) if keep)
            starts = starts[filled]
        values = dict(zip(columns, zip(*records))) if records else {c: () for c in columns}
        # valid text by construction: a strict UTF-8 decoding yields no surrogate
        return ManifestChunk(start, values, starts.tolist()), end
    finally:
        if enabled:
            gc.enable()


def read_manifest_rows(path: str | Path) -> list[ManifestRow]:
    """All rows of a manifest as a list (see :func:`read_manifest`)."""
    return list(read_manifest(path))


def _read_csv(path: Path, delimiter: str) -> Iterator[ManifestRow]:
    blocks = _line_blocks(path)
    with contextlib.closing(blocks):  # closes the file when the caller stops early
        reader = csv.reader(itertools.chain.from_iterable(blocks), delimiter=delimiter)
        columns = _csv_header(reader, path)
        if columns is None:
            return
        start = reader.line_num + 1
        for fields in reader:
            line = start
            start = reader.line_num + 1
            if not fields:
                continue  # a blank line
            if len(fields) != len(columns):
                raise ManifestError(f"{path}: line {line}: expected {len(columns)} fields, got {len(fields)}")
            yield ManifestRow(dict(zip(columns, fields)), line)


def _read_jsonl(path: Path) -> Iterator[ManifestRow]:
    blocks = _line_blocks(path)
    with contextlib.closing(blocks):
        for number, line in enumerate(itertools.chain.from_iterable(blocks), start=1):
            if not line.strip():
                continue
            item = _json(line, path, number)
            yield _as_row(item, path, number, "line")


def _read_json(path: Path) -> Iterator[ManifestRow]:
    raw = read_bounded(path, limit=MAX_JSON_MANIFEST_BYTES, what="manifest", error=ManifestError)
    items = _json(raw.decode("utf-8-sig"), path, None)
    if not isinstance(items, list):
        raise ManifestError(f"{path}: expected a JSON list of objects")
    for number, item in enumerate(items, start=1):
        yield _as_row(item, path, number, "item")


def _json(text: str, path: Path, line: int | None) -> Any:
    """``json.loads`` with every way it refuses input as a ManifestError naming the line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = line if line is not None else exc.lineno
        raise ManifestError(f"{path}: line {where}: not valid JSON ({exc.msg})") from None
    except ValueError as exc:  # Python's limit on the digits of an integer
        raise ManifestError(f"{path}: line {line or 1}: not valid JSON ({str(exc)[:120]})") from None
    except RecursionError:
        raise ManifestError(f"{path}: line {line or 1}: JSON nested too deeply") from None


def _as_row(item: Any, path: Path, number: int, unit: str) -> ManifestRow:
    if not isinstance(item, dict):
        raise ManifestError(f"{path}: {unit} {number}: expected a JSON object, got {type(item).__name__}")
    try:
        return ManifestRow({valid_text(str(k).strip()): valid_text(as_text(v)) for k, v in item.items()}, number)
    except RecursionError:
        raise ManifestError(f"{path}: {unit} {number}: a value is nested too deeply") from None


def as_text(value: Any) -> str:
    """A JSON value as manifest text: null -> "", booleans lower case, nested values as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if isinstance(value, float):
        return json.dumps(value)
    return str(value)
