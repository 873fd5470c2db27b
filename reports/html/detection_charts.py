"""The detection section's charts: mAP and recall per condition, TIDE error bars, the reliability diagram, and
the example images with their boxes drawn.

Each chart is a :class:`reports.html.charts.ChartView`: an ``<svg role="img">`` whose ``<title>`` states the
data (the PDF's ``/Alt`` text), a caption, and the same numbers as a table. The example images are inline SVG:
the embedded image with ground truth and detections drawn over it, every box labelled, each kind told apart by
colour *and* line style (:data:`BOX_STYLES`), so readers who do not see the colours can still tell them apart.
Every user string is escaped here (:func:`markupsafe.escape`); numbers are formatted here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from audit.contract.results import (
    DetectionCalibration,
    DetectionCondition,
    DetectionExample,
    ObjectBreakingDisparity,
    ObjectBreakingEntry,
    TideError,
)
from reports import plots
from reports.html.charts import ChartView, DataTable
from reports.html.formatting import DASH, finite, fmt_num, fmt_pct
from reports.plots import PALETTE, _svg, _text

__all__ = [
    "BOX_STYLES",
    "BoxStyle",
    "ExampleView",
    "example_view",
    "fmt_num_ci",
    "legend_svg",
    "map_chart",
    "reliability_chart",
    "survival_chart",
    "tide_chart",
]

#: TIDE's error types in the order they are drawn, with the words the report uses for them.
TIDE_WORDS = {
    "classification": "classification (right place, wrong class)",
    "localisation": "localisation (right class, box off)",
    "both": "both (wrong class and box off)",
    "duplicate": "duplicate (object already detected)",
    "background": "background (nothing there)",
    "missed": "missed (object never detected)",
}


@dataclass(frozen=True)
class BoxStyle:
    """How one kind of box is drawn: colour plus line style, so the kinds differ without colour too.

    Attributes:
        name: What the box is, in the legend and the text alternative.
        tag: The short word in front of the box's label on the image ("GT", "TP", ...).
        colour: Stroke colour (Okabe-Ito hue, at least 3:1 against white).
        colour_name: The colour in words.
        width: Stroke width in px.
        dash: SVG ``stroke-dasharray`` ("" for a solid line).
        line: The line style in words (the legend's text alternative).
    """

    name: str
    tag: str
    colour: str
    colour_name: str
    width: float
    dash: str
    line: str


#: The style of each box outcome (``DetectionBox.outcome``).
BOX_STYLES = {
    "matched": BoxStyle("ground truth, found", "GT", PALETTE[0], "blue", 2.0, "", "thin solid line"),
    "missed": BoxStyle("ground truth, missed", "MISSED", PALETTE[1], "vermillion", 4.0, "", "thick solid line"),
    "crowd": BoxStyle("crowd region (ignored)", "CROWD", PALETTE[7], "grey", 1.5, "8 3 2 3", "dash-dot line"),
    "tp": BoxStyle("detection, correct (true positive)", "TP", PALETTE[2], "bluish green", 2.0, "6 3", "dashed line"),
    "fp": BoxStyle("detection, false positive", "FP", PALETTE[3], "reddish purple", 2.2, "0.1 4", "dotted line"),
}

_FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'


def fmt_num_ci(value: object, digits: int = 3) -> str:
    """An interval of a plain number (mAP, false positives per image): ``[0.41, 0.47] -> "0.410–0.470"``."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(finite(v) is not None for v in value):
        return f"{fmt_num(value[0], digits)}\u2013{fmt_num(value[1], digits)}"
    return DASH


def _uid(*parts: object) -> str:
    """An id for SVG ``<defs>`` unique to one chart (several charts share a page)."""
    return hashlib.sha1("|".join(map(str, parts)).encode("utf-8")).hexdigest()[:10]


def _interval(value: object) -> tuple[float | None, float | None]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return finite(value[0]), finite(value[1])
    return None, None


# ------------------------------------------------------------------------------------------------ bar charts


@dataclass(frozen=True)
class _Series:
    name: str
    colour: str
    hatched: bool


def _hbars(
    rows: Sequence[tuple[str, Sequence[tuple[float | None, float | None, float | None]]]],
    series: Sequence[_Series],
    *,
    title: str,
    x_max: float,
    x_label: str,
    value_text,
    alt: str,
    width: int = 640,
    label_width: int = 150,
) -> Markup:
    """Horizontal bars, one row per category and one bar per series in it, with interval whiskers.

    ``rows``: ``(label, [(value, lo, hi) per series])``; ``value_text`` formats a value; ``alt`` is the text
    alternative (the caller states the data). A second series is hatched as well as coloured.
    """
    bar_h, gap, top, legend_h = 11, 6, 8, 18 if len(series) > 1 else 0
    right = 70
    plot_w = width - label_width - right
    row_h = bar_h * len(series) + gap
    top += legend_h
    height = top + row_h * len(rows) + 30
    uid = _uid(title, x_max)
    body = [
        "<defs>"
        + "".join(
            f'<pattern id="h{uid}{i}" width="5" height="5" patternUnits="userSpaceOnUse" '
            f'patternTransform="rotate(45)"><rect width="5" height="5" fill="#ffffff"/>'
            f'<line x1="0" y1="0" x2="0" y2="5" stroke="{s.colour}" stroke-width="3"/></pattern>'
            for i, s in enumerate(series)
            if s.hatched
        )
        + "</defs>"
    ]

    def fill(i: int) -> str:
        return f"url(#h{uid}{i})" if series[i].hatched else series[i].colour

    def px(v: float) -> float:
        return label_width + plot_w * min(max(v / x_max if x_max else 0.0, 0.0), 1.0)

    if legend_h:
        x = label_width
        for i, s in enumerate(series):
            body.append(
                f'<rect x="{x}" y="4" width="14" height="10" fill="{fill(i)}" stroke="{s.colour}" stroke-width="1"/>'
            )
            body.append(_text(x + 18, 13, s.name, size=9))
            x += 24 + 6.2 * len(s.name)
    for k in range(6):
        v = x_max * k / 5
        body.append(
            f'<line x1="{px(v):.1f}" x2="{px(v):.1f}" y1="{top}" y2="{top + row_h * len(rows)}" stroke="#e5e5e5"/>'
        )
        body.append(_text(px(v), top + row_h * len(rows) + 12, f"{v:.2g}", size=8, anchor="middle"))
    body.append(_text(px(x_max / 2), height - 4, x_label, size=9, anchor="middle"))
    for j, (label, values) in enumerate(rows):
        y = top + row_h * j
        short = label if len(label) <= 24 else label[:23] + "\u2026"
        body.append(
            f"<g><title>{escape(label)}</title>"
            + _text(label_width - 6, y + row_h / 2 + 2, short, size=9, anchor="end")
            + "</g>"
        )
        for i, (value, lo, hi) in enumerate(values):
            by = y + gap / 2 + bar_h * i
            if value is None:
                body.append(_text(px(0) + 4, by + bar_h - 2, "no data", size=8))
                continue
            body.append(
                f'<rect x="{px(0):.1f}" y="{by:.1f}" width="{max(px(value) - px(0), 0.5):.1f}" height="{bar_h - 1}" '
                f'fill="{fill(i)}" stroke="{series[i].colour}" stroke-width="1"/>'
            )
            if lo is not None and hi is not None:
                cy = by + (bar_h - 1) / 2
                body.append(
                    f'<path d="M{px(lo):.1f},{cy - 3:.1f} v6 M{px(lo):.1f},{cy:.1f} H{px(hi):.1f} '
                    f'M{px(hi):.1f},{cy - 3:.1f} v6" stroke="#000" stroke-width="1.1" fill="none"/>'
                )
            end = max(px(value), px(hi) if hi is not None else 0.0)
            body.append(_text(min(end + 4, width - right + 4), by + bar_h - 2, value_text(value), size=8))
    body.append(f'<line x1="{px(0):.1f}" x2="{px(0):.1f}" y1="{top}" y2="{top + row_h * len(rows)}" stroke="#555"/>')
    return _svg(width, height, body, alt)


def map_chart(conditions: Sequence[DetectionCondition]) -> ChartView | None:
    """mAP (COCO AP@[.5:.95]) and recall at the operating point per condition, with their intervals.

    None when no condition has either number.
    """
    if not any(finite(c.metrics.map) is not None or finite(c.metrics.recall) is not None for c in conditions):
        return None
    rows, described = [], []
    for c in conditions:
        m = c.metrics
        rlo, rhi = _interval(m.recall_ci)
        rows.append((c.id, [(finite(m.map), None, None), (finite(m.recall), rlo, rhi)]))
        text = f"{c.id}: mAP {fmt_num(m.map)}"
        text += f", recall {fmt_pct(m.recall)}"
        if rlo is not None:
            text += f" (95% interval {fmt_pct(rlo)} to {fmt_pct(rhi)})"
        described.append(text)
    title = "mAP and recall per condition"
    series = [_Series("mAP (0 to 1)", PALETTE[0], False), _Series("recall at the operating point", PALETTE[1], True)]
    svg = _hbars(
        rows,
        series,
        title=title,
        x_max=1.0,
        x_label="mAP and recall, 0 to 1 (whiskers: recall's 95% interval)",
        value_text=lambda v: f"{v:.2f}",
        alt=f"{title}. " + "; ".join(described) + ".",
    )
    table = DataTable(
        "mAP (0 to 1) and recall at the operating point (%) per condition, with recall's 95% interval.",
        "condition",
        ["mAP", "recall", "recall 95% interval"],
        [(c.id, [fmt_num(c.metrics.map), fmt_pct(c.metrics.recall), _pct_ci(c)]) for c in conditions],
    )
    caption = (
        "mAP (solid bars) and recall at the operating point (hatched bars) per condition, both on a 0 to 1 scale;"
        " whiskers are recall's 95% intervals (mAP has none: its bootstrap interval under-covers)."
    )
    return ChartView(title, svg, caption, table)


def _pct_ci(c: DetectionCondition) -> str:
    lo, hi = _interval(c.metrics.recall_ci)
    return DASH if lo is None or hi is None else f"{100 * lo:.1f}\u2013{100 * hi:.1f}%"


def tide_chart(condition: DetectionCondition, label: str) -> ChartView | None:
    """TIDE's dAP per error type of one condition (``label``: "unaltered", "worst condition"); None without TIDE."""
    errors: list[TideError] = list(condition.tide or [])
    if not errors:
        return None
    order = {name: i for i, name in enumerate(TIDE_WORDS)}
    errors.sort(key=lambda e: order.get(e.error, len(order)))
    top = max((finite(e.dap) or 0.0 for e in errors), default=0.0)
    x_max = next((s for s in (0.05, 0.1, 0.2, 0.3, 0.5, 1.0) if top <= s), 1.0)
    title = f"TIDE errors, {condition.id} ({label})"
    rows = [(TIDE_WORDS.get(e.error, e.error).split(" (")[0], [(finite(e.dap), None, None)]) for e in errors]
    described = [f"{e.error}: dAP {fmt_num(e.dap)}, {e.count} occurrences" for e in errors]
    svg = _hbars(
        rows,
        [_Series("dAP", PALETTE[0], False)],
        title=title,
        x_max=x_max,
        x_label="dAP: AP50 gained if this error alone were fixed (0 to 1)",
        value_text=lambda v: f"{v:.3f}",
        alt=f"{title}. " + "; ".join(described) + ".",
        width=420,
        label_width=110,
    )
    table = DataTable(
        f"TIDE error types on {condition.id}: how often each occurs (detections, or missed objects) and the AP50"
        " it costs (dAP, 0 to 1).",
        "error type",
        ["occurrences", "dAP"],
        [(TIDE_WORDS.get(e.error, e.error), [str(e.count), fmt_num(e.dap)]) for e in errors],
    )
    caption = f"TIDE error types, {condition.id} ({label}): the AP50 each would add if it alone were fixed."
    return ChartView(title, svg, caption, table)


# ---------------------------------------------------------------------------------------------- reliability


def reliability_chart(condition: DetectionCondition, label: str, colour: str = PALETTE[0]) -> ChartView | None:
    """The reliability diagram of one condition's detections: precision per score bin against the diagonal.

    None without calibration or without a detection in any bin.
    """
    cal: DetectionCalibration | None = condition.calibration
    if cal is None:
        return None
    shown = [b for b in cal.reliability if b.count and b.precision is not None]
    if not shown:
        return None
    size, left, top, right = 300, 44, 22, 10
    plot = size - left - right
    title = f"{condition.id} ({label}), D-ECE {fmt_num(cal.dece)}"
    body = [_text(left + plot / 2, 14, title, size=10, anchor="middle", extra=' font-weight="bold"')]

    def px(v: float) -> float:
        return left + plot * min(max(v, 0.0), 1.0)

    def py(v: float) -> float:
        return top + plot * (1 - min(max(v, 0.0), 1.0))

    for i in range(6):
        v = i / 5
        body.append(f'<line x1="{left}" x2="{left + plot}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#eee"/>')
        body.append(_text(left - 5, py(v) + 3.5, f"{v:.1f}", size=8, anchor="end"))
        body.append(_text(px(v), top + plot + 12, f"{v:.1f}", size=8, anchor="middle"))
    described = []
    for b in shown:
        precision = float(b.precision)  # type: ignore[arg-type]
        conf = precision if b.confidence is None else float(b.confidence)
        x0, w = px(b.low), max(px(b.high) - px(b.low) - 1, 0.5)
        body.append(
            f'<rect x="{x0:.1f}" y="{py(precision):.1f}" width="{w:.1f}" height="{py(0) - py(precision):.1f}" '
            f'fill="{colour}" fill-opacity="0.75"/>'
        )
        hi_y, lo_y = min(py(precision), py(conf)), max(py(precision), py(conf))
        body.append(
            f'<rect x="{x0:.1f}" y="{hi_y:.1f}" width="{w:.1f}" height="{lo_y - hi_y:.1f}" fill="none" '
            'stroke="#c62828" stroke-width="1"/>'
        )
        described.append(
            f"score {b.low:.2f} to {b.high:.2f}, {b.count} detections: precision {fmt_pct(precision)},"
            f" mean score {fmt_pct(conf)}"
        )
    body.append(f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(1)}" y2="{py(1)}" stroke="#444" stroke-dasharray="4 3"/>')
    body.append(f'<rect x="{left}" y="{top}" width="{plot}" height="{plot}" fill="none" stroke="#888"/>')
    body.append(_text(left + plot / 2, top + plot + 28, "detection score", size=9, anchor="middle"))
    body.append(
        _text(
            12,
            top + plot / 2,
            "precision",
            size=9,
            anchor="middle",
            extra=f' transform="rotate(-90 12 {top + plot / 2:.1f})"',
        )
    )
    alt = f"Reliability diagram, {title}. Precision per score bin: " + "; ".join(described) + "."
    svg = _svg(size, size, body, alt)
    table = DataTable(
        f"Reliability bins of {condition.id}: detections, precision (share matched at IoU ≥ {cal.iou_threshold:g})"
        " and mean score per score bin (empty bins left out).",
        "score bin",
        ["detections", "precision", "mean score"],
        [(f"{b.low:.2f} to {b.high:.2f}", [str(b.count), fmt_pct(b.precision), fmt_pct(b.confidence)]) for b in shown],
    )
    caption = (
        f"Reliability diagram, {condition.id} ({label}): precision of the detections per score bin; the dashed"
        " diagonal is perfect calibration, red outlines the gap."
    )
    return ChartView(f"Reliability diagram, {title}", svg, caption, table)


# ----------------------------------------------------------------------------------- per-object survival


def _level(value: float | None) -> str:
    return DASH if value is None else f"{float(value):g}"


def _share_ci(value: object) -> str:
    lo, hi = _interval(value)
    return DASH if lo is None or hi is None else f"{100 * lo:.1f}\u2013{100 * hi:.1f}%"


def median_text(entry: ObjectBreakingEntry) -> str:
    """The median breaking level with its interval: ``"2 (95% 1–3)"``, ``"> 3"`` when censored."""
    if entry.median is None:
        return DASH
    text = ("> " if entry.median_censored else "") + _level(entry.median)
    ci = entry.median_ci
    if ci is not None and ci[0] is None:
        text += " (95%: above the highest level)"
    elif ci is not None:
        hi = "above the highest level" if ci[1] is None else _level(ci[1])
        text += f" (95% {_level(ci[0])}\u2013{hi})"
    return text


def survival_chart(
    stressor: str,
    attribute: str | None,
    entries: Sequence[ObjectBreakingEntry],
    disparity: ObjectBreakingDisparity | None = None,
) -> ChartView | None:
    """Share of objects still found at each level of one stressor: all objects and the groups of ``attribute``.

    ``entries`` holds the stressor's overall entry first, then the groups to draw; groups flagged
    ``insufficient_data`` are in the table, not on the chart. None when no curve has a point.
    """
    if not entries:
        return None
    levels = [p.severity for p in entries[0].survival]
    series, described, rows = [], [], []
    for e in entries:
        label = "all objects" if e.attribute is None else f"{e.attribute} = {e.value}"
        points = [(0.0, 1.0)] + [(float(p.severity), float(p.surviving)) for p in e.survival if p.surviving is not None]
        if len(points) > 1 and not e.insufficient_data:
            series.append(plots.Series(f"{label} (n={e.n})", points))
        cells = [
            f"{fmt_pct(p.surviving)} ({_share_ci(p.surviving_ci)})" if p.surviving_ci else fmt_pct(p.surviving)
            for p in e.survival
        ]
        flag = " (too few to judge)" if e.insufficient_data else ""
        rows.append(
            (
                f"{label}{flag}",
                [str(e.n), *cells, median_text(e), str(e.never), str(e.dropped), str(e.missed_on_clean)],
            )
        )
        described.append(f"{label}: median breaking severity {median_text(e)}")
    if not series:
        return None
    unit = "\u03b5" if entries[0].measure == "epsilon" else "severity"
    title = f"Share of objects still found under {stressor}" + (f", per {attribute}" if attribute else "")
    svg = plots.line_chart(
        series,
        title=title,
        x_label=f"{unit} (0 = unaltered; objects missed on unaltered images are left out)",
        x_names={0.0: "0 clean"},
        x_words={0.0: "unaltered"},
        x_prefix=f"at {unit}",
        y_label="share still found",
    )
    table = DataTable(
        f"Objects still found under {stressor} at every level up to each {unit}, with the 95% cluster-bootstrap"
        " interval (images resampled), the median breaking severity with its interval, and the counts: objects"
        " never lost, censored (dropped by min_visibility before being lost), and missed on unaltered images.",
        "objects",
        ["n", *(f"{unit} {_level(lv)}" for lv in levels), "median breaking", "never lost", "censored", "missed clean"],
        rows,
    )
    caption = (
        f"Per-object survival under {stressor}: the share of the objects found on the unaltered image that are"
        " still found at every level up to each one (Kaplan-Meier: objects that a geometric stressor moved out of"
        " view are censored there)."
    )
    if disparity is not None and disparity.disparity is not None:
        caption += (
            f" The {attribute} groups lie furthest apart at {unit} {_level(disparity.at_severity)}:"
            f" {100 * disparity.disparity:.1f} percentage points between {disparity.best_group} and"
            f" {disparity.worst_group}"
            + (f" (95% interval {_pp(disparity.disparity_ci)})." if disparity.disparity_ci else ".")
        )
    return ChartView(title, svg, caption, table)


def _pp(value: object) -> str:
    lo, hi = _interval(value)
    return DASH if lo is None or hi is None else f"{100 * lo:.1f} to {100 * hi:.1f} pp"


# --------------------------------------------------------------------------------------------- the examples


@dataclass(frozen=True)
class ExampleView:
    """One example image with its boxes drawn, and the boxes as text.

    Attributes:
        name: Which image under which condition ("sample s1 under night@3").
        svg: The image with every box drawn and labelled (``<svg role="img">``; its ``<title>`` counts the boxes).
        caption: Which image, under which condition, and why it is shown.
        table: Every box: kind, class, score, corners in the image's pixels (the text alternative).
    """

    name: str
    svg: Markup
    caption: str
    table: DataTable


def _box_label(box, style: BoxStyle) -> str:
    score = f" {box.score:.2f}" if box.score is not None and finite(box.score) is not None else ""
    return f"{style.tag} {box.label}{score}"


def _rect(x1: float, y1: float, x2: float, y2: float, style: BoxStyle) -> str:
    """A box: a white halo under the styled line, so it shows on dark and light images alike."""
    geometry = f'x="{x1:.1f}" y="{y1:.1f}" width="{max(x2 - x1, 1):.1f}" height="{max(y2 - y1, 1):.1f}" fill="none"'
    dash = f' stroke-dasharray="{style.dash}"' if style.dash else ""
    cap = ' stroke-linecap="round"' if style.dash.startswith("0.1") else ""
    return (
        f'<rect {geometry} stroke="#ffffff" stroke-width="{style.width + 2:.1f}" stroke-opacity="0.85"/>'
        f'<rect {geometry} stroke="{style.colour}" stroke-width="{style.width:.1f}"{dash}{cap}/>'
    )


def _label(x: float, y: float, text: str, style: BoxStyle, canvas_w: float) -> str:
    """A box's label on a white plate (black text), kept inside the canvas."""
    w = 6.0 * len(text) + 4
    x = min(max(x, 0.0), max(canvas_w - w, 0.0))
    return (
        f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="{w:.1f}" height="11" fill="#ffffff" fill-opacity="0.9" '
        f'stroke="{style.colour}" stroke-width="1"/>'
        f'<text x="{x + 2:.1f}" y="{y:.1f}" font-size="9" {_FONT} fill="#000000">{escape(text)}</text>'
    )


def example_view(example: DetectionExample, *, size: int = 320) -> ExampleView:
    """The example image scaled to fit ``size`` px, its ground truth and detections drawn and labelled.

    Ground-truth labels go under their box, detection labels above it; the canvas has a margin above and
    below the image so labels at its edges stay readable.
    """
    scale = min(size / example.width, size / example.height)
    w, h = example.width * scale, example.height * scale
    pad = 14
    body = [
        f'<image x="0" y="{pad}" width="{w:.1f}" height="{h:.1f}" preserveAspectRatio="none" '
        f'href="{escape(example.image)}"/>'
    ]
    rows, labels = [], []
    counts: dict[str, int] = {}
    for kind, boxes in (("truth", example.truth), ("detection", example.detections)):
        for box in boxes:
            style = BOX_STYLES[box.outcome]
            x1, y1, x2, y2 = (float(v) for v in box.box)
            sx1, sy1, sx2, sy2 = x1 * scale, y1 * scale + pad, x2 * scale, y2 * scale + pad
            body.append(_rect(sx1, sy1, sx2, sy2, style))
            text = _box_label(box, style)
            y = min(sy2 + 11, h + 2 * pad - 1) if kind == "truth" else max(sy1 - 2, 10)
            labels.append(_label(sx1, y, text, style, w))
            counts[box.outcome] = counts.get(box.outcome, 0) + 1
            rows.append(
                (
                    style.name,
                    [
                        str(box.label),
                        DASH if box.score is None else f"{box.score:.2f}",
                        f"{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}",
                        f"{style.colour_name} {style.line}",
                    ],
                )
            )
    body += labels  # labels over every box
    what = f"sample {example.sample_id} under {example.condition}"
    summary = "; ".join(f"{n} {BOX_STYLES[o].name}" for o, n in counts.items()) or "no boxes"
    boxes_text = "; ".join(
        f"{kind}: {cells[0]}{'' if cells[1] == DASH else ' ' + cells[1]} at {cells[2]}" for kind, cells in rows
    )
    alt = f"Image {what} ({example.reason}) with its boxes: {summary}." + (f" {boxes_text}." if boxes_text else "")
    svg = _svg(w, h + 2 * pad, body, alt)
    table = DataTable(
        f"The boxes drawn on {what}: ground truth and the detections at the operating point, with their corners"
        f" (x1, y1, x2, y2) in the image's {example.width} × {example.height} pixels.",
        "box",
        ["class", "score", "x1, y1, x2, y2", "drawn as"],
        rows,
    )
    return ExampleView(what, svg, f"{what}: {example.reason}.", table)


def legend_svg() -> Markup:
    """The legend of the example images: one sample box per kind, in its colour and line style."""
    body, x, y = [], 4.0, 6.0
    described = []
    for style in BOX_STYLES.values():
        text = f"{style.tag}: {style.name}"
        if x + 30 + 5.6 * len(text) > 640:
            x, y = 4.0, y + 22
        body.append(_rect(x, y, x + 24, y + 14, style))
        body.append(
            f'<text x="{x + 30:.1f}" y="{y + 11:.1f}" font-size="9" {_FONT} fill="#000000">{escape(text)}</text>'
        )
        described.append(f"{style.name}: {style.colour_name} {style.line}, labelled {style.tag}")
        x += 42 + 5.6 * len(text)
    alt = "Legend of the boxes drawn on the example images. " + "; ".join(described) + "."
    return _svg(640, y + 22, body, alt)
