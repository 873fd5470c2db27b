"""The ordered registry of report sections: one entry per section, a view function and a template include each.

The page (``report.html.j2``) lists the registered sections in its table of
contents and includes each one's template, in registration order. A section
whose view returns None is left out of the page and of the table of contents.
Adding a section is one :func:`register` call: its view and its template;
nothing else is edited.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reports.html.context import ReportContext

__all__ = ["Section", "register", "registered", "temporarily", "unregister"]


@dataclass(frozen=True)
class Section:
    """One section of the HTML report.

    Attributes:
        id: The section's HTML id and its anchor (``#id``); unique among the registered sections.
        title: Its entry in the table of contents.
        view: ``(ctx) -> dict | None``: the template variables the section adds (selected and formatted
            from :class:`reports.html.context.ReportContext`, never computed), or None to leave the
            section out. Its keys must not clash with another section's or the page's.
        template: The name of the section's template include (e.g. ``"verdict.html.j2"``).
        folder: Where that template lives; None: the built-in ``reports/templates``.
        in_toc: Whether the table of contents lists the section.
    """

    id: str
    title: str
    view: Callable[[ReportContext], dict[str, Any] | None]
    template: str
    folder: Path | None = None
    in_toc: bool = True


_SECTIONS: list[Section] = []


def register(section: Section, *, before: str | None = None) -> Section:
    """Add a section to the report, at the end or before the registered section with id ``before``.

    Raises:
        ValueError: a section with the same id is registered, or ``before`` names none.
    """
    ids = [s.id for s in _SECTIONS]
    if section.id in ids:
        raise ValueError(f"report section {section.id!r} is already registered")
    if before is None:
        _SECTIONS.append(section)
    elif before in ids:
        _SECTIONS.insert(ids.index(before), section)
    else:
        raise ValueError(f"report section {before!r} (before={before!r}) is not registered")
    return section


def unregister(section_id: str) -> None:
    """Remove a registered section (for plugins and tests); an unknown id is ignored."""
    _SECTIONS[:] = [s for s in _SECTIONS if s.id != section_id]


def registered() -> list[Section]:
    """The registered sections, in page order."""
    return list(_SECTIONS)


@contextmanager
def temporarily(section: Section, *, before: str | None = None) -> Iterator[Section]:
    """Register ``section`` for the duration of a ``with`` block."""
    register(section, before=before)
    try:
        yield section
    finally:
        unregister(section.id)
