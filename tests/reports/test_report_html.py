"""render_html: content, escaping, self-containment and schema checks."""

from __future__ import annotations

import re

import pytest
from results_builder import complete_results

from audit.contract.load import ResultsError
from reports.html import render_html

HOSTILE_CLASS = "<script>alert(1)</script>"
HOSTILE_VALUE = "&\"'"


def test_sections_in_reading_order(results):
    html = render_html(results)
    order = [
        'id="verdict"',
        "Executive summary",
        "What was tested",
        "Policy rules",
        "Robustness",
        "Adversarial robustness",
        "Calibration",
        "Subgroups",
        "Which mistakes",
        "Fairness",
        "Data governance",
        "Stressor gallery",
        "Method notes",
        "Annex IV",
        "Art. 10",
        "Art. 15",
        "MEASURE 2.11",
        "Model card",
        ">Limitations</h2>",
    ]
    main = html.index("<main")  # the list of sections in <nav> comes first
    positions = [html.find(marker, main) for marker in order]
    assert all(p >= 0 for p in positions), [m for m, p in zip(order, positions) if p < 0]
    assert positions == sorted(positions)


def test_verdict_is_big_and_coloured(results):
    assert 'class="verdict verdict-fail"' in render_html(results)
    results["policy"]["verdict"] = "pass"
    assert 'class="verdict verdict-pass"' in render_html(results)
    del results["policy"]
    html = render_html(results)
    assert "NO VERDICT" in html and "verdict-none" in html


def test_identity_digests_and_numbers_shown(results):
    html = render_html(results)
    assert results["model"]["sha256"] in html and results["dataset"]["sha256"] in html
    assert results["policy"]["sha256"] in html
    assert "91.0%" in html  # clean accuracy, formatted not recomputed
    assert "worst_group_gap" in html and "torch 2.13.0" in html


def test_every_user_string_is_escaped(results):
    results["model"]["class_names"][2] = HOSTILE_CLASS
    results["conditions"][0]["groups"][0]["value"] = HOSTILE_VALUE
    results["dataset"]["attributes"]["skin_tone"] = {HOSTILE_VALUE: 3}
    results["dataset"]["skipped"][0]["sample"] = "<img src=x onerror=alert(1)>.jpg"
    results["policy"]["rules"][0]["message"] = HOSTILE_CLASS
    results["conditions"][0]["error_types"]["top_confusions"][0]["true"] = HOSTILE_CLASS
    html = render_html(results)
    assert "<script" not in html.lower()
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&amp;&#34;&#39;" in html  # attribute value &"' in tables and SVG labels
    assert "&amp;\"'" not in html and "&\"'" not in html


def test_self_contained_no_script_no_external_request(results):
    html = render_html(results)
    lower = html.lower()
    assert "<script" not in lower and "javascript:" not in lower and "@import" not in lower
    assert "<link" not in lower
    assert all(ref.startswith("#") for ref in re.findall(r"url\(([^)]*)\)", lower))
    for src in re.findall(r'src="([^"]*)"', html):
        assert src.startswith("data:image/"), src
    for href in re.findall(r'href="([^"]*)"', html):
        assert href.startswith("#"), href
    assert lower.count("<svg") >= 6  # severity, adversarial, 2 reliability, 2 group bars, heatmap


def test_gallery_only_when_present_and_only_data_images(results):
    results["gallery"].append({"condition": "blur@1", "image": "javascript:alert(1)"})
    results["gallery"].append({"condition": "blur@3", "image": "https://example.com/x.png"})
    html = render_html(results)
    assert html.count("<img ") == 2
    assert "example.com" not in html and "javascript:" not in html
    assert "2 gallery images were left out" in html
    del results["gallery"]
    assert "Stressor gallery" not in render_html(results)


def test_minimal_results_render(results):
    minimal = complete_results(
        {"conditions": [{"id": "clean", "stressor": None, "metrics": {"n": 2, "accuracy": 0.5}}]}
    )
    html = render_html(minimal)
    assert "NO VERDICT" in html and "50.0%" in html and "—" in html


def test_results_that_break_the_schema_are_refused(results):
    results["unexpected"] = {"extra": "keys"}
    with pytest.raises(ResultsError, match=r"\$\.unexpected: unknown key"):
        render_html(results)


@pytest.mark.parametrize("version", ["2.0", "10.1"])
def test_newer_schema_is_refused(results, version):
    results["schema_version"] = version
    with pytest.raises(ResultsError, match=f"schema_version: {version} is a newer major version"):
        render_html(results)


