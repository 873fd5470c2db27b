"""Read a dataset manifest (CSV, TSV, JSONL or a JSON list) into rows of strings."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class ManifestError(ValueError):
    """The manifest cannot be read; ``str`` is one line naming the file."""


def read_manifest(path: str | Path) -> Iterator[dict[str, str]]:
    """Stream the rows of a manifest, every value as a string.

    ``.csv`` (``,``), ``.tsv`` (tab), ``.jsonl``/``.ndjson`` (one object a
    line) and ``.json`` (a list of objects) are read. JSON ``null`` becomes
    ``""`` and booleans ``"true"``/``"false"``.

    Args:
        path: The manifest file.

    Yields:
        One dict per sample.

    Raises:
        ManifestError: unreadable file, unknown extension or a malformed line.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            yield from _read_csv(path, "\t" if suffix == ".tsv" else ",")
        elif suffix in (".jsonl", ".ndjson"):
            yield from _read_jsonl(path)
        elif suffix == ".json":
            yield from _read_json(path)
        else:
            raise ManifestError(f"{path}: unknown manifest type {suffix!r} (expected .csv, .tsv, .jsonl or .json)")
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not UTF-8 text") from None


def _read_csv(path: Path, delimiter: str) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        if reader.fieldnames is None:
            return
        for row in reader:
            if None in row:
                raise ManifestError(f"{path}: line {reader.line_num}: more values than columns")
            yield {k: (v if v is not None else "") for k, v in row.items()}


def _read_jsonl(path: Path) -> Iterator[dict[str, str]]:
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path}: line {number}: invalid JSON ({exc.msg})") from None
            yield _as_row(item, path, number)


def _read_json(path: Path) -> Iterator[dict[str, str]]:
    try:
        items = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(items, list):
        raise ManifestError(f"{path}: expected a JSON list of objects")
    for number, item in enumerate(items, start=1):
        yield _as_row(item, path, number)


def _as_row(item: Any, path: Path, number: int) -> dict[str, str]:
    if not isinstance(item, dict):
        raise ManifestError(f"{path}: item {number}: expected an object")
    return {str(k): _as_text(v) for k, v in item.items()}


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)
