"""render_pdf: PDF/A-3b, attached results.json, and a fetcher that blocks network and files."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from reports.pdf import BlockedURLError, offline_url_fetcher, pdf_bytes, render_pdf


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/a.png",
        "https://example.com/a.css",
        "file:///etc/hostname",
        "ftp://example.com/x",
        "FILE:///etc/passwd",
    ],
)
def test_fetcher_blocks_everything_but_data(url):
    with pytest.raises(BlockedURLError):
        offline_url_fetcher().fetch(url)


def test_fetcher_serves_data_uris():
    response = offline_url_fetcher().fetch("data:text/plain;base64,aGk=")
    assert response.read() == b"hi"


def test_external_resources_are_not_fetched(tmp_path, monkeypatch):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG not really")
    calls = []
    import urllib.request

    monkeypatch.setattr(
        urllib.request.OpenerDirector,
        "open",
        lambda self, *a, **k: calls.append(a) or (_ for _ in ()).throw(AssertionError("fetched")),
    )
    html = (
        f'<img src="{secret.as_uri()}"><img src="http://203.0.113.1/x.png">'
        '<link rel="stylesheet" href="https://203.0.113.1/a.css"><p>ok</p>'
    )
    assert pdf_bytes(html).startswith(b"%PDF-")
    assert calls == []


def test_pdfa3b_with_attachment(tmp_path, small_results):
    import json

    from reports.html import render_html

    results_json = tmp_path / "results.json"
    results_json.write_text(json.dumps(small_results))
    out = tmp_path / "report.pdf"
    render_pdf(render_html(small_results), out, attachments=[results_json])
    from pyhanko.pdf_utils.reader import PdfFileReader

    with open(out, "rb") as handle:
        root = PdfFileReader(handle).root
        xmp = root["/Metadata"].get_object().data
        files = root["/Names"]["/EmbeddedFiles"]["/Names"]
        spec = files[1].get_object()
        assert files[0] == "results.json" and spec["/AFRelationship"] == "/Data"
    assert b"pdfaid:part" in xmp and b"3" in xmp.split(b"pdfaid:part")[1][:8]
    assert b"pdfaid:conformance" in xmp and b"B" in xmp.split(b"pdfaid:conformance")[1][:8]
    if shutil.which("pdfdetach"):
        listing = subprocess.run(["pdfdetach", "-list", str(out)], capture_output=True, text=True).stdout
        assert "results.json" in listing
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-r", "20", "-png", str(out), str(tmp_path / "page")], check=True, timeout=120)
        assert len(list(tmp_path.glob("page-*.png"))) >= 3


def test_long_file_names_wrap_in_headings_and_lists():
    """Long checkpoint names must wrap instead of running off the A4 page."""
    import re
    from pathlib import Path

    import reports

    css = re.sub(r"/\*.*?\*/", "", (Path(reports.__file__).parent / "templates" / "report.css").read_text(), flags=re.S)
    rules: dict[str, str] = {}
    for sels, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        for sel in sels.split(","):
            rules[sel.strip()] = rules.get(sel.strip(), "") + body
    for selector in ("h1", "h2", "p", "li", "td", "figcaption"):
        assert "overflow-wrap: anywhere" in rules.get(selector, ""), selector
