"""Assembling results.json (the contract: :mod:`audit.contract.results`) from the computed statistics.

Only arrangement happens here: every number comes from :mod:`audit.evaluation.metrics`,
:mod:`audit.contract.groupstats` (every group statistic, computed once here for
every condition and grouping), :mod:`audit.evaluation.robustness` or
:mod:`audit.evaluation.adversarial_checks`. The assembled dict is validated by
the :class:`~audit.contract.results.Results` model before anything is written.
"""

from __future__ import annotations

import datetime as dt
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audit.contract.config import AuditConfig
from audit.contract.digest import sha256_file
from audit.contract.groupstats import fairness_summary
from audit.contract.intervals import CONFIDENCE_LEVEL
from audit.contract.metric_specs import specs
from audit.contract.results import SCHEMA_VERSION, GroupMetrics, Metrics
from audit.contract.version import tool_version
from audit.evaluation.conditions import Condition, stressor_descriptions
from audit.evaluation.data import SampleTable
from audit.evaluation.evaluate import SUBSET_CLEAN
from audit.evaluation.groups import SlotLayout

#: The keys of a condition's and a group's ``metrics``: the contract's models decide them.
METRIC_KEYS = tuple(Metrics.model_fields)
GROUP_KEYS = tuple(GroupMetrics.model_fields)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchmetrics", "numpy", "foolbox", "albumentations", "weasyprint", "pyhanko"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _pick(d: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: d[k] for k in keys if k in d}


#: The metrics of a condition's ``error_types`` (from the metric registry): per-class rates, then counts.
_CONDITION_SPECS = specs(lambda s: s.scope == "condition")


def _error_types(overall: dict[str, Any], class_names: list[str]) -> dict[str, Any]:
    """Per-class error rates (and their intervals) keyed by class name; confusions named by class."""
    per_class = [s.name for s in _CONDITION_SPECS if s.kind == "rate"]
    out: dict[str, Any] = {name: dict(zip(class_names, overall[name])) for name in per_class}
    out.update({f"{name}_ci": dict(zip(class_names, overall[f"{name}_ci"])) for name in per_class})
    out["top_confusions"] = [
        {"true": class_names[t["true"]], "predicted": class_names[t["predicted"]], "count": t["count"]}
        for t in overall["top_confusions"]
    ]
    out.update({s.name: overall[s.name] for s in _CONDITION_SPECS if s.kind != "rate"})
    return out


def _condition_entry(
    cond: Condition,
    slots: list[dict[str, Any]],
    layout: SlotLayout,
    min_size: int,
    subset: int | None,
    class_names: list[str],
) -> dict[str, Any]:
    overall = slots[0]
    groups = []
    for (attribute, value), slot in zip(layout.describe()[1:], slots[1:]):
        groups.append(
            {
                "attribute": attribute,
                "value": value,
                "insufficient_data": slot["n"] < min_size,
                "metrics": _pick(slot, GROUP_KEYS),
            }
        )
    entry = {
        "id": cond.id,
        "stressor": cond.stressor_name,
        "severity": cond.severity if cond.stressor is not None else 0,
        "model_aware": cond.model_aware,
        "probe": cond.probe,
        "metrics": _pick(overall, METRIC_KEYS),
        "confusion": overall["confusion"],
        "error_types": _error_types(overall, class_names),
        "reliability": {"bins": overall.get("reliability", [])},
        "groups": groups,
    }
    if cond.model_aware and subset is not None:
        entry["attack_subset"] = subset
    return entry


def _fairness(conditions: list[dict[str, Any]], layout: SlotLayout, min_size: int) -> list[dict[str, Any]]:
    """Every group statistic of every condition and grouping (the one definition, computed once here),
    with the test of each difference at the run's confidence level."""
    out = []
    for cond in conditions:
        for g in layout.groupings:
            groups = [{"value": x["value"], **x["metrics"]} for x in cond["groups"] if x["attribute"] == g.name]
            summary = fairness_summary(groups, min_group_size=min_size, level=CONFIDENCE_LEVEL)
            out.append({"condition": cond["id"], "attribute": g.name, **summary})
    return out


