"""MLflow names and steps of a run's metrics (docs/integrations/mlflow.md): one metric per stressor and quantity, the
severity as the step; readable name parts, hashed only on a collision. A classifier's metrics come from
results.json's ``conditions`` and ``fairness``, a detector's (``task: detection``) from its ``detection`` section,
under the same names: ``<stressor>/<metric>``, ``<stressor>/group/<attribute>/<value>/<metric>``,
``<stressor>/fairness/<attribute>/<gap>``, ``summary/...``, ``policy/pass``."""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from audit.contract.metric_specs import BENCHMARK_METRICS, exported, specs
from audit.contract.results import ConditionResult, FairnessEntry, Metrics, Results
from audit.contract.results.detection import DetectionCondition, DetectionGapTest, DetectionMetrics

__all__ = [
    "CONDITION_METRICS",
    "DETECTION_METRICS",
    "STEP_SCALE",
    "condition_metric_names",
    "detection_metric_names",
    "fairness_gap_names",
    "group_metric_names",
    "metric_values",
    "readable",
    "severity_steps",
    "step_params",
]


def condition_metric_names() -> tuple[str, ...]:
    """The per-condition metrics logged, from the metric registry (``mlflow`` exports), with interval bounds
    as ``<metric>_ci_low`` / ``_ci_high`` where the registry exports them."""
    return tuple(
        name
        for spec in exported("mlflow")
        for name in (
            (spec.name, f"{spec.name}_ci_low", f"{spec.name}_ci_high") if spec.interval_exported else (spec.name,)
        )
    )


def group_metric_names() -> tuple[str, ...]:
    """The per-group metrics logged (``<prefix>/group/<attribute>/<value>/<metric>``; ``mlflow.group`` exports)."""
    return tuple(spec.name for spec in exported("mlflow.group"))


def fairness_gap_names() -> tuple[str, ...]:
    """The fairness gaps logged (``<prefix>/fairness/<attribute>/<metric>_gap``; ``mlflow.fairness`` exports)."""
    return tuple(f"{spec.name}_gap" for spec in exported("mlflow.fairness"))


#: Per-condition metrics logged (:func:`condition_metric_names` when this module was imported).
CONDITION_METRICS = condition_metric_names()


#: A severity that is not a whole number (an attack's ε, a fractional severity) is logged at
#: step round(severity × STEP_SCALE): MLflow steps are integers, and this keeps 6 decimals and
#: the spacing of the sweep (the curve's shape), which a step = index mapping would not.
STEP_SCALE = 1_000_000
_PARAM_LIMIT = 6000  # MLflow's limit on a parameter value
_REFUSED = re.compile(r"[^\w.\- ]")
_RESERVED = frozenset({"clean", "summary", "policy"})


def readable(text: Any) -> str:
    """``text`` with ``×`` as ``_x_`` and every other character MLflow refuses as ``_``."""
    return _REFUSED.sub("_", str(text).replace("×", "_x_"))


def _hashed(raw: str, safe: str) -> str:
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:8]
    return f"{safe[:48]}_{digest}" if safe.strip(". ") else digest


def _names(raws: Iterable[Any], reserved: frozenset[str] = frozenset()) -> dict[str, str]:
    """Readable, distinct names for one kind of part (see the module docstring)."""
    raws = sorted({str(r) for r in raws})
    safe = {r: readable(r) for r in raws}
    count: dict[str, int] = defaultdict(int)
    for name in safe.values():
        count[name] += 1
    out = {}
    for raw, name in safe.items():
        odd = len(name) > 64 or not name.strip(". ") or name in reserved
        out[raw] = _hashed(raw, name) if odd or (count[name] > 1 and name != raw) else name
    return out


def severity_steps(severities: Iterable[float]) -> dict[float, int]:
    """The MLflow step of each severity of one stressor.

    Whole-number severities (the usual 1..5) are their own step; when any is not a whole
    number (an attack's ε, fractional severities) every one is logged at
    ``round(severity × STEP_SCALE)`` (ε = 0.007843 -> 7843); should two severities meet at
    the same step, the step is the severity's rank in the sweep (1, 2, ...). Step 0 is the
    clean condition unless the stressor itself has a severity at step 0.

    >>> severity_steps([1.0, 3.0])
    {1.0: 1, 3.0: 3}
    >>> severity_steps([0.031373, 0.007843])
    {0.007843: 7843, 0.031373: 31373}
    """
    values = sorted({float(v) for v in severities})
    if all(v.is_integer() for v in values):
        return {v: int(v) for v in values}
    scaled = {v: round(v * STEP_SCALE) for v in values}
    if len(set(scaled.values())) == len(values):
        return scaled
    return {v: i for i, v in enumerate(values, start=1)}


