"""From a detection pass's spilled detections to results.json's ``detection`` section and its files.

Per condition, one at a time (memory holds one condition's detections):

1. the spilled detections are written as a COCO results file (:func:`write_detections_json`), which
   faster-coco-eval scores (:class:`~audit.evaluation.detection.coco_metrics.CocoEvaluator`) over all
   images and over each image-level subgroup; per class, COCO AP with ``catIds`` restricted; the very
   same records go into the run's ``detections.json`` (each with its ``condition``);
2. the operating point (:mod:`~audit.evaluation.detection.operating_point`) matches the same boxes at
   ``detection.score_threshold`` / ``detection.iou_threshold``: precision, recall, F1, false positives
   and missed objects per image, over all images, per image-level subgroup, and recall per object-level
   subgroup (size, class, named annotation keys);
3. TIDE's error decomposition (:mod:`~audit.evaluation.detection.tide`) and the calibration error D-ECE
   (:mod:`~audit.evaluation.detection.calibration`) over all images;
4. one row per image and condition in ``detections.csv``, one row per object and condition in
   ``objects.csv`` (:mod:`~audit.evaluation.detection.objects`).

Each condition is scored against its own truth (:meth:`DetectionPass.condition_objects`): the clean truth,
or, under a stressor that moves pixels, the moved boxes of the objects still in view
(:func:`~audit.evaluation.detection.evaluate.condition_truth`), with ``object.size`` taken from their moved
areas; ``dropped_objects`` counts the objects left out.

Over the conditions: corruption robustness (mPC, rPC) and the recall gap tests with Holm's correction
(:mod:`~audit.evaluation.detection.statistics`); from objects.csv, the per-object breaking points of every
stressor entry with two or more levels (:mod:`~audit.evaluation.detection.object_breaking`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from audit.contract import csvfile
from audit.contract.config import AuditConfig
from audit.contract.digest import sha256_file
from audit.contract.intervals import CONFIDENCE_LEVEL
from audit.contract.metric_specs import DETECTION_COUNTS
from audit.contract.results import (
    DetectionCalibration,
    DetectionCondition,
    DetectionGapTest,
    DetectionGroup,
    DetectionMetrics,
    DetectionReliabilityBin,
    DetectionResults,
    DetectionRobustness,
    DetectionSettings,
    GroundTruthInfo,
    RecallGapPair,
    SkippedAnnotationRow,
    StressorRobustness,
    TideError,
)
from audit.evaluation.conditions import Condition
from audit.evaluation.detection.calibration import calibration_counts, calibration_samples
from audit.evaluation.detection.calibration import summarize as calibration_summary
from audit.evaluation.detection.coco_metrics import (
    CocoEvaluator,
    CocoMetrics,
    ImageDetections,
    ImageTruth,
    detection_records,
    write_detections_json,
)
from audit.evaluation.detection.evaluate import ConditionObjects, DetectionData, DetectionPass, condition_truth
from audit.evaluation.detection.object_breaking import summarize_object_breaking
from audit.evaluation.detection.objects import OBJECTS_CSV, ObjectsCsvWriter, condition_outcomes, read_objects
from audit.evaluation.detection.operating_point import (
    ImageMatch,
    ObjectGroupCounts,
    OperatingPointCounts,
    count_matches,
    match_images,
    object_group_counts,
    size_class,
)
from audit.evaluation.detection.operating_point import summarize as op_summary
from audit.evaluation.detection.statistics import (
    cluster_bootstrap_intervals,
    corruption_robustness,
    image_group_counts,
    object_group_recall_intervals,
    recall_gap_tests,
)
from audit.evaluation.detection.tide import ERROR_TYPES, tide_errors

__all__ = ["DETECTIONS_CSV", "DETECTIONS_JSON", "OBJECTS_CSV", "DetectionSummary", "summarize_detection"]

#: The run's detections, every condition, in the COCO results format plus ``condition``.
DETECTIONS_JSON = "detections.json"
#: One row per image and condition: objects, detections kept at the operating point, TP / FP / FN.
DETECTIONS_CSV = "detections.csv"


@dataclass(frozen=True)
class DetectionSummary:
    """What :func:`summarize_detection` returns: the results section and the files it wrote into ``work``.

    ``objects_csv``: the per-object outcomes (:func:`~audit.evaluation.detection.objects.read_objects` reads
    them back as :class:`~audit.evaluation.detection.objects.ObjectOutcomes`).
    """

    results: DetectionResults
    detections_json: Path
    detections_csv: Path
    objects_csv: Path
    #: ``object_breaking_points.csv`` (:func:`~audit.evaluation.detection.object_breaking.summarize_object_breaking`).
    object_breaking_csv: Path | None = None


@dataclass(frozen=True)
class _ConditionCounts:
    """One condition's per-image sufficient statistics, kept for the statistics across conditions."""

    op: OperatingPointCounts
    objects: dict[str, ObjectGroupCounts]
    matches: list[ImageMatch]


