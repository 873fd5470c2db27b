"""Inline SVG charts for the report, in pure Python (no matplotlib, no script).

Each function returns :class:`markupsafe.Markup` holding one ``<svg
role="img">`` element that WeasyPrint and browsers both render. Its
``<title>`` is the chart's text alternative and states the chart's data in
words ("night: accuracy 91.0% clean, 84.2% at severity 1, ..."): browsers
expose it as the image's accessible name and WeasyPrint writes it as the
``/Alt`` text of the PDF's Figure tag. Every piece of user text (series names,
class names, group values) goes through :func:`markupsafe.escape`; numbers are
formatted here. Colours are colour-blind-safe (Okabe-Ito hues, darkened where
needed) and at least 3:1 against white, text is black or white, whichever
contrasts more with its background, and lines also differ by dash pattern and
marker, so charts stay readable in grey-scale print.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from audit.contract.metric_specs import ACCURACY
from audit.contract.results import ReliabilityBin
from audit.contract.text import bidi_isolate

__all__ = ["Bar", "Series", "bar_chart_ci", "contrast_ratio", "heatmap", "line_chart", "reliability_diagram"]

# Every colour has a contrast of at least 3:1 against white (WCAG 2.2, 1.4.11 non-text contrast).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#AA4499", "#8C6D00", "#6A3D9A", "#000000", "#666666")
DASHES = ("", "6 3", "2 2", "8 3 2 3", "1 3", "10 4")
FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'


@dataclass(frozen=True)
class Series:
    """One line of a :func:`line_chart`.

    Attributes:
        label: Legend text (escaped when drawn).
        points: ``(x, y)`` pairs; ``x`` is a category (drawn in sorted order
            of the union of all series' ``x``), ``y`` in the chart's range.
    """

    label: str
    points: Sequence[tuple[float, float]]


@dataclass(frozen=True)
class Bar:
    """One bar of a :func:`bar_chart_ci`.

    Attributes:
        label: Row label, e.g. ``"camera = phone"``.
        value: Bar length (accuracy in [0, 1]), or ``None`` when unknown.
        lo: Lower end of the whisker, or ``None``.
        hi: Upper end of the whisker, or ``None``.
        flagged: Drawn hatched grey with a note (too few samples).
        n: Sample count shown after the bar.
    """

    label: str
    value: float | None
    lo: float | None = None
    hi: float | None = None
    flagged: bool = False
    n: int | None = None


def _text(x: float, y: float, content: object, *, size: float = 10, anchor: str = "start", extra: str = "") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" {FONT}{extra}>'
        f"{escape(str(content))}</text>"
    )


def _isolates_as_references(markup: str) -> str:
    """The isolates :func:`bidi_isolate` put around right-to-left labels, written as character references.

    Users' own bidirectional controls were removed before a label reaches a chart; the ones left are this
    module's, and writing them as ``&#x2068;`` keeps the page's source free of invisible characters.
    """
    return markup.replace("\u2068", "&#x2068;").replace("\u2069", "&#x2069;")


def _svg(width: float, height: float, body: list[str], alt: str) -> Markup:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" class="chart">'
        f"<title>{_isolates_as_references(str(escape(alt)))}</title>"
    )
    return Markup(head + "".join(body) + "</svg>")


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%"


def _pct1(v: float | None) -> str:
    return "no data" if v is None else f"{100 * v:.1f}%"


def contrast_ratio(a: str, b: str) -> float:
    """The WCAG 2.2 contrast ratio of two ``#rrggbb`` colours, from 1 (none) to 21."""

    def luminance(colour: str) -> float:
        channels = [int(colour.lstrip("#")[i : i + 2], 16) / 255 for i in (0, 2, 4)]
        r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _ink(background: str) -> str:
    """Black or white text, whichever contrasts more with ``background``."""
    return "#000000" if contrast_ratio("#000000", background) >= contrast_ratio("#ffffff", background) else "#ffffff"


def _tick(x: float) -> str:
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.4g}"


