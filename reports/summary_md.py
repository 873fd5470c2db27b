"""A Markdown summary of results.json for a GitHub job summary or a PR comment."""

from __future__ import annotations

import re
from typing import Any

from reports.rule_words import rule_in_words

_ESCAPE = re.compile(r"([\\|<>`*_\[\]])")
_STATUS = {
    "fail": "❌ fail",
    "warn": "⚠️ warn",
    "insufficient_data": "❔ insufficient data",
    "pass": "✅ pass",
}
#: A governance check that could not be judged (a column absent, other settings): not a finding.
_UNJUDGED = "❔ cannot be judged"
_TOP_GAPS = 5


def render_markdown_summary(results: dict[str, Any]) -> str:
    """Render the verdict, failed/warned rules, governance findings and worst fairness gaps.

    Every user-supplied string is escaped (pipes, angle brackets, Markdown
    markup) and flattened to one line, so it cannot break a table or inject HTML.

    Args:
        results: A results dict with a ``policy`` section (results.json).

    Returns:
        Markdown text ending with a newline.
    """
    policy = results.get("policy") or {}
    verdict = str(policy.get("verdict", "unknown"))
    icon = {"pass": "✅", "fail": "❌"}.get(verdict, "❔")
    word = verdict.upper()
    if policy.get("report_only"):  # a policy that gates nothing: never shown as a gate's PASS
        icon, word = "ℹ️", "REPORT ONLY (no blocking rule: nothing gated)"
    lines = [
        f"## {icon} cvaudit: {_cell(word)} (policy {_cell(policy.get('name', '?'))})",
        "",
    ]
    lines += _provenance(results, policy)
    rules = [r for r in policy.get("rules") or [] if isinstance(r, dict)]
    counts = {s: sum(1 for r in rules if r.get("status") == s) for s in _STATUS}
    lines += [
        "| rules | ❌ fail | ⚠️ warn | ❔ insufficient data | ✅ pass |",
        "|---:|---:|---:|---:|---:|",
        f"| {len(rules)} | {counts['fail']} | {counts['warn']} | {counts['insufficient_data']} | {counts['pass']} |",
        "",
    ]
    if policy.get("blocking_failures"):
        lines += [
            "**Blocking failures:** " + ", ".join(_cell(x) for x in policy["blocking_failures"]),
            "",
        ]
    probes = {str(c.get("id")) for c in results.get("conditions") or [] if isinstance(c, dict) and c.get("probe")}
    lines += _rules_table(rules, probes)
    lines += _findings_table(((results.get("governance") or {}).get("findings")) or [])
    lines += _fairness_table(results.get("fairness") or [])
    return "\n".join(lines).rstrip() + "\n"


def _cell(value: Any) -> str:
    text = " ".join(str(value).split())
    return _ESCAPE.sub(r"\\\1", text)


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, (int, float)):
        return f"{value:.4g}"
    return _cell(value)


def _provenance(results: dict[str, Any], policy: dict[str, Any]) -> list[str]:
    model = results.get("model") or {}
    dataset = results.get("dataset") or {}
    bits = []
    if model.get("sha256"):
        bits.append(f"model sha256 {_cell(str(model['sha256'])[:12])}…")
    if dataset.get("num_samples") is not None:
        bits.append(f"{_num(dataset['num_samples'])} samples")
    if results.get("conditions"):
        bits.append(f"{len(results['conditions'])} conditions")
    if policy.get("sha256"):
        bits.append(f"policy sha256 {_cell(str(policy['sha256'])[:12])}…")
    return [" · ".join(bits), ""] if bits else []


def _rules_table(rules: list[dict[str, Any]], probes: set[str]) -> list[str]:
    shown = [r for r in rules if r.get("status") in ("fail", "warn")]
    shown.sort(key=lambda r: (r.get("status") != "fail", str(r.get("id"))))
    lines: list[str] = []
    if shown:
        lines += [
            "### Failed and warned rules",
            "",
            "| rule | status | requirement | target | observed | threshold | clause | message |",
            "|---|---|---|---|---:|---:|---|---|",
        ]
        for rule in shown:
            condition = rule.get("condition")
            if condition is not None and str(condition) in probes:
                condition = f"{condition} (probe)"
            target = " / ".join(str(x) for x in (condition, rule.get("group")) if x)
            op = rule.get("op")
            sign = {"min": "≥ ", "max": "≤ "}.get(str(op), "")
            threshold = "—" if rule.get("kind") == "finding" else f"{sign}{_num(rule.get('threshold'))}"
            lines.append(
                f"| {_cell(rule.get('id'))} | {_STATUS[str(rule.get('status'))]} | {_cell(rule_in_words(rule))} "
                f"| {_cell(target) or '—'} | {_num(rule.get('observed'))} | {threshold} "
                f"| {_cell(rule.get('clause') or '—')} "
                f"| {_cell(rule.get('message', ''))} |"
            )
        lines.append("")
    unknown = [r for r in rules if r.get("status") == "insufficient_data"]
    if unknown:
        lines += [f"<details><summary>Insufficient data ({len(unknown)} rules)</summary>", ""]
        lines += [f"- **{_cell(r.get('id'))}**: {_cell(r.get('message', ''))}" for r in unknown]
        lines += ["", "</details>", ""]
    return lines


def _unjudged(finding: dict[str, Any]) -> bool:
    return finding.get("judgeable") is False or finding.get("status") == "insufficient_data"


def _findings_table(findings: list[dict[str, Any]]) -> list[str]:
    if not findings:
        return []
    flagged = [f for f in findings if f.get("status") in ("fail", "warn") and not _unjudged(f)]
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
    for finding in sorted(
        findings, key=lambda f: (_unjudged(f), order.get(str(f.get("status")), 3), str(f.get("check")))
    ):
        status = _STATUS.get(str(finding.get("status")), _cell(finding.get("status")))
        if _unjudged(finding):
            status = f"{_UNJUDGED} ({status})" if finding.get("status") != "insufficient_data" else _UNJUDGED
        blocking = "yes" if finding.get("blocking") else "no"
        count = finding.get("count", 0)
        lines.append(
            f"| {_cell(finding.get('check'))} | {status} | {'—' if count is None else _num(count)} "
            f"| {blocking} | {_cell(finding.get('message', ''))} |"
        )
    return [*lines, ""]


def _fairness_table(fairness: list[dict[str, Any]]) -> list[str]:
    entries = [f for f in fairness if isinstance(f, dict) and isinstance(f.get("accuracy_gap"), (int, float))]
    if not entries:
        return []
    entries.sort(key=lambda f: -float(f["accuracy_gap"]))
    lines = [
        f"### Worst fairness gaps (top {min(_TOP_GAPS, len(entries))} of {len(entries)})",
        "",
        "| condition | attribute | worst group | accuracy gap | accuracy ratio | equalized odds diff. |",
        "|---|---|---|---:|---:|---:|",
    ]
    for entry in entries[:_TOP_GAPS]:
        lines.append(
            f"| {_cell(entry.get('condition'))} | {_cell(entry.get('attribute'))} "
            f"| {_cell(entry.get('worst_group'))} "
            f"| {_num(entry.get('accuracy_gap'))} | {_num(entry.get('accuracy_ratio'))} "
            f"| {_num(entry.get('equalized_odds_difference'))} |"
        )
    return [*lines, ""]
