"""The report renders what results.json says about intervals, calibration, tests and early stopping."""

from __future__ import annotations

import html

from reports.html import render_html


def _text(results: dict) -> str:
    return html.unescape(render_html(results))


def test_interval_method_and_debiased_calibration_are_explained(results):
    results["evaluation"]["interval"] = "wilson"
    clean = results["conditions"][0]
    clean["metrics"]["debiased_l2_ce"] = 0.0123
    clean["metrics"]["debiased_l2_ce_ci"] = [0.0, 0.031]
    text = _text(results)
    assert "the Wilson score interval from the counts" in text
    assert "debiased calibration error" in text and "0.012" in text
    assert "about 1.2% (debiased calibration error, 95% interval 0.0–3.1%" in text
    results["evaluation"].pop("interval")
    assert "seeded Poisson bootstrap" in _text(results)


def test_fairness_table_shows_the_gap_test_and_demographic_parity_tracks_base_rates(results):
    entry = results["fairness"][0]
    entry["tests"] = {
        "accuracy_gap": {"p_value": 0.0004, "pairs": 3, "min_detectable": 0.081, "method": "agresti-caffo"}
    }
    text = _text(results)
    assert "< 0.001 (8.1 pp)" in text
    assert "tracks base rates" in text and "even under a perfect model" in text


def test_untestable_rules_and_early_stop_are_in_the_summary(results):
    rule = results["policy"]["rules"][0]
    rule["testable"] = False
    results["conditions"][1]["early_stop"] = {
        "samples_used": 512,
        "samples_available": 10000,
        "stopped": True,
        "reason": "every blocking rule on it was decided by an anytime-valid test (the last after 512 samples)",
        "decisions": [],
    }
    results["conditions"][0]["early_stop"] = {
        "samples_used": 10000,
        "samples_available": 10000,
        "stopped": False,
        "reason": "ran to the end: rule 'gap' judges the gap of accuracy across groups, which needs every sample",
        "decisions": [],
    }
    text = _text(results)
    assert (
        f"1 rule cannot be tested with these data (too few images per group to tell a real difference from chance): {rule['id']}"
        in text
    )
    cid = results["conditions"][1]["id"]
    assert "Early stopping was on: 1 of 2 conditions stopped" in text and f"{cid} after 512 of 10000 images" in text
    assert "clean ran on every image" in text
