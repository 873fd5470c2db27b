"""The one CSV writer (and reader) of every CSV cvaudit writes: cells a spreadsheet shows and never runs.

Every CSV cvaudit writes (``predictions.csv``, ``breaking_points.csv``, ``groups.csv``,
``skipped.csv``, ``governance.csv``, the queue's ``queue.csv``, a detector's
``objects.csv`` / ``detections.csv`` / ``object_breaking_points.csv``; not the demos' manifests,
which are inputs of fixed ASCII written with the plain csv module)
goes through :func:`writer` or :class:`DictWriter`: every text cell passes
:func:`audit.contract.text.spreadsheet_safe` (control characters and bidi controls
escaped, a formula start ``= + - @``/tab behind one apostrophe), numbers are written as
Python writes them (a float as its ``repr``, which reads back as the same float), and
lines end with ``lineterminator`` (``"\\n"`` unless a file's historical format says otherwise).

cvaudit's own readers of those files read them with :func:`reader` / :class:`DictReader`,
which undo the apostrophe (:func:`unguard`, the exact inverse of the guard): a cell reads back
as the text that was written, except that control characters stay in their visible escaped
form (``\\x1b``), which no reader of ours needs raw.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

from audit.contract.errors import CvauditError
from audit.contract.files import open_bounded
from audit.contract.text import _CONTROL, FORMULA_GUARDED, neutralise, spreadsheet_safe

#: First characters after which :func:`spreadsheet_safe` may change a cell (formula starts, apostrophes).
_MAY_GUARD = frozenset("=+-@\t\r'")

__all__ = [
    "MAX_CSV_BYTES",
    "MAX_CSV_LINE",
    "CsvError",
    "DictReader",
    "DictWriter",
    "SafeWriter",
    "cell",
    "lines",
    "read_back",
    "reader",
    "unguard",
    "writer",
]

#: The largest CSV of a run folder read back (predictions.csv of a large audit is tens of GiB at most).
MAX_CSV_BYTES = 1 << 40
#: The longest line of a CSV read back: a row of cvaudit's own is a few hundred bytes.
MAX_CSV_LINE = 1 << 20


def cell(value: object) -> object:
    """One cell as the writer writes it: numbers (not bools) unchanged, anything else spreadsheet-safe text."""
    if type(value) is str and value[:1] not in _MAY_GUARD and not _CONTROL.search(value):
        return value  # the common case, unchanged by spreadsheet_safe (checked without a call to it)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return spreadsheet_safe(value)


def read_back(text: str) -> str:
    """What :func:`reader` returns for a cell written from ``text`` (its control characters escaped): the key
    to join values read from cvaudit's CSVs with the same values taken from the data itself.

    >>> read_back("=a\\x1bb")
    '=a\\\\x1bb'
    """
    return neutralise(text, keep_newlines=True)


def unguard(text: str) -> str:
    """The inverse of the formula guard of :func:`audit.contract.text.spreadsheet_safe`: one leading
    apostrophe before (apostrophes and) a formula character is removed; any other text is returned as is.

    >>> unguard("'=SUM(A1)"), unguard("''=x"), unguard("'quoted"), unguard("-0.5")
    ('=SUM(A1)', "'=x", "'quoted", '-0.5')
    """
    return text[1:] if text[:1] == "'" and FORMULA_GUARDED.match(text, 1) else text


class SafeWriter:
    """:func:`csv.writer` with every cell passed through :func:`cell` (``writerow``/``writerows``)."""

    def __init__(self, fh: IO[str], *, lineterminator: str = "\n") -> None:
        self._writer = csv.writer(fh, lineterminator=lineterminator)

    def writerow(self, row: Iterable[object]) -> Any:
        return self._writer.writerow(list(map(cell, row)))

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(fh: IO[str], *, lineterminator: str = "\n") -> SafeWriter:
    """The CSV writer of every CSV cvaudit writes (``fh`` opened with ``newline=""``)."""
    return SafeWriter(fh, lineterminator=lineterminator)


class DictWriter:
    """:class:`csv.DictWriter`'s interface over :func:`writer`: missing keys write ``restval``, extra keys raise."""

    def __init__(
        self, fh: IO[str], fieldnames: Sequence[str], *, restval: object = "", lineterminator: str = "\n"
    ) -> None:
        self.fieldnames = list(fieldnames)
        self._restval = restval
        self._writer = writer(fh, lineterminator=lineterminator)

    def writeheader(self) -> Any:
        return self._writer.writerow(self.fieldnames)

    def writerow(self, row: Mapping[str, object]) -> Any:
        extra = [k for k in row if k not in self.fieldnames]
        if extra:
            raise ValueError(f"dict contains fields not in fieldnames: {extra[0]!r}")
        return self._writer.writerow([row.get(k, self._restval) for k in self.fieldnames])

    def writerows(self, rows: Iterable[Mapping[str, object]]) -> None:
        for row in rows:
            self.writerow(row)


def lines(
    path: str | os.PathLike[str], *, what: str, error: type[CvauditError], max_line: int = MAX_CSV_LINE
) -> Iterator[str]:
    """The text lines of a CSV in a run folder, for :func:`reader` / :class:`DictReader`, read with bounds.

    The file is opened with :func:`audit.contract.files.open_bounded` (a regular file, not a FIFO
    or a device) and read line by line with ``readline(max_line + 1)``: a line longer than
    ``max_line`` bytes is one line of ``error`` before it is decoded, so a hostile run folder
    cannot make a reader hold a gigabyte line. Lines are decoded as UTF-8 (undecodable bytes as
    U+FFFD) and keep their line ends, as ``open(..., newline="")`` gives them to :mod:`csv`.

    Raises:
        error: not a regular file, unreadable, or a line over ``max_line`` bytes.
    """
    with open_bounded(path, limit=MAX_CSV_BYTES, what=what, error=error) as handle:
        number = 0
        while True:
            try:
                raw = handle.readline(max_line + 1)
            except OSError as exc:
                raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
            if not raw:
                return
            number += 1
            if len(raw) > max_line:
                raise error(f"{path}: line {number} of {what} is longer than {max_line} bytes")
            yield raw.decode("utf-8", errors="replace")


class CsvError(CvauditError):
    """A CSV read back that the csv module cannot parse (a field over its size limit, a stray quote)."""


def reader(fh: Iterable[str]) -> Iterator[list[str]]:
    """:func:`csv.reader` over a file :func:`writer` wrote, each cell :func:`unguard`-ed.

    Raises:
        CsvError: the csv module cannot parse a line (a field longer than :func:`csv.field_size_limit`,
            a NUL byte): one line naming the line number, never an internal error.
    """
    rows = csv.reader(fh)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            raise CsvError(f"line {rows.line_num}: not a CSV that cvaudit wrote ({exc})") from None
        yield [unguard(c) for c in row]


class DictReader:
    """:class:`csv.DictReader` over a file :func:`writer` wrote: header and cells :func:`unguard`-ed.

    ``fieldnames`` is None for an empty file; a short row fills with None, as csv.DictReader.
    """

    def __init__(self, fh: Iterable[str]) -> None:
        self._rows = reader(fh)
        self.fieldnames: list[str] | None = next(self._rows, None)
        self.line_num = 1

    def __iter__(self) -> Iterator[dict[str, str | None]]:
        names = self.fieldnames or []
        for row in self._rows:
            self.line_num += 1
            if not row:
                continue
            yield {name: (row[i] if i < len(row) else None) for i, name in enumerate(names)}
