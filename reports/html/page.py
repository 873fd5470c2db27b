"""The whole page: the context every registered section's view adds to, and its rendering."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from audit.contract.load import parse_results
from audit.contract.results import Results
from reports.html import prose
from reports.html.context import ReportContext
from reports.html.environment import environment
from reports.html.escaping import clean
from reports.html.sections import registered

__all__ = ["DEFAULT_LANGUAGE", "build_view", "render_html"]

DEFAULT_LANGUAGE = "en"


def _typed(results: Results | Mapping[str, Any]) -> Results:
    """The results as the model; a mapping is validated once by the one reader.

    Raises:
        ResultsError: the mapping is not valid results (see :func:`audit.contract.parse_results`).
    """
    return results if isinstance(results, Results) else parse_results(dict(results), source="results")


def build_view(
    results: Results | Mapping[str, Any], *, predictions: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The page template's context: selected and formatted, never computed, data.

    The page's own values (title, language, header) and, for every registered
    section (:func:`reports.html.sections.registered`), the values its view
    adds; ``sections`` lists the sections shown (those whose view did not
    return None), in page order.

    Args:
        results: The results (a mapping is validated once, see :func:`_typed`).
        predictions: The run's predictions.csv or None (see :func:`render_html`).

    Returns:
        A dict of plain values, results models and :class:`markupsafe.Markup` charts; every
        string from the results is neutralised (:func:`reports.html.escaping.clean`).

    Raises:
        ResultsError: ``results`` is a mapping that is not valid results.
        ValueError: two sections add the same template variable.
    """
    ctx = ReportContext(clean(_typed(results)), predictions=predictions)
    report = ctx.results.report
    view: dict[str, Any] = {
        "results": ctx.results,
        "tool": ctx.results.tool,
        "model": ctx.results.model,
        "model_name": prose.model_name(ctx),
        "dataset": ctx.results.dataset,
        "policy": ctx.policy,
        "provenance": ctx.results.provenance,
        "language": (report.language if report else None) or DEFAULT_LANGUAGE,
        "clean": ctx.clean,
        "class_names": ctx.class_names,
        "probes": [c.id for c in ctx.conditions if c.probe],
        "probe_ids": ctx.probe_ids,
    }
    shown = []
    for section in registered():
        part = section.view(ctx)
        if part is None:
            continue
        clash = view.keys() & part.keys()
        if clash:
            raise ValueError(f"report section {section.id!r} sets {sorted(clash)}, already set by another section")
        view.update(part)
        shown.append(section)
    view["sections"] = shown
    return view


def render_html(
    results: Results | Mapping[str, Any],
    *,
    signature: Mapping[str, Any] | None = None,
    predictions: str | os.PathLike[str] | None = None,
) -> str:
    """Render the report as one self-contained HTML string.

    Args:
        results: The results (:class:`audit.contract.results.Results`, or a mapping as in
            results.json, validated once).
        signature: Who signs the report (:func:`reports.signature_view.signature_view`);
            ``None``: the report says it is unsigned.
        predictions: The run's predictions.csv, from which the misclassified samples of each
            failing condition and group are named (:mod:`reports.error_examples`); None when
            no predictions.csv is known to belong to these results (the report says so).

    Returns:
        The HTML document.

    Raises:
        ResultsError: the results are a mapping that is not valid results.
    """
    view = build_view(results, predictions=predictions)
    return environment().get_template("report.html.j2").render(**view, signature=signature)
