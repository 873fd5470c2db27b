"""``kind: finding`` rules: judge named checks (governance findings, adversarial sanity checks)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from policies.errors import PolicyError
from policies.governance import CHECK_SECTIONS, check_blocking, check_is_configured
from policies.schema import FindingRule, Policy
from policies.targets import entry_name


def judge_findings(findings: list[dict[str, Any]], policy: Policy) -> list[dict[str, Any]]:
    """Judge governance findings again under ``policy`` (the policy applied now).

    Stored findings carry the status and ``blocking`` of the policy they were
    computed with; only their ``count`` (and sample ids) are facts. So:

    - a check the policy configures: ``fail`` when ``count > 0`` and it
      blocks, ``warn`` when ``count > 0`` and it does not, ``pass`` when
      ``count == 0`` (a stored ``warn`` with ``count == 0`` -- "cannot tell",
      e.g. the biometric column is absent -- stays ``warn``);
    - a check the policy does not configure: kept as ``informational``
      (``warn`` or ``pass``, ``blocking: false``): it never fails the verdict,
      but ``kind: finding`` rules can still judge it;
    - a check the policy configures that is not among the findings:
      ``insufficient_data`` (a note says to pass ``--manifest``), turned into
      ``fail``/``warn``/``pass`` by ``on_insufficient_data`` like a rule.

    Findings just computed by :func:`policies.check_governance` with the same
    policy come out unchanged.
    """
    config = policy.governance
    judged: list[dict[str, Any]] = []
    seen: set[str] = set()
    for finding in findings:
        if not isinstance(finding, dict):
            continue
        check = str(finding.get("check"))
        count = finding.get("count")
        count = count if isinstance(count, int) and not isinstance(count, bool) else None
        if not check_is_configured(config, check):
            judged.append(
                {
                    **finding,
                    "status": ("warn" if (count or 0) > 0 or finding.get("status") == "warn" else "pass"),
                    "blocking": False,
                    "informational": True,
                }
            )
            continue
        seen.add(check)
        blocking = check_blocking(config, check)  # type: ignore[arg-type]
        if count is None:  # no count stored: keep the outcome, re-derive only blocking
            stored = finding.get("status")
            if stored in ("fail", "warn"):
                status = "fail" if blocking else "warn"
            else:
                status = stored if stored in ("pass", "insufficient_data") else "insufficient_data"
        elif count > 0:
            status = "fail" if blocking else "warn"
        else:
            status = "warn" if finding.get("status") == "warn" else "pass"
        entry = {**finding, "status": status, "blocking": blocking}
        entry.pop("informational", None)
        judged.append(entry)
    for check in CHECK_SECTIONS:
        if check in seen or not check_is_configured(config, check):
            continue
        blocking = check_blocking(config, check)  # type: ignore[arg-type]
        mode = policy.on_insufficient_data
        status = {"warn": "insufficient_data", "pass": "pass"}.get(mode, "fail" if blocking else "warn")
        judged.append(
            {
                "check": check,
                "status": status,
                "blocking": blocking,
                "count": None,
                "total": None,
                "sample_ids": [],
                "message": (
                    "insufficient data: not among the stored findings; pass --manifest to "
                    f"run this check; on_insufficient_data={mode}"
                ),
            }
        )
    return judged


def finding_is_blocking(finding: dict[str, Any], policy: Policy) -> bool:
    """Whether a governance finding (as judged by :func:`judge_findings`) can fail the verdict:
    only a check the policy configures as blocking."""
    check = str(finding.get("check"))
    if not check_is_configured(policy.governance, check):
        return False
    return check_blocking(policy.governance, check)  # type: ignore[arg-type]


def _entries(
    results: dict[str, Any], policy: Policy, rule: FindingRule, findings: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    if rule.section is not None:
        node = results.get(rule.section)
        if rule.section not in results and "required" not in rule.model_fields_set:
            have = ", ".join(sorted(str(k) for k in results)) or "none"
            raise PolicyError(
                f"section {rule.section!r} is not in the results (have: {have}); "
                "set 'required: false' if it may be absent",
                file=policy.source,
                rule_id=rule.id,
                key="section",
            )
        if isinstance(node, dict):
            node = node.get("findings") or node.get("checks")
        return [e for e in node or [] if isinstance(e, dict)]
    stored = results.get("adversarial_checks") or []
    return [e for e in list(findings) + list(stored) if isinstance(e, dict)]


def evaluate_finding_rule(
    results: dict[str, Any], policy: Policy, rule: FindingRule, findings: list[dict[str, Any]]
) -> dict[str, Any]:
    """Judge a ``kind: finding`` rule.

    The rule fails when any matching check has a status in ``fail_on``
    (``warn`` when the rule is not blocking); a matching check with status
    ``warn`` that is not in ``fail_on`` gives ``warn``; no matching check
    gives ``insufficient_data`` (or a :class:`PolicyError` when ``required``).

    Returns:
        The rule result dict (same keys as a metric rule).
    """
    entries = _entries(results, policy, rule, findings)
    matched = [e for e in entries if fnmatchcase(entry_name(e) or "", rule.check)]
    if not matched and rule.required:
        have = ", ".join(sorted({entry_name(e) or "?" for e in entries})) or "none"
        raise PolicyError(
            f"required check {rule.check!r} is not in the results (have: {have})",
            file=policy.source,
            rule_id=rule.id,
            key="check",
        )
    bad = [e for e in matched if e.get("status") in rule.fail_on]
    warned = [e for e in matched if e.get("status") == "warn"]
    passed = [e for e in matched if e.get("status") == "pass"]
    if bad:
        status, pick = ("fail" if rule.blocking else "warn"), bad[0]
    elif warned:
        status, pick = "warn", warned[0]
    elif matched and len(passed) == len(matched):
        status, pick = "pass", passed[0]
    else:
        status, pick = None, (matched[0] if matched else None)
    if status is None:
        mode = policy.on_insufficient_data
        status = {"warn": "insufficient_data", "pass": "pass"}.get(mode, "fail" if rule.blocking else "warn")
        what = (
            f"check {rule.check!r} has no pass/warn/fail status"
            if matched
            else f"no check {rule.check!r} in the results"
        )
        message = f"insufficient data: {what}; on_insufficient_data={mode}"
    else:
        name = entry_name(pick) if pick else rule.check
        detail = f": {pick.get('message')}" if pick and pick.get("message") else ""
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        message = f"check {name} is {pick.get('status') if pick else '?'}{detail}{more}"
    return {
        "id": rule.id,
        "kind": "finding",
        "status": status,
        "blocking": rule.blocking,
        "observed": pick.get("status") if pick else None,
        "threshold": f"status not in {{{', '.join(rule.fail_on)}}}",
        "check": entry_name(pick) if pick else rule.check,
        "condition": (pick.get("condition") or pick.get("attack")) if pick else None,
        "group": None,
        "count": pick.get("count") if pick else None,
        "clause": rule.clause,
        "description": rule.description,
        "message": message,
    }
