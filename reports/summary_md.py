"""A Markdown summary of results.json for a GitHub job summary or a PR comment."""

from __future__ import annotations

from typing import Any

from audit.contract.results import FairnessEntry, GovernanceFinding, Results, RuleResult
from audit.contract.text import markdown_text
from reports.rule_words import rule_in_words

_STATUS = {
    "fail": "❌ fail",
    "warn": "⚠️ warn",
    "insufficient_data": "❔ insufficient data",
    "pass": "✅ pass",
}
#: A governance check that could not be judged (a column absent, other settings): not a finding.
_UNJUDGED = "❔ cannot be judged"
_TOP_GAPS = 5


def render_markdown_summary(results: Results) -> str:
    """Render the verdict, failed/warned rules, governance findings and worst fairness gaps.

    Every user-supplied string is escaped (:func:`audit.contract.text.markdown_text`: pipes, angle
    brackets, Markdown markup, control and bidi characters) and flattened to one line, so it cannot break a table or inject HTML.

    Args:
        results: The results (:func:`audit.contract.load_results`), judged (with a ``policy``).

    Returns:
        Markdown text ending with a newline.
    """
    policy = results.policy
    verdict = policy.verdict if policy is not None else "unknown"
    icon = {"pass": "✅", "fail": "❌"}.get(verdict, "❔")
    word = verdict.upper()
    if policy is not None and policy.report_only:  # a policy that gates nothing: never shown as a gate's PASS
        icon, word = "ℹ️", "REPORT ONLY (no blocking rule: nothing gated)"
    lines = [
        f"## {icon} cvaudit: {_cell(word)} (policy {_cell(policy.name if policy is not None else '?')})",
        "",
    ]
    lines += _provenance(results)
    rules = policy.rules if policy is not None else []
    counts = {s: sum(1 for r in rules if r.status == s) for s in _STATUS}
    lines += [
        "| rules | ❌ fail | ⚠️ warn | ❔ insufficient data | ✅ pass |",
        "|---:|---:|---:|---:|---:|",
        f"| {len(rules)} | {counts['fail']} | {counts['warn']} | {counts['insufficient_data']} | {counts['pass']} |",
        "",
    ]
    if policy is not None and policy.blocking_failures:
        lines += [
            "**Blocking failures:** " + ", ".join(_cell(x) for x in policy.blocking_failures),
            "",
        ]
    probes = {c.id for c in results.conditions or [] if c.probe}
    lines += _rules_table(rules, probes)
    lines += _findings_table(results.governance.findings)
    lines += _fairness_table(results.fairness or [])
    lines += _detection_table(results)
    return "\n".join(lines).rstrip() + "\n"


def _cell(value: Any) -> str:
    return markdown_text(value)


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, (int, float)):
        return f"{value:.4g}"
    return _cell(value)


def _provenance(results: Results) -> list[str]:
    bits = []
    if results.model.sha256:
        bits.append(f"model sha256 {_cell(str(results.model.sha256)[:12])}…")
    if results.dataset.num_samples is not None:
        bits.append(f"{_num(results.dataset.num_samples)} samples")
    conditions = results.detection.conditions if results.detection is not None else results.conditions
    if conditions:
        bits.append(f"{len(conditions)} conditions")
    if results.policy is not None and results.policy.sha256:
        bits.append(f"policy sha256 {_cell(str(results.policy.sha256)[:12])}…")
    return [" · ".join(bits), ""] if bits else []