def _coco_fields(m: CocoMetrics) -> dict[str, Any]:
    """COCO's metrics under their results.json names (the metric registry's detection metrics)."""
    return dict(
        map=m.map,
        map_50=m.ap50,
        map_75=m.ap75,
        map_small=m.ap_small,
        map_medium=m.ap_medium,
        map_large=m.ap_large,
        ar_1=m.ar1,
        ar_10=m.ar10,
        ar_100=m.ar100,
    )


def _op_fields(counts: OperatingPointCounts, rows: np.ndarray) -> dict[str, Any]:
    """The operating point's counts and rates over the image rows ``rows`` under their results.json names."""
    op = op_summary(counts, image_index=rows)
    return dict(
        tp=op.tp,
        fp=op.fp,
        fn=op.fn,
        precision=op.precision,
        recall=op.recall,
        f1=op.f1,
        fp_per_image=op.fp_per_image,
        missed_per_image=op.missed_per_image,
    )


def _non_crowd_objects(truths: Sequence[ImageTruth], rows: np.ndarray) -> int:
    """Non-crowd objects of ``truths[k]`` for ``k`` in ``rows`` (positions among the evaluated images)."""
    return int(sum(int((~truths[int(k)].iscrowd).sum()) for k in rows))


def _object_groups(
    data: DetectionData, truths: Sequence[ImageTruth], objects: Mapping[int, ConditionObjects] | None
) -> dict[str, dict[int, list[str]]]:
    """grouping -> image id -> the group of each object of the condition's truth (the clean groups when every
    object stayed where it was; else the kept objects' groups, ``object.size`` from their moved areas)."""
    if objects is None or all(o.boxes is None for o in objects.values()):
        return data.object_groups
    out: dict[str, dict[int, list[str]]] = {}
    for name, per_image in data.object_groups.items():
        out[name] = {}
        for truth in truths:
            values = per_image.get(truth.image_id, [])
            state = objects.get(truth.image_id)
            if name == "object.size":
                assert truth.area is not None
                out[name][truth.image_id] = [str(v) for v in size_class(truth.area)]
            elif state is None:
                out[name][truth.image_id] = list(values)
            else:
                out[name][truth.image_id] = [v for v, keep in zip(values, state.kept) if keep]
    return out


def _dropped(data: DetectionData, positions: np.ndarray, objects: Mapping[int, ConditionObjects] | None) -> int | None:
    """Non-crowd objects a geometric stressor left out of the condition's truth; None for other conditions."""
    if objects is None or all(o.boxes is None for o in objects.values()):
        return None
    dropped = 0
    for r in positions:
        truth = data.truths[int(r)]
        state = objects.get(truth.image_id)
        if state is not None:
            dropped += int((~state.kept & ~truth.iscrowd).sum())
    return dropped


def _evaluated_positions(data: DetectionData, evaluated: Sequence[int]) -> np.ndarray:
    return np.asarray(sorted(evaluated), dtype=np.int64)


