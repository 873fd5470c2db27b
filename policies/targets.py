"""Find what a rule points at inside a results dict (pure look-ups, no judging).

Metric paths are dotted keys with optional list selectors:
``accuracy``, ``per_class.3.recall``, ``attacks[id=pgd].success_rate``,
``curve[0]``. The interval of a metric ``a.b`` is ``a.b_ci`` = ``[lo, hi]``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from audit.contract.conditions import is_glob

MISSING: Any = object()
"""Returned by :func:`resolve_path` when the path does not exist."""

_SEGMENT = re.compile(r"([^.\[\]]+)|\[([^\]=]+)=([^\]]*)\]|\[(\d+)\]|(\.)")
_ENTRY_NAME_KEYS = ("id", "check", "name", "condition")


def resolve_path(node: Any, path: str) -> Any:
    """Follow a dotted/keyed path into nested dicts and lists.

    Args:
        node: A dict or list from results.json.
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
            if isinstance(node, dict) and key in node:
                node = node[key]
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
            match = [e for e in node if isinstance(e, dict) and str(e.get(sel_key)) == sel_value]
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


def entry_name(entry: dict[str, Any]) -> str | None:
    """The name of a list entry: its ``id``, ``check``, ``name`` or ``condition``."""
    for key in _ENTRY_NAME_KEYS:
        if entry.get(key) is not None:
            return str(entry[key])
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


def select_conditions(results: dict[str, Any], selector: str) -> list[dict[str, Any]]:
    """The stored conditions a rule's ``selector`` picks (:func:`selector_matches`), in order."""
    return [
        cond
        for cond in results.get("conditions") or []
        if isinstance(cond, dict) and selector_matches(selector, str(cond.get("id", "")), probe=bool(cond.get("probe")))
    ]


def condition_ids(results: dict[str, Any]) -> list[str]:
    """Ids of all stored conditions, in order."""
    return [str(c.get("id")) for c in results.get("conditions") or [] if isinstance(c, dict)]


def known_attributes(results: dict[str, Any]) -> dict[str, set[str]]:
    """Attribute -> values, from ``dataset.attributes`` and every condition's groups."""
    known: dict[str, set[str]] = {}
    dataset_attrs = (results.get("dataset") or {}).get("attributes") or {}
    if isinstance(dataset_attrs, dict):
        for attr, counts in dataset_attrs.items():
            known.setdefault(str(attr), set()).update(str(v) for v in (counts if isinstance(counts, dict) else []))
    for cond in results.get("conditions") or []:
        for group in _groups(cond):
            known.setdefault(str(group.get("attribute")), set()).add(str(group.get("value")))
    return known


def _groups(cond: Any) -> list[dict[str, Any]]:
    if not isinstance(cond, dict):
        return []
    return [g for g in cond.get("groups") or [] if isinstance(g, dict)]


def groups_by_attribute(cond: dict[str, Any], attribute: str) -> dict[str, list[dict[str, Any]]]:
    """The condition's groups whose attribute matches the glob ``attribute``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for group in _groups(cond):
        attr = str(group.get("attribute"))
        if fnmatchcase(attr, attribute):
            out.setdefault(attr, []).append(group)
    return out


def find_group(cond: dict[str, Any], attribute: str, value: str) -> dict[str, Any] | None:
    """The group ``attribute=value`` of a condition, or ``None``."""
    for group in _groups(cond):
        if str(group.get("attribute")) == attribute and str(group.get("value")) == value:
            return group
    return None


def fairness_entry(results: dict[str, Any], condition_id: str, attribute: str) -> dict[str, Any] | None:
    """The ``fairness`` entry of one condition and attribute, or ``None``."""
    for entry in results.get("fairness") or []:
        if (
            isinstance(entry, dict)
            and str(entry.get("condition")) == condition_id
            and str(entry.get("attribute")) == attribute
        ):
            return entry
    return None


def fairness_attributes(results: dict[str, Any], condition_id: str, attribute: str) -> list[str]:
    """Attributes matching the glob that have a fairness entry for the condition."""
    return sorted(
        {
            str(e.get("attribute"))
            for e in results.get("fairness") or []
            if isinstance(e, dict)
            and str(e.get("condition")) == condition_id
            and fnmatchcase(str(e.get("attribute")), attribute)
        }
    )


def metric_names(nodes: Iterable[Any]) -> list[str]:
    """Sorted keys of metric dicts (for "unknown metric" messages)."""
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, dict):
            names.update(str(k) for k in node)
    return sorted(names)


def group_metric_nodes(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every stored group's ``metrics`` dict."""
    return [g.get("metrics") or {} for cond in results.get("conditions") or [] for g in _groups(cond)]


def condition_metric_nodes(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every stored condition's ``metrics`` dict."""
    return [c.get("metrics") or {} for c in results.get("conditions") or [] if isinstance(c, dict)]
