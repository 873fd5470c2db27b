"""``cvaudit queue`` on a detection run: the images most worth labelling or re-checking next.

What each image lost comes from the run's own files: ``detections.csv`` (per condition and image: objects,
false positives, missed objects, counted on that condition's truth) and ``objects.csv`` (per condition and
object: present, found; a run without it, schema 1.3, is matched again here on the annotated boxes, which
its stressors never moved). The clean image's detections (``detections.json``) are matched again at the
run's operating point (``detection.score_threshold``, ``detection.iou_threshold``, the audit's matching,
:func:`~audit.evaluation.detection.operating_point.match_images`) for the score of each false positive and
for the exported boxes. The **failing conditions** are, per image stressor, its lowest evaluated severity
whose COCO mAP fell by at least :data:`audit.loop.recipe.MIN_DROP` (0.02) from clean (where the recipe's
severity range starts). An image gets these reasons:

- ``confident_false_positive``: on the clean image a detection with score >= 0.9 matches no
  object: the annotation may lack an object (the detector's "label noise"); score = that score;
- ``missed_on_clean``: objects no detection matched on the clean image; score = missed / objects;
- ``missed_under_stress``: objects found on the clean image, still in view (``present``) but missed
  under a failing condition; score = the largest share of the clean-found objects lost under one;
- ``false_positive_under_stress``: ``extra`` more false positives under a failing condition than on
  the clean image; score = 0.5 x extra / (extra + the image's objects) (below 0.5).

Priority, ranking and allocation are the classifier's (:mod:`audit.loop.queue`): an image's
priority is its best score plus 0.1 per further reason; the budget is shared among the strata
(the combinations of the stratification attributes) in proportion to their miss rate over the
natural conditions (missed objects / objects, clean and every stressor condition); within a
stratum the highest priority goes first (ties: sample id). Governance holds images back exactly
as for classifiers: every candidate's manifest row is checked under the run's policy and a held
back image is never exported (not its file, not its boxes, not its id).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audit.contract import csvfile
from audit.contract.errors import AuditError
from audit.contract.files import read_bounded
from audit.contract.load import MAX_DETECTIONS_BYTES
from audit.loop.queue import (
    FORMATS,
    QueueFolder,
    QueueSettings,
    _governance_scan,
    _safe_name,
    claim_queue_folder,
    csv_text,
    queue_inputs,
    select,
)
from audit.loop.run_folder import RunFolder

__all__ = ["DetectionCandidate", "build_detection_queue", "failing_conditions"]

CONFIDENT_FP = 0.9


@dataclass
class DetectionCandidate:
    """One image worth a look, with its reasons."""

    row: int  # index into the ground truth's images
    sample_id: str
    attributes: dict[str, str]
    objects: int
    missed_clean: int
    fp_clean: int
    reasons: dict[str, tuple[float, str]] = field(default_factory=dict)

    @property
    def priority(self) -> float:
        scores = sorted((s for s, _ in self.reasons.values()), reverse=True)
        return scores[0] + 0.1 * (len(scores) - 1) if scores else 0.0


def failing_conditions(run: RunFolder, min_drop: float | None = None) -> dict[str, str]:
    """stressor -> the id of its lowest evaluated condition whose mAP fell by ``min_drop`` or more from clean
    (image stressors only: an attack's images are not a condition to collect more data of)."""
    from audit.loop.recipe import MIN_DROP

    threshold = MIN_DROP if min_drop is None else min_drop
    attacks = {s.name for s in run.results.stressors if s.model_aware}
    conds = [c for c in run.results.detection.conditions if c.stressor not in attacks]
    clean = next((c.metrics.map for c in conds if c.id == "clean"), None)
    out: dict[str, tuple[float, str]] = {}
    if clean is None:
        return {}
    for c in conds:
        if c.stressor is None or c.metrics.map is None or clean - c.metrics.map < threshold:
            continue
        if c.stressor not in out or float(c.severity) < out[c.stressor][0]:
            out[c.stressor] = (float(c.severity), c.id)
    return {k: v[1] for k, v in out.items()}


def _detections_by_condition(path: Path, known: set[str]) -> dict[str, dict[int, list[tuple]]]:
    """condition -> image id -> [(x, y, w, h, score, category_id)] from detections.json."""
    raw = read_bounded(path, limit=MAX_DETECTIONS_BYTES, what="detections file", error=AuditError)
    try:
        entries = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise AuditError(f"{path}: cannot read the run's detections ({exc})") from None
    if not isinstance(entries, list):
        raise AuditError(f"{path}: expected a list of detections (COCO results format)")
    out: dict[str, dict[int, list[tuple]]] = {}
    for n, d in enumerate(entries):
        try:
            cond = str(d["condition"])
            x, y, w, h = (float(v) for v in d["bbox"])
            item = (x, y, w, h, float(d["score"]), int(d["category_id"]))
            image_id = int(d["image_id"])
        except (KeyError, TypeError, ValueError):
            raise AuditError(
                f"{path}: detection {n}: needs image_id, category_id, bbox [x, y, w, h], score, condition"
            ) from None
        if cond not in known:
            raise AuditError(f"{path}: detection {n}: condition {cond!r} is not a condition of the run")
        out.setdefault(cond, {}).setdefault(image_id, []).append(item)
    return out


def _image_detections(image_id: int, items: list[tuple]):
    from audit.evaluation import ImageDetections

    arr = np.asarray(items, dtype=np.float64).reshape(-1, 6)
    boxes = np.column_stack([arr[:, 0], arr[:, 1], arr[:, 0] + arr[:, 2], arr[:, 1] + arr[:, 3]])
    return ImageDetections(image_id, boxes, arr[:, 4], arr[:, 5].astype(np.int64))


def match_condition(data: Any, dets: dict[int, list[tuple]], settings: Any) -> tuple[list[Any], list[Any]]:
    """The operating point's matching of one condition's detections: (per image detections, per image matches)."""
    from audit.evaluation import match_images

    detections = [_image_detections(t.image_id, dets.get(int(t.image_id), [])) for t in data.truths]
    matches = match_images(
        data.truths,
        detections,
        score_threshold=settings.score_threshold,
        iou_threshold=settings.iou_threshold,
    )
    return detections, matches


def _image_counts(path: Path) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(condition, sample id) -> (objects, false positives, missed objects) from the run's detections.csv
    (the audit's own counts on each condition's truth: objects a geometric stressor moved out of view are not there)."""
    from audit.contract.metric_specs import DETECTION_COUNTS

    _tp, fp, fn = (spec.name for spec in DETECTION_COUNTS)  # the count columns, as the audit writes them
    out: dict[tuple[str, str], tuple[int, int, int]] = {}
    try:
        for line, row in enumerate(
            csvfile.DictReader(csvfile.lines(path, what="the run's per-image counts", error=AuditError)), start=2
        ):
            try:
                out[(row["condition"], row["sample_id"])] = (int(row["objects"]), int(row[fp]), int(row[fn]))
            except (KeyError, TypeError, ValueError):
                raise AuditError(f"{path}: line {line}: needs condition, sample_id, objects, {fp}, {fn}") from None
    except OSError as exc:
        raise AuditError(f"{path}: cannot read the run's per-image counts ({exc.strerror or exc})") from None
    return out


def _object_outcomes(
    run: RunFolder, data: Any, by_condition: dict[str, dict[int, list[tuple]]], wanted: set[str]
) -> dict[str, dict[int, dict[int, tuple[bool, bool]]]]:
    """condition -> image row -> object index -> (present, found), for the ``wanted`` conditions.

    From the run's ``objects.csv`` (the audit's own per-object outcomes, on each condition's truth); a run
    without one (results schema 1.3, whose stressors never moved boxes) is matched again here on the
    annotated boxes."""
    from audit.evaluation import read_objects

    out: dict[str, dict[int, dict[int, tuple[bool, bool]]]] = {c: {} for c in wanted}
    path = run.path / "objects.csv"
    if path.is_file():
        rows = read_objects(path, conditions=wanted)
        for cid, row, k, present, found in zip(
            rows.condition.tolist(),
            rows.image_row.tolist(),
            rows.object_index.tolist(),
            rows.present.tolist(),
            rows.found.tolist(),
        ):
            out[cid].setdefault(int(row), {})[int(k)] = (bool(present), bool(found))
        return out
    for cid in wanted:
        _dets, matches = match_condition(data, by_condition.get(cid, {}), run.results.detection.settings)
        for i, m in enumerate(matches):
            out[cid][i] = {int(k): (True, not bool(m.missed[k])) for k in np.flatnonzero(~m.truth_iscrowd)}
    return out


def build_detection_queue(
    run: RunFolder, *, cfg: Any, policy: Any, out_dir: Path, settings: QueueSettings
) -> dict[str, Any]:
    """Select, check and export the queue of a detection run; returns the summary (also ``summary.json``).

    Raises:
        AuditError: bad settings, an unknown stratification attribute, unreadable detections or images.
        reports.OutputError: ``out_dir`` refused (:func:`audit.loop.queue.claim_queue_folder`), before anything is
            read or written.
    """
    from audit.evaluation import read_detection_data

    if settings.budget < 1:
        raise AuditError(f"--budget {settings.budget}: must be at least 1 sample")
    if settings.fmt not in FORMATS:
        raise AuditError(f"--format {settings.fmt!r}: unknown format (expected one of: {', '.join(FORMATS)})")
    if settings.variants:
        raise AuditError("--variants: not available for detection runs (the stressed images carry no boxes yet)")
    results = run.results
    det = results.detection
    class_names = list(det.class_names)
    attributes = list(results.dataset.attributes)
    strat = list(settings.stratify) or attributes
    unknown = [a for a in strat if a not in attributes]
    if unknown:
        raise AuditError(
            f"--stratify {unknown[0]!r}: not an attribute of the run (have: {', '.join(attributes) or 'none'})"
        )
    strata_of = lambda attrs: "×".join(attrs.get(a, "") for a in strat) if strat else "all"  # noqa: E731
    folder = claim_queue_folder(out_dir, force=settings.force, mode=settings.out_mode, protect=queue_inputs(run, cfg))
    scan, affected = _governance_scan(cfg, policy)
    data = read_detection_data(cfg, on_chunk=scan.feed if scan else None)
    conditions = [c.id for c in det.conditions]
    by_condition = _detections_by_condition(run.detections, set(conditions))
    failing = failing_conditions(run)
    clean_dets, clean_matches = match_condition(data, by_condition.get("clean", {}), det.settings)
    counts = _image_counts(run.predictions)
    outcomes = _object_outcomes(run, data, by_condition, set(failing.values()) | {"clean"})
    names = dict(data.categories)
    candidates: dict[str, DetectionCandidate] = {}
    objects_seen: Counter = Counter()
    missed_seen: Counter = Counter()
    for i, (image, sid) in enumerate(zip(data.truth.images, data.sample_ids)):
        attrs = {a: image.attributes.get(a, "") for a in attributes}
        stratum = strata_of(attrs)
        for cid in conditions:
            n, _fp, fn = counts.get((cid, csvfile.read_back(sid)), (0, 0, 0))
            objects_seen[stratum] += n
            missed_seen[stratum] += fn
        m0, d0 = clean_matches[i], clean_dets[i]
        n_objects = int((~m0.truth_iscrowd).sum())
        fp0 = m0.detection_outcome == 0
        cand = DetectionCandidate(i, sid, attrs, n_objects, int(m0.missed.sum()), int(fp0.sum()))
        if fp0.any():
            k = int(np.argmax(np.where(fp0, d0.scores, -1.0)))
            if d0.scores[k] >= CONFIDENT_FP:
                cand.reasons["confident_false_positive"] = (
                    float(d0.scores[k]),
                    f"a {names.get(int(d0.category_ids[k]), '?')} detected with score {d0.scores[k]:.2f} on the "
                    "clean image matches no object: the annotation may lack it",
                )
        if cand.missed_clean:
            cand.reasons["missed_on_clean"] = (
                cand.missed_clean / n_objects,
                f"{cand.missed_clean} of {n_objects} objects missed on the clean image",
            )
        found_clean = {k for k, (_present, found) in outcomes["clean"].get(i, {}).items() if found}
        best_lost: tuple[float, str] | None = None
        best_fp: tuple[float, str] | None = None
        for cid in failing.values():
            if found_clean:
                there = outcomes[cid].get(i, {})
                lost = sum(1 for k in found_clean if k in there and there[k][0] and not there[k][1])
                share = lost / len(found_clean)
                if lost and (best_lost is None or share > best_lost[0]):
                    best_lost = (
                        share,
                        f"{lost} of the {len(found_clean)} objects found on the clean image missed under {cid}",
                    )
            extra = counts.get((cid, sid), (0, 0, 0))[1] - counts.get(("clean", sid), (0, 0, 0))[1]
            if extra > 0:
                score = 0.5 * extra / (extra + n_objects)
                if best_fp is None or score > best_fp[0]:
                    best_fp = (score, f"{extra} more false positive(s) under {cid} than on the clean image")
        if best_lost is not None:
            cand.reasons["missed_under_stress"] = best_lost
        if best_fp is not None:
            cand.reasons["false_positive_under_stress"] = best_fp
        if cand.reasons:
            candidates[sid] = cand
    selection = select(candidates, affected, strata_of, objects_seen, missed_seen, settings.budget)
    chosen = selection.chosen
    scratch = folder.scratch()  # the staged images/, removed at the end
    try:
        exported = _export(run, data, clean_dets, chosen, class_names, names, attributes, folder, scratch, settings)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary = {
        "run": str(run.path),
        "task": "detection",
        "policy": getattr(policy, "name", None),
        "budget": settings.budget,
        "failing_conditions": dict(sorted(failing.items())),
        "candidates": len(candidates),
        "selected": len(chosen),
        **selection.summary("miss_rate"),
        "stratified_by": strat,
        "files": exported,
    }
    folder.write_text("summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _export(
    run, data, clean_dets, chosen, class_names, names, attributes, folder: QueueFolder, scratch: Path, settings
) -> list[str]:
    from audit.loop.labelstudio import detection_task, rectangle, rectangle_labeling_config

    images_dir = scratch / "images"  # swapped in as images/ once complete
    images_dir.mkdir(mode=0o700)
    results = run.results
    threshold = results.detection.settings.score_threshold
    version = f"cvaudit:{(results.model.sha256 or 'model')[:12]}"
    truth_version = f"ground-truth:{(results.detection.ground_truth.sha256 or 'annotations')[:12]}"
    rows, tasks = [], []
    for rank, (stratum, c) in enumerate(chosen, start=1):
        image = data.truth.images[c.row]
        source = Path(image.path)
        dest = images_dir / (_safe_name(c.sample_id, rank) + (source.suffix.lower() or ".png"))
        try:
            shutil.copyfile(source, dest)
        except OSError as exc:
            raise AuditError(f"{source}: sample {c.sample_id}: cannot copy the image ({exc.strerror or exc})") from None
        rel = f"images/{dest.name}"
        reasons = sorted(c.reasons, key=lambda r: -c.reasons[r][0])
        row = {
            "rank": rank,
            "sample_id": c.sample_id,
            "stratum": stratum,
            "priority": round(c.priority, 4),
            "reasons": " ".join(reasons),
            "rationale": "; ".join(c.reasons[r][1] for r in reasons),
            "objects": c.objects,
            "missed_on_clean": c.missed_clean,
            "false_positives_on_clean": c.fp_clean,
            "image": rel,
            **c.attributes,
        }
        rows.append(row)
        w, h = image.width, image.height
        truth = [
            rectangle(f"gt-{rank}-{k}", obj.box, class_names[obj.category], w, h)
            for k, obj in enumerate(image.objects)
            if not obj.iscrowd
        ]
        d = clean_dets[c.row]
        keep = np.flatnonzero(d.scores >= threshold)
        keep = keep[np.argsort(-d.scores[keep], kind="stable")]
        detections = [
            rectangle(f"det-{rank}-{k}", d.boxes[j], names.get(int(d.category_ids[j]), "?"), w, h, d.scores[j])
            for k, j in enumerate(keep.tolist())
        ]
        score = float(d.scores[keep].mean()) if len(keep) else 0.0
        tasks.append(
            detection_task(
                row,
                image_url=settings.image_prefix + rel,
                model_version=version,
                truth_version=truth_version,
                attributes=attributes,
                truth=truth,
                detections=detections,
                score=score,
            )
        )
    columns = [
        "rank",
        "sample_id",
        "stratum",
        "priority",
        "reasons",
        "rationale",
        "objects",
        "missed_on_clean",
        "false_positives_on_clean",
        "image",
        *attributes,
    ]
    folder.put_folder(images_dir, "images")
    folder.write_text("queue.csv", csv_text(columns, rows))
    files = ["queue.csv"]
    if settings.fmt == "label-studio":
        folder.write_text("tasks.json", json.dumps(tasks, indent=2, ensure_ascii=False) + "\n")
        folder.write_text("labeling_config.xml", rectangle_labeling_config(class_names))
        files += ["tasks.json", "labeling_config.xml"]
    files.append("images/")
    return files
