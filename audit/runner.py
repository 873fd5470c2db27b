"""``cvaudit run``: from a config to a verdict and every output file.

The run reads top-down as its stages (:func:`_run`); each takes the
:class:`RunContext` (config, policy gate, paths, rank, callbacks) and what the
stages before it returned, so that nothing is written over invalid input:

1. **context** (:func:`run_audit`): everything that can fail cheaply, before any
   data are read: the policy (:class:`policies.PolicyGate`, which refuses a gate
   on nothing), signing keys, the baseline, the model's config;
2. **read** (:func:`_read`): conditions, the sample table, its groups; the
   policy's governance checks see the manifest as it is read and decide whether
   images may appear in the report;
3. **plan** (:func:`_plan`): what the run will produce; the policy validates
   every rule against it before the model is loaded (``PolicyGate.plan``);
4. **load** (:func:`_load`): the model, checked against the data and stressors;
5. **evaluate** (:func:`_evaluate`): one streaming pass over the data
   (:mod:`audit.evaluation.evaluate`), stopped early at the policy's stop
   targets when ``evaluation.early_stop`` asks;
6. **judge** (:func:`_judge`): results assembly (:mod:`audit.evaluation.results`),
   breaking points, the policy's verdict (``PolicyGate.judge``), error thumbnails;
7. the edge, side effects only: outputs, written into a staging folder (the
   attestation last) that is then swapped in for ``--out`` as a whole, under an
   advisory lock on ``--out`` (:mod:`reports.outputs`); tracking (MLflow, when
   configured: :mod:`audit.tracking`), which only warns on failure.

A library: nothing is printed (``notify`` receives the lines a person should see;
conditions worth a warning are ``warnings``), and the C allocator is changed only
when the config's ``allocator`` asks, from the evaluation to the written outputs,
and restored after (:func:`audit.evaluation.allocator.allocator_setting`).

Single process, or one rank of ``torchrun`` (see :mod:`audit.evaluation.distributed`):
every rank evaluates its shard; statistics are all-reduced when computed;
rank 0 writes the outputs.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from audit.contract.config import AuditConfig
from audit.contract.errors import AuditError, echo
from audit.contract.image_properties import IMAGE_PROPERTIES_CSV
from audit.contract.load import ResultsError, load_results
from audit.contract.plan import PlannedCondition, RunPlan
from audit.contract.results import BenchmarkPreview, CodeExecuted, ErrorThumbnails, Governance, PolicyOutcome, Results
from audit.evaluation import (
    BREAKING_POINTS_CSV,
    AuditDataset,
    Condition,
    EvalSettings,
    EvalState,
    RefineContext,
    ResultsInputs,
    SampleTable,
    SlotLayout,
    ThreadPlan,
    allocator_setting,
    assemble_results,
    build_conditions,
    build_layout,
    check_classification_conditions,
    check_fitted_attacks,
    check_label_range,
    check_refinement,
    distributed,
    fit_attacks,
    load_model,
    merge_attack_details,
    merge_predictions,
    merge_properties,
    plan_threads,
    properties_part_path,
    read_samples,
    resolve_device,
    resolve_model_config,
    run_breaking_points,
    sample_keys_of,
    slot_matrix,
    using_threads,
)
from audit.evaluation import evaluate_conditions as evaluate
from audit.run_context import (
    AuditOutcome,
    OutputRecoveryWarning,
    ProgressFactory,
    RunContext,
    Signing,
)
from audit.tracking import track_audit
from policies import Policy, PolicyGate
from reports import DEFAULT_MODE, OutputTransaction


class SlotMemoryWarning(UserWarning):
    """The run's statistics will take a lot of memory (many group slots): a warning, the run goes on."""


def _gradient_free_attacks() -> list[str]:
    """Registered attacks whose class says ``needs_gradients = False`` (they run on models without gradients)."""
    import stressors

    names = []
    for name in stressors.available():
        factory = stressors.factory(name)
        if getattr(factory, "model_aware", False) and not getattr(factory, "needs_gradients", True):
            names.append(name)
    return names


def _class_names(cfg: AuditConfig, table_names: list[str] | None, width: int, source: str) -> list[str]:
    if cfg.model.class_names is not None:
        if len(cfg.model.class_names) != width:
            raise AuditError(
                f"{source}: model.class_names has {len(cfg.model.class_names)} names but the model outputs {width} classes"
            )
        return list(cfg.model.class_names)
    if table_names is not None:
        if len(table_names) != width:
            raise AuditError(f"the image folder has {len(table_names)} classes but the model outputs {width}")
        return table_names
    return [str(k) for k in range(width)]


