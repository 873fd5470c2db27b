"""The report of a detector's audit: the Detection section, the silent classification sections, the CSVs, the PDF.

The results come from a real evaluation pass of the colour-box detector (:mod:`detection_report_fixture`),
completed by hand with what that small run leaves empty (intervals, gap tests, examples ...). Expected
numbers are formatted here from the results, not taken from the code under test.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from detection_report_fixture import EXAMPLE_DETECTIONS, EXAMPLE_H, EXAMPLE_TRUTH, EXAMPLE_W, detection_results

from audit.contract.results import DetectionMetrics
from reports import render_markdown_summary, write_reports
from reports.groups_csv import groups_csv_text
from reports.html import build_view, render_html
from reports.html.detection_charts import BOX_STYLES
from reports.skipped_csv import skipped_csv_text

CLASSIFICATION_SECTIONS = (
    "robustness",
    "breaking-points",
    "adversarial",
    "calibration",
    "groups",
    "errors",
    "fairness",
)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return detection_results(tmp_path_factory.mktemp("detection-report"))


@pytest.fixture(scope="module")
def html(results):
    return render_html(results)


class _Svgs(HTMLParser):
    """Every ``<svg>`` of a page: its ``<title>`` and its elements with their attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.svgs: list[dict] = []
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "svg":
            self.svgs.append({"title": "", "elements": []})
        elif self.svgs:
            self.svgs[-1]["elements"].append((tag, dict(attrs)))
            self._in_title = tag == "title" and len(self.svgs[-1]["elements"]) == 1

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.svgs[-1]["title"] += data


def _svgs(html: str) -> list[dict]:
    parser = _Svgs()
    parser.feed(html)
    return parser.svgs


def _example_svg(html: str) -> dict:
    found = [s for s in _svgs(html) if any(tag == "image" for tag, _ in s["elements"])]
    assert len(found) == 1
    return found[0]


def test_detection_section_replaces_the_classification_sections(results):
    view = build_view(results)
    shown = [s.id for s in view["sections"]]
    assert "detection" in shown
    assert shown.index("policy") < shown.index("detection") < shown.index("governance")
    assert not set(CLASSIFICATION_SECTIONS) & set(shown)


def test_classifier_reports_have_no_detection_section(small_results):
    page = render_html(small_results)
    assert 'id="detection"' not in page
    assert 'id="robustness"' in page and 'id="fairness"' in page


def test_no_classification_table_over_nothing(html):
    assert "accuracy" not in html.lower().split('id="detection"')[1].split('id="method"')[0]
    for heading in ("Robustness: accuracy under altered images", "Which mistakes does it make?", "Fairness and"):
        assert heading not in html
    assert "Detection: does it find the objects?" in html


def test_numbers_per_condition_are_formatted(results, html):
    det = results.detection
    clean = det.conditions[0].metrics
    section = html.split('id="detection"')[1]
    assert f"{clean.map:.3f}" in section
    assert clean.model_dump().get("map_ci") is None  # no mAP interval: its bootstrap under-covers
    assert f"{100 * clean.recall:.1f}%" in section
    assert f"{100 * clean.recall_ci[0]:.1f}\u2013{100 * clean.recall_ci[1]:.1f}%" in section
    assert f"{clean.missed_per_image:.2f}" in section
    assert f"{clean.tp} / {clean.fp} / {clean.fn}" in section
    for c in det.conditions:
        assert f'<th scope="row">{c.id}</th>' in section
    # the operating point is stated with both thresholds
    s = det.settings
    assert f"score is at least {s.score_threshold}" in section and f"IoU at least {s.iou_threshold}" in section


def test_robustness_tide_calibration_and_gaps(results, html):
    det = results.detection
    section = html.split('id="detection"')[1]
    assert "mPC" in section and "rPC" in section
    assert f"{det.robustness.clean_map:.3f}" in section
    titles = [s["title"] for s in _svgs(html)]
    worst = min(det.conditions[1:], key=lambda c: c.metrics.map)
    assert any(t.startswith("TIDE errors, clean (unaltered)") for t in titles)
    assert any(t.startswith(f"TIDE errors, {worst.id} (worst condition)") for t in titles)
    missed = next(e for e in det.conditions[0].tide if e.error == "missed")
    assert any(f"missed: dAP {missed.dap:.3f}, {missed.count} occurrences" in t for t in titles)
    cal = det.conditions[0].calibration
    assert any(t.startswith(f"Reliability diagram, clean (unaltered), D-ECE {cal.dece:.3f}") for t in titles)
    assert "score 0.70 to 0.80, 5 detections: precision 60.0%, mean score 75.0%" in " ".join(titles)
    # gap tests: gap in pp, its interval, p and Holm p
    assert "100.0 pp" in section and "90.0 to 100.0 pp" in section
    assert "&lt; 0.001" in section and "0.001" in section
    assert "6.9 pp" in section and "0.620" in section and "heavily" in section


