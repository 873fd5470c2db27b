"""The report's closing sections: method notes, documentation duties, limitations, signature."""

from __future__ import annotations

from typing import Any

from reports.html import prose
from reports.html.context import ReportContext
from reports.html.formatting import INTERVAL_METHODS

__all__ = ["limitations", "method", "no_data", "signature"]


def method(ctx: ReportContext) -> dict[str, Any]:
    """How the run can be repeated, and how each metric is defined (with the interval method of these results)."""
    interval = ctx.results.evaluation.interval
    return {"interval_method": INTERVAL_METHODS.get(str(interval), INTERVAL_METHODS["bootstrap"])}


def no_data(ctx: ReportContext) -> dict[str, Any]:
    """A section that shows fixed text only (documentation duties)."""
    return {}


def limitations(ctx: ReportContext) -> dict[str, Any]:
    """What the numbers do not show (:func:`reports.html.prose.limitations`)."""
    return {"limitations": prose.limitations(ctx, dropped_images=ctx.gallery_dropped)}


def signature(ctx: ReportContext) -> dict[str, Any]:
    """Who signed the report: the template reads ``signature``, given to :func:`reports.html.render_html`."""
    return {}
