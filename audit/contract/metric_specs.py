"""The metric registry: one :class:`MetricSpec` per metric, and every list of metric names derived from it.

A metric is written down here once (name, label, unit, kind, direction, interval, whether group
gaps and ratios of it are tested, where it is exported) and computed once (the evaluator's
``audit.evaluation.metrics`` for the metrics of a slot and a condition,
:func:`audit.contract.groupstats.fairness_summary` for the differences between groups). Every
other place that needs metric names asks this module:

- the gaps and ratios of a fairness entry (:func:`gap_metric_names`, :func:`ratio_metric_names`)
  and the rate differences (:func:`rate_difference_names`);
- the metrics whose gaps are tested as proportions of counts (:func:`proportion_metric_names`);
- the metrics a run gives an interval (:func:`interval_metric_names`);
- the columns of ``groups.csv`` and the metrics logged to MLflow (:func:`exported`);
- the report's formatting (:func:`share_metric_names`, :func:`count_metric_names`,
  :func:`difference_names`) and its wording (:func:`metric_phrases`);
- the metric table of the documentation (``python -m audit.contract.metric_specs --markdown``,
  committed as ``docs/reference/metrics.md``; a test keeps the two equal).

Adding a metric is one :func:`_register` call below plus its computation; the tests in
``tests/audit/contract/test_metric_specs.py`` fail when the evaluator produces a metric without
a spec, a spec has no computation, or an export leaves a metric out.

Example:
    >>> METRICS["accuracy"].kind, METRICS["accuracy"].higher_is_better
    ('share', True)
    >>> gap_metric_names()[:2]
    ('accuracy', 'balanced_accuracy')
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = [
    "ACCURACY",
    "BENCHMARK_METRICS",
    "DEMOGRAPHIC_PARITY_DIFFERENCE",
    "DETECTION_COUNTS",
    "EQUALIZED_ODDS_DIFFERENCE",
    "EXPORTS",
    "METRICS",
    "REQUIREMENTS",
    "TOP_K_ACCURACY",
    "Export",
    "IntervalKind",
    "MetricKind",
    "MetricSpec",
    "N",
    "Scope",
    "Task",
    "benchmark_metric_names",
    "count_metric_names",
    "detection_interval_names",
    "detection_metric_names",
    "difference_names",
    "exported",
    "gap_metric_names",
    "interval_metric_names",
    "markdown_table",
    "metric_phrases",
    "proportion_metric_names",
    "rate_difference_names",
    "ratio_metric_names",
    "share_metric_names",
    "specs",
]

#: share: a proportion of samples in [0, 1] (shown as a percentage); rate: one such proportion per
#: class; count: a number of samples; score: a number in its own unit (Brier, nats).
MetricKind = Literal["share", "rate", "count", "score"]
#: slot: in every condition's and every group's ``metrics``; condition: in a condition's
#: ``error_types`` only; fairness: in every fairness entry (a difference between groups); benchmark: in
#: results.json ``imagenet_c`` (config ``benchmark``), once per run (:data:`BENCHMARK_METRICS`).
Scope = Literal["slot", "condition", "fairness", "benchmark"]
#: proportion: from the counts, by ``evaluation.interval`` (Wilson, Clopper-Pearson or the
#: bootstrap); bootstrap: the percentile Poisson-bootstrap interval; bias-corrected bootstrap: the
#: bootstrap interval moved by the bootstrap estimate of the bias; none: no interval.
IntervalKind = Literal["proportion", "bootstrap", "bias-corrected bootstrap", "none"]
#: Where a metric's value is written besides results.json: ``groups.csv`` (a column per group row),
#: ``mlflow`` (``<stressor>/<metric>`` per condition), ``mlflow.group`` (per group),
#: ``mlflow.fairness`` (its ``<metric>_gap`` per fairness entry), ``report`` (the HTML report).
Export = Literal["groups.csv", "mlflow", "mlflow.group", "mlflow.fairness", "report"]
#: Every export, in the order of :data:`Export`.
EXPORTS: tuple[Export, ...] = get_args(Export)
#: What a metric measures: a classifier (the default) or an object detector (``task: detection``).
Task = Literal["classification", "detection"]
#: The ``evaluation`` settings a metric may require (:attr:`MetricSpec.requires`).
REQUIREMENTS = ("top_k",)
_KINDS: tuple[MetricKind, ...] = get_args(MetricKind)
_SCOPES: tuple[Scope, ...] = get_args(Scope)
_INTERVAL_KINDS: tuple[IntervalKind, ...] = get_args(IntervalKind)


@dataclass(frozen=True)
class MetricSpec:
    """What cvaudit says about one metric (see the module docstring).

    Attributes:
        name: the key in results.json (``accuracy``); the ``<name>_ci`` key holds its interval.
        label: how a table heads it (``Accuracy``).
        phrase: how a sentence names it (``the expected calibration error (ECE)``).
        unit: its unit in words (``share of samples``, ``nats``).
        kind: share, rate, count or score (:data:`MetricKind`): how it is formatted.
        scope: where results.json holds it (:data:`Scope`).
        higher_is_better: True, False, or None where neither is better (a count).
        interval: how its interval is computed (:data:`IntervalKind`).
        gap_tested: every fairness entry carries ``<name>_gap`` (max - min over groups) with its test.
        ratio_tested: every fairness entry carries ``<name>_ratio`` (min / max over groups).
        exports: where its value is written besides results.json (:data:`Export`).
        interval_exported: its interval's bounds go wherever the value does (``<name>_ci_low``, ``_high``).
        requires: the ``evaluation`` setting without which it is null (``top_k``), or None.
        driver: for a difference between groups, the fairness-entry key saying what drove its value.
        task: the task whose results hold it (``detection``: in results.json's ``detection`` section, a
            condition's and a group's ``metrics``; every derived list is of one task).

    Raises:
        ValueError: on an unknown kind, scope, interval or export, or flags that contradict each other.
    """

    name: str
    label: str
    phrase: str
    unit: str
    kind: MetricKind
    scope: Scope
    higher_is_better: bool | None
    interval: IntervalKind = "none"
    gap_tested: bool = False
    ratio_tested: bool = False
    exports: frozenset[Export] = frozenset()
    interval_exported: bool = False
    requires: str | None = None
    driver: str | None = None
    task: Task = "classification"

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in _KINDS:
            problems.append(f"kind {self.kind!r} is not one of {_KINDS}")
        if self.scope not in _SCOPES:
            problems.append(f"scope {self.scope!r} is not one of {_SCOPES}")
        if self.interval not in _INTERVAL_KINDS:
            problems.append(f"interval {self.interval!r} is not one of {_INTERVAL_KINDS}")
        unknown = set(self.exports) - set(EXPORTS)
        if unknown:
            problems.append(f"exports {sorted(unknown)} are not in {EXPORTS}")
        if (self.gap_tested or self.ratio_tested) and self.scope != "slot":
            problems.append("only a metric of every group (scope 'slot') has group gaps or ratios")
        if self.ratio_tested and self.higher_is_better is not True:
            problems.append("a ratio min / max is tested only for a higher-is-better metric")
        if self.interval_exported and self.interval == "none":
            problems.append("a metric without an interval cannot export one")
        if self.exports - {"report"} and self.scope != "slot":
            problems.append("only a metric of every group (scope 'slot') goes to groups.csv or MLflow")
        if self.requires is not None and self.requires not in REQUIREMENTS:
            problems.append(f"requires {self.requires!r} is not one of {REQUIREMENTS}")
        if "mlflow.fairness" in self.exports and not self.gap_tested:
            problems.append("only a metric with group gaps can export its gap to MLflow")
        if self.scope == "benchmark" and (self.gap_tested or self.interval != "none" or "." not in self.name):
            problems.append("a benchmark metric is named '<section>.<key>' and has no interval or group gap")
        if (self.driver is not None) != (self.scope == "fairness"):
            problems.append("a difference between groups (scope 'fairness'), and only one, names its driver")
        if problems:
            raise ValueError(f"metric {self.name!r}: " + "; ".join(problems))

    @property
    def format_kind(self) -> Literal["share", "count", "number"]:
        """How the report formats a value: a percentage, a number of images, or a plain number."""
        if self.kind in ("share", "rate"):
            return "share"
        return "count" if self.kind == "count" else "number"


#: Every metric by name, in the order they are registered (the order of every derived list).
METRICS: dict[str, MetricSpec] = {}


def _register(spec: MetricSpec) -> MetricSpec:
    """Add ``spec`` to :data:`METRICS`; a name registered twice is a bug."""
    if spec.name in METRICS:
        raise ValueError(f"metric {spec.name!r} is registered twice")
    METRICS[spec.name] = spec
    return spec


_EVERYWHERE: frozenset[Export] = frozenset({"groups.csv", "mlflow", "report"})

N = _register(
    MetricSpec(
        name="n",
        label="Samples",
        phrase="the number of images",
        unit="samples",
        kind="count",
        scope="slot",
        higher_is_better=None,
        exports=frozenset({"groups.csv", "mlflow", "mlflow.group", "report"}),
    )
)
ACCURACY = _register(
    MetricSpec(
        name="accuracy",
        label="Accuracy",
        phrase="accuracy",
        unit="share of samples",
        kind="share",
        scope="slot",
        higher_is_better=True,
        interval="proportion",
        gap_tested=True,
        ratio_tested=True,
        exports=frozenset(EXPORTS),
        interval_exported=True,
    )
)
_register(
    MetricSpec(
        name="balanced_accuracy",
        label="Balanced accuracy",
        phrase="balanced accuracy",
        unit="mean recall over classes",
        kind="share",
        scope="slot",
        higher_is_better=True,
        interval="bootstrap",
        gap_tested=True,
        ratio_tested=True,
        exports=frozenset({"groups.csv", "mlflow"}),
    )
)
_register(
    MetricSpec(
        name="macro_f1",
        label="Macro F1",
        phrase="macro F1",
        unit="mean F1 over classes",
        kind="share",
        scope="slot",
        higher_is_better=True,
        interval="bootstrap",
        gap_tested=True,
        ratio_tested=True,
        exports=_EVERYWHERE,
    )
)
TOP_K_ACCURACY = _register(
    MetricSpec(
        name="top_k_accuracy",
        label="Top-k accuracy",
        phrase="top-k accuracy",
        unit="share of samples",
        kind="share",
        scope="slot",
        higher_is_better=True,
        interval="proportion",
        gap_tested=True,
        ratio_tested=True,
        exports=frozenset({"groups.csv", "mlflow"}),
        requires="top_k",
    )
)
_register(
    MetricSpec(
        name="ece",
        label="ECE",
        phrase="the expected calibration error (ECE)",
        unit="share (confidence - accuracy)",
        kind="share",
        scope="slot",
        higher_is_better=False,
        interval="bias-corrected bootstrap",
        gap_tested=True,
        exports=_EVERYWHERE,
        interval_exported=True,
    )
)
_register(
    MetricSpec(
        name="debiased_l2_ce",
        label="Debiased L2 calibration error",
        phrase="the debiased calibration error",
        unit="share (confidence - accuracy)",
        kind="share",
        scope="slot",
        higher_is_better=False,
        interval="bias-corrected bootstrap",
        gap_tested=True,
        exports=frozenset({"report"}),
    )
)
_register(
    MetricSpec(
        name="mce",
        label="MCE",
        phrase="the maximum calibration error",
        unit="share (confidence - accuracy)",
        kind="share",
        scope="slot",
        higher_is_better=False,
        exports=frozenset({"groups.csv", "mlflow"}),
    )
)
_register(
    MetricSpec(
        name="adaptive_ece",
        label="Adaptive ECE",
        phrase="the adaptive calibration error",
        unit="share (confidence - accuracy)",
        kind="share",
        scope="slot",
        higher_is_better=False,
        exports=frozenset({"groups.csv", "mlflow"}),
    )
)
_register(
    MetricSpec(
        name="brier",
        label="Brier score",
        phrase="the Brier score",
        unit="squared probability, in [0, 2]",
        kind="score",
        scope="slot",
        higher_is_better=False,
        interval="bootstrap",
        gap_tested=True,
        exports=_EVERYWHERE,
    )
)
_register(
    MetricSpec(
        name="nll",
        label="NLL",
        phrase="the negative log-likelihood",
        unit="nats",
        kind="score",
        scope="slot",
        higher_is_better=False,
        interval="bootstrap",
        gap_tested=True,
        exports=_EVERYWHERE,
    )
)
_register(
    MetricSpec(
        name="per_class_fnr",
        label="False-negative rate (per class)",
        phrase="the false-negative rate",
        unit="share of the class's samples",
        kind="rate",
        scope="condition",
        higher_is_better=False,
        interval="proportion",
        exports=frozenset({"report"}),
    )
)
_register(
    MetricSpec(
        name="per_class_fpr",
        label="False-positive rate (per class)",
        phrase="the false-positive rate",
        unit="share of the other classes' samples",
        kind="rate",
        scope="condition",
        higher_is_better=False,
        interval="proportion",
        exports=frozenset({"report"}),
    )
)
_register(
    MetricSpec(
        name="overconfident_errors",
        label="Overconfident errors",
        phrase="the number of overconfident errors",
        unit="samples",
        kind="count",
        scope="condition",
        higher_is_better=False,
        exports=frozenset({"report"}),
    )
)
EQUALIZED_ODDS_DIFFERENCE = _register(
    MetricSpec(
        name="equalized_odds_difference",
        label="Equalized odds difference",
        phrase="the equalized odds difference",
        unit="difference of shares",
        kind="share",
        scope="fairness",
        higher_is_better=False,
        exports=frozenset({"report"}),
        driver="equalized_odds_driver",
    )
)
DEMOGRAPHIC_PARITY_DIFFERENCE = _register(
    MetricSpec(
        name="demographic_parity_difference",
        label="Demographic parity difference",
        phrase="the demographic parity difference",
        unit="difference of shares",
        kind="share",
        scope="fairness",
        higher_is_better=False,
        exports=frozenset({"report"}),
        driver="demographic_parity_driver",
    )
)


def _detection(
    name: str,
    label: str,
    phrase: str,
    unit: str,
    kind: MetricKind,
    better: bool | None,
    interval: IntervalKind = "none",
) -> MetricSpec:
    """Register one metric of a detection audit (in every condition's and group's ``metrics``)."""
    return _register(
        MetricSpec(
            name=name,
            label=label,
            phrase=phrase,
            unit=unit,
            kind=kind,
            scope="slot",
            higher_is_better=better,
            interval=interval,
            exports=frozenset({"groups.csv", "report"}),
            task="detection",
        )
    )


_detection("n_images", "Images", "the number of images", "images", "count", None)
_detection("n_objects", "Objects", "the number of objects", "objects (crowd regions excluded)", "count", None)
_detection("map", "mAP", "the mAP (COCO AP@[.5:.95])", "AP averaged over IoU 0.50:0.95", "share", True)
_detection("map_50", "AP50", "the AP50", "average precision", "share", True)
_detection("map_75", "AP75", "the AP75", "average precision", "share", True)
_detection("map_small", "AP small", "the AP of small objects", "average precision", "share", True)
_detection("map_medium", "AP medium", "the AP of medium objects", "average precision", "share", True)
_detection("map_large", "AP large", "the AP of large objects", "average precision", "share", True)
_detection("ar_1", "AR@1", "the AR@1", "average recall", "share", True)
_detection("ar_10", "AR@10", "the AR@10", "average recall", "share", True)
_detection("ar_100", "AR@100", "the AR@100", "average recall", "share", True)
_detection(
    "precision", "Precision", "precision at the operating point", "share of kept detections", "share", True, "bootstrap"
)
_detection("recall", "Recall", "recall at the operating point", "share of objects", "share", True, "bootstrap")
_detection("f1", "F1", "F1 at the operating point", "harmonic mean", "share", True, "bootstrap")
_detection(
    "fp_per_image", "FP / image", "false positives per image", "detections per image", "score", False, "bootstrap"
)
_detection(
    "missed_per_image", "Missed / image", "missed objects per image", "objects per image", "score", False, "bootstrap"
)
#: The operating point's counts, also per image in detections.csv.
DETECTION_COUNTS = (
    _detection("tp", "TP", "matched detections", "detections", "count", None),
    _detection("fp", "FP", "unmatched detections", "detections", "count", None),
    _detection("fn", "FN", "missed objects", "objects", "count", None),
)


#: The corruption benchmark's metrics (config ``benchmark``), by ``<section>.<key>`` of results.json: a policy
#: judges them with ``section: imagenet_c, metric: <key>``. Kept apart from :data:`METRICS` (whose names are
#: the per-slot keys: ``mce`` there is the maximum calibration error), so no per-slot list includes them.
BENCHMARK_METRICS: dict[str, MetricSpec] = {}


def _benchmark(spec: MetricSpec) -> MetricSpec:
    if spec.name in BENCHMARK_METRICS:
        raise ValueError(f"metric {spec.name!r} is registered twice")
    BENCHMARK_METRICS[spec.name] = spec
    return spec


for _name, _label, _phrase, _unit, _better, _task in (
    ("mce", "mCE", "the mean corruption error (mCE)", "ratio to the baseline's errors", False, "classification"),
    (
        "relative_mce",
        "Relative mCE",
        "the relative mean corruption error",
        "ratio to the baseline's error increase",
        False,
        "classification",
    ),
    (
        "held_out_mce",
        "Held-out mCE",
        "the mean corruption error of the held-out corruptions",
        "ratio",
        False,
        "classification",
    ),
    (
        "held_out_relative_mce",
        "Held-out relative mCE",
        "the relative mean corruption error of the held-out corruptions",
        "ratio",
        False,
        "classification",
    ),
    ("mpc", "mPC", "the mean performance under corruption (mPC)", "mAP", True, "detection"),
    (
        "rpc",
        "rPC",
        "the relative performance under corruption (rPC = mPC ÷ clean mAP)",
        "ratio to clean mAP",
        True,
        "detection",
    ),
    ("held_out_mpc", "Held-out mPC", "the mPC of the held-out corruptions", "mAP", True, "detection"),
):
    _benchmark(
        MetricSpec(
            name=f"imagenet_c.{_name}",
            label=_label,
            phrase=_phrase,
            unit=_unit,
            kind="score",
            scope="benchmark",
            higher_is_better=_better,
            task=_task,  # type: ignore[arg-type]
        )
    )


def benchmark_metric_names(section: str = "imagenet_c") -> tuple[str, ...]:
    """The keys of results.json ``section`` a benchmark rule judges (``mce``, ``relative_mce``, ``mpc`` ...)."""
    return tuple(n.split(".", 1)[1] for n in BENCHMARK_METRICS if n.split(".", 1)[0] == section)


def specs(
    where: Callable[[MetricSpec], bool] | None = None, *, task: Task = "classification"
) -> tuple[MetricSpec, ...]:
    """The registered specs of ``task`` (those ``where`` accepts), in registration order."""
    return tuple(s for s in METRICS.values() if s.task == task and (where is None or where(s)))


def detection_metric_names() -> tuple[str, ...]:
    """The metrics of a detection audit's conditions and groups (results.json ``detection``)."""
    return tuple(s.name for s in specs(task="detection"))


