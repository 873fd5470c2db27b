"""Hundreds of groups and thousands of skipped images: the report stays readable, and nothing is cut off silently."""

from __future__ import annotations

import csv
import io
import json
import random
import re
import shutil
import subprocess

import pytest
from results_builder import complete_results

from audit.contract.load import parse_results
from reports.group_view import CHART_EACH_END, TABLE_CONDITIONS, group_tables, pick_chart_groups
from reports.groups_csv import GROUPS_COLUMNS, groups_csv_text
from reports.html import SKIPPED_LIMIT, render_html
from reports.skipped_csv import skipped_csv_text

SITES, CAMERAS = 490, 10


def _groups(rng: random.Random, shift: float) -> list[dict]:
    groups = []
    for attribute, values in (("site", [f"site-{v:03d}" for v in range(SITES)]), ("camera", list("ABCDEFGHIJ"))):
        for value in values:
            n = rng.randint(5, 400)
            acc = min(1.0, max(0.0, rng.uniform(0.3, 0.99) - shift))
            groups.append(
                {
                    "attribute": attribute,
                    "value": value,
                    "insufficient_data": n < 30,
                    "metrics": {"n": n, "accuracy": acc, "accuracy_ci": [max(0.0, acc - 0.05), min(1.0, acc + 0.05)]},
                }
            )
    return groups


def many_groups_results(conditions: int = 3, skipped: int = 120) -> dict:
    rng = random.Random(7)
    conds = []
    for k in range(conditions):
        cid = "clean" if k == 0 else f"night@{k}"
        groups = _groups(rng, 0.05 * k)
        conds.append(
            {
                "id": cid,
                "stressor": None if k == 0 else "night",
                "severity": k,
                "model_aware": False,
                "metrics": {"n": 50_000, "accuracy": 0.9 - 0.05 * k, "accuracy_ci": [0.89 - 0.05 * k, 0.91 - 0.05 * k]},
                "groups": groups,
            }
        )
    attributes: dict[str, dict[str, int]] = {}
    for g in conds[0]["groups"]:
        attributes.setdefault(g["attribute"], {})[g["value"]] = g["metrics"]["n"]
    reasons = ["image file not found", "not a readable image (corrupt or unknown format)"]
    return complete_results(
        {
            "model": {"path": "m.pt", "class_names": ["a", "b"], "num_classes": 2},
            "dataset": {
                "path": "manifest.csv",
                "num_samples": 50_000,
                "num_skipped": skipped,
                "skipped_share": skipped / (50_000 + skipped),
                "skipped": [{"sample": f"img-{i:05d}", "reason": reasons[i % 3 == 0]} for i in range(skipped)],
                "attributes": attributes,
            },
            "conditions": conds,
        }
    )


def test_chart_picks_the_lowest_and_highest_and_counts_the_rest():
    results = many_groups_results()
    groups = parse_results(results).conditions[0].groups
    pick = pick_chart_groups(groups)
    comparable = sorted(
        (g for g in groups if not g.insufficient_data), key=lambda g: g.metrics.accuracy
    )  # an independent ranking
    assert pick.shown == comparable[:CHART_EACH_END] + comparable[-CHART_EACH_END:]
    assert pick.omitted == len(groups) - 2 * CHART_EACH_END and pick.split == CHART_EACH_END
    html = render_html(results)
    (alt,) = [t for t in re.findall(r"<title>([^<]*)</title>", html) if t.startswith("Accuracy per group, clean.")]
    assert f"and {pick.omitted} more groups" in alt
    for g in pick.shown:
        assert f"{g.attribute} = {g.value}: accuracy" in alt
    svg = next(s for s in re.findall(r"<svg[^>]*>", html) if 'role="img"' in s)
    assert int(re.search(r'height="(\d+)"', svg).group(1)) < 1000  # fits an A4 page


