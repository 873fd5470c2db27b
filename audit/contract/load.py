"""The one reader of results.json: ``load_results(path)`` validates it and returns typed results.

Every command and helper that reads stored results (``run --baseline``,
``policy check``, ``report``, ``verify``, the pytest plugin,
:mod:`audit.testing`) goes through :func:`load_results` or
:func:`parse_results`. A file that is not valid is one line naming the file,
the JSON path of the first problem and what was expected
(:class:`ResultsError`, exit code 2).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from audit.contract.errors import CvauditError, echo
from audit.contract.files import read_bounded
from audit.contract.results import SCHEMA_VERSION, Results

__all__ = [
    "MAX_DETECTIONS_BYTES",
    "MAX_RESULTS_BYTES",
    "ResultsError",
    "json_path",
    "load_results",
    "parse_results",
    "read_results_bytes",
    "schema_major_minor",
]

_VERSION = re.compile(r"^(\d+)\.(\d+)$")

#: Largest results.json read (bytes), refused from the open descriptor's size before a byte is read.
#: A run with 3 conditions and 500 groups writes about 1 MB, 30 conditions with 500 groups and 5000
#: skipped images about 10 MB; 256 MiB leaves a wide margin while bounding the memory a file can cost.
MAX_RESULTS_BYTES = 256 << 20
#: Largest detections.json (COCO results format) read (bytes), refused before a byte is read: about
#: 120 bytes a detection, so some 9 million detections; JSON parsing costs several times the file.
MAX_DETECTIONS_BYTES = 1 << 30


class ResultsError(CvauditError):
    """A results.json that cannot be used: one line naming the file, the JSON path and the problem."""


def schema_major_minor(version: str) -> tuple[int, int]:
    """``"1.1"`` -> ``(1, 1)``.

    Raises:
        ValueError: not of the form MAJOR.MINOR.
    """
    match = _VERSION.match(str(version))
    if not match:
        raise ValueError(f"schema_version {echo(version)} is not of the form MAJOR.MINOR")
    return int(match.group(1)), int(match.group(2))


def json_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """A pydantic error location as a JSON path: ``("conditions", 0, "n")`` -> ``$.conditions[0].n``."""
    out = "$"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key (not in this schema version)"
    if kind == "missing":
        return "required key is missing"
    message = error["msg"].replace("Input should be", "expected").replace("Value error, ", "")
    return f"{message}, got {echo(error.get('input'), 80)}" if "input" in error else message


def parse_results(data: bytes | str | dict[str, Any], *, source: str = "results.json") -> Results:
    """Validate results (file bytes, text or an already parsed dict) against the schema.

    Raises:
        ResultsError: not JSON, not an object, no or an unsupported
            ``schema_version``, or a key or value the schema does not allow.
    """
    if isinstance(data, (bytes, str)):
        try:
            document = json.loads(data, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, and Python's limit on integer digits
            raise ResultsError(f"{source}: not valid JSON ({str(exc).splitlines()[0][:120]})") from None
        except RecursionError:
            raise ResultsError(f"{source}: not valid results: JSON nested too deeply") from None
    else:
        document = data
    if not isinstance(document, dict):
        raise ResultsError(f"{source}: $: expected a results object, got {type(document).__name__}")
    version = document.get("schema_version")
    if version is None:
        raise ResultsError(f"{source}: $.schema_version: required key is missing (not a cvaudit results.json)")
    try:
        major, minor = schema_major_minor(version)
    except ValueError as exc:
        raise ResultsError(f"{source}: $.schema_version: {exc}") from None
    ours = schema_major_minor(SCHEMA_VERSION)
    if major != ours[0]:
        newer = "newer" if major > ours[0] else "older"
        raise ResultsError(
            f"{source}: $.schema_version: {version} is a {newer} major version than this cvaudit reads "
            f"({ours[0]}.x); use a cvaudit that reads schema {major}.x"
        )
    dropped: list[str] = []
    if minor > ours[1]:
        document, dropped = _drop_unknown_keys(document)
    try:
        results = Results.model_validate(document)
    except RecursionError:
        raise ResultsError(f"{source}: $: nested too deeply to be results") from None
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ResultsError(f"{source}: {json_path(error['loc'])}: {_describe(error)}") from None
    if dropped:
        results.notes.append(
            f"{source}: schema {version} is newer than this cvaudit's {SCHEMA_VERSION}; "
            f"{len(dropped)} key(s) it does not know were ignored (first: {dropped[0]})"
        )
    return results


def _drop_unknown_keys(document: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A newer minor version adds keys: drop the ones this version does not know, keep the rest.

    Returns:
        The pruned copy and the JSON paths of the keys dropped.
    """
    document = json.loads(json.dumps(document))  # a private copy
    dropped: list[str] = []
    for _ in range(8):  # a key dropped can reveal no new unknown key, so one round is the rule
        try:
            Results.model_validate(document)
            break
        except ValidationError as exc:
            extra = [e["loc"] for e in exc.errors() if e["type"] == "extra_forbidden"]
            if not extra:
                break
            for loc in extra:
                node: Any = document
                for part in loc[:-1]:
                    node = node[part]
                node.pop(loc[-1], None)
                dropped.append(json_path(loc))
    return document, dropped


def read_results_bytes(path: str | Path) -> bytes:
    """The bytes of a results.json, read with the bound :data:`MAX_RESULTS_BYTES`.

    Opened once and checked on the descriptor (:func:`audit.contract.files.read_bounded`): a
    larger file, a folder, a character device such as ``/dev/zero``, a FIFO or a socket is
    refused before a byte is read.

    Raises:
        ResultsError: missing, unreadable, not a regular file or over the limit; one line naming the file.
    """
    return read_bounded(path, limit=MAX_RESULTS_BYTES, what="results file", error=ResultsError)


def load_results(path: str | Path) -> Results:
    """Read (:func:`read_results_bytes`) and validate a results.json (see :func:`parse_results`).

    Raises:
        ResultsError: the file is missing, unreadable, not a regular file, over
            :data:`MAX_RESULTS_BYTES`, or not valid results.
    """
    path = Path(path)
    return parse_results(read_results_bytes(path), source=str(path))
