"""axe-core on report.html in headless Chromium: no violation of WCAG 2.2 A/AA or axe best practice.

The check runs offline: the report is opened from disk, every other request
is aborted (and must not happen), and axe-core is injected from
``tests/reports/a11y/node_modules`` (``npm ci`` there), so the report carries
no script of its own. Needs Debian's ``chromium`` and Node.js; ``.ci/run``
installs all three. Without them the tests are skipped, unless ``CVAUDIT_CI``
is set (as ``.ci/run`` does), where a missing tool is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from results_builder import complete_results
from test_report_many_groups import many_groups_results

from reports.html import render_html

A11Y = Path(__file__).parent / "a11y"
AXE_VERSION = "4.14.1"  # pinned in a11y/package.json
TAGS = {"wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"}

pytestmark = pytest.mark.slow


def _need(what: str, how: str) -> None:
    message = f"{what} is missing ({how})"
    if os.environ.get("CVAUDIT_CI"):
        pytest.fail(message)
    pytest.skip(message)


def _tools() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    node = shutil.which("node")
    if chromium is None:
        _need("chromium", "Debian: apt-get install chromium")
    if node is None:
        _need("node", "Debian: apt-get install nodejs npm")
    if not (A11Y / "node_modules" / "axe-core" / "axe.min.js").is_file():
        _need("axe-core", "npm ci --prefix tests/reports/a11y")
    return chromium, node


def _axe(html: str, tmp_path: Path, media: str = "screen") -> dict:
    chromium, node = _tools()
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    done = subprocess.run(
        [node, str(A11Y / "axe_check.js"), chromium, str(page), media],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=A11Y,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _pass_results(results: dict) -> dict:
    results["policy"]["verdict"] = "pass"
    results["policy"]["blocking_failures"] = []
    return results


CASES = {
    "fail verdict, screen": (lambda r: r, "screen"),
    "fail verdict, print (the PDF's CSS)": (lambda r: r, "print"),
    "pass verdict, English (UK)": (lambda r: {**_pass_results(r), "report": {"language": "en-GB"}}, "screen"),
    "500 groups and 300 skipped images, print": (lambda r: many_groups_results(conditions=10, skipped=300), "print"),
    "no verdict, minimal results": (
        lambda r: complete_results(
            {"conditions": [{"id": "clean", "stressor": None, "metrics": {"n": 2, "accuracy": 0.5}}]}
        ),
        "screen",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_report_has_no_axe_violation(case, results, tmp_path):
    prepare, media = CASES[case]
    outcome = _axe(render_html(prepare(results)), tmp_path, media)
    assert outcome["axeVersion"] == AXE_VERSION
    assert set(outcome["tags"]) >= TAGS and len(outcome["rulesRun"]) >= 80
    assert outcome["violations"] == [], [
        (v["id"], v["help"], [n["target"] for n in v["nodes"][:5]]) for v in outcome["violations"]
    ]
    # axe cannot tell the background of text inside an SVG chart; chart colours are checked in
    # test_report_plots.py (black text on white, heatmap ink chosen for contrast).
    undecided = [(v["id"], n["html"][:60]) for v in outcome["incomplete"] for n in v["nodes"]]
    assert all(rule == "color-contrast" and html.startswith("<text") for rule, html in undecided), undecided
    assert outcome["scriptsInReport"] == 0 and outcome["external"] == []


def test_the_check_finds_violations(tmp_path):
    """The harness itself: a page with known problems must fail it."""
    bad = (
        "<!DOCTYPE html><html><head><title>x</title></head><body>"
        '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">'
        '<p style="color:#aaaaaa">low contrast</p><h3>skipped level</h3></body></html>'
    )
    outcome = _axe(bad, tmp_path)
    found = {v["id"] for v in outcome["violations"]}
    assert {"html-has-lang", "image-alt", "color-contrast", "landmark-one-main", "region"} <= found, found
