"""The report's sections on what goes wrong: mistakes, fairness, data governance, and the stressor gallery."""

from __future__ import annotations

from typing import Any

from audit.contract.results import ErrorThumbnails
from reports.error_examples import EXAMPLES_PER_TARGET, error_examples
from reports.html.charts import confusion_chart
from reports.html.context import ReportContext
from reports.html.escaping import clean, is_data_image
from reports.html.formatting import finite

__all__ = ["SAMPLE_ID_LIMIT", "errors", "fairness", "gallery", "governance"]

#: Sample ids shown per governance finding (all of them are in governance.csv).
SAMPLE_ID_LIMIT = 20


def errors(ctx: ReportContext) -> dict[str, Any] | None:
    """The confusion matrix, the frequent confusions and per-class rates, and the misclassified samples named.

    None for a detector's results (its error types are the detection section's TIDE bars).
    """
    if ctx.detection is not None:
        return None
    return {
        "confusion_chart": confusion_chart(ctx.clean, ctx.class_names),
        "error_types": ctx.clean.error_types if ctx.clean is not None else None,
        # sample ids are users' strings; their thumbnails come from results.json (error_thumbnails)
        "error_examples": _named_samples(ctx),
        "examples_known": ctx.predictions is not None,
        "examples_per_target": EXAMPLES_PER_TARGET,
        "has_gallery": bool(ctx.gallery),
    }


def _named_samples(ctx: ReportContext) -> list[dict[str, Any]]:
    """The misclassified samples named per failing target, with their thumbnails.

    From predictions.csv when it belongs to the results (:func:`reports.error_examples.error_examples`);
    without it, the samples results.json holds thumbnails of (``error_thumbnails``, selected by the run
    from its own predictions), without their classes and probabilities (``from_results``).
    """
    stored = ctx.results.error_thumbnails or []
    if ctx.predictions is not None:
        return _with_thumbnails(clean(error_examples(ctx.results, ctx.predictions)), stored)
    named = [
        {
            "condition": t.condition,
            "attribute": t.attribute,
            "value": t.value,
            "errors": None,
            "from_results": True,
            "samples": [{"sample_id": s.sample_id} for s in t.samples],
        }
        for t in stored
    ]
    return _with_thumbnails(named, stored)


def _with_thumbnails(examples: list[dict[str, Any]], stored: list[ErrorThumbnails]) -> list[dict[str, Any]]:
    """The named samples, each with its thumbnail (``image``) where ``error_thumbnails`` holds one for its target."""
    images = {
        (t.condition, t.attribute, t.value, s.sample_id): s.image
        for t in stored
        for s in t.samples
        if is_data_image(s.image)
    }
    for e in examples:
        for s in e["samples"]:
            s["image"] = images.get((e["condition"], e["attribute"], e["value"], s["sample_id"]))
        e["thumbnails"] = any(s["image"] for s in e["samples"])
    return examples


def fairness(ctx: ReportContext) -> dict[str, Any] | None:
    """Differences between groups per condition, and who loses most under each stressor.

    None for a detector's results (the detection section holds its recall gap tests).
    """
    if ctx.detection is not None:
        return None
    disparity = [
        {
            "condition": d.condition,
            "attribute": d.attribute,
            "group": d.worst_group,
            "accuracy_drop": finite(d.drops.get(d.worst_group)) if d.worst_group is not None else None,
            "disparity": finite(d.disparity),
        }
        for d in ctx.results.robustness_disparity
    ]
    return {"fairness": ctx.results.fairness, "disparity": disparity}


def governance(ctx: ReportContext) -> dict[str, Any]:
    """Every data-governance check with the samples it concerns."""
    return {"findings": ctx.findings, "governance": ctx.results.governance, "sample_id_limit": SAMPLE_ID_LIMIT}


def gallery(ctx: ReportContext) -> dict[str, Any] | None:
    """Example images under each condition; None when the results hold none (the policy allows none)."""
    return {"gallery": ctx.gallery} if ctx.gallery else None