def test_worst_subgroups_mark_too_few(results, html):
    section = html.split('id="detection-groups-h"')[1].split('id="detection-gaps-h"')[0]
    assert "too few to judge" in section
    tables = section.split("<table")[1:]
    image_clean = next(t for t in tables if "image-level" in t and "clean (unaltered)" in t)
    # camera B (recall 0) comes before camera A (recall 1): lowest first
    assert image_clean.index("<td>B</td>") < image_clean.index("<td>A</td>")
    object_clean = next(t for t in tables if "object-level" in t and "clean (unaltered)" in t)
    rows = object_clean.split("<tr")[2:]
    assert "heavily" in rows[-1] and "too few to judge" in rows[-1]  # judged groups first, too-small last
    assert all("too few" not in r for r in rows[:-1])


def test_example_boxes_are_drawn_in_the_images_pixels_with_their_styles(html):
    svg = _example_svg(html)
    scale = min(320 / EXAMPLE_W, 320 / EXAMPLE_H)
    rects = [a for tag, a in svg["elements"] if tag == "rect" and a.get("fill") == "none"]
    for box in EXAMPLE_TRUTH + EXAMPLE_DETECTIONS:
        style = BOX_STYLES[box["outcome"]]
        x1, y1 = box["box"][0] * scale, box["box"][1] * scale + 14
        drawn = [a for a in rects if a["stroke"] == style.colour and a["x"] == f"{x1:.1f}" and a["y"] == f"{y1:.1f}"]
        assert len(drawn) == 1, box
        assert drawn[0].get("stroke-dasharray", "") == style.dash
        assert float(drawn[0]["stroke-width"]) == style.width
        # a white halo under every box, so it shows on any background
        assert any(a["stroke"] == "#ffffff" and a["x"] == drawn[0]["x"] and a["y"] == drawn[0]["y"] for a in rects)
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", html.split("<image ")[1].split("</svg>")[0])
    assert sorted(texts) == sorted(["GT red", "MISSED blue", "CROWD green", "TP red 0.93", "FP green 0.61"])


def test_box_kinds_differ_without_colour():
    line_styles = {(s.dash, s.width) for s in BOX_STYLES.values()}
    assert len(line_styles) == len(BOX_STYLES)
    assert BOX_STYLES["tp"].dash and BOX_STYLES["fp"].dash and not BOX_STYLES["matched"].dash
    assert BOX_STYLES["missed"].width > BOX_STYLES["matched"].width
    assert len({s.tag for s in BOX_STYLES.values()}) == len(BOX_STYLES)


def test_example_text_alternatives(html):
    svg = _example_svg(html)
    alt = svg["title"]
    assert alt.startswith("Image sample s001 under clean (most missed objects under clean)")
    for words in ("1 ground truth, missed", "1 detection, false positive", "red 0.93 at 9, 10, 31, 29"):
        assert words in alt
    boxes = html.split("Boxes drawn on sample s001 under clean")[1].split("</details>")[0]
    assert "9, 10, 31, 29" in boxes and "60, 30, 85, 50" in boxes and "vermillion thick solid line" in boxes
    assert "96 × 64 pixels" in boxes
    legend = next(s for s in _svgs(html) if s["title"].startswith("Legend of the boxes"))
    for style in BOX_STYLES.values():
        assert f"{style.name}: {style.colour_name} {style.line}, labelled {style.tag}" in legend["title"]


def test_example_strings_are_escaped_and_non_data_images_dropped(tmp_path):
    bad = detection_results(tmp_path)
    det = bad.detection.to_dict()
    det["examples"][0]["detections"][0]["label"] = "<script>alert(1)</script>"
    det["examples"].append({**det["examples"][0], "image": "https://example.com/x.png", "sample_id": "remote"})
    data = bad.to_dict()
    data["detection"] = det
    page = render_html(data)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "https://example.com" not in page
    assert "1 example images were left out" in page


def test_summary_method_and_limitations_speak_of_detection(results, html):
    clean = results.detection.conditions[0].metrics
    summary = html.split('id="summary"')[1].split("</section>")[0]
    assert "object detector" in summary and f"{clean.map:.3f}" in summary and "recall gap is 100.0 pp" in summary
    assert "accuracy" not in summary
    method = html.split('id="method"')[1].split("</section>")[0]
    for ref in ("faster-coco-eval", "Bolya", "Küppers", "Michaelis", "cluster-bootstrap"):
        assert ref in method
    assert "Brier" not in method
    limitations = html.split('id="limitations"')[1].split("</section>")[0]
    assert "cluster-bootstrap" in limitations and "heavily" in limitations


def test_every_link_has_a_target(html):
    ids = set(re.findall(r'id="([^"]+)"', html))
    targets = set(re.findall(r'href="#([^"]+)"', html))
    assert targets <= ids, targets - ids


