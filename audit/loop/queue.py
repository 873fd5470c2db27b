"""``cvaudit queue``: the samples most worth labelling or re-checking next, within a budget.

Candidates come from the run's per-sample files (``predictions.csv``,
``breaking_points.csv``), natural conditions only (attacks are left out):

- ``label_noise_suspect``: wrong on the clean image with confidence >= 0.9
  (the model is sure it is another class: the label may be wrong); score = confidence;
- ``confident_error``: wrong with confidence >= 0.8 on the clean image or at
  the mildest evaluated severity of a stressor (errors under heavy stress are
  expected; these are not), and not a label-noise suspect; score = that confidence;
- ``low_breaking_point``: right on clean but breaking at (or below) the lowest
  evaluated severity of a stressor; score = 1 - breaking point / highest severity;
- ``prediction_flip``: the prediction changes two or more times between
  neighbouring severities of one stressor (clean, 1, 2, ...): the sample sits on
  a decision boundary; score = changes / (2 x number of levels) (at most 0.5).

A sample's priority is its best score plus 0.1 per further reason. The budget
is stratified: each stratum (the combination of the stratification
attributes, by default every attribute of the run) gets a share proportional
to its error rate over the natural conditions, so the worst groups get their
share even when they are small; a stratum with fewer candidates than its share
passes the rest on (largest remainders, then priority).

Governance: every candidate's manifest row is checked with the run's policy
(:func:`policies.check_governance`, one row at a time, now); a sample with
missing or withdrawn consent, expired or unverifiable retention, a region not
allowed, a missing purpose or lawful basis, or a biometric image without a
basis is never exported; ``summary.json`` counts the samples held back per check.

The queue's folder (``--out``) gets the checks of ``cvaudit run --out`` (:func:`claim_queue_folder`,
before anything is read or written): a symbolic link, a system folder, or a non-empty folder without
cvaudit's marker is refused unless ``--force``, which is still refused when an entry of the user's
bears one of the queue's names (:data:`QUEUE_NAMES`: nothing of the user's is replaced or deleted).
The folder gets the marker and ``--out-mode`` (0700, files 0600 by default); every file is written
atomically (a temporary file in the folder, then :func:`os.replace`, so a symbolic link planted at
``queue.csv`` is replaced, never followed), and ``images/`` and ``variants/`` are built in a private
temporary folder and swapped in, the previous queue's folder removed only in a folder bearing the marker.

A detection run's queue (images with missed objects and false positives) is built by
:mod:`audit.loop.detection_queue` with the same priority, allocation and governance.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import math
import os
import re
import shutil
import stat
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.contract import csvfile
from audit.contract.errors import AuditError
from audit.loop.run_folder import RunFolder

__all__ = [
    "QUEUE_NAMES",
    "Candidate",
    "QueueFolder",
    "QueueSettings",
    "allocate",
    "build_queue",
    "claim_queue_folder",
    "held_back_checks",
]

LABEL_NOISE_CONFIDENCE = 0.9
ERROR_CONFIDENCE = 0.8
FORMATS = ("label-studio", "csv")


@dataclass
class Candidate:
    """One sample worth a look, with its reasons."""

    sample_id: str
    label: int
    prediction: int
    confidence: float
    attributes: dict[str, str]
    reasons: dict[str, tuple[float, str]] = field(default_factory=dict)  # reason -> (score, rationale)
    breaking: list[tuple[str, float]] = field(default_factory=list)  # (stressor, breaking severity)

    @property
    def priority(self) -> float:
        scores = sorted((s for s, _ in self.reasons.values()), reverse=True)
        return scores[0] + 0.1 * (len(scores) - 1) if scores else 0.0


@dataclass(frozen=True)
class QueueSettings:
    budget: int = 100
    fmt: str = "label-studio"
    stratify: tuple[str, ...] = ()
    variants: bool = False
    image_prefix: str = "/data/local-files/?d="
    force: bool = False  # --force: write into a non-empty folder cvaudit did not make (its files are kept)
    out_mode: int | str | None = None  # --out-mode (None: reports.DEFAULT_MODE, 0700)


#: What the queue writes into ``--out`` (files and folders). In a folder cvaudit did not make (``--force``)
#: an entry of the user's with one of these names is never replaced: the queue is refused.
QUEUE_NAMES = ("queue.csv", "tasks.json", "labeling_config.xml", "summary.json", "images", "variants")

#: The queue's temporary files and folders in ``--out`` (atomic writes, staged image folders).
_SCRATCH = re.compile(r"^\.cvaudit-queue-.*\.tmp$")

_QUEUE_MARKER_TEXT = (
    "This folder is a cvaudit output folder: `cvaudit queue` replaces its queue.csv, tasks.json,\n"
    "labeling_config.xml, summary.json, images/ and variants/ here. Delete this file to make cvaudit refuse the folder.\n"
)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _marked(folder: Path) -> bool:
    """Whether ``folder`` holds cvaudit's marker as a plain file (a link or folder of that name is not it)."""
    from reports import MARKER_FILE

    st = _lstat(folder / MARKER_FILE)
    return st is not None and stat.S_ISREG(st.st_mode)