def _probe_width(model: Any, dataset: AuditDataset, device: torch.device) -> int:
    """The model's output width, from one forward pass on a blank image."""
    c, (h, w) = dataset.channels, dataset.size
    try:
        with torch.no_grad():
            out = model(torch.full((1, c, h, w), 0.5, device=device))
    except AuditError:
        raise
    except Exception as err:  # the user's model rejected an input of the configured shape
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise AuditError(
            f"model: the forward pass failed on a (1, {c}, {h}, {w}) input (model.channels, model.input_size): {first}"
        ) from None
    return int(out.shape[1])


@dataclass(frozen=True)
class Reading:
    """What reading the sample table gave: the data, their groups and the governance findings."""

    conditions: list[Condition]
    table: SampleTable
    findings: list[dict[str, Any]]
    affected: list[dict[str, Any]]  # governance.csv rows
    gallery_mode: str
    layout: SlotLayout
    slots: torch.Tensor
    keys: torch.Tensor
    attack_indices: set[int] | None
    from_folders: bool  # class names taken from an image folder's subfolders
    benchmark_baseline: Results | None = None  # benchmark.baseline's results.json (None: AlexNet, or no benchmark)


@dataclass(frozen=True)
class LoadedModel:
    """The model on its device, with what its first forward pass told."""

    model: Any
    info: dict[str, Any]
    device: torch.device
    width: int
    class_names: list[str]


@dataclass
class Evaluation:
    """The streaming pass's outcome: merged statistics, the settings it ran with, its work folder."""

    state: EvalState
    computed: dict[str, Any]
    threads: ThreadPlan
    allocator: str
    work: Path


def run(
    config: AuditConfig | str | Path,
    *,
    out_dir: str | Path,
    config_path: str | Path | None = None,
    baseline: str | Path | None = None,
    policy: PolicyGate | Policy | None = None,
    progress: ProgressFactory | None = None,
    notify: Callable[[str], None] | None = None,
    now: dt.datetime | None = None,
    force: bool = False,
    out_mode: int = DEFAULT_MODE,
) -> AuditOutcome:
    """Run an audit from Python: a config file or an :class:`AuditConfig`, outputs into ``out_dir``.

    A library call: nothing is printed (``notify`` receives the lines the CLI would print;
    conditions worth a warning are ``warnings``), and the C allocator is left as it is unless
    the config's ``allocator`` says ``retain`` (then it is set from the evaluation to the written
    outputs and restored after, :func:`audit.evaluation.allocator.allocator_setting`).

    Args:
        config: a ``config.yaml`` path, or a validated config.
        out_dir: the output folder.
        config_path: the file ``config`` came from, when ``config`` is an :class:`AuditConfig`
            (relative paths in it are resolved from its folder); ignored for a path.
        baseline: a results.json of the deployed model to compare against.
        policy: a :class:`policies.PolicyGate` or a parsed policy; default: ``config.policy``.
        progress: makes a progress callback, ``progress(total, label)(n, condition=None)``.
        notify: receives lines for the person running the audit.
        now: the run's start (default: now, UTC).
        force: write into a non-empty folder cvaudit did not make (``--force``; its files are kept).
        out_mode: the mode of the output folder (``--out-mode``; its files get it without execute).

    Returns:
        The outcome: results, written files, the verdict and its exit code.

    Raises:
        AuditError: anything that prevents a valid audit; nothing is written to ``out_dir``.
        OutputError: ``out_dir`` is refused (:func:`reports.outputs.check_out_dir`), before anything is read.
        PolicyError: the policy cannot judge this run.
    """
    if isinstance(config, AuditConfig):
        cfg, path = config, Path(config_path) if config_path is not None else None
    else:
        from audit.contract.config import load_config

        path = Path(config)
        cfg = load_config(path)
    return run_audit(
        cfg,
        config_path=path,
        out_dir=Path(out_dir),
        baseline=Path(baseline) if baseline is not None else None,
        progress=progress,
        now=now,
        policy=policy,
        notify=notify,
        force=force,
        out_mode=out_mode,
    )


