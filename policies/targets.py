"""Find what a rule points at inside typed results (pure look-ups, no judging).

A path is resolved on the :class:`~audit.contract.results.Results` model: a key
names a model field (one the results carry: a field left unset, as an absent
key in results.json, is missing), or a key of a mapping the model holds
(``per_class_fnr``, ``settings``, a statistic computed on the fly).

Metric paths are dotted keys with optional list selectors:
``accuracy``, ``per_class.3.recall``, ``attacks[id=pgd].success_rate``,
``curve[0]``. The interval of a metric ``a.b`` is ``a.b_ci`` = ``[lo, hi]``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from pydantic import BaseModel

from audit.contract.conditions import is_glob
from audit.contract.results import ConditionResult, FairnessEntry, GroupResult, Results

MISSING: Any = object()
"""Returned by :func:`resolve_path` when the path does not exist."""

_SEGMENT = re.compile(r"([^.\[\]]+)|\[([^\]=]+)=([^\]]*)\]|\[(\d+)\]|(\.)")
_ENTRY_NAME_KEYS = ("id", "check", "name", "condition")


def field(node: Any, key: str) -> Any:
    """One key of a results node: a field the model carries, or a mapping's key; else :data:`MISSING`.

    A model field that was not set (an absent key in results.json) is missing, as the key would be.

    >>> field({"a": 1}, "a"), field({"a": 1}, "b") is MISSING
    (1, True)
    """
    if isinstance(node, BaseModel):
        return getattr(node, key) if key in node.model_fields_set else MISSING
    if isinstance(node, Mapping) and key in node:
        return node[key]
    return MISSING


def get(node: Any, key: str, default: Any = None) -> Any:
    """:func:`field`, with ``default`` for a missing key."""
    value = field(node, key)
    return default if value is MISSING else value


def keys(node: Any) -> list[str]:
    """The keys a results node carries, in order (a model's set fields, a mapping's keys)."""
    if isinstance(node, BaseModel):
        return [k for k in type(node).model_fields if k in node.model_fields_set]
    if isinstance(node, Mapping):
        return [str(k) for k in node]
    return []


def is_node(node: Any) -> bool:
    """Whether ``node`` is an object of the results (a model or a mapping), not a value or a list."""
    return isinstance(node, (BaseModel, Mapping))


def resolve_path(node: Any, path: str) -> Any:
    """Follow a dotted/keyed path into the results' models, mappings and lists.

    Args:
        node: A results model (or a mapping or list inside one).
        path: e.g. ``"accuracy"``, ``"a.b"``, ``"items[id=x].v"``, ``"items[0]"``.

    Returns:
        The value, or :data:`MISSING`.

    >>> resolve_path({"a": [{"id": "x", "v": 1}]}, "a[id=x].v")
    1
    """
    for token in _SEGMENT.finditer(path):
        key, sel_key, sel_value, index, dot = token.groups()
        if dot:
            continue
        if key is not None:
            if is_node(node) and field(node, key) is not MISSING:
                node = field(node, key)
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                return MISSING
        elif index is not None:
            if not isinstance(node, list) or int(index) >= len(node):
                return MISSING
            node = node[int(index)]
        else:
            if not isinstance(node, list):
                return MISSING
            match = [e for e in node if is_node(e) and str(get(e, sel_key)) == sel_value]
            if not match:
                return MISSING
            node = match[0]
    return node


def judged_value(node: Any, path: str, judge: str) -> Any:
    """The point estimate (``judge="point"``) or a bound of ``<path>_ci``.

    Returns:
        The raw stored value, or :data:`MISSING`.
    """
    if judge == "point":
        return resolve_path(node, path)
    interval = resolve_path(node, f"{path}_ci")
    if interval is MISSING:
        return MISSING
    if not isinstance(interval, (list, tuple)) or len(interval) != 2:
        return None
    return interval[0] if judge == "ci_lower" else interval[1]


def as_number(value: Any) -> float | None:
    """A finite float, or ``None`` for null, NaN, infinities and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def entry_name(entry: Any) -> str | None:
    """The name of a list entry: its ``id``, ``check``, ``name`` or ``condition``."""
    for key in _ENTRY_NAME_KEYS:
        if get(entry, key) is not None:
            return str(get(entry, key))
    return None