def test_every_group_is_a_row_of_its_groupings_tables():
    results = many_groups_results(conditions=TABLE_CONDITIONS + 3)
    tables = dict(group_tables(parse_results(results).conditions))
    assert list(tables) == ["site", "camera"]
    for grouping, count in (("site", SITES), ("camera", CAMERAS)):
        parts = tables[grouping]
        assert [len(t.columns) for t in parts] == [TABLE_CONDITIONS, 3]
        for t in parts:
            assert len(t.rows) == count
    html = render_html(results)
    for g in results["conditions"][0]["groups"]:
        assert html.count(f'<th scope="row">{g["value"]}</th>') >= 2  # in both tables of its grouping


def test_skipped_images_are_listed_up_to_a_limit_and_counted_by_reason():
    results = many_groups_results(skipped=10_000)
    html = render_html(results)
    listed = re.findall(r'<th scope="row">img-\d{5}</th>', html)
    assert len(listed) == SKIPPED_LIMIT
    assert f"and {10_000 - SKIPPED_LIMIT} more skipped images in skipped.csv" in html
    reasons = {}
    for s in results["dataset"]["skipped"]:
        reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
    for reason, count in reasons.items():
        assert f'<th scope="row">{reason}</th><td class="num">{count}</td>' in html
    rows = list(csv.reader(io.StringIO(skipped_csv_text(parse_results(results)))))
    assert rows[0] == ["sample_id", "reason"] and len(rows) == 10_001
    assert rows[1:] == [[s["sample"], s["reason"]] for s in results["dataset"]["skipped"]]


def test_groups_csv_holds_every_number():
    results = many_groups_results()
    rows = list(csv.DictReader(io.StringIO(groups_csv_text(parse_results(results)))))
    assert tuple(rows[0]) == GROUPS_COLUMNS
    expected = [(c["id"], g) for c in results["conditions"] for g in c["groups"]]
    assert len(rows) == len(expected)
    for row, (cid, g) in zip(rows, expected):
        m = g["metrics"]
        assert (row["condition"], row["attribute"], row["value"]) == (cid, g["attribute"], g["value"])
        assert row["insufficient_data"] == ("true" if g["insufficient_data"] else "false")
        assert int(row["n"]) == m["n"] and float(row["accuracy"]) == m["accuracy"]
        assert [float(row["accuracy_ci_low"]), float(row["accuracy_ci_high"])] == m["accuracy_ci"]
        assert json.loads(row["confusion"]) == m["confusion"]


def test_groups_csv_neutralises_formulas():
    results = many_groups_results(conditions=1)
    results["conditions"][0]["groups"][0]["value"] = "=HYPERLINK(1)"
    row = next(csv.DictReader(io.StringIO(groups_csv_text(parse_results(results)))))
    assert row["value"] == "'=HYPERLINK(1)"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) is not installed")
def test_a_500_group_pdf_shows_or_counts_every_group_and_has_no_blank_page(tmp_path):
    from reports.pdf import pdf_bytes

    results = many_groups_results(conditions=3, skipped=300)
    assert sum(1 for _ in results["conditions"][0]["groups"]) == SITES + CAMERAS == 500
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(pdf_bytes(render_html(results), attachments=[]))
    text = subprocess.run(["pdftotext", str(pdf), "-"], check=True, capture_output=True, text=True).stdout
    pages = text.split("\f")
    if pages and not pages[-1].strip():
        pages = pages[:-1]  # pdftotext ends the last page with a form feed
    assert all(page.strip() for page in pages), [i + 1 for i, p in enumerate(pages) if not p.strip()]
    words = set(re.findall(r"[\w-]+", text))
    counted = [int(n) for n in re.findall(r"and (\d+) more groups", text)]
    missing = [g["value"] for g in results["conditions"][0]["groups"] if g["value"] not in words]
    assert not missing or sum(counted) >= len(missing), missing[:10]
    assert not missing  # the group tables list every group
    assert counted and all(n == 500 - 2 * CHART_EACH_END for n in counted)  # the charts count what they leave out
    assert f"and {SITES - 30} more values" in text  # the attribute list of "What was tested"
    assert f"and {300 - SKIPPED_LIMIT} more skipped images" in text