def run_audit(
    cfg: AuditConfig,
    *,
    config_path: Path | None,
    out_dir: Path,
    baseline: Path | None = None,
    progress: ProgressFactory | None = None,
    now: dt.datetime | None = None,
    policy: PolicyGate | Policy | None = None,
    notify: Callable[[str], None] | None = None,
    force: bool = False,
    out_mode: int = DEFAULT_MODE,
) -> AuditOutcome:
    """Run the whole audit and write the outputs into ``out_dir`` (rank 0 only).

    ``policy`` is a :class:`policies.PolicyGate`, a parsed policy (:func:`policies.load_policy`),
    or None to load ``cfg.policy`` here.
    ``notify`` receives the lines a person running the audit should see as it starts (the class mapping
    of an image folder without ``model.class_names``); the CLI prints them, the library prints nothing.
    Conditions worth a warning (the statistics' memory, an interrupted run cleaned up) are ``warnings``.
    ``cfg.allocator`` unset leaves the C allocator alone (see :func:`run`).
    ``force`` and ``out_mode`` go to :class:`reports.OutputTransaction`, which checks ``out_dir`` (and that
    it holds neither the config nor the data) before anything is read.

    Raises:
        AuditError: anything that prevents a valid audit (exit code 2). Nothing
            is written to ``out_dir`` in that case.
    """
    started = now or dt.datetime.now(dt.timezone.utc)
    rank, world = distributed.rank_and_world(cfg.device)
    inputs = [config_path, cfg.data.manifest, cfg.data.images, cfg.data.npz, cfg.data.root, cfg.model.path]
    if cfg.detection is not None:
        inputs += [cfg.detection.annotations, cfg.detection.images_root, cfg.detection.yolo]
    outputs = (
        OutputTransaction(out_dir, force=force, mode=out_mode, protect=[p for p in inputs if p is not None])
        if rank == 0
        else None
    )
    if outputs is not None:
        outputs.begin()  # lock --out (a second run exits 2), clean up after killed runs
        for note in outputs.notes:
            warnings.warn(note, OutputRecoveryWarning, stacklevel=2)
    try:
        if cfg.task == "detection":  # what a detection run does not do yet, refused before anything is read
            from audit.detection_run import check_detection_config

            check_detection_config(cfg, baseline=baseline is not None)
        if isinstance(policy, PolicyGate):
            gate = policy
        else:  # a policy with nothing that can fail is refused before the data are read
            gate = PolicyGate.load(cfg.policy) if policy is None else PolicyGate(policy)
        signing = _signing(cfg)
        baseline_results = _load_baseline(baseline) if baseline else None
        if (
            cfg.task == "classification"
        ):  # a Hugging Face classifier's own values (a detector's folder is read by its loader)
            cfg = cfg.model_copy(update={"model": resolve_model_config(cfg.model)})
        cfg = cfg.model_copy(update={"data": cfg.data.decoding_for(cfg.model)})  # data.exif, data.alpha decided
        ctx = RunContext(
            cfg=cfg,
            config_path=config_path,
            out_dir=out_dir,
            gate=gate,
            started=started,
            rank=rank,
            world=world,
            outputs=outputs,
            baseline=baseline_results,
            signing=signing,
            progress=progress,
            notify=notify,
        )
        if cfg.task == "detection":
            from audit.detection_run import run_detection

            return run_detection(ctx)
        return _run(ctx)
    finally:
        if outputs is not None:
            outputs.close()
        distributed.shutdown()  # this rank's part is done (every collective is behind it)


def _signing(cfg: AuditConfig) -> Signing:
    """The report's signing key (``report.sign_key``), loaded and unlocked before any data are read."""
    from reports import load_signing_keys, passphrase_from_env

    passphrase = passphrase_from_env()
    keys = load_signing_keys(cfg.report.sign_key, passphrase) if cfg.report.sign_key is not None else None
    return Signing(keys, passphrase)


def _run(ctx: RunContext) -> AuditOutcome:
    """The run, top-down: read (with the governance scan), plan, load the model, evaluate, judge, write."""
    reading = _read(ctx)
    plan = _plan(ctx, reading)
    ctx.gate.plan(plan)  # a rule that can never match fails here, before any image is evaluated
    loaded = _load(ctx, reading)
    with allocator_setting(ctx.cfg.allocator) as allocator:  # unset: mallopt is not touched; restored at the end
        evaluation = _evaluate(ctx, reading, plan, loaded, allocator)
        _tell_code_executed(ctx, loaded.info)  # after the pass: an error on the way stays one line
        if not ctx.writes:
            return AuditOutcome(None, ctx.out_dir, [])
        results = _judge(ctx, reading, loaded, evaluation)
        files = _write_outputs(ctx, results, reading, loaded, evaluation)
    tracked = track_audit(ctx.cfg, results, ctx.out_dir, config_path=ctx.config_path)  # MLflow; a failure only warns
    return AuditOutcome(results, ctx.out_dir, files, class_names_from_folders=reading.from_folders, tracked=tracked)


