"""Early stopping (``evaluation.early_stop``): evaluate in a random order, stop what is decided.

Samples are evaluated in a seeded, stratified random order (:func:`stratified_order`), so
every prefix of the run is a random sample in which each (group values..., class) stratum
keeps its share. After every batch, :class:`StopMonitor` looks at each condition's blocking
rule targets (:func:`policies.early_stop.stop_targets` says which): a target is decided when
the anytime-valid test of :mod:`audit.contract.sequential` shows its accuracy above or below
the rule's threshold at level ``alpha`` — and the rule, judged on the counts so far as the
policy will judge the stored results, agrees. A condition stops when every target on it is
decided and it has at least ``min_samples`` samples; a condition no blocking rule reads stops
at ``min_samples``; a condition read by a rule without an anytime-valid test (a gap,
calibration, a robustness section ...) runs to the end. The run ends when every condition
has stopped.

Each target's error is at most ``alpha`` over the whole run however often it is checked
(Ville's inequality); a target still undecided at the end of the data is judged on all of
it, as without early stopping.
"""

from __future__ import annotations

import heapq
import tempfile
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from audit.contract import csvfile
from audit.contract.intervals import proportion_interval
from audit.contract.metric_specs import TOP_K_ACCURACY
from audit.contract.seeds import MASK63, derive_seed
from audit.contract.sequential import confidence_bound, decide
from audit.evaluation.groups import SlotLayout

__all__ = ["StopMonitor", "sort_rows", "stratified_order"]


def stratified_order(sample_keys: Sequence[int] | Tensor, strata: Sequence[Hashable], *, seed: int) -> list[int]:
    """A seeded random order of the samples in which every prefix is stratified.

    Within a stratum the samples are ranked by ``derive_seed(seed, "early-stop", key)``;
    member ``r`` of a stratum of size ``m`` is placed at ``(r + u) / m``, ``u`` a seeded offset
    in [0, 1) per stratum, and the samples are sorted by that place. A prefix of any length
    therefore holds each stratum in proportion to its size (to within one sample).

    Args:
        sample_keys: one int key per sample.
        strata: one hashable per sample, e.g. ``(camera, ink, label)``.
        seed: the audit seed.

    Returns:
        Positions into ``sample_keys``, in evaluation order.

    Raises:
        ValueError: the lengths differ.

    Example:
        >>> order = stratified_order([1, 2, 3, 4], ["a", "a", "b", "b"], seed=0)
        >>> sorted(order), sorted(["ab"[i // 2] for i in order[:2]])
        ([0, 1, 2, 3], ['a', 'b'])
    """
    keys = sample_keys.tolist() if isinstance(sample_keys, Tensor) else [int(k) for k in sample_keys]
    if len(keys) != len(strata):
        raise ValueError(f"stratified_order: {len(keys)} sample keys but {len(strata)} strata")
    members: dict[Hashable, list[int]] = {}
    for index, stratum in enumerate(strata):
        members.setdefault(stratum, []).append(index)
    placed: list[tuple[float, int, int]] = []
    for stratum, indices in members.items():
        offset = derive_seed(seed, "early-stop-offset", repr(stratum)) / (MASK63 + 1)
        ranked = sorted(indices, key=lambda i: derive_seed(seed, "early-stop", keys[i]))
        for r, i in enumerate(ranked):
            placed.append(((r + offset) / len(ranked), derive_seed(seed, "early-stop", keys[i]), i))
    placed.sort()
    return [i for _, _, i in placed]


@dataclass
class _Target:
    rule: str
    slot: int
    group: str | None
    metric: str
    op: str
    threshold: float
    judge: str
    min_n: int
    decision: dict[str, Any] | None = None


@dataclass
class _Condition:
    id: str
    available: int
    model_aware: bool
    targets: list[_Target] = field(default_factory=list)
    full: str | None = None
    stopped: bool = False
    stopped_at: int | None = None


