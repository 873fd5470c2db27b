"""The corruption benchmark's report section (results.json ``imagenet_c``): heat map, CE bars, previews.

Every chart states its data in its text alternative (the SVG ``<title>``) and as a table under it
(:class:`reports.html.charts.DataTable`), like the report's other charts. The previews are the
images results.json holds (made where the policy allows images, anonymized or raw as it says).
"""

from __future__ import annotations

from typing import Any

from audit.contract.conditions import format_severity
from audit.contract.results import ImageNetCResults
from reports.html.charts import ChartView, DataTable
from reports.html.formatting import fmt_num, fmt_pct
from reports.plots import PALETTE, _blend, _ink, _svg, _text

__all__ = ["corruption_view"]


def _cells(section: ImageNetCResults) -> tuple[str, list[tuple[str, list[float | None]]]]:
    """What the heat map shows: ``(measure, [(corruption, value per severity)])``."""
    if section.task == "detection":
        return "mAP", [(r.corruption, list(r.maps or [])) for r in section.corruptions]
    return "error", [(r.corruption, list(r.errors or [None] * len(r.severities))) for r in section.corruptions]


def _label(name: str, held_out: bool) -> str:
    return f"{name} (held out)" if held_out else name


def heat_map(section: ImageNetCResults) -> ChartView:
    """Corruption x severity, shaded by the error (classification) or the mAP (detection)."""
    measure, rows = _cells(section)
    held = {r.corruption: r.held_out for r in section.corruptions}
    levels = [format_severity(s) for s in section.severities]
    label_w, top, cell_w, cell_h = 190, 34, 64, 20
    width = label_w + cell_w * len(levels) + 10
    height = top + cell_h * len(rows) + 10
    body = [_text(label_w + cell_w * len(levels) / 2, 12, "severity", size=9, anchor="middle")]
    for j, level in enumerate(levels):
        body.append(_text(label_w + cell_w * j + cell_w / 2, top - 6, level, size=9, anchor="middle"))
    described = []
    for i, (name, values) in enumerate(rows):
        y = top + cell_h * i
        body.append(_text(label_w - 6, y + 14, _label(name, held[name]), size=9, anchor="end"))
        for j, value in enumerate(values):
            x = label_w + cell_w * j
            shade = "#f0f0f0" if value is None else _blend(value)
            body.append(
                f'<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" fill="{shade}" stroke="#fff" stroke-width="1"/>'
            )
            text = "no data" if value is None else fmt_pct(value)
            body.append(_text(x + cell_w / 2, y + 14, text, size=8, anchor="middle", extra=f' fill="{_ink(shade)}"'))
        shown = ", ".join(
            f"severity {lv} {'no data' if v is None else fmt_pct(v)}" for lv, v in zip(levels, values, strict=True)
        )
        described.append(f"{_label(name, held[name])}: {shown}")
    title = f"Corruption {measure} by severity"
    svg = _svg(width, height, body, f"{title}. " + "; ".join(described) + ".")
    table = DataTable(
        f"{measure.capitalize()} in % per corruption (rows) and severity (columns); darker is higher.",
        "corruption",
        [f"severity {lv}" for lv in levels],
        [(_label(n, held[n]), ["—" if v is None else fmt_pct(v) for v in values]) for n, values in rows],
    )
    caption = (
        f"{title}: each cell is the {'top-1 error' if measure == 'error' else 'COCO mAP'} of one condition "
        "'corruption@severity'; darker means higher."
    )
    return ChartView(title, svg, caption, table)


def ce_bars(section: ImageNetCResults) -> ChartView | None:
    """CE per corruption against the baseline's 1.0 (a line); None for a detector."""
    if section.task != "classification":
        return None
    rows = [(r.corruption, r.held_out, r.ce, r.relative_ce) for r in section.corruptions]
    top_value = max([1.2] + [ce for _, _, ce, _ in rows if ce is not None])
    label_w, row_h, top, plot_w = 190, 18, 8, 380
    width, height = label_w + plot_w + 90, top + row_h * len(rows) + 30

    def px(v: float) -> float:
        return label_w + plot_w * min(max(v / top_value, 0.0), 1.0)

    body = []
    for j, (name, held, ce, _) in enumerate(rows):
        y = top + row_h * j
        body.append(_text(label_w - 6, y + 12.5, _label(name, held), size=9, anchor="end"))
        if ce is None:
            body.append(_text(px(0) + 4, y + 12.5, "no data", size=8))
            continue
        colour = PALETTE[1] if held else PALETTE[0]
        body.append(
            f'<rect x="{px(0):.1f}" y="{y + 3}" width="{px(ce) - px(0):.1f}" height="{row_h - 6}" fill="{colour}" '
            'fill-opacity="0.8"/>'
        )
        body.append(_text(px(top_value) + 4, y + 12.5, fmt_num(ce), size=8))
    bottom = top + row_h * len(rows)
    body.append(
        f'<line x1="{px(1):.1f}" x2="{px(1):.1f}" y1="{top}" y2="{bottom}" stroke="#000" stroke-dasharray="4 3"/>'
    )
    body.append(_text(px(1), bottom + 12, "baseline = 1", size=8, anchor="middle"))
    body.append(_text(px(top_value / 2), height - 4, "corruption error CE (lower is better)", size=9, anchor="middle"))
    baseline = "AlexNet" if section.baseline is None or section.baseline.kind == "alexnet" else "the baseline run"
    described = [f"{_label(n, h)}: CE {'no data' if ce is None else fmt_num(ce)}" for n, h, ce, _ in rows]
    title = f"Corruption error against {baseline}"
    svg = _svg(width, height, body, f"{title}; 1 is the baseline's error. " + "; ".join(described) + ".")
    table = DataTable(
        f"CE and relative CE per corruption against {baseline} (1 = as many errors as the baseline).",
        "corruption",
        ["CE", "relative CE"],
        [(_label(n, h), [fmt_num(ce), fmt_num(rel)]) for n, h, ce, rel in rows],
    )
    caption = (
        f"{title}: bars are CE per corruption; the dashed line is the baseline (CE 1). Held-out corruptions in orange."
    )
    return ChartView(title, svg, caption, table)


def corruption_view(section: ImageNetCResults) -> dict[str, Any]:
    """The template variables of the section."""
    levels = [format_severity(s) for s in section.severities]
    previews: dict[str, dict[str, str]] = {}
    for p in section.previews or []:
        name, _, level = p.condition.partition("@")
        previews.setdefault(name, {})[level] = p.image
    baseline = section.baseline
    return {
        "corruption_section": section,
        "corruption_heat_map": heat_map(section),
        "corruption_ce_bars": ce_bars(section),
        "corruption_levels": levels,
        "corruption_previews": [(name, [previews[name].get(lv) for lv in levels]) for name in previews],
        "corruption_baseline": (
            None
            if baseline is None
            else ("the published AlexNet errors" if baseline.kind == "alexnet" else f"the run {baseline.source}")
        ),
    }