def _read(ctx: RunContext) -> Reading:
    """Build the conditions, read the sample table (the governance checks see it as it is read), group it."""
    cfg = ctx.cfg
    bench_baseline = _check_benchmark(ctx)  # before the conditions: an unregistered corruption is named as such
    conditions = build_conditions(cfg.condition_stressors, source=ctx.source)
    check_classification_conditions(conditions, source=ctx.source)
    check_fitted_attacks(conditions, world=ctx.world, source=ctx.source, input_size=cfg.model.input_size)
    check_refinement(cfg.breaking_points, conditions, source=ctx.source)
    governance = ctx.gate.scan(id_column=cfg.data.id_column, now=ctx.started)  # no manifest row is kept
    table = read_samples(cfg.data, class_names=cfg.model.class_names, on_chunk=governance.on_chunk)
    from_folders = cfg.model.class_names is None and table.class_names is not None
    if from_folders and ctx.writes and ctx.notify is not None:
        ctx.notify(folder_classes_line(table.source, table.class_names))
    findings = governance.findings()
    gallery_mode = governance.image_mode(findings, cfg.report.images)
    layout = build_layout(table, cfg.data.intersections)
    slots = slot_matrix(table, layout)
    keys = sample_keys_of(table)
    return Reading(
        conditions=conditions,
        table=table,
        findings=findings,
        affected=governance.affected,
        gallery_mode=gallery_mode,
        layout=layout,
        slots=slots,
        keys=keys,
        attack_indices=_attack_subset(cfg, table, keys, slots),
        from_folders=from_folders,
        benchmark_baseline=bench_baseline,
    )


def _check_benchmark(ctx: RunContext) -> Results | None:
    """The benchmark's checks before any image (:func:`audit.evaluation.check_benchmark`); its baseline's results."""
    if ctx.cfg.benchmark is None:
        return None
    import stressors
    from audit.evaluation import check_benchmark

    return check_benchmark(ctx.cfg, source=ctx.source, available=stressors.available())


def _load(ctx: RunContext, reading: Reading) -> LoadedModel:
    """Load the model on its device and check it against the data and the stressors."""
    cfg, table, conditions = ctx.cfg, reading.table, reading.conditions
    device = resolve_device(cfg.device if ctx.world == 1 else distributed.local_device(cfg.device))
    base_dir = Path(ctx.config_path).resolve().parent if ctx.config_path else None
    model, model_info = load_model(cfg.model, device, base_dir=base_dir)
    width = _probe_width(model, AuditDataset(table, cfg.model), device)
    class_names = _class_names(cfg, table.class_names, width, ctx.source)
    check_label_range(table, width)  # before any image is decoded, naming the manifest line
    if any(c.model_aware for c in conditions) and not getattr(model, "has_gradients", True):
        gradient = [
            c.stressor.name for c in conditions if c.model_aware and getattr(c.stressor, "needs_gradients", True)
        ]
        if gradient:
            free = " or ".join(repr(name) for name in _gradient_free_attacks()) or "a gradient-free"
            raise AuditError(
                f"stressor {gradient[0]!r} needs gradients, but the model ({model_info['format']}) has none; "
                f"use the gradient-free {free} attack instead"
            )
    return LoadedModel(model, model_info, device, width, class_names)


def _tell_code_executed(ctx: RunContext, model_info: dict) -> None:
    """Tell the person running the audit which code loading the model executed (models are code)."""
    if model_info.get("code_executed") and ctx.writes and ctx.notify is not None:
        ctx.notify(CodeExecuted.model_validate(model_info["code_executed"]).to_text())


