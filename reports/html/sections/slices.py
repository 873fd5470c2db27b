"""The report's slice section: the slices a search found (results.json ``slice_search``) and the watched slices
(``slices``) with the verdicts of the rules that judged them. Rendered from results.json alone, so
``cvaudit report`` draws it again from a run folder."""

from __future__ import annotations

from typing import Any

from audit.contract.slices import WATCHED_METRICS
from reports.html.context import ReportContext
from reports.html.escaping import is_data_image

__all__ = ["TOP_SLICES", "slices"]

#: The found slices the report lists (all of them are in slices.csv).
TOP_SLICES = 10


def _rules_of(ctx: ReportContext, slice_id: str) -> list[dict[str, Any]]:
    """The policy rules whose target is the watched slice ``slice_id`` (``slices[<id>]``), with their status."""
    target = f"slices[{slice_id}]"
    out = []
    for rule in ctx.results.policy.rules if ctx.results.policy is not None else []:
        if rule.condition == target:
            out.append({"id": rule.id, "status": rule.status, "message": rule.message})
        else:
            for e in rule.evaluations or []:
                if e.condition == target:
                    out.append({"id": rule.id, "status": e.status, "message": rule.message})
    return out


def slices(ctx: ReportContext) -> dict[str, Any] | None:
    """The found slices (worst first, at most :data:`TOP_SLICES`, with their example images) and the watched ones.

    None when the results have neither (no search ran and no slice is watched).
    """
    search, watched = ctx.results.slice_search, ctx.results.slices
    if search is None and not watched:
        return None
    found = []
    if search is not None:
        for f in search.findings[:TOP_SLICES]:
            found.append(
                {
                    "finding": f,
                    "examples": [e for e in f.examples if is_data_image(e.image)],
                }
            )
    return {
        "slice_search": search,
        "slices_found": found,
        "slices_more": max(0, len(search.findings) - TOP_SLICES) if search is not None else 0,
        "slices_images_allowed": bool(ctx.gallery),
        "slices_watched": [{"slice": w, "rules": _rules_of(ctx, w.id)} for w in watched or []],
        # a detection run's watched slices are objects measured by recall (task: detection), a classifier's by accuracy
        "slices_watched_metric": WATCHED_METRICS[ctx.results.task][0],
    }
