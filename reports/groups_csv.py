"""``groups.csv``: every group's numbers under every condition, whatever the report shows.

One row per (condition, group), in the order of results.json: ``condition, attribute, value,
insufficient_data``, every group metric the metric registry exports to groups.csv
(:func:`audit.contract.metric_specs.exported`; ``n``, ``accuracy`` with ``accuracy_ci_low`` and
``accuracy_ci_high``, ``balanced_accuracy``, ... in the registry's order) and the group's ``confusion`` matrix as
compact JSON (rows are true classes, columns predicted classes). A detector's results (``task: detection``)
have their own columns (:mod:`reports.detection_csv`). Shares are in [0, 1], written
as the shortest text that reads back as the stored float; an empty cell is a missing value.
The report shows the lowest and highest groups of long lists and points here for the rest; the
attestation covers this file when the run is signed. Text cells are neutralised against formula
injection (:mod:`audit.contract.csvfile`, the one CSV writer); numbers are written as numbers.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from audit.contract import csvfile
from audit.contract.metric_specs import MetricSpec, exported
from audit.contract.results import GroupResult, Results
from reports.atomic import atomic_write_text
from reports.detection_csv import detection_groups_csv_text

__all__ = ["GROUPS_COLUMNS", "GROUPS_CSV", "groups_columns", "groups_csv_text", "write_groups_csv"]

GROUPS_CSV = "groups.csv"


def _columns(spec: MetricSpec) -> tuple[str, ...]:
    """A metric's columns: its value, then its interval's bounds where the registry exports them."""
    return (spec.name, f"{spec.name}_ci_low", f"{spec.name}_ci_high") if spec.interval_exported else (spec.name,)


def groups_columns() -> tuple[str, ...]:
    """The header: the group's identity, every metric the registry exports to groups.csv (in its order), the confusion."""
    metrics = (c for spec in exported("groups.csv") for c in _columns(spec))
    return ("condition", "attribute", "value", "insufficient_data", *metrics, "confusion")


GROUPS_COLUMNS = groups_columns()


def _cell(value: float | int | bool | None) -> str:
    """A number as the shortest text that reads back as the stored value; empty for a missing one."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _row(condition: str, group: GroupResult, specs: tuple[MetricSpec, ...]) -> list[str]:
    metrics = group.metrics
    cells = [
        condition,
        group.attribute,
        group.value,
    ]
    cells.append(_cell(group.insufficient_data))
    for spec in specs:
        cells.append(_cell(getattr(metrics, spec.name)))
        if spec.interval_exported:
            pair = getattr(metrics, f"{spec.name}_ci") or (None, None)
            cells += [_cell(pair[0]), _cell(pair[1])]
    cells.append(json.dumps(metrics.confusion, separators=(",", ":")))
    return cells


def groups_csv_text(results: Results) -> str:
    """The file's text for ``results`` (a detector's: :func:`reports.detection_csv.detection_groups_csv_text`)."""
    if results.task == "detection":
        return detection_groups_csv_text(results)
    buffer = io.StringIO()
    writer = csvfile.writer(buffer)
    writer.writerow(groups_columns())
    specs = exported("groups.csv")
    for condition in results.conditions or []:
        for group in condition.groups:
            writer.writerow(_row(condition.id, group, specs))
    return buffer.getvalue()


def write_groups_csv(results: Results, path: str | Path) -> Path:
    """Write ``groups.csv`` for ``results`` atomically; returns the path."""
    return atomic_write_text(Path(path), groups_csv_text(results))