def _evaluate(ctx: RunContext, reading: Reading, plan: RunPlan, loaded: LoadedModel, allocator: str) -> Evaluation:
    """The streaming pass over this rank's shard; statistics merged across ranks (every rank returns)."""
    cfg, table = ctx.cfg, reading.table
    shard = distributed.shard_indices(len(table), ctx.rank, ctx.world)
    threads = plan_threads(
        threads=cfg.threads,
        num_workers=cfg.data.num_workers,
        device=loaded.device,
        input_size=tuple(cfg.model.input_size),
        first_image=table.paths[0] if table.paths is not None else None,
    )
    if ctx.writes:
        _warn_slot_memory(cfg, reading.layout.num_slots, len(reading.conditions), loaded.width)
    order, monitor = shard, None
    if cfg.evaluation.early_stop:
        order, monitor = _early_stop(ctx, reading, plan, shard)
    settings = EvalSettings(
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        num_workers=threads.num_workers,
        num_classes=loaded.width,
        n_bootstrap=cfg.evaluation.n_bootstrap,
        top_k=cfg.evaluation.top_k,
        on_bad_image=cfg.data.on_bad_image,
        gallery_mode=reading.gallery_mode if ctx.writes else "none",
        attack_indices=reading.attack_indices,
        interval=cfg.evaluation.interval,
        monitor=monitor,
    )
    work = distributed.shared_work_dir(ctx.outputs.work if ctx.outputs is not None else Path())
    with using_threads(threads):
        fit_attacks(  # the universal perturbation and the patch: cross-fitted before the pass (one process only)
            model=loaded.model,
            table=table,
            model_cfg=cfg.model,
            conditions=reading.conditions,
            keys=reading.keys,
            indices=reading.attack_indices,
            seed=cfg.seed,
            batch_size=cfg.batch_size,
            num_workers=threads.num_workers,
            device=loaded.device,
            decoding=ctx.decoding,
            on_bad_image=cfg.data.on_bad_image,
            progress=ctx.progress if ctx.writes else None,
        )
        tick = ctx.progress(len(shard), "evaluating") if ctx.progress and ctx.writes else None  # after the fit's bar
        state = evaluate(
            model=loaded.model,
            table=table,
            dataset=AuditDataset(table, cfg.model, order, **ctx.decoding),
            conditions=reading.conditions,
            slots=reading.slots,
            keys=reading.keys,
            num_slots=reading.layout.num_slots,
            settings=settings,
            device=loaded.device,
            predictions_path=distributed.part_path(work, ctx.rank),
            progress=tick,
            properties_path=properties_part_path(work, ctx.rank),
        )
    state.skipped = distributed.gather_lists(state.skipped)
    if state.skipped:  # dataset order, whatever the ranks
        positions = table.indices_of([s["sample"] for s in state.skipped]).tolist()
        state.skipped = [s for _, s in sorted(zip(positions, state.skipped), key=lambda p: p[0])]
    state.attack_failures = distributed.sum_counts(state.attack_failures)
    if distributed.is_distributed():
        merged: dict[str, dict] = {}
        for cid, part in distributed.gather_lists(sorted(state.attack_details.items())):
            merged[cid] = merge_attack_details(merged.get(cid), part, part["n"])
        state.attack_details = merged
    with warnings.catch_warnings():  # a condition with no sample (all skipped) is reported with n = 0
        warnings.filterwarnings("ignore", message=".*compute.*before.*update.*")
        computed = {cid: stats.compute() for cid, stats in state.stats.items()}  # all-reduces across ranks
    distributed.barrier()  # every part file is complete
    return Evaluation(state, computed, threads, allocator, work)


def _judge(ctx: RunContext, reading: Reading, loaded: LoadedModel, evaluation: Evaluation) -> Results:
    """Rank 0: the results (breaking points, the policy's verdict, error thumbnails), each part built as its model."""
    cfg, table, state, computed = ctx.cfg, reading.table, evaluation.state, evaluation.computed
    if computed["clean"][0]["n"] == 0:
        raise AuditError(f"{table.source}: no image could be decoded; nothing to audit")

    refine = RefineContext(
        loaded.model,
        table,
        cfg.model,
        reading.keys,
        cfg.seed,
        cfg.batch_size,
        loaded.device,
        reading.conditions,
        decoding=ctx.decoding,
    )
    results = assemble_results(
        ResultsInputs(
            cfg=cfg,
            config_path=ctx.config_path,
            model_info=loaded.info,
            class_names=loaded.class_names,
            table=table,
            conditions=reading.conditions,
            layout=reading.layout,
            computed=computed,
            state=state,
            attack_indices=reading.attack_indices,
            baseline=ctx.baseline,
            governance=Governance.model_validate(
                {"findings": reading.findings, "policy": ctx.gate.name, "audit_date": ctx.started.date().isoformat()}
            ),
            breaking_points=run_breaking_points(
                evaluation.work, cfg, reading.conditions, reading.layout, table, refine
            ),
            started=ctx.started,
            device=str(loaded.device),
            threads=evaluation.threads.threads,
            num_workers=evaluation.threads.num_workers,
            allocator=evaluation.allocator,
        )
    )
    if cfg.benchmark is not None:
        results = _with_benchmark(ctx, results, reading, loaded)
    predictions = ctx.outputs.stage / "predictions.csv"
    merge_predictions(evaluation.work, predictions, attributes=list(table.attributes))  # the named samples come from it
    merge_properties(evaluation.work, ctx.outputs.stage / IMAGE_PROPERTIES_CSV)
    results = _slices(ctx, results, reading, loaded)  # watched slices (judged below) and the slice search
    verdict = PolicyOutcome.model_validate(ctx.gate.judge(results, findings=reading.findings))
    results = results.model_copy(update={"policy": verdict})
    thumbnails = _error_thumbnails(ctx, results, predictions, reading, loaded)
    if thumbnails:
        results = results.model_copy(
            update={"error_thumbnails": [ErrorThumbnails.model_validate(t) for t in thumbnails]}
        )
    return results