class StopMonitor:
    """Decides, after every batch, which conditions may stop (see the module docstring).

    Args:
        records: from :func:`policies.early_stop.stop_targets`.
        conditions: ``(condition id, model_aware)`` in run order.
        available: samples each condition would evaluate without early stopping.
        layout: the run's slots (to find a group's slot).
        slot_sizes: samples of each slot in the data (groups too small to judge are left out).
        min_samples: every condition evaluates at least this many samples.
        min_group_size: ``evaluation.min_group_size``.
        alpha: each target's error (one side), 1 - confidence_level over 2.
        interval: ``evaluation.interval`` (the judge of ``ci_lower``/``ci_upper`` rules).
        level: ``evaluation.confidence_level``.
        hold_clean: clean runs while an attack runs (the attacks' clean reference comes from it).
    """

    def __init__(
        self,
        records: Sequence[dict[str, Any]],
        *,
        conditions: Sequence[tuple[str, bool]],
        available: dict[str, int],
        layout: SlotLayout,
        slot_sizes: Sequence[int],
        min_samples: int,
        min_group_size: int,
        alpha: float = 0.025,
        interval: str = "wilson",
        level: float = 0.95,
        hold_clean: bool = False,
    ) -> None:
        self.min_samples, self.alpha, self.level = min_samples, alpha, level
        self.interval = interval if interval != "bootstrap" else "wilson"
        self.hold_clean = hold_clean
        self.conditions = {cid: _Condition(cid, available[cid], aware) for cid, aware in conditions}
        groupings = {g.name: g for g in layout.groupings}
        for record in records:
            cond = self.conditions.get(record["condition"])
            if cond is None:
                continue
            if "full" in record:
                cond.full = cond.full or record["full"]
                continue
            min_n = max(int(record.get("min_samples") or 0), 1)
            if record["attribute"] is None:
                slots = [(0, None)]
            else:
                grouping = groupings[record["attribute"]]
                values = [record["value"]] if record["value"] is not None else list(grouping.values)
                min_n = max(min_n, min_group_size)
                slots = [(layout.slot_of(grouping, v), f"{grouping.name}={v}") for v in values]
                # a group that cannot reach the size to judge is insufficient either way
                slots = [(s, label) for s, label in slots if slot_sizes[s] >= min_n]
            for slot, label in slots:
                cond.targets.append(
                    _Target(
                        record["rule"],
                        slot,
                        label,
                        record["metric"],
                        record["op"],
                        float(record["threshold"]),
                        record["judge"],
                        min_n,
                    )
                )

    def active(self, condition_id: str) -> bool:
        """Whether the condition still evaluates samples."""
        cond = self.conditions.get(condition_id)
        return cond is None or not cond.stopped

    def all_stopped(self) -> bool:
        return all(c.stopped for c in self.conditions.values())

    def _agrees(self, target: _Target, k: int, n: int, passed: bool) -> bool:
        """The rule, judged on the counts so far as the policy judges stored results, gives the same."""
        if target.judge == "point":
            value = k / n
        else:
            lo, hi = proportion_interval(k, n, method=self.interval, level=self.level)
            value = lo if target.judge == "ci_lower" else hi
        ok = value >= target.threshold if target.op == "min" else value <= target.threshold
        return ok == passed

    def _decide(self, target: _Target, stats: Any) -> None:
        n = int(stats.confusion[target.slot].sum())
        if n < target.min_n:
            return
        if target.metric == TOP_K_ACCURACY.name:
            k = int(stats.topk_correct[target.slot])
        else:
            k = int(torch.diagonal(stats.confusion[target.slot]).sum())
        side = decide(k, n, target.threshold, alpha=self.alpha)
        if side is None:
            return
        passed = (side == "above") == (target.op == "min")
        if self._agrees(target, k, n, passed):
            target.decision = {
                "rule": target.rule,
                "group": target.group,
                "decision": "pass" if passed else "fail",
                "n": n,
                "observed": k / n,
                "bound": confidence_bound(k, n, side, alpha=self.alpha),
            }

    def after_batch(self, stats: dict[str, Any]) -> None:
        """Decide what the counts now show and stop the conditions that are done.

        Args:
            stats: condition id -> its AuditStats (counts so far).
        """
        for cond in self.conditions.values():
            if cond.stopped or cond.id not in stats:
                continue
            for target in cond.targets:
                if target.decision is None:
                    self._decide(target, stats[cond.id])
        # attacks first: clean may be held for them
        for cond in sorted(self.conditions.values(), key=lambda c: c.id == "clean"):
            if cond.stopped or cond.full is not None or cond.id not in stats:
                continue
            n_all = int(stats[cond.id].confusion[0].sum())
            if n_all < min(self.min_samples, cond.available):
                continue
            if all(t.decision is not None for t in cond.targets) and not self._held(cond):
                cond.stopped = True

    def _held(self, cond: _Condition) -> bool:
        return (
            self.hold_clean
            and cond.id == "clean"
            and any(not c.stopped for c in self.conditions.values() if c.model_aware)
        )

    def summary(self, condition_id: str, samples_used: int) -> dict[str, Any]:
        """The ``early_stop`` record of one condition for results.json."""
        cond = self.conditions[condition_id]
        decisions = [dict(t.decision) for t in cond.targets if t.decision is not None]
        stopped = samples_used < cond.available
        if stopped and decisions:
            last = max(d["n"] for d in decisions)
            reason = f"every blocking rule on it was decided by an anytime-valid test (the last after {last} samples)"
        elif stopped:
            reason = f"no blocking rule reads it: stopped after the minimum of {self.min_samples} samples"
        elif cond.full is not None:
            reason = f"ran to the end: {cond.full}"
        elif any(t.decision is None for t in cond.targets):
            undecided = sorted({t.rule for t in cond.targets if t.decision is None})
            reason = f"ran to the end: {', '.join(undecided)} not decided before the data ran out"
        else:
            reason = "ran to the end of the data"
        return {
            "samples_used": samples_used,
            "samples_available": cond.available,
            "stopped": stopped,
            "reason": reason,
            "decisions": decisions,
        }


