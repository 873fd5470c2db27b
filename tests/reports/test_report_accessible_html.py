"""report.html structure for assistive technology: language, landmarks, outline, tables, chart text alternatives.

The full WCAG check is axe-core in a browser (test_report_accessibility.py, slow);
these tests pin the structure the template promises, without a browser.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from results_builder import complete_results

from reports.html import fmt_datetime, fmt_rule_value, render_html


class _Tree(HTMLParser):
    """A flat record of the elements: (tag, attrs, depth, text inside), in document order."""

    VOID = frozenset({"meta", "img", "br", "col", "input", "link", "hr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[dict] = []
        self._open: list[dict] = []

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "text": [], "parents": [e["tag"] for e in self._open]}
        element["ancestors"] = list(self._open)
        self.elements.append(element)
        if tag not in self.VOID:
            self._open.append(element)

    def handle_endtag(self, tag):
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i]["tag"] == tag:
                del self._open[i:]
                break

    def handle_data(self, data):
        for element in self._open:
            element["text"].append(data)


def _parse(html: str) -> list[dict]:
    tree = _Tree()
    tree.feed(html)
    tree.close()
    for element in tree.elements:
        element["text"] = " ".join("".join(element["text"]).split())
    return tree.elements


def _by_tag(elements, tag):
    return [e for e in elements if e["tag"] == tag]


def test_language_follows_the_results_default_en(results):
    assert re.search(r'<html lang="en">', render_html(results))
    results["report"] = {"language": "en-GB"}
    assert re.search(r'<html lang="en-GB">', render_html(results))


def test_skip_link_main_and_named_regions(results):
    elements = _parse(render_html(results))
    body = elements.index(_by_tag(elements, "body")[0])
    first_link = next(e for e in elements[body:] if e["tag"] == "a")
    assert first_link["attrs"] == {"class": "skip-link", "href": "#main"}
    (main,) = _by_tag(elements, "main")
    assert main["attrs"]["id"] == "main"
    sections = _by_tag(elements, "section")
    assert {s["attrs"]["id"] for s in sections} >= {
        "verdict",
        "summary",
        "identity",
        "policy",
        "robustness",
        "adversarial",
        "calibration",
        "groups",
        "errors",
        "fairness",
        "governance",
        "gallery",
        "method",
        "compliance",
        "limitations",
    }
    ids = {e["attrs"].get("id"): e for e in elements}
    for section in sections:
        assert "main" in section["parents"], section["attrs"]["id"]
        heading = ids[section["attrs"]["aria-labelledby"]]
        assert heading["tag"] == "h2" and heading["text"] and section in heading["ancestors"]
    nav = _by_tag(elements, "nav")
    assert len(nav) == 1 and nav[0]["attrs"]["aria-label"]
    for link in (e for e in elements if e["tag"] == "a" and nav[0] in e["ancestors"]):
        assert link["attrs"]["href"][1:] in ids, link


def test_headings_form_one_outline(results, small_results):
    for html in (render_html(results), render_html(small_results)):
        levels = [int(e["tag"][1]) for e in _parse(html) if re.fullmatch(r"h[1-6]", e["tag"])]
        assert levels[0] == 1 and levels.count(1) == 1
        assert all(b <= a + 1 for a, b in zip(levels, levels[1:])), levels


def test_every_table_has_a_caption_and_scoped_headers(results):
    elements = _parse(render_html(results))
    tables = _by_tag(elements, "table")
    assert len(tables) >= 20
    for table in tables:
        captions = [e for e in elements if e["tag"] == "caption" and e["ancestors"] and e["ancestors"][-1] is table]
        assert len(captions) == 1 and len(captions[0]["text"]) > 10, table
    headers = _by_tag(elements, "th")
    assert headers and all(h["attrs"].get("scope") in ("col", "row", "colgroup") for h in headers)
    for colgroup_header in (h for h in headers if h["attrs"]["scope"] == "colgroup"):
        table = next(a for a in reversed(colgroup_header["ancestors"]) if a["tag"] == "table")
        assert [e for e in elements if e["tag"] == "colgroup" and table in e["ancestors"]]


def test_severity_chart_states_its_data(results):
    """The text alternative lists every point of every line, checked against the results."""
    html = render_html(results)
    clean = results["conditions"][0]["metrics"]["accuracy"]
    night = sorted((c["severity"], c["metrics"]["accuracy"]) for c in results["conditions"] if c["stressor"] == "night")
    expected = f"night: accuracy {100 * clean:.1f}% clean, " + ", ".join(
        f"{100 * acc:.1f}% at severity {sev}" for sev, acc in night
    )
    (alt,) = [t for t in re.findall(r"<title>([^<]*)</title>", html) if t.startswith("Accuracy against stressor")]
    assert expected in alt
    for stressor in ("glare", "blur", "occlusion"):
        assert f"; {stressor}: accuracy" in alt or alt.split(". ", 1)[1].startswith(f"{stressor}:")
    assert "pgd" not in alt  # attacks have their own chart


def test_every_chart_has_a_text_alternative_and_its_numbers(results):
    elements = _parse(render_html(results))
    svgs = _by_tag(elements, "svg")
    assert len(svgs) == 7
    for svg in svgs:
        assert svg["attrs"]["role"] == "img" and "aria-label" not in svg["attrs"]
        (title,) = [e for e in elements if e["tag"] == "title" and e["ancestors"] and e["ancestors"][-1] is svg]
        assert re.search(r"\d+\.\d%|\d+ predicted", title["text"]), title["text"][:80]
    details = _by_tag(elements, "details")
    assert len(details) == len(svgs)
    for block in details:
        summary = next(e for e in elements if e["tag"] == "summary" and block in e["ancestors"])
        table = next(e for e in elements if e["tag"] == "table" and block in e["ancestors"])
        assert summary["text"].startswith("Numbers behind the chart") and table


def test_group_chart_numbers_match_the_results(results):
    html = render_html(results)
    clean = results["conditions"][0]
    (alt,) = [t for t in re.findall(r"<title>([^<]*)</title>", html) if t.startswith("Accuracy per group, clean.")]
    for group in clean["groups"]:
        m = group["metrics"]
        lo, hi = m["accuracy_ci"]
        text = (
            f"{group['attribute']} = {group['value']}: accuracy {100 * m['accuracy']:.1f}%"
            f" (95% interval {100 * lo:.1f}% to {100 * hi:.1f}%), {m['n']} images"
        )
        assert text in alt
        assert re.search(
            rf"<th scope=\"row\">{re.escape(group['attribute'])} = {re.escape(group['value'])}</th>"
            rf"<td class=\"num\">{100 * m['accuracy']:.1f}%</td>",
            html,
        )
    flagged = [g for g in clean["groups"] if g["insufficient_data"]]
    assert flagged and all(f"{g['metrics']['n']} images, too few" in alt for g in flagged)


def test_confusion_chart_names_every_cell(results):
    html = render_html(results)
    matrix, names = results["conditions"][0]["confusion"], results["model"]["class_names"]
    (alt,) = [t for t in re.findall(r"<title>([^<]*)</title>", html) if t.startswith("Confusion matrix")]
    for i, row in enumerate(matrix):
        expected = f"true {names[i]}, {sum(row)} images: " + ", ".join(
            f"{count} predicted {names[j]}" for j, count in enumerate(row)
        )
        assert expected in alt


def test_gaps_are_percentage_points_and_times_are_iso(results):
    html = render_html(results)
    fairness = results["fairness"][0]
    assert f"{100 * fairness['accuracy_gap']:.1f} pp" in html
    finished = results["provenance"]["finished"]
    assert f'<time datetime="{finished}">2026-11-29 01:07:12 UTC</time>' in html


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-29T01:07:12Z", "2026-11-29 01:07:12 UTC"),
        ("2026-11-29T01:07:12+00:00", "2026-11-29 01:07:12 UTC"),
        ("2026-11-29T02:07:12+01:00", "2026-11-29 02:07:12 UTC+01:00"),
        ("2026-11-29T01:07:12", "2026-11-29 01:07:12"),
        ("yesterday", "yesterday"),
        (None, "\u2014"),
    ],
)
def test_times_are_written_unambiguously(value, expected):
    assert fmt_datetime(value) == expected


@pytest.mark.parametrize(
    ("rule", "value", "expected"),
    [
        ({"kind": "metric", "metric": "accuracy"}, 0.91, "91.00%"),
        ({"kind": "metric", "metric": "accuracy", "aggregate": "gap"}, 0.11, "11.00 pp"),
        ({"kind": "metric", "metric": "accuracy", "aggregate": "ratio"}, 0.875, "0.875 (ratio)"),
        ({"kind": "metric", "metric": "ece"}, 0.062, "6.20%"),
        ({"kind": "metric", "metric": "num_samples"}, 2000, "2000 images"),
        ({"kind": "metric", "metric": "brier"}, 0.25, "0.25"),
        ({"kind": "finding", "check": "consent_missing"}, "fail", "fail"),
        ({"kind": "metric", "metric": "accuracy"}, None, "\u2014"),
    ],
)
def test_rule_values_carry_the_unit_of_their_metric(rule, value, expected):
    assert fmt_rule_value(value, rule) == expected


def test_minimal_results_are_accessible_too():
    minimal = complete_results(
        {"conditions": [{"id": "clean", "stressor": None, "metrics": {"n": 2, "accuracy": 0.5}}]}
    )
    elements = _parse(render_html(minimal))
    assert len(_by_tag(elements, "main")) == 1 and len(_by_tag(elements, "h1")) == 1
    assert all(
        [e for e in elements if e["tag"] == "caption" and e["ancestors"][-1] is t] for t in _by_tag(elements, "table")
    )


def test_every_image_has_a_text_alternative_thumbnails_included(results, tmp_path):
    """The gallery and the thumbnails of the named misclassified samples (results.json ``error_thumbnails``)."""
    png = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="
    predictions = tmp_path / "predictions.csv"
    header = (
        "sample_id,condition,stressor,severity,label,prediction,confidence,p_true,prob_sq_sum,skin_tone,camera,site"
    )
    rows = [f"img_{i},clean,,,1,2,0.9,0.{i},0.8,I-II,phone,A" for i in range(3)]
    predictions.write_text("\n".join([header, *rows]) + "\n")
    samples = [{"sample_id": f"img_{i}", "image": png} for i in range(3)]
    results["error_thumbnails"] = [{"condition": "clean", "attribute": None, "value": None, "samples": samples}]
    images = _by_tag(_parse(render_html(results, predictions=predictions)), "img")
    thumbnails = [e for e in images if "figure" in e["parents"] and "td" in e["parents"]]
    assert len(thumbnails) == 3 and len(images) == 3 + len(results["gallery"])
    assert all(e["attrs"].get("alt") for e in images)
    assert [e["attrs"]["alt"] for e in thumbnails] == [
        f"sample img_{i} as the model saw it under condition clean" for i in range(3)
    ]
