"""Condition ids: how a severity or an attack budget is written, and which spellings name the same one.

A condition id is ``clean`` or ``<stressor>@<severity>``, where ``<stressor>``
is the config entry's name (its ``label`` when given) and ``<severity>`` is
written canonically by :func:`format_severity`: an integer as an integer
(``night@3``), anything else with four significant digits (``pgd@0.007843``
for ε = 2/255, ``pgd@0.5``). A policy may write a severity in any spelling that
rounds to the same four significant digits (``pgd@0.0078431``, ``pgd@2/255``,
``pgd@0.007843``); :func:`canonical_condition` turns such a spelling into the id.
A spelling that rounds differently (``pgd@0.0078``) names another condition.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

__all__ = [
    "GLOB_CHARS",
    "canonical_condition",
    "format_severity",
    "is_glob",
    "parse_severity",
    "split_condition",
]

GLOB_CHARS = "*?["
_FRACTION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*/\s*([0-9]+(?:\.[0-9]+)?)\s*$")


def format_severity(severity: float) -> str:
    """The canonical text of a severity or ε.

    >>> format_severity(3), format_severity(3.0), format_severity(2 / 255), format_severity(0.5)
    ('3', '3', '0.007843', '0.5')
    """
    value = float(severity)
    if value.is_integer():
        return str(int(value))
    return f"{value:.4g}"


def parse_severity(text: str) -> float:
    """A severity written as a number (``3``, ``0.0078431``, ``1e-3``) or a fraction (``2/255``).

    Raises:
        ValueError: anything else, or a value that is not finite.

    >>> parse_severity("2/255") == 2 / 255, parse_severity(" 0.5 ")
    (True, 0.5)
    """
    match = _FRACTION.match(text)
    if match:
        denominator = Fraction(match.group(2))
        if denominator == 0:
            raise ValueError(f"severity {text!r} divides by zero")
        return float(Fraction(match.group(1)) / denominator)
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"severity {text!r} is not a finite number")
    return value


def is_glob(text: str) -> bool:
    """Whether ``text`` holds a glob character (``*``, ``?`` or ``[``)."""
    return any(ch in text for ch in GLOB_CHARS)


def split_condition(condition_id: str) -> tuple[str, str | None]:
    """``"night@3"`` -> ``("night", "3")``; ``"clean"`` -> ``("clean", None)``."""
    name, sep, severity = condition_id.partition("@")
    return name, (severity if sep else None)


def canonical_condition(condition_id: str) -> str:
    """The canonical id of a condition written in any equivalent spelling; globs and ids
    whose severity is not a number are returned unchanged.

    >>> canonical_condition("pgd@2/255"), canonical_condition("pgd@0.0078431"), canonical_condition("night@*")
    ('pgd@0.007843', 'pgd@0.007843', 'night@*')
    """
    name, severity = split_condition(condition_id)
    if severity is None or is_glob(severity):
        return condition_id
    try:
        return f"{name}@{format_severity(parse_severity(severity))}"
    except ValueError:
        return condition_id
