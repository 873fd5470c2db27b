"""Writing ``predictions.csv`` (the contract: :mod:`audit.contract.predictions`), in dataset order.

Every process writes its rows, sorted by (sample index, condition order), to a
part file with a leading ``_index`` column; :func:`merge_predictions` merges the
parts (one or one per rank) into the final file without loading them whole.
"""

from __future__ import annotations

import csv
import heapq
import os
from collections.abc import Iterator
from pathlib import Path

from audit.contract.predictions import PREDICTIONS_COLUMNS

COLUMNS = list(PREDICTIONS_COLUMNS)


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh):
            yield int(row[0]), row[1:]


def merged_rows(work: Path) -> Iterator[list[str]]:
    """The rows of ``work/predictions.part-*.csv`` in dataset order, as predictions.csv holds them.

    heapq.merge is stable across its inputs, and each part is sorted by index
    (condition order breaks ties inside a part), so the order is deterministic.
    """
    parts = sorted(work.glob("predictions.part-*.csv"))
    for _, row in heapq.merge(*(_rows(p) for p in parts), key=lambda r: r[0]):
        yield row


def merge_predictions(work: Path, dest: Path, *, attributes: list[str]) -> None:
    """Merge ``work/predictions.part-*.csv`` into ``dest`` (atomically)."""
    tmp = dest.with_name(dest.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS + attributes)
        writer.writerows(merged_rows(work))
    os.replace(tmp, dest)
