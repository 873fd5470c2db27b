"""The detection report's "Per-object breaking points": a survival chart per stressor with its table and intervals."""

from __future__ import annotations

import re

import numpy as np
import pytest
from detection_report_fixture import detection_results
from results_builder import typed_results

from audit.evaluation.detection.object_breaking import breaking_points_section
from reports.html import render_html
from tests.audit.evaluation.detection.object_outcome_fixtures import Obj, Row, columns, conditions, config, make_data

IDS = ("clean", "zoom@1", "zoom@2", "zoom@3")


def _section(tmp_path):
    """Real per-object breaking points of a simulated detector: camera B loses its objects earlier."""
    rng = np.random.default_rng(5)
    images, rows = [], []
    for r in range(80):
        camera = "AB"[r % 2]
        n = int(rng.integers(1, 5))
        images.append(({"camera": camera}, [Obj(int(rng.integers(2)), float(rng.choice([12, 60, 150])))] * n))
        hazard = 0.15 if camera == "A" else 0.35
        for i in range(n):
            alive = rng.random() < 0.9
            found = [alive]
            for _ in range(3):
                alive = alive and rng.random() > hazard
                found.append(alive)
            rows += [Row(cid, r, i, True, bool(f)) for cid, f in zip(IDS, found)]
    section = breaking_points_section(
        columns(rows),
        data=make_data(images),
        conditions=conditions("zoom", (1, 2, 3)),
        cfg=config(n_bootstrap=200, min_group_size=25),
        out_csv=tmp_path / "object_breaking_points.csv",
    )
    assert section is not None
    return section


@pytest.fixture(scope="module")
def page_and_section(tmp_path_factory):
    root = tmp_path_factory.mktemp("breaking-report")
    section = _section(root)
    det = detection_results(root).detection.to_dict()
    det["breaking_points"] = section.to_dict()
    results = typed_results({"task": "detection", "detection": det})
    return render_html(results), section


def _part(page: str) -> str:
    return page.split('id="detection-breaking-h"')[1].split("<h3")[0]


def test_the_chart_and_table_hold_the_stored_numbers(page_and_section):
    page, section = page_and_section
    part = _part(page)
    camera = next(d for d in section.disparity if d.attribute == "camera")
    assert camera.disparity is not None and camera.worst_group == "B"  # the simulated gap is found
    title = re.search(r"<svg[^>]*>\s*<title>([^<]*)</title>", part).group(1)
    assert title.startswith("Share of objects still found under zoom, per camera.")
    overall = next(e for e in section.entries if e.id == "zoom")
    s3 = overall.survival[2]
    assert f"{100 * s3.surviving:.1f}%" in title
    # the table: the share with its interval at every level, the median with its interval
    cell = f"{100 * s3.surviving:.1f}% ({100 * s3.surviving_ci[0]:.1f}\u2013{100 * s3.surviving_ci[1]:.1f}%)"
    assert cell in part
    for value in ("A", "B"):
        entry = next(e for e in section.entries if e.id == f"zoom:camera={value}")
        assert f"camera = {value}" in part and f"{100 * entry.survival[0].surviving:.1f}%" in part
    assert "median breaking" in part and "(95% " in part
    assert f"{100 * camera.disparity:.1f} percentage points between A and B" in part


def test_small_groups_are_in_the_table_not_on_the_chart(tmp_path):
    section = _section(tmp_path)
    det = detection_results(tmp_path).detection.to_dict()
    bp = section.to_dict()
    for e in bp["entries"]:
        if e["id"] == "zoom:camera=B":
            e["insufficient_data"] = True
    bp["disparity"] = [d if d["attribute"] != "camera" else {**d, "groups_compared": 1} for d in bp["disparity"]]
    det["breaking_points"] = bp
    part = _part(render_html(typed_results({"task": "detection", "detection": det})))
    title = re.search(r"<title>([^<]*)</title>", part).group(1)
    assert "camera = B" not in title and "camera = B (too few to judge)" in part


def test_without_breaking_points_there_is_no_part(tmp_path):
    page = render_html(detection_results(tmp_path))
    assert 'id="detection-breaking-h"' not in page and "object_breaking_points.csv" not in page
