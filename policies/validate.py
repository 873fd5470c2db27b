"""Rules checked against what a run produces, before any image is evaluated.

:func:`validate_policy` takes the policy and a :class:`~audit.contract.plan.RunPlan`
(built from the config by the runner, or from a stored results.json by
``policy check``) and raises :class:`~policies.errors.PolicyError` for the
first rule that can never match: one line naming the policy file, the rule id,
the key, and the valid choices. A rule that can never match is a mistake (a
typo, a severity written differently from the run's, a metric without an
interval), never "insufficient data".

What a rule may name:

- ``condition``: ``clean``, a condition id of the run in any equivalent
  spelling (:mod:`audit.contract.conditions`), or a glob matching at least one
  condition. A stressor or severity that is not in the run is allowed only
  with an explicit ``required: false`` (the rule is then not applicable); a
  severity within 5 % of one the run has (``pgd@0.0078`` against
  ``pgd@0.007843``) is always an error: a near miss, not a condition that
  did not run.
- ``stressor`` (+ ``severity``): the same rules, and the same outcome: the
  spelling is turned into the condition selector ``<stressor>@<severity>``
  (``<stressor>@*`` without a severity; :attr:`~policies.schema.MetricRule.selector`)
  and matched exactly as a ``condition`` is (:func:`policies.targets.selector_matches`).
- ``attribute`` / ``value``: an attribute or intersection of the run (or a glob
  matching one) and one of its values. A glob in a run with no attributes at
  all is allowed only with ``required: false`` (not applicable); a named
  attribute the run lacks is always an error.
- ``metric``: a key the target carries: a condition's or group's metric
  (:class:`~audit.contract.results.Metrics`), a gap or ratio of the fairness
  entries (``aggregate: gap|ratio``), a fairness entry key (``attribute``
  alone), or a key of a ``section``. ``top_k_accuracy`` needs
  ``evaluation.top_k``; ``judge: ci_lower|ci_upper`` needs an interval of that
  metric (accuracy and top-k accuracy always have one; the others need
  bootstrap replicates > 0); a tested difference (``test: detect|demonstrate``)
  of a metric that is not a proportion needs the groups' intervals of it.
- ``kind: finding`` rules: a check the policy's governance section runs or the
  run produces (the adversarial sanity checks when an attack runs).

A detection run (``RunPlan.task == "detection"``; :mod:`policies.detection`) is validated
against its own targets: ``metric`` is a detection metric (``map``, ``recall``,
``fp_per_image`` ...; a classification metric such as ``accuracy`` is an error, as a detection
metric is on a classification run); a group or gap names an image attribute or an object
grouping (``object.size``, ``object.class``, ``object.<key>``) whose groups carry that metric
(a glob picks object groupings only when it starts with ``object.``);
``attribute`` needs ``value`` or ``aggregate`` (a detection run has no fairness entries); a
tested gap (the default for ``aggregate: gap``) or a gap judged by an interval end is a gap of
``recall`` in a run that computes intervals; a ratio is compared by its estimate only
(``test: point``). ``section`` names a key the run writes (``detection``, not a classification
key) and a path its model has (``robustness.rpc``); ``section: detection.breaking_points`` an
entry, severity and key the run's per-object breaking points will have
(:func:`policies.detection.check_breaking_rule`).

A policy that is not ``report_only`` must have something that can fail its
verdict (:func:`check_gate`: a blocking rule or a blocking governance check),
and, without a blocking governance check, at least one blocking rule that
applies to the run: when every blocking rule is not applicable, the gate would
pass on nothing, and :func:`validate_policy` refuses it.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import get_args, get_origin

from pydantic import BaseModel

from audit.contract.conditions import format_severity, is_glob, parse_severity, split_condition
from audit.contract.gaptests import PROPORTION_METRICS, RATE_DIFFERENCES
from audit.contract.metric_specs import BENCHMARK_METRICS, METRICS
from audit.contract.plan import RunPlan
from audit.contract.results import CLASSIFICATION_KEYS, FairnessEntry, GroupMetrics, Metrics, Results
from audit.contract.slices import WATCHED_METRICS
from policies.detection import (
    BREAKING_SECTION,
    CONDITION_ONLY_METRICS,
    DETECTION_METRICS,
    TESTED_GAP_METRICS,
    attribute_matches,
    check_breaking_rule,
    group_metrics,
    is_object_level,
)
from policies.errors import PolicyError
from policies.governance import governance_checks
from policies.schema import FindingRule, MetricRule, Policy
from policies.targets import selector_matches

__all__ = ["check_gate", "validate_policy"]

_CONDITION_METRICS = tuple(k for k in Metrics.model_fields if not k.endswith("_ci"))
_GROUP_METRICS = tuple(k for k in GroupMetrics.model_fields if not k.endswith("_ci"))
_FAIRNESS_KEYS = tuple(
    k
    for k in FairnessEntry.model_fields
    if k
    not in (
        "condition",
        "attribute",
        "excluded",
        "exclusions",
        "worst_group",
        "best_group",
        "min_group_size",
        "min_positives",
        "equalized_odds_driver",
        "demographic_parity_driver",
        "tests",
    )
)


def _choices(values: list[str], limit: int = 12) -> str:
    shown = ", ".join(values[:limit])
    return f"{shown}, … ({len(values)} in all)" if len(values) > limit else (shown or "none")


def check_gate(policy: Policy) -> None:
    """Fail closed: a policy that is not ``report_only`` has something that can fail its verdict (a
    blocking rule or a blocking governance check), or its gate would pass on nothing.

    Raises:
        PolicyError: one line naming the policy file and key ``rules``.
    """
    if policy.report_only or any(rule.blocking for rule in policy.rules) or policy.blocking_governance:
        return
    if not policy.rules:
        problem = "the policy has no rules (and no blocking governance check)"
    else:
        problem = f"no rule is blocking (all {len(policy.rules)} say 'blocking: false'; no governance check blocks)"
    raise PolicyError(
        f"{problem}, so its gate would pass on nothing; add a blocking rule, "
        "or set 'report_only: true' to report without a pass/fail gate",
        file=policy.source,
        key="rules",
    )


def validate_policy(policy: Policy, plan: RunPlan) -> dict[str, str]:
    """Raise on the first rule of ``policy`` that can never match ``plan`` (see the module docstring).

    Returns:
        rule id -> why the rule does not apply to this run, for each rule whose target is absent
        and that says ``required: false`` (it is judged ``not_applicable``).

    Raises:
        PolicyError: one line: policy file, rule id, key, problem and the valid choices; or, for a
            policy that is not ``report_only``, that it has no blocking rule (:func:`check_gate`) or
            that none of its blocking rules applies to the run (its gate would pass on nothing).
    """
    check_gate(policy)
    inapplicable: dict[str, str] = {}
    for rule in policy.rules:

        def error(key: str, problem: str, rule_id: str = rule.id) -> PolicyError:
            return PolicyError(f"{problem} (in {plan.source})", file=policy.source, rule_id=rule_id, key=key)

        if isinstance(rule, MetricRule):
            reason = _validate_metric_rule(rule, plan, error)
        else:
            reason = _validate_finding_rule(rule, policy, plan, error)
        if reason is not None:
            inapplicable[rule.id] = reason
    blocking = [rule.id for rule in policy.rules if rule.blocking]
    if blocking and all(rule_id in inapplicable for rule_id in blocking) and not policy.blocking_governance:
        why = "; ".join(f"{rule_id}: {inapplicable[rule_id]}" for rule_id in blocking)
        raise PolicyError(
            f"no blocking rule applies to {plan.source}, so the gate would pass on nothing ({why})",
            file=policy.source,
            key="rules",
        )
    return inapplicable


def _validate_metric_rule(rule: MetricRule, plan: RunPlan, error) -> str | None:
    if rule.section is not None:
        return _validate_section(rule, plan, error)
    reason = _validate_target(rule, plan, error)
    if reason is not None:
        return reason
    if rule.attribute is not None:
        reason = _validate_attribute(rule, plan, error)
        if reason is not None:
            return reason
    _validate_metric(rule, plan, error)
    return None


def _validate_target(rule: MetricRule, plan: RunPlan, error) -> str | None:
    """The conditions of a rule, however spelled (``condition`` or ``stressor`` + ``severity``: one
    selector, :attr:`~policies.schema.MetricRule.selector`), matched as the engine matches them."""
    selector = rule.selector
    if selector == "clean" or any(selector_matches(selector, c.id, probe=c.probe) for c in plan.conditions):
        return None
    name, severity = split_condition(selector)
    stressors = [s for s in plan.stressors if fnmatchcase(s, name)]
    exact = severity is not None and not is_glob(severity)
    near = bool(stressors) and exact and _near_miss(str(severity), plan, stressors)
    if rule.optional and not near:
        return f"{_spelled(rule)} is not in this run (required: false)"
    hint = "" if near else "; set 'required: false' if the rule may not apply"
    if stressors and exact:
        key = "condition" if rule.condition is not None else "severity"
        runs = _choices([cid for s in stressors for cid in plan.ids_of(s)])
        raise error(key, f"no condition {selector!r} in the run; {', '.join(stressors)} runs {runs}{hint}")
    if stressors or (rule.condition is not None and is_glob(selector)):
        key = "condition" if rule.condition is not None else "stressor"
        raise error(
            key, f"{_spelled(rule)} matches no condition of the run (conditions: {_choices(plan.condition_ids)}){hint}"
        )
    key = "condition" if rule.condition is not None else "stressor"
    raise error(key, f"no stressor {name!r} in the run (stressors: {_choices(plan.stressors)}){hint}")


def _spelled(rule: MetricRule) -> str:
    """The rule's conditions as the policy writes them."""
    if rule.condition is not None:
        return repr(rule.condition)
    severity = "" if rule.severity is None else f", severity {format_severity(rule.severity)}"
    return f"stressor {rule.stressor!r}{severity} ({rule.selector!r})"


