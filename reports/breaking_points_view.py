"""The report's breaking-point section: survival curves per group for the stressors with the largest disparity.

Everything shown is selected from results.json (``breaking_points`` and
``breaking_point_disparity``), never computed: the pairs (stressor, attribute)
are ranked by their stored ``disparity``, and each chart comes with a table
holding the same numbers (its text alternative).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from reports import plots

__all__ = ["breaking_point_view"]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: Any, measure: str) -> str:
    number = _number(value)
    if number is None:
        return "\u2014"
    return f"{number:.4g}" if measure == "epsilon" else f"{number:g}"


def _median_text(entry: Mapping[str, Any]) -> str:
    measure = str(entry.get("measure"))
    text = _fmt(entry.get("median"), measure)
    if entry.get("median_censored"):
        text = f"> {text}"
    ci = entry.get("median_ci")
    if isinstance(ci, list) and len(ci) == 2:
        lo = _fmt(ci[0], measure)
        hi = "above the highest level" if ci[1] is None else _fmt(ci[1], measure)
        text += f" (95% {lo}\u2013{hi})"
    return text


def _row(entry: Mapping[str, Any], label: str) -> dict[str, Any]:
    return {
        "label": label,
        "n": entry.get("n"),
        "wrong_on_clean": entry.get("wrong_on_clean"),
        "never": entry.get("never"),
        "median": _median_text(entry),
        "small": bool(entry.get("insufficient_data")),
        "surviving": [p.get("surviving") for p in entry.get("survival") or [] if isinstance(p, Mapping)],
    }


def _panel(stressor: str, attribute: str | None, entries: list[Mapping[str, Any]], disparity: Mapping | None):
    overall = next((e for e in entries if e.get("attribute") is None), None)
    groups = [e for e in entries if attribute is not None and e.get("attribute") == attribute]
    shown = ([overall] if overall else []) + groups
    first = shown[0]
    measure = str(first.get("measure"))
    levels = [_number(p.get("severity")) for p in first.get("survival") or []]
    series, rows = [], []
    for e in shown:
        label = "all samples" if e.get("attribute") is None else f"{attribute} = {e.get('value')}"
        rows.append(_row(e, label))
        points = [(0.0, 1.0)] + [
            (lv, s)
            for lv, p in zip(levels, e.get("survival") or [])
            if lv is not None and (s := _number(p.get("surviving"))) is not None
        ]
        if len(points) > 1 and not e.get("insufficient_data"):
            series.append(plots.Series(f"{label} (n={e.get('n')})", points))
    unit = "\u03b5 (pixel units of [0, 1])" if measure == "epsilon" else "severity"
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
    if disparity and _number(disparity.get("disparity")) is not None:
        sentence = (
            f"Under {stressor}, the survival curves of the {attribute} groups lie furthest apart at "
            f"{'ε' if measure == 'epsilon' else 'severity'} {_fmt(disparity.get('at_severity'), measure)}: "
            f"{100 * float(disparity['disparity']):.1f} percentage points between {attribute} = "
            f"{disparity.get('best_group')} and {attribute} = {disparity.get('worst_group')}."
        )
    return {
        "stressor": stressor,
        "attribute": attribute,
        "measure": measure,
        "method": first.get("method"),
        "resolution": first.get("resolution"),
        "levels": [_fmt(lv, measure) for lv in levels],
        "chart": chart,
        "rows": rows,
        "sentence": sentence,
    }


def breaking_point_view(results: Mapping[str, Any], *, limit: int = 3) -> list[dict[str, Any]]:
    """Panels (chart, table, sentence) for the ``limit`` stressors with the largest stored disparity,
    each with the attribute whose groups lie furthest apart.

    Without any comparable groups, one panel per stressor with its overall curve.
    """
    entries = [e for e in results.get("breaking_points") or [] if isinstance(e, Mapping) and e.get("survival")]
    if not entries:
        return []
    by_stressor: dict[str, list[Mapping[str, Any]]] = {}
    for e in entries:
        by_stressor.setdefault(str(e.get("stressor")), []).append(e)
    ranked = sorted(
        (
            d
            for d in results.get("breaking_point_disparity") or []
            if isinstance(d, Mapping) and _number(d.get("disparity")) is not None
        ),
        key=lambda d: -float(d["disparity"]),
    )
    best: dict[str, Mapping[str, Any]] = {}  # one panel per stressor: its attribute with the largest disparity
    for d in ranked:
        if str(d.get("stressor")) in by_stressor:
            best.setdefault(str(d["stressor"]), d)
    panels = [_panel(name, str(d["attribute"]), by_stressor[name], d) for name, d in list(best.items())[:limit]]
    if panels:
        return panels
    return [_panel(name, None, group, None) for name, group in list(by_stressor.items())[:limit]]
