"""The report's physical-threats section: the cross-fitted universal perturbations and adversarial patches
(results.json ``conditions[].physical``): robust accuracy and fooling rate per budget, the most affected subgroup,
the fit, and the fitted perturbations as images when the policy allows images. Rendered from results.json alone."""

from __future__ import annotations

from typing import Any

from audit.contract.metric_specs import ACCURACY
from reports.html.context import ReportContext
from reports.html.escaping import is_data_image

__all__ = ["physical"]


def _worst_group(cond: Any) -> dict[str, Any] | None:
    """The subgroup (not an intersection, enough samples) with the lowest robust accuracy under ``cond``."""
    groups = [
        g
        for g in cond.groups
        if not g.insufficient_data and "×" not in g.attribute and _robust(g.metrics) is not None and g.metrics.n
    ]
    if not groups:
        return None
    g = min(groups, key=lambda g: (_robust(g.metrics), g.attribute, g.value))
    return {"attribute": g.attribute, "value": g.value, "robust": _robust(g.metrics), "n": g.metrics.n}


def _robust(metrics: Any) -> float | None:
    """Accuracy under the attack (robust accuracy)."""
    return getattr(metrics, ACCURACY.name)


def _robust_ci(metrics: Any) -> Any:
    return getattr(metrics, f"{ACCURACY.name}_ci")


def physical(ctx: ReportContext) -> dict[str, Any] | None:
    """One row per cross-fitted physical attack condition, in run order; None when no such attack ran."""
    rows = []
    for cond in ctx.results.conditions or []:  # a detection run has no classification conditions
        p = cond.physical
        if p is None:
            continue
        rows.append(
            {
                "id": cond.id,
                "threat_model": p.threat_model,
                "budget": p.budget_meaning,
                "patch_side": p.patch_side,
                "n": cond.metrics.n,
                "robust": _robust(cond.metrics),
                "robust_ci": _robust_ci(cond.metrics),
                "fooling_rate": p.fooling_rate,
                "changed": p.changed,
                "fold_sizes": p.fold_sizes,
                "fit": p.fit,
                "worst": _worst_group(cond),
                "images": [u for u in p.images or [] if is_data_image(u)],
            }
        )
    if not rows:
        return None
    return {"physical_rows": rows, "physical_images_allowed": bool(ctx.gallery)}
