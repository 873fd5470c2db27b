"""The report's breaking-point section: survival curves per group for the stressors with the largest disparity.

Everything shown is selected from results.json (``breaking_points`` and
``breaking_point_disparity``), never computed: the pairs (stressor, attribute)
are ranked by their stored ``disparity``, and each chart comes with a table
holding the same numbers (its text alternative).
"""

from __future__ import annotations

import math
from typing import Any

from audit.contract.results import BreakingPointDisparity, BreakingPointSummary, Results
from reports import plots

__all__ = ["breaking_point_view"]

#: A breaking-point measure -> its axis label and its name in sentences.
UNITS = {"epsilon": "\u03b5 (pixel units of [0, 1])", "area_share": "patch share of the image area"}
SYMBOLS = {"epsilon": "\u03b5", "area_share": "patch share of the image area"}


def _fmt(value: float | None, measure: str) -> str:
    if value is None or not math.isfinite(value):
        return "\u2014"
    return f"{value:.4g}" if measure in ("epsilon", "area_share") else f"{value:g}"


def _median_text(entry: BreakingPointSummary) -> str:
    measure = entry.measure
    text = _fmt(entry.median, measure)
    if entry.median_censored:
        text = f"> {text}"
    ci = entry.median_ci
    if ci is not None:
        lo = _fmt(ci[0], measure)
        hi = "above the highest level" if ci[1] is None else _fmt(ci[1], measure)
        text += f" (95% {lo}\u2013{hi})"
    return text


def _row(entry: BreakingPointSummary, label: str) -> dict[str, Any]:
    return {
        "label": label,
        "n": entry.n,
        "wrong_on_clean": entry.wrong_on_clean,
        "never": entry.never,
        "median": _median_text(entry),
        "small": entry.insufficient_data,
        "surviving": [p.surviving for p in entry.survival],
    }


def _panel(
    stressor: str,
    attribute: str | None,
    entries: list[BreakingPointSummary],
    disparity: BreakingPointDisparity | None,
) -> dict[str, Any]:
    overall = next((e for e in entries if e.attribute is None), None)
    groups = [e for e in entries if attribute is not None and e.attribute == attribute]
    shown = ([overall] if overall else []) + groups
    first = shown[0]
    measure = first.measure
    levels = [p.severity for p in first.survival]
    series, rows = [], []
    for e in shown:
        label = "all samples" if e.attribute is None else f"{attribute} = {e.value}"
        rows.append(_row(e, label))
        points = [(0.0, 1.0)] + [(lv, p.surviving) for lv, p in zip(levels, e.survival) if p.surviving is not None]
        if len(points) > 1 and not e.insufficient_data:
            series.append(plots.Series(f"{label} (n={e.n})", points))
    unit = UNITS.get(measure, "severity")
    chart = (
        plots.line_chart(
            series,
            title=f"Share of samples still correct under {stressor}" + (f", per {attribute}" if attribute else ""),
            x_label=f"{unit} (0 = unaltered; samples wrong on unaltered images are left out)",
            x_names={0.0: "0 clean"},
            y_label="share still correct",
        )
        if series
        else None
    )
    sentence = ""
    if disparity is not None and disparity.disparity is not None:
        sentence = (
            f"Under {stressor}, the survival curves of the {attribute} groups lie furthest apart at "
            f"{SYMBOLS.get(measure, 'severity')} {_fmt(disparity.at_severity, measure)}: "
            f"{100 * disparity.disparity:.1f} percentage points between {attribute} = "
            f"{disparity.best_group} and {attribute} = {disparity.worst_group}."
        )
    return {
        "stressor": stressor,
        "attribute": attribute,
        "measure": measure,
        "measure_name": SYMBOLS.get(measure, "severity"),
        "method": first.method,
        "resolution": first.resolution,
        "levels": [_fmt(lv, measure) for lv in levels],
        "chart": chart,
        "rows": rows,
        "sentence": sentence,
    }


def breaking_point_view(results: Results, *, limit: int = 3) -> list[dict[str, Any]]:
    """Panels (chart, table, sentence) for the ``limit`` stressors with the largest stored disparity,
    each with the attribute whose groups lie furthest apart.

    Without any comparable groups, one panel per stressor with its overall curve.
    """
    entries = [e for e in results.breaking_points or [] if e.survival]
    if not entries:
        return []
    by_stressor: dict[str, list[BreakingPointSummary]] = {}
    for e in entries:
        by_stressor.setdefault(e.stressor, []).append(e)
    ranked = sorted(
        (d for d in results.breaking_point_disparity or [] if d.disparity is not None),
        key=lambda d: -d.disparity,  # type: ignore[operator]
    )
    best: dict[str, BreakingPointDisparity] = {}  # one panel per stressor: its attribute with the largest disparity
    for d in ranked:
        if d.stressor in by_stressor:
            best.setdefault(d.stressor, d)
    panels = [_panel(name, d.attribute, by_stressor[name], d) for name, d in list(best.items())[:limit]]
    if panels:
        return panels
    return [_panel(name, None, group, None) for name, group in list(by_stressor.items())[:limit]]
