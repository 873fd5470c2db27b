"""``cvaudit recipe``: a training augmentation mix derived from an audit.

From the run's ``robustness`` rows (accuracy drop from clean, per condition),
every image stressor (attacks are never used) whose drop reaches
``min_drop`` (0.02) at some evaluated severity enters the recipe with:

- ``severity``: [the lowest evaluated severity whose drop reaches ``min_drop``,
  the highest evaluated severity]: where the model lost;
- ``loss``: the mean drop over the evaluated severities in that range;
- ``weight``: ``loss`` divided by the sum of all losses (sampling weights proportional to the loss).

Detection runs: the drop is the COCO mAP's (mAP@[.5:.95]) from clean, per condition; the recipe
gains a ``detection`` section that makes :func:`stressors.recipe.load` return a module that moves
boxes with the pixels (through :func:`stressors.boxes.stress_with_boxes`) and an Albumentations
pipeline with ``A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=...)``;
``min_visibility`` is the run's ``detection.min_visibility`` when it recorded one, else
:data:`DEFAULT_MIN_VISIBILITY` (0.3, cvaudit's documented default: a box whose visible share falls
below it is no longer an object to find).

The recipe is read back by :func:`stressors.recipe.load`.
"""

from __future__ import annotations

from typing import Any

import yaml

from audit.contract.errors import AuditError
from audit.loop.run_folder import RunFolder

__all__ = ["DEFAULT_MIN_VISIBILITY", "MIN_DROP", "build_recipe", "dump_recipe", "stressor_drops"]

MIN_DROP = 0.02
DEFAULT_MIN_VISIBILITY = 0.3


def stressor_drops(run: RunFolder) -> dict[str, dict[float, float]]:
    """stressor (entry name) -> severity -> the drop from clean: accuracy (classification) or COCO mAP (detection)."""
    results = run.results
    drops: dict[str, dict[float, float]] = {}
    if results.task == "detection":
        conds = results.detection.conditions
        clean = next((c.metrics.map for c in conds if c.id == "clean"), None)
        for c in conds:
            if c.stressor is not None and clean is not None and c.metrics.map is not None:
                drops.setdefault(c.stressor, {})[float(c.severity)] = float(clean - c.metrics.map)
        return drops
    for row in results.robustness:
        if row.drop is not None:
            drops.setdefault(row.stressor, {})[float(row.severity)] = float(row.drop)
    return drops


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
    drops = stressor_drops(run)
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
            f"{run.path}: no image stressor cost the model {min_drop} mAP or more; nothing to augment"
            if results.task == "detection"
            else f"{run.path}: no image stressor cost the model {min_drop} accuracy or more; nothing to augment"
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
    recipe: dict[str, Any] = {
        "version": 1,
        "source": {
            "run": str(run.path),
            "model_sha256": results.model.sha256,
            "seed": results.seed,
            "task": results.task,
            "note": "derived by cvaudit recipe: stressors where the audited model lost "
            + ("mAP; no attacks" if results.task == "detection" else "accuracy; no attacks"),
        },
        "probability": probability,
        "stressors": out,
    }
    if results.task == "detection":
        recorded = getattr(results.detection.settings, "min_visibility", None)
        recipe["detection"] = {
            "bbox_format": "pascal_voc",
            "label_fields": ["labels"],
            "min_visibility": float(DEFAULT_MIN_VISIBILITY if recorded is None else recorded),
            "min_visibility_from": "default" if recorded is None else "run",
        }
    return recipe


def _plain(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def dump_recipe(recipe: dict[str, Any]) -> str:
    """The recipe as YAML text, with a header saying how to use it."""
    head = (
        "# Augmentation recipe written by `cvaudit recipe` from an audit.\n"
        "# Load it with stressors.recipe.load(path): a torch.nn.Module over (C, H, W) float images,\n"
        "# and .albumentations() for an Albumentations ImageOnlyTransform over HWC uint8 arrays.\n"
    )
    if "detection" in recipe:
        head = (
            "# Augmentation recipe written by `cvaudit recipe` from a detector's audit.\n"
            "# Load it with stressors.recipe.load(path): .with_boxes(images, boxes) augments images and moves\n"
            "# their xyxy pixel boxes with them; .albumentations_pipeline() is an A.Compose with\n"
            "# A.BboxParams(format='pascal_voc', label_fields=['labels'], min_visibility) from the section below.\n"
        )
    return head + yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True)