def assemble_results(
    *,
    cfg: AuditConfig,
    config_path: Path | None,
    model_info: dict[str, Any],
    class_names: list[str],
    table: SampleTable,
    conditions: list[Condition],
    layout: SlotLayout,
    computed: dict[str, list[dict[str, Any]]],
    state: Any,
    attack_indices: set[int] | None,
    baseline: dict[str, Any] | None,
    started: dt.datetime,
    device: str,
) -> dict[str, Any]:
    """The results dict (everything but ``governance`` and ``policy``, which the runner adds)."""
    from audit.evaluation import robustness
    from audit.evaluation.adversarial_checks import sanity_checks

    min_size = cfg.evaluation.min_group_size
    subset = len(attack_indices) if attack_indices is not None else None
    cond_entries = [_condition_entry(c, computed[c.id], layout, min_size, subset, class_names) for c in conditions]
    for entry in cond_entries:
        if entry["id"] in state.attack_failures:
            entry["failed_starts"] = state.attack_failures[entry["id"]]
        if entry["id"] in state.early_stop:
            entry["early_stop"] = state.early_stop[entry["id"]]
    natural = [e for e in cond_entries if not e["model_aware"]]
    attacks = [e for e in cond_entries if e["model_aware"]]
    # Attacks on a subset are compared with the clean images of the same subset.
    reference = cond_entries[0]
    if SUBSET_CLEAN in computed:
        reference = _condition_entry(Condition("clean"), computed[SUBSET_CLEAN], layout, min_size, None, class_names)
        reference["attack_subset"] = subset
    adversarial = [reference, *attacks] if attacks else []
    skipped = {s["sample"] for s in state.skipped}
    evaluated = np.ones(len(table), dtype=bool)
    if skipped:
        evaluated[table.indices_of(sorted(skipped))] = False
    attrs = {a: column.counts(evaluated) for a, column in table.attributes.items()}
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "cvaudit", "version": tool_version()},
        "seed": cfg.seed,
        "model": {
            "path": model_info["path"],
            "sha256": model_info["sha256"],
            "format": model_info["format"],
            "num_classes": len(class_names),
            "class_names": class_names,
            **({"files": model_info["files"]} if model_info.get("files") else {}),
        },
        "dataset": {
            "path": str(table.source),
            "sha256": sha256_file(table.source) if table.source.is_file() else None,
            "num_samples": len(table) - len(skipped),
            "num_skipped": len(skipped),
            "skipped_share": len(skipped) / len(table),
            "skipped": state.skipped,
            "attributes": attrs,
            "intersections": [g.name for g in layout.groupings if len(g.attributes) > 1],
        },
        "evaluation": {
            "min_group_size": min_size,
            "n_bootstrap": cfg.evaluation.n_bootstrap,
            "confidence_level": CONFIDENCE_LEVEL,
            "interval": cfg.evaluation.interval,
            "early_stop": cfg.evaluation.early_stop,
            **({"early_stop_min_samples": cfg.evaluation.early_stop_min_samples} if cfg.evaluation.early_stop else {}),
            "ece_bins": 15,
            "attack_samples": subset,
            "top_k": cfg.evaluation.top_k,
        },
        "stressors": stressor_descriptions(conditions),
        "conditions": cond_entries,
    }
    results["fairness"] = _fairness(cond_entries, layout, min_size)
    results["robustness"] = robustness.accuracy_drops(natural) + (
        robustness.accuracy_drops(adversarial) if attacks else []
    )
    results["robustness_summary"] = robustness.corruption_errors(natural)
    results["robustness_disparity"] = robustness.robustness_disparity(natural, min_group_size=min_size) + (
        robustness.robustness_disparity(adversarial, min_group_size=min_size) if attacks else []
    )
    results["error_shift"] = robustness.error_shift(natural) + (robustness.error_shift(adversarial) if attacks else [])
    if SUBSET_CLEAN in computed:
        results["attack_reference"] = {
            "attack_subset": subset,
            "metrics": reference["metrics"],
            "groups": reference["groups"],
        }
    if baseline is not None:
        results["baseline_comparison"] = robustness.compare_to_baseline(results, baseline, min_group_size=min_size)
    attack_of = {c.label: c.stressor for c in conditions if c.model_aware}
    results["adversarial_checks"] = sanity_checks(adversarial, attacks=attack_of) if attacks else []
    if state.gallery:
        results["gallery"] = [{"condition": cid, "image": uri} for cid, uri in state.gallery.items()]
    results["provenance"] = {
        "seed": cfg.seed,
        "config": str(config_path) if config_path else None,
        "config_sha256": sha256_file(config_path) if config_path and Path(config_path).is_file() else None,
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "world_size": torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1,
        "versions": _versions(),
    }
    results["report"] = {"language": cfg.report.language}
    return results
