"""Conservative patterns for personal data inside manifest values.

The scan prefers missing a value over flagging an innocent one: a phone
number needs a ``+`` country code or the North-American ``(555) 123-4567`` /
``555-123-4567`` shape, so dates, sizes and ids do not match; national ids
are US social security numbers and UK national insurance numbers.
Matches are only counted; the values are never returned.
"""

from __future__ import annotations

import re

PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    "phone": re.compile(
        r"(?<![\w.+-])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){2,4}"
        r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|\d{3}[.-]\d{3}[.-]\d{4})(?![\w-])"
    ),
    "national_id": re.compile(
        r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])"
        r"|(?<!\w)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?!\w)"
    ),
}
_MAX_SCANNED_CHARS = 2000

PERSONAL_DATA_CHECKS = frozenset({"pii_columns", "pii_values", "biometric_without_basis"})
"""Governance findings that mean the manifest holds personal or biometric data."""


def pii_kinds(value: object, patterns: list[str] | tuple[str, ...] = tuple(PATTERNS)) -> list[str]:
    """Which of ``patterns`` occur in ``value`` (only strings are scanned).

    >>> pii_kinds("write to jane.doe@example.org")
    ['email']
    >>> pii_kinds("2024-03-01")
    []
    """
    if not isinstance(value, str) or not value:
        return []
    text = value[:_MAX_SCANNED_CHARS]
    return [kind for kind in patterns if PATTERNS[kind].search(text)]


def normalise_column(name: str) -> str:
    """Lower-case, with spaces and hyphens as underscores (``"E-mail"`` -> ``"e_mail"``)."""
    return re.sub(r"[\s-]+", "_", str(name).strip().lower())