@pytest.mark.parametrize("version", [None, "one", ""])
def test_missing_or_malformed_schema_is_refused(results, version):
    if version is None:
        del results["schema_version"]
    else:
        results["schema_version"] = version
    with pytest.raises(ResultsError, match="schema_version"):
        render_html(results)


def test_minor_versions_are_accepted(results):
    results["schema_version"] = "1.7"
    assert "<html" in render_html(results)


def test_print_css(results):
    html = render_html(results)
    assert "size: A4" in html and "break-inside: avoid" in html and "table-header-group" in html


def _verdict_text(html: str) -> str:
    block = html[html.index('id="verdict"') :]
    return re.sub(r"\s+", " ", block[: block.index("</div>\n</div>") if "</div>\n</div>" in block else 600])


def test_fail_by_governance_check_only_names_it(results):
    """B5: a verdict failed by a blocking governance check must not read '0 blocking rules'."""
    for rule in results["policy"]["rules"]:
        rule["status"] = "pass"
    results["policy"]["verdict"] = "fail"
    results["policy"]["blocking_failures"] = ["governance.consent_withdrawn"]
    text = _verdict_text(render_html(results))
    assert "0 blocking" not in text
    assert "1 blocking rule/check" in text and "governance.consent_withdrawn" in text


def test_fail_counts_rules_and_checks(results):
    results["policy"]["blocking_failures"] = ["min-accuracy", "governance.region_not_allowed"]
    text = _verdict_text(render_html(results))
    assert "2 blocking rules/checks" in text
    assert "min-accuracy, governance.region_not_allowed" in text


def test_attack_drop_wording_and_pp_column(results):
    for row in results["robustness"]:
        row["drop"] = 0.25
    html = render_html(results)
    assert "percentage points below the same images unaltered" in html
    assert "25.0 pp" in html and "25.0%" not in html


def test_severity_table_lists_only_the_levels_run(results):
    stressor = results["stressors"][0]
    stressor["severities"] = [1, 3]
    stressor["severity_meaning"] = {"1": "ONE-LEVEL", "2": "TWO-LEVEL", "3": "THREE-LEVEL"}
    html = render_html(results)
    assert "ONE-LEVEL" in html and "THREE-LEVEL" in html and "TWO-LEVEL" not in html


def test_worst_condition_charts_use_the_hardest_natural_condition(results):
    natural = [c for c in results["conditions"] if c["stressor"] not in (None, "pgd")]
    hardest = min(natural, key=lambda c: c["metrics"]["accuracy"])
    attack = next(c for c in results["conditions"] if c["stressor"] == "pgd")
    attack["metrics"]["accuracy"] = 0.0  # a large-epsilon probe is the lowest accuracy overall
    html = render_html(results)
    assert f"{hardest['id']} (worst condition" in html
    assert f"{attack['id']} (worst condition" not in html


def test_fail_banner_names_every_failure_with_observed_and_threshold(results):
    results["policy"]["failures"] = [
        {"id": "worst_group_gap", "kind": "rule", "observed": 0.11, "threshold": 0.05, "op": "max", "message": "gap"},
        {
            "id": "governance.consent_missing",
            "kind": "governance",
            "observed": 12,
            "threshold": 0,
            "op": "max",
            "message": "12 of 2000 samples: no consent recorded",
        },
    ]
    html = render_html(results)
    banner = html[html.index('id="verdict"') : html.index('id="summary"')]
    assert "worst_group_gap</strong>: observed 0.11, required ≤ 0.05" in banner
    assert "governance.consent_missing</strong>: observed 12, required ≤ 0 samples" in banner


def test_pass_banner_says_what_still_deserves_a_look(results):
    results["policy"].update(
        verdict="pass", blocking_failures=[], failures=[], governance_counts={"warn": 2, "pass": 1}
    )
    for rule in results["policy"]["rules"]:
        if rule["status"] == "fail":
            rule["status"] = "warn"
    html = render_html(results)
    banner = html[html.index('id="verdict"') : html.index('id="summary"')]
    assert "Still read: 3 rule warnings and 2 governance findings" in banner  # 2 warn + 1 insufficient data


def test_probes_are_not_the_hardest_attack(results):
    attacks = [c for c in results["conditions"] if c["stressor"] == "pgd"]
    attacks[-1]["probe"] = True
    attacks[-1]["metrics"]["accuracy"] = 0.0
    html = render_html(results)
    summary = html[html.index('id="summary"') : html.index("</section>", html.index('id="summary"'))]
    summary = re.sub(r"</?bdi>", "", summary)
    assert f"hardest attack condition was {attacks[-1]['id']}" not in summary
    assert "hardest attack condition was pgd@" in summary
