"""Writing ``predictions.csv`` (the contract: :mod:`audit.contract.predictions`), in dataset order.

Every process writes its rows, sorted by (sample index, condition order), to a
part file with a leading ``_index`` column; :func:`merge_predictions` merges the
parts (one or one per rank) into the final file without loading them whole. A single
part with no quoted field (no ``"`` anywhere: then every line is one row and its first
comma ends ``_index``) is copied line by line without its first field, which gives the
same bytes as the CSV round trip at a fraction of its cost.

Every row goes through cvaudit's one CSV writer (:mod:`audit.contract.csvfile`): a text cell that a
spreadsheet would run as a formula is behind an apostrophe and control characters are escaped; the
readers here (:func:`merged_rows`) undo the apostrophe, so a round trip keeps every value.
"""

from __future__ import annotations

import heapq
import io
import os
from collections.abc import Iterator
from pathlib import Path

from audit.contract import csvfile
from audit.contract.predictions import PREDICTIONS_COLUMNS

COLUMNS = list(PREDICTIONS_COLUMNS)

#: predictions.csv's line end (CRLF, as it has always been: ordinary data keeps its bytes and digests).
LINE_END = "\r\n"


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csvfile.reader(fh):
            yield int(row[0]), row[1:]


def merged_rows(work: Path) -> Iterator[list[str]]:
    """The rows of ``work/predictions.part-*.csv`` in dataset order, as values (formula guard undone).

    heapq.merge is stable across its inputs, and each part is sorted by index
    (condition order breaks ties inside a part), so the order is deterministic.
    """
    parts = sorted(work.glob("predictions.part-*.csv"))
    for _, row in heapq.merge(*(_rows(p) for p in parts), key=lambda r: r[0]):
        yield row


def _unquoted(path: Path) -> bool:
    """True if the file has no double quote, so no field of it is quoted."""
    with open(path, "rb") as fh:
        return not any(b'"' in block for block in iter(lambda: fh.read(1 << 20), b""))


def merge_predictions(work: Path, dest: Path, *, attributes: list[str]) -> None:
    """Merge ``work/predictions.part-*.csv`` into ``dest`` (atomically)."""
    tmp = dest.with_name(dest.name + ".tmp")
    parts = sorted(work.glob("predictions.part-*.csv"))
    header = io.StringIO()
    csvfile.writer(header, lineterminator=LINE_END).writerow(COLUMNS + attributes)
    if len(parts) == 1 and _unquoted(parts[0]):
        with open(tmp, "wb") as out, open(parts[0], "rb") as src:
            out.write(header.getvalue().encode("utf-8"))
            out.writelines(line[line.index(b",") + 1 :] for line in src)
    else:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            fh.write(header.getvalue())
            csvfile.writer(fh, lineterminator=LINE_END).writerows(merged_rows(work))
    os.replace(tmp, dest)
