"""The report's opening sections: the verdict, the executive summary, what was tested, the policy rules."""

from __future__ import annotations

from typing import Any

from audit.contract.results import SkippedImage
from reports.html import prose
from reports.html.context import ReportContext

__all__ = ["ATTRIBUTE_VALUES_LIMIT", "SKIPPED_LIMIT", "identity", "policy", "summary", "verdict"]

#: Skipped images listed by name (all of them are in skipped.csv; every reason is counted).
SKIPPED_LIMIT = 50
#: Values of one attribute named in "What was tested" (every value's count is in groups.csv).
ATTRIBUTE_VALUES_LIMIT = 30


def verdict(ctx: ReportContext) -> dict[str, Any]:
    """The verdict, what made it fail, and what a pass still asks the reader to look at."""
    return {
        "verdict": ctx.policy.verdict if ctx.policy else None,
        "still_read": prose.still_read(ctx),
        "blocking_failures": ctx.blocking_failures,
        "failures": ctx.failures,
    }


def summary(ctx: ReportContext) -> dict[str, Any]:
    """The plain-language summary (:func:`reports.html.prose.summary`)."""
    return {"summary": prose.summary(ctx)}


def identity(ctx: ReportContext) -> dict[str, Any]:
    """Model, data, policy and seed; the subgroup attributes; the skipped images."""
    skipped = ctx.results.dataset.skipped
    rows = []
    for attr, counts in ctx.results.dataset.attributes.items():
        items = list(counts.items())
        rows.append((attr, items[:ATTRIBUTE_VALUES_LIMIT], max(0, len(items) - ATTRIBUTE_VALUES_LIMIT)))
    return {
        "attribute_rows": rows,
        "attribute_values_limit": ATTRIBUTE_VALUES_LIMIT,
        "skipped": skipped[:SKIPPED_LIMIT],
        "skipped_total": len(skipped),
        "skipped_reasons": _skipped_reasons(skipped),
    }


def _skipped_reasons(skipped: list[SkippedImage]) -> list[tuple[str, int]]:
    """Reason -> number of skipped images, most frequent first (ties in order of first appearance)."""
    counts: dict[str, int] = {}
    for s in skipped:
        counts[s.reason] = counts.get(s.reason, 0) + 1
    return sorted(counts.items(), key=lambda item: -item[1])


def policy(ctx: ReportContext) -> dict[str, Any]:
    """Every rule with its requirement in words and its outcome."""
    return {"rules": ctx.rules}
