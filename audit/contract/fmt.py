"""How numbers, rules and the verdict read on the terminal and in test messages.

Full precision stays in results.json. Rates (accuracies, calibration errors)
have three significant digits; gaps between groups are percentage points;
counts are integers. The command line (:mod:`audit.cli.summary`), the pytest
plugin and :mod:`audit.testing` print with these, so they say the same thing;
nothing here prints or imports click.

>>> rate(0.94666), rate(0.0012345), pp(0.1234), observed({"metric": "accuracy", "aggregate": "gap", "observed": 0.08})
('0.947', '0.00123', '12.3 pp', '8.0 pp')
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from audit.contract.results import PolicyOutcome, Results

__all__ = ["failure_lines", "interval", "observed", "power_lines", "pp", "rate", "threshold", "verdict_line"]

_GAPS = ("_gap", "_difference", "disparity", "drop", "delta")


def rate(value: Any) -> str:
    """A rate with three significant digits; '-' when missing."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    if isinstance(value, int):
        return str(value)
    if abs(value) >= 1 or abs(value) < 0.1:
        return f"{value:.3g}"
    return f"{value:.3f}"


def pp(value: Any) -> str:
    """A difference of two rates in percentage points; '-' when missing."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return f"{100 * value:.1f} pp"


def interval(value: Any) -> str:
    """``[lo, hi]`` with three significant digits each."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return f"[{rate(value[0])}, {rate(value[1])}]"
    return "-"


def _get(rule: Any, key: str) -> Any:
    """A key of a rule or failure: an attribute of the results model (absent on a failure: None), or a mapping's key."""
    return rule.get(key) if isinstance(rule, Mapping) else getattr(rule, key, None)


def _is_gap(rule: Any) -> bool:
    metric = str(_get(rule, "metric") or "")
    return _get(rule, "aggregate") == "gap" or metric.endswith(_GAPS)


def observed(rule: Any) -> str:
    """A rule's or failure's observed value: pp for gaps, 3 significant digits for rates."""
    value = _get(rule, "observed")
    if isinstance(value, str):
        return value
    return pp(value) if _is_gap(rule) else rate(value)


def threshold(rule: Any) -> str:
    """``>= 0.8``, ``<= 5.0 pp`` or ``0`` (governance) for a rule or failure."""
    value = _get(rule, "threshold")
    if isinstance(value, str):
        return value
    shown = pp(value) if _is_gap(rule) else rate(value)
    op = {"min": ">= ", "max": "<= "}.get(str(_get(rule, "op")), "")
    return f"{op}{shown}"


_STATUS_ORDER = ("fail", "warn", "insufficient_data", "pass", "not_applicable")


def _counts(counts: Mapping[str, int]) -> str:
    parts = [f"{counts[s]} {s.replace('_', ' ')}" for s in _STATUS_ORDER if counts.get(s)]
    return ", ".join(parts) or "none"


def _policy(results: Results) -> PolicyOutcome:
    if results.policy is None:
        raise ValueError("these results were not judged by a policy (no 'policy' section)")
    return results.policy


def verdict_line(results: Results) -> str:
    """``verdict: FAIL (policy ci-gate: 2 blocking failures; rules: …; governance: …)``; a report-only
    policy: ``verdict: REPORT ONLY (policy p gates nothing: no blocking rule; rules: …; governance: …)``."""
    policy = _policy(results)
    failures = policy.failures or []
    if policy.report_only:
        return (
            f"verdict: REPORT ONLY (policy {policy.name} gates nothing: report_only, no blocking rule; "
            f"rules: {_counts(policy.counts)}; governance: {_counts(policy.governance_counts or {})})"
        )
    unproven = {r.id for r in policy.rules if r.insufficient_evidence and r.status == "fail"}
    evidence = sum(1 for f in failures if f.id in unproven)
    of_them = f", {evidence} of them insufficient evidence" if evidence else ""
    return (
        f"verdict: {policy.verdict.upper()} (policy {policy.name}: {len(failures)} blocking "
        f"failure{'s' if len(failures) != 1 else ''}{of_them}; rules: {_counts(policy.counts)}; "
        f"governance: {_counts(policy.governance_counts or {})})"
    )


def power_lines(results: Results) -> list[str]:
    """One line per ``detect`` rule that passed: the power it had against its alternative, and the
    samples per group from which that power stays at 80 % (``policy.rules[].power``)."""
    out = []
    for r in _policy(results).rules:
        if r.status != "pass" or r.test != "detect" or r.power is None or r.power_against is None:
            continue
        what = "a true gap of" if r.aggregate != "ratio" else "a true ratio of"
        line = f"  PASS {r.id}: power {100 * r.power:.1f}% against {what} {r.power_against:g}"
        if r.insufficient_evidence:
            line += " (insufficient evidence, passed by on_insufficient_data: pass)"
        if r.samples_needed is not None:
            line += f"; 80% power from {r.samples_needed} per group"
        out.append(line)
    return out


def failure_lines(results: Results) -> list[str]:
    """One line per blocking failure: id, observed value and threshold, message."""
    return [
        f"  FAIL {f.id}: observed {observed(f)}, required {threshold(f)} - {f.message}"
        for f in _policy(results).failures or []
    ]