def _shorten(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str = ACCURACY.phrase,
    y_range: tuple[float, float] = (0.0, 1.0),
    x_names: dict[float, str] | None = None,
    x_words: dict[float, str] | None = None,
    x_prefix: str = "at",
    width: int = 640,
    height: int = 280,
) -> Markup:
    """A categorical-x line chart with a legend (severity or ε curves).

    Args:
        series: The lines; ``y`` outside ``y_range`` is clipped to the frame.
        title: The chart's name, first sentence of its text alternative.
        x_label: Axis label under the x ticks.
        y_label: Axis label; y ticks are drawn as percentages.
        y_range: The y axis extent.
        x_names: Optional tick text for some x values (``{0: "clean"}``).
        x_words: How the text alternative names some x values (``{0: "clean"}``).
        x_prefix: How the text alternative names the other x values: ``"at severity"``
            gives "84.2% at severity 1".
        width: SVG width in px.
        height: SVG height in px (the legend adds rows below).

    Returns:
        The SVG markup; its ``<title>`` reads "TITLE. LABEL: Y_LABEL 91.0% clean,
        84.2% at severity 1, ...; LABEL: ...".
    """
    xs = sorted({float(x) for s in series for x, _ in s.points})
    legend_rows = math.ceil(len(series) / 3)
    left, right, top, bottom = 52, 12, 12, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    total_h = height + 16 * legend_rows + 6
    lo, hi = y_range
    body: list[str] = []

    def px(x: float) -> float:
        if len(xs) == 1:
            return left + plot_w / 2
        return left + plot_w * xs.index(float(x)) / (len(xs) - 1)

    def py(y: float) -> float:
        y = min(max(y, lo), hi)
        return top + plot_h * (1 - (y - lo) / (hi - lo or 1))

    for i in range(6):
        value = lo + (hi - lo) * i / 5
        y = py(value)
        body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        body.append(_text(left - 6, y + 3.5, _pct(value), size=9, anchor="end"))
    for x in xs:
        name = (x_names or {}).get(x, _tick(x))
        body.append(_text(px(x), top + plot_h + 14, name, size=9, anchor="middle"))
    body.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>')
    body.append(_text(left + plot_w / 2, top + plot_h + 30, x_label, size=10, anchor="middle"))
    body.append(
        _text(
            14,
            top + plot_h / 2,
            y_label,
            size=10,
            anchor="middle",
            extra=f' transform="rotate(-90 14 {top + plot_h / 2:.1f})"',
        )
    )
    for i, s in enumerate(series):
        colour, dash = PALETTE[i % len(PALETTE)], DASHES[i % len(DASHES)]
        pts = sorted((float(x), float(y)) for x, y in s.points if y is not None)
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        body.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/>')
        for x, y in pts:
            body.append(_marker(i, px(x), py(y), colour))
        lx = left + (i % 3) * (plot_w / 3)
        ly = height + 6 + 16 * (i // 3)
        body.append(
            f'<line x1="{lx:.1f}" x2="{lx + 22:.1f}" y1="{ly:.1f}" y2="{ly:.1f}" stroke="{colour}" '
            f'stroke-width="2"{dash_attr}/>'
        )
        body.append(_marker(i, lx + 11, ly, colour))
        body.append(_text(lx + 28, ly + 3.5, _shorten(s.label, 34), size=9))
    words = x_words or {}
    lines = [
        f"{bidi_isolate(s.label)}: {y_label} "
        + ", ".join(
            f"{_pct1(float(y))} {words.get(float(x)) or f'{x_prefix} {_tick(x)}'}"
            for x, y in sorted((float(x), y) for x, y in s.points if y is not None)
        )
        for s in series
    ]
    return _svg(width, total_h, body, f"{title}. " + "; ".join(lines) + ".")


def _marker(i: int, x: float, y: float, colour: str) -> str:
    shape = i % 3
    if shape == 0:
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>'
    if shape == 1:
        return f'<rect x="{x - 3:.1f}" y="{y - 3:.1f}" width="6" height="6" fill="{colour}"/>'
    return f'<path d="M{x:.1f},{y - 4:.1f} L{x + 4:.1f},{y + 3:.1f} L{x - 4:.1f},{y + 3:.1f} Z" fill="{colour}"/>'


def reliability_diagram(
    bins: Sequence[ReliabilityBin], *, title: str, colour: str = PALETTE[0], size: int = 300
) -> Markup:
    """A reliability diagram: accuracy per confidence bin against the diagonal.

    Args:
        bins: The condition's reliability bins (``reliability.bins`` in results.json);
            empty bins (``n == 0``) are skipped.
        title: Accessible title, drawn above the frame.
        colour: Bar colour.
        size: Width and height of the plot area's SVG.

    Returns:
        The SVG markup. Bars show accuracy; the red outline is the gap to the
        bin's mean confidence (over-confidence when the outline is above). The
        text alternative lists every non-empty bin: its confidence range, its
        number of images, its accuracy and its mean confidence.
    """
    left, top, right = 44, 22, 10
    plot = size - left - right
    body = [_text(left + plot / 2, 14, title, size=10, anchor="middle", extra=' font-weight="bold"')]
    described = []

    def px(v: float) -> float:
        return left + plot * min(max(v, 0.0), 1.0)

    def py(v: float) -> float:
        return top + plot * (1 - min(max(v, 0.0), 1.0))

    for i in range(6):
        v = i / 5
        body.append(f'<line x1="{left}" x2="{left + plot}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#eee"/>')
        body.append(_text(left - 5, py(v) + 3.5, _pct(v), size=8, anchor="end"))
        body.append(_text(px(v), top + plot + 12, _pct(v), size=8, anchor="middle"))
    for b in bins:
        if not b.n or b.accuracy is None:
            continue
        x0, x1 = px(b.lo), px(b.hi)
        acc = b.accuracy
        conf = acc if b.confidence is None else b.confidence
        described.append(
            f"confidence {_pct1(b.lo)} to {_pct1(b.hi)}, {b.n} images: "
            f"accuracy {_pct1(acc)}, mean confidence {_pct1(conf)}"
        )
        body.append(
            f'<rect x="{x0:.1f}" y="{py(acc):.1f}" width="{max(x1 - x0 - 1, 0.5):.1f}" '
            f'height="{py(0) - py(acc):.1f}" fill="{colour}" fill-opacity="0.75"/>'
        )
        top_y, bot_y = min(py(acc), py(conf)), max(py(acc), py(conf))
        body.append(
            f'<rect x="{x0:.1f}" y="{top_y:.1f}" width="{max(x1 - x0 - 1, 0.5):.1f}" '
            f'height="{bot_y - top_y:.1f}" fill="none" stroke="#c62828" stroke-width="1"/>'
        )
    body.append(f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(1)}" y2="{py(1)}" stroke="#444" stroke-dasharray="4 3"/>')
    body.append(f'<rect x="{left}" y="{top}" width="{plot}" height="{plot}" fill="none" stroke="#888"/>')
    body.append(_text(left + plot / 2, top + plot + 28, "confidence (top class)", size=9, anchor="middle"))
    body.append(
        _text(
            12,
            top + plot / 2,
            ACCURACY.phrase,
            size=9,
            anchor="middle",
            extra=f' transform="rotate(-90 12 {top + plot / 2:.1f})"',
        )
    )
    alt = f"{title}. Accuracy per confidence bin, " + ("; ".join(described) or "no bin has images") + "."
    return _svg(size, size, body, alt)


def bar_chart_ci(
    bars: Sequence[Bar],
    *,
    title: str,
    width: int = 640,
    label_width: int = 210,
    note: tuple[int, str] | None = None,
) -> Markup:
    """Horizontal bars in [0, 1] with confidence-interval whiskers.

    Args:
        bars: One bar per group, drawn top to bottom in the given order.
        title: Accessible title.
        width: SVG width in px.
        label_width: Space for the row labels (longer labels are shortened;
            the full text is in a ``<title>`` tooltip).
        note: ``(position, text)``: a row of text drawn before bar ``position`` (and said
            there in the text alternative), e.g. how many groups are left out between the
            lowest and the highest.

    Returns:
        The SVG markup. Flagged bars are grey and hatched and say "(few)". The
        text alternative gives every bar's value, interval and number of images.
    """
    row, top, bottom = 18, 8, 30
    right = 92
    plot_w = width - label_width - right
    rows = len(bars) + (1 if note is not None else 0)
    height = top + row * rows + bottom
    hatch = "hatch-" + hashlib.sha1(title.encode("utf-8")).hexdigest()[:10]
    body = [
        f'<defs><pattern id="{hatch}" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="6" height="6" fill="#e0e0e0"/><line x1="0" y1="0" x2="0" y2="6" stroke="#888" stroke-width="2"/>'
        "</pattern></defs>"
    ]

    def px(v: float) -> float:
        return label_width + plot_w * min(max(v, 0.0), 1.0)

    for i in range(6):
        v = i / 5
        body.append(f'<line x1="{px(v):.1f}" x2="{px(v):.1f}" y1="{top}" y2="{top + row * rows}" stroke="#e5e5e5"/>')
        body.append(_text(px(v), top + row * rows + 12, _pct(v), size=8, anchor="middle"))
    body.append(_text(px(0.5), height - 4, "accuracy (whiskers: 95% interval)", size=9, anchor="middle"))
    if note is not None:
        y = top + row * note[0]
        body.append(f'<rect x="0" y="{y}" width="{width}" height="{row}" fill="#ffffff"/>')
        body.append(_text(width / 2, y + 12.5, note[1], size=9, anchor="middle"))
    for j, bar in enumerate(bars):
        y = top + row * (j + (1 if note is not None and j >= note[0] else 0))
        body.append(
            f"<g><title>{escape(bar.label)}</title>"
            + _text(label_width - 6, y + 12.5, _shorten(bar.label, 34), size=9, anchor="end")
            + "</g>"
        )
        if bar.value is None:
            body.append(_text(px(0) + 4, y + 12.5, "no data", size=8))
            continue
        fill = f"url(#{hatch})" if bar.flagged else PALETTE[0]
        body.append(
            f'<rect x="{px(0):.1f}" y="{y + 3}" width="{px(bar.value) - px(0):.1f}" height="{row - 6}" '
            f'fill="{fill}" fill-opacity="{1 if bar.flagged else 0.8}"/>'
        )
        if bar.lo is not None and bar.hi is not None:
            cy = y + row / 2
            body.append(
                f'<line x1="{px(bar.lo):.1f}" x2="{px(bar.hi):.1f}" y1="{cy:.1f}" y2="{cy:.1f}" '
                'stroke="#000" stroke-width="1.2"/>'
            )
            for end in (bar.lo, bar.hi):
                body.append(
                    f'<line x1="{px(end):.1f}" x2="{px(end):.1f}" y1="{cy - 4:.1f}" y2="{cy + 4:.1f}" '
                    'stroke="#000" stroke-width="1.2"/>'
                )
        label = f"{_pct(bar.value)}" + (f" n={bar.n}" if bar.n is not None else "")
        if bar.flagged:
            label += " (few)"
        body.append(_text(px(1) + 4, y + 12.5, label, size=8))
    body.append(f'<line x1="{px(0):.1f}" x2="{px(0):.1f}" y1="{top}" y2="{top + row * rows}" stroke="#555"/>')
    described = []
    for j, bar in enumerate(bars):
        if note is not None and j == note[0]:
            described.append(note[1])
        text = f"{bidi_isolate(bar.label)}: accuracy {_pct1(bar.value)}"
        if bar.value is not None and bar.lo is not None and bar.hi is not None:
            text += f" (95% interval {_pct1(bar.lo)} to {_pct1(bar.hi)})"
        if bar.n is not None:
            text += f", {bar.n} images"
        if bar.flagged:
            text += ", too few images to compare"
        described.append(text)
    if note is not None and note[0] >= len(bars):
        described.append(note[1])
    return _svg(width, height, body, f"{title}. " + "; ".join(described) + ".")


def heatmap(
    matrix: Sequence[Sequence[int]],
    labels: Sequence[str],
    *,
    title: str,
    max_width: int = 640,
    annotate_limit: int = 12,
) -> Markup:
    """A confusion-matrix heatmap, shaded by each row's share (recall view).

    Args:
        matrix: Counts; rows are the true class, columns the prediction.
        labels: Class names for rows and columns (escaped, shortened).
        title: Accessible title.
        max_width: Maximum SVG width in px; cells shrink to fit.
        annotate_limit: Counts are written in cells (and every cell is named in the text
            alternative) only up to this many classes.

    Returns:
        The SVG markup. Its text alternative gives, per true class, the number of
        images and how many were predicted as each class (up to ``annotate_limit``
        classes; beyond, the correct count and the most frequent confusion).
    """
    k = len(matrix)
    label_w, top = 120, 96
    cell = max(4.0, min(40.0, (max_width - label_w - 10) / max(k, 1)))
    size_w = label_w + cell * k + 10
    size_h = top + cell * k + 22
    body = [_text(label_w + cell * k / 2, size_h - 6, "predicted class", size=9, anchor="middle")]
    body.append(_text(10, top - 6, "true class \u2193", size=9))
    show_labels = cell >= 9
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        if show_labels:
            name = labels[i] if i < len(labels) else str(i)
            body.append(
                _text(label_w - 4, top + cell * i + cell / 2 + 3, _shorten(str(name), 18), size=8, anchor="end")
            )
            cx = label_w + cell * i + cell / 2 + 3
            body.append(
                _text(
                    cx, top - 4, _shorten(str(name), 16), size=8, extra=f' transform="rotate(-60 {cx:.1f} {top - 4})"'
                )
            )
        for j, count in enumerate(row):
            share = count / total
            shade = _blend(share)
            x, y = label_w + cell * j, top + cell * i
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell:.1f}" height="{cell:.1f}" fill="{shade}" '
                'stroke="#fff" stroke-width="0.5"/>'
            )
            if k <= annotate_limit:
                body.append(
                    _text(
                        x + cell / 2, y + cell / 2 + 3, count, size=8, anchor="middle", extra=f' fill="{_ink(shade)}"'
                    )
                )
    body.append(
        f'<rect x="{label_w}" y="{top}" width="{cell * k:.1f}" height="{cell * k:.1f}" fill="none" stroke="#888"/>'
    )
    names = [str(labels[i]) if i < len(labels) else str(i) for i in range(k)]
    described = [_describe_confusion_row(names, i, row, full=k <= annotate_limit) for i, row in enumerate(matrix)]
    alt = f"{title}. Rows are the true class, columns the predicted class. " + "; ".join(described) + "."
    return _svg(size_w, size_h, body, alt)


def _describe_confusion_row(names: Sequence[str], i: int, row: Sequence[int], *, full: bool) -> str:
    head = f"true {bidi_isolate(names[i])}, {sum(row)} images: "
    if full:
        return head + ", ".join(f"{count} predicted {bidi_isolate(names[j])}" for j, count in enumerate(row))
    errors = [(count, j) for j, count in enumerate(row) if j != i and count > 0]
    text = head + f"{row[i]} predicted correctly"
    if errors:
        count, j = max(errors, key=lambda e: (e[0], -e[1]))
        text += f", most often mistaken for {bidi_isolate(names[j])} ({count} images)"
    return text


def _blend(share: float) -> str:
    """White to dark blue as ``share`` goes from 0 to 1."""
    share = min(max(share, 0.0), 1.0) ** 0.6
    r, g, b = (int(255 + (c - 255) * share) for c in (8, 48, 107))
    return f"#{r:02x}{g:02x}{b:02x}"
