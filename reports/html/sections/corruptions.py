"""The report's corruption benchmark section (config ``benchmark``, results.json ``imagenet_c``)."""

from __future__ import annotations

from typing import Any

from reports.html.context import ReportContext
from reports.html.corruption_view import corruption_view

__all__ = ["corruption_benchmark"]


def corruption_benchmark(ctx: ReportContext) -> dict[str, Any] | None:
    """mCE / relative mCE (or mPC / rPC), the corruption x severity heat map, CE bars and previews;
    None when the run had no benchmark."""
    section = ctx.results.imagenet_c
    return None if section is None else corruption_view(section)
