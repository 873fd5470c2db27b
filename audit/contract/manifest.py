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
- a missing key in a JSON row reads as ``""``, like an empty CSV cell.

Problems are one-line :class:`ManifestError`\\ s naming the file and line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from audit.contract.errors import CvauditError, echo

__all__ = ["MANIFEST_SUFFIXES", "ManifestError", "ManifestRow", "read_manifest", "read_manifest_rows"]

MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")


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
    try:
        if suffix in (".csv", ".tsv"):
            yield from _read_csv(path, "\t" if suffix == ".tsv" else ",")
        elif suffix == ".json":
            yield from _read_json(path)
        else:
            yield from _read_jsonl(path)
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


def read_manifest_rows(path: str | Path) -> list[ManifestRow]:
    """All rows of a manifest as a list (see :func:`read_manifest`)."""
    return list(read_manifest(path))


def _read_csv(path: Path, delimiter: str) -> Iterator[ManifestRow]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return
        columns = [c.strip() for c in header]
        seen: set[str] = set()
        for column in columns:
            if column in seen:
                raise ManifestError(f"{path}: line 1: column {echo(column)} appears twice in the header")
            seen.add(column)
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
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            item = _json(line, path, number)
            yield _as_row(item, path, number, "line")


def _read_json(path: Path) -> Iterator[ManifestRow]:
    items = _json(path.read_text(encoding="utf-8-sig"), path, None)
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
        return ManifestRow({str(k).strip(): as_text(v) for k, v in item.items()}, number)
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
