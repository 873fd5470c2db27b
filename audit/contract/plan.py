"""What a run will produce (or, for stored results, did produce): the targets a policy rule may name.

A :class:`RunPlan` is built from the config before any image is evaluated
(:func:`audit.runner` does it from the conditions, the attributes of the
sample table and the evaluation settings) or from a stored results.json
(:meth:`RunPlan.from_results`). Policies validate every rule against it
(:func:`policies.validate.validate_policy`), so a rule that can never match is
an error before the audit starts, and the same error for ``policy check``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from audit.contract.conditions import format_severity
from audit.contract.results import Results

__all__ = ["PlannedCondition", "RunPlan"]


@dataclass(frozen=True)
class PlannedCondition:
    """One condition the run evaluates.

    Attributes:
        id: the canonical condition id (``clean``, ``night@3``, ``pgd@0.007843``).
        stressor: the config entry's name (its label); None for clean.
        severity: the severity or ε (0 for clean).
        model_aware: an adversarial attack.
        probe: an attack sanity probe (ε = 0 replay or the large-ε check).
    """

    id: str
    stressor: str | None = None
    severity: float = 0.0
    model_aware: bool = False
    probe: bool = False


@dataclass(frozen=True)
class RunPlan:
    """The targets of a run.

    Attributes:
        source: what the plan was read from (a config or a results file), for messages.
        conditions: every condition, clean first.
        attributes: attribute (or intersection ``a×b``) -> its values (``a×b`` values ``x×y``).
        intervals: metrics that carry a 95 % interval (``<metric>_ci``); empty without bootstrap.
        top_k: whether ``top_k_accuracy`` is computed.
        sections: the top-level results.json keys the run writes.
        checks: names of the checks a ``kind: finding`` rule can judge (adversarial sanity
            checks; governance checks come from the judging policy itself).
        task: what the model does (config ``task``). A ``detection`` run writes its audit under
            results.json ``detection``: its conditions' and groups' metrics are
            :class:`~audit.contract.results.DetectionMetrics`, its ``attributes`` hold the image
            attributes and the object groupings (``object.size``, ``object.class``,
            ``object.<key>``), and ``intervals`` names the detection metrics with a ``<metric>_ci``
            .
        slices: the ids of the watched slices (config ``slices.watch``), the entries of results.json ``slices``.
    """

    source: str
    conditions: tuple[PlannedCondition, ...]
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    intervals: frozenset[str] = frozenset()
    top_k: bool = False
    sections: frozenset[str] = frozenset()
    checks: frozenset[str] = frozenset()
    task: Literal["classification", "detection"] = "classification"
    slices: frozenset[str] = frozenset()

    @property
    def condition_ids(self) -> list[str]:
        return [c.id for c in self.conditions]

    @property
    def stressors(self) -> list[str]:
        """Stressor names (labels) in the order they run."""
        out: list[str] = []
        for c in self.conditions:
            if c.stressor is not None and c.stressor not in out:
                out.append(c.stressor)
        return out

    def ids_of(self, stressor: str) -> list[str]:
        """The condition ids of one stressor."""
        return [c.id for c in self.conditions if c.stressor == stressor]

    @classmethod
    def from_results(cls, results: Results, *, source: str = "results.json") -> RunPlan:
        """The plan stored results (:func:`audit.contract.load_results`) were produced by (as far as they show)."""
        if results.task == "detection":
            return cls._from_detection(results, source=source)
        assert results.conditions is not None  # a classification audit always has them (Results checks it)
        conditions = tuple(
            PlannedCondition(
                id=c.id,
                stressor=c.stressor,
                severity=float(c.severity or 0.0),
                model_aware=bool(c.model_aware),
                probe=bool(c.probe),
            )
            for c in results.conditions
        )
        attributes: dict[str, list[str]] = {}
        for attr, counts in results.dataset.attributes.items():
            attributes.setdefault(str(attr), []).extend(str(v) for v in counts)
        for c in results.conditions:
            for g in c.groups:
                values = attributes.setdefault(str(g.attribute), [])
                if str(g.value) not in values:
                    values.append(str(g.value))
        first = results.conditions[0].metrics if results.conditions else None
        intervals = frozenset(
            k[: -len("_ci")] for k in _set_fields(first) if k.endswith("_ci") and getattr(first, k) is not None
        )
        return cls(
            source=source,
            conditions=conditions,
            attributes={k: tuple(v) for k, v in attributes.items()},
            intervals=intervals,
            top_k=results.evaluation.top_k is not None,
            sections=frozenset(k for k in _set_fields(results) if getattr(results, k) is not None),
            checks=frozenset(str(a.check) for a in results.adversarial_checks or []),
            slices=frozenset(s.id for s in results.slices or []),
        )

    @classmethod
    def _from_detection(cls, results: Results, *, source: str) -> RunPlan:
        """The plan of stored detection results: the conditions, attributes and intervals of ``detection``."""
        detection = results.detection
        assert detection is not None  # detection results always have it (Results checks it)
        attacks = {s.name for s in results.stressors if s.model_aware}
        conditions = tuple(
            PlannedCondition(
                id=c.id, stressor=c.stressor, severity=float(c.severity or 0.0), model_aware=c.stressor in attacks
            )
            for c in detection.conditions
        )
        attributes: dict[str, list[str]] = {}
        for attr, counts in results.dataset.attributes.items():
            attributes.setdefault(str(attr), []).extend(str(v) for v in counts)
        for c in detection.conditions:
            for g in c.groups:
                values = attributes.setdefault(str(g.attribute), [])
                if str(g.value) not in values:
                    values.append(str(g.value))
        first = detection.conditions[0].metrics if detection.conditions else None
        intervals = {
            k[: -len("_ci")] for k in _set_fields(first) if k.endswith("_ci") and getattr(first, k) is not None
        }
        return cls(
            source=source,
            conditions=conditions,
            attributes={k: tuple(v) for k, v in attributes.items()},
            intervals=frozenset(intervals),
            sections=frozenset(k for k in _set_fields(results) if getattr(results, k) is not None),
            task="detection",
            slices=frozenset(s.id for s in results.slices or []),
        )


def _set_fields(node: BaseModel | None) -> list[str]:
    """The fields a results model carries (the keys its results.json has), in the model's order."""
    if node is None:
        return []
    return [k for k in type(node).model_fields if k in node.model_fields_set]


def condition_id(stressor: str | None, severity: float) -> str:
    """The canonical id of a stressor at a severity (``clean`` for no stressor)."""
    return "clean" if stressor is None else f"{stressor}@{format_severity(severity)}"
