"""How numbers read on the terminal and in test messages (full precision stays in results.json).

Rates (accuracies, calibration errors) have three significant digits; gaps
between groups are percentage points; counts are integers.

>>> rate(0.94666), rate(0.0012345), pp(0.1234), observed({"metric": "accuracy", "aggregate": "gap", "observed": 0.08})
('0.947', '0.00123', '12.3 pp', '8.0 pp')
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["interval", "observed", "pp", "rate", "threshold"]

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