def detection_interval_names() -> frozenset[str]:
    """The detection metrics that carry a cluster-bootstrap interval (``<metric>_ci``) when ``n_bootstrap`` > 0."""
    return frozenset(s.name for s in specs(lambda s: s.interval != "none", task="detection"))


def _names(where: Callable[[MetricSpec], bool]) -> tuple[str, ...]:
    return tuple(s.name for s in specs(where))


def gap_metric_names() -> tuple[str, ...]:
    """Group metrics whose spread (max - min) every fairness entry carries as ``<metric>_gap``."""
    return _names(lambda s: s.gap_tested)


def ratio_metric_names() -> tuple[str, ...]:
    """Higher-is-better group metrics whose ``min / max`` every fairness entry carries as ``<metric>_ratio``."""
    return _names(lambda s: s.ratio_tested)


def rate_difference_names() -> tuple[str, ...]:
    """Fairness-entry statistics that are the largest per-class difference of a rate across groups."""
    return _names(lambda s: s.scope == "fairness")


def proportion_metric_names() -> tuple[str, ...]:
    """Group metrics that are proportions of counts stored in the group (gaps tested with Agresti-Caffo)."""
    return _names(lambda s: s.scope == "slot" and s.interval == "proportion")


def interval_metric_names(*, top_k: bool, bootstrap: bool) -> frozenset[str]:
    """The slot metrics a run gives an interval (``<metric>_ci``).

    Args:
        top_k: ``evaluation.top_k`` is set (metrics that require it are computed).
        bootstrap: ``evaluation.n_bootstrap`` > 0 (bootstrap intervals are computed).

    Returns:
        Proportions always (from the counts), bootstrap intervals only with replicates.
    """
    settings = {"top_k": top_k}
    return frozenset(
        _names(
            lambda s: (
                s.scope == "slot"
                and s.interval != "none"
                and (s.interval == "proportion" or bootstrap)
                and (s.requires is None or settings.get(s.requires, False))
            )
        )
    )