def _near_miss(severity: str, plan: RunPlan, stressors: list[str]) -> bool:
    """A severity within 5 % of one the stressors run, written differently: a typo, never "not run"."""
    try:
        wanted = parse_severity(severity)
    except ValueError:
        return False
    return any(
        condition.stressor in stressors
        and condition.severity
        and abs(wanted - condition.severity) <= 0.05 * abs(condition.severity)
        for condition in plan.conditions
    )


def _validate_attribute(rule: MetricRule, plan: RunPlan, error) -> str | None:
    attributes = list(plan.attributes)
    attribute = str(rule.attribute)
    if is_glob(attribute):
        if plan.task == "detection":  # a glob picks object groupings only when it says object.
            attributes = [a for a in attributes if not is_object_level(a) or attribute.startswith("object.")]
        if any(fnmatchcase(a, attribute) for a in attributes):
            return None
        if not attributes and rule.optional:  # a run without subgroup attributes: nothing to compare
            return f"the run has no subgroup attributes (attribute {attribute!r} matches none; required: false)"
        hint = "; set 'required: false' if the run may have no attributes" if not attributes else ""
        raise error(
            "attribute", f"{attribute!r} matches no attribute of the run (attributes: {_choices(attributes)}){hint}"
        )
    if attribute not in plan.attributes:
        raise error("attribute", f"no attribute {attribute!r} in the run (attributes: {_choices(attributes)})")
    if rule.value is not None and rule.value not in plan.attributes[attribute]:
        raise error(
            "value",
            f"no group {attribute}={rule.value} in the data ({attribute}: {_choices(list(plan.attributes[attribute]))})",
        )
    return None


