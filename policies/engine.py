"""Judge stored results against a policy: the ``policy`` section of results.json.

The engine reads the typed results (:class:`~audit.contract.results.Results`, as the
one reader returns them) and never runs a model.
Decisions written here once:

- Every rule is first validated against what the run produced
  (:func:`policies.validate.validate_policy`): a rule that can never match
  (an unknown stressor, severity, attribute, value, metric or check, or an
  interval the run does not compute) is a :class:`~policies.errors.PolicyError`,
  never a silent non-match.
- A rule whose target is absent and that says ``required: false`` is
  ``not_applicable``: it neither passes nor fails the verdict. Which rules
  those are is decided once, by :func:`~policies.validate.validate_policy`,
  whatever the spelling of the target (``condition: night@2`` or ``stressor:
  night, severity: 2``; an ``attribute`` glob in a run without attributes; an
  absent section or check). A policy none of whose blocking rules applies is
  refused there (its gate would pass on nothing).
- A rule that cannot be judged (its group is too small, the value is null,
  ``n < min_samples``) is *insufficient data*; what that does is
  ``on_insufficient_data`` of the rule, else of the policy: ``fail`` (the
  default: fail closed) reports ``fail`` for a blocking rule and ``warn`` for a
  non-blocking one; ``warn`` reports ``insufficient_data``; ``pass`` reports
  ``pass`` with a note.
- A ``detect`` difference rule whose test showed no violation but had less than
  80 % power against its alternative (a true gap of 2τ, a true ratio of 2ρ - 1;
  :mod:`audit.contract.power`) is *insufficient evidence*: untestable, it follows
  ``on_insufficient_data`` as insufficient data does, and its message starts with
  "insufficient evidence" (a measured failure never does). Every detect result
  records ``power``, ``power_against`` and ``samples_needed`` (the samples per
  group from which the power stays at 80 %).
- A glob selector (``night@*``, ``attribute: "*"``) fails if any target fails
  and reports the worst one; it never selects an attack sanity probe
  (``probe: true``), which a rule must name explicitly.
- Gaps, ratios, equalized odds and demographic parity are read from the
  evaluator's ``fairness`` entries; a rule raising ``min_samples`` above
  ``evaluation.min_group_size`` (or setting ``min_positives``) gets them from the
  same definition (:func:`audit.contract.groupstats.fairness_summary`) over the
  stored groups. Such a rule is decided by a test (``test: detect`` by default,
  ``demonstrate`` on request; :mod:`policies.differences`), corrected across
  every pair of every target; its result carries the p-value, the minimum
  detectable gap and whether the data can test it at all.
- A target decided early by an anytime-valid test (``evaluation.early_stop``)
  says so in its message and ``decided_early``.
- Detection results (``task: detection``) are judged by the same rules on their own targets
  (:mod:`policies.detection`): conditions, image- and object-level groups, gaps decided by the
  stored interval of the gap, ``section: detection`` for robustness (mPC, rPC), and
  ``section: detection.breaking_points`` for the per-object breaking points.
- Governance findings are judged under *this* policy
  (:func:`policies.findings.judge_findings`).
- The verdict is ``fail`` iff a blocking rule has status ``fail`` or a
  governance check this policy configures as blocking has status ``fail``;
  ``failures`` names each of them with its observed value and threshold.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from audit.contract.load import parse_results
from audit.contract.plan import RunPlan
from audit.contract.results import GovernanceFinding, Results
from policies import targets as t
from policies.detection import BREAKING_SECTION, breaking_point_evaluations, detection_evaluations
from policies.differences import decide_differences, describe, with_samples_needed
from policies.errors import PolicyError
from policies.evaluate import (
    Evaluation,
    check_names,
    condition_evaluations,
    section_evaluations,
)
from policies.findings import evaluate_finding_rule, finding_is_blocking, judge_findings
from policies.schema import MetricRule, Policy
from policies.validate import validate_policy

_RANK = {"fail": 2, "insufficient_data": 1, "pass": 0, "not_applicable": -1}


def check_policy(
    results: Results | Mapping[str, Any],
    policy: Policy,
    *,
    findings: list[dict[str, Any]] | list[GovernanceFinding] | None = None,
    plan: RunPlan | None = None,
) -> dict[str, Any]:
    """Judge results against a policy.

    Args:
        results: The results (:func:`audit.contract.load_results`); a mapping is read
            through the one reader first (:func:`audit.contract.parse_results`), so it must
            be valid results (the ``policy`` key may be absent).
        policy: From :func:`policies.load_policy`.
        findings: Governance findings (:func:`policies.check_governance`);
            default: the results' ``governance.findings``.
            Either way they are judged again under ``policy``
            (:func:`policies.findings.judge_findings`).
        plan: what the run produced; default: read from ``results``
            (:meth:`~audit.contract.plan.RunPlan.from_results`). Every rule is
            validated against it first (:func:`policies.validate.validate_policy`).

    Returns:
        ``{name, version, sha256, verdict, [report_only,] on_insufficient_data, counts,
        governance_counts, blocking_failures, failures, rules: [{id, kind,
        status, blocking, observed, threshold, message, condition, group,
        clause, ...}]}``.

    Raises:
        PolicyError: a rule can never match what the run produced (see
            :func:`policies.validate.validate_policy`).
        ResultsError: ``results`` is a mapping that is not valid results.
    """
    if not isinstance(results, Results):
        results = parse_results(dict(results), source="results")
    inapplicable = validate_policy(policy, plan if plan is not None else RunPlan.from_results(results))
    findings = judge_findings(results.governance.findings if findings is None else findings, policy)
    rules = []
    for rule in policy.rules:
        if rule.id in inapplicable and isinstance(rule, MetricRule):
            rules.append(_rule_result(policy, rule, [Evaluation("not_applicable", None, note=inapplicable[rule.id])]))
        elif isinstance(rule, MetricRule):
            rules.append(_metric_rule(results, policy, rule))
        else:
            rules.append(evaluate_finding_rule(results, policy, rule, findings))
    _refuse_a_gate_on_nothing(policy, rules, findings)
    failures = [
        {
            "id": r["id"],
            "kind": "rule",
            "observed": r.get("observed"),
            "threshold": r.get("threshold"),
            "op": r.get("op"),
            "message": r["message"],
        }
        for r in rules
        if r["status"] == "fail"
    ]
    failures += [
        {
            "id": f"governance.{f.get('check')}",
            "kind": "governance",
            "observed": f.get("count"),
            "threshold": 0,
            "op": "max",
            "message": str(f.get("message", "")),
        }
        for f in findings
        if f.get("status") == "fail" and finding_is_blocking(f, policy)
    ]
    return {
        "name": policy.name,
        "version": policy.version,
        "sha256": policy.sha256,
        "verdict": "fail" if failures else "pass",
        **({"report_only": True} if policy.report_only else {}),
        "on_insufficient_data": policy.on_insufficient_data,
        "counts": dict(Counter(r["status"] for r in rules)),
        "governance_counts": dict(Counter(str(f.get("status")) for f in findings)),
        "blocking_failures": [f["id"] for f in failures],
        "failures": failures,
        "rules": rules,
    }


def _judged(rule: dict[str, Any]) -> bool:
    """Whether a rule result rests on at least one target actually measured (pass or fail), not only on
    targets without enough data (which ``on_insufficient_data: warn`` or ``pass`` may let through)."""
    evaluations = [e for e in rule.get("evaluations") or [] if isinstance(e, dict)]
    if evaluations:
        return any(e.get("status") in ("pass", "fail") for e in evaluations)
    # one target: its own status, unless _rule_result turned "insufficient data" into a pass
    message = str(rule.get("message", ""))
    return rule.get("status") in ("pass", "fail") and not message.startswith(
        ("insufficient data", "insufficient evidence")
    )


def _refuse_a_gate_on_nothing(policy: Policy, rules: list[dict[str, Any]], findings: list[dict[str, Any]]) -> None:
    """Fail closed after judging too: a gate none of whose blocking rules and checks judged anything passes on
    nothing. A target found absent only in the results (a section entry) may leave every blocking rule not
    applicable, which :func:`validate_policy` could not see; and every blocking rule and check may lack the
    data to be judged while ``on_insufficient_data`` lets that pass (``warn``, ``pass``)."""
    blocking = [r for r in rules if r["blocking"]]
    checks = [f for f in findings if finding_is_blocking(f, policy)]
    if policy.report_only or any(x.get("status") == "fail" for x in blocking + checks):
        return  # a report-only policy gates nothing; a failed blocking rule or check fails the verdict anyway
    if any(_judged(r) for r in blocking):
        return
    if any(f.get("judgeable") is not False and f.get("status") in ("pass", "fail") for f in checks):
        return
    why = "; ".join(
        [f"{r['id']}: {r['message']}" for r in blocking]
        + [f"governance.{f.get('check')}: {f.get('message', '')}" for f in checks]
    )
    raise PolicyError(
        f"no blocking rule or check could be judged on these results, so the gate would pass on nothing ({why})",
        file=policy.source,
        key="rules",
    )


def _metric_rule(results: Results, policy: Policy, rule: MetricRule) -> dict[str, Any]:
    def error(key: str, problem: str) -> PolicyError:
        return PolicyError(problem, file=policy.source, rule_id=rule.id, key=key)

    if rule.section == BREAKING_SECTION:  # per-object breaking points of a detector
        evaluations = breaking_point_evaluations(results, rule, error)
    elif rule.section is not None:
        evaluations = section_evaluations(results, rule, error)
    elif results.task == "detection":
        evaluations = detection_evaluations(results, rule, error)
    else:
        check_names(results, rule, error)
        conditions = t.select_conditions(results, rule.selector)
        if not conditions:  # validate_policy found them in the plan: results and plan disagree
            raise error("condition", f"{rule.selector!r} matches no condition stored in the results")
        evaluations = [e for cond in conditions for e in condition_evaluations(results, cond, rule)]
        if not evaluations:
            evaluations = [Evaluation("insufficient_data", None, note=f"no groups for attribute {rule.attribute!r}")]
        elif rule.test_mode != "point":
            evaluations = decide_differences(results, rule, evaluations)
    return _rule_result(policy, rule, evaluations, _early_decisions(results, rule))


def _early_decisions(results: Results, rule: MetricRule) -> dict[tuple[str, str | None], int]:
    """(condition, group) -> samples after which an anytime-valid test decided this rule (early stop)."""
    out: dict[tuple[str, str | None], int] = {}
    for cond in results.conditions or []:  # detection results have no classification conditions
        for d in cond.early_stop.decisions if cond.early_stop is not None else []:
            if d.rule == rule.id:
                out[(cond.id, d.group)] = int(d.n or 0)
    return out


def _decisive(rule: MetricRule, evaluations: list[Evaluation]) -> Evaluation:
    worst_rank = max(_RANK[e.status] for e in evaluations)
    candidates = [e for e in evaluations if _RANK[e.status] == worst_rank]
    judged = [e for e in candidates if e.observed is not None]
    if worst_rank == 1 or not judged:
        return candidates[0]
    tested = [e for e in judged if e.p_value is not None]
    if tested:  # the target closest to the other outcome: detect, the smallest p; demonstrate, the largest
        pick = min if rule.test_mode == "detect" else max
        return pick(tested, key=lambda e: e.p_value)  # type: ignore[arg-type,return-value]
    return (min if rule.op == "min" else max)(judged, key=lambda e: e.observed)  # type: ignore[arg-type,return-value]


def _rule_result(
    policy: Policy,
    rule: MetricRule,
    evaluations: list[Evaluation],
    early: dict[tuple[str, str | None], int] | None = None,
) -> dict[str, Any]:
    pick = with_samples_needed(rule, _decisive(rule, evaluations))
    evidence = pick.power is not None and pick.status == "insufficient_data"  # untestable: no power to tell
    judge = "" if rule.judge == "point" else f" ({rule.judge})"
    where = " / ".join(x for x in (pick.condition, pick.group) if x)
    what = f"{rule.aggregate} of " if rule.aggregate in ("gap", "ratio") else ""
    subject = f"{what}{rule.metric}{judge}" + (f" on {where}" if where else "")
    multi = f" [worst of {len(evaluations)} targets]" if len(evaluations) > 1 else ""
    note = f" ({pick.note})" if pick.note else ""
    cmp_ok, cmp_bad = (">=", "<") if rule.op == "min" else ("<=", ">")
    if pick.status == "not_applicable":
        status = "not_applicable"
        message = f"not applicable: {pick.note}"
    elif pick.status == "insufficient_data":
        mode = rule.on_insufficient_data or policy.on_insufficient_data
        status = {"warn": "insufficient_data", "pass": "pass"}.get(mode, "fail" if rule.blocking else "warn")
        if evidence:  # the test ran and showed nothing, with too little power to have shown a violation
            message = (
                f"insufficient evidence for {subject} = {pick.observed:.4g}: {describe(rule, pick)}{note}{multi}; "
                f"on_insufficient_data={mode}"
            )
        else:
            message = f"insufficient data for {subject}: {pick.note}{multi}; on_insufficient_data={mode}"
    elif pick.decided_by is not None:
        status = ("fail" if rule.blocking else "warn") if pick.status == "fail" else "pass"
        message = f"{subject} = {pick.observed:.4g}: {pick.decided_by}{note}{multi}"
    elif pick.test is not None:
        status = ("fail" if rule.blocking else "warn") if pick.status == "fail" else "pass"
        message = f"{subject} = {pick.observed:.4g}: {describe(rule, pick)}{note}{multi}"
    elif pick.status == "fail":
        status = "fail" if rule.blocking else "warn"
        message = f"{subject} = {pick.observed:.4g} {cmp_bad} {rule.op} {rule.threshold:g}{note}{multi}"
    else:
        status = "pass"
        message = f"{subject} = {pick.observed:.4g} {cmp_ok} {rule.op} {rule.threshold:g}{note}{multi}"
    decided_early = (early or {}).get((str(pick.condition), pick.group))
    if decided_early is not None and pick.status in ("pass", "fail"):
        message += f" (decided after {decided_early} samples by an anytime-valid test; early stop)"
    result: dict[str, Any] = {
        "id": rule.id,
        "kind": "metric",
        "status": status,
        "blocking": rule.blocking,
        "observed": pick.observed,
        "threshold": rule.threshold,
        "op": rule.op,
        "metric": rule.metric,
        "judge": rule.judge,
        "aggregate": rule.aggregate,
        "test": rule.test_mode if rule.difference is not None else None,
        "confidence": rule.confidence if rule.test_mode != "point" else None,
        "p_value": pick.p_value,
        "min_detectable": pick.min_detectable,
        "testable": pick.test.testable if pick.test is not None else None,
        "samples_needed": pick.test.samples_needed if pick.test is not None else None,
        "power": pick.power.power if pick.power is not None else None,
        "power_against": pick.power.against if pick.power is not None else None,
        "insufficient_evidence": evidence if pick.power is not None else None,
        "decided_early": decided_early,
        "condition": pick.condition,
        "group": pick.group,
        "n": pick.n,
        "clause": rule.clause,
        "description": rule.description,
        "message": message,
    }
    if len(evaluations) > 1:
        result["evaluations"] = [
            {
                "condition": e.condition,
                "group": e.group,
                "observed": e.observed,
                "n": e.n,
                "status": e.status,
                **({"p_value": e.p_value} if e.p_value is not None else {}),
                **({"min_detectable": e.min_detectable} if e.min_detectable is not None else {}),
                **({"power": e.power.power} if e.power is not None else {}),
            }
            for e in evaluations
        ]
    return result