@dataclass(frozen=True)
class QueueFolder:
    """A queue folder claimed by :func:`claim_queue_folder`: writes into it never follow a symbolic link.

    Attributes:
        path: ``--out`` (its parent's links resolved).
        mode: The folder's mode (``--out-mode``); its files get the same bits without execute.
    """

    path: Path
    mode: int

    @property
    def file_mode(self) -> int:
        return self.mode & 0o666

    def write_text(self, name: str, text: str) -> None:
        """Write ``name`` atomically: a temporary file here (0600 until done), then :func:`os.replace`."""
        fd, tmp = tempfile.mkstemp(prefix=f".cvaudit-queue-{name}-", suffix=".tmp", dir=self.path)
        try:
            os.fchmod(fd, self.file_mode)
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path / name)  # replaces a link at ``name`` itself, never its target
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def scratch(self) -> Path:
        """A new private (0700) temporary folder here (same file system), for one queue's staging folders."""
        return Path(tempfile.mkdtemp(prefix=".cvaudit-queue-", suffix=".tmp", dir=self.path))

    def put_folder(self, staged: Path, name: str) -> None:
        """Give ``staged`` (a folder in :meth:`scratch`) and its files the folder's modes and make it ``name``;
        the previous ``name`` is moved into the scratch folder (removed with it).

        Raises:
            OutputError: ``name`` exists and the folder bears no marker (it is not known to be cvaudit's).
        """
        from reports import MARKER_FILE, OutputError

        for entry in os.scandir(staged):
            if entry.is_file(follow_symlinks=False):
                os.chmod(entry.path, self.file_mode)
        os.chmod(staged, self.mode)
        dest = self.path / name
        if _lstat(dest) is not None:
            if not _marked(self.path):
                raise OutputError(f"--out {self.path}: {name} exists and the folder has no {MARKER_FILE}; not replaced")
            grave = staged.parent / f"old-{name}"
            grave.mkdir(mode=0o700)
            os.rename(dest, grave / name)  # a link is moved as a link: its target is never touched
            os.rename(staged, dest)
        else:
            os.rename(staged, dest)