def selector_matches(selector: str, condition_id: str, *, probe: bool = False) -> bool:
    """Whether a rule's condition selector (:attr:`policies.schema.MetricRule.selector`) picks a condition.

    The one matching rule for every spelling of a target (``condition: night@2``,
    ``stressor: night, severity: 2``, ``condition: "night@*"``, ``stressor: night``):
    an exact id picks that condition; a glob picks every condition whose id it
    matches except attack sanity probes (``probe: true``), which a rule judges
    only when it names one exactly.

    >>> selector_matches("night@*", "night@2"), selector_matches("pgd@*", "pgd@0.5", probe=True)
    (True, False)
    """
    if not is_glob(selector):
        return condition_id == selector
    return fnmatchcase(condition_id, selector) and not probe


def select_conditions(results: Results, selector: str) -> list[ConditionResult]:
    """The stored conditions a rule's ``selector`` picks (:func:`selector_matches`), in order."""
    return [cond for cond in results.conditions or [] if selector_matches(selector, cond.id, probe=bool(cond.probe))]


def condition_ids(results: Results) -> list[str]:
    """Ids of all stored conditions, in order."""
    return [c.id for c in results.conditions or []]


def known_attributes(results: Results) -> dict[str, set[str]]:
    """Attribute -> values, from ``dataset.attributes`` and every condition's groups."""
    known: dict[str, set[str]] = {}
    for attr, counts in (results.dataset.attributes or {}).items():
        known.setdefault(str(attr), set()).update(str(v) for v in counts)
    for cond in results.conditions or []:
        for group in cond.groups:
            known.setdefault(str(group.attribute), set()).add(str(group.value))
    return known


def groups_by_attribute(cond: ConditionResult, attribute: str) -> dict[str, list[GroupResult]]:
    """The condition's groups whose attribute matches the glob ``attribute``."""
    out: dict[str, list[GroupResult]] = {}
    for group in cond.groups:
        if fnmatchcase(str(group.attribute), attribute):
            out.setdefault(str(group.attribute), []).append(group)
    return out


def find_group(cond: ConditionResult, attribute: str, value: str) -> GroupResult | None:
    """The group ``attribute=value`` of a condition, or ``None``."""
    for group in cond.groups:
        if str(group.attribute) == attribute and str(group.value) == value:
            return group
    return None


def fairness_entry(results: Results, condition_id: str, attribute: str) -> FairnessEntry | None:
    """The ``fairness`` entry of one condition and attribute, or ``None``."""
    for entry in results.fairness or []:
        if str(entry.condition) == condition_id and str(entry.attribute) == attribute:
            return entry
    return None


def fairness_attributes(results: Results, condition_id: str, attribute: str) -> list[str]:
    """Attributes matching the glob that have a fairness entry for the condition."""
    return sorted(
        {
            str(e.attribute)
            for e in results.fairness or []
            if str(e.condition) == condition_id and fnmatchcase(str(e.attribute), attribute)
        }
    )


def metric_names(nodes: Iterable[Any]) -> list[str]:
    """Sorted keys of metric nodes (for "unknown metric" messages)."""
    names: set[str] = set()
    for node in nodes:
        names.update(keys(node))
    return sorted(names)


def group_metric_nodes(results: Results) -> list[Any]:
    """Every stored group's ``metrics``."""
    return [g.metrics for cond in results.conditions or [] for g in cond.groups]


def condition_metric_nodes(results: Results) -> list[Any]:
    """Every stored condition's ``metrics``."""
    return [c.metrics for c in results.conditions or []]
