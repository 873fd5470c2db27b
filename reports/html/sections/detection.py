"""The report's detection section: what an object detector's audit measured (results.json ``detection``).

Selected and formatted, never computed: mAP and the operating-point metrics per condition, corruption
robustness (mPC, rPC), the TIDE error types of the clean and the worst condition, calibration (D-ECE and the
reliability diagram), the lowest-recall subgroups (image- and object-level), the recall gap tests, the per-object
breaking points (a survival chart per stressor with its table and intervals), the skipped
annotations, and the example images with their boxes drawn (:mod:`reports.html.detection_charts`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from audit.contract.results import DetectionCondition, DetectionGroup, DetectionResults, ObjectBreakingEntry
from reports.html.context import ReportContext
from reports.html.detection_charts import (
    BOX_STYLES,
    TIDE_WORDS,
    example_view,
    fmt_num_ci,
    legend_svg,
    map_chart,
    reliability_chart,
    survival_chart,
    tide_chart,
)
from reports.html.detection_prose import worst_condition
from reports.html.escaping import is_data_image
from reports.html.formatting import DASH, finite, fmt_ci, fmt_num, fmt_pct
from reports.plots import PALETTE

__all__ = ["BREAKING_PANELS_LIMIT", "SKIPPED_ANNOTATIONS_LIMIT", "WORST_GROUPS_LIMIT", "detection"]

#: Stressors shown in "Per-object breaking points" (all of them are in results.json and object_breaking_points.csv).
BREAKING_PANELS_LIMIT = 4

#: Groups listed per level in "lowest recall" (all of them are in groups.csv).
WORST_GROUPS_LIMIT = 8
#: Skipped annotations listed one by one (all of them are in skipped.csv; every reason is counted).
SKIPPED_ANNOTATIONS_LIMIT = 50


def _metric_row(c: DetectionCondition) -> dict[str, Any]:
    m = c.metrics
    cal = c.calibration
    return {
        "id": c.id,
        "images": m.n_images,
        "objects": m.n_objects,
        "dropped": c.dropped_objects,
        "map": fmt_num(m.map),
        "map_50": fmt_num(m.map_50),
        "recall": fmt_pct(m.recall),
        "recall_ci": fmt_ci(m.recall_ci),
        "precision": fmt_pct(m.precision),
        "precision_ci": fmt_ci(m.precision_ci),
        "f1": fmt_pct(m.f1),
        "f1_ci": fmt_ci(m.f1_ci),
        "fp_per_image": fmt_num(m.fp_per_image, 2),
        "fp_per_image_ci": fmt_num_ci(m.fp_per_image_ci, 2),
        "missed_per_image": fmt_num(m.missed_per_image, 2),
        "missed_per_image_ci": fmt_num_ci(m.missed_per_image_ci, 2),
        "counts": f"{DASH if m.tp is None else m.tp} / {DASH if m.fp is None else m.fp} / {m.fn}",
        "dece": fmt_num(cal.dece) if cal is not None else DASH,
        "scored": cal.detections if cal is not None else None,
    }


def _group_row(g: DetectionGroup) -> dict[str, Any]:
    m = g.metrics
    return {
        "attribute": g.attribute,
        "value": g.value,
        "objects": m.n_objects,
        "images": m.n_images,
        "recall": fmt_pct(m.recall),
        "recall_ci": fmt_ci(m.recall_ci),
        "map": fmt_num(m.map),
        "fp_per_image": fmt_num(m.fp_per_image, 2),
        "too_few": g.insufficient_data,
    }


def _lowest_recall(condition: DetectionCondition, level: str) -> tuple[list[dict[str, Any]], int]:
    """The ``level`` groups of ``condition`` by recall, lowest first (groups with enough objects first).

    Returns the first :data:`WORST_GROUPS_LIMIT` rows and how many groups were left out.
    """
    groups = [g for g in condition.groups if g.level == level]

    def key(g: DetectionGroup) -> tuple[bool, bool, float, str, str]:
        recall = finite(g.metrics.recall)
        return (g.insufficient_data, recall is None, recall or 0.0, g.attribute, g.value)

    ordered = sorted(groups, key=key)
    return [_group_row(g) for g in ordered[:WORST_GROUPS_LIMIT]], max(0, len(ordered) - WORST_GROUPS_LIMIT)


def _worst_groups(det: DetectionResults, worst: DetectionCondition | None) -> list[dict[str, Any]]:
    panels = []
    for label, c in (("unaltered", det.conditions[0] if det.conditions else None), ("worst condition", worst)):
        if c is None:
            continue
        for level, what in (("image", "image-level groups (a manifest attribute)"), ("object", "object-level groups")):
            rows, more = _lowest_recall(c, level)
            if rows:
                panels.append(
                    {"condition": c.id, "label": label, "level": level, "what": what, "rows": rows, "more": more}
                )
    return panels


def _gap_rows(det: DetectionResults) -> list[dict[str, Any]]:
    rows = []
    for t in det.gap_tests:
        worst = t.worst_group
        best = t.best_group
        rows.append(
            {
                "condition": t.condition,
                "attribute": t.attribute,
                "level": t.level,
                "worst": DASH if worst is None else f"{worst} ({fmt_pct(t.recalls.get(worst))})",
                "best": DASH if best is None else f"{best} ({fmt_pct(t.recalls.get(best))})",
                "gap": t.gap,
                "gap_ci": _pp_ci(t.gap_ci),
                "p": t.p_value,
                "p_holm": t.p_holm,
                "groups": len(t.recalls),
                "excluded": ", ".join(t.excluded),
            }
        )
    return rows


def _pp_ci(value: object) -> str:
    """An interval of a gap in percentage points: ``[-0.2, 0.3] -> "-20.0 to 30.0 pp"``."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(finite(v) is not None for v in value):
        return f"{100 * float(value[0]):.1f} to {100 * float(value[1]):.1f} pp"
    return DASH


