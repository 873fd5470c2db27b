"""Finishing WeasyPrint's tagged PDF/A-3b into a PDF that also claims PDF/UA-1.

WeasyPrint (``pdf_variant="pdf/a-3b", pdf_tags=True``) already writes the
structure tree (headings, lists, tables with header cells, figures whose
``/Alt`` is the SVG ``<title>``), ``/MarkInfo``, ``/Lang`` and
``/DisplayDocTitle``. :func:`finisher` is handed to ``write_pdf`` and does
what is left, on WeasyPrint's pydyf objects before they are written:

- one XMP packet that claims PDF/A-3b and PDF/UA-1 (:mod:`reports.xmp`), with
  the same title, producer, creator and dates as the document-information
  dictionary, which is rewritten from the same values;
- running headers and footers (page margin boxes: "page 2 of 11") become
  pagination artifacts: WeasyPrint tags their text but leaves it out of the
  structure tree, which PDF/UA forbids for real content;
- link annotations get a ``/Contents`` description naming the section they
  lead to, instead of the bare anchor name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from html.parser import HTMLParser
from typing import Any

from reports.xmp import PdfMetadata, build_packet, pdf_date

__all__ = ["finisher", "section_titles"]


def finisher(*, language: str, when: dt.datetime, link_titles: Mapping[str, str]) -> Callable[[Any, Any], None]:
    """A WeasyPrint ``finisher(document, pdf)`` that completes the PDF/UA-1 claim.

    Args:
        language: BCP 47 tag declared in ``<html lang>`` (also written to ``dc:language``).
        when: Creation and modification time of the PDF, timezone-aware.
        link_titles: Anchor id -> the title of what it points to, for link descriptions.

    Returns:
        The finisher.
    """

    def finish(document, pdf) -> None:
        import pydyf
        import weasyprint

        metadata = document.metadata
        meta = PdfMetadata(
            title=metadata.title or "",
            language=language,
            producer=f"WeasyPrint {weasyprint.__version__}",
            creator_tool=metadata.generator,
            created=when,
            modified=when,
            authors=tuple(metadata.authors),
            description=metadata.description,
            keywords=tuple(metadata.keywords),
        )
        _write_metadata(pdf, meta, pydyf)
        _margin_content_as_artifacts(pdf, pydyf)
        _describe_links(pdf, link_titles, pydyf)

    return finish


def section_titles(html: str) -> dict[str, str]:
    """Anchor id -> title: a heading's own text, or the first heading inside an element with that id.

    Args:
        html: The report HTML.

    Returns:
        The titles, whitespace collapsed.
    """
    parser = _TitleParser()
    parser.feed(html)
    parser.close()
    return parser.titles


class _TitleParser(HTMLParser):
    _HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.titles: dict[str, str] = {}
        self._waiting: list[str] = []  # ids whose title is the next heading
        self._heading: list[str] | None = None

    def handle_starttag(self, tag, attrs) -> None:
        element_id = dict(attrs).get("id")
        if element_id and element_id not in self.titles:
            self._waiting.append(element_id)
        if tag in self._HEADINGS and self._heading is None and self._waiting:
            self._heading = []

    def handle_data(self, data) -> None:
        if self._heading is not None:
            self._heading.append(data)

    def handle_endtag(self, tag) -> None:
        if tag in self._HEADINGS and self._heading is not None:
            title = " ".join("".join(self._heading).split())
            for element_id in self._waiting:
                self.titles.setdefault(element_id, title)
            self._waiting, self._heading = [], None


def _ref(reference: bytes | str) -> int:
    return int(reference.split()[0])


def _write_metadata(pdf, meta: PdfMetadata, pydyf) -> None:
    """Replace WeasyPrint's XMP by one packet and write the same values into the information dictionary."""
    info = pdf.info
    info["Producer"] = pydyf.String(meta.producer)
    info["Title"] = pydyf.String(meta.title)
    if meta.creator_tool:
        info["Creator"] = pydyf.String(meta.creator_tool)
    if meta.authors:
        info["Author"] = pydyf.String(", ".join(meta.authors))
    if meta.description:
        info["Subject"] = pydyf.String(meta.description)
    if meta.keywords:
        info["Keywords"] = pydyf.String(", ".join(meta.keywords))
    info["CreationDate"] = pydyf.String(pdf_date(meta.created))
    info["ModDate"] = pydyf.String(pdf_date(meta.modified))
    stream = pdf.objects[_ref(pdf.catalog["Metadata"])]
    stream.stream = [build_packet(meta)]
    stream.compress = False  # XMP stays readable by tools that do not parse PDF
    pdf.catalog["Lang"] = pydyf.String(meta.language)
    pdf.catalog["ViewerPreferences"] = pydyf.Dictionary({"DisplayDocTitle": "true"})


def _reachable(pdf) -> set[int]:
    """Object numbers of the structure elements reachable from the structure tree root."""
    root = pdf.objects[_ref(pdf.catalog["StructTreeRoot"])]
    seen: set[int] = set()
    stack = list(root["K"])
    while stack:
        kid = stack.pop()
        if not isinstance(kid, (bytes, str)):
            continue
        number = _ref(kid)
        if number in seen:
            continue
        seen.add(number)
        element = pdf.objects[number]
        if isinstance(element, dict) and element.get("Type") == "/StructElem":
            kids = element.get("K")
            stack.extend(kids if isinstance(kids, list) else [kids])
    return seen


def _margin_content_as_artifacts(pdf, pydyf) -> None:
    """Turn marked content that no reachable structure element owns into pagination artifacts.

    WeasyPrint marks the text of page margin boxes with an MCID whose element
    is never linked into the tree; in a PDF 1.7 file such content must be an
    ``/Artifact`` marked-content sequence instead (ISO 32000-1, 14.8.2.2).
    """
    parent_tree = pdf.objects[_ref(pdf.objects[_ref(pdf.catalog["StructTreeRoot"])]["ParentTree"])]
    reachable = _reachable(pdf)
    nums = parent_tree["Nums"]
    for i in range(0, len(nums), 2):
        key, value = nums[i], nums[i + 1]
        if not isinstance(value, list) or key >= len(pdf.page_references):
            continue  # annotations map to one element; only page entries hold MCID arrays
        orphans = {mcid for mcid, element in enumerate(value) if _ref(element) not in reachable}
        if not orphans:
            continue
        page = pdf.objects[_ref(pdf.page_references[key])]
        content = pdf.objects[_ref(page["Contents"])]
        operations = content.stream
        for j, item in enumerate(operations):
            if (
                isinstance(item, dict)
                and item.get("MCID") in orphans
                and 0 < j < len(operations) - 1
                and operations[j + 1] == b"BDC"
            ):
                operations[j - 1] = "/Artifact"
                operations[j] = pydyf.Dictionary({"Type": "/Pagination"})
        for mcid in orphans:
            value[mcid] = "null"


def _describe_links(pdf, titles: Mapping[str, str], pydyf) -> None:
    """``/Contents`` of internal links: "Link to section: TITLE" (PDF/UA-1, 7.18.5)."""
    for obj in pdf.objects:
        if not isinstance(obj, dict) or obj.get("Type") != "/Annot" or obj.get("Subtype") != "/Link":
            continue
        target = obj.get("Dest")
        name = getattr(target, "string", None) if target is not None else None
        title = titles.get(name) if isinstance(name, str) else None
        if title:
            obj["Contents"] = pydyf.String(f"Link to section: {title}")
