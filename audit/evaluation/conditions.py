"""Conditions: the clean images plus every (stressor, severity) of the config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stressors
from audit.contract.config import StressorConfig
from audit.contract.errors import AuditError
from stressors.base import StressorError


@dataclass(frozen=True)
class Condition:
    """One evaluated condition.

    Attributes:
        id: ``clean``, ``<stressor>@<severity>`` or ``<attack>@<epsilon>``.
        stressor: the stressor object (None for clean).
        severity: the severity or epsilon (0 for clean).
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


def format_severity(severity: float) -> str:
    """``3`` -> "3", ``0.0078431`` -> "0.007843" (4 significant digits)."""
    if float(severity).is_integer():
        return str(int(severity))
    return f"{severity:.4g}"


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