def _with_benchmark(ctx: RunContext, results: Results, reading: Reading, loaded: LoadedModel) -> Results:
    """The results with ``imagenet_c``: the benchmark's summary and, where the report may show images, each
    suite condition on the audit's first sample (stressed as in the evaluation, encoded as a gallery image)."""
    from audit.evaluation import imagenet_c_summary, stressed_thumbnails, suite_condition_ids

    bench = ctx.cfg.benchmark
    assert bench is not None
    section = imagenet_c_summary(results, bench, reading.benchmark_baseline)
    if reading.gallery_mode != "none":
        first = str(reading.table.ids[0])
        ids = suite_condition_ids(bench)
        images = stressed_thumbnails(
            model=loaded.model,
            table=reading.table,
            model_cfg=ctx.cfg.model,
            conditions=reading.conditions,
            wanted={cid: [first] for cid in ids},
            keys=reading.keys,
            seed=ctx.cfg.seed,
            device=loaded.device,
            mode=reading.gallery_mode,
            decoding=ctx.decoding,
        )
        previews = [
            BenchmarkPreview(condition=cid, image=images[(cid, first)]) for cid in ids if (cid, first) in images
        ]
        section = section.model_copy(update={"previews": previews})
    return results.model_copy(update={"imagenet_c": section})


def _slices(ctx: RunContext, results: Results, reading: Reading, loaded: LoadedModel) -> Results:
    """results.json ``slices`` (config ``slices.watch``) and ``slice_search`` (``slices.search``, which also writes
    slices.csv into the staging folder), from the staged predictions.csv and image_properties.csv."""
    cfg = ctx.cfg.slices
    if not cfg.watch and not cfg.search:
        return results
    from audit.contract.results import SliceSearchResult, WatchedSliceResult
    from audit.evaluation import measure_watched, read_slice_table

    assert ctx.outputs is not None
    stage = ctx.outputs.stage
    table = read_slice_table(
        stage / "predictions.csv", stage / IMAGE_PROPERTIES_CSV, attributes=list(reading.table.attributes)
    )
    update: dict[str, Any] = {}
    if cfg.watch:
        measured = measure_watched(cfg.watch, table, min_group_size=ctx.cfg.evaluation.min_group_size)
        update["slices"] = [WatchedSliceResult.model_validate(m) for m in measured]
    if cfg.search:
        from audit.slice_run import run_search

        searched = table
        if cfg.condition != "clean":
            searched = read_slice_table(
                stage / "predictions.csv",
                stage / IMAGE_PROPERTIES_CSV,
                attributes=list(reading.table.attributes),
                condition=cfg.condition,
            )
        found = run_search(ctx, searched, stage, reading=reading, loaded=loaded)
        update["slice_search"] = SliceSearchResult.model_validate(found)
    return results.model_copy(update=update)


def folder_classes_line(root: Path, names: list[str], *, shown: int = 20) -> str:
    """The class mapping of an image folder without ``model.class_names``, as one line for the person running it."""
    pairs = ", ".join(f"{k} = {echo(name)}" for k, name in enumerate(names[:shown]))
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return f"cvaudit: labels from the folder names of {root} (sorted; model.class_names not set): {pairs}{more}"


