"""Assembling results.json (the contract: :mod:`audit.contract.results`) from the computed statistics.

Only arrangement happens here: every number comes from :mod:`audit.evaluation.metrics`,
:mod:`audit.contract.groupstats` (every group statistic, computed once here for
every condition and grouping), :mod:`audit.evaluation.robustness` or
:mod:`audit.evaluation.adversarial_checks`. Every part is built as its model of
:mod:`audit.contract.results`, so a part that drifts from the contract fails where it is made.
"""

from __future__ import annotations

import datetime as dt
import platform
from dataclasses import dataclass
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
from audit.contract.results import (
    SCHEMA_VERSION,
    AdversarialCheck,
    AttackReference,
    BreakingPointDisparity,
    BreakingPointSummary,
    ConditionResult,
    CorruptionSummary,
    DatasetInfo,
    DisparityRow,
    ErrorShift,
    EvaluationSettings,
    FairnessEntry,
    GalleryItem,
    Governance,
    GroupMetrics,
    Metrics,
    ModelInfo,
    Provenance,
    ReportSettings,
    Results,
    RobustnessRow,
    StressorInfo,
    Tool,
)
from audit.contract.version import tool_version
from audit.evaluation.conditions import Condition, stressor_descriptions
from audit.evaluation.data import SampleTable
from audit.evaluation.evaluate import SUBSET_CLEAN
from audit.evaluation.groups import SlotLayout

#: The keys of a condition's and a group's ``metrics``: the contract's models decide them.
METRIC_KEYS = tuple(Metrics.model_fields)
GROUP_KEYS = tuple(GroupMetrics.model_fields)


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Python's and the installed versions of the packages that decide results (provenance ``versions``)."""
    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchmetrics", "numpy", "foolbox", "albumentations", "weasyprint", "pyhanko", *extra):
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


def _attack_details(details: dict[str, Any]) -> dict[str, Any]:
    """An attack's merged details as results.json's ``attack_details`` (robust accuracy per member)."""
    n = details["n"]
    members = [
        {**m, "robust_accuracy": m["robust"] / n if n else None, "seconds": round(m["seconds"], 4)}
        for m in details["members"]
    ]
    return {**details, "members": members}


def _physical(stressor: Any, severity: float, counts: dict[str, Any]) -> dict[str, Any]:
    """A fitted attack's ``physical`` entry: what it records of its fit, and the fooling rate counted in the pass."""
    n, changed = counts["n"], counts["changed"]
    out: dict[str, Any] = {
        **stressor.record(severity),
        "n": n,
        "changed": changed,
        "fooling_rate": changed / n if n else None,
    }
    if counts.get("images"):
        out["images"] = counts["images"]
    return out


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


@dataclass(frozen=True)
class ResultsInputs:
    """What :func:`assemble_results` arranges into results: the run's settings, data and computed statistics.

    Attributes:
        cfg: The audit config.
        config_path: The config file (None for a config built in Python).
        model_info: ``{path, sha256, format, code_executed[, files]}`` of the model loaded.
        class_names: Class names in the order of the model's outputs.
        table: The sample table evaluated.
        conditions: Every condition, clean first.
        layout: The slots (overall and every group) the statistics are indexed by.
        computed: Condition id -> per-slot statistics (:meth:`AuditStats.compute`).
        state: The evaluation state (skipped images, attack failures, early stops, gallery).
        attack_indices: The attacked subset, or None when attacks ran on every sample.
        baseline: The deployed model's results (``--baseline``), through the one reader.
        governance: The governance findings as the run's policy counted them.
        breaking_points: ``breaking_points`` and ``breaking_point_disparity`` when computed.
        started: When the run started (UTC).
        device: The device the model ran on.
        threads: CPU threads the run used.
        num_workers: Data-loading workers.
        allocator: The memory allocator setting (``retain`` or ``system``).
    """

    cfg: AuditConfig
    config_path: Path | None
    model_info: dict[str, Any]
    class_names: list[str]
    table: SampleTable
    conditions: list[Condition]
    layout: SlotLayout
    computed: dict[str, list[dict[str, Any]]]
    state: Any
    attack_indices: set[int] | None
    baseline: Results | None
    governance: Governance
    breaking_points: dict[str, Any]
    started: dt.datetime
    device: str
    threads: int
    num_workers: int
    allocator: str