def claim_queue_folder(
    out_dir: str | os.PathLike[str],
    *,
    force: bool = False,
    mode: int | str | None = None,
    protect: Sequence[str | os.PathLike[str] | None] = (),
) -> QueueFolder:
    """Check ``--out`` as ``cvaudit run`` does, then create it (or take it over) as a queue folder.

    Refused (:class:`reports.OutputError`, one line, exit 2), with nothing written: what
    :func:`reports.check_out_dir` refuses (a symbolic link, a system folder, a folder of another
    user, a non-empty folder without the marker unless ``force``, and under ``force`` one holding a
    file named like a run output); under ``force``, a folder without the marker holding an entry
    named like one of :data:`QUEUE_NAMES`, the marker (not a plain file) or a queue temporary; and
    a folder whose ``images/`` or ``variants/`` (replaced by
    the queue) holds one of ``protect`` (the run's inputs). Then the folder is created with
    ``mode`` (0700 by default) or set to it, gets the marker, and loses the temporaries an
    interrupted queue left.

    Returns:
        The claimed folder.
    """
    from reports import DEFAULT_MODE, MARKER_FILE, OutputError, check_out_dir, parse_mode

    mode = parse_mode(DEFAULT_MODE if mode is None else mode)
    out = Path(out_dir)
    # the structural checks, the marker, and under --force the names of the run's outputs (kept as refusals:
    # conservative, and the same in a folder that run and queue share); the queue's own names are checked below
    target = check_out_dir(out, force=force)
    st = _lstat(target)
    entries = sorted(os.listdir(target)) if st is not None and stat.S_ISDIR(st.st_mode) else []
    if entries and not _marked(target):
        clash = [n for n in entries if n in QUEUE_NAMES or n == MARKER_FILE or _SCRATCH.match(n)]
        if clash:
            raise OutputError(
                f"--out {out}: --force, but {', '.join(clash[:3])} in it would be replaced by the queue's file(s) "
                f"of the same name and the folder is not known to be cvaudit's (no {MARKER_FILE}); move it away first"
            )
    for path in protect:
        if path is None:
            continue
        inside = Path(os.path.abspath(path)).resolve()
        for name in ("images", "variants"):
            sub = target / name
            if inside == sub or sub in inside.parents:
                raise OutputError(
                    f"--out {out}: {sub} holds {path}, an input of the queue, and the queue replaces it; "
                    "choose another --out"
                )
    try:
        if _lstat(target) is None:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(target, mode)
        fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        if not _marked(target):
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            marker = os.open(target / MARKER_FILE, flags, 0o600)
            os.fchmod(marker, mode & 0o666)
            with os.fdopen(marker, "w", encoding="utf-8") as handle:
                handle.write(_QUEUE_MARKER_TEXT)
        for name in os.listdir(target):  # left by an interrupted queue
            if _SCRATCH.match(name):
                left = target / name
                info = _lstat(left)
                if info is not None and stat.S_ISDIR(info.st_mode):
                    shutil.rmtree(left, ignore_errors=True)
                elif info is not None:
                    os.unlink(left)
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot create it or write into it ({exc.strerror or exc})") from None
    return QueueFolder(target, mode)


def queue_inputs(run: RunFolder, cfg: Any) -> list[Any]:
    """The files and folders a queue reads (its run folder, the data): ``--out``'s replaced folders may not hold them."""
    data = cfg.data
    inputs = [run.path, data.manifest, data.images, data.npz, data.root]
    detection = getattr(cfg, "detection", None)
    if detection is not None:
        inputs += [detection.annotations, detection.images_root, detection.yolo]
    return inputs


def _rows(path: Path) -> Iterator[dict[str, str]]:
    yield from csvfile.DictReader(csvfile.lines(path, what=f"the run's {path.name}", error=AuditError))


def _by_sample(rows: Iterator[dict[str, str]]) -> Iterator[tuple[str, list[dict[str, str]]]]:
    current, group = None, []
    for row in rows:
        if row["sample_id"] != current:
            if current is not None:
                yield current, group
            current, group = row["sample_id"], []
        group.append(row)
    if current is not None:
        yield current, group