def _error_thumbnails(
    ctx: RunContext, results: Results, predictions: Path, reading: Reading, loaded: LoadedModel
) -> list[dict]:
    """The results' ``error_thumbnails``: the samples the report names per failing target, as the model saw them.

    The samples are selected as the report selects them (:func:`reports.error_examples.error_examples`,
    from the merged predictions.csv) and stressed again (:mod:`audit.evaluation.error_thumbnails`);
    nothing when the report may show no images (gallery mode ``none``) or no rule failed or warned.
    """
    mode = reading.gallery_mode
    if mode == "none":
        return []
    from audit.evaluation import stressed_thumbnails
    from reports import find_error_examples as error_examples

    examples = [e for e in error_examples(results, predictions) if e["samples"]]
    wanted: dict[str, list[str]] = {}
    for e in examples:
        wanted.setdefault(e["condition"], []).extend(str(s["sample_id"]) for s in e["samples"])
    images = stressed_thumbnails(
        model=loaded.model,
        table=reading.table,
        model_cfg=ctx.cfg.model,
        conditions=reading.conditions,
        wanted=wanted,
        keys=reading.keys,
        seed=ctx.cfg.seed,
        device=loaded.device,
        mode=mode,
        decoding=ctx.decoding,
    )
    out = []
    for e in examples:
        samples = [
            {"sample_id": sid, "image": images[(e["condition"], sid)]}
            for sid in (str(s["sample_id"]) for s in e["samples"])
            if (e["condition"], sid) in images
        ]
        if samples:
            out.append(
                {"condition": e["condition"], "attribute": e["attribute"], "value": e["value"], "samples": samples}
            )
    return out


def _plan(ctx: RunContext, reading: Reading) -> RunPlan:
    """What this run will write: the targets policy rules are validated against."""
    from audit.evaluation import ADVERSARIAL_CHECKS as CHECKS

    cfg, conditions = ctx.cfg, reading.conditions
    if cfg.slices.search and cfg.slices.condition not in [c.id for c in conditions]:
        raise AuditError(
            f"{ctx.source}: slices.condition: {cfg.slices.condition!r} is not a condition of this run "
            f"(conditions: {', '.join(c.id for c in conditions[:12])}{', ...' if len(conditions) > 12 else ''})"
        )
    attacks = any(c.model_aware for c in conditions)
    sections = set(Results.model_fields) - {
        "slices",  # only with config slices.watch
        "slice_search",  # only with config slices.search
        "attack_reference",
        "baseline_comparison",
        "gallery",
        "error_thumbnails",  # made after the policy has judged
        "policy",
    }
    if attacks and reading.attack_indices is not None:
        sections.add("attack_reference")
    if ctx.baseline is not None:
        sections.add("baseline_comparison")
    if reading.gallery_mode != "none":
        sections.add("gallery")
    if cfg.benchmark is None:
        sections.discard("imagenet_c")
    if cfg.slices.watch:
        sections.add("slices")
    if cfg.slices.search:
        sections.add("slice_search")
    return RunPlan(
        source=ctx.source,
        conditions=tuple(
            PlannedCondition(c.id, c.stressor_name, float(c.severity), c.model_aware, c.probe) for c in conditions
        ),
        attributes={g.name: tuple(g.values) for g in reading.layout.groupings},
        intervals=_intervals(cfg),
        top_k=cfg.evaluation.top_k is not None,
        sections=frozenset(sections),
        checks=frozenset(CHECKS) if attacks else frozenset(),
        slices=frozenset(w.id for w in cfg.slices.watch),
    )


def _intervals(cfg: AuditConfig) -> frozenset[str]:
    """The metrics the run gives an interval (``<metric>_ci``), from the metric registry."""
    from audit.contract.metric_specs import interval_metric_names

    return interval_metric_names(top_k=cfg.evaluation.top_k is not None, bootstrap=cfg.evaluation.n_bootstrap > 0)


#: Above this many slots (the whole dataset, plus one per group and intersection value) the run warns
#: with the memory its statistics will take (docs/statistics.md).
SLOT_WARNING = 256


def _warn_slot_memory(cfg: AuditConfig, num_slots: int, num_conditions: int, num_classes: int) -> None:
    if num_slots <= SLOT_WARNING:
        return
    from audit.evaluation import state_bytes

    per = state_bytes(
        num_classes=num_classes,
        num_slots=num_slots,
        n_bootstrap=cfg.evaluation.n_bootstrap,
        top_k=cfg.evaluation.top_k,
        interval=cfg.evaluation.interval,
    )
    warnings.warn(
        f"{num_slots} group slots (more than {SLOT_WARNING}): the statistics take "
        f"{per / 2**20:.0f} MiB per condition, {per * num_conditions / 2**20:.0f} MiB for the {num_conditions} "
        f"conditions (evaluation.n_bootstrap {cfg.evaluation.n_bootstrap} replicates; fewer intersections or "
        "replicates take less)",
        SlotMemoryWarning,
        stacklevel=2,
    )


