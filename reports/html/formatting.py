"""How the report writes numbers: the Jinja filters and the metric-unit tables they read.

Every formatter shows "—" for a value that is missing or not a finite number,
so a template never has to test for one.

The metric-unit tables (:data:`SHARE_METRICS`, :data:`GAP_METRICS`,
:data:`COUNT_METRICS`, :data:`INTERVAL_METHODS`) are derived from the contract's
metric registry (:mod:`audit.contract.metric_specs`) and interval methods.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from audit.contract.intervals import INTERVAL_METHOD_LABELS
from audit.contract.metric_specs import BENCHMARK_METRICS, count_metric_names, difference_names, share_metric_names
from audit.contract.results import RuleResult

__all__ = [
    "COUNT_METRICS",
    "GAP_METRICS",
    "INTERVAL_METHODS",
    "SHARE_METRICS",
    "finite",
    "fmt_ci",
    "fmt_datetime",
    "fmt_num",
    "fmt_p",
    "fmt_pct",
    "fmt_pp",
    "fmt_rule_value",
    "fmt_value",
]

DASH = "\u2014"
# The units come from the contract's metric registry (audit.contract.metric_specs); the few names added
# here are run quantities a policy rule can judge that are not per-slot metrics (policies/targets.py).
#: Shown in % (shares in [0, 1] and per-class rates).
SHARE_METRICS = share_metric_names() | {"fnr", "fpr", "skipped_share"}
#: Shown in percentage points (differences of shares between groups, and accuracy drops).
GAP_METRICS = difference_names() | {"drop", "accuracy_drop"}
#: How each evaluation.interval is described.
INTERVAL_METHODS = INTERVAL_METHOD_LABELS
#: Shown as a number of images.
COUNT_METRICS = count_metric_names() | {"num_samples", "num_skipped", "count"}


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (not a bool); else None.

    >>> finite(3), finite(float("nan")), finite(True), finite(None)
    (3.0, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def fmt_pct(value: Any, digits: int = 1) -> str:
    """``0.8234 -> "82.3%"``; anything not a finite number -> "—"."""
    number = finite(value)
    return DASH if number is None else f"{100 * number:.{digits}f}%"


def fmt_pp(value: Any, digits: int = 1) -> str:
    """A difference of two accuracies in percentage points: ``0.162 -> "16.2 pp"``; "—" when missing."""
    number = finite(value)
    return DASH if number is None else f"{100 * number:.{digits}f} pp"


def fmt_num(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals; "—" when missing."""
    number = finite(value)
    return DASH if number is None else f"{number:.{digits}f}"


def fmt_p(value: Any) -> str:
    """A p-value: ``"< 0.001"`` below 0.001, else three decimals; "—" when missing."""
    number = finite(value)
    if number is None:
        return DASH
    return "< 0.001" if number < 0.001 else f"{number:.3f}"


def fmt_ci(value: Any) -> str:
    """``[0.78, 0.85] -> "78.0–85.0%"``; "—" when missing."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(finite(v) is not None for v in value):
        return f"{100 * float(value[0]):.1f}\u2013{100 * float(value[1]):.1f}%"
    return DASH


def fmt_value(value: Any) -> str:
    """Observed values and thresholds of policy rules, whatever their type."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt_value(v) for v in value)
    return str(value)


def fmt_rule_value(value: Any, rule: RuleResult | Mapping[str, Any]) -> str:
    """A policy rule's observed value or threshold in the unit of its metric.

    Shares (accuracy, ECE, ...) in %, gaps between groups and accuracy drops in
    percentage points, ratios as plain ratios, counts in images; values of
    other metrics and of governance findings as stored (:func:`fmt_value`).

    Args:
        value: The observed value or the threshold.
        rule: The rule result (a :class:`RuleResult`, or a mapping of its keys as in results.json).
    """
    if isinstance(rule, RuleResult):
        metric_name, aggregate, kind, target = rule.metric, rule.aggregate, rule.kind, rule.condition
    else:
        metric_name, aggregate, kind = rule.get("metric"), rule.get("aggregate"), rule.get("kind")
        target = rule.get("condition")
    number = finite(value)
    metric = str(metric_name or "")
    if number is None or kind == "finding":
        return fmt_value(value)
    if f"{target}.{metric}" in BENCHMARK_METRICS:  # mCE, rPC ...: ratios, not shares (the 'mce' of a slot is one)
        return f"{number:.3f}"
    if aggregate == "gap" or metric in GAP_METRICS:
        return fmt_pp(number, 2)
    if aggregate == "ratio" or metric.endswith("ratio"):
        return f"{number:.3f} (ratio)"
    if metric in SHARE_METRICS:
        return fmt_pct(number, 2)
    if metric in COUNT_METRICS:
        return f"{fmt_value(value)} images"
    return fmt_value(value)


def fmt_datetime(value: Any) -> str:
    """An ISO 8601 time as ``2026-11-29 01:07:12 UTC`` (offset kept when not UTC); other text as given."""
    if not isinstance(value, str):
        return DASH if value is None else str(value)
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if when.tzinfo is None:
        return when.strftime("%Y-%m-%d %H:%M:%S")
    offset = when.utcoffset()
    return when.strftime("%Y-%m-%d %H:%M:%S") + (
        " UTC" if not offset else " UTC" + when.strftime("%z")[:3] + ":" + when.strftime("%z")[3:]
    )
