"""Subgroups and their intersections, as the "slots" the statistics are kept in.

Slot 0 is the whole dataset. Every grouping (an attribute, or an intersection
such as ``skin_tone×camera``) then gets one slot per value; intersections take
the full Cartesian product of their attributes' values, so empty
intersections exist (n = 0) and are shown rather than dropped.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from audit.evaluation.data import SampleTable

SEP = "×"


@dataclass(frozen=True)
class Grouping:
    name: str  # "camera" or "camera×ink"
    attributes: tuple[str, ...]
    values: tuple[str, ...]  # "A" or "A×thin"
    first_slot: int


@dataclass(frozen=True)
class SlotLayout:
    groupings: tuple[Grouping, ...]
    num_slots: int

    def slot_of(self, grouping: Grouping, value: str) -> int:
        return grouping.first_slot + grouping.values.index(value)

    def describe(self) -> list[tuple[str, str] | None]:
        """(attribute, value) per slot; None for slot 0 (overall)."""
        out: list[tuple[str, str] | None] = [None]
        for g in self.groupings:
            out.extend((g.name, v) for v in g.values)
        return out


def build_layout(table: SampleTable, intersections: list[list[str]]) -> SlotLayout:
    groupings, next_slot = [], 1
    values = {a: column.values for a, column in table.attributes.items()}  # sorted distinct values
    for attr, vals in values.items():
        groupings.append(Grouping(attr, (attr,), vals, next_slot))
        next_slot += len(vals)
    for combo in intersections:
        combos = tuple(SEP.join(p) for p in itertools.product(*(values[a] for a in combo)))
        groupings.append(Grouping(SEP.join(combo), tuple(combo), combos, next_slot))
        next_slot += len(combos)
    return SlotLayout(tuple(groupings), next_slot)


def slot_matrix(table: SampleTable, layout: SlotLayout) -> torch.Tensor:
    """(N, 1 + number of groupings) int64: the slot of every sample in every grouping.

    Computed from the attributes' codes: an intersection's slot is its first slot plus the
    mixed-radix number of its attributes' codes (the order of :func:`itertools.product`).
    """
    n = len(table)
    out = np.zeros((n, 1 + len(layout.groupings)), dtype=np.int64)
    for g_index, g in enumerate(layout.groupings, start=1):
        code = np.zeros(n, dtype=np.int64)
        for a in g.attributes:
            column = table.attributes[a]
            code = code * len(column.values) + column.codes
        out[:, g_index] = g.first_slot + code
    return torch.from_numpy(out)
