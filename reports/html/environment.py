"""The report's Jinja environment: autoescaping, right-to-left isolation and the number filters.

Templates are looked up in ``reports/templates`` first, then in the folder of
every registered section that brings its own (:attr:`reports.html.sections.Section.folder`).
"""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

from reports.html import formatting
from reports.html.escaping import IsolateText, finalize, isolate
from reports.html.sections import registered

__all__ = ["TEMPLATES", "environment"]

#: The built-in templates: the page (``report.html.j2``), its macros and one include per section.
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


class _SectionLoader(jinja2.BaseLoader):
    """The built-in templates, then the folders of the sections registered now."""

    def get_source(self, environment: jinja2.Environment, template: str):
        folders = [TEMPLATES] + [s.folder for s in registered() if s.folder is not None]
        return jinja2.FileSystemLoader([str(f) for f in dict.fromkeys(folders)]).get_source(environment, template)


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The one environment every report is rendered with (built once)."""
    env = jinja2.Environment(
        loader=_SectionLoader(),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[IsolateText],
        finalize=finalize,
    )
    env.filters.update(
        pct=formatting.fmt_pct,
        num=formatting.fmt_num,
        ci=formatting.fmt_ci,
        value=formatting.fmt_value,
        pp=formatting.fmt_pp,
        when=formatting.fmt_datetime,
        rule_value=formatting.fmt_rule_value,
        isolate=isolate,
        p_value=formatting.fmt_p,
    )
    return env
