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
from audit.contract.results import Results
from policies.evaluate import Evaluation
from policies.schema import MetricRule

__all__ = ["decide_differences", "describe"]


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
    for i, outcome in zip(tested, outcomes):
        e = evaluations[i]
        if outcome.decision is None:
            out[i] = replace(e, status="insufficient_data", note=f"cannot test: {outcome.note}", test=outcome)
            continue
        status = "fail" if outcome.decision in ("violation", "not_shown") else "pass"
        out[i] = replace(e, status=status, p_value=outcome.p_value, min_detectable=outcome.min_detectable, test=outcome)
    return out


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
    else:
        if outcome.decision == "within":
            text = f"shown to keep {bound} at {percent} (p = {p}, {pairs})"
        else:
            text = f"not shown to keep {bound} at {percent} (p = {p}, {pairs})"
    if too_few_to_tell(outcome.decision, outcome.testable):
        smallest = outcome.smallest_n
        if outcome.samples_needed is not None:
            text += f"; {kind} {bound} cannot be tested below about {outcome.samples_needed} samples per group" + (
                f" (smallest here: {smallest})" if smallest is not None else ""
            )
        else:
            text += f"; {kind} {bound} cannot be tested with these data"
    return text
