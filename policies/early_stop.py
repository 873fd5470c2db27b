"""What each condition's early stopping depends on: the blocking rules that read it.

With ``evaluation.early_stop`` a condition stops as soon as every blocking rule that depends
on it is decided by an anytime-valid test (:mod:`audit.contract.sequential`). Only rules
whose value is a proportion of one slot can be decided that way: ``accuracy`` or
``top_k_accuracy`` of the condition, of one group (``attribute`` + ``value``) or of every
group (``aggregate: worst``), judged by the point estimate or an interval bound. Every other
blocking rule that reads a condition — a gap, a ratio, equalized odds, calibration, a
``section`` such as ``robustness`` (which compares conditions), the adversarial sanity
checks — keeps that condition running to the end of the data, and says so.

:func:`stop_targets` turns a policy and the run's :class:`~audit.contract.plan.RunPlan` into
plain records the evaluator maps onto its slots; it judges nothing.
"""

from __future__ import annotations

from typing import Any

from audit.contract.metric_specs import proportion_metric_names
from audit.contract.plan import PlannedCondition, RunPlan
from policies.schema import FindingRule, MetricRule, Policy
from policies.targets import selector_matches

__all__ = ["DECIDABLE_METRICS", "stop_targets"]

#: Metrics a blocking rule may judge for its condition to stop early (proportions of one slot; from the registry).
DECIDABLE_METRICS = proportion_metric_names()
#: Sections that describe the run, not any condition's predictions.
_RUN_SECTIONS = {"dataset", "evaluation", "model", "tool", "provenance", "governance", "report", "stressors", "seed"}


def _matches(rule: MetricRule, condition: PlannedCondition) -> bool:
    return selector_matches(rule.selector, condition.id, probe=condition.probe)


def _undecidable(rule: MetricRule) -> str | None:
    """Why a blocking condition rule cannot be decided early, or None when it can."""
    if rule.metric not in DECIDABLE_METRICS:
        return f"rule {rule.id!r} judges {rule.metric}, which has no anytime-valid test"
    if rule.attribute is not None and rule.value is None and rule.aggregate != "worst":
        what = f"the {rule.aggregate} of {rule.metric}" if rule.aggregate else rule.metric
        return f"rule {rule.id!r} judges {what} across groups, which needs every sample"
    if rule.attribute is not None and any(ch in rule.attribute for ch in "*?["):
        return f"rule {rule.id!r} names attributes by a glob"
    return None


def stop_targets(policy: Policy, plan: RunPlan) -> list[dict[str, Any]]:
    """The stopping records of every condition of the run.

    Args:
        policy: the judging policy.
        plan: what the run evaluates.

    Returns:
        One record per (blocking rule, condition) it reads: either a target to decide,
        ``{condition, rule, metric, attribute, value, aggregate, op, threshold, judge,
        min_samples}`` (``attribute`` None for the whole condition; ``value`` None with
        ``aggregate: worst``), or ``{condition, full: reason}`` when the rule keeps the
        condition running to the end. Conditions no blocking rule reads have no record; a
        detection run (``plan.task``) has none at all.
    """
    out: list[dict[str, Any]] = []
    if plan.task == "detection":
        return out  # a detection run evaluates every image of every condition (no anytime-valid test of mAP)
    everything = [c.id for c in plan.conditions]
    attacks = [c.id for c in plan.conditions if c.model_aware]
    for rule in policy.rules:
        if not rule.blocking:
            continue
        if isinstance(rule, FindingRule):
            if attacks and rule.section in (None, "adversarial_checks"):
                reason = f"rule {rule.id!r} judges the adversarial sanity checks, which compare attacks with clean"
                out.extend({"condition": cid, "full": reason} for cid in ["clean", *attacks])
            continue
        if rule.section is not None:
            if rule.section not in _RUN_SECTIONS:
                reason = f"rule {rule.id!r} reads section {rule.section!r}, computed from every condition"
                out.extend({"condition": cid, "full": reason} for cid in everything)
            continue
        why = _undecidable(rule)
        for condition in plan.conditions:
            if not _matches(rule, condition):
                continue
            if why is not None:
                out.append({"condition": condition.id, "full": why})
                continue
            out.append(
                {
                    "condition": condition.id,
                    "rule": rule.id,
                    "metric": rule.metric,
                    "attribute": rule.attribute,
                    "value": rule.value,
                    "aggregate": rule.aggregate,
                    "op": rule.op,
                    "threshold": rule.threshold,
                    "judge": rule.judge,
                    "min_samples": rule.min_samples,
                }
            )
    return out
