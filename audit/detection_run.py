"""``cvaudit run`` for ``task: detection``: the stages of :mod:`audit.runner`, for an object detector.

The same order and guarantees as a classifier's run (:func:`audit.runner.run_audit` builds the context
and calls :func:`run_detection`):

1. **read**: the conditions; the ground truth joined to the manifest, whose rows the policy's governance
   checks see as it is read (:func:`audit.evaluation.read_detection_data`);
2. **plan**: the targets of the run (conditions, image attributes and object groupings with their
   values, the metrics with intervals); the policy validates every rule against it before the model
   is loaded;
3. **load**: the detector (:func:`audit.evaluation.load_detector`);
4. **evaluate**: one streaming pass, detections spilled per condition
   (:func:`audit.evaluation.evaluate_detector`), then the metrics condition by condition
   (:func:`audit.evaluation.summarize_detection`);
5. **judge**: the results, the policy's verdict, the example images the report may show;
6. the outputs (results.json, detections.json, detections.csv, objects.csv, groups.csv, skipped.csv, junit.xml,
   the reports, the attestation), written into the staging folder and swapped in as a whole.

Under ``torchrun`` every rank evaluates its shard of the images and spills its detections into rank 0's
work folder; once every rank is done, rank 0 reads them all in dataset order and scores them, so the
results equal a single process's. Not yet for detectors, and refused with one line before any image is
read: ``evaluation.early_stop``, ``breaking_points``, ``--baseline`` and classifier attacks (the attacks on
detectors run: :mod:`audit.evaluation.detection.attack_pass`; one the detector cannot take, e.g. on an ONNX
model, is refused once the detector is loaded); so is a stressor that does not declare
whether it moves pixels (its boxes could be anywhere). With ``tracking.mlflow`` the
finished run is logged to MLflow after its outputs are in place (:func:`audit.tracking.track_audit`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from audit.contract.config import AuditConfig
from audit.contract.errors import AuditError, echo
from audit.contract.image_properties import IMAGE_PROPERTIES_CSV
from audit.contract.metric_specs import detection_interval_names
from audit.contract.plan import PlannedCondition, RunPlan
from audit.contract.results import CodeExecuted, Governance, PolicyOutcome, Results
from audit.evaluation import (
    DETECTIONS_CSV,
    DETECTIONS_JSON,
    OBJECTS_CSV,
    DetectionRunInfo,
    allocator_setting,
    attacks_section,
    build_conditions,
    check_attacks,
    check_benchmark,
    check_box_support,
    check_classifier_attacks,
    detection_examples,
    detection_results,
    distributed,
    evaluate_detector,
    imagenet_c_summary,
    load_detector,
    merge_properties,
    plan_threads,
    properties_part_path,
    read_detection_data,
    resolve_device,
    summarize_detection,
    using_threads,
)
from audit.run_context import AuditOutcome, RunContext
from audit.tracking import track_audit

__all__ = ["check_detection_config", "run_detection"]


def check_detection_config(cfg: AuditConfig, *, baseline: bool) -> None:
    """Refuse, before anything is read, what a detection run does not do yet (one line each).

    Raises:
        AuditError: early stopping, breaking points, a baseline.
    """
    if cfg.evaluation.early_stop:
        raise AuditError("evaluation.early_stop is not available for task: detection; set it to false")
    if cfg.breaking_points.stressors:
        raise AuditError("breaking_points.stressors is not available for task: detection; leave it empty")
    if baseline:
        raise AuditError("--baseline compares classifier results; it is not available for task: detection")


def _plan(ctx: RunContext, conditions: list[Any], data: Any, gallery_mode: str) -> RunPlan:
    attributes: dict[str, tuple[str, ...]] = {}
    for attribute in data.attributes:
        attributes[attribute] = tuple(sorted(set(data.image_values(attribute))))
    for grouping, per_image in data.object_groups.items():
        attributes[grouping] = tuple(sorted({v for values in per_image.values() for v in values}))
    sections = {k for k, f in Results.model_fields.items() if f.is_required()} | {"task", "detection", "report"}
    if gallery_mode != "none":
        sections.add("gallery")
    if ctx.cfg.benchmark is not None:
        sections.add("imagenet_c")
    if ctx.cfg.slices.watch:
        sections.add("slices")
    return RunPlan(
        source=ctx.source,
        conditions=tuple(
            PlannedCondition(c.id, c.stressor_name, float(c.severity), c.model_aware, c.probe) for c in conditions
        ),
        attributes=attributes,
        intervals=detection_interval_names() if ctx.cfg.evaluation.n_bootstrap > 0 else frozenset(),
        sections=frozenset(sections),
        task="detection",
        slices=frozenset(w.id for w in ctx.cfg.slices.watch),
    )


def run_detection(ctx: RunContext) -> AuditOutcome:
    """The detection run, top-down (see the module docstring); outputs on rank 0 (the only rank)."""
    cfg = ctx.cfg
    det = cfg.detection
    assert det is not None  # the config's validator: task detection has its section
    if cfg.benchmark is not None:  # before the conditions: an unregistered corruption is named as such
        import stressors

        check_benchmark(cfg, source=ctx.source, available=stressors.available())
    conditions = build_conditions(cfg.condition_stressors, source=ctx.source)
    check_classifier_attacks(conditions, source=ctx.source)
    check_box_support(conditions, source=ctx.source)
    governance = ctx.gate.scan(id_column=cfg.data.id_column, now=ctx.started)
    data = read_detection_data(cfg, on_chunk=governance.on_chunk)
    names = list(data.truth.class_names)
    if cfg.model.class_names is not None and list(cfg.model.class_names) != names:
        raise AuditError(
            f"{ctx.source}: model.class_names {echo(cfg.model.class_names)} differ from the annotation classes "
            f"{echo(names)} (the detector's class k is the k-th annotation class); fix or remove model.class_names"
        )
    findings = governance.findings()
    gallery_mode = governance.image_mode(findings, cfg.report.images)
    ctx.gate.plan(_plan(ctx, conditions, data, gallery_mode))  # a rule that can never match fails here

    device = resolve_device(cfg.device if ctx.world == 1 else distributed.local_device(cfg.device))
    base_dir = Path(ctx.config_path).resolve().parent if ctx.config_path else None
    detector, model_info = load_detector(
        cfg.model,
        output=det.output,
        num_classes=len(data.truth.class_names),
        device=device,
        base_dir=base_dir,
        score_threshold=det.nms_score_threshold,
        iou_threshold=det.nms_iou_threshold,
        max_detections=det.max_detections,
        multi_label=det.multi_label,
    )
    check_attacks(conditions, detector, source=ctx.source)  # a detection attack the detector cannot take
    threads = plan_threads(
        threads=cfg.threads,
        num_workers=cfg.data.num_workers,
        device=device,
        input_size=tuple(cfg.model.input_size),
        first_image=data.truth.images[0].path,
    )
    work = distributed.shared_work_dir(ctx.outputs.work if ctx.outputs is not None else Path())
    shard = distributed.shard_indices(len(data), ctx.rank, ctx.world)
    with allocator_setting(cfg.allocator) as allocator:
        tick = ctx.progress(len(shard), "evaluating") if ctx.progress and ctx.writes else None
        with using_threads(threads):
            passed = evaluate_detector(
                detector=detector,
                data=data,
                conditions=conditions,
                cfg=cfg,
                device=device,
                work=work,
                num_workers=threads.num_workers,
                decoding=ctx.decoding,
                progress=tick,
                indices=shard,
                rank=ctx.rank,
                world=ctx.world,
                properties_path=properties_part_path(work, ctx.rank),
            )
            passed = passed.merged(distributed.gather_lists)
            distributed.barrier()  # every rank's spill files are complete
            # models are code: say which ran, after the pass (an error on the way stays one line)
            if model_info.get("code_executed") and ctx.writes and ctx.notify is not None:
                ctx.notify(CodeExecuted.model_validate(model_info["code_executed"]).to_text())
            if not ctx.writes:
                return AuditOutcome(None, ctx.out_dir, [])
            if not passed.evaluated:
                raise AuditError(f"{data.manifest}: no image could be decoded; nothing to audit")
            summary = summarize_detection(data=data, conditions=conditions, passed=passed, cfg=cfg, work=work)
            section = summary.results
            attacks = attacks_section(conditions=conditions, passed=passed, data=data, section=section, cfg=cfg)
            if attacks is not None:
                section = section.model_copy(update={"attacks": attacks})
            examples = detection_examples(
                data=data,
                conditions=conditions,
                passed=passed,
                section=section,
                cfg=cfg,
                device=device,
                mode=gallery_mode,
                decoding=ctx.decoding,
            )
        if examples:
            section = section.model_copy(update={"examples": examples})
        results = detection_results(
            cfg=cfg,
            data=data,
            conditions=conditions,
            passed=passed,
            section=section,
            info=DetectionRunInfo(
                config_path=ctx.config_path,
                model_info=model_info,
                governance=Governance.model_validate(
                    {"findings": findings, "policy": ctx.gate.name, "audit_date": ctx.started.date().isoformat()}
                ),
                started=ctx.started,
                device=str(device),
                threads=threads.threads,
                num_workers=threads.num_workers,
                allocator=allocator,
                world_size=ctx.world,
            ),
        )
        if cfg.benchmark is not None:
            results = results.model_copy(update={"imagenet_c": imagenet_c_summary(results, cfg.benchmark, None)})
        staged = _stage_files(ctx, summary, work)
        results = _watched_slices(ctx, results)  # from the staged objects.csv, detections.csv, image properties
        verdict = PolicyOutcome.model_validate(ctx.gate.judge(results, findings=findings))
        results = results.model_copy(update={"policy": verdict})
        files = _write_outputs(ctx, results, staged, model_info, governance.affected, data.manifest)
    tracked = track_audit(cfg, results, ctx.out_dir, config_path=ctx.config_path)  # MLflow; a failure only warns
    return AuditOutcome(results, ctx.out_dir, files, tracked=tracked)


def _stage_files(ctx: RunContext, summary: Any, work: Path) -> list[Path]:
    """detections.csv, objects.csv, detections.json (and the per-object breaking points) moved into the staging
    folder, and image_properties.csv merged there from the ranks' part files in ``work``: the staged files."""
    outputs = ctx.outputs
    assert outputs is not None
    staged = []
    files = [
        (DETECTIONS_JSON, summary.detections_json),
        (DETECTIONS_CSV, summary.detections_csv),
        (OBJECTS_CSV, summary.objects_csv),
    ]
    if summary.object_breaking_csv is not None:  # per-object breaking points, attested as the others
        files.append((summary.object_breaking_csv.name, summary.object_breaking_csv))
    for name, path in files:
        os.replace(path, outputs.stage / name)
        staged.append(outputs.stage / name)
    # every rank's part file is complete (the barrier after the pass); merged in dataset order
    merge_properties(work, outputs.stage / IMAGE_PROPERTIES_CSV)
    staged.append(outputs.stage / IMAGE_PROPERTIES_CSV)
    return staged


