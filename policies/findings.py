"""``kind: finding`` rules: judge named checks (governance findings, adversarial sanity checks)."""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from audit.contract.results import GovernanceFinding, Results
from policies.errors import PolicyError
from policies.governance import check_blocking, check_is_configured, get_check, governance_checks
from policies.schema import FindingRule, Policy
from policies.targets import MISSING, entry_name, field, get, is_node, keys


def _unjudged_status(policy: Policy, blocking: bool) -> str:
    """What a check that cannot be judged becomes under the policy's ``on_insufficient_data``."""
    mode = policy.on_insufficient_data
    return {"warn": "insufficient_data", "pass": "pass"}.get(mode, "fail" if blocking else "warn")


def judge_findings(
    findings: Iterable[dict[str, Any] | GovernanceFinding], policy: Policy, *, computed_by: str | None = None
) -> list[dict[str, Any]]:
    """Judge governance findings under ``policy`` (the policy applied now).

    A stored finding's count is a fact only for the settings it was counted
    with (its ``settings``); its status and ``blocking`` belong to the policy of
    the original run. So, per check:

    - a check this policy does not configure is kept as ``informational``
      (``warn`` or ``pass``, ``blocking: false``): it never fails the verdict,
      but ``kind: finding`` rules can still judge it;
    - a configured check whose stored ``settings`` differ from this policy's
      (another retention period, region list, date format ...) is *not
      re-judged*: its old count is dropped and it is unjudgeable (pass
      ``--manifest`` to count again);
    - a configured check that could not be judged (a column absent), or that is
      not stored at all, is unjudgeable;
    - otherwise: ``fail`` when ``count > 0`` and the check blocks, ``warn`` when
      it does not, ``pass`` when ``count == 0``.

    An unjudgeable check becomes what the policy's ``on_insufficient_data``
    says: ``fail`` (blocking) or ``warn`` under ``fail``, ``insufficient_data``
    under ``warn``, ``pass`` under ``pass``. Findings just computed by
    :func:`policies.check_governance` with the same policy are judged as counted.

    Args:
        findings: stored findings (``results.governance.findings``) or freshly computed ones
            (:func:`policies.check_governance`); the judged findings are new entries of the
            ``governance.findings`` shape.
        policy: the judging policy.
        computed_by: the policy that counted the stored findings, named in messages.
    """
    config = policy.governance
    origin = f"counted under policy {computed_by}" if computed_by else "counted by the run"
    judged: list[dict[str, Any]] = []
    seen: set[str] = set()
    for finding in findings:
        if isinstance(finding, GovernanceFinding):  # judged into a new entry: start from the keys it carries
            finding = finding.model_dump(mode="json", exclude_unset=True)
        if not isinstance(finding, dict):
            continue
        name = str(finding.get("check"))
        count = finding.get("count")
        count = count if isinstance(count, int) and not isinstance(count, bool) else None
        check = get_check(name)
        if config is None or check is None or not check.is_configured(config):
            judged.append(
                {
                    **finding,
                    "status": "warn" if (count or 0) > 0 or finding.get("status") in ("warn", "fail") else "pass",
                    "blocking": False,
                    "informational": True,
                }
            )
            continue
        seen.add(name)
        blocking = check.is_blocking(config)
        entry = {**finding, "blocking": blocking}
        entry.pop("informational", None)
        now_settings = check.settings(config)
        stored_settings = finding.get("settings")
        if stored_settings is not None and stored_settings != now_settings:
            differ = sorted(
                k for k in set(now_settings) | set(stored_settings) if now_settings.get(k) != stored_settings.get(k)
            )
            shown = "; ".join(f"{k}: {stored_settings.get(k)!r} then, {now_settings.get(k)!r} now" for k in differ)
            entry.update(
                status=_unjudged_status(policy, blocking),
                judgeable=False,
                count=None,
                sample_ids=[],
                settings=now_settings,
                message=f"not re-judged: {origin} with other settings ({shown}); pass --manifest to count again",
            )
        elif count is None or finding.get("judgeable") is False:
            entry.update(status=_unjudged_status(policy, blocking), judgeable=False)
            if finding.get("judgeable") is not False:  # first judgement: say why
                reason = finding.get("message") or "no count stored"
                entry["message"] = f"cannot be judged: {reason}"
        else:
            entry["status"] = (
                ("fail" if blocking else "warn")
                if count > 0
                else ("warn" if finding.get("status") == "warn" else "pass")
            )
            if computed_by and stored_settings is not None:
                entry["message"] = f"{finding.get('message', '')} ({origin})"
        judged.append(entry)
    for check in governance_checks():
        if check.name in seen or config is None or not check.is_configured(config):
            continue
        blocking = check.is_blocking(config)
        judged.append(
            {
                "check": check.name,
                "status": _unjudged_status(policy, blocking),
                "blocking": blocking,
                "count": None,
                "total": None,
                "sample_ids": [],
                "settings": check.settings(config),
                "judgeable": False,
                "message": (
                    "not among the stored findings: pass --manifest to run this check; "
                    f"on_insufficient_data={policy.on_insufficient_data}"
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


def _entries(results: Results, policy: Policy, rule: FindingRule, findings: list[dict[str, Any]]) -> list[Any]:
    """The checks a finding rule looks among: the entries of its section, else the governance findings and
    the adversarial sanity checks."""
    if rule.section is not None:
        node = get(results, rule.section)
        if field(results, rule.section) is MISSING and "required" not in rule.model_fields_set:
            have = ", ".join(sorted(keys(results))) or "none"
            raise PolicyError(
                f"section {rule.section!r} is not in the results (have: {have}); "
                "set 'required: false' if it may be absent",
                file=policy.source,
                rule_id=rule.id,
                key="section",
            )
        if is_node(node):
            node = get(node, "findings") or get(node, "checks")
        return [e for e in node or [] if is_node(e)]
    return [*findings, *(results.adversarial_checks or [])]


def evaluate_finding_rule(
    results: Results, policy: Policy, rule: FindingRule, findings: list[dict[str, Any]]
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
    bad = [e for e in matched if get(e, "status") in rule.fail_on]
    warned = [e for e in matched if get(e, "status") == "warn"]
    passed = [e for e in matched if get(e, "status") == "pass"]
    if bad:
        status, pick = ("fail" if rule.blocking else "warn"), bad[0]
    elif warned:
        status, pick = "warn", warned[0]
    elif matched and len(passed) == len(matched):
        status, pick = "pass", passed[0]
    else:
        status, pick = None, (matched[0] if matched else None)
    if status is None and not matched and rule.optional:
        status, message = "not_applicable", f"not applicable: no check {rule.check!r} in this run (required: false)"
    elif status is None:
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
        detail = f": {get(pick, 'message')}" if pick and get(pick, "message") else ""
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        message = f"check {name} is {get(pick, 'status') if pick else '?'}{detail}{more}"
    return {
        "id": rule.id,
        "kind": "finding",
        "status": status,
        "blocking": rule.blocking,
        "observed": get(pick, "status") if pick else None,
        "threshold": f"status not in {{{', '.join(rule.fail_on)}}}",
        "check": entry_name(pick) if pick else rule.check,
        "condition": (get(pick, "condition") or get(pick, "attack")) if pick else None,
        "group": None,
        "count": get(pick, "count") if pick else None,
        "clause": rule.clause,
        "description": rule.description,
        "message": message,
    }
