"""``kind: finding`` rules: judge named checks (governance findings, adversarial sanity checks)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from policies.errors import PolicyError
from policies.governance import CHECK_SECTIONS
from policies.schema import FindingRule, Policy
from policies.targets import entry_name


def finding_is_blocking(finding: dict[str, Any], policy: Policy) -> bool:
    """Whether a governance finding can fail the verdict.

    The finding's own ``blocking`` flag wins; otherwise the policy's
    configuration of that check decides; an unknown check blocks.
    """
    if isinstance(finding.get("blocking"), bool):
        return finding["blocking"]
    section = CHECK_SECTIONS.get(str(finding.get("check")))
    settings = getattr(policy.governance, section, None) if policy.governance and section else None
    return bool(getattr(settings, "blocking", True))


def _entries(
    results: dict[str, Any], rule: FindingRule, findings: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    if rule.section is not None:
        node = results.get(rule.section)
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
    entries = _entries(results, rule, findings)
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
        status = {"warn": "insufficient_data", "pass": "pass"}.get(
            mode, "fail" if rule.blocking else "warn"
        )
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
