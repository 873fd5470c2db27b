"""Each policy rule in plain words, from its result in results.json (``policy.rules[]``).

:func:`rule_in_words` is the one place a rule's requirement is written for a reader:
"accuracy on clean must be at least 80.00%", "the accuracy gap between the camera groups on
night@3 must be at most 2.00 pp, failing only when the data show it larger (95% confidence)",
"check consent_withdrawn must not fail". It reads only the stored rule result, so an old
results.json renders the same way; values are in the unit of the rule's metric
(:func:`reports.html.fmt_rule_value`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from audit.contract.results import RuleResult

__all__ = ["METRIC_WORDS", "rule_in_words"]

#: How a metric is named in a sentence (other metrics keep their results.json name).
METRIC_WORDS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "macro_f1": "macro F1",
    "top_k_accuracy": "top-k accuracy",
    "ece": "the expected calibration error (ECE)",
    "mce": "the maximum calibration error",
    "adaptive_ece": "the adaptive calibration error",
    "debiased_l2_ce": "the debiased calibration error",
    "brier": "the Brier score",
    "nll": "the negative log-likelihood",
    "skipped_share": "the share of skipped images",
    "num_skipped": "the number of skipped images",
    "n": "the number of images",
    "accuracy_gap": "the accuracy gap",
    "accuracy_ratio": "the accuracy ratio (lowest group ÷ highest)",
    "equalized_odds_difference": "the equalized odds difference",
    "demographic_parity_difference": "the demographic parity difference",
    "drop": "the accuracy drop",
    "accuracy_drop": "the accuracy drop",
}
_STATUS_SET = re.compile(r"\{([^}]*)\}")


def _field(rule: RuleResult | Mapping[str, Any], key: str) -> Any:
    """One key of a rule result: an attribute of the model, or a key of a mapping (the HTML report's view)."""
    return rule.get(key) if isinstance(rule, Mapping) else getattr(rule, key)


def _metric(name: Any) -> str:
    return METRIC_WORDS.get(str(name), str(name))


def _fail_on(threshold: Any) -> list[str]:
    """The statuses a finding rule fails on, from its stored threshold ``status not in {fail, warn}``."""
    found = _STATUS_SET.search(str(threshold or ""))
    statuses = [s.strip() for s in found.group(1).split(",")] if found else []
    return [s for s in statuses if s] or ["fail"]


def _finding_words(rule: RuleResult | Mapping[str, Any]) -> str:
    check = _field(rule, "check")
    subject = "no matching check" if check in (None, "", "*") else f"Check {check}"
    statuses = _fail_on(_field(rule, "threshold"))
    if check in (None, "", "*"):
        return f"No matching check may {' or '.join(statuses)}"
    if set(statuses) >= {"fail", "warn"}:
        return f"{subject} must neither fail nor warn"
    return f"{subject} must not {'warn' if statuses == ['warn'] else 'fail'}"


def _target(rule: RuleResult | Mapping[str, Any]) -> tuple[str, str]:
    """(what is judged, where): e.g. ("the accuracy gap between the camera groups", "on night@3")."""
    metric, aggregate = str(_field(rule, "metric") or "value"), _field(rule, "aggregate")
    group, condition = _field(rule, "group"), _field(rule, "condition")
    attribute = str(group).split("=", 1)[0] if group else None
    # a condition id is "clean" or "<stressor>@<severity>"; any other target is a section of results.json
    where = (
        ""
        if not condition
        else f" on {condition}"
        if condition == "clean" or "@" in str(condition)
        else f" in {condition}"
    )
    if aggregate == "gap":
        return f"the gap in {_metric(metric)} between the {attribute} groups", where
    if aggregate == "ratio":
        return f"the ratio of the lowest to the highest {_metric(metric)} across the {attribute} groups", where
    if aggregate == "worst":
        return f"{_metric(metric)} of the worst {attribute} group", where
    if group and "=" in str(group):
        return f"{_metric(metric)} of the group {group}", where
    if group:
        return f"{_metric(metric)} across the {group} groups", where
    return _metric(metric), where


def rule_in_words(
    rule: RuleResult | Mapping[str, Any], value: Callable[[Any, Mapping[str, Any]], str] | None = None
) -> str:
    """What a rule requires, in one plain sentence (no trailing full stop).

    Args:
        rule: One rule result as stored in results.json (``policy.rules[]``): kind ``metric``
            (any target: a condition, a group, a gap, ratio or worst group across groups, a
            fairness statistic, a section) or kind ``finding``.
        value: Formats the threshold in the unit of the metric; default :func:`str`.

    Returns:
        E.g. ``"accuracy on clean must be at least 80.00%"``, ``"check consent_missing must not
        fail"``; a rule over several targets says that each must meet it.
    """
    if _field(rule, "kind") == "finding":
        return _finding_words(rule)
    fmt = value or (lambda v, _r: str(v))
    what, where = _target(rule)
    judge = _field(rule, "judge")
    if judge == "ci_lower":
        what = f"the lower end of the 95% interval of {what}"
    elif judge == "ci_upper":
        what = f"the upper end of the 95% interval of {what}"
    bound = "at least" if _field(rule, "op") == "min" else "at most"
    targets = _field(rule, "evaluations")
    if isinstance(targets, list) and len(targets) > 1:
        where = f" on each of the {len(targets)} matching targets (the worst: {_field(rule, 'condition')})"
    text = f"{what}{where} must be {bound} {fmt(_field(rule, 'threshold'), rule)}"
    test, confidence = _field(rule, "test"), _field(rule, "confidence")
    level = f"{100 * confidence:g}% confidence" if isinstance(confidence, (int, float)) else "the rule's confidence"
    if test == "detect":
        larger = "larger" if _field(rule, "op") == "max" else "smaller"
        text += f"; it fails only when the data show it {larger} ({level})"
    elif test == "demonstrate":
        text += f"; it passes only when the data show it within the bound ({level})"
    return text[0].upper() + text[1:]
