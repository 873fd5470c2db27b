"""``cvaudit recipe``: a training augmentation mix derived from an audit.

From the run's ``robustness`` rows (accuracy drop from clean, per condition),
every image stressor (attacks are never used) whose drop reaches
``min_drop`` (0.02) at some evaluated severity enters the recipe with:

- ``severity``: [the lowest evaluated severity whose drop reaches ``min_drop``,
  the highest evaluated severity]: where the model lost;
- ``loss``: the mean drop over the evaluated severities in that range;
- ``weight``: ``loss`` divided by the sum of all losses (sampling weights proportional to the loss).

The recipe is read back by :func:`stressors.recipe.load`.
"""

from __future__ import annotations

from typing import Any

import yaml

from audit.contract.errors import AuditError
from audit.loop.run_folder import RunFolder

__all__ = ["MIN_DROP", "build_recipe", "dump_recipe"]

MIN_DROP = 0.02


def build_recipe(run: RunFolder, *, probability: float = 0.5, min_drop: float = MIN_DROP) -> dict[str, Any]:
    """The recipe as a dict (see the module docstring).

    Raises:
        AuditError: the run has no image stressor, or none cost ``min_drop`` accuracy.
    """
    results = run.results
    entries = [s for s in results.stressors if not s.model_aware]
    if not entries:
        raise AuditError(
            f"{run.path}: the run has no image stressors (attacks are never used for augmentation); "
            "a recipe needs an audit with at least one"
        )
    drops: dict[str, dict[float, float]] = {}
    for row in results.robustness:
        if row.drop is not None:
            drops.setdefault(row.stressor, {})[float(row.severity)] = float(row.drop)
    chosen = []
    for entry in entries:
        by_level = drops.get(entry.name, {})
        levels = sorted(by_level)
        start = next((lv for lv in levels if by_level[lv] >= min_drop), None)
        if start is None:
            continue
        span = [lv for lv in levels if lv >= start]
        loss = sum(max(by_level[lv], 0.0) for lv in span) / len(span)
        chosen.append((entry, [start, levels[-1]], loss))
    if not chosen:
        raise AuditError(
            f"{run.path}: no image stressor cost the model {min_drop} accuracy or more; nothing to augment"
        )
    total = sum(loss for _, _, loss in chosen)
    import stressors

    out = []
    for entry, span, loss in sorted(chosen, key=lambda c: -c[2]):
        options = {k: v for k, v in entry.options.items() if k != "severities"}
        kind = stressors.get(entry.stressor, **options)
        out.append(
            {
                "name": entry.name,
                "stressor": entry.stressor,
                "options": options,
                "severity": [_plain(span[0]), _plain(span[1])],
                "fractional": bool(getattr(kind, "fractional_severities", False)),
                "loss": round(loss, 6),
                "weight": round(loss / total, 6),
            }
        )
    return {
        "version": 1,
        "source": {
            "run": str(run.path),
            "model_sha256": results.model.sha256,
            "seed": results.seed,
            "note": "derived by cvaudit recipe: stressors where the audited model lost accuracy; no attacks",
        },
        "probability": probability,
        "stressors": out,
    }


def _plain(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def dump_recipe(recipe: dict[str, Any]) -> str:
    """The recipe as YAML text, with a header saying how to use it."""
    head = (
        "# Augmentation recipe written by `cvaudit recipe` from an audit.\n"
        "# Load it with stressors.recipe.load(path): a torch.nn.Module over (C, H, W) float images,\n"
        "# and .albumentations() for an Albumentations ImageOnlyTransform over HWC uint8 arrays.\n"
    )
    return head + yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True)