def find_candidates(
    run: RunFolder,
    class_names: Sequence[str],
    attributes: Sequence[str],
    strata_of: Any,
    breaking_reasons: dict[str, dict[str, tuple[float, str]]],
) -> tuple[dict[str, Candidate], Counter, Counter]:
    """Candidates by sample id (only samples with a reason are kept), and per stratum the natural
    rows and errors seen (for the allocation)."""
    natural = run.natural_conditions
    mild = {"clean"} | {min(ids, key=lambda c: c[0])[1] for ids in _natural_conditions_by_stressor(run).values()}
    candidates: dict[str, Candidate] = {}
    rows_seen: Counter = Counter()
    errors_seen: Counter = Counter()
    for sid, rows in _by_sample(_rows(run.predictions)):
        clean = next((r for r in rows if r["condition"] == "clean"), None)
        if clean is None:
            continue
        attrs = {a: clean.get(a, "") for a in attributes}
        stratum = strata_of(attrs)
        cand = Candidate(sid, int(clean["label"]), int(clean["prediction"]), float(clean["confidence"]), attrs)
        worst: tuple[float, str, int] | None = None
        for r in rows:
            if r["condition"] not in natural:
                continue
            wrong = r["label"] != r["prediction"]
            rows_seen[stratum] += 1
            errors_seen[stratum] += wrong
            if wrong and r["condition"] in mild and (worst is None or float(r["confidence"]) > worst[0]):
                worst = (float(r["confidence"]), r["condition"], int(r["prediction"]))
        name = lambda k: class_names[k] if 0 <= k < len(class_names) else str(k)  # noqa: E731
        if cand.prediction != cand.label and cand.confidence >= LABEL_NOISE_CONFIDENCE:
            cand.reasons["label_noise_suspect"] = (
                cand.confidence,
                f"predicted {name(cand.prediction)} with confidence {cand.confidence:.2f} on the clean image; "
                f"recorded label {name(cand.label)} may be wrong",
            )
        elif worst is not None and worst[0] >= ERROR_CONFIDENCE:
            cand.reasons["confident_error"] = (
                worst[0],
                f"wrong {'on the clean image' if worst[1] == 'clean' else 'under ' + worst[1]} with confidence "
                f"{worst[0]:.2f} (predicted {name(worst[2])})",
            )
        if cand.prediction == cand.label:
            cand.reasons.update(breaking_reasons.get(sid, {}))
        if cand.reasons:
            candidates[sid] = cand
    return candidates, rows_seen, errors_seen


def _natural_conditions_by_stressor(run: RunFolder) -> dict[str, list[tuple[float, str]]]:
    out: dict[str, list[tuple[float, str]]] = {}
    for c in run.results.conditions:
        if c.stressor and not c.model_aware:
            out.setdefault(c.stressor, []).append((float(c.severity), c.id))
    return out


def _natural_levels(run: RunFolder) -> dict[str, list[float]]:
    levels: dict[str, list[float]] = {}
    for c in run.results.conditions:
        if c.stressor and not c.model_aware:
            levels.setdefault(c.stressor, []).append(float(c.severity))
    return {k: sorted(v) for k, v in levels.items()}


def breaking_reasons(run: RunFolder, bp_path: Path) -> dict[str, dict[str, tuple[float, str]]]:
    """Reasons from breaking_points.csv (natural stressors): the lowest breaking points and prediction flips."""
    levels = _natural_levels(run)
    out: dict[str, dict[str, tuple[float, str]]] = {}
    for r in _rows(bp_path):
        lv = levels.get(r["stressor"])
        if not lv:
            continue
        name, found = r["stressor"], {}
        if r["state"] == "broken" and r["breaking_point"] and float(r["breaking_point"]) <= lv[0]:
            value = float(r["breaking_point"])
            found["low_breaking_point"] = (
                1.0 - value / lv[-1],
                f"right on the clean image, wrong from {name} severity {value:g} (the lowest evaluated is {lv[0]:g})",
            )
        flips = int(r["flips"] or 0)
        if flips >= 2:
            found["prediction_flip"] = (
                min(0.5, flips / (2 * len(lv))),
                f"prediction changes {flips} times between neighbouring {name} severities (clean to {lv[-1]:g})",
            )
        mine = out.setdefault(r["sample_id"], {}) if found else {}
        for reason, value in found.items():
            if reason not in mine or value[0] > mine[reason][0]:
                mine[reason] = value
    return out


def breaking_of(run: RunFolder, bp_path: Path, wanted: set[str]) -> dict[str, list[tuple[str, float]]]:
    """(natural stressor, breaking point) of the ``wanted`` samples that break."""
    levels = _natural_levels(run)
    out: dict[str, list[tuple[str, float]]] = {}
    for r in _rows(bp_path):
        if r["sample_id"] in wanted and r["stressor"] in levels and r["state"] == "broken" and r["breaking_point"]:
            out.setdefault(r["sample_id"], []).append((r["stressor"], float(r["breaking_point"])))
    return out