def sort_rows(
    path: Path, *, key: Callable[[list[str]], Any], chunk: int = 200_000, lineterminator: str = "\r\n"
) -> None:
    """Sort a headerless CSV file by ``key`` in chunks of ``chunk`` rows (then a merge), in place.

    The predictions rows of an early-stopped run come in evaluation order; this puts them back in
    dataset order with memory bounded by ``chunk`` rows. The file is read and written with cvaudit's one CSV
    writer (:mod:`audit.contract.csvfile`; ``key`` sees the values, formula guard undone), lines ending in
    ``lineterminator`` (predictions.csv's CRLF by default).
    """
    parts: list[Path] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csvfile.reader(fh)
        while True:
            rows = [row for _, row in zip(range(chunk), reader)]
            if not rows:
                break
            rows.sort(key=key)
            handle, name = tempfile.mkstemp(prefix="rows-", suffix=".csv", dir=path.parent)
            with open(handle, "w", newline="", encoding="utf-8") as out:
                csvfile.writer(out, lineterminator=lineterminator).writerows(rows)
            parts.append(Path(name))
    try:
        files = [open(p, newline="", encoding="utf-8") for p in parts]  # noqa: SIM115 (closed below)
        try:
            with open(path, "w", newline="", encoding="utf-8") as fh:
                merged = heapq.merge(*(csvfile.reader(f) for f in files), key=key)
                csvfile.writer(fh, lineterminator=lineterminator).writerows(merged)
        finally:
            for f in files:
                f.close()
    finally:
        for p in parts:
            p.unlink(missing_ok=True)