def _validate_test(rule: MetricRule, plan: RunPlan, error) -> None:
    """A tested difference of a metric that is not a count needs the groups' intervals."""
    difference = rule.difference
    if difference is None or rule.test_mode == "point":
        return
    statistic = difference[0]
    if statistic in PROPORTION_METRICS or statistic in RATE_DIFFERENCES or statistic in plan.intervals:
        return
    raise error(
        "test",
        f"test {rule.test_mode!r} of a {difference[1]} of {statistic!r} needs the groups' intervals of {statistic}, "
        "which the run does not compute (evaluation.n_bootstrap is 0); set test: point to compare the estimate",
    )


def _validate_metric(rule: MetricRule, plan: RunPlan, error) -> None:
    if plan.task == "detection":
        _validate_detection_metric(rule, plan, error)
        return
    _validate_test(rule, plan, error)
    metric = rule.metric
    if rule.attribute is None:
        known, where = _CONDITION_METRICS, "condition metrics"
    elif rule.value is not None or rule.aggregate == "worst":
        known, where = _GROUP_METRICS, "group metrics"
    elif rule.aggregate is not None:
        key = f"{metric}_{rule.aggregate}"
        if key not in FairnessEntry.model_fields:
            have = [
                k[: -len(rule.aggregate) - 1] for k in FairnessEntry.model_fields if k.endswith(f"_{rule.aggregate}")
            ]
            raise error(
                "metric",
                f"no {rule.aggregate} of {metric!r} is computed (metrics with a {rule.aggregate}: {_choices(have)})",
            )
        if rule.judge != "point":
            raise error(
                "judge",
                f"judge {rule.judge!r} needs an interval of the {rule.aggregate}, which no run computes; use judge: point",
            )
        return
    else:
        known, where = _FAIRNESS_KEYS, "fairness entries"
    if metric not in known:
        hint = "; it is a detection metric and this is a classification run" if metric in DETECTION_METRICS else ""
        raise error("metric", f"unknown metric {metric!r} for {where}{hint} (metrics: {_choices(list(known))})")
    spec = METRICS.get(metric)
    if spec is not None and spec.requires == "top_k" and not plan.top_k:
        raise error("metric", f"{metric} is not computed in this run; set evaluation.{spec.requires}")
    if rule.judge != "point" and metric not in plan.intervals:
        have = sorted(plan.intervals)
        reason = (
            "the run computes no intervals (evaluation.n_bootstrap is 0)"
            if not have
            else f"intervals exist for {_choices(have)}"
        )
        raise error("judge", f"judge {rule.judge!r} needs an interval of {metric!r}: {reason}")