def allocate(budget: int, weights: dict[Any, float], available: dict[Any, int]) -> dict[Any, int]:
    """Share ``budget`` among strata in proportion to ``weights``, never more than ``available``.

    Water-filling: strata whose share exceeds what they have take all of it and
    the rest is shared again among the others; fractional shares go to the
    largest remainders (ties: higher weight, then stratum order).

    >>> allocate(10, {"A": 0.1, "B": 0.3}, {"A": 50, "B": 50})
    {'A': 2, 'B': 8}
    >>> allocate(10, {"A": 0.1, "B": 0.3}, {"A": 50, "B": 3})
    {'A': 7, 'B': 3}
    """
    out = {k: 0 for k in weights}
    open_ = {k for k in weights if available.get(k, 0) > 0}
    left = min(budget, sum(available.get(k, 0) for k in open_))
    while left > 0 and open_:
        total = sum(max(weights[k], 1e-12) for k in open_)
        shares = {k: left * max(weights[k], 1e-12) / total for k in open_}
        full = {k for k in open_ if shares[k] >= available[k] - out[k]}
        if full:
            for k in full:
                left -= available[k] - out[k]
                out[k] = available[k]
            open_ -= full
            continue
        base = {k: math.floor(shares[k]) for k in open_}
        for k in open_:
            out[k] += base[k]
        rest = left - sum(base.values())
        order = sorted(open_, key=lambda k: (-(shares[k] - base[k]), -weights[k], list(weights).index(k)))
        for k in order[:rest]:
            out[k] += 1
        left = 0
    return out


def _governance_scan(cfg: Any, policy: Any) -> tuple[Any, list[dict[str, Any]]]:
    """The policy's governance checks as a scan fed by the manifest reader (checked now), and its affected rows."""
    from policies import GovernanceScan

    gov = getattr(policy, "governance", None)
    if gov is None:
        return None, []
    affected: list[dict[str, Any]] = []
    now = dt.datetime.now(dt.timezone.utc)
    return GovernanceScan(gov, id_column=cfg.data.id_column, now=now, affected=affected), affected


def held_back_checks() -> tuple[str, ...]:
    """The governance checks that keep a sample out of every export (those registered with
    ``holds_back_images``, :class:`policies.GovernanceCheck`), in report order."""
    from policies import governance_checks

    return tuple(check.name for check in governance_checks() if check.holds_back_images)


def _held_back(affected: list[dict[str, Any]], wanted: set[str]) -> dict[str, list[str]]:
    """sample id -> the held-back checks that find it (in the checks' order), for the ``wanted`` samples."""
    held_back = set(held_back_checks())
    # matched as the run's CSVs spell ids (control characters escaped): a finding's id is the manifest's own
    spelled = {csvfile.read_back(w): w for w in wanted}
    out: dict[str, list[str]] = {}
    for hit in affected:
        sid, check = spelled.get(csvfile.read_back(str(hit["sample_id"]))), hit["check"]
        if check in held_back and sid is not None and check not in out.get(sid, []):
            out.setdefault(sid, []).append(check)
    return out


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Selection:
    """The queue's choice: per stratum its failure rate, candidates and quota, and the chosen candidates.

    Attributes:
        held: sample id -> the governance checks that hold it back (never exported).
        strata: every stratum seen in the run or among the candidates, sorted.
        rate: stratum -> its share of failures in the run (errors, missed objects), the allocation's weight.
        by_stratum: stratum -> its candidates not held back.
        quota: stratum -> how many of them are chosen (:func:`allocate`).
        chosen: ``(stratum, candidate)``, by priority (highest first), then sample id.
    """

    held: dict[str, list[str]]
    strata: list[str]
    rate: dict[str, float]
    by_stratum: dict[str, list[Any]]
    quota: dict[str, int]
    chosen: list[tuple[str, Any]]

    def summary(self, rate_key: str) -> dict[str, Any]:
        """The summary.json keys of the selection (``rate_key``: the name of the stratum rate)."""
        return {
            "held_back": len(self.held),
            "held_back_by_check": dict(sorted(Counter(c for checks in self.held.values() for c in checks).items())),
            "reasons": dict(sorted(Counter(r for _, c in self.chosen for r in c.reasons).items())),
            "strata": [
                {
                    "stratum": s,
                    rate_key: self.rate[s],
                    "candidates": len(self.by_stratum.get(s, [])),
                    "selected": self.quota[s],
                }
                for s in self.strata
            ],
        }


