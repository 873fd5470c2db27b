"""report.pdf as tagged PDF/A-3b claiming PDF/UA-1, checked with pikepdf on a signed report (and pdfsig).

No PDF/A or PDF/UA validator (veraPDF) runs here: these tests check the
structure and the metadata that the claims rest on, read independently of
the code that wrote them.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pikepdf
import pytest

from reports.pdf import pdf_bytes
from reports.signing import SIGNATURE_DESCRIPTION, SIGNATURE_FIELD

RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
X = {
    "pdfaid": "http://www.aiim.org/pdfa/ns/id/",
    "pdfuaid": "http://www.aiim.org/pdfua/ns/id/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "pdf": "http://ns.adobe.com/pdf/1.3/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "pdfaSchema": "http://www.aiim.org/pdfa/ns/schema#",
}
HEADING = re.compile(r"/H([1-6])")


@pytest.fixture(scope="module")
def signed_pdf(signed_report_master):
    with pikepdf.open(signed_report_master / "report.pdf") as pdf:
        yield pdf


def _elements(pdf):
    """Structure elements reachable from the root, in reading order (depth first)."""
    out = []

    def walk(node):
        if isinstance(node, pikepdf.Dictionary) and node.get("/Type") == "/StructElem":
            out.append(node)
            kids = node.get("/K")
            for kid in kids if isinstance(kids, pikepdf.Array) else [kids]:
                walk(kid)

    root_kids = pdf.Root.StructTreeRoot.K
    for kid in root_kids if isinstance(root_kids, pikepdf.Array) else [root_kids]:
        walk(kid)
    return out


def _xmp(pdf) -> ET.Element:
    return ET.fromstring(pdf.Root.Metadata.read_bytes())


def _prop(root: ET.Element, prefix: str, name: str) -> str:
    """An XMP property written as an element or as an attribute of an rdf:Description."""
    tag = f"{{{X[prefix]}}}{name}"
    for desc in root.iter(RDF + "Description"):
        if tag in desc.attrib:
            return desc.attrib[tag]
        element = desc.find(tag)
        if element is not None:
            li = element.find(f".//{RDF}li")
            return (li if li is not None else element).text
    raise AssertionError(f"{prefix}:{name} missing from the XMP")


def _pdf_time(value: str) -> dt.datetime:
    m = re.fullmatch(r"D:(\d{14})(?:([+-])(\d\d)'(\d\d)'?|Z)?", value)
    assert m, value
    when = dt.datetime.strptime(m.group(1), "%Y%m%d%H%M%S")
    sign = -1 if m.group(2) == "-" else 1
    offset = dt.timedelta(hours=int(m.group(3) or 0), minutes=int(m.group(4) or 0)) * sign
    return when.replace(tzinfo=dt.timezone(offset))


def test_tagged_with_language_and_title_shown(signed_pdf):
    root = signed_pdf.Root
    assert "/StructTreeRoot" in root and root.MarkInfo.Marked is True
    assert str(root.Lang) == "en"
    assert root.ViewerPreferences.DisplayDocTitle is True
    assert str(signed_pdf.docinfo.Title) == "Audit report: derm-resnet50.pt"


def test_every_figure_has_alternative_text_that_states_data(signed_pdf, base_results):
    figures = [e for e in _elements(signed_pdf) if e.S == "/Figure"]
    assert len(figures) == 9  # 7 charts + 2 gallery images
    alts = [str(f.get("/Alt", "")) for f in figures]
    assert all(alts), alts
    clean = base_results["conditions"][0]["metrics"]["accuracy"]
    (severity,) = [a for a in alts if a.startswith("Accuracy against stressor severity.")]
    assert f"night: accuracy {100 * clean:.1f}% clean" in severity


def test_headings_form_one_outline(signed_pdf):
    levels = [int(HEADING.fullmatch(str(e.S)).group(1)) for e in _elements(signed_pdf) if HEADING.fullmatch(str(e.S))]
    assert levels[0] == 1 and levels.count(1) == 1
    assert all(b <= a + 1 for a, b in zip(levels, levels[1:])), levels


def test_tables_have_captions_and_header_cells(signed_pdf, signed_report_master):
    elements = _elements(signed_pdf)
    captions = [e for e in elements if e.S == "/Caption" and e.P.S == "/Table"]
    header_cells = [e for e in elements if e.S == "/TH"]
    data_cells = [e for e in elements if e.S == "/TD"]
    html_tables = (signed_report_master / "report.html").read_text().count("<table")
    assert len(captions) == html_tables >= 20 and header_cells
    assert all("/ID" in th for th in header_cells)
    assert all(len(td.A.Headers) >= 1 for td in data_cells)


def test_all_content_is_tagged_or_an_artifact(signed_pdf):
    """Every marked-content id in a page belongs to a reachable element; running footers are artifacts."""
    owned = set()
    for element in _elements(signed_pdf):
        kids = element.get("/K")
        for kid in kids if isinstance(kids, pikepdf.Array) else [kids]:
            if isinstance(kid, int):
                owned.add((element.Pg.objgen, int(kid)))
    used, artifacts = [], 0
    for page in signed_pdf.pages:
        for operands, operator in pikepdf.parse_content_stream(page):
            if str(operator) == "BDC" and isinstance(operands[1], pikepdf.Dictionary) and "/MCID" in operands[1]:
                used.append((page.obj.objgen, int(operands[1].MCID)))
            elif str(operator) in ("BDC", "BMC") and str(operands[0]) == "/Artifact":
                artifacts += 1
    assert used and [u for u in used if u not in owned] == []
    assert artifacts >= 2 * len(signed_pdf.pages)  # at least the two footer texts of every page


def test_xmp_claims_pdfa_3b_and_pdfua_1_in_one_packet(signed_pdf):
    raw = signed_pdf.Root.Metadata.read_bytes()
    assert raw.count(b"<rdf:RDF") == 1 and "/Filter" not in signed_pdf.Root.Metadata.stream_dict
    xmp = _xmp(signed_pdf)
    assert _prop(xmp, "pdfaid", "part") == "3" and _prop(xmp, "pdfaid", "conformance") == "B"
    assert _prop(xmp, "pdfuaid", "part") == "1"
    declared = [e.text for e in xmp.iter(f"{{{X['pdfaSchema']}}}namespaceURI")]
    assert declared == [X["pdfuaid"]]  # the extension schema PDF/A requires for pdfuaid
    assert _prop(xmp, "dc", "language") == "en"


def test_xmp_and_document_info_agree_after_signing(signed_pdf):
    info, xmp = signed_pdf.docinfo, _xmp(signed_pdf)
    assert str(info.Producer) == _prop(xmp, "pdf", "Producer")
    assert str(info.Producer).startswith("WeasyPrint ") and "; pyHanko " in str(info.Producer)
    assert str(info.Title) == _prop(xmp, "dc", "title")
    assert str(info.Creator) == _prop(xmp, "xmp", "CreatorTool")
    created = dt.datetime.fromisoformat(_prop(xmp, "xmp", "CreateDate"))
    modified = dt.datetime.fromisoformat(_prop(xmp, "xmp", "ModifyDate"))
    assert _pdf_time(str(info.CreationDate)) == created
    assert _pdf_time(str(info.ModDate)) == modified == dt.datetime.fromisoformat(_prop(xmp, "xmp", "MetadataDate"))
    assert modified >= created


def test_signature_widget_is_tagged_not_hidden(signed_pdf):
    (field,) = [f for f in signed_pdf.Root.AcroForm.Fields if str(f.T) == SIGNATURE_FIELD]
    assert field.Subtype == "/Widget" and str(field.TU) == SIGNATURE_DESCRIPTION
    assert int(field.F) & 4 and not int(field.F) & 2  # printed, not hidden (PDF/A)
    assert [float(v) for v in field.Rect] == [0.0, 0.0, 0.0, 0.0]
    nums = signed_pdf.Root.StructTreeRoot.ParentTree.Nums
    owner = {int(nums[i]): nums[i + 1] for i in range(0, len(nums), 2)}[int(field.StructParent)]
    assert owner.S == "/Form" and owner.K.Type == "/OBJR" and owner.K.Obj.objgen == field.objgen
    assert any(e.objgen == owner.objgen for e in _elements(signed_pdf))
    page = next(p for p in signed_pdf.pages if any(a.objgen == field.objgen for a in p.get("/Annots", [])))
    assert page.Tabs == "/S"


def test_links_are_tagged_and_described(signed_pdf):
    links = [a for p in signed_pdf.pages for a in p.get("/Annots", []) if a.Subtype == "/Link"]
    assert links
    nums = signed_pdf.Root.StructTreeRoot.ParentTree.Nums
    owners = {int(nums[i]): nums[i + 1] for i in range(0, len(nums), 2)}
    for link in links:
        assert str(link.Contents).startswith("Link to section: ")
        assert owners[int(link.StructParent)].S == "/Link"


def test_pdfsig_still_accepts_the_signature_over_the_whole_file(signed_report_master):
    pdfsig = shutil.which("pdfsig")
    if pdfsig is None:
        pytest.skip("pdfsig not installed (Debian: apt-get install poppler-utils)")
    out = subprocess.run([pdfsig, str(signed_report_master / "report.pdf")], capture_output=True, text=True).stdout
    assert "Signature is Valid." in out and "Total document signed" in out


def test_language_setting_reaches_the_pdf(small_results, tmp_path):
    from reports.html import render_html

    small_results["report"] = {"language": "en-GB"}
    (tmp_path / "results.json").write_text(json.dumps(small_results))
    data = pdf_bytes(render_html(small_results), attachments=[tmp_path / "results.json"])
    with pikepdf.open(io.BytesIO(data)) as pdf:
        assert str(pdf.Root.Lang) == "en-GB" and _prop(_xmp(pdf), "dc", "language") == "en-GB"
        assert str(pdf.docinfo.Producer) == _prop(_xmp(pdf), "pdf", "Producer")