def _early_stop(ctx: RunContext, reading: Reading, plan: RunPlan, shard: list[int]) -> tuple[list[int], Any]:
    """The stratified evaluation order and the stop monitor of ``evaluation.early_stop``."""
    from audit.contract.intervals import CONFIDENCE_LEVEL
    from audit.evaluation import StopMonitor, stratified_order

    if ctx.world > 1:
        raise AuditError(
            f"evaluation.early_stop needs a single process (this run has {ctx.world}): turn it off under torchrun"
        )
    cfg, table, slots, layout, attack_indices = (
        ctx.cfg,
        reading.table,
        reading.slots,
        reading.layout,
        reading.attack_indices,
    )
    n_attrs = len(table.attributes)
    strata = [tuple(slots[i, 1 : 1 + n_attrs].tolist()) + (table.labels[i],) for i in shard]
    positions = stratified_order(reading.keys[shard], strata, seed=cfg.seed)
    order = [shard[p] for p in positions]
    attacked = len(shard) if attack_indices is None else len(set(shard) & attack_indices)
    monitor = StopMonitor(
        ctx.gate.stop_targets(plan),
        conditions=[(c.id, c.model_aware) for c in plan.conditions],
        available={c.id: attacked if c.model_aware else len(shard) for c in plan.conditions},
        layout=layout,
        slot_sizes=torch.bincount(slots[shard].reshape(-1), minlength=layout.num_slots).tolist(),
        min_samples=cfg.evaluation.early_stop_min_samples,
        min_group_size=cfg.evaluation.min_group_size,
        alpha=(1 - CONFIDENCE_LEVEL) / 2,
        interval=cfg.evaluation.interval,
        level=CONFIDENCE_LEVEL,
        hold_clean=attack_indices is not None and any(c.model_aware for c in plan.conditions),
    )
    return order, monitor


def _load_baseline(path: Path) -> Results:
    """The deployed model's results, through the one reader."""
    try:
        return load_results(path)
    except ResultsError as err:
        raise AuditError(f"--baseline: {err}") from None


def _attack_subset(cfg: AuditConfig, table: SampleTable, keys: torch.Tensor, slots: torch.Tensor) -> set[int] | None:
    """The samples attacks run on (``evaluation.attack_samples``): stratified by group and class; None: all."""
    n = cfg.evaluation.attack_samples
    if n is None or n >= len(table):
        return None
    from audit.evaluation import stratified_subset

    groups = slots[:, 1 : 1 + len(table.attributes)].tolist()
    strata = [(*g, y) for g, y in zip(groups, table.labels.tolist())]
    return set(int(i) for i in stratified_subset(keys, strata, n, seed=cfg.seed))


def _write_outputs(
    ctx: RunContext, results: Results, reading: Reading, loaded: LoadedModel, evaluation: Evaluation
) -> list[Path]:
    """Write every output of the run (:meth:`RunContext.write_outputs`): what only a classification run has is
    predictions.csv (merged into the staging folder already, see ``_judge``) and breaking_points.csv from the
    work folder; the data manifest is an attestation subject."""
    work, outputs, table = evaluation.work, ctx.outputs, reading.table
    assert outputs is not None
    bp = work / BREAKING_POINTS_CSV
    physical = _physical_images(results, outputs.stage)
    return ctx.write_outputs(
        results,
        model_info=loaded.info,
        data_subjects={"dataset:" + table.source.name: table.source} if table.source.is_file() else {},
        governance=reading.affected,
        predictions=outputs.stage / "predictions.csv",
        breaking_points=bp if bp.exists() else None,
        staged=[p for p in (outputs.stage / IMAGE_PROPERTIES_CSV, outputs.stage / "slices.csv") if p.is_file()]
        + physical,
    )


def _physical_images(results: Results, stage: Path) -> list[Path]:
    """The fitted perturbations of the cross-fitted physical attacks (``conditions[].physical.images``, present when
    the policy allows images) as ``physical-<condition>-fold<k>.png`` files beside the report."""
    import base64

    written = []
    for cond in results.conditions:
        if cond.physical is None or not cond.physical.images:
            continue
        for fold, uri in enumerate(cond.physical.images):
            path = stage / f"physical-{cond.id}-fold{fold}.png"
            path.write_bytes(base64.b64decode(uri.split(",", 1)[1]))
            written.append(path)
    return written


__all__ = ["AuditOutcome", "RunContext", "run", "run_audit"]
