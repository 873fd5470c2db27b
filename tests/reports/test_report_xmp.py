"""The XMP packet of report.pdf: one RDF block, both identifications, dates and producer kept in step."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest

from reports.pdfua import section_titles
from reports.xmp import NS, PdfMetadata, build_packet, pdf_date, update_packet, xmp_date

UTC = dt.timezone.utc
WHEN = dt.datetime(2026, 11, 29, 1, 7, 12, tzinfo=UTC)


def _meta(**changes) -> PdfMetadata:
    values = dict(
        title="Audit report: <model> & co",
        language="en-GB",
        producer="WeasyPrint 70.0",
        creator_tool="cvaudit 0.1.0",
        created=WHEN,
        modified=WHEN,
    )
    return PdfMetadata(**{**values, **changes})


def _values(packet: bytes) -> dict[str, str]:
    root = ET.fromstring(packet)
    (desc,) = root.iter(f"{{{NS['rdf']}}}Description")
    out = {}
    for child in desc:
        prefix = next(p for p, uri in NS.items() if child.tag.startswith(f"{{{uri}}}"))
        li = child.find(f".//{{{NS['rdf']}}}li")
        out[f"{prefix}:{child.tag.split('}')[1]}"] = (li if li is not None else child).text
    return out


def test_packet_claims_both_standards_in_one_description():
    packet = build_packet(_meta())
    assert packet.startswith(b"<?xpacket begin=") and packet.rstrip().endswith(b'<?xpacket end="w"?>')
    assert packet.count(b"<rdf:RDF") == 1
    values = _values(packet)
    assert values["pdfaid:part"] == "3" and values["pdfaid:conformance"] == "B" and values["pdfuaid:part"] == "1"
    assert values["dc:title"] == "Audit report: <model> & co" and values["dc:language"] == "en-GB"
    assert values["pdf:Producer"] == "WeasyPrint 70.0" and values["xmp:CreatorTool"] == "cvaudit 0.1.0"
    assert values["xmp:CreateDate"] == values["xmp:ModifyDate"] == "2026-11-29T01:07:12+00:00"
    assert b"&lt;model&gt; &amp; co" in packet


def test_update_changes_producer_and_dates_only():
    later = WHEN + dt.timedelta(minutes=5)
    before = _values(build_packet(_meta()))
    after = _values(update_packet(build_packet(_meta()), producer="WeasyPrint 70.0; pyHanko 0.38.0", modified=later))
    assert after.pop("pdf:Producer") == "WeasyPrint 70.0; pyHanko 0.38.0"
    assert after.pop("xmp:ModifyDate") == after.pop("xmp:MetadataDate") == "2026-11-29T01:12:12+00:00"
    for key in ("pdf:Producer", "xmp:ModifyDate", "xmp:MetadataDate"):
        before.pop(key)
    assert after == before


def test_update_replaces_attribute_style_properties():
    """WeasyPrint writes some properties as attributes, in several rdf:Description elements."""
    packet = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description rdf:about="" xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/" pdfaid:part="3"/>'
        b'<rdf:Description rdf:about="" xmlns:pdf="http://ns.adobe.com/pdf/1.3/" pdf:Producer="WeasyPrint 70.0"/>'
        b"</rdf:RDF></x:xmpmeta>"
    )
    updated = update_packet(packet, producer="P; pyHanko", modified=WHEN)
    assert updated.count(b"Producer") == 2  # one element: opening and closing tag
    assert b"pdfaid:part" in updated and b"P; pyHanko" in updated and b"WeasyPrint 70.0" not in updated


@pytest.mark.parametrize(
    ("packet", "message"),
    [(b"not xml <", "not XML"), (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>', "no rdf:RDF")],
)
def test_update_refuses_what_is_not_xmp(packet, message):
    with pytest.raises(ValueError, match=message):
        update_packet(packet, producer="p", modified=WHEN)


@pytest.mark.parametrize(
    ("when", "pdf", "xmp"),
    [
        (WHEN, "D:20261129010712+00'00'", "2026-11-29T01:07:12+00:00"),
        (
            dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-5, minutes=-30))),
            "D:20260102030405-05'30'",
            "2026-01-02T03:04:05-05:30",
        ),
    ],
)
def test_pdf_and_xmp_dates_name_the_same_instant(when, pdf, xmp):
    assert pdf_date(when) == pdf and xmp_date(when) == xmp


def test_times_without_a_timezone_are_refused():
    with pytest.raises(ValueError, match="timezone"):
        pdf_date(dt.datetime(2026, 1, 1))


def test_section_titles_for_link_descriptions():
    html = (
        '<main><section id="identity" aria-labelledby="identity-h"><h2 id="identity-h">What <b>was</b> tested</h2>'
        '<p id="note">x</p><h3>Sub</h3></section><h2 id="plain">Plain &amp; simple</h2></main>'
    )
    titles = section_titles(html)
    assert titles["identity"] == titles["identity-h"] == "What was tested"
    assert titles["note"] == "Sub" and titles["plain"] == "Plain & simple"
