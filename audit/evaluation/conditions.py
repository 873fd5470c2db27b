"""Conditions: the clean images plus every (stressor, severity) of the config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stressors
from audit.contract.conditions import format_severity
from audit.contract.config import StressorConfig
from audit.contract.errors import AuditError
from stressors.base import StressorError


@dataclass(frozen=True)
class Condition:
    """One evaluated condition.

    Attributes:
        id: ``clean``, ``<stressor>@<severity>`` or ``<attack>@<epsilon>`` (canonical, see
            :mod:`audit.contract.conditions`).
        stressor: the stressor object (None for clean).
        severity: the severity or epsilon (0 for clean).
        label: the config entry's name (its ``label`` when given).
    """

    id: str
    stressor: Any = None
    severity: float = 0
    label: str | None = None

    @property
    def model_aware(self) -> bool:
        return bool(getattr(self.stressor, "model_aware", False))

    @property
    def stressor_name(self) -> str | None:
        return None if self.stressor is None else self.label

    @property
    def probe(self) -> bool:
        """An attack sanity probe rather than a robustness measurement: the ε = 0 replay
        (must equal clean accuracy) or, for an iterative attack, an ε at or above the
        gradient-masking threshold (must reach about 0 %); see
        :mod:`audit.evaluation.adversarial_checks`."""
        if not self.model_aware:
            return False
        iterative = getattr(self.stressor, "iterative", False)
        large = getattr(self.stressor, "zero_accuracy_epsilon", None) if iterative else None
        return self.severity == 0 or (large is not None and self.severity >= large)


def build_conditions(entries: list[StressorConfig], *, source: str = "config") -> list[Condition]:
    """Instantiate every configured stressor through the registry.

    An entry may carry ``label: NAME`` to tell apart two entries of the same
    stressor (e.g. two blur kinds); condition ids then use the label.

    Raises:
        AuditError: unknown stressor, bad option, duplicate condition ids.
    """
    conditions = [Condition("clean")]
    seen = {"clean"}
    for k, entry in enumerate(entries):
        options = dict(entry.options)
        label = options.pop("label", None) or entry.name
        try:
            stressor = stressors.get(entry.name, **options)
        except StressorError as err:
            raise AuditError(f"{source}: stressors[{k}] ({entry.name}): {err}") from None
        for severity in stressor.severities:
            cid = f"{label}@{format_severity(severity)}"
            if cid in seen:
                raise AuditError(
                    f"{source}: stressors[{k}] ({entry.name}): condition {cid!r} appears twice; "
                    "give one of the entries a distinct 'label'"
                )
            seen.add(cid)
            conditions.append(Condition(cid, stressor, severity, label))
    return conditions


def stressor_descriptions(conditions: list[Condition]) -> list[dict[str, Any]]:
    """What each stressor and severity means, for results.json and the report."""
    out, seen = [], set()
    for cond in conditions:
        if cond.stressor is None or cond.label in seen:
            continue
        seen.add(cond.label)
        s = cond.stressor
        meaning = getattr(s, "severity_meaning", {}) or {}
        out.append(
            {
                "name": cond.label,
                "stressor": s.name,
                "model_aware": cond.model_aware,
                "severities": list(s.severities),
                "severity_meaning": {format_severity(k): v for k, v in dict(meaning).items()},
                "description": (s.__doc__ or "").strip().split("\n")[0],
                "options": getattr(s, "options", None) or {},
            }
        )
    return out


def check_classification_conditions(conditions: list[Condition], *, source: str = "config") -> None:
    """Refuse, before any image is read, a stressor that needs object boxes or attacks a detector in a
    classification audit.

    Occlusion with ``target: objects`` hides part of every annotated object: a classifier's images have
    no boxes, so it cannot run (one line naming the condition).

    Raises:
        AuditError: a condition whose stressor ``needs_boxes`` or ``attacks_detector``.
    """
    for cond in conditions:
        if cond.stressor is not None and getattr(cond.stressor, "attacks_detector", False):
            raise AuditError(
                f"{source}: stressor condition {cond.id!r}: {cond.stressor.name} attacks object detectors "
                "(task: detection); a classification audit takes the classifier attacks (e.g. pgd, pgd_l2)"
            )
        if cond.stressor is not None and getattr(cond.stressor, "needs_boxes", False):
            raise AuditError(
                f"{source}: stressor condition {cond.id!r} needs object boxes (target: objects); "
                "a classification audit has none (use task: detection, or target: image)"
            )
