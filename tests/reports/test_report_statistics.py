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


def _tested_gap_rule(results: dict, *, status: str, p_value: float) -> dict:
    """The fixture's gap rule as a detect-tested rule that the data cannot test (testable: false)."""
    rule = next(r for r in results["policy"]["rules"] if r["id"] == "worst_group_gap")
    rule.update(status=status, test="detect", confidence=0.95, p_value=p_value, testable=False, samples_needed=900)
    return rule


def test_untestable_rules_and_early_stop_are_in_the_summary(results):
    rule = _tested_gap_rule(results, status="pass", p_value=0.4)
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


def test_a_rule_shown_to_break_is_not_called_untestable(results):
    """One source for "cannot be tested": a test that showed a violation was decided, whatever its power."""
    rule = _tested_gap_rule(results, status="fail", p_value=5.16e-69)
    rule["message"] = "gap of accuracy on clean / skin_tone = 0.11: shown to break max 0.05 at 95% (p = 5.16e-69)"
    text = _text(results)
    assert "cannot be tested" not in text[: text.index('id="method"')]  # the method notes explain the term
    _tested_gap_rule(results, status="pass", p_value=0.4)
    text = _text(results)
    summary = text[text.index('id="summary"') : text.index('id="identity"')]
    assert "1 rule cannot be tested with these data" in summary and "worst_group_gap" in summary
    rules = text[text.index('id="policy"') : text.index('id="robustness"')]
    assert "cannot be tested with these data" in rules  # the rules table says it of the same rule


def test_the_policy_message_and_the_report_use_the_one_definition():
    from audit.contract.gaptests import rule_too_few_to_tell, too_few_to_tell

    for test, status, decision in (
        ("detect", "fail", "violation"),
        ("detect", "warn", "violation"),
        ("detect", "pass", "no_evidence"),
        ("demonstrate", "pass", "within"),
        ("demonstrate", "fail", "not_shown"),
    ):
        rule = {"test": test, "status": status, "p_value": 0.5, "testable": False}
        assert rule_too_few_to_tell(rule) == too_few_to_tell(decision, False), (test, status)
    assert not rule_too_few_to_tell({"test": "detect", "status": "pass", "p_value": None, "testable": False})
    assert not rule_too_few_to_tell({"test": "point", "status": "pass", "p_value": None, "testable": False})


def test_insufficient_evidence_and_the_power_of_a_pass_are_in_the_rules_table(results):
    """Issue 32: an untestable detect rule says "insufficient evidence"; a detect pass states its power."""
    rule = _tested_gap_rule(results, status="fail", p_value=0.4)
    rule.update(insufficient_evidence=True, power=0.312, power_against=0.1)
    rules = _text(results)
    rules = rules[rules.index('id="policy"') : rules.index('id="robustness"')]
    assert "insufficient evidence: cannot be tested with these data" in rules
    assert "power 31% against a true gap of 0.1" in rules
    rule.update(status="pass", insufficient_evidence=False, testable=True, power=0.934)
    rules = _text(results)
    rules = rules[rules.index('id="policy"') : rules.index('id="robustness"')]
    assert "power 93% against a true gap of 0.1" in rules and "insufficient evidence" not in rules
