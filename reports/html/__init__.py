"""Render results.json as one self-contained HTML report.

``render_html(results)`` turns the results (the :class:`audit.contract.results.Results`
model, or a mapping as in results.json) into a single HTML document: no
``<script>``, no external request (system fonts, inline SVG charts, images only as
``data:`` URIs), print-ready CSS for A4.

The page is a registry of sections (:mod:`reports.html.sections`): each one a view
function that selects and formats what the results contain (never a metric) and a
template include in ``reports/templates``. Users' strings are neutralised, escaped
and isolated when they run right to left (:mod:`reports.html.escaping`); numbers are
written by the filters of :mod:`reports.html.formatting`; charts come from
:mod:`reports.html.charts` and :mod:`reports.html.curves`, each with its numbers as a table.

Accessibility (WCAG 2.2 AA, checked with axe-core in
``tests/reports/test_report_accessibility.py``): the page declares its language
(``report.language`` in the results, default ``en``), has a skip link, a ``main``
landmark and one named region per section, headings that form one outline, tables
with captions and header scopes, and every chart comes with a text alternative that
states its data plus the same numbers as a table in a ``<details>`` element.
"""

from __future__ import annotations

from reports.html.charts import ChartView, DataTable
from reports.html.formatting import fmt_datetime, fmt_rule_value
from reports.html.page import build_view, render_html
from reports.html.sections import Section, register
from reports.html.sections.overview import SKIPPED_LIMIT

__all__ = [
    "SKIPPED_LIMIT",
    "ChartView",
    "DataTable",
    "Section",
    "build_view",
    "fmt_datetime",
    "fmt_rule_value",
    "register",
    "render_html",
]
