"""The report's weak-slices section: found slices (fairness findings marked, example images as results.json holds
them), watched slices with their rules' verdicts; absent when the results have neither."""

from __future__ import annotations

from reports_fixture import _png

from reports.html import render_html


def _section(html: str) -> str:
    return html.split('<section id="slices"')[1].split("</section>")[0]


def _finding(text: str, attribute: str, value: str, *, fairness: bool, examples: list) -> dict:
    return {
        "id": "slice-0123456789",
        "text": text,
        "definition": {"all": [{"attribute": attribute, "equals": value}]},
        "n": 120,
        "value": 0.61,
        "interval": [0.52, 0.7],
        "rest_value": 0.9,
        "rest_interval": [0.88, 0.92],
        "effect": 0.29,
        "p_value": 0.0004,
        "fairness": fairness,
        "examples": examples,
    }


def test_no_slices_no_section(results):
    assert 'id="slices"' not in render_html(results)


def test_found_slices_with_examples_and_fairness_findings(results):
    image = _png()
    results["slice_search"] = {
        "metric": "accuracy",
        "condition": "clean",
        "depth": 3,
        "tolerance": 0.05,
        "min_size": 50,
        "alpha": 0.05,
        "attributes": ["camera", "skin_tone", "brightness"],
        "candidates": 412,
        "findings": [
            _finding("skin_tone = V", "skin_tone", "V", fairness=True, examples=[{"sample_id": "s-9", "image": image}]),
            _finding("camera = B", "camera", "B", fairness=False, examples=[]),
        ],
    }
    section = _section(render_html(results))
    assert "412 slices were tested" in section and "2 slices found" in section
    rows = section.split("<tbody>")[1].split("</tbody>")[0].split("</tr>")
    assert "skin_tone = V" in rows[0] and "fairness finding" in rows[0]
    assert "camera = B" in rows[1] and "weak slice" in rows[1] and "fairness finding" not in rows[1]
    assert f'src="{image}"' in section and 'alt="sample s-9 of slice skin_tone = V' in section


def test_a_search_that_found_nothing_says_so(results):
    results["slice_search"] = {
        "metric": "accuracy",
        "condition": "clean",
        "depth": 2,
        "tolerance": 0.0,
        "min_size": 50,
        "alpha": 0.05,
        "attributes": ["camera"],
        "candidates": 3,
        "findings": [],
    }
    section = _section(render_html(results))
    assert "No slice was found" in section and "<table" not in section


def test_a_non_image_example_is_not_shown(results):
    bad = "javascript:alert(1)"
    results["slice_search"] = {
        "metric": "accuracy",
        "condition": "night@3",
        "depth": 1,
        "tolerance": 0.0,
        "min_size": 50,
        "alpha": 0.05,
        "attributes": ["camera"],
        "candidates": 3,
        "findings": [
            _finding("camera = B", "camera", "B", fairness=False, examples=[{"sample_id": "x", "image": bad}])
        ],
    }
    assert bad not in _section(render_html(results))
