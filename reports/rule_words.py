"""Each policy rule in plain words, from its result in results.json (``policy.rules[]``).

:func:`rule_in_words` is the one place a rule's requirement is written for a reader:
"accuracy on clean must be at least 80.00%", "the accuracy gap between the camera groups on
night@3 must be at most 2.00 pp, failing only when the data show it larger (95% confidence)",
"check consent_withdrawn must not fail". It reads only the stored rule result, so an old
results.json renders the same way; values are in the unit of the rule's metric
(:func:`reports.html.formatting.fmt_rule_value`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from audit.contract.metric_specs import ACCURACY, BENCHMARK_METRICS, metric_phrases, specs
from audit.contract.results import RuleResult

__all__ = ["DETECTION_WORDS", "METRIC_WORDS", "rule_in_words"]

#: How a detector's metrics (results.json ``detection``) are named in a sentence: the registry's phrases
#: (task detection), the calibration error and the robustness paths of ``section: detection``.
DETECTION_WORDS = {
    **{s.name: s.phrase for s in specs(task="detection")},
    "dece": "the detection calibration error (D-ECE)",
    "robustness.mpc": "the mPC (the mean mAP under the stressors)",
    "robustness.rpc": "the rPC (mPC ÷ clean mAP)",
    "robustness.clean_map": "the clean mAP",
}

#: How a metric is named in a sentence (other metrics keep their results.json name): the registry's
#: phrases, and the statistics derived from the metrics.
METRIC_WORDS = {
    **metric_phrases(),
    "skipped_share": "the share of skipped images",
    "num_skipped": "the number of skipped images",
    f"{ACCURACY.name}_gap": "the accuracy gap",
    f"{ACCURACY.name}_ratio": "the accuracy ratio (lowest group ÷ highest)",
    "drop": "the accuracy drop",
    f"{ACCURACY.name}_drop": "the accuracy drop",
    **{name: words for name, words in DETECTION_WORDS.items() if name not in metric_phrases()},
}
_STATUS_SET = re.compile(r"\{([^}]*)\}")


Rule = RuleResult | Mapping[str, Any]


def _get(rule: Rule, key: str) -> Any:
    """A key of a rule result, typed or as stored in results.json (absent: None)."""
    return getattr(rule, key) if isinstance(rule, RuleResult) else rule.get(key)


#: The keys of a detector's per-object breaking points (``section: detection.breaking_points``).
BREAKING_WORDS = {
    "median": "the median breaking severity of the objects",
    "disparity": "the largest gap in object survival between the groups",
    "median_gap": "the gap between the groups' median breaking severities",
}
_SURVIVAL = re.compile(r"^survival\[(severity|condition)=([^\]]*)\]\.surviving$")


def _metric(name: Any, condition: Any = None) -> str:
    if str(condition).startswith("detection.breaking_points"):  # the target of a section rule names its section
        survival = _SURVIVAL.match(str(name))
        if survival is not None:
            return f"the share of objects still found at {survival.group(1)} {survival.group(2)}"
        if str(name) in BREAKING_WORDS:
            return BREAKING_WORDS[str(name)]
    benchmark = BENCHMARK_METRICS.get(f"{condition}.{name}")  # section: imagenet_c, metric: mce
    if benchmark is not None:
        return benchmark.phrase
    return METRIC_WORDS.get(str(name), str(name))


def _fail_on(threshold: Any) -> list[str]:
    """The statuses a finding rule fails on, from its stored threshold ``status not in {fail, warn}``."""
    found = _STATUS_SET.search(str(threshold or ""))
    statuses = [s.strip() for s in found.group(1).split(",")] if found else []
    return [s for s in statuses if s] or ["fail"]


def _finding_words(rule: Rule) -> str:
    check = _get(rule, "check")
    subject = "no matching check" if check in (None, "", "*") else f"Check {check}"
    statuses = _fail_on(_get(rule, "threshold"))
    if check in (None, "", "*"):
        return f"No matching check may {' or '.join(statuses)}"
    if set(statuses) >= {"fail", "warn"}:
        return f"{subject} must neither fail nor warn"
    return f"{subject} must not {'warn' if statuses == ['warn'] else 'fail'}"


def _target(rule: Rule) -> tuple[str, str]:
    """(what is judged, where): e.g. ("the accuracy gap between the camera groups", "on night@3")."""
    metric, aggregate = str(_get(rule, "metric") or "value"), _get(rule, "aggregate")
    group, condition = _get(rule, "group"), _get(rule, "condition")
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
    return _metric(metric, condition), where


def rule_in_words(rule: Rule, value: Callable[[Any, Rule], str] | None = None) -> str:
    """What a rule requires, in one plain sentence (no trailing full stop).

    Args:
        rule: One rule result (:class:`RuleResult`, or a mapping as stored in results.json's ``policy.rules[]``): kind ``metric``
            (any target: a condition, a group, a gap, ratio or worst group across groups, a
            fairness statistic, a section) or kind ``finding``.
        value: Formats the threshold in the unit of the metric; default :func:`str`.

    Returns:
        E.g. ``"accuracy on clean must be at least 80.00%"``, ``"check consent_missing must not
        fail"``; a rule over several targets says that each must meet it.
    """
    if _get(rule, "kind") == "finding":
        return _finding_words(rule)
    fmt = value or (lambda v, _r: str(v))
    what, where = _target(rule)
    judge = _get(rule, "judge")
    if judge == "ci_lower":
        what = f"the lower end of the 95% interval of {what}"
    elif judge == "ci_upper":
        what = f"the upper end of the 95% interval of {what}"
    bound = "at least" if _get(rule, "op") == "min" else "at most"
    targets = _get(rule, "evaluations")
    if isinstance(targets, list) and len(targets) > 1:
        where = f" on each of the {len(targets)} matching targets (the worst: {_get(rule, 'condition')})"
    text = f"{what}{where} must be {bound} {fmt(_get(rule, 'threshold'), rule)}"
    test, confidence = _get(rule, "test"), _get(rule, "confidence")
    level = f"{100 * confidence:g}% confidence" if isinstance(confidence, (int, float)) else "the rule's confidence"
    if test == "detect":
        larger = "larger" if _get(rule, "op") == "max" else "smaller"
        text += f"; it fails only when the data show it {larger} ({level})"
    elif test == "demonstrate":
        text += f"; it passes only when the data show it within the bound ({level})"
    return text[0].upper() + text[1:]
