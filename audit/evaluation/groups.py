"""Subgroups and their intersections, as the "slots" the statistics are kept in.

Slot 0 is the whole dataset. Every grouping (an attribute, or an intersection
such as ``skin_tone×camera``) then gets one slot per value; intersections take
the full Cartesian product of their attributes' values, so empty
intersections exist (n = 0) and are shown rather than dropped.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

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
    values = {a: tuple(sorted(set(vs))) for a, vs in table.attributes.items()}
    for attr, vals in values.items():
        groupings.append(Grouping(attr, (attr,), vals, next_slot))
        next_slot += len(vals)
    for combo in intersections:
        combos = tuple(SEP.join(p) for p in itertools.product(*(values[a] for a in combo)))
        groupings.append(Grouping(SEP.join(combo), tuple(combo), combos, next_slot))
        next_slot += len(combos)
    return SlotLayout(tuple(groupings), next_slot)


def slot_matrix(table: SampleTable, layout: SlotLayout) -> torch.Tensor:
    """(N, 1 + number of groupings) int64: the slot of every sample in every grouping."""
    n = len(table)
    cols = [torch.zeros(n, dtype=torch.int64)]
    for g in layout.groupings:
        index = {v: g.first_slot + k for k, v in enumerate(g.values)}
        keys = [SEP.join(table.attributes[a][i] for a in g.attributes) for i in range(n)]
        cols.append(torch.tensor([index[k] for k in keys], dtype=torch.int64))
    return torch.stack(cols, dim=1)