def assemble_results(inputs: ResultsInputs) -> Results:
    """The results of a run, every part built as its model (so a drift fails where the part is made).

    ``policy`` and ``error_thumbnails`` are absent: the policy judges these results
    (:func:`policies.check_policy`), then the runner adds its verdict and the thumbnails
    of the samples the report names.

    Raises:
        pydantic.ValidationError: a part does not match the contract (a bug, not bad input).
    """
    from audit.evaluation import robustness
    from audit.evaluation.adversarial_checks import sanity_checks

    cfg, table, layout, computed, state = inputs.cfg, inputs.table, inputs.layout, inputs.computed, inputs.state
    class_names, conditions, attack_indices = inputs.class_names, inputs.conditions, inputs.attack_indices
    model_info, config_path = inputs.model_info, inputs.config_path
    min_size = cfg.evaluation.min_group_size
    subset = len(attack_indices) if attack_indices is not None else None
    cond_entries = [_condition_entry(c, computed[c.id], layout, min_size, subset, class_names) for c in conditions]
    for entry in cond_entries:
        if entry["id"] in state.attack_failures:
            entry["failed_starts"] = state.attack_failures[entry["id"]]
        if entry["id"] in state.attack_details:
            entry["attack_details"] = _attack_details(state.attack_details[entry["id"]])
        if entry["id"] in getattr(state, "physical", {}):
            cond = next(c for c in conditions if c.id == entry["id"])
            entry["physical"] = _physical(cond.stressor, cond.severity, state.physical[entry["id"]])
        if entry["id"] in state.early_stop:
            entry["early_stop"] = state.early_stop[entry["id"]]
    typed_conditions = [ConditionResult.model_validate(e) for e in cond_entries]
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
    optional: dict[str, Any] = {}  # keys results.json has only in some runs
    if SUBSET_CLEAN in computed:
        optional["attack_reference"] = AttackReference.model_validate(
            {"attack_subset": subset, "metrics": reference["metrics"], "groups": reference["groups"]}
        )
    if inputs.baseline is not None:
        optional["baseline_comparison"] = robustness.compare_to_baseline(
            typed_conditions, inputs.baseline.conditions, min_group_size=min_size
        )
    if state.gallery:
        optional["gallery"] = [GalleryItem(condition=cid, image=uri) for cid, uri in state.gallery.items()]
    for key, value in inputs.breaking_points.items():
        model = {"breaking_points": BreakingPointSummary, "breaking_point_disparity": BreakingPointDisparity}[key]
        optional[key] = [model.model_validate(v) for v in value]
    attack_of = {c.label: c.stressor for c in conditions if c.model_aware}
    return Results(
        schema_version=SCHEMA_VERSION,
        tool=Tool(name="cvaudit", version=tool_version()),
        seed=cfg.seed,
        model=ModelInfo.model_validate(
            {
                "path": model_info["path"],
                "sha256": model_info["sha256"],
                "format": model_info["format"],
                "num_classes": len(class_names),
                "class_names": class_names,
                **({"files": model_info["files"]} if model_info.get("files") else {}),
                "code_executed": model_info.get("code_executed"),
            }
        ),
        dataset=DatasetInfo.model_validate(
            {
                "path": str(table.source),
                "sha256": sha256_file(table.source) if table.source.is_file() else None,
                "num_samples": len(table) - len(skipped),
                "num_skipped": len(skipped),
                "skipped_share": len(skipped) / len(table),
                "skipped": state.skipped,
                "attributes": attrs,
                "intersections": [g.name for g in layout.groupings if len(g.attributes) > 1],
            }
        ),
        evaluation=EvaluationSettings.model_validate(
            {
                "min_group_size": min_size,
                "n_bootstrap": cfg.evaluation.n_bootstrap,
                "confidence_level": CONFIDENCE_LEVEL,
                "interval": cfg.evaluation.interval,
                "early_stop": cfg.evaluation.early_stop,
                **(
                    {"early_stop_min_samples": cfg.evaluation.early_stop_min_samples}
                    if cfg.evaluation.early_stop
                    else {}
                ),
                "ece_bins": 15,
                "attack_samples": subset,
                "top_k": cfg.evaluation.top_k,
            }
        ),
        stressors=[StressorInfo.model_validate(s) for s in stressor_descriptions(conditions)],
        conditions=typed_conditions,
        fairness=[FairnessEntry.model_validate(f) for f in _fairness(cond_entries, layout, min_size)],
        robustness=[
            RobustnessRow.model_validate(r)
            for r in robustness.accuracy_drops(natural) + (robustness.accuracy_drops(adversarial) if attacks else [])
        ],
        robustness_summary=CorruptionSummary.model_validate(robustness.corruption_errors(natural)),
        robustness_disparity=[
            DisparityRow.model_validate(r)
            for r in robustness.robustness_disparity(natural, min_group_size=min_size)
            + (robustness.robustness_disparity(adversarial, min_group_size=min_size) if attacks else [])
        ],
        error_shift=[
            ErrorShift.model_validate(r)
            for r in robustness.error_shift(natural) + (robustness.error_shift(adversarial) if attacks else [])
        ],
        adversarial_checks=[
            AdversarialCheck.model_validate(c)
            for c in (sanity_checks(adversarial, attacks=attack_of) if attacks else [])
        ],
        governance=inputs.governance,
        provenance=Provenance.model_validate(
            {
                "seed": cfg.seed,
                "config": str(config_path) if config_path else None,
                "config_sha256": sha256_file(config_path) if config_path and Path(config_path).is_file() else None,
                "started": inputs.started.isoformat(timespec="seconds"),
                "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "device": inputs.device,
                "world_size": torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1,
                "versions": package_versions(),
                "threads": inputs.threads,
                "num_workers": inputs.num_workers,
                "allocator": inputs.allocator,
                "exif": cfg.data.exif,
                "alpha": cfg.data.alpha,
            }
        ),
        report=ReportSettings(language=cfg.report.language),
        **optional,
    )
