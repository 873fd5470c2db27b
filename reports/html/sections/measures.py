"""The report's measurement sections: robustness, breaking points, adversarial robustness, calibration, subgroups."""

from __future__ import annotations

from typing import Any

from audit.contract.adversarial_meaning import CHECKS, MEANING
from audit.contract.results import StressorInfo
from reports.breaking_points_view import breaking_point_view
from reports.ensemble_view import ensemble_headline
from reports.group_view import group_tables
from reports.html.charts import group_chart, reliability
from reports.html.context import ReportContext
from reports.html.curves import severity_chart

__all__ = ["adversarial", "breaking_points", "calibration", "groups", "robustness"]


def robustness(ctx: ReportContext) -> dict[str, Any] | None:
    """Accuracy against severity, the metrics of every condition, and what each severity means.

    None for a detector's results (the detection section shows its conditions).
    """
    if ctx.detection is not None:
        return None
    return {
        "severity_chart": severity_chart(ctx.conditions, ctx.clean, ctx.adversarial),
        "conditions": ctx.conditions,
        "drops": ctx.drops,
        "stressors": [_run_levels_only(s) for s in ctx.results.stressors],
    }


def _run_levels_only(stressor: StressorInfo) -> StressorInfo:
    """The stressor with ``severity_meaning`` cut to the severities that were run."""
    wanted = {float(x) for x in stressor.severities}
    meaning = {k: t for k, t in stressor.severity_meaning.items() if _as_float(k) in wanted}
    return stressor.model_copy(update={"severity_meaning": meaning})


def _as_float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def breaking_points(ctx: ReportContext) -> dict[str, Any] | None:
    """Survival curves per group for the stressors with the largest disparity; None without breaking points."""
    panels = breaking_point_view(ctx.results)
    return {"breaking_points": panels} if panels else None


def adversarial(ctx: ReportContext) -> dict[str, Any] | None:
    """The attack curves, the ensemble's headline, the attack members and the sanity checks with what each
    means for the verdict; None when neither attacks nor checks are in the results."""
    checks = ctx.results.adversarial_checks
    if ctx.adversarial_chart is None and not checks:
        return None
    return {
        "adversarial_chart": ctx.adversarial_chart,
        "adversarial_checks": checks,
        "check_meanings": check_meanings(checks or []),
        "ensemble_headline": ensemble_headline(ctx.results, ctx.adversarial),
        **attack_members(ctx.results),
    }


def check_meanings(checks: list[Any]) -> list[dict[str, str]]:
    """What each sanity check in the results means for the verdict when it is raised (fail or warn),
    once per check id, in the checks' order (:data:`audit.contract.adversarial_meaning.MEANING`)."""
    present = {str(a.check) for a in checks}
    return [{"check": c, "meaning": MEANING[c]} for c in CHECKS if c in present]


def attack_members(results: Any) -> dict[str, Any]:
    """Per attack condition that reports details (APGD, ensembles): each member's robust accuracy and time,
    and per attack the reference members it did not run (``options.members_not_run``)."""
    rows = []
    for cond in results.conditions:
        details = cond.attack_details
        if details is None:
            continue
        for m in details.members:
            rows.append(
                {
                    "condition": cond.id,
                    "member": m.member,
                    "attacked": m.attacked,
                    "robust_accuracy": m.robust_accuracy,
                    "seconds": m.seconds,
                    "eot_samples": details.eot_samples,
                    "randomised": details.randomised_model,
                }
            )
    missing = {
        s.name: list(s.options.get("members_not_run") or [])
        for s in results.stressors
        if s.model_aware and s.options.get("members_not_run")
    }
    return {"attack_members": rows, "members_not_run": missing}


def calibration(ctx: ReportContext) -> dict[str, Any] | None:
    """Reliability diagrams of the clean and the worst condition; None for a detector (see its section)."""
    if ctx.detection is not None:
        return None
    return {"reliability": reliability(ctx.clean, ctx.worst)}


def groups(ctx: ReportContext) -> dict[str, Any] | None:
    """Accuracy per group (charts of the clean and the worst condition) and the tables of every group.

    None for a detector's results (the detection section shows its subgroups).
    """
    if ctx.detection is not None:
        return None
    charts = [group_chart(c) for c in (ctx.clean, ctx.worst) if c and c.groups]
    return {"group_charts": charts, "group_tables": group_tables(ctx.conditions)}