def select(
    candidates: dict[str, Any],
    affected: list[dict[str, Any]],
    strata_of: Any,
    seen: Counter,
    failed: Counter,
    budget: int,
) -> Selection:
    """Hold back what governance says, allocate ``budget`` over the strata by failure rate, rank by priority.

    Args:
        candidates: sample id -> a candidate with ``sample_id``, ``attributes``, ``reasons`` and ``priority``.
        affected: the governance scan's affected rows (:func:`_governance_scan`).
        strata_of: a candidate's attributes -> its stratum.
        seen, failed: stratum -> units seen in the run (samples, objects) and those that failed.
        budget: how many candidates to choose at most.
    """
    held = _held_back(affected, set(candidates))
    by_stratum: dict[str, list[Any]] = {}
    for c in candidates.values():
        if c.sample_id not in held:
            by_stratum.setdefault(strata_of(c.attributes), []).append(c)
    strata = sorted(set(seen) | set(by_stratum))
    rate = {s: failed[s] / seen[s] if seen[s] else 0.0 for s in strata}
    quota = allocate(budget, rate, {s: len(by_stratum.get(s, [])) for s in strata})
    chosen: list[tuple[str, Any]] = []
    for s in strata:
        ranked = sorted(by_stratum.get(s, []), key=lambda c: (-c.priority, c.sample_id))
        chosen.extend((s, c) for c in ranked[: quota[s]])
    chosen.sort(key=lambda sc: (-sc[1].priority, sc[1].sample_id))
    return Selection(held, strata, rate, by_stratum, quota, chosen)


def _safe_name(sample_id: str, index: int) -> str:
    return f"{index:05d}-{_SAFE.sub('_', sample_id)[:80]}"


