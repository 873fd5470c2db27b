"""Per-object breaking points of a detector: the lowest severity (or ε) at which each object is lost.

Input: the per-object outcomes (:class:`audit.evaluation.detection.objects.ObjectOutcomes`, one row
per condition and ground-truth object with ``condition``, ``image_row``, ``object_index``,
``present``, ``found``). An object is *found* at a condition when a detection of its class matches it
at the operating point (``detection.score_threshold``, ``detection.iou_threshold``); it is *present*
unless a geometric stressor left less than ``detection.min_visibility`` of it in the frame.

For every stressor entry with two or more levels (:func:`audit.evaluation.breaking_points.tracks_of`)
each non-crowd object evaluated on clean and at every level of the entry gets a state:

- ``missed_on_clean``: not found on the clean image. It has no breaking point and is excluded from
  the curves (counted in ``missed_on_clean``);
- ``broken``: found on clean and at every lower level where it was present, not found at
  ``breaking_point``, the lowest such level (``survived``: the level below it, 0 for clean);
- ``dropped``: removed by ``min_visibility`` at ``censored_at`` before it was ever lost. We know it
  survived every lower level, nothing about the others: it is *censored* there (right-censoring),
  whatever happens to it at higher levels;
- ``never``: found at every level.

Survival curve per entry and subgroup: the Kaplan-Meier estimate over the levels l_1 < ... < l_L,
S(l_k) = Π_{j <= k} (1 - d_j / r_j), with r_j the objects at risk at l_j (not lost and not censored
below l_j, present at l_j) and d_j those lost at l_j. Without dropped objects this is exactly the
share of eligible objects still found at every level <= l_k. Subgroups: object groupings
(``object.size``, ``object.class``, ``object.<key>``) and image attributes (``data.attributes``).
A subgroup with fewer than ``evaluation.min_group_size`` eligible objects is flagged
``insufficient_data``.

Intervals (``evaluation.n_bootstrap`` > 0): objects of one image are not independent, so the
images are resampled, with the image-keyed Poisson(1) weights of
:func:`audit.evaluation.detection.statistics.image_bootstrap_weights` (the detection intervals'
cluster bootstrap; the same weights for every subgroup, so an image subgroup's resample is the
whole set's restricted). Each replicate recomputes the Kaplan-Meier curve from the weighted per-image
counts r and d; the interval is the 2.5 / 97.5 % percentile of the replicates (a replicate without an
object at risk at the first level is dropped). Coverage, simulated with known truth:
``benchmarks/bench_object_survival_coverage.py`` (benchmarks/README.md).

Median breaking level: the lowest level with S <= 0.5 (when none, the highest level with
``median_censored: true``); its interval inverts the pointwise band: from the lowest level whose
interval's lower end is <= 0.5 to the lowest level whose upper end is <= 0.5 (an end beyond the
highest level is null). Disparity per entry and attribute: the largest gap between the eligible
groups' S at one level, with the bootstrap interval of that pair's gap at that level (not adjusted
for having chosen the largest), and the gap between their medians.

Memory: the per-image counts are a sparse ``(images, subgroups × levels)`` matrix; the replicates
are drawn in blocks of 4096 images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from audit.contract import csvfile
from audit.contract.errors import AuditError
from audit.contract.groupstats import takes_part
from audit.contract.results import (
    DetectionBreakingPoints,
    ObjectBreakingDisparity,
    ObjectBreakingEntry,
    ObjectSurvivalPoint,
)
from audit.evaluation.breaking_points import Track, tracks_of
from audit.evaluation.detection.statistics import image_bootstrap_weights, percentile_interval

__all__ = [
    "CSV_COLUMNS",
    "OBJECT_BREAKING_CSV",
    "STATES",
    "ObjectBreak",
    "ObjectInfo",
    "breaking_points_section",
    "derive_object",
    "kaplan_meier",
    "object_breaks",
    "summarize_object_breaking",
    "survival_entries",
]

#: The per-object file of a detection run.
OBJECT_BREAKING_CSV = "object_breaking_points.csv"
#: Its first columns; then ``class``, ``size``, the object attributes ``object.<key>`` and the image attributes.
CSV_COLUMNS = (
    "sample_id",
    "object_index",
    "stressor",
    "measure",
    "state",
    "breaking_point",
    "survived",
    "censored_at",
)
#: The states of an object under one stressor entry (module docstring).
STATES = ("broken", "never", "dropped", "missed_on_clean")
_IMAGE_BLOCK = 4096
_OUTCOME_COLUMNS = ("condition", "image_row", "object_index", "present", "found")


@dataclass(frozen=True)
class ObjectInfo:
    """One ground-truth object that the curves may count (crowd regions are not).

    Attributes:
        image_row: its image's row in ``DetectionData.truth.images``.
        object_index: its position among that image's objects (file order).
        sample_id: its image's sample id.
        image_key: its image's bootstrap key (unique per image, :func:`audit.contract.seeds.sample_key`).
        groups: grouping -> value: ``object.size``, ``object.class``, ``object.<key>`` and the image attributes.
    """

    image_row: int
    object_index: int
    sample_id: str
    image_key: int
    groups: Mapping[str, str]


@dataclass(frozen=True)
class ObjectBreak:
    """The state of one object under one stressor entry (a row of ``object_breaking_points.csv``)."""

    obj: ObjectInfo
    track: Track
    state: str  # one of STATES
    breaking: float | None  # broken: the lowest level where it was lost
    survived: float | None  # the highest level up to which it was found (0: clean only); None: missed on clean
    censored_at: float | None  # dropped: the level where min_visibility removed it


def derive_object(
    outcome: Mapping[str, tuple[bool, bool]], track: Track
) -> tuple[str, float | None, float | None, float | None] | None:
    """(state, breaking point, survived, censored at) of one object, or None when it lacks a condition.

    Args:
        outcome: condition id -> (present, found) of the object.
        track: the stressor entry.

    >>> t = Track("zoom", "zoom", "severity", (1.0, 2.0, 3.0), ("zoom@1", "zoom@2", "zoom@3"))
    >>> derive_object({"clean": (True, True), "zoom@1": (True, True), "zoom@2": (False, False), "zoom@3": (True, False)}, t)
    ('dropped', None, 1.0, 2.0)
    """
    clean = outcome.get("clean")
    if clean is None or any(cid not in outcome for cid in track.conditions):
        return None
    if not clean[1]:
        return "missed_on_clean", None, None, None
    survived = 0.0
    for level, cid in zip(track.levels, track.conditions):
        present, found = outcome[cid]
        if not present:
            return "dropped", None, survived, level
        if not found:
            return "broken", level, survived, None
        survived = level
    return "never", None, survived, None


def object_breaks(
    outcomes: Any, objects: Mapping[tuple[int, int], ObjectInfo], tracks: Sequence[Track]
) -> list[ObjectBreak]:
    """Every object's state under every track, track by track, objects in the order of ``objects``.

    Args:
        outcomes: the per-object outcomes as columns of equal length (an
            :class:`~audit.evaluation.detection.objects.ObjectOutcomes`): ``condition``, ``image_row``,
            ``object_index``, ``present``, ``found``. Rows of objects not in ``objects`` (crowd regions)
            and of conditions outside the tracks are ignored; an object lacking a condition of a track
            (an image not evaluated) has no state under it.
        objects: (image row, object index) -> the object.
        tracks: the stressor entries.

    Raises:
        AuditError: the same (condition, image row, object index) twice; columns of different lengths.
    """
    columns = [np.asarray(getattr(outcomes, name)).reshape(-1) for name in _OUTCOME_COLUMNS]
    if len({len(c) for c in columns}) > 1:
        raise AuditError(f"object outcomes: columns of different lengths {sorted({len(c) for c in columns})}")
    wanted = {"clean", *(cid for track in tracks for cid in track.conditions)}
    outcome: dict[tuple[int, int], dict[str, tuple[bool, bool]]] = {}
    for cid, row, index, present, found in zip(*(c.tolist() for c in columns)):
        cid = str(cid)
        key = (int(row), int(index))
        if cid not in wanted or key not in objects:
            continue
        per = outcome.setdefault(key, {})
        if cid in per:
            raise AuditError(
                f"object outcomes: object {key[1]} of sample {objects[key].sample_id!r} (image row {key[0]}) "
                f"appears twice under condition {cid!r}"
            )
        per[cid] = (bool(present), bool(found))
    out = []
    for track in tracks:
        for key, obj in objects.items():
            derived = derive_object(outcome.get(key, {}), track)
            if derived is not None:
                out.append(ObjectBreak(obj, track, *derived))
    return out


# ------------------------------------------------------------------- survival


def _level_counts(b: ObjectBreak) -> tuple[np.ndarray, np.ndarray]:
    """(at risk, lost) per level of the object's track, each ``(L,)`` of 0 / 1."""
    levels = b.track.levels
    risk, lost = np.zeros(len(levels)), np.zeros(len(levels))
    for k, level in enumerate(levels):
        if b.state == "dropped" and level >= b.censored_at:  # type: ignore[operator]
            break
        risk[k] = 1.0
        if b.state == "broken" and level == b.breaking:
            lost[k] = 1.0
            break
    return risk, lost


