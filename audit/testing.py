"""Assertion helpers for audits as tests (used by the pytest plugin and by users).

Example::

    from audit.testing import assert_metric, assert_policy

    def test_night_accuracy(cvaudit_results):
        assert_metric(cvaudit_results, "accuracy", ">=", 0.8, condition="night@3", group=("camera", "B"))

Each helper hides its own frames from pytest tracebacks (``__tracebackhide__``)
and fails with the observed value, the threshold, the interval, n, and the
per-group table of the attribute concerned.

Detection results (``task: detection``) have their own helpers, :func:`assert_map` and
:func:`assert_recall`::

    def test_detector(cvaudit_results):
        assert_map(cvaudit_results, "clean", min=0.5)
        assert_recall(cvaudit_results, "night@3", attribute="object.size", value="small", min=0.4)

The classification helpers refuse detection results, and the detection helpers
classification results, with one line saying which to use.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audit.contract.results import (
        BaselineRow,
        ConditionResult,
        DetectionCondition,
        DetectionGroup,
        DetectionMetrics,
        FairnessEntry,
        GroupResult,
        Metrics,
        Results,
    )

__all__ = [
    "AuditResults",
    "assert_map",
    "assert_metric",
    "assert_no_regression",
    "assert_policy",
    "assert_recall",
    "group_table",
]

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}


class AuditResults:
    """Typed results (:class:`~audit.contract.results.Results`) with a small query API.

    Args:
        results: The results; a mapping (a parsed results.json) is read through the one
            reader (:func:`audit.contract.parse_results`).
        source: Where they came from (a results.json path), for messages.

    Raises:
        ResultsError: ``results`` is a mapping that is not valid results.
    """

    def __init__(self, results: Results | Mapping[str, Any], *, source: str | None = None):
        from audit.contract.load import parse_results
        from audit.contract.results import Results

        if not isinstance(results, Results):
            results = parse_results(dict(results), source=source or "results")
        self.results = results
        self.source = source

    @classmethod
    def load(cls, path: str | Path) -> AuditResults:
        """Read a results.json through the one reader (:func:`audit.contract.load_results`).

        Raises:
            ResultsError: the file is missing or not valid results.
        """
        from audit.contract.load import load_results

        return cls(load_results(path), source=str(path))

    @property
    def verdict(self) -> str | None:
        """``pass`` or ``fail``; None when no policy judged the results."""
        return self.results.verdict

    @property
    def task(self) -> str:
        """``classification`` or ``detection`` (results.json ``task``)."""
        return self.results.task

    @property
    def condition_ids(self) -> list[str]:
        if self.results.task == "detection":
            return [c.id for c in self.detection_conditions]
        return [c.id for c in self.results.conditions or []]

    def condition(self, condition: str = "clean") -> ConditionResult:
        """One classification condition.

        Raises:
            ValueError: these are detection results (use :meth:`detection_condition`).
            KeyError: no such condition.
        """
        if self.results.task != "classification":
            raise ValueError(
                f"these are {self.results.task} results: read them with detection_condition(), "
                "assert_map() or assert_recall()"
            )
        for c in self.results.conditions or []:
            if c.id == condition:
                return c
        raise KeyError(f"no condition {condition!r}; conditions: {self.condition_ids}")

    @property
    def detection_conditions(self) -> list[DetectionCondition]:
        """The conditions of detection results (results.json ``detection.conditions``).

        Raises:
            ValueError: these are classification results.
        """
        if self.results.detection is None:
            raise ValueError(
                f"these are {self.results.task} results, not detection results: read them with "
                "condition(), metric() or assert_metric()"
            )
        return self.results.detection.conditions

    def detection_condition(self, condition: str = "clean") -> DetectionCondition:
        """One condition of detection results.

        Raises:
            ValueError: these are classification results.
            KeyError: no such condition.
        """
        conditions = self.detection_conditions
        for c in conditions:
            if c.id == condition:
                return c
        raise KeyError(f"no condition {condition!r}; conditions: {[c.id for c in conditions]}")

    def detection_group(self, condition: str, attribute: str, value: str) -> DetectionGroup:
        """One group (an image attribute's or an object grouping's) of a detection condition.

        Raises:
            ValueError: these are classification results.
            KeyError: no such condition or group.
        """
        groups = self.detection_condition(condition).groups
        for g in groups:
            if g.attribute == attribute and g.value == value:
                return g
        values = sorted({g.value for g in groups if g.attribute == attribute})
        if not values:
            have = sorted({g.attribute for g in groups})
            raise KeyError(f"no attribute {attribute!r} in {condition!r}; attributes: {have}")
        raise KeyError(f"no group {attribute}={value!r} in {condition!r}; values: {values}")

    def group(self, condition: str, attribute: str, value: str) -> GroupResult:
        groups = self.condition(condition).groups
        for g in groups:
            if g.attribute == attribute and g.value == value:
                return g
        values = sorted({g.value for g in groups if g.attribute == attribute})
        raise KeyError(f"no group {attribute}={value!r} in {condition!r}; values: {values}")

    def metrics(self, *, condition: str = "clean", group: tuple[str, str] | None = None) -> Metrics:
        node = self.condition(condition) if group is None else self.group(condition, *group)
        return node.metrics

    def metric(self, name: str, *, condition: str = "clean", group: tuple[str, str] | None = None) -> Any:
        """One metric, e.g. ``results.metric("accuracy", condition="night@3", group=("camera", "B"))``.

        Raises:
            KeyError: the results carry no metric ``name`` there.
        """
        m = self.metrics(condition=condition, group=group)
        if name not in m.model_fields_set:
            raise KeyError(f"no metric {name!r}; metrics: {sorted(m.model_fields_set)}")
        return getattr(m, name)

    def fairness(self, *, condition: str = "clean", attribute: str) -> FairnessEntry:
        for f in self.results.fairness:
            if f.condition == condition and f.attribute == attribute:
                return f
        raise KeyError(f"no fairness entry for {attribute!r} under {condition!r}")


def _as_results(results: Any) -> AuditResults:
    """Results given as :class:`AuditResults`, a path, typed :class:`~audit.contract.Results` or a dict
    (validated by the one reader)."""
    if isinstance(results, AuditResults):
        return results
    if isinstance(results, (str, Path)):
        return AuditResults.load(results)
    return AuditResults(results)


def _fmt(value: Any) -> str:
    """Rates with three significant digits, intervals likewise (full precision stays in results.json)."""
    from audit.contract.fmt import interval, rate

    if isinstance(value, float):
        return rate(value)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return interval(value)
    return str(value)


def group_table(results: AuditResults, metric: str, *, condition: str, attribute: str) -> str:
    """A plain-text table of ``metric`` for every value of ``attribute``."""
    lines = [f"  {attribute:<20} {'n':>6} {metric:>10} {'95% CI':>20}"]
    for g in results.condition(condition).groups:
        if g.attribute != attribute:
            continue
        m = g.metrics
        flag = "  (insufficient data)" if g.insufficient_data else ""
        value, ci = getattr(m, metric, None), getattr(m, f"{metric}_ci", None)
        lines.append(f"  {g.value:<20} {m.n:>6} {_fmt(value):>10} {_fmt(ci):>20}{flag}")
    return "\n".join(lines)


def assert_metric(
    results: Any,
    metric: str,
    op: str,
    threshold: float,
    *,
    condition: str = "clean",
    group: tuple[str, str] | None = None,
) -> None:
    """Assert ``metric <op> threshold`` for a condition (and group)."""
    __tracebackhide__ = True
    if op not in _OPS:
        raise ValueError(f"op must be one of {sorted(_OPS)}, got {op!r}")
    res = _as_results(results)
    m = res.metrics(condition=condition, group=group)
    observed = getattr(m, metric, None)
    where = condition + ("" if group is None else f", {group[0]}={group[1]}")
    if observed is None or not _OPS[op](observed, threshold):
        lines = [
            f"cvaudit: {metric} {op} {threshold} failed for {where}",
            f"  observed: {_fmt(observed)}  95% CI: {_fmt(getattr(m, f'{metric}_ci', None))}  n: {m.n}",
        ]
        if group is not None:
            lines.append(group_table(res, metric, condition=condition, attribute=group[0]))
        else:
            attributes = list(res.results.dataset.attributes)
            for attr in attributes[:3]:
                lines.append(group_table(res, metric, condition=condition, attribute=attr))
        raise AssertionError("\n".join(lines))


def assert_policy(results: Any, policy: str | Path = "ci-gate") -> dict[str, Any]:
    """Judge the results against ``policy`` (a built-in name or a YAML path); fail if a blocking rule fails."""
    __tracebackhide__ = True
    import policies

    res = _as_results(results)
    outcome = policies.check_policy(res.results, policies.load_policy(policy))
    if outcome["verdict"] != "pass":
        from audit.contract.fmt import failure_lines
        from audit.contract.results import PolicyOutcome

        failures = outcome.get("failures") or []
        lines = [f"cvaudit: policy {outcome['name']} failed ({len(failures)} blocking failure(s))"]
        lines += failure_lines(res.results.model_copy(update={"policy": PolicyOutcome.model_validate(outcome)}))
        raise AssertionError("\n".join(lines))
    return outcome


def _where(row: BaselineRow) -> str:
    group = "" if row.attribute is None else f" {row.attribute}={row.value}"
    return f"{row.condition}{group}"


def assert_no_regression(
    results: Any, baseline: Any, *, tolerance: float = 0.01, conditions: Iterable[str] | None = None
) -> None:
    """Assert that no condition, and no group large enough to judge, lost more than ``tolerance``
    of accuracy against ``baseline`` (see :func:`audit.evaluation.robustness.compare_to_baseline`)."""
    __tracebackhide__ = True
    from audit.evaluation import compare_to_baseline

    res, base = _as_results(results), _as_results(baseline)
    for r in (res, base):
        r.results.require_classification("assert_no_regression")
    min_size = res.results.evaluation.min_group_size
    wanted = set(conditions) if conditions is not None else None
    regressions = [
        f"  {_where(row)}: {_fmt(row.baseline_accuracy)} -> {_fmt(row.accuracy)} ({100 * row.delta:+.1f} pp)"
        for row in compare_to_baseline(
            res.results.conditions, base.results.conditions, tolerance=tolerance, min_group_size=min_size
        )
        if row.regressed and (wanted is None or row.condition in wanted)
    ]
    if regressions:
        raise AssertionError(
            f"cvaudit: accuracy regressed by more than {tolerance} against the baseline in {len(regressions)} place(s):\n"
            + "\n".join(regressions)
        )


def _detection_table(res: AuditResults, metric: str, *, condition: str, attribute: str) -> str:
    """A plain-text table of a detection ``metric`` for every group of ``attribute`` under ``condition``."""
    lines = [f"  {attribute:<20} {'images':>7} {'objects':>8} {metric:>10} {'95% CI':>20}"]
    for g in res.detection_condition(condition).groups:
        if g.attribute != attribute:
            continue
        m = g.metrics
        flag = "  (insufficient data)" if g.insufficient_data else ""
        value, ci = getattr(m, metric, None), getattr(m, f"{metric}_ci", None)
        lines.append(f"  {g.value:<20} {m.n_images:>7} {m.n_objects:>8} {_fmt(value):>10} {_fmt(ci):>20}{flag}")
    return "\n".join(lines)


def _detection_assert(
    results: Any,
    metric: str,
    *,
    condition: str,
    attribute: str | None,
    value: str | None,
    minimum: float,
    helper: str,
) -> None:
    """Fail unless the detection ``metric`` of a condition (or one group) is at least ``minimum``."""
    __tracebackhide__ = True
    if (attribute is None) != (value is None):
        raise ValueError(f"{helper}: give both 'attribute' and 'value', or neither")
    res = _as_results(results)
    if res.results.task != "detection":
        raise ValueError(
            f"{helper} reads detection results (task: detection); these are {res.results.task} results: "
            "use assert_metric()"
        )
    node: DetectionCondition | DetectionGroup = (
        res.detection_condition(condition) if attribute is None else res.detection_group(condition, attribute, value)  # type: ignore[arg-type]
    )
    m: DetectionMetrics = node.metrics
    observed = getattr(m, metric)
    flagged = attribute is not None and node.insufficient_data  # type: ignore[union-attr]
    if observed is not None and observed >= minimum and not flagged:
        return
    where = condition + ("" if attribute is None else f", {attribute}={value}")
    counts = f"n: {m.n_images} images, {m.n_objects} objects"
    if metric == "recall":
        counts += f" (tp {m.tp}, missed {m.fn})"
    lines = [
        f"cvaudit: {metric} >= {minimum} failed for {where}",
        f"  observed: {_fmt(observed)}  95% CI: {_fmt(getattr(m, f'{metric}_ci', None))}  {counts}",
    ]
    if observed is None:
        lines.append(f"  {metric} is null here (no ground-truth objects or no detections to score)")
    if flagged:
        lines.append(
            f"  the group is flagged insufficient_data (fewer than {res.results.evaluation.min_group_size} objects)"
        )
    if attribute is not None:
        lines.append(_detection_table(res, metric, condition=condition, attribute=attribute))
    else:
        lines.append(
            "  per condition: "
            + ", ".join(f"{c.id} {_fmt(getattr(c.metrics, metric))}" for c in res.detection_conditions)
        )
        carried = {g.attribute for g in node.groups if metric in g.metrics.model_fields_set}  # type: ignore[union-attr]
        # the image attributes first, then object size and class, then the other object groupings
        order = {"object.size": 1, "object.class": 2}
        attributes = sorted(carried, key=lambda a: (order.get(a, 3) if a.startswith("object.") else 0, a))
        for attr in attributes[:3]:
            lines.append(_detection_table(res, metric, condition=condition, attribute=attr))
    raise AssertionError("\n".join(lines))


def assert_map(
    results: Any,
    condition: str = "clean",
    *,
    min: float,  # the policy rule's word (shadows the builtin inside only)
    attribute: str | None = None,
    value: str | None = None,
) -> None:
    """Assert that a detector's COCO mAP@[.5:.95] under ``condition`` (and one group) is at least ``min``.

    Args:
        results: detection results: :class:`AuditResults`, a results.json path, typed results or a dict.
        condition: a condition id (``clean``, ``night@3``).
        min: the lowest acceptable mAP.
        attribute: with ``value``, one group: an image attribute (``camera``) or ``object.size`` /
            ``object.class`` (the groupings COCO AP is computed for).
        value: the group's value.

    Raises:
        AssertionError: mAP is below ``min``, null, or the group is flagged insufficient_data; the
            message shows the observed value, n, mAP per condition and the groups' table.
        ValueError: classification results, or only one of ``attribute`` / ``value``.
        KeyError: no such condition or group.
    """
    __tracebackhide__ = True
    _detection_assert(
        results, "map", condition=condition, attribute=attribute, value=value, minimum=min, helper="assert_map"
    )


def assert_recall(
    results: Any,
    condition: str = "clean",
    *,
    min: float,  # the policy rule's word (shadows the builtin inside only)
    attribute: str | None = None,
    value: str | None = None,
) -> None:
    """Assert that a detector's recall at the operating point under ``condition`` (and one group) is at least ``min``.

    Args:
        results: detection results: :class:`AuditResults`, a results.json path, typed results or a dict.
        condition: a condition id (``clean``, ``night@3``).
        min: the lowest acceptable recall (matched objects / objects, at ``detection.score_threshold``
            and ``detection.iou_threshold``).
        attribute: with ``value``, one group: an image attribute (``camera``) or an object grouping
            (``object.size``, ``object.class``, ``object.<key>``).
        value: the group's value.

    Raises:
        AssertionError: recall is below ``min``, null, or the group is flagged insufficient_data; the
            message shows the observed value, its interval, the counts and the groups' table.
        ValueError: classification results, or only one of ``attribute`` / ``value``.
        KeyError: no such condition or group.
    """
    __tracebackhide__ = True
    _detection_assert(
        results, "recall", condition=condition, attribute=attribute, value=value, minimum=min, helper="assert_recall"
    )