def test_groups_csv_rows_and_columns(results):
    rows = list(csv.DictReader(io.StringIO(groups_csv_text(results))))
    det = results.detection
    assert len(rows) == sum(len(c.groups) for c in det.conditions)
    metrics = [n for n in DetectionMetrics.model_fields if not n.endswith("_ci")]
    assert set(metrics) <= set(rows[0])
    assert "recall_ci_low" in rows[0] and "confusion" not in rows[0]
    group = det.conditions[0].groups[1]
    row = rows[1]
    assert (row["condition"], row["attribute"], row["level"], row["value"]) == (
        "clean",
        group.attribute,
        group.level,
        group.value,
    )
    assert float(row["missed_per_image"]) == group.metrics.missed_per_image
    assert row["precision"] == ("" if group.metrics.precision is None else repr(group.metrics.precision))
    small = next(r for r in rows if r["value"] == "heavily")
    assert small["insufficient_data"] == "true" and small["map"] == ""


def test_groups_csv_is_injection_safe(tmp_path):
    data = detection_results(tmp_path).to_dict()
    data["detection"]["conditions"][0]["groups"][0]["value"] = "=HYPERLINK(1)"
    text = groups_csv_text(render_ready(data))
    assert "'=HYPERLINK(1)" in text
    assert not any(cell.startswith("=") for row in csv.reader(io.StringIO(text)) for cell in row)


def render_ready(data):
    from audit.contract.load import parse_results

    return parse_results(data, source="results")


def test_skipped_csv_lists_images_and_annotations(results):
    rows = list(csv.reader(io.StringIO(skipped_csv_text(results))))
    assert rows[0] == ["kind", "sample_id", "source", "id", "reason"]
    assert rows[1] == ["image", "s999", "", "", "unreadable"]
    assert rows[2][:4] == ["annotation", "", "instances.json", "annotation 77"]
    assert len(rows) == 1 + 1 + len(results.detection.skipped_annotations)


def test_markdown_summary(results):
    text = render_markdown_summary(results)
    assert "### Detection per condition" in text
    assert f"| clean | {results.detection.conditions[0].metrics.map:.4g} |" in text


def test_pdf_of_a_detection_report(tmp_path, results):
    written = write_reports(tmp_path, results, formats=["html", "pdf"])
    names = {p.name for p in written}
    assert {"report.html", "report.pdf"} <= names
    pdf = tmp_path / "report.pdf"
    assert pdf.read_bytes().startswith(b"%PDF-")
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler) not installed")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    for words in ("Detection: does it find the objects?", "Example images with their boxes", "TIDE"):
        assert words in text


@pytest.mark.slow
@pytest.mark.parametrize("media", ["screen", "print"])
def test_detection_report_has_no_axe_violation(media, html, tmp_path):
    from test_report_accessibility import _axe

    outcome = _axe(html, tmp_path, media)
    assert outcome["violations"] == [], [
        (v["id"], v["help"], [n["target"] for n in v["nodes"][:5]]) for v in outcome["violations"]
    ]
    undecided = [(v["id"], n["html"][:60]) for v in outcome["incomplete"] for n in v["nodes"]]
    assert all(rule == "color-contrast" and snippet.startswith("<text") for rule, snippet in undecided), undecided
    assert outcome["scriptsInReport"] == 0 and outcome["external"] == []


def test_a_minimal_detection_audit_renders(tmp_path):
    """No stressor, no ground-truth object, no TIDE, calibration, gap test or example: nothing to draw, no crash."""
    from results_builder import typed_results

    det = detection_results(tmp_path).detection.to_dict()
    det["conditions"] = [
        {
            "id": "clean",
            "stressor": None,
            "severity": 0,
            "metrics": {"n_images": 3, "n_objects": 0, "fn": 0},
            "groups": [],
        }
    ]
    det.update(robustness=None, gap_tests=[], examples=None, skipped_annotations=[])
    results = typed_results({"task": "detection", "detection": det})
    page = render_html(results)
    section = page.split('id="detection"')[1].split("</section>")[0]
    assert "No recall gap was tested" in section and "No calibration in these results" in section
    assert "mPC" not in section and "<image " not in section and "TIDE" not in section
    assert 'id="robustness"' not in page and 'id="groups"' not in page
    assert groups_csv_text(results).count("\n") == 1  # the header only
    assert "### Detection per condition" in render_markdown_summary(results)


def test_the_whole_output_set_of_a_detection_audit(tmp_path, results):
    from reports import OutputTransaction, results_json_bytes, write_outputs

    out = tmp_path / "out"
    with OutputTransaction(out) as outputs:
        write_outputs(outputs, results, results_json=results_json_bytes(results), formats=["html"])
    assert {"results.json", "groups.csv", "skipped.csv", "report.html"} <= {p.name for p in out.iterdir()}
    assert (out / "groups.csv").read_text() == groups_csv_text(results)
    assert (out / "skipped.csv").read_text().startswith("kind,sample_id,source,id,reason\n")
    assert 'id="detection"' in (out / "report.html").read_text()