def _rules_table(rules: list[RuleResult], probes: set[str]) -> list[str]:
    shown = [r for r in rules if r.status in ("fail", "warn")]
    shown.sort(key=lambda r: (r.status != "fail", str(r.id)))
    lines: list[str] = []
    if shown:
        lines += [
            "### Failed and warned rules",
            "",
            "| rule | status | requirement | target | observed | threshold | clause | message |",
            "|---|---|---|---|---:|---:|---|---|",
        ]
        for rule in shown:
            condition = rule.condition
            if condition is not None and str(condition) in probes:
                condition = f"{condition} (probe)"
            target = " / ".join(str(x) for x in (condition, rule.group) if x)
            sign = {"min": "≥ ", "max": "≤ "}.get(str(rule.op), "")
            threshold = "—" if rule.kind == "finding" else f"{sign}{_num(rule.threshold)}"
            lines.append(
                f"| {_cell(rule.id)} | {_STATUS[str(rule.status)]} | {_cell(rule_in_words(rule))} "
                f"| {_cell(target) or '—'} | {_num(rule.observed)} | {threshold} "
                f"| {_cell(rule.clause or '—')} "
                f"| {_cell(rule.message)} |"
            )
        lines.append("")
    unknown = [r for r in rules if r.status == "insufficient_data"]
    if unknown:
        lines += [f"<details><summary>Insufficient data ({len(unknown)} rules)</summary>", ""]
        lines += [f"- **{_cell(r.id)}**: {_cell(r.message)}" for r in unknown]
        lines += ["", "</details>", ""]
    return lines


def _unjudged(finding: GovernanceFinding) -> bool:
    return finding.judgeable is False or finding.status == "insufficient_data"


def _findings_table(findings: list[GovernanceFinding]) -> list[str]:
    if not findings:
        return []
    flagged = [f for f in findings if f.status in ("fail", "warn") and not _unjudged(f)]
    unjudged = [f for f in findings if _unjudged(f)]
    passed = len(findings) - len(flagged) - len(unjudged)
    lines = [
        "### Data governance",
        "",
        f"{len(flagged)} raised a finding, {len(unjudged)} could not be judged (insufficient data, not a finding),"
        f" {passed} found nothing.",
        "",
        "| check | status | samples | blocking | message |",
        "|---|---|---:|---|---|",
    ]
    order = {"fail": 0, "warn": 1, "pass": 2}
    for finding in sorted(findings, key=lambda f: (_unjudged(f), order.get(str(f.status), 3), str(f.check))):
        status = _STATUS.get(str(finding.status), _cell(finding.status))
        if _unjudged(finding):
            status = f"{_UNJUDGED} ({status})" if finding.status != "insufficient_data" else _UNJUDGED
        blocking = "yes" if finding.blocking else "no"
        count = finding.count
        lines.append(
            f"| {_cell(finding.check)} | {status} | {'—' if count is None else _num(count)} "
            f"| {blocking} | {_cell(finding.message)} |"
        )
    return [*lines, ""]


def _fairness_table(fairness: list[FairnessEntry]) -> list[str]:
    entries = [f for f in fairness if isinstance(f.accuracy_gap, (int, float))]
    if not entries:
        return []
    entries.sort(key=lambda f: -float(f.accuracy_gap))  # type: ignore[arg-type]
    lines = [
        f"### Worst fairness gaps (top {min(_TOP_GAPS, len(entries))} of {len(entries)})",
        "",
        "| condition | attribute | worst group | accuracy gap | accuracy ratio | equalized odds diff. |",
        "|---|---|---|---:|---:|---:|",
    ]
    for entry in entries[:_TOP_GAPS]:
        lines.append(
            f"| {_cell(entry.condition)} | {_cell(entry.attribute)} "
            f"| {_cell(entry.worst_group)} "
            f"| {_num(entry.accuracy_gap)} | {_num(entry.accuracy_ratio)} "
            f"| {_num(entry.equalized_odds_difference)} |"
        )
    return [*lines, ""]


def _detection_table(results: Results) -> list[str]:
    """A detector's numbers per condition: mAP, AP50, and recall, precision and FP per image at its operating point."""
    det = results.detection
    if det is None or not det.conditions:
        return []
    s = det.settings
    lines = [
        "### Detection per condition",
        "",
        f"Operating point: score ≥ {_num(s.score_threshold)}, IoU ≥ {_num(s.iou_threshold)}.",
        "",
        "| condition | mAP | AP50 | recall | precision | FP per image | missed per image |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in det.conditions:
        m = c.metrics
        lines.append(
            f"| {_cell(c.id)} | {_num(m.map)} | {_num(m.map_50)} | {_num(m.recall)} | {_num(m.precision)} "
            f"| {_num(m.fp_per_image)} | {_num(m.missed_per_image)} |"
        )
    return [*lines, ""]
