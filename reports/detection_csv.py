"""``groups.csv`` and ``skipped.csv`` of a detector's audit (results ``task: detection``).

groups.csv: one row per (condition, group), in the order of results.json ``detection.conditions[].groups``:
``condition, attribute, level, value, insufficient_data``, then every metric of
:class:`audit.contract.results.DetectionMetrics` in the model's order, each interval as ``<metric>_ci_low`` and
``<metric>_ci_high`` right after its metric. An object-level group leaves the image-level metrics empty.

skipped.csv: ``kind, sample_id, source, id, reason``: one row per unreadable image (``kind`` ``image``, its
sample id), then one per annotation or image dropped from the ground truth under
``detection.on_bad_annotation: skip`` (``kind`` ``annotation``, the file and the entry).

As for classifiers (:mod:`reports.groups_csv`, :mod:`reports.skipped_csv`): numbers as the shortest text that
reads back as the stored float, an empty cell for a missing value, text cells neutralised against formula
injection (:mod:`audit.contract.csvfile`, the one CSV writer).
"""

from __future__ import annotations

import io

from audit.contract import csvfile
from audit.contract.results import DetectionGroup, DetectionMetrics, Results

__all__ = [
    "DETECTION_SKIPPED_COLUMNS",
    "detection_groups_columns",
    "detection_groups_csv_text",
    "detection_skipped_csv_text",
]

DETECTION_SKIPPED_COLUMNS = ("kind", "sample_id", "source", "id", "reason")


def _cell(value: float | int | bool | None) -> str:
    """A number as the shortest text that reads back as the stored value; empty for a missing one (as groups.csv)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _metric_names() -> list[str]:
    """The metrics of :class:`DetectionMetrics` in the model's order (intervals are read with their metric)."""
    return [name for name in DetectionMetrics.model_fields if not name.endswith("_ci")]


def _has_interval(name: str) -> bool:
    return f"{name}_ci" in DetectionMetrics.model_fields


def detection_groups_columns() -> tuple[str, ...]:
    """The header: the group's identity, then every metric with its interval's bounds where it has one."""
    metrics = []
    for name in _metric_names():
        metrics += [name, f"{name}_ci_low", f"{name}_ci_high"] if _has_interval(name) else [name]
    return ("condition", "attribute", "level", "value", "insufficient_data", *metrics)


def _row(condition: str, group: DetectionGroup) -> list[str]:
    m = group.metrics
    cells = [
        condition,
        group.attribute,
        group.level,
        group.value,
        _cell(group.insufficient_data),
    ]
    for name in _metric_names():
        cells.append(_cell(getattr(m, name)))
        if _has_interval(name):
            pair = getattr(m, f"{name}_ci") or (None, None)
            cells += [_cell(pair[0]), _cell(pair[1])]
    return cells


def detection_groups_csv_text(results: Results) -> str:
    """groups.csv of a detector's results (a header only without ``detection``)."""
    buffer = io.StringIO()
    writer = csvfile.writer(buffer)
    writer.writerow(detection_groups_columns())
    for condition in results.detection.conditions if results.detection is not None else []:
        for group in condition.groups:
            writer.writerow(_row(condition.id, group))
    return buffer.getvalue()


def detection_skipped_csv_text(results: Results) -> str:
    """skipped.csv of a detector's results: the unreadable images, then the skipped annotations."""
    buffer = io.StringIO()
    writer = csvfile.writer(buffer)
    writer.writerow(DETECTION_SKIPPED_COLUMNS)
    for item in results.dataset.skipped:
        writer.writerow(["image", item.sample, "", "", item.reason])
    for row in results.detection.skipped_annotations if results.detection is not None else []:
        writer.writerow(["annotation", "", row.source, row.id, row.reason])
    return buffer.getvalue()
