"""The capture-date checks: retention, unreadable dates, dates in the future.

All three read the capture date and are counted whenever ``retention`` runs; each date of a
chunk is parsed once for the three.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar

import numpy as np

from policies.dates import parse_date
from policies.governance.base import ChunkView, GovernanceCheck, Hit, Values, text
from policies.schema import GovernanceConfig

__all__ = ["DateInFuture", "DateUnparseable", "RetentionExpired"]

_FUTURE_TOLERANCE = timedelta(days=1)


class _DateCheck(GovernanceCheck):
    """A check of the capture date: one kind of date each (see :func:`_classify`)."""

    holds_back_images: ClassVar[bool] = True

    def scan(self, chunk: ChunkView) -> Hit:
        column = self.config.columns.capture_date
        col, kinds, reasons = chunk.shared("capture dates", lambda: _classify(chunk, self.config, self.now))
        rows = np.flatnonzero(col.mask([kind == self.name for kind in kinds])).tolist()
        return Hit(rows, values=[{"reason": reasons[col.codes[j]], column: text(col.value(j))} for j in rows])

    @classmethod
    def settings(cls, config: GovernanceConfig) -> dict[str, Any]:
        return {"column": config.columns.capture_date, "date_format": config.date_format}

    @classmethod
    def needed_columns(cls, config: GovernanceConfig) -> list[str]:
        return [config.columns.capture_date]


class _RunsWithRetention(_DateCheck):
    """A date check counted whenever ``retention`` runs, reported when its own section is enabled too."""

    counted_with: ClassVar[str | None] = "retention"

    @classmethod
    def is_blocking(cls, config: GovernanceConfig) -> bool:
        return config.date_check_blocking(cls.section)


class RetentionExpired(_DateCheck):
    """Capture date + ``period_days`` is before ``now``.

    Retention that passed only because some dates could not be read warns instead (:meth:`adjust`).
    """

    name = "retention_expired"
    section = "retention"
    message = "capture date + {period} days has passed"

    @classmethod
    def settings(cls, config: GovernanceConfig) -> dict[str, Any]:
        out = super().settings(config)
        if config.retention is not None:
            out["period_days"] = config.retention.period_days
        return out

    @classmethod
    def adjust(cls, finding: dict[str, Any], counts: Mapping[str, int]) -> None:
        unparseable = counts.get(DateUnparseable.name, 0)
        if finding["status"] == "pass" and unparseable:
            finding["status"] = "warn"
            finding["message"] = (
                f"{unparseable} of {finding['total']} samples have no usable capture date; "
                "retention not verified for them"
            )


class DateUnparseable(_RunsWithRetention):
    """Capture date missing or not in ``date_format`` (runs with ``retention``).

    Blocks when ``unparseable_dates`` sets ``blocking: true``, or, when it does not set
    ``blocking``, when ``retention`` blocks (an unreadable date cannot be shown to be in retention).
    """

    name = "date_unparseable"
    section = "unparseable_dates"
    message = "'{columns.capture_date}' missing or not {date_format}"


class DateInFuture(_RunsWithRetention):
    """Capture date more than a day after ``now`` (a clock or entry error; runs with ``retention``).

    Warns unless ``future_dates`` sets ``blocking: true``.
    """

    name = "date_in_future"
    section = "future_dates"
    message = "'{columns.capture_date}' lies in the future"
    holds_back_images = False


def _classify(chunk: ChunkView, config: GovernanceConfig, now: Any) -> tuple[Values, list[str | None], list[str]]:
    """The capture dates of a chunk, per distinct value: which date check flags it (or ``None``) and why."""
    period = config.retention.period_days  # type: ignore[union-attr]
    col = chunk.coded(config.columns.capture_date)
    kinds: list[str | None] = []
    reasons: list[str] = []
    for value in col.uniques:
        try:
            captured = parse_date(text(value), date_format=config.date_format)
        except ValueError:
            kinds.append(DateUnparseable.name)
            reasons.append("capture date unreadable")
            continue
        if captured > now + _FUTURE_TOLERANCE:
            kinds.append(DateInFuture.name)
            reasons.append("capture date in the future")
        elif captured + timedelta(days=period) < now:
            expired = (captured + timedelta(days=period)).date().isoformat()
            kinds.append(RetentionExpired.name)
            reasons.append(f"retention of {period} days ended {expired}")
        else:
            kinds.append(None)
            reasons.append("")
    return col, kinds, reasons