def _watched_slices(ctx: RunContext, results: Results) -> Results:
    """results.json ``slices`` (config ``slices.watch``): each watched slice's objects measured from the staged
    files through the table ``cvaudit slices`` searches (:func:`audit.evaluation.measure_watched_detection`)."""
    if not ctx.cfg.slices.watch:
        return results
    from audit.contract.results import WatchedSliceResult
    from audit.contract.slices import SliceError
    from audit.evaluation import measure_watched_detection, read_detection_table

    assert ctx.outputs is not None
    try:
        table = read_detection_table(ctx.outputs.stage, condition="clean")
    except SliceError as exc:
        raise AuditError(f"slices.watch: {exc}") from None
    measured = measure_watched_detection(ctx.cfg.slices.watch, table, min_group_size=ctx.cfg.evaluation.min_group_size)
    return results.model_copy(update={"slices": [WatchedSliceResult.model_validate(m) for m in measured]})


def _write_outputs(
    ctx: RunContext,
    results: Results,
    staged: list[Path],
    model_info: dict[str, Any],
    affected: list[dict[str, Any]],
    manifest: Path,
) -> list[Path]:
    """Every output through :func:`reports.write_outputs`, with the files :func:`_stage_files` moved in first."""
    subjects = {"dataset:" + manifest.name: manifest}
    det = ctx.cfg.detection
    if det is not None and det.annotations is not None:
        subjects["annotations:" + det.annotations.name] = det.annotations
    return ctx.write_outputs(
        results, model_info=model_info, data_subjects=subjects, governance=affected, staged=tuple(staged)
    )