def summarize_detection(
    *,
    data: DetectionData,
    conditions: Sequence[Condition],
    passed: DetectionPass,
    cfg: AuditConfig,
    work: Path,
) -> DetectionSummary:
    """Score every condition (see the module docstring) and build results.json's ``detection`` section.

    Only the images the pass evaluated count (skipped images are in no metric); the COCO evaluator's
    ground truth is theirs.

    Raises:
        AuditError: a detections file the evaluator refuses (it names the record); no image evaluated.
    """
    det = cfg.detection
    assert det is not None
    positions = _evaluated_positions(data, passed.evaluated)
    truths = [data.truths[int(r)] for r in positions]
    evaluator = CocoEvaluator(truths=truths, categories=data.categories)
    image_ids = [t.image_id for t in truths]
    image_groups = _image_groups(data, positions)
    out_json = work / DETECTIONS_JSON
    out_csv = work / DETECTIONS_CSV
    out_objects = work / OBJECTS_CSV
    results: list[DetectionCondition] = []
    gap_tests: list[DetectionGapTest] = []
    with (
        out_json.open("w", encoding="utf-8") as all_json,
        out_csv.open("w", encoding="utf-8", newline="") as all_csv,
        out_objects.open("w", encoding="utf-8", newline="") as objects_csv,
    ):
        objects_writer = ObjectsCsvWriter(objects_csv, data)
        writer = csvfile.writer(all_csv)
        writer.writerow(
            [
                *("condition", "sample_id", "image_id", "file_name"),
                *data.attributes,
                *("objects", "detections"),
                *(spec.name for spec in DETECTION_COUNTS),
            ]
        )
        all_json.write("[")
        first = True
        for k, cond in enumerate(conditions):
            dets = passed.detections(cond.id, data)
            coco_file = work / f"coco-{k}.json"
            write_detections_json(coco_file, dets, image_ids=image_ids, categories=data.categories)
            for d in dets:
                for record in detection_records(d):
                    all_json.write(("\n" if first else ",\n") + json.dumps({**record, "condition": cond.id}))
                    first = False
            objects = passed.condition_objects(cond.id)
            own = [condition_truth(t, objects.get(t.image_id) if objects else None) for t in truths]
            moved = any(a is not b for a, b in zip(own, truths))
            scorer = CocoEvaluator(truths=own, categories=data.categories) if moved else evaluator
            groups = _object_groups(data, own, objects)
            result, counts = _condition(cond, dets, coco_file, scorer, data, own, groups, positions, image_groups, cfg)
            dropped = _dropped(data, positions, objects)
            if dropped is not None:
                result = result.model_copy(update={"dropped_objects": dropped})
            results.append(result)
            gap_tests += _gap_tests(cond.id, counts, data, positions, cfg.evaluation.min_group_size)
            _csv_rows(writer, cond.id, data, own, positions, counts.op)
            objects_writer.write(condition_outcomes(cond.id, data, positions, counts.matches, objects))
            coco_file.unlink()
        all_json.write("\n]\n")
    breaking, breaking_csv = summarize_object_breaking(
        lambda ids: read_objects(out_objects, conditions=ids), data=data, conditions=conditions, cfg=cfg, work=work
    )
    section = DetectionResults(
        settings=DetectionSettings(
            score_threshold=det.score_threshold,
            iou_threshold=det.iou_threshold,
            output=det.output,
            resize=det.resize,
            nms_iou_threshold=det.nms_iou_threshold if det.output == "yolo" else None,
            nms_score_threshold=det.nms_score_threshold if det.output == "yolo" else None,
            max_detections=det.max_detections,
            **({"min_visibility": det.min_visibility} if any(r.dropped_objects is not None for r in results) else {}),
        ),
        class_names=list(data.truth.class_names),
        ground_truth=_ground_truth_info(data, cfg),
        skipped_annotations=[
            SkippedAnnotationRow(source=s.source, id=s.id, reason=s.reason) for s in data.truth.skipped
        ],
        conditions=results,
        robustness=_robustness(conditions, results),
        gap_tests=gap_tests,
        **({"breaking_points": breaking} if breaking is not None else {}),
    )
    return DetectionSummary(section, out_json, out_csv, out_objects, breaking_csv)


def _ground_truth_info(data: DetectionData, cfg: AuditConfig) -> GroundTruthInfo:
    det = cfg.detection
    assert det is not None
    coco = det.annotations is not None
    source = det.annotations if coco else det.yolo
    assert source is not None
    objects = [o for image in data.truth.images for o in image.objects]
    return GroundTruthInfo(
        path=str(source),
        sha256=sha256_file(source) if coco else None,
        format="coco" if coco else "yolo",
        num_images=len(data.truth.images),
        num_objects=len(objects),
        num_crowd=sum(1 for o in objects if o.iscrowd),
        object_attributes=list(det.object_attributes),
    )


