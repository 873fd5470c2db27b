"""Per-sample breaking points: the lowest severity (or ε) at which a sample's prediction breaks.

For every stressor entry with two or more evaluated severities (attacks: two or
more ε > 0), each sample right on the clean image gets its breaking point: the
lowest evaluated severity at which its prediction is wrong (state ``broken``),
or ``never``; a sample wrong on clean has none (state ``wrong_on_clean``). They
are derived from ``predictions.csv`` (read as a stream: rows of one sample are
consecutive), so no image is held in memory and no forward pass is repeated.

Refinement (config ``breaking_points: {stressors: [...], resolution: 0.25}``)
runs extra forward passes only for the samples that need them:

- an image stressor with fractional severities (``night``, ``blur``, ...):
  a sample right at level a and wrong at the next evaluated level b is
  bisected in (a, b] with fractional severities until the bracket is at most
  ``resolution`` wide (at most ``max_steps`` evaluations); the result is the
  upper end, the lowest severity found wrong, and ``survived`` the lower end;
  below the stressor's lowest level nothing is evaluated;
- an attack whose class sets ``bisectable`` (PGD, FGSM): the same bisection
  over ε in (a, b] down to ``epsilon_resolution``, one attack run per step
  (cost: at most ``max_steps`` attacks of a breaking sample);
- an attack whose class sets ``minimal_perturbation_method`` (DeepFool): the
  L∞ size of its minimal perturbation (one run per batch of samples right on
  clean), capped by the grid value; an upper bound on the true minimal ε.

A bisection finds *a* crossing inside the bracket: a sample whose prediction
flips back and forth between the two levels may break lower still.

Summaries (results.json ``breaking_points``): per stressor, over all samples
and per group, the survival curve (share of the samples right on clean still
right at each evaluated severity), the lower median breaking point ('never'
counted as above every severity) and its distribution-free 95 % interval from
order statistics: ranks l and n - l + 1 with l the largest rank such that
P(B <= l - 1) <= 0.025 for B ~ Binomial(n, 1/2) (coverage >= 95 % for any
distribution, ties included). ``breaking_point_disparity`` compares the
groups of each attribute: the largest gap between their surviving shares at
one severity, and the gap between their medians.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from scipy.stats import binom
from torch import Tensor

from audit.contract import csvfile
from audit.contract.config import BreakingPointsConfig, ModelConfig
from audit.contract.errors import AuditError
from audit.contract.groupstats import takes_part
from audit.evaluation.conditions import Condition
from audit.evaluation.data import AuditDataset, SampleTable, make_loader

__all__ = [
    "BREAKING_POINTS_CSV",
    "CSV_COLUMNS",
    "RefineContext",
    "SampleBreak",
    "Track",
    "check_refinement",
    "compute_breaking_points",
    "derive",
    "median_interval_ranks",
    "run_breaking_points",
    "tracks_of",
]

#: The per-sample file next to predictions.csv.
BREAKING_POINTS_CSV = "breaking_points.csv"
#: Its columns, then one column per attribute.
CSV_COLUMNS = ("sample_id", "stressor", "measure", "breaking_point", "survived", "state", "method", "flips")


def _minimal_method(stressor: Any) -> str | None:
    """The results ``method`` of an attack whose breaking ε is its own minimal perturbation, else None."""
    return getattr(stressor, "minimal_perturbation_method", None)


def _refinable_attack(stressor: Any) -> bool:
    return bool(getattr(stressor, "bisectable", False) or _minimal_method(stressor))


def _refinable_attacks() -> list[str]:
    """Registered attacks whose breaking ε can be refined (their class traits say so)."""
    import stressors

    classes = {name: stressors.factory(name) for name in stressors.available()}
    return [name for name, cls in classes.items() if getattr(cls, "model_aware", False) and _refinable_attack(cls)]


_SEP = "×"

Rows = Callable[[], Iterator[list[str]]]


@dataclass(frozen=True)
class Track:
    """One stressor entry whose breaking points are derived.

    Attributes:
        label: the entry's name in condition ids (its label when given).
        stressor: the registered stressor name (``night``, ``pgd``).
        measure: ``severity``, ``epsilon``, or the stressor's own ``breaking_measure`` (``area_share``: a
            patch's share of the image area).
        levels: the evaluated severities (or ε > 0), increasing.
        conditions: the condition id of each level.
    """

    label: str
    stressor: str
    measure: str
    levels: tuple[float, ...]
    conditions: tuple[str, ...]


def tracks_of(conditions: Iterable[Mapping[str, Any]], names: Mapping[str, str] | None = None) -> list[Track]:
    """The stressor entries with two or more levels, from condition dicts.

    Args:
        conditions: dicts with ``id``, ``stressor`` (the label), ``severity``,
            ``model_aware`` and optionally ``probe`` (as in results.json).
        names: label -> registered stressor name (default: the label).

    Returns:
        One :class:`Track` per entry, in order of first appearance. Attack
        levels at ε = 0 and conditions flagged ``probe`` are left out.
    """
    found: dict[str, list[tuple[float, str]]] = {}
    aware: dict[str, bool] = {}
    measures: dict[str, str | None] = {}
    for cond in conditions:
        label = cond.get("stressor")
        if label is None or cond.get("probe"):
            continue
        severity = float(cond["severity"])
        if cond.get("model_aware") and severity <= 0:
            continue
        found.setdefault(str(label), []).append((severity, str(cond["id"])))
        aware[str(label)] = bool(cond.get("model_aware"))
        measures[str(label)] = cond.get("measure")
    out = []
    for label, points in found.items():
        points.sort()
        if len(points) >= 2:
            out.append(
                Track(
                    label,
                    (names or {}).get(label, label),
                    measures.get(label) or ("epsilon" if aware[label] else "severity"),
                    tuple(p[0] for p in points),
                    tuple(p[1] for p in points),
                )
            )
    return out


@dataclass
class SampleBreak:
    """The breaking point of one sample under one stressor (a row of breaking_points.csv)."""

    sample_id: str
    track: Track
    state: str  # broken | never | wrong_on_clean
    breaking: float | None
    survived: float | None
    flips: int
    method: str
    attributes: dict[str, str]
    label: int


# ------------------------------------------------------------------- deriving


def _sample_groups(rows: Iterator[list[str]]) -> Iterator[tuple[str, dict[str, list[str]]]]:
    """(sample id, condition id -> row) for each sample; rows of one sample are consecutive."""
    current: str | None = None
    by_condition: dict[str, list[str]] = {}
    for row in rows:
        if row[0] != current:
            if current is not None:
                yield current, by_condition
            current, by_condition = row[0], {}
        by_condition[row[1]] = row
    if current is not None:
        yield current, by_condition


def derive(
    sample_id: str, rows: Mapping[str, list[str]], track: Track, attributes: Sequence[str]
) -> SampleBreak | None:
    """The grid breaking point of one sample, or None when it was not evaluated under ``track``.

    Args:
        rows: condition id -> predictions.csv row (columns of
            :data:`audit.contract.predictions.PREDICTIONS_COLUMNS`, then the attributes).
    """
    clean = rows.get("clean")
    if clean is None or any(cid not in rows for cid in track.conditions):
        return None
    label = int(clean[4])
    predictions = [int(clean[5])] + [int(rows[cid][5]) for cid in track.conditions]
    flips = sum(1 for a, b in zip(predictions, predictions[1:]) if a != b)
    attrs = dict(zip(attributes, clean[9:]))
    if predictions[0] != label:
        return SampleBreak(sample_id, track, "wrong_on_clean", None, None, flips, "grid", attrs, label)
    survived = 0.0
    for level, prediction in zip(track.levels, predictions[1:]):
        if prediction != label:
            return SampleBreak(sample_id, track, "broken", level, survived, flips, "grid", attrs, label)
        survived = level
    return SampleBreak(sample_id, track, "never", None, survived, flips, "grid", attrs, label)


# ------------------------------------------------------------------- refining


@dataclass
class RefineContext:
    """What the refinement's extra forward passes need (the runner's objects)."""

    model: torch.nn.Module
    table: SampleTable
    model_cfg: ModelConfig
    keys: Tensor
    seed: int
    batch_size: int
    device: torch.device
    conditions: list[Condition] = field(default_factory=list)
    decoding: dict[str, Any] = field(default_factory=dict)  # AuditDataset's keywords: data.exif, data.alpha...

    def stressor(self, label: str) -> Any:
        return next(c.stressor for c in self.conditions if c.stressor is not None and c.label == label)


def check_refinement(cfg: BreakingPointsConfig, conditions: list[Condition], *, source: str = "config") -> None:
    """Fail before the audit when ``breaking_points.stressors`` names an entry that cannot be refined.

    Raises:
        AuditError: an unknown entry, one with fewer than two levels, or a stressor
            without fractional severities (or an attack that is neither ``bisectable`` nor
            has a ``minimal_perturbation_method``).
    """
    labels = {c.label: c for c in conditions if c.stressor is not None}
    runnable = {t.label for t in tracks_of(_condition_dicts(conditions))}
    for name in cfg.stressors:
        where = f"{source}: breaking_points.stressors: {name!r}"
        if name not in labels:
            raise AuditError(f"{where} is not a stressor entry of this config (have: {', '.join(labels) or 'none'})")
        if name not in runnable:
            raise AuditError(f"{where} needs two or more severities (attacks: two or more epsilons > 0)")
        stressor = labels[name].stressor
        if labels[name].model_aware:
            if not _refinable_attack(stressor):
                supported = ", ".join(_refinable_attacks())
                raise AuditError(f"{where}: attack {stressor.name!r} cannot be refined (supported: {supported})")
        elif not getattr(stressor, "fractional_severities", False):
            raise AuditError(f"{where}: stressor {stressor.name!r} does not support fractional severities")


def _condition_dicts(conditions: Iterable[Condition]) -> list[dict[str, Any]]:
    return [
        {
            "id": c.id,
            "stressor": c.stressor_name,
            "severity": c.severity,
            "model_aware": c.model_aware,
            "probe": getattr(c, "probe", False),
            "measure": getattr(c.stressor, "breaking_measure", None),
        }
        for c in conditions
    ]


@dataclass
class _Job:
    index: int
    lo: float  # known right (0 = clean)
    hi: float  # known wrong (inf: not known, DeepFool only)
    steps: int = 0


def _predict(model: torch.nn.Module, images: Tensor) -> Tensor:
    """Top-1 predictions as the evaluation loop takes them (softmax in float64, first maximum)."""
    with torch.no_grad():
        return torch.softmax(model(images).double(), dim=1).max(dim=1).indices


def _chunks(jobs: list[_Job], size: int) -> Iterator[list[_Job]]:
    for start in range(0, len(jobs), size):
        yield jobs[start : start + size]


def _load(ctx: RefineContext, indices: list[int]) -> tuple[Tensor, list[int]]:
    """Decoded images of ``indices`` (in that order) and the positions that decoded."""
    dataset = AuditDataset(ctx.table, ctx.model_cfg, indices, **ctx.decoding)  # decoded as in the evaluation
    loader = make_loader(dataset, batch_size=len(indices), num_workers=0)
    batch = next(iter(loader))
    good = batch["index"].tolist()
    return batch["images"], good


def _bisect(
    jobs: list[_Job], correct_at: Callable[[list[int], float], Tensor], *, resolution: float, max_steps: int
) -> None:
    """Narrow every job's (lo, hi] bracket in place until hi - lo <= resolution or max_steps.

    ``correct_at(positions, value)`` says, for the jobs at those positions, whether
    the sample is classified correctly at that severity (or ε).
    """
    while True:
        todo = [k for k, j in enumerate(jobs) if j.hi - j.lo > resolution * (1 + 1e-9) and j.steps < max_steps]
        if not todo:
            return
        by_mid: dict[float, list[int]] = {}
        for k in todo:
            by_mid.setdefault(round((jobs[k].lo + jobs[k].hi) / 2, 12), []).append(k)
        for mid, positions in by_mid.items():
            right = correct_at(positions, mid)
            for k, ok in zip(positions, right.tolist()):
                jobs[k].steps += 1
                if ok:
                    jobs[k].lo = mid
                else:
                    jobs[k].hi = mid


def _refine_track(
    track: Track, jobs: list[_Job], ctx: RefineContext, cfg: BreakingPointsConfig
) -> dict[int, tuple[str, float | None, float | None]]:
    """Refined (state, breaking point, survived) per sample index of one track, a chunk of samples at a time."""
    stressor = ctx.stressor(track.label)
    out: dict[int, tuple[str, float | None, float | None]] = {}
    for chunk in _chunks(jobs, max(1, ctx.batch_size)):
        images, good = _load(ctx, [j.index for j in chunk])
        decoded = set(good)
        chunk = [j for j in chunk if j.index in decoded]
        if chunk:
            _Chunk(track, stressor, chunk, images.to(ctx.device), ctx).refine(cfg, out)
    return out


class _Chunk:
    """The samples of one chunk with their images on the device, refined together."""

    def __init__(self, track: Track, stressor: Any, jobs: list[_Job], images: Tensor, ctx: RefineContext) -> None:
        self.track, self.stressor, self.jobs, self.images, self.ctx = track, stressor, jobs, images, ctx
        self.keys = ctx.keys[torch.tensor([j.index for j in jobs])]
        self.labels = torch.tensor([ctx.table.labels[j.index] for j in jobs], dtype=torch.int64)

    def correct_at(self, positions: list[int], value: float) -> Tensor:
        """Whether the jobs at ``positions`` are classified correctly at this severity (or ε)."""
        ctx = self.ctx
        x, keys, labels = self.images[positions], self.keys[positions], self.labels[positions]
        if self.track.measure == "epsilon":
            attack = _at_epsilon(self.stressor, value)
            with torch.enable_grad():
                x = attack.perturb(ctx.model, x, labels.to(ctx.device), severity=value, sample_ids=keys, seed=ctx.seed)
        else:
            x = self.stressor.apply(x, self.stressor.sample_params(keys, value, seed=ctx.seed, fractional=True))
        return _predict(ctx.model, x).cpu() == labels

    def refine(self, cfg: BreakingPointsConfig, out: dict[int, tuple[str, float | None, float | None]]) -> None:
        if _minimal_method(self.stressor):
            self._minimal(out)
            return
        jobs = self.jobs
        resolution = cfg.epsilon_resolution
        if self.track.measure == "severity":  # nothing is evaluated below the stressor's lowest level
            resolution = cfg.resolution
            floor = float(self.stressor.severity_range[0])
            first = [k for k, j in enumerate(jobs) if j.lo < floor < j.hi]
            if first:
                for k, ok in zip(first, self.correct_at(first, floor).tolist()):
                    jobs[k].steps += 1
                    jobs[k].lo, jobs[k].hi = (floor, jobs[k].hi) if ok else (jobs[k].lo, floor)
            positions = [k for k, j in enumerate(jobs) if j.lo >= floor]
        else:
            positions = list(range(len(jobs)))
        _bisect(
            [jobs[k] for k in positions],
            lambda sub, value: self.correct_at([positions[k] for k in sub], value),
            resolution=resolution,
            max_steps=cfg.max_steps,
        )
        for job in jobs:
            out[job.index] = ("broken", job.hi, job.lo)

    def _minimal(self, out: dict[int, tuple[str, float | None, float | None]]) -> None:
        ctx = self.ctx
        with torch.enable_grad():
            adv = self.stressor.minimal(
                ctx.model, self.images, self.labels.to(ctx.device), sample_ids=self.keys, seed=ctx.seed
            )
        fooled = (_predict(ctx.model, adv).cpu() != self.labels).tolist()
        size = (adv - self.images).flatten(1).abs().amax(dim=1).double().cpu().tolist()
        for job, ok, eps in zip(self.jobs, fooled, size):
            value = min(eps if ok else math.inf, job.hi)
            out[job.index] = ("never", None, job.lo) if math.isinf(value) else ("broken", value, job.lo)


def _at_epsilon(attack: Any, epsilon: float) -> Any:
    """A copy of ``attack`` whose only ε is ``epsilon`` (its other settings unchanged)."""
    import copy

    clone = copy.copy(attack)
    clone.severities = (float(epsilon),)
    clone.last_result = None
    return clone


def _refine(
    tracks: list[Track], rows: Rows, attributes: Sequence[str], ctx: RefineContext, cfg: BreakingPointsConfig
) -> dict[tuple[str, str], tuple[str, float | None, float | None]]:
    """(track label, sample id) -> refined (state, breaking point, survived), for the configured tracks."""
    chosen = [t for t in tracks if t.label in cfg.stressors]
    if not chosen:
        return {}
    index_of = {sid: i for i, sid in enumerate(ctx.table.ids)}
    jobs: dict[str, list[_Job]] = {t.label: [] for t in chosen}
    minimal = {t.label for t in chosen if _minimal_method(ctx.stressor(t.label))}
    for sample_id, by_condition in _sample_groups(rows()):
        for track in chosen:
            b = derive(sample_id, by_condition, track, attributes)
            if b is None or b.state == "wrong_on_clean":
                continue
            if track.label in minimal:
                hi = b.breaking if b.breaking is not None else math.inf
                jobs[track.label].append(_Job(index_of[sample_id], _below(track, hi), hi))
            elif b.state == "broken":
                jobs[track.label].append(_Job(index_of[sample_id], b.survived or 0.0, float(b.breaking)))
    out = {}
    ids = ctx.table.ids
    for track in chosen:
        for index, value in _refine_track(track, jobs[track.label], ctx, cfg).items():
            out[(track.label, ids[index])] = value
    return out


def _below(track: Track, value: float) -> float:
    """The highest evaluated level below ``value`` (0 when none)."""
    return max((lv for lv in track.levels if lv < value), default=0.0)


# ------------------------------------------------------------------- summaries


@dataclass
class _Tally:
    total: int = 0
    wrong: int = 0
    values: Counter = field(default_factory=Counter)  # breaking point (math.inf: never) -> count

    def add(self, b: SampleBreak) -> None:
        self.total += 1
        if b.state == "wrong_on_clean":
            self.wrong += 1
        else:
            self.values[math.inf if b.breaking is None else b.breaking] += 1

    @property
    def n(self) -> int:
        return self.total - self.wrong


def median_interval_ranks(n: int, level: float = 0.95) -> tuple[int, int] | None:
    """1-based ranks (l, u) of the distribution-free interval of the median, or None when n is too small.

    l is the largest rank with P(B <= l - 1) <= (1 - level) / 2 for B ~ Binomial(n, 1/2),
    and u = n - l + 1; [x_(l), x_(u)] covers the median with probability >= ``level``.

    >>> median_interval_ranks(5) is None, median_interval_ranks(6), median_interval_ranks(100)
    (True, (1, 6), (40, 61))
    """
    alpha = (1 - level) / 2
    if n < 1:
        return None
    k = int(binom.ppf(alpha, n, 0.5))  # smallest k with P(B <= k) >= alpha
    while k >= 0 and binom.cdf(k, n, 0.5) > alpha:
        k -= 1
    if k < 0:
        return None
    return k + 1, n - k


def _order_statistic(values: Counter, rank: int) -> float:
    """The ``rank``-th smallest value (1-based) of a value -> count table."""
    seen = 0
    for value in sorted(values):
        seen += values[value]
        if seen >= rank:
            return value
    raise IndexError(rank)


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else value


def _summary(
    track: Track,
    tally: _Tally,
    *,
    attribute: str | None,
    value: str | None,
    method: str,
    resolution: float | None,
    min_group_size: int,
) -> dict[str, Any]:
    n = tally.n
    survival = []
    for level, cid in zip(track.levels, track.conditions):
        alive = sum(c for v, c in tally.values.items() if v > level)
        survival.append(
            {"severity": level, "condition": cid, "surviving": alive / n if n else None, "n_surviving": alive}
        )
    median, censored, interval = None, False, None
    if n:
        raw = _order_statistic(tally.values, math.ceil(n / 2))
        censored = math.isinf(raw)
        median = track.levels[-1] if censored else raw
        ranks = median_interval_ranks(n)
        if ranks is not None:
            interval = [_finite(_order_statistic(tally.values, r)) for r in ranks]
    never = tally.values.get(math.inf, 0)
    entry = {
        "id": track.label if attribute is None else f"{track.label}:{attribute}={value}",
        "stressor": track.label,
        "measure": track.measure,
        "attribute": attribute,
        "value": value,
        "method": method,
        "resolution": resolution,
        "n": n,
        "n_total": tally.total,
        "wrong_on_clean": tally.wrong,
        "broken": n - never,
        "never": never,
        "median": median,
        "median_ci": interval,
        "median_censored": censored,
        "insufficient_data": attribute is not None and not takes_part(n, min_group_size),
        "survival": survival,
    }
    return entry


def _disparity(track: Track, attribute: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    part = [e for e in entries if not e["insufficient_data"]]
    excluded = [str(e["value"]) for e in entries if e["insufficient_data"]]
    out: dict[str, Any] = {
        "id": f"{track.label}:{attribute}",
        "stressor": track.label,
        "attribute": attribute,
        "groups_compared": len(part),
        "disparity": None,
        "at_severity": None,
        "worst_group": None,
        "best_group": None,
        "median_gap": None,
        "excluded": excluded,
    }
    if len(part) < 2:
        return out
    best_gap = -1.0
    for k, level in enumerate(track.levels):
        shares = [(e["survival"][k]["surviving"], str(e["value"])) for e in part]
        lo, hi = min(shares), max(shares, key=lambda s: s[0])
        if hi[0] - lo[0] > best_gap:
            best_gap = hi[0] - lo[0]
            out.update(disparity=best_gap, at_severity=level, worst_group=lo[1], best_group=hi[1])
    medians = [e["median"] for e in part if e["median"] is not None]
    out["median_gap"] = max(medians) - min(medians) if len(medians) >= 2 else None
    return out


def _write_row(writer: Any, b: SampleBreak, attributes: Sequence[str]) -> None:
    def text(v: float | None) -> str:
        return "" if v is None else repr(float(v))

    writer.writerow(
        [
            b.sample_id,
            b.track.label,
            b.track.measure,
            text(b.breaking),
            text(b.survived),
            b.state,
            b.method,
            b.flips,
            *(b.attributes.get(a, "") for a in attributes),
        ]
    )


def compute_breaking_points(
    *,
    rows: Rows,
    conditions: Iterable[Mapping[str, Any]],
    attributes: Sequence[str],
    groupings: Sequence[tuple[str, Sequence[str]]],
    min_group_size: int,
    out_csv: Path,
    names: Mapping[str, str] | None = None,
    cfg: BreakingPointsConfig | None = None,
    refine: RefineContext | None = None,
) -> dict[str, Any]:
    """Write ``breaking_points.csv`` and return the results.json keys (empty when no stressor qualifies).

    Args:
        rows: returns a fresh iterator over predictions.csv rows (without the header), in file order.
        conditions: the conditions as dicts (``id``, ``stressor``, ``severity``, ``model_aware``).
        attributes: the attribute columns of the rows, in order.
        groupings: (name, attributes) of every grouping (attributes and intersections).
        min_group_size: groups with fewer samples right on clean are flagged insufficient_data.
        out_csv: where the per-sample rows go.
        names: label -> registered stressor name.
        cfg: the ``breaking_points`` config (refinement); default none.
        refine: what refinement runs the model with; needed when ``cfg.stressors`` is not empty.

    Returns:
        ``{"breaking_points": [...], "breaking_point_disparity": [...]}``, or ``{}``.
    """
    cfg = cfg or BreakingPointsConfig()
    tracks = tracks_of(conditions, names)
    if not tracks:
        return {}
    refined = _refine(tracks, rows, attributes, refine, cfg) if cfg.stressors and refine is not None else {}
    methods = {}
    for t in tracks:
        if t.label not in cfg.stressors or refine is None:
            methods[t.label] = ("grid", None)
        elif _minimal_method(refine.stressor(t.label)):
            methods[t.label] = (_minimal_method(refine.stressor(t.label)), None)
        else:
            methods[t.label] = ("bisection", cfg.epsilon_resolution if t.measure == "epsilon" else cfg.resolution)
    tallies: dict[tuple[str, str | None, str | None], _Tally] = {}
    tmp = out_csv.with_name(out_csv.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        # the one CSV writer (formula starts guarded, control characters escaped); CRLF as it always was
        writer = csvfile.writer(fh, lineterminator="\r\n")
        writer.writerow([*CSV_COLUMNS, *attributes])
        for sample_id, by_condition in _sample_groups(rows()):
            for track in tracks:
                b = derive(sample_id, by_condition, track, attributes)
                if b is None:
                    continue
                if (track.label, sample_id) in refined:
                    b.state, b.breaking, b.survived = refined[(track.label, sample_id)]
                    b.method = methods[track.label][0]
                _write_row(writer, b, attributes)
                tallies.setdefault((track.label, None, None), _Tally()).add(b)
                for name, attrs in groupings:
                    value = _SEP.join(b.attributes.get(a, "") for a in attrs)
                    tallies.setdefault((track.label, name, value), _Tally()).add(b)
    tmp.replace(out_csv)
    summaries, disparities = [], []
    for track in tracks:
        method, resolution = methods[track.label]
        kw = {"method": method, "resolution": resolution, "min_group_size": min_group_size}
        overall = tallies.get((track.label, None, None), _Tally())
        summaries.append(_summary(track, overall, attribute=None, value=None, **kw))
        for name, _ in groupings:
            values = sorted(v for (label, g, v) in tallies if label == track.label and g == name)
            entries = [_summary(track, tallies[(track.label, name, v)], attribute=name, value=v, **kw) for v in values]
            summaries.extend(entries)
            disparities.append(_disparity(track, name, entries))
    return {"breaking_points": summaries, "breaking_point_disparity": disparities}


def run_breaking_points(
    work: Path, cfg: Any, conditions: list[Condition], layout: Any, table: SampleTable, refine: RefineContext
) -> dict[str, Any]:
    """The runner's step: breaking points from the merged prediction parts in ``work``.

    Writes ``work/breaking_points.csv`` and returns the results.json keys (see
    :func:`compute_breaking_points`).
    """
    from audit.evaluation.predictions import merged_rows

    return compute_breaking_points(
        rows=lambda: merged_rows(work),
        conditions=_condition_dicts(conditions),
        attributes=list(table.attributes),
        groupings=[(g.name, g.attributes) for g in layout.groupings],
        min_group_size=cfg.evaluation.min_group_size,
        out_csv=work / BREAKING_POINTS_CSV,
        names={c.label: c.stressor.name for c in conditions if c.stressor is not None},
        cfg=cfg.breaking_points,
        refine=refine,
    )
