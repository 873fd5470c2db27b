"""The report's subgroup views, readable and complete with hundreds of groups.

- A per-group chart draws every group up to :data:`CHART_ALL` bars; beyond that it draws the
  :data:`CHART_EACH_END` lowest and highest accuracies among the comparable groups (enough
  images) and says how many more there are and where they are (:func:`pick_chart_groups`).
- The accuracy tables are one per grouping (an attribute or an intersection), groups as rows
  and at most :data:`TABLE_CONDITIONS` conditions as columns per table, so a table fits the
  page width and flows over as many pages as it has rows (:func:`group_tables`).
- Long lists in running text (attribute values, too-small groups) name the first few and
  count the rest (:func:`name_some`).

Nothing is dropped silently: whatever a view leaves out is counted next to it, and every
number is in the tables and in ``groups.csv``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from audit.contract.results import ConditionResult, GroupResult

__all__ = [
    "CHART_ALL",
    "CHART_EACH_END",
    "TABLE_CONDITIONS",
    "ChartPick",
    "GroupCell",
    "GroupTable",
    "group_tables",
    "name_some",
    "pick_chart_groups",
]

#: A per-group chart draws every group up to this many (18 px a bar: 30 bars fit half an A4 page).
CHART_ALL = 30
#: Beyond :data:`CHART_ALL`, a chart draws this many lowest and this many highest accuracies.
CHART_EACH_END = 15
#: Conditions (columns) per group table: more would not fit the width of an A4 page.
TABLE_CONDITIONS = 8


def _accuracy(group: GroupResult) -> float | None:
    value = group.metrics.accuracy
    return float(value) if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class ChartPick:
    """The groups a chart draws.

    Attributes:
        shown: the groups to draw, in drawing order.
        omitted: how many groups are not drawn.
        split: where in ``shown`` the note about the omitted groups goes (between the lowest and
            the highest), or None when every group is drawn.
    """

    shown: list[GroupResult]
    omitted: int
    split: int | None


def pick_chart_groups(
    groups: Sequence[GroupResult], *, limit: int = CHART_ALL, each_end: int = CHART_EACH_END
) -> ChartPick:
    """Every group when there are at most ``limit``; else the ``each_end`` lowest and highest accuracies.

    Only comparable groups (an accuracy, not ``insufficient_data``) are ranked; ties keep the
    results' order. The lowest come first (lowest at the top), then the highest (ascending).

    >>> from types import SimpleNamespace as G
    >>> g = [G(value=str(i), insufficient_data=False, metrics=G(accuracy=i / 10)) for i in range(10)]
    >>> pick = pick_chart_groups(g, limit=4, each_end=2)
    >>> [x.value for x in pick.shown], pick.omitted, pick.split
    (['0', '1', '8', '9'], 6, 2)
    """
    if len(groups) <= limit:
        return ChartPick(list(groups), 0, None)
    ranked = sorted(
        (g for g in groups if _accuracy(g) is not None and not g.insufficient_data),
        key=lambda g: _accuracy(g),  # type: ignore[arg-type,return-value]
    )
    lowest = ranked[:each_end]
    highest = ranked[max(each_end, len(ranked) - each_end) :]
    shown = lowest + highest
    return ChartPick(shown, len(groups) - len(shown), len(lowest))


@dataclass(frozen=True)
class GroupCell:
    """One accuracy cell: its text and its CSS class (shading, too few images)."""

    text: str
    css: str


@dataclass(frozen=True)
class GroupTable:
    """Accuracy per group (rows) and condition (columns) of one grouping.

    Attributes:
        grouping: the attribute or intersection (``camera×ink``).
        caption: what the table holds, with units and its part (conditions i to j of k).
        columns: condition ids.
        rows: ``(group value, images under the first condition, cells)``.
    """

    grouping: str
    caption: str
    columns: list[str]
    rows: list[tuple[str, str, list[GroupCell]]]


def _cell(group: GroupResult | None) -> GroupCell:
    if group is None:
        return GroupCell("\u2014", "num")
    accuracy = _accuracy(group)
    flagged = group.insufficient_data
    css = "num"
    if accuracy is not None and accuracy < 0.5:
        css += " cell-low"
    elif accuracy is not None and accuracy < 0.7:
        css += " cell-mid"
    if flagged:
        css += " flag"
    text = "\u2014" if accuracy is None else f"{100 * accuracy:.0f}%"
    return GroupCell(text + ("*" if flagged else ""), css)


def group_tables(
    conditions: Sequence[ConditionResult], *, per_table: int = TABLE_CONDITIONS
) -> list[tuple[str, list[GroupTable]]]:
    """One or more tables per grouping: ``[(grouping, [table, ...]), ...]`` in the results' order.

    Groups are the rows (every group of the first condition, in its order, then any group only
    other conditions have); conditions are the columns, ``per_table`` at a time.
    """
    order: dict[str, list[str]] = {}
    found: list[dict[tuple[str, str], GroupResult]] = []
    for condition in conditions:
        by_key: dict[tuple[str, str], GroupResult] = {}
        for g in condition.groups:
            attribute, value = g.attribute, g.value
            by_key[(attribute, value)] = g
            values = order.setdefault(attribute, [])
            if value not in values:
                values.append(value)
        found.append(by_key)
    ids = [c.id for c in conditions]
    first = found[0] if found else {}
    out = []
    for attribute, values in order.items():
        parts = [(i, min(i + per_table, len(ids))) for i in range(0, len(ids), per_table)]
        tables = []
        for start, stop in parts:
            span = f"conditions {start + 1} to {stop} of {len(ids)}" if len(parts) > 1 else "every condition"
            rows = []
            for value in values:
                group = first.get((attribute, value))
                n = group.metrics.n if group is not None else None
                cells = [_cell(found[k].get((attribute, value))) for k in range(start, stop)]
                rows.append((value, "\u2014" if n is None else str(n), cells))
            caption = (
                f"Accuracy in % per group of {attribute} ({len(values)} groups, rows) under {span} (columns);"
                " images: the group's number of images under the first condition; * marks groups with too few"
                " images to be compared."
            )
            tables.append(GroupTable(attribute, caption, ids[start:stop], rows))
        out.append((attribute, tables))
    return out


def name_some(names: Sequence[str], *, limit: int, rest: str) -> str:
    """``"a, b, c"``, or the first ``limit`` names and ``"and N more <rest>"``.

    >>> name_some(["a", "b", "c"], limit=2, rest="(in groups.csv)")
    'a, b and 1 more (in groups.csv)'
    """
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" and {len(names) - limit} more {rest}".rstrip()