def kaplan_meier(at_risk: np.ndarray, lost: np.ndarray) -> np.ndarray:
    """S per level from the numbers at risk and lost, ``(..., L)`` -> ``(..., L)``.

    A level with nobody at risk has no estimate (NaN), unless S has already reached 0 (every
    object lost): everything was censored before it.

    >>> kaplan_meier(np.array([10.0, 8.0, 4.0]), np.array([2.0, 4.0, 0.0])).tolist()
    [0.8, 0.4, 0.4]
    >>> kaplan_meier(np.array([4.0, 0.0]), np.array([1.0, 0.0])).tolist()
    [0.75, nan]
    """
    at_risk, lost = np.asarray(at_risk, dtype=np.float64), np.asarray(lost, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        hazard = np.where(at_risk > 0, lost / np.where(at_risk > 0, at_risk, 1.0), 0.0)
    s = np.cumprod(1.0 - hazard, axis=-1)
    return np.where((at_risk > 0) | (s <= 0), s, np.nan)


def _median(track: Track, curve: np.ndarray) -> float | None:
    """The lowest level with S <= 0.5, or None."""
    for level, s in zip(track.levels, curve):
        if np.isfinite(s) and s <= 0.5 + 1e-12:
            return level
    return None


def _number(value: float | None) -> int | float | None:
    """A level as stored: a whole number as int (so a rule's ``survival[severity=3]`` finds it)."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else float(value)


@dataclass
class _Group:
    attribute: str | None
    level: str  # all | image | object
    value: str | None
    members: list[int]  # positions in the track's breaks


def _groups(breaks: list[ObjectBreak], groupings: Sequence[tuple[str, str]]) -> list[_Group]:
    out = [_Group(None, "all", None, list(range(len(breaks))))]
    for attribute, level in groupings:
        by: dict[str, list[int]] = {}
        for k, b in enumerate(breaks):
            by.setdefault(str(b.obj.groups.get(attribute, "")), []).append(k)
        out += [_Group(attribute, level, v, by[v]) for v in sorted(by)]
    return out


def survival_entries(
    breaks: Sequence[ObjectBreak],
    track: Track,
    groupings: Sequence[tuple[str, str]],
    *,
    min_group_size: int,
    n_bootstrap: int,
    seed: int,
) -> tuple[list[ObjectBreakingEntry], list[ObjectBreakingDisparity]]:
    """The curves of one track over all objects and per subgroup, and the disparity per attribute.

    Args:
        breaks: the track's objects (every state).
        groupings: (attribute, ``image`` | ``object``) in the order they are reported.
        min_group_size: fewer eligible objects flag a subgroup ``insufficient_data``.
        n_bootstrap: replicates (0: no intervals).
        seed: the audit seed.
    """
    mine = [b for b in breaks if b.track.label == track.label]
    groups = _groups(mine, groupings)
    eligible = [b.state != "missed_on_clean" for b in mine]
    n_levels = len(track.levels)
    image_keys = sorted({b.obj.image_key for b in mine})
    column_of_image = {key: i for i, key in enumerate(image_keys)}
    rows, cols, risk_vals, lost_vals = [], [], [], []
    per_object = [_level_counts(b) if ok else (np.zeros(n_levels), np.zeros(n_levels)) for b, ok in zip(mine, eligible)]
    for g, group in enumerate(groups):
        for k in group.members:
            if not eligible[k]:
                continue
            risk, lost = per_object[k]
            for j in np.flatnonzero(risk):
                rows.append(column_of_image[mine[k].obj.image_key])
                cols.append(g * n_levels + j)
                risk_vals.append(risk[j])
                lost_vals.append(lost[j])
    shape = (len(image_keys), len(groups) * n_levels)
    risk_m = sparse.csr_matrix((risk_vals, (rows, cols)), shape=shape)
    lost_m = sparse.csr_matrix((lost_vals, (rows, cols)), shape=shape)
    at_risk = np.asarray(risk_m.sum(axis=0)).reshape(len(groups), n_levels)
    lost_n = np.asarray(lost_m.sum(axis=0)).reshape(len(groups), n_levels)
    curves = kaplan_meier(at_risk, lost_n)
    replicates = None
    if n_bootstrap > 0 and image_keys:
        replicates = _replicates(np.asarray(image_keys, dtype=np.int64), risk_m, lost_m, n_bootstrap, seed)
    entries = []
    for g, group in enumerate(groups):
        entries.append(
            _entry(track, group, mine, eligible, at_risk[g], lost_n[g], curves[g], replicates, g, min_group_size)
        )
    disparities = [_disparity(track, attribute, level, groups, entries, replicates) for attribute, level in groupings]
    return entries, disparities


def _replicates(
    keys: np.ndarray, risk: sparse.csr_matrix, lost: sparse.csr_matrix, n_bootstrap: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Image-weighted sums of the numbers at risk and lost, each ``(n_bootstrap, columns)``.

    Rows of ``risk`` and ``lost`` are the images in the order of ``keys``."""
    r_sum = np.zeros((n_bootstrap, risk.shape[1]))
    d_sum = np.zeros((n_bootstrap, risk.shape[1]))
    for lo in range(0, len(keys), _IMAGE_BLOCK):
        w = image_bootstrap_weights(keys[lo : lo + _IMAGE_BLOCK], n_bootstrap, seed=seed).astype(np.float64)
        r_sum += (risk[lo : lo + _IMAGE_BLOCK].T @ w).T
        d_sum += (lost[lo : lo + _IMAGE_BLOCK].T @ w).T
    return r_sum, d_sum


def _entry(
    track: Track,
    group: _Group,
    breaks: list[ObjectBreak],
    eligible: list[bool],
    at_risk: np.ndarray,
    lost: np.ndarray,
    curve: np.ndarray,
    replicates: Any,
    g: int,
    min_group_size: int,
) -> ObjectBreakingEntry:
    members = [breaks[k] for k in group.members]
    ok = [breaks[k] for k in group.members if eligible[k]]
    n = len(ok)
    states = {s: sum(1 for b in ok if b.state == s) for s in ("broken", "never", "dropped")}
    bands: list[tuple[float, float] | None] = [None] * len(track.levels)
    if replicates is not None and n:
        r_sum, d_sum = replicates
        cols = slice(g * len(track.levels), (g + 1) * len(track.levels))
        rep = kaplan_meier(r_sum[:, cols], d_sum[:, cols])
        bands = [percentile_interval(rep[:, k]) if np.isfinite(curve[k]) else None for k in range(len(track.levels))]
    survival = []
    for k, (level, cid) in enumerate(zip(track.levels, track.conditions)):
        censored_here = sum(1 for b in ok if b.state == "dropped" and b.censored_at == level)
        s = float(curve[k]) if n and np.isfinite(curve[k]) else None
        survival.append(
            ObjectSurvivalPoint(
                severity=_number(level),
                condition=cid,
                surviving=s,
                surviving_ci=list(bands[k]) if bands[k] is not None else None,
                at_risk=int(at_risk[k]),
                broken=int(lost[k]),
                dropped=censored_here,
            )
        )
    median, median_ci, censored = None, None, False
    if n and np.isfinite(curve[0]):
        m = _median(track, curve)
        censored = m is None
        median = track.levels[-1] if censored else m
        if all(b is not None for b in bands):
            upper = [b[1] for b in bands]  # type: ignore[index]
            lower = [b[0] for b in bands]  # type: ignore[index]
            # a curve lower than the estimate reaches 0.5 sooner: the lower band gives the median's lower end
            median_ci = [_number(_median(track, np.asarray(lower))), _number(_median(track, np.asarray(upper)))]
    label = track.label if group.attribute is None else f"{track.label}:{group.attribute}={group.value}"
    return ObjectBreakingEntry(
        id=label,
        stressor=track.label,
        measure=track.measure,  # type: ignore[arg-type]
        attribute=group.attribute,
        level=group.level,  # type: ignore[arg-type]
        value=group.value,
        n=n,
        n_images=len({b.obj.image_key for b in ok}),
        missed_on_clean=sum(1 for b in members if b.state == "missed_on_clean"),
        broken=states["broken"],
        never=states["never"],
        dropped=states["dropped"],
        median=_number(median),
        median_ci=median_ci,
        median_censored=censored,
        insufficient_data=group.attribute is not None and not takes_part(n, min_group_size),
        survival=survival,
    )


def _disparity(
    track: Track,
    attribute: str,
    level: str,
    groups: list[_Group],
    entries: list[ObjectBreakingEntry],
    replicates: Any,
) -> ObjectBreakingDisparity:
    mine = [(g, e) for g, (grp, e) in enumerate(zip(groups, entries)) if grp.attribute == attribute]
    part = [(g, e) for g, e in mine if not e.insufficient_data and e.n > 0]
    out: dict[str, Any] = {
        "id": f"{track.label}:{attribute}",
        "stressor": track.label,
        "attribute": attribute,
        "level": level,
        "groups_compared": len(part),
        "disparity": None,
        "disparity_ci": None,
        "at_severity": None,
        "worst_group": None,
        "best_group": None,
        "median_gap": None,
        "excluded": [str(e.value) for _, e in mine if e.insufficient_data or e.n == 0],
    }
    if len(part) < 2:
        return ObjectBreakingDisparity(**out)
    best = None
    for k in range(len(track.levels)):
        shares = [(e.survival[k].surviving, g, str(e.value)) for g, e in part if e.survival[k].surviving is not None]
        if len(shares) < 2:
            continue
        lo, hi = min(shares), max(shares, key=lambda s: s[0])
        if best is None or hi[0] - lo[0] > best[0] + 1e-12:
            best = (hi[0] - lo[0], k, lo, hi)
    if best is not None:
        gap, k, lo, hi = best
        out.update(disparity=gap, at_severity=_number(track.levels[k]), worst_group=lo[2], best_group=hi[2])
        if replicates is not None:
            r_sum, d_sum = replicates
            n_levels = len(track.levels)

            def curve(g: int) -> np.ndarray:
                cols = slice(g * n_levels, (g + 1) * n_levels)
                return kaplan_meier(r_sum[:, cols], d_sum[:, cols])[:, k]

            interval = percentile_interval(curve(hi[1]) - curve(lo[1]))
            out["disparity_ci"] = list(interval) if interval is not None else None
    medians = [float(e.median) for _, e in part if e.median is not None]
    out["median_gap"] = max(medians) - min(medians) if len(medians) >= 2 else None
    return ObjectBreakingDisparity(**out)


# ------------------------------------------------------------------- the run's step


def _text(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def write_csv(
    path: Path, breaks: Sequence[ObjectBreak], object_keys: Sequence[str], image_attributes: Sequence[str]
) -> None:
    """``object_breaking_points.csv``: one row per object and track (every state), spreadsheet-safe text."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        writer = csvfile.writer(fh)
        writer.writerow(
            [
                *CSV_COLUMNS,
                "class",
                "size",
                *object_keys,
                *image_attributes,
            ]
        )
        for b in breaks:
            groups = b.obj.groups
            writer.writerow(
                [
                    b.obj.sample_id,
                    b.obj.object_index,
                    b.track.label,
                    b.track.measure,
                    b.state,
                    _text(b.breaking),
                    _text(b.survived),
                    _text(b.censored_at),
                    groups.get("object.class", ""),
                    groups.get("object.size", ""),
                    *(groups.get(k, "") for k in object_keys),
                    *(groups.get(a, "") for a in image_attributes),
                ]
            )
    tmp.replace(path)


def objects_of(data: Any) -> dict[tuple[int, int], ObjectInfo]:
    """The non-crowd objects of a :class:`~audit.evaluation.detection.evaluate.DetectionData`, keyed by
    (image row, object index), with their object groupings and image attributes."""
    out: dict[tuple[int, int], ObjectInfo] = {}
    for r, image in enumerate(data.truth.images):
        crowd = data.truths[r].iscrowd
        for i in range(len(image.objects)):
            if bool(crowd[i]):
                continue
            groups = {name: str(data.object_groups[name][image.image_id][i]) for name in data.object_attributes}
            groups.update({a: str(image.attributes[a]) for a in data.attributes})
            out[(r, i)] = ObjectInfo(r, i, data.sample_ids[r], int(data.keys[r]), groups)
    return out


def _condition_dicts(conditions: Iterable[Any]) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "stressor": c.stressor_name, "severity": c.severity, "model_aware": c.model_aware}
        for c in conditions
    ]


def breaking_points_section(
    outcomes: Any,
    *,
    data: Any,
    conditions: Sequence[Any],
    cfg: Any,
    out_csv: Path,
) -> DetectionBreakingPoints | None:
    """The run's step: states, curves and disparities of every track, and ``object_breaking_points.csv``.

    Args:
        outcomes: the per-object outcomes (:func:`object_breaks`).
        data: the run's :class:`~audit.evaluation.detection.evaluate.DetectionData`.
        conditions: the run's conditions (``id``, ``stressor_name``, ``severity``, ``model_aware``).
        cfg: the audit config (``seed``, ``evaluation.n_bootstrap``, ``evaluation.min_group_size``,
            ``detection.score_threshold`` / ``iou_threshold``).
        out_csv: where the per-object rows go.

    Returns:
        The ``detection.breaking_points`` section, or None (and no file) without a stressor entry of
        two or more levels.
    """
    tracks = tracks_of(_condition_dicts(conditions))
    if not tracks:
        return None
    objects = objects_of(data)
    breaks = object_breaks(outcomes, objects, tracks)
    object_keys = [a for a in data.object_attributes if a not in ("object.size", "object.class")]
    write_csv(out_csv, breaks, object_keys, data.attributes)
    groupings = [(a, "object") for a in data.object_attributes] + [(a, "image") for a in data.attributes]
    entries, disparity = [], []
    for track in tracks:
        e, d = survival_entries(
            [b for b in breaks if b.track.label == track.label],
            track,
            groupings,
            min_group_size=cfg.evaluation.min_group_size,
            n_bootstrap=cfg.evaluation.n_bootstrap,
            seed=cfg.seed,
        )
        entries += e
        disparity += d
    det = cfg.detection
    return DetectionBreakingPoints(
        score_threshold=det.score_threshold,
        iou_threshold=det.iou_threshold,
        n_bootstrap=cfg.evaluation.n_bootstrap,
        entries=entries,
        disparity=disparity,
    )


def summarize_object_breaking(
    read: Callable[[Sequence[str]], Any],
    *,
    data: Any,
    conditions: Sequence[Any],
    cfg: Any,
    work: Path,
) -> tuple[DetectionBreakingPoints | None, Path | None]:
    """The run's call: ``detection.breaking_points`` and ``work/object_breaking_points.csv``.

    Args:
        read: condition ids -> the per-object outcomes of those conditions (e.g.
            ``lambda ids: read_objects(work / "objects.csv", conditions=ids)``); called once, with
            ``clean`` and the conditions of every track, and only when there is a track.
        data, conditions, cfg: as :func:`breaking_points_section`.
        work: the run's work folder.

    Returns:
        The section and the file to attest, or ``(None, None)`` without a stressor entry of two or more levels.
    """
    tracks = tracks_of(_condition_dicts(conditions))
    if not tracks:
        return None, None
    ids = ["clean", *(cid for track in tracks for cid in track.conditions)]
    out = work / OBJECT_BREAKING_CSV
    section = breaking_points_section(read(ids), data=data, conditions=conditions, cfg=cfg, out_csv=out)
    return section, out
