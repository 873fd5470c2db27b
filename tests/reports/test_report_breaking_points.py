"""The report's breaking-point section: selected from the stored summaries, with a text alternative."""

from __future__ import annotations

import re

from results_builder import complete_results

from reports.html import render_html


def entry(value, surviving, median, *, stressor="night", small=False):
    levels = [1.0, 2.0, 3.0]
    return {
        "id": stressor if value is None else f"{stressor}:camera={value}",
        "stressor": stressor,
        "measure": "severity",
        "attribute": None if value is None else "camera",
        "value": value,
        "method": "grid",
        "n": 100,
        "n_total": 110,
        "wrong_on_clean": 10,
        "broken": 80,
        "never": 20,
        "median": median,
        "median_ci": [median - 0.5, None],
        "median_censored": False,
        "insufficient_data": small,
        "survival": [
            {"severity": lv, "condition": f"{stressor}@{int(lv)}", "surviving": s, "n_surviving": int(100 * s)}
            for lv, s in zip(levels, surviving)
        ],
    }


def disparity(stressor, gap):
    return {
        "id": f"{stressor}:camera",
        "stressor": stressor,
        "attribute": "camera",
        "groups_compared": 2,
        "disparity": gap,
        "at_severity": 2.0,
        "worst_group": "B",
        "best_group": "A",
        "median_gap": 1.0,
        "excluded": [],
    }


def results():
    return complete_results(
        {
            "breaking_points": [
                entry(None, [0.9, 0.6, 0.3], 2.0),
                entry("A", [0.95, 0.85, 0.5], 3.0),
                entry("B", [0.8, 0.35, 0.1], 2.0),
                entry(None, [0.99, 0.98, 0.97], 3.0, stressor="blur"),
                entry("A", [0.99, 0.98, 0.97], 3.0, stressor="blur"),
                entry("B", [0.99, 0.97, 0.96], 3.0, stressor="blur"),
            ],
            "breaking_point_disparity": [disparity("blur", 0.02), disparity("night", 0.5)],
        }
    )


def section(html: str) -> str:
    match = re.search(r'<section id="breaking-points">.*?</section>', html, re.S)
    assert match, "no breaking-points section"
    return match.group(0)


def test_the_section_ranks_stressors_by_disparity_and_states_its_data():
    html = section(render_html(results()))
    panels = re.findall(r'<div class="bp-panel" id="breaking-points-(\d)">\s*<h3>(.*?)</h3>', html)
    assert [p[1] for p in panels] == ["night by camera", "blur by camera"]
    assert "50.0 percentage points between camera = A and camera = B" in html
    assert "<svg" in html and "<caption>" in html  # the chart and its table
    night = html.split('id="breaking-points-2"')[0]
    for share in ("95.0%", "85.0%", "50.0%", "80.0%", "35.0%", "10.0%"):
        assert share in night
    assert "2 (95% 1.5\u2013above the highest level)" in night


def test_no_section_without_breaking_points():
    assert 'id="breaking-points"' not in render_html(complete_results({}))