def build_queue(run: RunFolder, *, cfg: Any, policy: Any, out_dir: Path, settings: QueueSettings) -> dict[str, Any]:
    """Select, check and export the queue; returns the summary (also written to ``summary.json``).

    Raises:
        AuditError: bad settings, an unknown stratification attribute, unreadable images.
        reports.OutputError: ``out_dir`` refused (:func:`claim_queue_folder`), before anything is read or written.
    """
    if settings.budget < 1:
        raise AuditError(f"--budget {settings.budget}: must be at least 1 sample")
    if settings.fmt not in FORMATS:
        raise AuditError(f"--format {settings.fmt!r}: unknown format (expected one of: {', '.join(FORMATS)})")
    results = run.results
    class_names = list(results.model.class_names)
    attributes = list(results.dataset.attributes)
    strat = list(settings.stratify) or attributes
    unknown = [a for a in strat if a not in attributes]
    if unknown:
        raise AuditError(
            f"--stratify {unknown[0]!r}: not an attribute of the run (have: {', '.join(attributes) or 'none'})"
        )
    strata_of = lambda attrs: "×".join(attrs.get(a, "") for a in strat) if strat else "all"  # noqa: E731
    folder = claim_queue_folder(out_dir, force=settings.force, mode=settings.out_mode, protect=queue_inputs(run, cfg))
    scratch = folder.scratch()  # staged images/, variants/, a derived breaking_points.csv; removed at the end
    try:
        return _build(run, cfg, policy, folder, scratch, settings, class_names, attributes, strat, strata_of)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _build(run, cfg, policy, folder, scratch, settings, class_names, attributes, strat, strata_of) -> dict[str, Any]:
    from audit.evaluation import read_samples

    bp_path = run.breaking_points or _derive_breaking_points(run, scratch, attributes)
    reasons = breaking_reasons(run, bp_path) if bp_path is not None else {}
    candidates, rows_seen, errors_seen = find_candidates(run, class_names, attributes, strata_of, reasons)
    scan, affected = _governance_scan(cfg, policy)
    table = read_samples(cfg.data, class_names=cfg.model.class_names, on_chunk=scan.feed if scan else None)
    selection = select(candidates, affected, strata_of, rows_seen, errors_seen, settings.budget)
    chosen = selection.chosen
    if settings.variants:
        breaks = breaking_of(run, bp_path, {c.sample_id for _, c in chosen}) if bp_path is not None else {}
        for _, c in chosen:
            c.breaking = breaks.get(c.sample_id, [])
    index_of = {csvfile.read_back(sid): i for i, sid in enumerate(table.ids)}  # ids as predictions.csv gives them
    exported = _export(run, cfg, table, index_of, chosen, class_names, attributes, folder, scratch, settings)
    summary = {
        "run": str(run.path),
        "policy": getattr(policy, "name", None),
        "budget": settings.budget,
        "candidates": len(candidates),
        "selected": len(chosen),
        **selection.summary("error_rate"),
        "stratified_by": strat,
        "files": exported,
    }
    folder.write_text("summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _derive_breaking_points(run: RunFolder, scratch: Path, attributes: list[str]) -> Path | None:
    """breaking_points.csv of a run that has none (an older run), derived from its predictions into
    ``scratch`` (a private temporary folder)."""
    from audit.evaluation import compute_breaking_points

    def rows() -> Iterator[list[str]]:
        reader = csvfile.reader(csvfile.lines(run.predictions, what="the run's predictions.csv", error=AuditError))
        next(reader, None)
        yield from reader

    path = scratch / "breaking_points.csv"
    keys = compute_breaking_points(
        rows=rows,
        conditions=[  # the condition fields breaking points are tracked by
            {"id": c.id, "stressor": c.stressor, "severity": c.severity, "model_aware": c.model_aware, "probe": c.probe}
            for c in run.results.conditions
        ],
        attributes=attributes,
        groupings=[],
        min_group_size=1,
        out_csv=path,
    )
    return path if keys else None


def _export(
    run, cfg, table, index_of, chosen, class_names, attributes, folder: QueueFolder, scratch: Path, settings
) -> list[str]:
    from audit.loop.labelstudio import labeling_config, task

    images_dir = scratch / "images"  # swapped in as images/ once complete
    images_dir.mkdir(mode=0o700)
    files: list[str] = []
    rows, tasks = [], []
    version = f"cvaudit:{(run.results.model.sha256 or 'model')[:12]}"
    for rank, (stratum, c) in enumerate(chosen, start=1):
        i = index_of.get(c.sample_id)
        if i is None:
            raise AuditError(
                f"sample {c.sample_id!r} of the run is not in the dataset of {cfg.data.manifest or cfg.data.images or cfg.data.npz}"
            )
        image = _write_image(table, cfg, i, images_dir / _safe_name(c.sample_id, rank))
        rel = f"images/{image.name}"
        reasons = sorted(c.reasons, key=lambda r: -c.reasons[r][0])
        rationale = "; ".join(c.reasons[r][1] for r in reasons)
        row = {
            "rank": rank,
            "sample_id": c.sample_id,
            "stratum": stratum,
            "priority": round(c.priority, 4),
            "reasons": " ".join(reasons),
            "rationale": rationale,
            "label": class_names[c.label] if 0 <= c.label < len(class_names) else c.label,
            "prediction": class_names[c.prediction] if 0 <= c.prediction < len(class_names) else c.prediction,
            "confidence": round(c.confidence, 4),
            "image": rel,
            **c.attributes,
        }
        rows.append(row)
        tasks.append(task(row, image_url=settings.image_prefix + rel, model_version=version, attributes=attributes))
    columns = [
        "rank",
        "sample_id",
        "stratum",
        "priority",
        "reasons",
        "rationale",
        "label",
        "prediction",
        "confidence",
        "image",
        *attributes,
    ]
    variants = _write_variants(run, cfg, table, index_of, chosen, scratch) if settings.variants else None
    folder.put_folder(images_dir, "images")
    folder.write_text("queue.csv", csv_text(columns, rows))
    files.append("queue.csv")
    if settings.fmt == "label-studio":
        folder.write_text("tasks.json", json.dumps(tasks, indent=2, ensure_ascii=False) + "\n")
        folder.write_text("labeling_config.xml", labeling_config(class_names))
        files += ["tasks.json", "labeling_config.xml"]
    files.append("images/")
    if variants is not None:
        folder.put_folder(variants, "variants")
        files.append("variants/")
    return files


def csv_text(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """The queue's CSV (header and rows) through cvaudit's one CSV writer, as text."""
    buffer = io.StringIO(newline="")
    writer = csvfile.DictWriter(buffer, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _write_image(table, cfg, i: int, stem: Path) -> Path:
    """The sample's image file as it is (npz data: a PNG at the model's input size)."""
    if table.paths is not None:
        source = Path(table.paths[i])
        dest = stem.with_suffix(source.suffix.lower() or ".png")
        try:
            shutil.copyfile(source, dest)
        except OSError as exc:
            raise AuditError(
                f"{source}: sample {table.ids[i]}: cannot copy the image ({exc.strerror or exc})"
            ) from None
        return dest
    return _save_png(_decoded(table, cfg, i), stem.with_suffix(".png"))


def _decoded(table, cfg, i: int):
    from audit.evaluation import AuditDataset

    item = AuditDataset(table, cfg.model, [i])[0]
    if "error" in item:
        raise AuditError(f"{table.source}: sample {table.ids[i]}: {item['error']}")
    return item["image"]


def _save_png(image, path: Path) -> Path:
    from PIL import Image

    arr = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr).save(path)
    return path


def _write_variants(run, cfg, table, index_of, chosen, scratch: Path) -> Path:
    """Per queued sample and image stressor, the stressed image at its breaking point (else at the mildest
    evaluated severity), with the parameters that reproduce it (``variants/params.jsonl``), in a staging
    folder the caller swaps in as ``variants/``."""
    import stressors
    from audit.contract.seeds import sample_key
    from stressors import sample_keys

    folder = scratch / "variants"
    folder.mkdir(mode=0o700)
    entries = {s.name: s for s in run.results.stressors}
    seed = run.results.seed
    records = []
    levels = _natural_levels(run)
    for rank, (_, c) in enumerate(chosen, start=1):
        x = _decoded(table, cfg, index_of[c.sample_id])[None]
        raw_id = str(table.ids[index_of[c.sample_id]])  # the dataset's own id: its key seeds the stressor
        broken = dict(c.breaking)
        for name, evaluated in levels.items():
            info = entries.get(name)
            if info is None:
                continue
            severity = broken.get(name, evaluated[0])  # its breaking point, else the mildest level
            options = {k: v for k, v in info.options.items() if k != "severities"}
            stressor = stressors.get(info.stressor, **options)
            fractional = not float(severity).is_integer() or int(severity) not in stressor.severities
            level = severity if fractional else int(severity)
            params = stressor.sample_params(sample_keys([raw_id]), level, seed=seed, fractional=fractional)
            path = _save_png(
                stressor.apply(x, params)[0],
                folder / f"{_safe_name(c.sample_id, rank)}__{_SAFE.sub('_', name)}@{severity:g}.png",
            )
            records.append(
                {
                    "file": f"variants/{path.name}",
                    "sample_id": c.sample_id,
                    "sample_key": sample_key(raw_id),
                    "stressor": info.stressor,
                    "entry": name,
                    "options": options,
                    "severity": level,
                    "fractional": fractional,
                    "seed": seed,
                    "params": params.record(0),
                    "input_size": list(cfg.model.input_size),
                }
            )
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(folder / "params.jsonl", flags, 0o600), "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
    return folder
