"""The printed report of a real run (``cvaudit demo``): no page holds only a heading, and column headers
break between words, never inside one ("accurac y")."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

_FOOTER = re.compile(r"^(cvaudit audit report|page \d+ of \d+)$")


def _pdf_pages(pdf: Path) -> list[list[str]]:
    """The text lines of each page (pdftotext, reading order), footer lines removed."""
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, timeout=120, check=True).stdout
    pages = text.split("\f")
    if pages and not pages[-1].strip():
        pages.pop()
    return [[ln.strip() for ln in page.splitlines() if ln.strip() and not _FOOTER.match(ln.strip())] for page in pages]


def _images_per_page(pdf: Path) -> dict[int, int]:
    listing = subprocess.run(
        ["pdfimages", "-list", str(pdf)], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    counts: dict[int, int] = {}
    for line in listing.splitlines()[2:]:
        fields = line.split()
        if fields and fields[0].isdigit():
            counts[int(fields[0])] = counts.get(int(fields[0]), 0) + 1
    return counts


def _strip(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def headings(page: str) -> set[str]:
    return {_strip(m) for m in re.findall(r"<h[1-4][^>]*>(.*?)</h[1-4]>", page, re.DOTALL)}


def header_words(page: str) -> set[str]:
    """Words of five letters or more in the column headers of every table.

    Words that a chart also draws as a label are left out: the charts' rotated labels come out of
    pdftotext in pieces, which would look like a broken header.
    """
    words: set[str] = set()
    for head in re.findall(r"<thead>(.*?)</thead>", page, re.DOTALL):
        for cell in re.findall(r"<th[^>]*>(.*?)</th>", head, re.DOTALL):
            words |= set(re.findall(r"[A-Za-z]{5,}", _strip(cell)))
    drawn = {w for label in re.findall(r"<text[^>]*>(.*?)</text>", page, re.DOTALL) for w in label.split()}
    return words - drawn


def pages_with_only_a_heading(pdf: Path, page: str) -> list[int]:
    """Pages (1-based) whose body, besides headings, is under three lines with no image, or that end on a heading."""
    titles, images, bad = headings(page), _images_per_page(pdf), []
    for number, lines in enumerate(_pdf_pages(pdf), start=1):
        body = [ln for ln in lines if ln not in titles]
        if (len(body) < 3 and not images.get(number)) or (lines and lines[-1] in titles):
            bad.append(number)
    return bad


def words_broken_in_headers(pdf: Path, page: str) -> list[str]:
    """Header words that the PDF shows split over two lines (``detectabl`` / ``e``)."""
    lines = [ln for p in _pdf_pages(pdf) for ln in p]
    pairs = {(a.split()[-1], b.split()[0]) for a, b in zip(lines, lines[1:]) if a.split() and b.split()}
    return sorted(w for w in header_words(page) if any(w[:k] and (w[:k], w[k:]) in pairs for k in range(1, len(w))))


@pytest.fixture(scope="module")
def demo_report(demo_run: Path) -> tuple[Path, str]:
    if shutil.which("pdftotext") is None or shutil.which("pdfimages") is None:
        pytest.skip("pdftotext/pdfimages not installed (Debian: apt-get install poppler-utils)")
    return demo_run / "report.pdf", (demo_run / "report.html").read_text("utf-8")


def test_no_page_holds_only_a_heading(demo_report):
    pdf, page = demo_report
    assert pages_with_only_a_heading(pdf, page) == []


def test_column_headers_break_between_words_only(demo_report):
    pdf, page = demo_report
    assert header_words(page)  # the check reads something
    assert words_broken_in_headers(pdf, page) == []