def _image_groups(data: DetectionData, positions: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """attribute -> value -> the rows (among the evaluated images) of that group, values sorted."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for attribute in data.attributes:
        values = data.image_values(attribute)
        by: dict[str, list[int]] = {}
        for k, r in enumerate(positions):
            by.setdefault(values[int(r)], []).append(k)
        out[attribute] = {v: np.asarray(by[v], dtype=np.int64) for v in sorted(by)}
    return out


def _ci(intervals: Mapping[str, Any] | None) -> dict[str, Any]:
    """``<metric>_ci`` keys from a statistics function's ``metric -> (low, high) | None``."""
    if not intervals:
        return {}
    return {f"{name}_ci": list(value) for name, value in intervals.items() if value is not None}


def _condition(
    cond: Condition,
    dets: list[ImageDetections],
    coco_file: Path,
    evaluator: CocoEvaluator,
    data: DetectionData,
    truths: list[ImageTruth],
    object_groups: Mapping[str, Mapping[int, Sequence[str]]],
    positions: np.ndarray,
    image_groups: Mapping[str, Mapping[str, np.ndarray]],
    cfg: AuditConfig,
) -> tuple[DetectionCondition, _ConditionCounts]:
    """One condition's results (module docstring); intervals by the cluster bootstrap over images when
    ``evaluation.n_bootstrap`` > 0, for the operating point's metrics and object-group recall only: the
    bootstrap intervals of mAP and of D-ECE do not reach their coverage in the simulation
    (docs/statistics.md, "Detectors"), so results.json gives none."""
    det = cfg.detection
    assert det is not None
    all_rows = np.arange(len(positions))
    keys = data.keys[positions]
    boot = {"image_keys": keys, "n_bootstrap": cfg.evaluation.n_bootstrap, "seed": cfg.seed}
    bootstrap = cfg.evaluation.n_bootstrap > 0
    loaded = evaluator.load(coco_file)
    matches = match_images(truths, dets, score_threshold=det.score_threshold, iou_threshold=det.iou_threshold)
    op = count_matches(matches, data.categories)
    objects = {
        name: object_group_counts(matches, per_image, groups=_group_values(data.object_groups[name], per_image))
        for name, per_image in object_groups.items()
    }
    coco_all = evaluator.evaluate(loaded)
    overall = DetectionMetrics(
        n_images=len(positions),
        n_objects=_non_crowd_objects(truths, all_rows),
        **_coco_fields(coco_all),
        **_op_fields(op, all_rows),
        **_ci(cluster_bootstrap_intervals(op, **boot) if bootstrap else None),
    )
    groups: list[DetectionGroup] = []
    min_size = cfg.evaluation.min_group_size
    ids = np.asarray([t.image_id for t in truths], dtype=np.int64)
    for attribute, by_value in image_groups.items():
        for value, rows in by_value.items():
            n_objects = _non_crowd_objects(truths, rows)
            metrics = DetectionMetrics(
                n_images=len(rows),
                n_objects=n_objects,
                **_coco_fields(evaluator.evaluate(loaded, image_ids=ids[rows].tolist())),
                **_op_fields(op, rows),
                **_ci(cluster_bootstrap_intervals(op, image_index=rows, **boot) if bootstrap else None),
            )
            groups.append(
                DetectionGroup(
                    attribute=attribute,
                    level="image",
                    value=value,
                    metrics=metrics,
                    insufficient_data=n_objects < min_size,
                )
            )
    class_of = {name: cat for cat, name in data.categories.items()}
    for name, counts in objects.items():
        recall_ci = object_group_recall_intervals(counts, **boot) if bootstrap else {}
        for g, value in enumerate(counts.groups):
            total, matched = int(counts.total[:, g].sum()), int(counts.matched[:, g].sum())
            coco: dict[str, Any] = {}
            if name == "object.size":
                coco = dict(map=getattr(overall, f"map_{value}"))
            elif name == "object.class" and total:
                per_class = evaluator.evaluate(loaded, category_ids=[class_of[value]])
                coco = dict(map=per_class.map, map_50=per_class.ap50, map_75=per_class.ap75)
            interval = recall_ci.get(value)
            metrics = DetectionMetrics(
                n_images=int((counts.total[:, g] > 0).sum()),
                n_objects=total,
                tp=matched,
                fn=total - matched,
                recall=matched / total if total else None,
                **coco,
                **({"recall_ci": list(interval)} if interval is not None else {}),
            )
            groups.append(
                DetectionGroup(
                    attribute=name, level="object", value=value, metrics=metrics, insufficient_data=total < min_size
                )
            )
    tide = tide_errors(truths=truths, detections=dets, pos_threshold=0.5, max_dets=det.max_detections)
    samples = calibration_samples(truths, dets, score_floor=det.score_threshold, iou_threshold=det.iou_threshold)
    cal_counts = calibration_counts(samples, bins=det.calibration_bins)
    diagram = calibration_summary(cal_counts)
    edges = diagram.bin_edges
    calibration = DetectionCalibration(
        iou_threshold=det.iou_threshold,
        bins=det.calibration_bins,
        detections=diagram.n_detections,
        dece=diagram.d_ece,
        reliability=[
            DetectionReliabilityBin(
                low=float(edges[b]),
                high=float(edges[b + 1]),
                count=int(diagram.count[b]),
                confidence=None if diagram.count[b] == 0 else float(diagram.mean_confidence[b]),
                precision=None if diagram.count[b] == 0 else float(diagram.precision[b]),
            )
            for b in range(len(diagram.count))
        ],
    )
    result = DetectionCondition(
        id=cond.id,
        stressor=cond.stressor_name,
        severity=0 if cond.stressor is None else cond.severity,
        metrics=overall,
        groups=groups,
        tide=[TideError(error=e, count=int(tide.counts[e]), dap=float(tide.dap[e] or 0.0)) for e in ERROR_TYPES]
        if tide.ap is not None
        else None,
        calibration=calibration,
    )
    return result, _ConditionCounts(op, objects, matches)


def _gap_tests(
    cid: str, counts: _ConditionCounts, data: DetectionData, positions: np.ndarray, min_group_size: int
) -> list[DetectionGapTest]:
    """The recall gap tests of one condition: every pair of eligible groups of every attribute (image-level and
    object-level), Holm over all of them (:func:`~audit.evaluation.detection.statistics.recall_gap_tests`)."""
    attributes: dict[str, ObjectGroupCounts] = {}
    for attribute in data.attributes:
        values = data.image_values(attribute)
        attributes[attribute] = image_group_counts(counts.op, [values[int(r)] for r in positions])
    attributes.update(counts.objects)
    tested = recall_gap_tests(attributes, min_group_size=min_group_size)
    z = NormalDist().inv_cdf(1 - (1 - CONFIDENCE_LEVEL) / 2)
    out = []
    for summary in tested.attributes:
        pairs = [t for t in tested.tests if t.attribute == summary.attribute]
        ranked = sorted(zip(summary.recalls, summary.groups))
        widest = max(pairs, key=lambda t: t.gap, default=None)
        out.append(
            DetectionGapTest(
                condition=cid,
                attribute=summary.attribute,
                level="object" if summary.attribute.startswith("object.") else "image",
                recalls=dict(zip(summary.groups, summary.recalls)),
                objects=dict(zip(summary.groups, summary.n_objects)),
                worst_group=ranked[0][1] if len(ranked) >= 2 else None,
                best_group=ranked[-1][1] if len(ranked) >= 2 else None,
                gap=summary.gap,
                gap_ci=None
                if widest is None
                else [max(0.0, widest.gap - z * widest.se), min(1.0, widest.gap + z * widest.se)],
                p_value=min((t.p_value for t in pairs), default=None),
                p_holm=summary.p_holm,
                excluded=list(summary.excluded),
                pairs=[
                    RecallGapPair(
                        higher=t.groups[0],
                        lower=t.groups[1],
                        gap=t.gap,
                        se=t.se,
                        p_value=t.p_value,
                        p_holm=t.p_holm,
                    )
                    for t in pairs
                ],
            )
        )
    return out


def _robustness(conditions: Sequence[Condition], results: Sequence[DetectionCondition]) -> DetectionRobustness | None:
    """mPC and rPC over the stressor conditions (None without one)."""
    # corruption robustness: the image stressors only (attacks have their own curve, detection.attacks)
    stressed = [(c, r) for c, r in zip(conditions, results) if c.stressor is not None and not c.model_aware]
    if not stressed:
        return None
    robust = corruption_robustness(
        {c.id: r.metrics.map for c, r in stressed}, results[0].metrics.map, {c.id: c.label for c, _ in stressed}
    )
    clean = robust.clean
    return DetectionRobustness(
        clean_map=clean,
        mpc=robust.mpc,
        rpc=robust.rpc,
        stressors=[
            StressorRobustness(
                stressor=name,
                mean_map=mean,
                relative=None if mean is None or not clean else mean / clean,
            )
            for name, mean in robust.per_stressor.items()
        ],
    )


def _group_values(clean: Mapping[int, Sequence[str]], own: Mapping[int, Sequence[str]]) -> list[str]:
    """A grouping's values: the clean truth's, and any a moved truth adds (a zoomed object's size), sorted."""
    values = {v for vs in clean.values() for v in vs}
    if own is not clean:
        values |= {v for vs in own.values() for v in vs}
    return sorted(values)


def _csv_rows(
    writer: Any,
    cid: str,
    data: DetectionData,
    truths: Sequence[ImageTruth],
    positions: np.ndarray,
    op: OperatingPointCounts,
) -> None:
    tp, fp, fn = op.tp.sum(axis=1), op.fp.sum(axis=1), op.fn.sum(axis=1)
    for k, r in enumerate(positions):
        image = data.truth.images[int(r)]
        writer.writerow(
            [
                cid,
                data.sample_ids[int(r)],
                image.image_id,
                image.file_name,
                *(image.attributes[a] for a in data.attributes),
                int((~truths[k].iscrowd).sum()),
                int(tp[k] + fp[k]),
                int(tp[k]),
                int(fp[k]),
                int(fn[k]),
            ]
        )
