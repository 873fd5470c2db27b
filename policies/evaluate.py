"""Judge the targets of one ``kind: metric`` rule (used by :mod:`policies.engine`).

Each target (a condition, a group, an attribute across groups, a section
entry) becomes an :class:`Evaluation`: ``pass``, ``fail`` or
``insufficient_data`` with the observed number. Names that exist nowhere in
the results raise :class:`~policies.errors.PolicyError` through ``error``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from policies import targets as t
from policies.errors import PolicyError
from policies.schema import MetricRule

ErrorFactory = Callable[[str, str], PolicyError]


@dataclass(frozen=True)
class Evaluation:
    """One target of a rule, judged."""

    status: str  # pass | fail | insufficient_data
    observed: float | None
    condition: str | None = None
    group: str | None = None
    n: int | None = None
    note: str = ""


def check_names(results: dict[str, Any], rule: MetricRule, error: ErrorFactory) -> None:
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
            {rule.metric: e[key], f"{rule.metric}_ci": e.get(f"{key}_ci", t.MISSING)}
            for e in results.get("fairness") or []
            if isinstance(e, dict) and key in e
        ]
        if rule.judge == "point":
            nodes, where = t.group_metric_nodes(results) + stored, "group metrics or fairness"
        else:
            nodes, where = stored, f"fairness entries ('{key}_ci')"
    else:
        nodes, where = (
            [e for e in results.get("fairness") or [] if isinstance(e, dict)],
            "fairness entries",
        )
    if not any(isinstance(node, dict) and node for node in nodes):
        return  # nothing of that kind is stored at all: judged as insufficient data
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


def section_evaluations(results: dict[str, Any], rule: MetricRule, error: ErrorFactory) -> list[Evaluation]:
    """Judge ``metric`` in ``results[section]`` (in each ``entry`` matching the glob for a list)."""
    node = results.get(rule.section)  # type: ignore[arg-type]
    if node is None:
        if rule.required or "required" not in rule.model_fields_set:
            have = ", ".join(sorted(str(k) for k in results)) or "none"
            raise error(
                "section",
                f"section {rule.section!r} is not in the results (have: {have}); "
                "set 'required: false' if it may be absent",
            )
        return [Evaluation("insufficient_data", None, note=f"no section {rule.section!r} in the results")]
    if isinstance(node, list):
        if rule.entry is None:
            raise error("entry", f"section {rule.section!r} is a list; name the entry to judge with 'entry'")
        entries = [(t.entry_name(e), e) for e in node if isinstance(e, dict)]
        chosen = [(name, e) for name, e in entries if name is not None and fnmatchcase(name, rule.entry)]
    elif rule.entry is not None:
        chosen = [(str(k), v) for k, v in node.items() if fnmatchcase(str(k), rule.entry)]
    else:
        chosen = [(None, node)]
    if not chosen:
        if rule.required:
            raise error("entry", f"required entry {rule.entry!r} is not in section {rule.section!r}")
        return [Evaluation("insufficient_data", None, note=f"no entry {rule.entry!r} in {rule.section!r}")]
    if not any(t.resolve_path(e, rule.metric) is not t.MISSING for _, e in chosen):
        raise error("metric", f"unknown metric {rule.metric!r} in section {rule.section!r}")
    label = rule.section
    return [
        _judge(rule, e, rule.metric, condition=f"{label}[{name}]" if name else label, n=_n(e)) for name, e in chosen
    ]


def condition_evaluations(results: dict[str, Any], cond: dict[str, Any], rule: MetricRule) -> list[Evaluation]:
    """Judge one condition: its metrics, one group, groups aggregated, or a fairness entry."""
    cid = str(cond.get("id"))
    if rule.attribute is None:
        metrics = cond.get("metrics") or {}
        return [_judge(rule, metrics, rule.metric, condition=cid, n=_n(metrics))]
    if rule.value is not None:
        label = f"{rule.attribute}={rule.value}"
        group = t.find_group(cond, rule.attribute, rule.value)
        if group is None:
            return [Evaluation("insufficient_data", None, cid, label, note=f"no group {label} under {cid}")]
        metrics = group.get("metrics") or {}
        if group.get("insufficient_data"):
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
        return [_judge(rule, metrics, rule.metric, condition=cid, group=label, n=_n(metrics))]
    if rule.aggregate is None:
        return [
            _fairness_evaluation(results, cond, attr, rule)
            for attr in t.fairness_attributes(results, cid, rule.attribute)
        ]
    by_attr = t.groups_by_attribute(cond, rule.attribute)
    attrs = sorted(set(by_attr) | set(t.fairness_attributes(results, cid, rule.attribute)))
    return [_aggregate_evaluation(results, cond, attr, by_attr.get(attr, []), rule) for attr in attrs]


def _eligible(groups: list[dict[str, Any]], rule: MetricRule) -> list[dict[str, Any]]:
    keep = []
    for group in groups:
        n = _n(group.get("metrics") or {})
        if group.get("insufficient_data"):
            continue
        if rule.min_samples is not None and (n is None or n < rule.min_samples):
            continue
        keep.append(group)
    return keep


def _aggregate_evaluation(
    results: dict[str, Any],
    cond: dict[str, Any],
    attr: str,
    groups: list[dict[str, Any]],
    rule: MetricRule,
) -> Evaluation:
    cid = str(cond.get("id"))
    eligible = _eligible(groups, rule)
    excluded = len(groups) - len(eligible)
    note_excluded = f"; {excluded} small group(s) left out" if excluded else ""
    smallest = min((n for g in eligible if (n := _n(g.get("metrics") or {})) is not None), default=None)
    if rule.aggregate == "worst":
        scored = []
        for group in eligible:
            value = t.as_number(t.judged_value(group.get("metrics") or {}, rule.metric, rule.judge))
            if value is not None:
                scored.append((value, f"{attr}={group.get('value')}", _n(group.get("metrics") or {})))
        if not scored:
            return Evaluation(
                "insufficient_data",
                None,
                cid,
                attr,
                note=f"no group of {attr} under {cid} with enough data{note_excluded}",
            )
        value, label, n = (min if rule.op == "min" else max)(scored, key=lambda s: s[0])
        return _compare(rule, value, cid, label, n, f"worst of {len(scored)} {attr} groups{note_excluded}")
    points = [
        (v, str(g.get("value")))
        for g in eligible
        if (v := t.as_number(t.resolve_path(g.get("metrics") or {}, rule.metric))) is not None
    ]
    carried = any(t.resolve_path(g.get("metrics") or {}, rule.metric) is not t.MISSING for g in groups)
    if rule.judge == "point" and carried:
        if len(points) < 2:
            return Evaluation(
                "insufficient_data",
                None,
                cid,
                attr,
                smallest,
                f"fewer than two {attr} groups under {cid} with enough data{note_excluded}",
            )
        (lo, lo_name), (hi, hi_name) = min(points), max(points)
        if rule.aggregate == "gap":
            value = hi - lo
        elif hi > 0:
            value = lo / hi
        else:
            return Evaluation(
                "insufficient_data",
                None,
                cid,
                attr,
                smallest,
                f"ratio undefined: every {attr} group has {rule.metric} 0",
            )
        note = f"{attr}={lo_name} {lo:.4g} vs {attr}={hi_name} {hi:.4g}{note_excluded}"
        return _compare(rule, value, cid, attr, smallest, note)
    entry = t.fairness_entry(results, cid, attr) or {}
    return _judge(
        rule,
        entry,
        f"{rule.metric}_{rule.aggregate}",
        condition=cid,
        group=attr,
        n=smallest,
        note="from the fairness entry",
    )


def _fairness_evaluation(results: dict[str, Any], cond: dict[str, Any], attr: str, rule: MetricRule) -> Evaluation:
    cid = str(cond.get("id"))
    entry = t.fairness_entry(results, cid, attr) or {}
    eligible = _eligible(t.groups_by_attribute(cond, attr).get(attr, []), rule)
    sizes = [n for g in eligible if (n := _n(g.get("metrics") or {})) is not None]
    n = min(sizes) if sizes else _n(cond.get("metrics") or {})
    return _judge(rule, entry, rule.metric, condition=cid, group=attr, n=n, note="from the fairness entry")


def _judge(
    rule: MetricRule,
    node: Any,
    path: str,
    *,
    condition: str | None,
    group: str | None = None,
    n: int | None = None,
    note: str = "",
) -> Evaluation:
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
    return _compare(rule, value, condition, group, n, note)


def _compare(
    rule: MetricRule,
    value: float,
    condition: str | None,
    group: str | None,
    n: int | None,
    note: str,
) -> Evaluation:
    ok = value >= rule.threshold if rule.op == "min" else value <= rule.threshold
    return Evaluation("pass" if ok else "fail", value, condition, group, n, note)


def _n(node: Any) -> int | None:
    n = node.get("n") if isinstance(node, dict) else None
    return int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else None
