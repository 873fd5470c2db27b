"""Judge stored results against a policy: the ``policy`` section of results.json.

The engine reads the results dict exactly as stored (extra keys are
ignored) and never runs a model. Decisions written here once:

- A rule that cannot be judged (its condition, group or value is absent,
  the value is null/NaN, or ``n < min_samples``) is *insufficient data*;
  what that does to the verdict is the policy's (or the rule's)
  ``on_insufficient_data``: ``warn`` (default) reports ``insufficient_data``
  and does not fail; ``fail`` reports ``fail`` for a blocking rule (``warn``
  otherwise); ``pass`` reports ``pass`` with a note.
- A condition (or finding) absent from the results is an error
  (:class:`~policies.errors.PolicyError`) when the rule says
  ``required: true``. A selector whose stressor name (``stressor``, or
  ``condition`` before ``@``) matches no stressor in the results and no
  registered stressor, or a ``section`` absent from the results, is an error
  too (a typo such as ``nite``) unless the rule says ``required: false``
  explicitly; a registered stressor that was not run is insufficient data. A metric, interval, attribute or group value that
  exists nowhere in the results is always an error: it is a typo, not a
  missing measurement.
- A rule whose selector matches several targets (``night@*``, ``attribute:
  "*"``) fails if any target fails and reports the worst one.
- Gaps and ratios across groups are computed from the stored group metrics,
  leaving out groups flagged ``insufficient_data`` and groups below the
  rule's ``min_samples``; the ``fairness`` entry (``<metric>_gap``,
  ``<metric>_ratio``) is read when the groups do not carry the metric or an
  interval bound is judged.
- Governance findings are judged under *this* policy
  (:func:`policies.findings.judge_findings`): a stored finding's own
  status and ``blocking`` (from the policy of the original run) do not count.
- The verdict is ``fail`` iff a blocking rule has status ``fail`` or a
  governance check this policy configures as blocking has status ``fail``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from fnmatch import fnmatchcase
from typing import Any

from policies import targets as t
from policies.errors import PolicyError
from policies.evaluate import (
    Evaluation,
    check_names,
    condition_evaluations,
    section_evaluations,
)
from policies.findings import evaluate_finding_rule, finding_is_blocking, judge_findings
from policies.schema import MetricRule, Policy

_RANK = {"fail": 2, "insufficient_data": 1, "pass": 0}


def check_policy(
    results: dict[str, Any],
    policy: Policy,
    *,
    findings: list[dict[str, Any]] | None = None,
    known_stressors: Collection[str] = (),
) -> dict[str, Any]:
    """Judge results against a policy.

    Args:
        results: The results dict as stored in results.json.
        policy: From :func:`policies.load_policy`.
        findings: Governance findings (:func:`policies.check_governance`);
            default: ``results["governance"]["findings"]`` when present.
            Either way they are judged again under ``policy``
            (:func:`policies.findings.judge_findings`).
        known_stressors: stressor names that exist though they did not run
            (the caller passes the registry's names; policies never import
            the stressors): a rule naming one of them is insufficient data
            rather than a typo.

    Returns:
        ``{name, version, sha256, verdict, on_insufficient_data, counts,
        blocking_failures, rules: [{id, kind, status, blocking, observed,
        threshold, message, condition, group, clause, ...}]}``.

    Raises:
        PolicyError: a rule names a metric, interval, attribute or group
            that exists nowhere in the results, or a ``required`` condition
            or check is absent.
    """
    if findings is None:
        findings = list(((results.get("governance") or {}).get("findings")) or [])
    findings = judge_findings(findings, policy)
    rules = []
    for rule in policy.rules:
        if isinstance(rule, MetricRule):
            rules.append(_metric_rule(results, policy, rule, known_stressors))
        else:
            rules.append(evaluate_finding_rule(results, policy, rule, findings))
    blocking_failures = [r["id"] for r in rules if r["status"] == "fail"]
    blocking_failures += [
        f"governance.{f.get('check')}" for f in findings if f.get("status") == "fail" and finding_is_blocking(f, policy)
    ]
    return {
        "name": policy.name,
        "version": policy.version,
        "sha256": policy.sha256,
        "verdict": "fail" if blocking_failures else "pass",
        "on_insufficient_data": policy.on_insufficient_data,
        "counts": dict(Counter(r["status"] for r in rules)),
        "blocking_failures": blocking_failures,
        "rules": rules,
    }


def _metric_rule(
    results: dict[str, Any], policy: Policy, rule: MetricRule, known_stressors: Collection[str]
) -> dict[str, Any]:
    def error(key: str, problem: str) -> PolicyError:
        return PolicyError(problem, file=policy.source, rule_id=rule.id, key=key)

    if rule.section is not None:
        evaluations = section_evaluations(results, rule, error)
    else:
        check_names(results, rule, error)
        conditions = t.select_conditions(
            results, condition=rule.condition, stressor=rule.stressor, severity=rule.severity
        )
        if not conditions:
            selector = rule.condition or f"{rule.stressor}@{rule.severity if rule.severity is not None else '*'}"
            if rule.required:
                have = ", ".join(t.condition_ids(results)) or "none"
                raise error(
                    "condition",
                    f"required condition {selector!r} is not in the results (have: {have})",
                )
            _check_stressor_known(results, rule, error, known_stressors)
            evaluations = [Evaluation("insufficient_data", None, note=f"no condition {selector!r} in the results")]
        else:
            evaluations = [e for cond in conditions for e in condition_evaluations(results, cond, rule)]
            if not evaluations:
                evaluations = [
                    Evaluation(
                        "insufficient_data",
                        None,
                        note=f"no groups for attribute {rule.attribute!r}",
                    )
                ]
    return _rule_result(policy, rule, evaluations)


def _check_stressor_known(
    results: dict[str, Any], rule: MetricRule, error: Any, known_stressors: Collection[str]
) -> None:
    """A selector that matched nothing: a typo unless it names a known stressor.

    Its stressor name (``stressor``, or the part of ``condition`` before
    ``@``) may be a glob. When it matches a stressor or condition in the
    results (another severity of it ran) or a registered stressor (it could
    have run), the rule is ``insufficient_data``; otherwise it is an error,
    unless the rule says ``required: false`` explicitly.
    """
    if "required" in rule.model_fields_set:
        return
    name = rule.stressor if rule.stressor is not None else str(rule.condition).split("@")[0]
    present = {
        str(c.get("stressor")) for c in results.get("conditions") or [] if isinstance(c, dict) and c.get("stressor")
    }
    present |= {cid.split("@")[0] for cid in t.condition_ids(results)}
    if name == "clean" or any(fnmatchcase(p, name) for p in present):
        return
    registered = sorted(known_stressors)
    if any(fnmatchcase(r, name) for r in registered):
        return
    key = "stressor" if rule.stressor is not None else "condition"
    raise error(
        key,
        f"unknown stressor {name!r}: neither registered ({', '.join(registered) or 'none'}) "
        f"nor in the results ({', '.join(sorted(present)) or 'none'}); "
        "set 'required: false' to allow it",
    )


def _decisive(rule: MetricRule, evaluations: list[Evaluation]) -> Evaluation:
    worst_rank = max(_RANK[e.status] for e in evaluations)
    candidates = [e for e in evaluations if _RANK[e.status] == worst_rank]
    judged = [e for e in candidates if e.observed is not None]
    if worst_rank == 1 or not judged:
        return candidates[0]
    return (min if rule.op == "min" else max)(judged, key=lambda e: e.observed)  # type: ignore[arg-type,return-value]


def _rule_result(policy: Policy, rule: MetricRule, evaluations: list[Evaluation]) -> dict[str, Any]:
    pick = _decisive(rule, evaluations)
    judge = "" if rule.judge == "point" else f" ({rule.judge})"
    where = " / ".join(x for x in (pick.condition, pick.group) if x)
    what = f"{rule.aggregate} of " if rule.aggregate in ("gap", "ratio") else ""
    subject = f"{what}{rule.metric}{judge}" + (f" on {where}" if where else "")
    multi = f" [worst of {len(evaluations)} targets]" if len(evaluations) > 1 else ""
    note = f" ({pick.note})" if pick.note else ""
    cmp_ok, cmp_bad = (">=", "<") if rule.op == "min" else ("<=", ">")
    if pick.status == "insufficient_data":
        mode = rule.on_insufficient_data or policy.on_insufficient_data
        status = {"warn": "insufficient_data", "pass": "pass"}.get(mode, "fail" if rule.blocking else "warn")
        message = f"insufficient data for {subject}: {pick.note}{multi}; on_insufficient_data={mode}"
    elif pick.status == "fail":
        status = "fail" if rule.blocking else "warn"
        message = f"{subject} = {pick.observed:.4g} {cmp_bad} {rule.op} {rule.threshold:g}{note}{multi}"
    else:
        status = "pass"
        message = f"{subject} = {pick.observed:.4g} {cmp_ok} {rule.op} {rule.threshold:g}{note}{multi}"
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
            }
            for e in evaluations
        ]
    return result
