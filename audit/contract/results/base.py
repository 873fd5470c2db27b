"""The base of every results.json model: strict keys, frozen values, described fields."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Fraction", "Interval", "Node", "Rate"]


class Node(BaseModel):
    """A part of results.json: unknown keys are an error, values are frozen after building."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-compatible dict of the keys that were given (what results.json holds)."""
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
"""A share in [0, 1] (accuracies, rates, calibration errors)."""

Rate = Annotated[float | None, Field(ge=0.0, le=1.0)]
"""A share in [0, 1], or null where undefined (no sample)."""

Interval = Annotated[list[float], Field(min_length=2, max_length=2)]
"""``[low, high]``: a two-sided 95 % interval (``evaluation.confidence_level``)."""
