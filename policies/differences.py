"""Decide a rule on a difference between groups with a test, across all its targets.

A gap, ratio, equalized-odds or demographic-parity rule is first evaluated target by
target (:mod:`policies.evaluate`), which finds the stored groups of each target. Here the
targets' groups go, together, to :func:`audit.contract.gaptests.decide_targets` (the one
definition of the tests: the evaluator stores the same tests in the fairness entries), so
the correction for many comparisons covers every pair of every target of the rule. Each
target's status then follows its test: ``detect`` fails a target whose data show the
tolerance exceeded; ``demonstrate`` passes a target whose data show it kept. The observed
value stays the point estimate; the p-value and the minimum detectable gap come with it.
"""

from __future__ import annotations

from dataclasses import replace

from audit.contract.gaptests import (
    PROPORTION_METRICS,
    RATE_DIFFERENCES,
    TargetTest,
    decide_targets,
    estimates,
    too_few_to_tell,
)
from audit.contract.power import TARGET_POWER, candidate_pairs, target_power, target_samples
from audit.contract.results import Results
from policies.evaluate import Evaluation
from policies.schema import MetricRule

__all__ = ["decide_differences", "describe", "power_words", "with_samples_needed"]


def decide_differences(results: Results, rule: MetricRule, evaluations: list[Evaluation]) -> list[Evaluation]:
    """Test every target of a difference rule (``rule.test_mode`` detect or demonstrate).

    Args:
        results: the stored results (for ``evaluation.confidence_level``).
        rule: the rule; its ``difference`` is not None.
        evaluations: its targets as judged on the point estimate, with their groups.

    Returns:
        The evaluations with status, p-value and minimum detectable value from the test;
        a target whose groups lack what the test needs is insufficient data.
    """
    statistic, kind = rule.difference  # type: ignore[misc]
    level = results.evaluation.confidence_level or 0.95
    tested = [i for i, e in enumerate(evaluations) if e.groups is not None and e.status in ("pass", "fail")]
    targets = [
        estimates(
            evaluations[i].groups or (),
            statistic,
            min_group_size=evaluations[i].min_n,
            min_positives=evaluations[i].min_positives,
            level=float(level),
        )
        for i in tested
    ]
    proportions = statistic in PROPORTION_METRICS or statistic in RATE_DIFFERENCES
    outcomes = decide_targets(
        targets,
        kind=kind,
        tolerance=rule.threshold,
        mode=rule.test_mode,  # type: ignore[arg-type]
        confidence=rule.confidence,
        proportions=proportions,
    )
    out = list(evaluations)
    for i, items, outcome in zip(tested, targets, outcomes):
        e = evaluations[i]
        if outcome.decision is None:
            out[i] = replace(e, status="insufficient_data", note=f"cannot test: {outcome.note}", test=outcome)
            continue
        power = None
        if rule.test_mode == "detect":
            power = target_power(
                items or [],
                candidate_pairs(items or [], kind=kind, tolerance=rule.threshold),
                kind=kind,
                tolerance=rule.threshold,
                alpha=1.0 - rule.confidence,
                family_size=outcome.family_size,
                proportions=proportions,
                per_group_families=PROPORTION_METRICS,
            )
            if power is not None:  # testable: 80 % power against the alternative (audit.contract.power)
                outcome = replace(outcome, testable=power.power >= TARGET_POWER, samples_needed=None)
        status = "fail" if outcome.decision in ("violation", "not_shown") else "pass"
        if too_few_to_tell(outcome.decision, outcome.testable) and power is not None:
            status = "insufficient_data"  # no violation shown, but the test could not have shown one
        out[i] = replace(
            e,
            status=status,
            p_value=outcome.p_value,
            min_detectable=outcome.min_detectable,
            test=outcome,
            power=power,
            note=e.note,
        )
    return out


def with_samples_needed(rule: MetricRule, e: Evaluation) -> Evaluation:
    """The evaluation with its test's ``samples_needed``: from which size the power stays at 80 %.

    Computed for one target only (the rule's decisive one), as the exact scan takes longer than the test
    (:func:`audit.contract.power.samples_for_power`).
    """
    if e.power is None or e.test is None or rule.difference is None:
        return e
    needed = target_samples(rule.difference[1], rule.threshold, e.power)  # type: ignore[arg-type]
    return replace(e, test=replace(e.test, samples_needed=needed))


def describe(rule: MetricRule, e: Evaluation) -> str:
    """The test's part of a rule message: what was (not) shown, the p-value, power and testability."""
    outcome: TargetTest | None = e.test
    if outcome is None or outcome.decision is None or e.observed is None:
        return ""
    kind = rule.difference[1]  # type: ignore[index]
    percent = f"{100 * rule.confidence:g}%"
    bound = f"{'max' if kind == 'gap' else 'min'} {rule.threshold:g}"
    pairs = f"{outcome.pairs} pair{'s' if outcome.pairs != 1 else ''}"
    if outcome.family_size > outcome.pairs:
        pairs += f" of {outcome.family_size} corrected together"
    p = f"{outcome.p_value:.3g}"
    if rule.test_mode == "detect":
        adjusted = "Holm-adjusted p" if outcome.family_size > 1 else "p"
        if outcome.decision == "violation":
            text = f"shown to break {bound} at {percent} ({adjusted} = {p}, {pairs})"
        else:
            text = f"not shown to break {bound} at {percent} ({adjusted} = {p}, {pairs})"
            if outcome.min_detectable is not None:
                what = "a true gap below" if kind == "gap" else "a true ratio above"
                text += f"; {what} {outcome.min_detectable:.3g} would likely go unnoticed (80% power)"
            if e.power is not None:
                text += f"; {power_words(kind, e)}"
    else:
        if outcome.decision == "within":
            text = f"shown to keep {bound} at {percent} (p = {p}, {pairs})"
        else:
            text = f"not shown to keep {bound} at {percent} (p = {p}, {pairs})"
    if too_few_to_tell(outcome.decision, outcome.testable) and e.power is None:
        smallest = outcome.smallest_n
        if outcome.samples_needed is not None:
            text += f"; {kind} {bound} cannot be tested below about {outcome.samples_needed} samples per group" + (
                f" (smallest here: {smallest})" if smallest is not None else ""
            )
        else:
            text += f"; {kind} {bound} cannot be tested with these data"
    return text


def power_words(kind: str, e: Evaluation) -> str:
    """``power 58.6% against a true gap of 0.2 (groups of 110 and 110); cannot be tested below ...``."""
    power = e.power
    if power is None:
        return ""
    what = "a true gap of" if kind == "gap" else "a true ratio of"
    small, large = power.sizes
    sizes = f"groups of {small} and {large}" if power.per_group else f"rates over {small} and {large} samples"
    text = f"power {100 * power.power:.1f}% against {what} {power.against:g} ({sizes})"
    needed = e.test.samples_needed if e.test is not None else None
    untestable = e.test is not None and e.test.testable is False
    if needed is not None:
        text += (
            f"; cannot be tested below {needed} samples per group (80% power from there on)"
            if untestable
            else f"; 80% power from {needed} per group on"
        )
    elif untestable:
        text += "; cannot be tested with these data (below 80% power)"
    return text
