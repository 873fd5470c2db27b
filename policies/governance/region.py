"""Where the data may be stored and processed."""

from __future__ import annotations

from typing import Any

import numpy as np

from policies.governance.base import ChunkView, GovernanceCheck, Hit, text
from policies.schema import GovernanceConfig

__all__ = ["RegionNotAllowed"]


class RegionNotAllowed(GovernanceCheck):
    """A storage/processing region column (``columns``, default ``columns.region``) missing or outside ``allowed``."""

    name = "region_not_allowed"
    section = "region"
    message = "storage/processing region missing or not allowed"
    holds_back_images = True

    def scan(self, chunk: ChunkView) -> Hit:
        allowed = {a.lower() for a in self.config.region.allowed}  # type: ignore[union-attr]
        bad = []
        for column in self.needed_columns(self.config):
            col = chunk.coded(column)
            bad.append((column, col.mask([text(v).lower() not in allowed for v in col.uniques]), col))
        any_bad = np.zeros(len(chunk), dtype=bool)
        for _, flags, _ in bad:
            any_bad |= flags
        rows = np.flatnonzero(any_bad).tolist()
        columns, values = [], []
        for j in rows:
            columns.append(tuple(c for c, flags, _ in bad if flags[j]))
            values.append(
                {"reason": "region not allowed", **{c: text(col.value(j)) for c, flags, col in bad if flags[j]}}
            )
        return Hit(rows, columns=columns, values=values)

    @classmethod
    def settings(cls, config: GovernanceConfig) -> dict[str, Any]:
        return {"columns": sorted(cls.needed_columns(config)), "allowed": sorted(config.region.allowed)}  # type: ignore[union-attr]

    @classmethod
    def needed_columns(cls, config: GovernanceConfig) -> list[str]:
        return list(config.region.columns or [config.columns.region])  # type: ignore[union-attr]
