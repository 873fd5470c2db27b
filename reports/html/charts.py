"""The report's charts of one condition: reliability diagrams, accuracy per group, the confusion matrix.

Every chart comes with a text alternative that states its data (the SVG's
``<title>``, from :mod:`reports.plots`) and the same numbers as a table
(:class:`DataTable`) shown under it in a ``<details>`` element.
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup

from audit.contract.metric_specs import ACCURACY
from audit.contract.results import AttackReference, ConditionResult
from reports import plots
from reports.group_view import pick_chart_groups
from reports.html.formatting import finite, fmt_ci, fmt_num, fmt_pct

__all__ = ["ChartView", "DataTable", "accuracy_of", "confusion_chart", "group_chart", "reliability"]


@dataclass(frozen=True)
class DataTable:
    """A table of formatted numbers: one header cell per row and per column.

    Attributes:
        caption: What the table holds, with its units.
        corner: Header of the row-header column.
        columns: Column headers.
        rows: ``(row header, cells)``; every cell is already formatted with its unit.
    """

    caption: str
    corner: str
    columns: list[str]
    rows: list[tuple[str, list[str]]]


@dataclass(frozen=True)
class ChartView:
    """A chart and its numbers: the SVG (whose ``<title>`` states the data), a caption, the data as a table.

    Attributes:
        name: The chart's name (the first sentence of its text alternative).
        svg: The ``<svg role="img">`` markup from :mod:`reports.plots`.
        caption: The visible figure caption.
        table: The numbers drawn, shown under the chart in a ``<details>`` element.
    """

    name: str
    svg: Markup
    caption: str
    table: DataTable


def accuracy_of(condition: ConditionResult | AttackReference | None) -> float | None:
    """The accuracy of a condition (or of the attacked subset's clean images); None when missing."""
    return None if condition is None else finite(condition.metrics.accuracy)


def reliability(clean: ConditionResult | None, worst: ConditionResult | None) -> list[ChartView]:
    """Reliability diagrams of the clean and the worst condition (those with bins)."""
    panels = []
    for label, c, colour in (("unaltered", clean, plots.PALETTE[0]), ("worst condition", worst, plots.PALETTE[1])):
        bins = list(c.reliability.bins) if c is not None else []
        if not bins:
            continue
        title = f"{c.id} ({label}), ECE {fmt_num(c.metrics.ece)}"
        svg = plots.reliability_diagram(bins, title=title, colour=colour)
        shown = [b for b in bins if b.n and b.accuracy is not None]
        table = DataTable(
            f"Reliability bins of {c.id}: number of images, accuracy and mean confidence in % per"
            " bin of top-class confidence (empty bins left out).",
            "confidence bin",
            ["images", ACCURACY.phrase, "mean confidence"],
            [
                (f"{fmt_pct(b.lo)} to {fmt_pct(b.hi)}", [str(b.n), fmt_pct(b.accuracy), fmt_pct(b.confidence)])
                for b in shown
            ],
        )
        caption = f"Reliability diagram, {c.id} ({label}); ECE on a 0 to 1 scale."
        panels.append(ChartView(f"Reliability diagram, {title}", svg, caption, table))
    return panels


def group_chart(condition: ConditionResult) -> ChartView:
    """Accuracy and its interval per group of one condition (the lowest and highest when there are many)."""
    groups = list(condition.groups)
    pick = pick_chart_groups(groups)
    bars = []
    for g in pick.shown:
        m = g.metrics
        lo, hi = (finite(m.accuracy_ci[0]), finite(m.accuracy_ci[1])) if m.accuracy_ci else (None, None)
        bars.append(plots.Bar(f"{g.attribute} = {g.value}", finite(m.accuracy), lo, hi, g.insufficient_data, m.n))
    title = f"Accuracy per group, {condition.id}"
    note = None
    what = "per group"
    if pick.split is not None:
        note = (
            pick.split,
            f"… and {pick.omitted} more groups: see “Accuracy by condition and group” and groups.csv",
        )
        what = (
            f"of the {pick.split} groups with the lowest and the {len(pick.shown) - pick.split} with the highest"
            f" accuracy among those with enough images ({len(groups)} groups in all; the {pick.omitted} others are in"
            " the tables “Accuracy by condition and group” below and in groups.csv)"
        )
    table = DataTable(
        f"Accuracy and its 95% interval in % and number of images {what}, condition {condition.id}.",
        "group",
        [ACCURACY.phrase, "95% interval", "images", "compared?"],
        [
            (
                b.label,
                [
                    fmt_pct(b.value),
                    fmt_ci([b.lo, b.hi]),
                    "—" if b.n is None else str(b.n),
                    "no: too few images" if b.flagged else "yes",
                ],
            )
            for b in bars
        ],
    )
    caption = f"Accuracy {what}, condition {condition.id}. Hatched grey bars have too few images to be compared."
    return ChartView(title, plots.bar_chart_ci(bars, title=title, note=note), caption, table)


def confusion_chart(clean: ConditionResult | None, class_names: list[str]) -> ChartView | None:
    """The clean condition's confusion matrix as a heatmap; None when it has none."""
    matrix = clean.confusion if clean is not None else []
    if not matrix or not all(len(r) == len(matrix) for r in matrix):
        return None
    title = f"Confusion matrix, {clean.id}"
    names = [class_names[i] if i < len(class_names) else str(i) for i in range(len(matrix))]
    if len(matrix) <= 12:
        table = DataTable(
            f"Number of images per true class (rows) and predicted class (columns), {clean.id}.",
            "true class",
            [f"predicted {n}" for n in names],
            [(names[i], [str(count) for count in row]) for i, row in enumerate(matrix)],
        )
    else:
        table = DataTable(
            f"Per true class, {clean.id}: images predicted correctly and the most frequent wrong prediction"
            " with its number of images.",
            "true class",
            ["predicted correctly (images)", "most frequent wrong prediction", "its images"],
            [(names[i], _confusion_summary(names, i, row)) for i, row in enumerate(matrix)],
        )
    caption = (
        f"Confusion matrix on {clean.id}: rows are the true class, columns the prediction; darker means a"
        " larger share of the row."
    )
    return ChartView(title, plots.heatmap(matrix, class_names, title=title), caption, table)


def _confusion_summary(names: list[str], i: int, row: list[int]) -> list[str]:
    errors = [(count, j) for j, count in enumerate(row) if j != i and count > 0]
    if not errors:
        return [str(row[i]), "\u2014", "0"]
    count, j = max(errors, key=lambda e: (e[0], -e[1]))
    return [str(row[i]), names[j], str(count)]
