"""Users' strings are neutralised for each medium: HTML, PDF, JUnit (issue 13, point 6).

Hostile names go in through results.json: a class name with an OSC
terminal-title sequence, an attribute value with a right-to-left override, one
with C0/C1 controls and a lone surrogate, and a right-to-left (Hebrew) group.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from reports_fixture import make_results
from results_builder import typed_part

from audit.contract.results import GovernanceFinding, PolicyOutcome
from audit.contract.text import spreadsheet_safe
from reports.html import render_html
from reports.junit import write_junit

HEBREW = "\u05e9\u05dc\u05d5\u05dd"
#: What may never reach a report: C0 (but tab, LF, CR) and C1 controls, bidi controls, surrogates.
RAW = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
SCHEMA = Path(__file__).parent / "schemas" / "junit-10.xsd"


@pytest.fixture(scope="module")
def hostile() -> dict:
    text = json.dumps(make_results())
    for old, new in (
        ("nevus", "nev\\u001b]0;owned\\u0007us"),
        ("Clinic A", f"{HEBREW} 12"),
        ("Clinic B", "Clinic \\u202eB"),
        ("Clinic C", "C\\u0000\\u0085\\u009b"),
    ):
        assert old in text
        text = text.replace(old, new)
    return json.loads(text)


def _parse_errors(html: str) -> list:
    from tinyhtml5.parser import HTMLParser

    parser = HTMLParser()
    parser.parse(html)
    return parser.errors


def test_html_has_no_raw_control_characters_and_parses_cleanly(hostile):
    """Regression: control characters and escape sequences reached report.html raw (62 validator errors)."""
    html = render_html(hostile)
    assert not RAW.findall(html)
    assert _parse_errors(html) == []
    assert "nev\\x1b]0;owned\\x07us" in html  # visible, and the same text as before
    assert "Clinic \\u202eB" in html and "C\\x00\\x85\\x9b" in html


def test_html_isolates_right_to_left_text(hostile):
    """Regression: right-to-left override characters could reorder text in the report."""
    html = render_html(hostile)
    assert f"<bdi>{HEBREW} 12</bdi>" in html
    body = html.split("</head>", 1)[1]
    # every occurrence is isolated
    for match in re.finditer(HEBREW, body):
        before = body[max(0, match.start() - 300) : match.start()]
        in_bdi = before.rfind("<bdi>") > before.rfind("</bdi>")
        # a chart's text alternative (SVG <title>) isolates it with FSI/PDI written as character references
        in_isolate = before.rfind("&#x2068;") > before.rfind("&#x2069;")
        # a chart's label in SVG <text> or a bar's tooltip <title> is a run of its own
        own_run = any(before.rfind(f"<{tag}") > before.rfind(f"</{tag}>") for tag in ("text", "title"))
        assert in_bdi or in_isolate or own_run
    # the summary isolates the user values inside its sentences
    summary = re.search(r'<ul class="summary">(.*?)</ul>', html, re.DOTALL).group(1)
    assert "<bdi>" in summary


def test_html_attribute_values_get_unicode_isolates(small_results):
    small_results["model"]["path"] = f"/models/{HEBREW}.pt"
    html = render_html(small_results)
    title = re.search(r"<title>(.*?)</title>", html).group(1)
    assert "<bdi>" not in title and f"\u2068{HEBREW}.pt\u2069" in title


def test_clean_report_is_unchanged_by_the_isolation(small_results):
    html = render_html(small_results)
    assert _parse_errors(html) == [] and "\ue000" not in html and "\ue001" not in html


@pytest.mark.slow
def test_pdf_text_shows_the_escapes(hostile, tmp_path):
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext not installed (Debian: apt-get install poppler-utils)")
    from reports.pdf import render_pdf

    small = dict(hostile)
    small["conditions"] = hostile["conditions"][:2]
    render_pdf(render_html(small), tmp_path / "r.pdf")
    text = subprocess.run(
        ["pdftotext", str(tmp_path / "r.pdf"), "-"], capture_output=True, text=True, timeout=120
    ).stdout
    assert "\x1b" not in text and "\u202e" not in text
    assert "\\x1b]0;owned\\x07" in text.replace("\n", "")


def _junit(tmp_path, rule_id: str, message: str) -> Path:
    section = {
        "name": "gate\x1b[31m",
        "verdict": "fail",
        "sha256": "0" * 64,
        "rules": [
            {"id": rule_id, "status": "fail", "blocking": True, "observed": 0.5, "threshold": 0.9, "message": message},
            {"id": "skipped-one", "status": "insufficient_data", "blocking": False, "message": "no data"},
        ],
    }
    findings = [{"check": "pii\u202evalues", "status": "warn", "count": 1, "sample_ids": ["s\x001"], "message": "x"}]
    policy = typed_part(PolicyOutcome, {**section, "rules": [{"kind": "metric", **r} for r in section["rules"]]})
    return write_junit(policy, [typed_part(GovernanceFinding, f) for f in findings], tmp_path / "junit.xml")


def test_junit_validates_against_the_jenkins_schema(tmp_path):
    """Regression: junit.xml carried `skipped` on <testsuites>, which junit-10.xsd rejects."""
    xmlschema = pytest.importorskip("xmlschema")
    schema = xmlschema.XMLSchema(str(SCHEMA))
    path = _junit(tmp_path, "acc\x1b]0;t\x07", "accuracy \x85 too low \u202e\ud800")
    schema.validate(str(path))
    text = path.read_text("utf-8")
    assert not RAW.findall(text)
    assert "acc\\x1b]0;t\\x07" in text and "\\x85" in text and "\\u202e" in text and "\\ud800" in text
    root = ET.parse(path).getroot()
    assert root.get("skipped") is None and root.get("name") == "cvaudit policy gate\\x1b[31m"


def test_junit_schema_rejects_what_the_old_writer_produced(tmp_path):
    xmlschema = pytest.importorskip("xmlschema")
    schema = xmlschema.XMLSchema(str(SCHEMA))
    path = _junit(tmp_path, "r", "m")
    root = ET.parse(path).getroot()
    root.set("skipped", "1")
    assert not schema.is_valid(ET.tostring(root, encoding="unicode"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("+1+1", "'+1+1"),
        ("-2", "-2"),  # a plain number is a number to a spreadsheet, never a formula
        ("-1e-05", "-1e-05"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("'=x", "''=x"),  # apostrophes before a formula start: one more, so the guard is invertible
        ("\rx", "\\x0dx"),  # a carriage return is escaped: no cell starts with one
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("safe", "safe"),
        (-0.25, "-0.25"),
        (3, "3"),
        (None, ""),
        ("a\x1bb", "a\\x1bb"),
    ],
)
def test_spreadsheet_safe_cells(value, expected):
    assert spreadsheet_safe(value) == expected