def exported(to: Export) -> tuple[MetricSpec, ...]:
    """The specs exported to ``to`` (see :data:`Export`), in registration order.

    Raises:
        ValueError: ``to`` is not an export.
    """
    if to not in EXPORTS:
        raise ValueError(f"export must be one of {', '.join(EXPORTS)}; got {to!r}")
    return specs(lambda s: to in s.exports)


def share_metric_names() -> frozenset[str]:
    """Metrics the report formats as a percentage (shares and per-class rates)."""
    return frozenset(_names(lambda s: s.format_kind == "share" and s.scope != "fairness"))


def count_metric_names() -> frozenset[str]:
    """Metrics the report formats as a number of images."""
    return frozenset(_names(lambda s: s.format_kind == "count"))


def difference_names() -> frozenset[str]:
    """Statistics that are differences of shares (shown in percentage points): share gaps and rate differences."""
    gaps = {f"{s.name}_gap" for s in specs(lambda s: s.gap_tested and s.kind == "share")}
    return frozenset(gaps | set(rate_difference_names()))


def metric_phrases() -> dict[str, str]:
    """How a sentence names each metric (``the Brier score``), by name."""
    return {s.name: s.phrase for s in (*specs(), *specs(task="detection"))}


def _direction(spec: MetricSpec) -> str:
    return {True: "higher", False: "lower", None: "—"}[spec.higher_is_better]


