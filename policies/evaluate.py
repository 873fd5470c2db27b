"""Judge the targets of one ``kind: metric`` rule (used by :mod:`policies.engine`).

Each target (a condition, a group, an attribute across groups, a section
entry) becomes an :class:`Evaluation`: ``pass``, ``fail`` or
``insufficient_data`` with the observed number. Names that exist nowhere in
the results raise :class:`~policies.errors.PolicyError` through ``error``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import Any

from audit.contract.groupstats import fairness_summary, takes_part
from audit.contract.metric_specs import METRICS
from audit.contract.results import ConditionResult, FairnessEntry, GroupMetrics, GroupResult, Metrics, Results
from policies import targets as t
from policies.errors import PolicyError
from policies.schema import MetricRule

ErrorFactory = Callable[[str, str], PolicyError]

#: Keys the contract defines for each kind of node (older results may lack the newer ones).
_CONTRACT_KEYS = {
    "condition metrics": frozenset(Metrics.model_fields),
    "group metrics": frozenset(GroupMetrics.model_fields),
    "fairness entries": frozenset(FairnessEntry.model_fields),
}


@dataclass(frozen=True)
class Evaluation:
    """One target of a rule, judged.

    A difference between groups also carries ``groups`` (the stored groups, flat) and the
    sizes its test uses (``min_n``, ``min_positives``) until :func:`policies.engine` tests it;
    then ``p_value`` and ``min_detectable`` (and ``test``, the
    :class:`~audit.contract.gaptests.TargetTest`; a ``detect`` test also its ``power``, the
    :class:`~audit.contract.power.TargetPower`). A detection gap decided by its stored interval
    (:mod:`policies.detection`) says what the interval showed in ``decided_by``.
    """

    status: str  # pass | fail | insufficient_data | not_applicable
    observed: float | None
    condition: str | None = None
    group: str | None = None
    n: int | None = None
    note: str = ""
    groups: tuple[dict[str, Any], ...] | None = None  # as fairness_summary takes them (see _flat)
    min_n: int = 0
    min_positives: int = 0
    p_value: float | None = None
    min_detectable: float | None = None
    test: Any = None
    decided_by: str | None = None  # a test decided the status (not the point estimate): what it showed
    power: Any = None  # a detect test: its audit.contract.power.TargetPower (None: no alternative stated)


def check_names(results: Results, rule: MetricRule, error: ErrorFactory) -> None:
    """Raise on a metric, interval, attribute or value that exists nowhere."""
    if rule.attribute is not None and not any(ch in rule.attribute for ch in "*?["):
        known = t.known_attributes(results)
        if rule.attribute not in known:
            raise error(
                "attribute",
                f"attribute {rule.attribute!r} is not in the results (have: {', '.join(sorted(known)) or 'none'})",
            )
        if rule.value is not None and rule.value not in known[rule.attribute]:
            have = ", ".join(sorted(known[rule.attribute]))
            raise error("value", f"group {rule.attribute}={rule.value} is not in the results (have: {have})")
    if rule.attribute is None:
        nodes, where = t.condition_metric_nodes(results), "condition metrics"
    elif rule.value is not None or rule.aggregate == "worst":
        nodes, where = t.group_metric_nodes(results), "group metrics"
    elif rule.aggregate is not None:
        key = f"{rule.metric}_{rule.aggregate}"
        stored = [
            {rule.metric: t.field(e, key), f"{rule.metric}_ci": t.field(e, f"{key}_ci")}
            for e in results.fairness or []
            if t.field(e, key) is not t.MISSING
        ]
        if rule.judge == "point":
            nodes, where = t.group_metric_nodes(results) + stored, "group metrics or fairness"
        else:
            nodes, where = stored, f"fairness entries ('{key}_ci')"
    else:
        nodes, where = list(results.fairness or []), "fairness entries"
    if not any(t.keys(node) for node in nodes):
        return  # nothing of that kind is stored at all: judged as insufficient data
    if rule.metric in _CONTRACT_KEYS.get(where, ()):
        return  # a key of the contract that results written before it existed lack: insufficient data
    if not any(t.resolve_path(node, rule.metric) is not t.MISSING for node in nodes):
        have = ", ".join(n for n in t.metric_names(nodes) if not n.endswith("_ci")) or "none"
        raise error("metric", f"unknown metric {rule.metric!r} in {where} (have: {have})")
    if rule.judge != "point" and not any(
        t.resolve_path(n, f"{rule.metric}_ci") not in (t.MISSING, None) for n in nodes
    ):
        raise error(
            "judge",
            f"judge {rule.judge!r} needs an interval '{rule.metric}_ci' in {where}, which the results lack",
        )


def section_evaluations(results: Results, rule: MetricRule, error: ErrorFactory) -> list[Evaluation]:
    """Judge ``metric`` in the results' ``section`` (in each ``entry`` matching the glob for a list).

    An entry flagged ``insufficient_data: true`` (a group too small to judge, e.g. in
    ``breaking_points``) is judged ``insufficient_data``. A section, entry or key that is absent
    is ``not_applicable`` when the rule says ``required: false`` (as an absent condition is).
    """
    node = t.get(results, rule.section)  # type: ignore[arg-type]
    if node is None:
        if not rule.optional:
            have = ", ".join(sorted(t.keys(results))) or "none"
            raise error(
                "section",
                f"section {rule.section!r} is not in the results (have: {have}); "
                "set 'required: false' if it may be absent",
            )
        return [
            Evaluation("not_applicable", None, note=f"no section {rule.section!r} in the results (required: false)")
        ]
    if isinstance(node, list):
        if rule.entry is None:
            raise error("entry", f"section {rule.section!r} is a list; name the entry to judge with 'entry'")
        entries = [(t.entry_name(e), e) for e in node if t.is_node(e)]
        chosen = [(name, e) for name, e in entries if name is not None and fnmatchcase(name, rule.entry)]
    elif rule.entry is not None:
        chosen = [(k, t.field(node, k)) for k in t.keys(node) if fnmatchcase(k, rule.entry)]
    else:
        chosen = [(None, node)]
    if not chosen:
        if rule.required:
            raise error("entry", f"required entry {rule.entry!r} is not in section {rule.section!r}")
        if rule.optional:  # as for a condition: a target the rule says may be absent is not applicable
            return [
                Evaluation(
                    "not_applicable", None, note=f"no entry {rule.entry!r} in {rule.section!r} (required: false)"
                )
            ]
        return [Evaluation("insufficient_data", None, note=f"no entry {rule.entry!r} in {rule.section!r}")]
    if not any(t.resolve_path(e, rule.metric) is not t.MISSING for _, e in chosen):
        null = next((p for _, e in chosen for p in _prefixes(rule.metric) if t.resolve_path(e, p) is None), None)
        if null is not None:  # a known key stored as null (e.g. detection.robustness without stressors)
            return [Evaluation("insufficient_data", None, rule.section, note=f"{null} is null in {rule.section!r}")]
        if rule.optional:  # a key older results lack (a known key)
            return [
                Evaluation("not_applicable", None, note=f"no {rule.metric!r} in {rule.section!r} (required: false)")
            ]
        raise error("metric", f"unknown metric {rule.metric!r} in section {rule.section!r}")
    label = rule.section
    return [
        Evaluation("insufficient_data", None, f"{label}[{name}]", None, _n(e), "flagged insufficient_data")
        if t.get(e, "insufficient_data") is True
        else judge_target(rule, e, rule.metric, condition=f"{label}[{name}]" if name else label, n=_n(e))
        for name, e in chosen
    ]


def _prefixes(path: str) -> list[str]:
    """The proper dotted prefixes of a path: ``a.b.c`` -> ``a``, ``a.b``."""
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def condition_evaluations(results: Results, cond: ConditionResult, rule: MetricRule) -> list[Evaluation]:
    """Judge one condition: its metrics, one group, groups aggregated, or a fairness entry."""
    cid = cond.id
    if rule.attribute is None:
        metrics = cond.metrics
        return [judge_target(rule, metrics, rule.metric, condition=cid, n=_n(metrics))]
    if rule.value is not None:
        label = f"{rule.attribute}={rule.value}"
        group = t.find_group(cond, rule.attribute, rule.value)
        if group is None:
            return [Evaluation("insufficient_data", None, cid, label, note=f"no group {label} under {cid}")]
        metrics = group.metrics
        if group.insufficient_data:
            return [
                Evaluation(
                    "insufficient_data",
                    None,
                    cid,
                    label,
                    _n(metrics),
                    f"group {label} under {cid} is flagged insufficient_data",
                )
            ]
        return [judge_target(rule, metrics, rule.metric, condition=cid, group=label, n=_n(metrics))]
    if rule.aggregate is None:
        return [
            _fairness_evaluation(results, cond, attr, rule)
            for attr in t.fairness_attributes(results, cid, rule.attribute)
        ]
    by_attr = t.groups_by_attribute(cond, rule.attribute)
    attrs = sorted(set(by_attr) | set(t.fairness_attributes(results, cid, rule.attribute)))
    return [_aggregate_evaluation(results, cond, attr, by_attr.get(attr, []), rule) for attr in attrs]


def _min_group_size(results: Results, rule: MetricRule) -> tuple[int, bool]:
    """The group size a rule judges with, and whether the rule raised it above the results' own.

    One definition of "too small to judge": ``evaluation.min_group_size`` of the
    results; a rule's ``min_samples`` can only raise it.
    """
    base = results.evaluation.min_group_size
    if rule.min_samples is not None and rule.min_samples > base:
        return rule.min_samples, True
    return base, False


def _flat(groups: list[GroupResult]) -> list[dict[str, Any]]:
    """Stored groups as :func:`~audit.contract.groupstats.fairness_summary` takes them: the group's value
    and the metrics the group carries."""
    return [{"value": str(g.value), **{k: t.field(g.metrics, k) for k in t.keys(g.metrics)}} for g in groups]


def _group_summary(
    results: Results, cid: str, attr: str, groups: list[GroupResult], rule: MetricRule, key: str
) -> tuple[Any, int]:
    """The fairness entry of (condition, attribute) as the evaluator stored it, or, when the rule
    raises the group size or sets ``min_positives`` (or the results predate ``key``), the same
    statistics from the one definition (:func:`~audit.contract.groupstats.fairness_summary`) over
    the stored groups."""
    min_n, raised = _min_group_size(results, rule)
    entry = t.fairness_entry(results, cid, attr)
    positives = rule.min_positives or 0
    stored_positives = t.get(entry, "min_positives") or 0
    if not raised and entry is not None and t.field(entry, key) is not t.MISSING and positives == stored_positives:
        return entry, min_n
    return fairness_summary(_flat(groups), min_group_size=min_n, min_positives=positives), min_n


def _smallest(groups: list[GroupResult], min_n: int) -> int | None:
    sizes = [n for g in groups if takes_part(n := _n(g.metrics), min_n)]
    return min(sizes) if sizes else None


def _aggregate_evaluation(
    results: Results,
    cond: ConditionResult,
    attr: str,
    groups: list[GroupResult],
    rule: MetricRule,
) -> Evaluation:
    cid = cond.id
    min_n, _ = _min_group_size(results, rule)
    taking_part = [g for g in groups if takes_part(_n(g.metrics), min_n)]
    left_out = len(groups) - len(taking_part)
    note_excluded = f"; {left_out} small group(s) left out (n < {min_n})" if left_out else ""
    if rule.aggregate == "worst":
        scored = []
        for group in taking_part:
            value = t.as_number(t.judged_value(group.metrics, rule.metric, rule.judge))
            if value is not None:
                scored.append((value, f"{attr}={group.value}", _n(group.metrics)))
        if not scored:
            return Evaluation(
                "insufficient_data",
                None,
                cid,
                attr,
                note=f"no group of {attr} under {cid} with enough data{note_excluded}",
            )
        value, label, n = (min if rule.op == "min" else max)(scored, key=lambda s: s[0])
        return compare(rule, value, cid, label, n, f"worst of {len(scored)} {attr} groups{note_excluded}")
    key = f"{rule.metric}_{rule.aggregate}"
    if rule.judge != "point":  # an interval of a gap is stored by the evaluator or not at all
        entry = t.fairness_entry(results, cid, attr)
        return judge_target(
            rule, entry, key, condition=cid, group=attr, n=_smallest(groups, min_n), note="from the fairness entry"
        )
    summary, min_n = _group_summary(results, cid, attr, groups, rule, key)
    value = t.as_number(t.get(summary, key))
    if value is None:
        reason = (
            f"fewer than two {attr} groups under {cid} with at least {min_n} samples{note_excluded}"
            if (t.get(summary, "groups_compared") or len(taking_part)) < 2
            else f"{key} is undefined for {attr} under {cid}"
        )
        return Evaluation("insufficient_data", None, cid, attr, _smallest(groups, min_n), reason)
    points = [(v, str(g.value)) for g in taking_part if (v := t.as_number(t.get(g.metrics, rule.metric))) is not None]
    note = note_excluded.lstrip("; ")
    if len(points) >= 2:  # which groups the spread runs between (selected, not computed)
        (lo, lo_name), (hi, hi_name) = min(points), max(points)
        note = f"{attr}={lo_name} {lo:.4g} vs {attr}={hi_name} {hi:.4g}{note_excluded}"
    judged = compare(rule, value, cid, attr, _smallest(groups, min_n), note)
    return replace(judged, groups=tuple(_flat(groups)), min_n=min_n) if rule.test_mode != "point" else judged


def _fairness_evaluation(results: Results, cond: ConditionResult, attr: str, rule: MetricRule) -> Evaluation:
    """A fairness-entry metric (equalized odds, demographic parity ...) of one attribute, with the rule's
    group size and ``min_positives``; ``n`` is the smallest count behind the rates that drove the value."""
    cid = cond.id
    groups = t.groups_by_attribute(cond, attr).get(attr, [])
    summary, min_n = _group_summary(results, cid, attr, groups, rule, rule.metric)
    n = _smallest(groups, min_n)
    note = f"groups with >= {min_n} samples"
    spec = METRICS.get(rule.metric)
    driver_key = None if spec is None else spec.driver
    driver = t.get(summary, driver_key) if driver_key else None
    sizes = t.get(driver, "n")
    if isinstance(sizes, list) and sizes:
        n = min(int(x) for x in sizes)
        names = results.model.class_names
        index = t.get(driver, "class_index")
        label = names[index] if isinstance(index, int) and 0 <= index < len(names) else index
        lo, hi = (t.get(driver, "groups") or [None, None])[:2]
        note = (
            f"class {label} {t.get(driver, 'rate')}: {attr}={lo} (n={sizes[0]}) vs {attr}={hi} "
            f"(n={sizes[1]}); groups with >= {min_n} samples"
        )
    judged = judge_target(rule, summary, rule.metric, condition=cid, group=attr, n=n, note=note)
    if rule.test_mode == "point" or judged.status not in ("pass", "fail"):
        return judged
    return replace(judged, groups=tuple(_flat(groups)), min_n=min_n, min_positives=rule.min_positives or 0)


def judge_target(
    rule: MetricRule,
    node: Any,
    path: str,
    *,
    condition: str | None,
    group: str | None = None,
    n: int | None = None,
    note: str = "",
) -> Evaluation:
    """Judge the value at ``path`` of ``node`` (its point estimate, or an end of ``<path>_ci`` as the rule's
    ``judge`` says); missing, null or below ``min_samples`` is insufficient data."""
    raw = t.judged_value(node, path, rule.judge)
    if raw is t.MISSING:
        what = path if rule.judge == "point" else f"{path}_ci"
        return Evaluation("insufficient_data", None, condition, group, n, f"{what} is not stored for this target")
    value = t.as_number(raw)
    if value is None:
        return Evaluation("insufficient_data", None, condition, group, n, f"{path} is null or not a finite number")
    if rule.min_samples is not None and n is not None and n < rule.min_samples:
        return Evaluation(
            "insufficient_data",
            value,
            condition,
            group,
            n,
            f"n={n} < min_samples {rule.min_samples}",
        )
    return compare(rule, value, condition, group, n, note)


def compare(
    rule: MetricRule,
    value: float,
    condition: str | None,
    group: str | None,
    n: int | None,
    note: str,
) -> Evaluation:
    """``pass`` when ``value`` meets the rule's bound (``>= min`` or ``<= max``), else ``fail``."""
    ok = value >= rule.threshold if rule.op == "min" else value <= rule.threshold
    return Evaluation("pass" if ok else "fail", value, condition, group, n, note)


def _n(node: Any) -> int | None:
    n = t.get(node, "n")
    return int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else None
