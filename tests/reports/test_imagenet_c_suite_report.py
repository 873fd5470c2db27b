"""The report's corruption benchmark section: summary, heat map and CE bars with their text alternatives, previews."""

from __future__ import annotations

import html as htmllib
import re

import pytest
from reports_fixture import _png

from audit.contract.corruption_suite import ALEXNET_ERRORS, ALEXNET_SOURCE
from reports.html import render_html
from reports.html.formatting import fmt_rule_value
from reports.rule_words import rule_in_words

ERRORS = {"gaussian_noise": [0.1, 0.2, 0.3, 0.4, 0.5], "contrast": [0.05, 0.1, 0.4, 0.7, 0.9], "saturate": [0.1] * 5}


def _section(*, previews: bool) -> dict:
    rows = []
    for name, errs in ERRORS.items():
        ce = sum(errs) / sum(ALEXNET_ERRORS[name])
        rows.append(
            {
                "corruption": name,
                "held_out": name == "saturate",
                "severities": [1, 2, 3, 4, 5],
                "errors": errs,
                "baseline_errors": list(ALEXNET_ERRORS[name]),
                "ce": ce,
                "relative_ce": None,
                "unnormalized_ce": sum(errs) / 5,
            }
        )
    section = {
        "suite": "imagenet-c",
        "task": "classification",
        "severities": [1, 2, 3, 4, 5],
        "complete": False,
        "baseline": {"kind": "alexnet", "source": ALEXNET_SOURCE},
        "clean_error": 0.05,
        "corruptions": rows,
        "mce": (rows[0]["ce"] + rows[1]["ce"]) / 2,
        "relative_mce": None,
        "held_out_mce": rows[2]["ce"],
        "held_out_relative_mce": None,
    }
    if previews:
        section["previews"] = [{"condition": f"{n}@{s}", "image": _png(seed=s)} for n in ERRORS for s in range(1, 6)]
    return section


def _corruptions(html: str) -> str | None:
    found = re.search(r'<section id="corruptions".*?</section>', html, re.DOTALL)
    return None if found is None else found.group(0)


def _all(tag: str, text: str) -> list[str]:
    return [htmllib.unescape(t) for t in re.findall(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL)]


def _alts(text: str) -> list[str]:
    return [htmllib.unescape(a) for a in re.findall(r'<img [^>]*alt="([^"]*)"', text)]


def test_no_benchmark_no_section(results):
    assert _corruptions(render_html(results)) is None


def test_the_section_shows_the_summary_heat_map_and_ce_bars_with_text_alternatives(results):
    results["imagenet_c"] = _section(previews=False)
    html = render_html(results)
    section = _corruptions(html)
    assert section is not None and '<a href="#corruptions">Corruption benchmark</a>' in html
    mce = results["imagenet_c"]["mce"]
    assert f'<th scope="row">mCE</th><td class="num">{mce:.3f}</td>' in section
    titles = _all("title", section)
    heat, bars = titles
    assert heat.startswith("Corruption error by severity.")
    assert "contrast: severity 1 5.0%, severity 2 10.0%, severity 3 40.0%, severity 4 70.0%, severity 5 90.0%" in heat
    assert "saturate (held out): severity 1 10.0%" in heat
    assert bars.startswith("Corruption error against AlexNet; 1 is the baseline's error.")
    for row in results["imagenet_c"]["corruptions"]:
        assert f"CE {row['ce']:.3f}" in bars
    # the numbers behind each chart, as tables
    captions = _all("caption", section)
    assert any(c.startswith("Error in % per corruption") for c in captions)
    assert any(c.startswith("CE and relative CE per corruption against AlexNet") for c in captions)
    assert "<img" not in section  # no previews without report images


def test_previews_have_text_alternatives(results):
    results["imagenet_c"] = _section(previews=True)
    section = _corruptions(render_html(results))
    alts = _alts(section)
    assert len(alts) == 15 == section.count("<img")
    assert alts[0] == "gaussian_noise at severity 1 on an audit image"
    assert all(re.fullmatch(r"\w+ at severity \d on an audit image", alt) for alt in alts)


@pytest.mark.parametrize(
    ("metric", "words"),
    [("mce", "the mean corruption error (mCE)"), ("relative_mce", "the relative mean corruption error")],
)
def test_a_benchmark_rule_is_worded_and_formatted_as_a_ratio(metric, words):
    rule = {"kind": "metric", "metric": metric, "condition": "imagenet_c", "op": "max", "threshold": 1.0}
    assert fmt_rule_value(1.0, rule) == "1.000"  # not 100% (the 'mce' of a slot is a calibration share)
    assert rule_in_words(rule, fmt_rule_value) == f"{words[0].upper()}{words[1:]} in imagenet_c must be at most 1.000"
    slot = {"kind": "metric", "metric": "mce", "condition": "clean", "op": "max", "threshold": 0.1}
    assert fmt_rule_value(0.1, slot) == "10.00%"


@pytest.mark.slow
@pytest.mark.parametrize("media", ["screen", "print"])
def test_the_section_has_no_axe_violation(results, tmp_path, media):
    from test_report_accessibility import _axe

    results["imagenet_c"] = _section(previews=True)
    outcome = _axe(render_html(results), tmp_path, media)
    assert outcome["violations"] == [], [
        (v["id"], v["help"], [n["target"] for n in v["nodes"][:5]]) for v in outcome["violations"]
    ]
    undecided = [(v["id"], n["html"][:60]) for v in outcome["incomplete"] for n in v["nodes"]]
    assert all(rule == "color-contrast" and html.startswith("<text") for rule, html in undecided), undecided