def _robustness(det: DetectionResults) -> dict[str, Any] | None:
    r = det.robustness
    if r is None:
        return None
    return {
        "clean_map": fmt_num(r.clean_map),
        "mpc": fmt_num(r.mpc),
        "rpc": fmt_pct(r.rpc),
        "stressors": [
            {"stressor": s.stressor, "mean_map": fmt_num(s.mean_map), "relative": fmt_pct(s.relative)}
            for s in r.stressors
        ],
    }


def _breaking(det: DetectionResults) -> list[Any]:
    """One survival chart per stressor (at most :data:`BREAKING_PANELS_LIMIT`): all objects and the groups of
    the attribute whose curves lie furthest apart (its stored ``disparity``); all objects alone without one."""
    bp = det.breaking_points
    if bp is None:
        return []
    by_stressor: dict[str, list[ObjectBreakingEntry]] = {}
    for e in bp.entries:
        by_stressor.setdefault(e.stressor, []).append(e)
    panels = []
    for stressor, entries in list(by_stressor.items())[:BREAKING_PANELS_LIMIT]:
        ranked = [d for d in bp.disparity if d.stressor == stressor and d.disparity is not None]
        widest = max(ranked, key=lambda d: d.disparity or 0.0, default=None)
        overall = [e for e in entries if e.attribute is None]
        groups = [e for e in entries if widest is not None and e.attribute == widest.attribute]
        attribute = widest.attribute if widest is not None else None
        view = survival_chart(stressor, attribute, overall + groups, widest)
        if view is not None:
            panels.append(view)
    return panels


def _skipped(det: DetectionResults) -> dict[str, Any]:
    rows = det.skipped_annotations
    return {
        "total": len(rows),
        "reasons": Counter(r.reason for r in rows).most_common(),
        "rows": rows[:SKIPPED_ANNOTATIONS_LIMIT],
    }


def detection(ctx: ReportContext) -> dict[str, Any] | None:
    """Everything the detection audit measured, formatted; None for a classifier's results."""
    det = ctx.results.detection
    if det is None:
        return None
    clean = det.conditions[0] if det.conditions else None
    worst = worst_condition(det)
    pairs = [(c, label) for c, label in ((clean, "unaltered"), (worst, "worst condition")) if c is not None]
    examples = [e for e in det.examples or [] if is_data_image(e.image)]
    return {
        "det": {
            "settings": det.settings,
            "ground_truth": det.ground_truth,
            "class_names": det.class_names,
            "rows": [_metric_row(c) for c in det.conditions],
            "moved": any(c.dropped_objects is not None for c in det.conditions),
            "worst": worst.id if worst is not None else None,
            "map_chart": map_chart(det.conditions),
            "robustness": _robustness(det),
            "tide": [v for v in (tide_chart(c, label) for c, label in pairs) if v is not None],
            "tide_words": TIDE_WORDS,
            "calibration": clean.calibration if clean is not None else None,
            "reliability": [
                v
                for v in (reliability_chart(c, label, PALETTE[i]) for i, (c, label) in enumerate(pairs))
                if v is not None
            ],
            "worst_groups": _worst_groups(det, worst),
            "worst_groups_limit": WORST_GROUPS_LIMIT,
            "gaps": _gap_rows(det),
            "breaking": _breaking(det),
            "breaking_stressors": len({e.stressor for e in det.breaking_points.entries}) if det.breaking_points else 0,
            "breaking_limit": BREAKING_PANELS_LIMIT,
            "skipped": _skipped(det),
            "examples": [example_view(e) for e in examples],
            "examples_dropped": len(det.examples or []) - len(examples),
            "legend": legend_svg() if examples else None,
            "box_styles": BOX_STYLES,
        }
    }