def _validate_detection_metric(rule: MetricRule, plan: RunPlan, error) -> None:
    """A metric rule on a detection run (see the module docstring)."""
    metric = rule.metric
    if metric in CONDITION_ONLY_METRICS:
        if rule.attribute is not None:
            raise error("metric", f"{metric!r} is computed per condition, not per group: remove 'attribute'")
        _validate_interval(rule, plan, error)
        return
    if metric not in DETECTION_METRICS:
        classification = {*_CONDITION_METRICS, *_GROUP_METRICS, *_FAIRNESS_KEYS}
        hint = "; it is a classification metric and this is a detection run" if metric in classification else ""
        raise error(
            "metric",
            f"unknown metric {metric!r}{hint} "
            f"(detection metrics: {_choices([*DETECTION_METRICS, *CONDITION_ONLY_METRICS], 30)})",
        )
    if rule.attribute is None:
        _validate_interval(rule, plan, error)
        return
    if rule.value is None and rule.aggregate is None:
        raise error(
            "aggregate",
            "a detection run has no fairness entries: set 'value' to judge one group, or 'aggregate: gap', "
            "'ratio' or 'worst' to judge across the groups",
        )
    attributes = [a for a in plan.attributes if attribute_matches(str(rule.attribute), a)]
    if attributes and not any(metric in group_metrics(a) for a in attributes):
        carried = sorted({m for a in attributes for m in group_metrics(a)}, key=DETECTION_METRICS.index)
        what = "object-level" if all(is_object_level(a) for a in attributes) else ""
        raise error(
            "metric",
            f"{metric!r} is not computed for the {what + ' ' if what else ''}groups of {', '.join(attributes)} "
            f"(they carry: {_choices(carried, 30)})",
        )
    if rule.aggregate in ("gap", "ratio"):
        tested = rule.test_mode != "point"
        if rule.aggregate == "ratio" and (tested or rule.judge != "point"):
            key = "test" if tested else "judge"
            raise error(key, "a detection run neither tests nor gives an interval of a ratio; set test: point")
        if not tested and rule.judge == "point":
            return
        how = f"test {rule.test_mode!r}" if tested else f"judge {rule.judge!r}"
        if metric not in TESTED_GAP_METRICS:
            raise error(
                "test" if tested else "judge",
                f"{how} of a gap of {metric!r} needs the run's gap test, which a detection run computes for "
                f"{', '.join(TESTED_GAP_METRICS)} only; set test: point to compare the estimate",
            )
        return  # the run stores every pair's test of these gaps (jackknife: no bootstrap needed)
    _validate_interval(rule, plan, error)


def _validate_interval(rule: MetricRule, plan: RunPlan, error) -> None:
    if rule.judge != "point" and rule.metric not in plan.intervals:
        have = sorted(plan.intervals)
        reason = (
            "the run computes no intervals (evaluation.n_bootstrap is 0)"
            if not have
            else f"intervals exist for {_choices(have)}"
        )
        raise error("judge", f"judge {rule.judge!r} needs an interval of {rule.metric!r}: {reason}")


