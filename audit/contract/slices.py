"""Slice definitions: the one model of a data slice, its text, its id and which samples it selects.

Shared by the slice search (``cvaudit slices``, :mod:`audit.evaluation.slices`), the run that
measures watched slices (config ``slices.watch``) and the policy rules that judge them; it needs
no torch.

A slice is a conjunction (AND) of 1 to :data:`MAX_DEPTH` predicates on distinct attributes:

- categorical: ``{attribute: camera, equals: B}``: the attribute's text is exactly ``B``
  (values are compared as the text predictions.csv or the manifest holds);
- numeric: ``{attribute: brightness, min: 0.0, max: 0.21}``: the half-open interval
  ``min <= x < max``; ``min`` or ``max`` may be left out (an open end: ``x < max``,
  ``x >= min``). A value that is missing or not a finite number is in no numeric slice.

Text form (slices.csv, the report): ``camera = B AND 0.00 <= brightness < 0.21``; numbers are
shown to 4 significant digits, the definition keeps them exactly.

The id of a slice (:func:`slice_id`) is ``slice-`` and the first 10 hex digits of the SHA-256 of
its canonical JSON (predicates sorted by attribute), so the same definition has the same id in every
run and in a policy rule (``section: slices, entry: <id>``).

Agreed shapes around it (written down here, built by the run side):

- config ``slices.watch``: a list of :class:`WatchedSlice` (``id`` plus ``all``), each measured by
  the next run on the clean images;
- results.json ``slices`` (absent before 1.6): a list of entries, one per watched slice:
  ``{id, text, definition: {all: [...]}, condition: clean, n, metrics: {accuracy, accuracy_ci, ...},
  rest: {n, metrics: {...}}, gap: {accuracy: <rest - slice>, ...}, insufficient_data}``; ``gap`` is
  signed so that a positive value means the slice is worse (for a metric where lower is better,
  ``slice - rest``);
- the promoted policy rule (``cvaudit slices RUN_DIR --promote N``):
  ``{kind: metric, id: <id>, section: slices, entry: <id>, metric: gap.<metric>, max: <tolerance>,
  min_samples: <the slice's size on the confirmation half, at least 2>}``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from audit.contract.errors import CvauditError, echo

__all__ = [
    "MAX_DEPTH",
    "WATCHED_METRICS",
    "Predicate",
    "SliceDefinition",
    "SliceError",
    "WatchedSlice",
    "format_number",
    "select",
    "slice_id",
]

#: The most predicates of one slice.
MAX_DEPTH = 4

#: The metrics a watched slice is measured with (results.json ``slices[].metrics``, ``rest.metrics``, ``gap``), per
#: task; the first is its headline: means of a per-sample value of predictions.csv for a classifier, the recall of
#: the ground-truth objects (objects.csv) for a detector.
WATCHED_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "brier", "nll"),
    "detection": ("recall",),
}


class SliceError(CvauditError):
    """A slice definition or the data it is applied to cannot be used (one line)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def format_number(value: float) -> str:
    """A bound as the text form shows it: 4 significant digits, whole numbers from 10 000 on.

    >>> format_number(0.2071), format_number(1024.0), format_number(123456.7), format_number(0.0)
    ('0.2071', '1024', '123457', '0')
    """
    if abs(value) >= 1e4:
        return f"{value:.0f}"
    return f"{value:.4g}"


