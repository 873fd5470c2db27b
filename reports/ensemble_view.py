"""The headline of an adversarial audit: the robust accuracy of the ensemble attack (AutoAttack).

An ensemble is recognised by what it records, not by its name: a model-aware stressor whose options
list its ``members``. The report's adversarial section shows its rows, the summary one sentence.
"""

from __future__ import annotations

from typing import Any

from audit.contract.results import ConditionResult, Results

__all__ = ["ensemble_headline", "ensemble_labels"]


def ensemble_labels(results: Results) -> list[str]:
    """The labels of the ensemble attacks in the results: model-aware stressors whose recorded options list
    their ``members`` (autoattack and its L2 form record them; a single attack does not)."""
    return [
        s.name
        for s in results.stressors
        if s.model_aware and isinstance(s.options.get("members"), list) and s.options.get("members")
    ]


def ensemble_headline(results: Results, adversarial: set[str]) -> list[dict[str, Any]]:
    """The adversarial section's headline: per ensemble, its robust accuracy at each ε, next to the other
    attacks' accuracy at the same ε. Empty without an ensemble (the section then shows the curves only).

    Each entry: ``attack`` (the ensemble's label), ``members`` (recorded), ``others`` (the other attack
    labels, sorted) and ``rows``: per ensemble condition in ε order, ``condition``, ``epsilon``, ``probe``
    (a sanity probe, not a measurement), ``robust_accuracy``, ``ci`` and ``others`` (label -> accuracy at that ε,
    None where that attack did not run it or its recorded ``severity_meaning`` at that ε is not the ensemble's:
    an L2 budget of 0.5 is not an L∞ budget of 0.5, so attacks of another norm are never set side by side).
    """
    conditions = [c for c in results.conditions or [] if c.stressor is not None]
    meanings = {s.name: _meanings(s.severity_meaning) for s in results.stressors}
    out = []
    for label in ensemble_labels(results):
        mine = sorted((c for c in conditions if c.stressor == label), key=lambda c: float(c.severity))
        others = sorted(a for a in adversarial if a != label and any(c.stressor == a for c in conditions))
        rows = [
            {
                "condition": c.id,
                "epsilon": c.severity,
                "probe": bool(c.probe),
                "robust_accuracy": c.metrics.accuracy,
                "ci": c.metrics.accuracy_ci,
                "others": {
                    a: _accuracy_at(conditions, a, float(c.severity))
                    if _same_budget(meanings, label, a, float(c.severity))
                    else None
                    for a in others
                },
            }
            for c in mine
        ]
        if rows:
            stressor = next(s for s in results.stressors if s.name == label)
            out.append({"attack": label, "members": list(stressor.options["members"]), "others": others, "rows": rows})
    return out


def _accuracy_at(conditions: list[ConditionResult], label: str, epsilon: float) -> float | None:
    match = [c for c in conditions if c.stressor == label and abs(float(c.severity) - epsilon) <= 1e-9]
    return match[0].metrics.accuracy if match else None


def _meanings(recorded: Any) -> dict[float, str]:
    """A stressor's recorded ``severity_meaning`` keyed by the severity as a number (absent: empty)."""
    out: dict[float, str] = {}
    for key, text in (recorded or {}).items():
        try:
            out[float(key)] = str(text)
        except (TypeError, ValueError):
            continue
    return out


def _same_budget(meanings: dict[str, dict[float, str]], label: str, other: str, epsilon: float) -> bool:
    """Whether ``other`` at ``epsilon`` has the threat model ``label`` has there: the same recorded meaning."""

    def at(name: str) -> str | None:
        return next((text for e, text in meanings.get(name, {}).items() if abs(e - epsilon) <= 1e-9), None)

    mine = at(label)
    return mine is not None and mine == at(other)