def _validate_section(rule: MetricRule, plan: RunPlan, error) -> str | None:
    section = str(rule.section)
    if section == BREAKING_SECTION:
        return check_breaking_rule(rule, plan, error)
    other = section in CLASSIFICATION_KEYS if plan.task == "detection" else section == "detection"
    if other:
        raise error(
            "section",
            f"section {section!r} is not written by a {plan.task} run "
            f"({'a classification key' if plan.task == 'detection' else 'a detection run writes it'})",
        )
    if section not in plan.sections:
        if section in Results.model_fields and rule.optional:
            return f"section {section!r} is not written by this run (required: false)"
        have = sorted(plan.sections | {"conditions"})
        raise error("section", f"section {section!r} is not written by this run (sections: {_choices(have)})")
    benchmark = BENCHMARK_METRICS.get(f"{section}.{rule.metric}")
    if benchmark is not None and benchmark.task != plan.task:
        other = ", ".join(
            n for n, s in BENCHMARK_METRICS.items() if s.task == plan.task and n.startswith(f"{section}.")
        )
        raise error(
            "metric", f"{rule.metric!r} is a {benchmark.task} metric; a {plan.task} run's {section} has {other}"
        )
    if section == "slices":
        _check_watched_slice(rule, plan, error)
        _check_slice_metric(rule, plan, error)
    annotation = Results.model_fields[section].annotation if section in Results.model_fields else None
    model = _model(annotation)
    if rule.entry is not None and model is not None and not _holds_list(annotation):
        # 'entry' names keys of the section's model: the metric's path starts at the entry's field
        if is_glob(rule.entry) or rule.entry not in model.model_fields:
            return None  # matched against the stored results when judging
        annotation = model.model_fields[rule.entry].annotation
    for key in (part.split("[")[0] for part in rule.metric.split(".")):
        model = _model(annotation)
        if model is None or not key or key.isdigit():
            break  # a mapping, a list index or a value: the stored results decide
        if key not in model.model_fields:
            keys = _choices(sorted(model.model_fields), 30)
            raise error("metric", f"unknown metric {rule.metric!r} in section {section!r} (keys: {keys})")
        annotation = model.model_fields[key].annotation
    return None


def _check_watched_slice(rule: MetricRule, plan: RunPlan, error) -> None:
    """A ``section: slices`` rule names a watched slice of the config (``entry``: its id, or a glob matching one)."""
    have = sorted(plan.slices)
    if rule.entry is None:
        raise error(
            "entry", f"section 'slices' is a list; name the watched slice with 'entry' (watched: {_choices(have)})"
        )
    matched = (
        [s for s in have if fnmatchcase(s, rule.entry)] if is_glob(rule.entry) else [rule.entry] * (rule.entry in have)
    )
    if not matched:
        raise error(
            "entry",
            f"slice {rule.entry!r} is not watched by this run (config slices.watch ids: {_choices(have)})",
        )


def _check_slice_metric(rule: MetricRule, plan: RunPlan, error) -> None:
    """A ``section: slices`` rule's ``gap.<m>`` / ``metrics.<m>`` / ``rest.metrics.<m>`` names a metric the run's
    task measures on a watched slice (:data:`audit.contract.slices.WATCHED_METRICS`)."""
    parts = rule.metric.split(".")
    if parts[0] == "rest":
        parts = parts[1:]
    if len(parts) != 2 or parts[0] not in ("gap", "metrics"):
        return
    known = WATCHED_METRICS.get(plan.task, ())
    name = parts[1].removesuffix("_ci")
    if name not in known:
        names = ", ".join(f"{parts[0]}.{m}" for m in known)
        raise error("metric", f"a {plan.task} run's watched slice has no {rule.metric!r} (it measures {names})")


def _holds_list(annotation) -> bool:
    """Whether a field holds a list (possibly optional)."""
    return get_origin(annotation) is list or any(_holds_list(a) for a in get_args(annotation))


def _model(annotation) -> type[BaseModel] | None:
    """The model a field holds (or its list entries, or its optional value), or None for a plain value."""
    stack = [annotation]
    while stack:
        item = stack.pop()
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item
        stack.extend(get_args(item))
    return None


def _validate_finding_rule(rule: FindingRule, policy: Policy, plan: RunPlan, error) -> str | None:
    config = policy.governance
    governance = [c.name for c in governance_checks() if config is not None and c.is_configured(config)]
    if rule.section == "adversarial_checks":
        names = sorted(plan.checks)
    elif rule.section in (None, "governance"):
        names = sorted(set(governance) | (set(plan.checks) if rule.section is None else set()))
    else:
        raise error("section", f"finding rules read 'governance' or 'adversarial_checks', not {rule.section!r}")
    if any(fnmatchcase(n, rule.check) for n in names):
        return None
    if rule.optional:
        return f"no check {rule.check!r} in this run (required: false)"
    raise error("check", f"no check {rule.check!r} in the run (checks: {_choices(names)})")
