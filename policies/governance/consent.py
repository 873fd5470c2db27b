"""The consent checks: consent withdrawn, and no consent recorded."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from policies.governance.base import ChunkView, GovernanceCheck, Hit, Values, text
from policies.schema import GovernanceConfig

__all__ = ["ConsentMissing", "ConsentWithdrawn"]


class _ConsentCheck(GovernanceCheck):
    """A check of the consent column, compared without case with ``granted`` and ``withdrawn``."""

    section: ClassVar[str] = "consent"
    holds_back_images: ClassVar[bool] = True
    reason: ClassVar[str]

    def __init__(self, config: GovernanceConfig, now: Any) -> None:
        super().__init__(config, now)
        self.withdrawn = {v.lower() for v in config.consent.withdrawn}  # type: ignore[union-attr]
        self.granted = {v.lower() for v in config.consent.granted}  # type: ignore[union-attr]

    def scan(self, chunk: ChunkView) -> Hit:
        col, lowered = chunk.shared("consent", lambda: _lowered(chunk.coded(self.config.columns.consent)))
        rows = np.flatnonzero(col.mask([self.flags(v) for v in lowered])).tolist()
        return Hit(rows, values=[{"reason": self.reason, "consent": text(col.value(j))} for j in rows])

    def flags(self, value: str) -> bool:
        """Whether the (lower-cased) consent value is flagged."""
        raise NotImplementedError

    @classmethod
    def settings(cls, config: GovernanceConfig) -> dict[str, Any]:
        consent = config.consent
        return {
            "column": config.columns.consent,
            "granted": sorted(consent.granted),  # type: ignore[union-attr]
            "withdrawn": sorted(consent.withdrawn),  # type: ignore[union-attr]
        }

    @classmethod
    def needed_columns(cls, config: GovernanceConfig) -> list[str]:
        return [config.columns.consent]


class ConsentMissing(_ConsentCheck):
    """The consent value is neither ``granted`` nor ``withdrawn`` (empty included)."""

    name = "consent_missing"
    message = "no consent recorded in '{columns.consent}'"
    reason = "no consent recorded"

    def flags(self, value: str) -> bool:
        return value not in self.withdrawn and value not in self.granted


class ConsentWithdrawn(_ConsentCheck):
    """The consent value is one of ``withdrawn``."""

    name = "consent_withdrawn"
    message = "consent withdrawn in '{columns.consent}'"
    reason = "consent withdrawn"

    def flags(self, value: str) -> bool:
        return value in self.withdrawn


def _lowered(col: Values) -> tuple[Values, list[str]]:
    return col, [text(v).lower() for v in col.uniques]
