"""The XMP metadata packet of report.pdf: one RDF block that claims PDF/A-3b and PDF/UA-1.

WeasyPrint writes one ``pdfaid`` or ``pdfuaid`` identification, and appends
any extra XMP as a second ``rdf:RDF`` block that readers ignore, so the
report builds its packet here and replaces WeasyPrint's (see
:mod:`reports.pdfua`). PDF/A-3 allows only predefined XMP schemas and
declared extension schemas; ``pdfuaid`` is not predefined, so the packet
declares it with a ``pdfaExtension`` schema, as ISO 14289-1 recommends.

The packet carries the same title, producer, creator tool and dates as the
document-information dictionary (PDF/A-3, 6.6.2.3.1); :func:`update_packet`
changes the producer and modification date of an existing packet when the
signature's incremental update changes them in the dictionary.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field

from audit.contract.text import xml_text

__all__ = ["NS", "PdfMetadata", "build_packet", "pdf_date", "update_packet", "xmp_date"]

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "pdf": "http://ns.adobe.com/pdf/1.3/",
    "pdfaid": "http://www.aiim.org/pdfa/ns/id/",
    "pdfuaid": "http://www.aiim.org/pdfua/ns/id/",
    "pdfaExtension": "http://www.aiim.org/pdfa/ns/extension/",
    "pdfaSchema": "http://www.aiim.org/pdfa/ns/schema#",
    "pdfaProperty": "http://www.aiim.org/pdfa/ns/property#",
}
for _prefix, _uri in NS.items():
    ET.register_namespace(_prefix, _uri)

_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_HEAD = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'.encode()
_TAIL = b"\n" + (b" " * 99 + b"\n") * 20 + b'<?xpacket end="w"?>'  # padding lets an editor update in place


@dataclass(frozen=True)
class PdfMetadata:
    """What both the XMP packet and the document-information dictionary say about the PDF.

    Attributes:
        title: The document title (``/Title``, ``dc:title``).
        language: BCP 47 tag of the text (``/Lang`` of the catalogue, ``dc:language``).
        producer: The software that wrote the PDF (``/Producer``, ``pdf:Producer``).
        creator_tool: The software that made the content (``/Creator``, ``xmp:CreatorTool``).
        created: Creation time, timezone-aware (``/CreationDate``, ``xmp:CreateDate``).
        modified: Last modification (``/ModDate``, ``xmp:ModifyDate`` and ``xmp:MetadataDate``).
        authors: ``/Author``, ``dc:creator``.
        description: ``/Subject``, ``dc:description``.
        keywords: ``/Keywords``, ``pdf:Keywords``.
    """

    title: str
    language: str
    producer: str
    creator_tool: str | None
    created: dt.datetime
    modified: dt.datetime
    authors: Sequence[str] = field(default_factory=tuple)
    description: str | None = None
    keywords: Sequence[str] = field(default_factory=tuple)


def xmp_date(when: dt.datetime) -> str:
    """``2026-11-29T01:07:12+00:00``: an XMP date (ISO 8601, seconds, with offset)."""
    return _aware(when).replace(microsecond=0).isoformat()


def pdf_date(when: dt.datetime) -> str:
    """``D:20261129010712+00'00'``: the same instant as :func:`xmp_date` in PDF date syntax."""
    when = _aware(when)
    offset = when.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return when.strftime("D:%Y%m%d%H%M%S") + f"{sign}{abs(minutes) // 60:02d}'{abs(minutes) % 60:02d}'"


def build_packet(meta: PdfMetadata) -> bytes:
    """The complete XMP packet (``<?xpacket?>`` wrapper included) for a PDF/A-3b + PDF/UA-1 file.

    Args:
        meta: The document's metadata; the same values must go into the
            document-information dictionary.

    Returns:
        The packet as UTF-8 bytes, with one ``rdf:RDF`` holding one ``rdf:Description``.
    """
    root = ET.Element(_q("x", "xmpmeta"))
    rdf = ET.SubElement(root, _q("rdf", "RDF"))
    desc = ET.SubElement(rdf, _q("rdf", "Description"), {_q("rdf", "about"): ""})
    _simple(desc, "pdfaid", "part", "3")
    _simple(desc, "pdfaid", "conformance", "B")
    _simple(desc, "pdfuaid", "part", "1")
    _alternative(desc, "title", meta.title)
    _list(desc, "language", "Bag", [meta.language])
    _simple(desc, "dc", "format", "application/pdf")
    if meta.authors:
        _list(desc, "creator", "Seq", meta.authors)
    if meta.description:
        _alternative(desc, "description", meta.description)
    if meta.keywords:
        _simple(desc, "pdf", "Keywords", ", ".join(meta.keywords))
    _simple(desc, "pdf", "Producer", meta.producer)
    if meta.creator_tool:
        _simple(desc, "xmp", "CreatorTool", meta.creator_tool)
    _simple(desc, "xmp", "CreateDate", xmp_date(meta.created))
    _simple(desc, "xmp", "ModifyDate", xmp_date(meta.modified))
    _simple(desc, "xmp", "MetadataDate", xmp_date(meta.modified))
    _pdfua_extension_schema(desc)
    return _wrap(root)


def update_packet(packet: bytes, *, producer: str, modified: dt.datetime) -> bytes:
    """Set the producer and the modification and metadata dates of an existing XMP packet.

    Every other property is kept as it is; the three properties are removed
    wherever they were (as attributes or elements of any ``rdf:Description``)
    and written once, into the first ``rdf:Description``.

    Args:
        packet: An XMP packet, with or without its ``<?xpacket?>`` wrapper.
        producer: The new ``pdf:Producer``.
        modified: The new ``xmp:ModifyDate`` and ``xmp:MetadataDate``.

    Returns:
        The updated packet, with the wrapper.

    Raises:
        ValueError: ``packet`` is not XMP (not XML, or no ``rdf:RDF``).
    """
    try:
        root = ET.fromstring(packet)
    except ET.ParseError as exc:
        raise ValueError(f"XMP metadata is not XML: {exc}") from None
    rdf = root if root.tag == _q("rdf", "RDF") else root.find(_q("rdf", "RDF"))
    if rdf is None:
        raise ValueError("XMP metadata has no rdf:RDF element")
    descriptions = rdf.findall(_q("rdf", "Description"))
    if not descriptions:
        descriptions = [ET.SubElement(rdf, _q("rdf", "Description"), {_q("rdf", "about"): ""})]
    replaced = {_q("pdf", "Producer"), _q("xmp", "ModifyDate"), _q("xmp", "MetadataDate")}
    for desc in descriptions:
        for name in replaced & set(desc.attrib):
            del desc.attrib[name]
        for child in [c for c in desc if c.tag in replaced]:
            desc.remove(child)
    _simple(descriptions[0], "pdf", "Producer", producer)
    _simple(descriptions[0], "xmp", "ModifyDate", xmp_date(modified))
    _simple(descriptions[0], "xmp", "MetadataDate", xmp_date(modified))
    return _wrap(root)


def _aware(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        raise ValueError("PDF metadata times must carry a timezone")
    return when


def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


def _simple(parent: ET.Element, prefix: str, name: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, _q(prefix, name))
    element.text = xml_text(text)  # user strings (title, subject, keywords): characters XML forbids escaped
    return element


def _alternative(parent: ET.Element, name: str, text: str) -> None:
    alt = ET.SubElement(ET.SubElement(parent, _q("dc", name)), _q("rdf", "Alt"))
    _simple(alt, "rdf", "li", text).set(_XML_LANG, "x-default")


def _list(parent: ET.Element, name: str, kind: str, items: Sequence[str]) -> None:
    container = ET.SubElement(ET.SubElement(parent, _q("dc", name)), _q("rdf", kind))
    for item in items:
        _simple(container, "rdf", "li", item)


def _pdfua_extension_schema(desc: ET.Element) -> None:
    """Declare ``pdfuaid`` for PDF/A validators (ISO 14289-1, 5: the PDF/UA identification schema)."""
    bag = ET.SubElement(ET.SubElement(desc, _q("pdfaExtension", "schemas")), _q("rdf", "Bag"))
    schema = ET.SubElement(bag, _q("rdf", "li"), {_q("rdf", "parseType"): "Resource"})
    _simple(schema, "pdfaSchema", "schema", "PDF/UA Universal Accessibility Schema")
    _simple(schema, "pdfaSchema", "namespaceURI", NS["pdfuaid"])
    _simple(schema, "pdfaSchema", "prefix", "pdfuaid")
    properties = ET.SubElement(ET.SubElement(schema, _q("pdfaSchema", "property")), _q("rdf", "Seq"))
    part = ET.SubElement(properties, _q("rdf", "li"), {_q("rdf", "parseType"): "Resource"})
    _simple(part, "pdfaProperty", "name", "part")
    _simple(part, "pdfaProperty", "valueType", "Integer")
    _simple(part, "pdfaProperty", "category", "internal")
    _simple(part, "pdfaProperty", "description", "Indicates, which part of ISO 14289 standard is followed")


def _wrap(root: ET.Element) -> bytes:
    return _HEAD + ET.tostring(root, encoding="unicode").encode("utf-8") + _TAIL
