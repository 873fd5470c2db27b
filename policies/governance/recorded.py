"""Values every sample must record: its purpose and its lawful basis."""

from __future__ import annotations

from typing import Any

import numpy as np

from policies.governance.base import ChunkView, GovernanceCheck, Hit, text
from policies.schema import GovernanceConfig

__all__ = ["LawfulBasisMissing", "PurposeMissing"]


class _RecordedCheck(GovernanceCheck):
    """The column named like the section (``columns.<section>``) is empty, or not in ``allowed`` when given."""

    def scan(self, chunk: ChunkView) -> Hit:
        key = self.section
        column = getattr(self.config.columns, key)
        allowed = getattr(self.config, key).allowed
        wanted = None if allowed is None else {a.lower() for a in allowed}
        col = chunk.coded(column)
        rows = np.flatnonzero(col.mask([not _recorded(v, wanted) for v in col.uniques])).tolist()
        values = []
        for j in rows:
            value = text(col.value(j))
            values.append({"reason": f"{key} missing" if not value else f"{key} not allowed", column: value})
        return Hit(rows, values=values)

    @classmethod
    def settings(cls, config: GovernanceConfig) -> dict[str, Any]:
        allowed = getattr(config, cls.section).allowed
        return {
            "column": getattr(config.columns, cls.section),
            "allowed": sorted(allowed) if allowed is not None else None,
        }

    @classmethod
    def needed_columns(cls, config: GovernanceConfig) -> list[str]:
        return [getattr(config.columns, cls.section)]


class PurposeMissing(_RecordedCheck):
    """``purpose`` empty, or not in ``allowed`` when given."""

    name = "purpose_missing"
    section = "purpose"
    message = "'{columns.purpose}' missing or not an allowed purpose"
    holds_back_images = True


class LawfulBasisMissing(_RecordedCheck):
    """``lawful_basis`` empty, or not in ``allowed`` when given."""

    name = "lawful_basis_missing"
    section = "lawful_basis"
    message = "'{columns.lawful_basis}' missing or not an allowed lawful basis"
    holds_back_images = True


def _recorded(value: Any, allowed: set[str] | None) -> bool:
    value = text(value)
    return bool(value) and (allowed is None or value.lower() in allowed)