def markdown_table() -> str:
    """The documentation's metric table (``docs/reference/metrics.md``), generated from the registry."""
    lines = [
        "# Metrics",
        "",
        "<!-- Generated by `python -m audit.contract.metric_specs --markdown` from",
        "     audit/contract/metric_specs.py; edit the registry, not this file (a test compares them). -->",
        "",
        "Every metric cvaudit computes, from its one registry (`audit.contract.metric_specs`).",
        "*Where* is the part of results.json that holds it: `slot` in every condition's and every",
        "group's `metrics`, `condition` in a condition's `error_types`, `fairness` in every fairness",
        "entry. *Gap* and *ratio* say whether every fairness entry carries `<metric>_gap` (with its test)",
        "and `<metric>_ratio`. *Exported* lists where the value is written besides results.json",
        "(`+ interval` when its interval's bounds go with it).",
        "",
        "| Metric | Name | Unit | Kind | Better | Where | Interval | Gap | Ratio | Exported |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in specs():
        exports = ", ".join(e for e in EXPORTS if e in s.exports) or "—"
        if s.interval_exported:
            exports += " + interval"
        requires = f" (needs `evaluation.{s.requires}`)" if s.requires else ""
        lines.append(
            f"| {s.label}{requires} | `{s.name}` | {s.unit} | {s.kind} | {_direction(s)} | {s.scope} "
            f"| {s.interval} | {'yes' if s.gap_tested else 'no'} | {'yes' if s.ratio_tested else 'no'} | {exports} |"
        )
    lines += [
        "",
        "## Definitions",
        "",
        "As the results schema states them (the descriptions in `audit/contract/schema/results.schema.json`):",
        "",
    ]
    lines += [f"- `{s.name}`: {_definition(s)}" for s in specs()]
    lines += [
        "",
        "## Detection metrics",
        "",
        "The metrics of a detection audit (`task: detection`), in every condition's and group's `metrics` of",
        "results.json's `detection` section (see [Auditing an object detector](../detection.md)).",
        "",
        "| Metric | Name | Unit | Kind | Better | Interval | Definition |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in specs(task="detection"):
        lines.append(
            f"| {s.label} | `{s.name}` | {s.unit} | {s.kind} | {_direction(s)} | {s.interval} | {_definition(s)} |"
        )
    lines += [
        "",
        "## Corruption benchmark metrics",
        "",
        "Once per run in results.json's `imagenet_c` (config `benchmark`, see [ImageNet-C](../imagenet-c.md)); a",
        "policy judges them with `section: imagenet_c, metric: <key>`.",
        "",
        "| Metric | Key | Task | Unit | Better | Definition |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in BENCHMARK_METRICS.values():
        lines.append(f"| {s.label} | `{s.name}` | {s.task} | {s.unit} | {_direction(s)} | {_definition(s)} |")
    return "\n".join(lines) + "\n"


def _definition(spec: MetricSpec) -> str:
    """The description of ``spec``'s field in the results models (its one written definition)."""
    from audit.contract.results import (  # the models' module needs no registry
        DetectionMetrics,
        ErrorTypes,
        FairnessEntry,
        Metrics,
    )

    if spec.scope == "benchmark":
        from audit.contract.results import ImageNetCResults

        return ImageNetCResults.model_fields[spec.name.split(".", 1)[1]].description or ""
    if spec.task == "detection":
        return DetectionMetrics.model_fields[spec.name].description or ""
    model = {"slot": Metrics, "condition": ErrorTypes, "fairness": FairnessEntry}[spec.scope]
    return model.model_fields[spec.name].description or ""


def main(argv: list[str] | None = None) -> int:
    """``python -m audit.contract.metric_specs --markdown``: print the metric table."""
    parser = argparse.ArgumentParser(prog="python -m audit.contract.metric_specs", description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the documentation's metric table")
    args = parser.parse_args(argv)
    if not args.markdown:
        parser.print_help()
        return 2
    sys.stdout.write(markdown_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