def _metrics(prefix: str, metrics: Metrics | DetectionMetrics, names: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for name in names:
        if name.endswith(("_ci_low", "_ci_high")):
            base, _, end = name.rpartition("_ci_")
            ci = getattr(metrics, f"{base}_ci")
            value = None if not ci else ci[0 if end == "low" else 1]
        else:
            value = getattr(metrics, name)
        if value is not None and not isinstance(value, bool):
            out[f"{prefix}/{name}"] = float(value)
    return out


def _condition_values(
    condition: ConditionResult, fairness: list[FairnessEntry], prefix: str, attrs: dict, values: dict
) -> dict[str, float]:
    out = _metrics(prefix, condition.metrics, condition_metric_names())
    for g in condition.groups:
        group = f"{prefix}/group/{attrs[str(g.attribute)]}/{values[str(g.attribute)][str(g.value)]}"
        out.update(_metrics(group, g.metrics, group_metric_names()))
    for f in fairness:
        if f.condition != condition.id:
            continue
        for gap in fairness_gap_names():
            value = getattr(f, gap)
            if value is not None:
                out[f"{prefix}/fairness/{attrs[str(f.attribute)]}/{gap}"] = float(value)
    return out


def _task_conditions(results: Results) -> list[Any]:
    """The conditions of either task, clean first (each has ``id``, ``stressor``, ``severity``, ``groups``)."""
    if results.task == "detection":
        assert results.detection is not None  # the results model: task detection has its section
        return list(results.detection.conditions)
    return list(results.conditions or [])


def _compared_attributes(results: Results) -> list[str]:
    """Attributes whose groups are compared: fairness entries, or a detection audit's gap tests."""
    if results.task == "detection":
        assert results.detection is not None
        return [t.attribute for t in results.detection.gap_tests]
    return [f.attribute for f in results.fairness or []]


def _layout(results: Results) -> tuple[dict, dict, dict, dict]:
    """Names of stressors, attributes and values, and each stressor's steps."""
    conditions = _task_conditions(results)
    stressed = [c for c in conditions if c.id != "clean"]
    stressors = _names((c.stressor or c.id.partition("@")[0] for c in stressed), _RESERVED)
    attrs = _names([g.attribute for c in conditions for g in c.groups] + _compared_attributes(results))
    by_attr: dict[str, set[str]] = defaultdict(set)
    for c in conditions:
        for g in c.groups:
            by_attr[str(g.attribute)].add(str(g.value))
    values = {a: _names(v) for a, v in by_attr.items()}
    sweeps: dict[str, list[float]] = defaultdict(list)
    for c in stressed:
        sweeps[str(c.stressor or c.id.partition("@")[0])].append(float(c.severity))
    steps = {s: severity_steps(v) for s, v in sweeps.items()}
    return stressors, attrs, values, steps


def detection_metric_names() -> tuple[str, ...]:
    """The metrics logged per condition and per group of a detection audit: every detection metric of the
    registry (:func:`audit.contract.metric_specs.specs` with ``task="detection"``), with ``<metric>_ci_low`` /
    ``_ci_high`` after each metric that has an interval; a group logs those it has (object-level groups: the
    objects' counts, recall and, for size and class, AP)."""
    return tuple(
        name
        for spec in specs(task="detection")
        for name in (
            (spec.name, f"{spec.name}_ci_low", f"{spec.name}_ci_high") if spec.interval != "none" else (spec.name,)
        )
    )


#: The detection metrics logged per condition and group (:func:`detection_metric_names` at import).
DETECTION_METRICS = detection_metric_names()


def _bounds(prefix: str, ci: Any) -> dict[str, float]:
    if not ci or ci[0] is None or ci[1] is None:
        return {}
    return {f"{prefix}_ci_low": float(ci[0]), f"{prefix}_ci_high": float(ci[1])}


def _detection_values(
    condition: DetectionCondition, gap_tests: list[DetectionGapTest], prefix: str, attrs: dict, values: dict
) -> dict[str, float]:
    """One detection condition: its metrics, its groups', D-ECE, the TIDE dAPs and the recall gap tests."""
    out = _metrics(prefix, condition.metrics, DETECTION_METRICS)
    for g in condition.groups:
        group = f"{prefix}/group/{attrs[str(g.attribute)]}/{values[str(g.attribute)][str(g.value)]}"
        out.update(_metrics(group, g.metrics, DETECTION_METRICS))
    calibration = condition.calibration
    if calibration is not None and calibration.dece is not None:
        out[f"{prefix}/dece"] = float(calibration.dece)
    for t in condition.tide or []:
        out[f"{prefix}/tide/{t.error}/dap"] = float(t.dap)
        out[f"{prefix}/tide/{t.error}/count"] = float(t.count)
    for t in gap_tests:
        if t.condition != condition.id:
            continue
        name = f"{prefix}/fairness/{attrs[str(t.attribute)]}/recall_gap"
        if t.gap is not None:
            out[name] = float(t.gap)
            out.update(_bounds(name, t.gap_ci))
        if t.p_holm is not None:
            out[f"{name}_p_holm"] = float(t.p_holm)
    return out


def _summary_values(results: Results, stressors: dict[str, str]) -> dict[str, float]:
    """``summary/...``: mCE of a classifier; mPC, rPC and each stressor's mean mAP of a detector; and with a
    corruption benchmark (config ``benchmark``) its metrics as ``summary/imagenet_c/<key>`` (``.../mce``)."""
    out: dict[str, float] = {}
    if results.imagenet_c is not None:
        for name in BENCHMARK_METRICS:
            section, key = name.split(".", 1)
            value = getattr(results.imagenet_c, key)
            if section == "imagenet_c" and value is not None:
                out[f"summary/imagenet_c/{key}"] = float(value)
    if results.task == "detection":
        assert results.detection is not None
        robustness = results.detection.robustness
        if robustness is None:
            return out
        for name, value in (("mpc", robustness.mpc), ("rpc", robustness.rpc)):
            if value is not None:
                out[f"summary/{name}"] = float(value)
        for row in robustness.stressors:
            name = stressors.get(row.stressor)
            for key, value in (("mean_map", row.mean_map), ("relative_map", row.relative)):
                if name is not None and value is not None:
                    out[f"summary/{name}/{key}"] = float(value)
        return out
    summary = results.robustness_summary
    if summary is not None:
        for name, value in (("mce", summary.mce), ("relative_mce", summary.relative_mce)):
            if value is not None:
                out[f"summary/{name}"] = float(value)
    return out


def metric_values(results: Results) -> dict[tuple[str, int], float]:
    """Every metric a run logs, by its MLflow name and step (see the module docstring).

    Args:
        results: The results (:func:`audit.contract.load_results`), with a ``policy`` section; a
            classifier's (``conditions``) or a detector's (``detection``).

    Returns:
        (MLflow metric name, step) -> value; undefined values (null in results.json) are left out.
    """
    stressors, attrs, values, steps = _layout(results)
    if results.task == "detection":
        assert results.detection is not None
        gap_tests = list(results.detection.gap_tests)

        def of(c: Any, prefix: str) -> dict[str, float]:
            return _detection_values(c, gap_tests, prefix, attrs, values)
    else:
        fairness = list(results.fairness or [])

        def of(c: Any, prefix: str) -> dict[str, float]:
            return _condition_values(c, fairness, prefix, attrs, values)

    conditions = _task_conditions(results)
    out: dict[tuple[str, int], float] = {}
    clean = next((c for c in conditions if c.id == "clean"), None)
    if clean is not None:
        for name, value in of(clean, "clean").items():
            out[(name, 0)] = value
    for raw, name in stressors.items():
        if clean is not None and 0 not in steps[raw].values():  # the clean image starts every curve
            for metric, value in of(clean, name).items():
                out[(metric, 0)] = value
    for c in conditions:
        if c.id == "clean":
            continue
        raw = str(c.stressor or c.id.partition("@")[0])
        step = steps[raw][float(c.severity)]
        for metric, value in of(c, stressors[raw]).items():
            out[(metric, step)] = value
    for name, value in _summary_values(results, stressors).items():
        out[(name, 0)] = value
    policy = results.policy
    if policy is not None and not policy.report_only:  # a report-only run gates nothing
        out[("policy/pass", 0)] = 1.0 if policy.verdict == "pass" else 0.0
    return out


def step_params(results: Results) -> dict[str, str]:
    """``cvaudit.steps.<stressor>``: JSON ``[[step, severity], ...]``, so each step's severity (ε) is recoverable."""
    stressors, _, _, steps = _layout(results)
    out = {}
    for raw, name in stressors.items():
        pairs = [[0, 0.0] if 0 not in steps[raw].values() else None] + [[s, v] for v, s in steps[raw].items()]
        text = json.dumps([p for p in pairs if p is not None])
        out[f"cvaudit.steps.{name}"] = text if len(text) <= _PARAM_LIMIT else text[: _PARAM_LIMIT - 1] + "…"
    return out