class Predicate(_Strict):
    """One condition on one attribute: ``equals`` (categorical) or ``min``/``max`` (numeric, half-open)."""

    attribute: str = Field(min_length=1)
    """A manifest attribute (``data.attributes``) or an image property (``brightness``, ``contrast`` ...)."""
    equals: str | None = None
    """The value a categorical attribute must have; null with ``min``/``max``."""
    min: float | None = None
    """The lowest value of a numeric attribute in the slice (inclusive); null: no lower bound."""
    max: float | None = None
    """The bound a numeric attribute stays below (exclusive); null: no upper bound."""

    @field_validator("min", "max")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("a bound must be a finite number (leave it out for an open end)")
        return value

    @model_validator(mode="after")
    def _shape(self) -> Predicate:
        numeric = self.min is not None or self.max is not None
        if (self.equals is not None) == numeric:
            raise ValueError(f"predicate on {self.attribute!r}: give either 'equals' or 'min'/'max'")
        if self.min is not None and self.max is not None and not self.min < self.max:
            raise ValueError(f"predicate on {self.attribute!r}: 'min' must be below 'max'")
        return self

    @property
    def numeric(self) -> bool:
        return self.equals is None

    def text(self) -> str:
        """``camera = B``, ``0.1 <= brightness < 0.2``, ``brightness < 0.2``, ``brightness >= 0.8``."""
        if self.equals is not None:
            plain = self.equals != "" and all(c.isalnum() or c in "_.-:/" for c in self.equals)
            return f"{self.attribute} = {self.equals if plain else json.dumps(self.equals)}"
        if self.min is None:
            return f"{self.attribute} < {format_number(self.max)}"  # type: ignore[arg-type]
        if self.max is None:
            return f"{self.attribute} >= {format_number(self.min)}"
        return f"{format_number(self.min)} <= {self.attribute} < {format_number(self.max)}"

    def select(self, column: np.ndarray) -> np.ndarray:
        """The boolean mask of the rows of ``column`` (text or numbers) this predicate holds for."""
        if self.equals is not None:
            return np.asarray(column).astype(str) == self.equals
        values = _as_float(column)
        with np.errstate(invalid="ignore"):
            mask = np.isfinite(values)
            if self.min is not None:
                mask &= values >= self.min
            if self.max is not None:
                mask &= values < self.max
        return mask


def _as_float(column: np.ndarray) -> np.ndarray:
    array = np.asarray(column)
    if array.dtype.kind in "fiu":
        return array.astype(float)
    out = np.full(array.shape, np.nan)
    for i, text in enumerate(array.astype(str)):
        try:
            out[i] = float(text)
        except ValueError:
            continue
    return out


class SliceDefinition(_Strict):
    """A slice: the conjunction of its predicates (``all``), on distinct attributes."""

    all: list[Predicate] = Field(min_length=1, max_length=MAX_DEPTH)
    """The predicates every sample of the slice meets (1 to 4, on distinct attributes)."""

    @model_validator(mode="after")
    def _distinct(self) -> SliceDefinition:
        names = [p.attribute for p in self.all]
        if len(set(names)) != len(names):
            raise ValueError("a slice names an attribute twice")
        return self

    @property
    def attributes(self) -> list[str]:
        return [p.attribute for p in self.all]

    @property
    def depth(self) -> int:
        return len(self.all)

    def text(self) -> str:
        """The predicates' text joined by ``AND`` (in the definition's order)."""
        return " AND ".join(p.text() for p in self.all)

    def canonical(self) -> dict[str, Any]:
        """The definition as plain data, predicates sorted by attribute, unset bounds left out."""
        return {
            "all": [p.model_dump(exclude_none=True) for p in sorted(self.all, key=lambda p: p.attribute)],
        }


class WatchedSlice(SliceDefinition):
    """One entry of config ``slices.watch``: a slice the run measures, under its ``id``."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    """The name policy rules give as ``entry`` (``section: slices``); ``cvaudit slices --promote`` writes it."""


def slice_id(definition: SliceDefinition) -> str:
    """``slice-`` + 10 hex digits of the SHA-256 of the canonical JSON: the same in every run.

    >>> slice_id(SliceDefinition(all=[{"attribute": "camera", "equals": "B"}]))
    'slice-fda4ba3f69'
    """
    text = json.dumps(definition.canonical(), sort_keys=True, separators=(",", ":"))
    return "slice-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def select(definition: SliceDefinition, table: Mapping[str, Any]) -> np.ndarray:
    """The boolean mask of the rows of ``table`` (attribute -> column of equal length) in the slice.

    Raises:
        SliceError: the table has no column for one of the definition's attributes, or columns of
            different lengths.
    """
    masks = []
    for predicate in definition.all:
        if predicate.attribute not in table:
            have = ", ".join(sorted(table)) or "none"
            raise SliceError(
                f"slice {definition.text()!r}: no attribute {echo(predicate.attribute)} in the data (have: {have})"
            )
        masks.append(predicate.select(np.asarray(table[predicate.attribute])))
    if len({m.shape for m in masks}) > 1:
        raise SliceError(f"slice {definition.text()!r}: the attribute columns differ in length")
    out = masks[0]
    for mask in masks[1:]:
        out = out & mask
    return out
