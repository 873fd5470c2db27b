"""``cvaudit run``: from a config to a verdict and every output file.

Order of work (so that nothing is written over invalid input):

1. load and validate everything that can fail cheaply: config, policy, signing
   keys, model, sample table, stressors;
2. governance checks over the manifest (they decide whether images may appear
   in the report);
3. one streaming pass over the data (:mod:`audit.evaluation.evaluate`);
4. results assembly (:mod:`audit.evaluation.results`), policy verdict;
5. outputs, written into a staging folder (the attestation last) that is then
   swapped in for ``--out`` as a whole, under an advisory lock on ``--out``
   (:mod:`reports.outputs`);
6. tracking (MLflow, when configured: :mod:`audit.tracking`), which only warns on failure.

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
from audit.contract.errors import AuditError, ExitCode, echo
from audit.contract.load import ResultsError, load_results
from audit.contract.plan import PlannedCondition, RunPlan
from audit.contract.results import ErrorThumbnails, Governance, PolicyOutcome, Results
from audit.evaluation import distributed
from audit.evaluation.allocator import apply_allocator
from audit.evaluation.breaking_points import BREAKING_POINTS_CSV, RefineContext, check_refinement, run_breaking_points
from audit.evaluation.conditions import build_conditions
from audit.evaluation.data import AuditDataset, check_label_range, read_samples, sample_keys_of
from audit.evaluation.evaluate import EvalSettings, evaluate
from audit.evaluation.groups import build_layout, slot_matrix
from audit.evaluation.model import load_model, resolve_device, resolve_model_config
from audit.evaluation.predictions import merge_predictions
from audit.evaluation.results import ResultsInputs, assemble_results
from audit.evaluation.threads import plan_threads, using_threads
from audit.tracking import TrackedRun, track_audit
from reports.outputs import OutputTransaction


class SlotMemoryWarning(UserWarning):
    """The run's statistics will take a lot of memory (many group slots): a warning, the run goes on."""


class OutputRecoveryWarning(UserWarning):
    """What the output transaction found and cleaned up (leftovers of interrupted runs)."""


ProgressFactory = Callable[[int, str], Callable[..., None]]


@dataclass(frozen=True)
class AuditOutcome:
    """What a run produced. ``exit_code`` is 0 (pass) or 1 (a blocking rule failed)."""

    results: Results | None  # None on the ranks other than 0 of a distributed run
    out_dir: Path
    files: list[Path]
    class_names_from_folders: bool = False
    tracked: TrackedRun | None = None  # the MLflow run, when tracking is on and logging succeeded

    @property
    def verdict(self) -> str:
        if self.results is None or self.results.verdict is None:
            raise ValueError("no verdict: these results were not judged (a non-zero rank of a distributed run)")
        return self.results.verdict

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.PASS if self.verdict == "pass" else ExitCode.FAIL


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


def run_audit(
    cfg: AuditConfig,
    *,
    config_path: Path | None,
    out_dir: Path,
    baseline: Path | None = None,
    progress: ProgressFactory | None = None,
    now: dt.datetime | None = None,
    policy: Any = None,
    notify: Callable[[str], None] | None = None,
) -> AuditOutcome:
    """Run the whole audit and write the outputs into ``out_dir`` (rank 0 only).

    ``policy`` is ``cfg.policy`` already loaded (:func:`policies.load_policy`), or None to load it here.
    ``notify`` receives the lines a person running the audit should see as it starts (the class mapping
    of an image folder without ``model.class_names``); the CLI prints them, the library prints nothing.
    Conditions worth a warning (the statistics' memory, an interrupted run cleaned up) are ``warnings``.

    Raises:
        AuditError: anything that prevents a valid audit (exit code 2). Nothing
            is written to ``out_dir`` in that case.
    """
    started = now or dt.datetime.now(dt.timezone.utc)
    rank, world = distributed.rank_and_world(cfg.device)
    outputs = OutputTransaction(out_dir) if rank == 0 else None
    if outputs is not None:
        outputs.begin()  # lock --out (a second run exits 2), clean up after killed runs
        for note in outputs.notes:
            warnings.warn(note, OutputRecoveryWarning, stacklevel=2)
    try:
        return _run(cfg, config_path, out_dir, baseline, progress, started, rank, world, outputs, policy, notify)
    finally:
        if outputs is not None:
            outputs.close()


def _run(cfg, config_path, out_dir, baseline, progress, started, rank, world, outputs, policy, notify) -> AuditOutcome:
    """The body of :func:`run_audit`; ``outputs`` is the output transaction on rank 0, else None."""
    import policies
    from policies.findings import judge_findings
    from policies.governance import GovernanceScan, report_image_mode
    from policies.validate import check_gate, validate_policy
    from reports.keys import load_signing_keys, passphrase_from_env

    if policy is None:
        policy = policies.load_policy(cfg.policy)
    check_gate(policy)  # a policy with nothing that can fail is refused before the data are read
    passphrase_bytes = passphrase_from_env()
    keys = load_signing_keys(cfg.report.sign_key, passphrase_bytes) if cfg.report.sign_key is not None else None
    baseline_results = _load_baseline(baseline) if baseline else None

    cfg = cfg.model_copy(update={"model": resolve_model_config(cfg.model)})  # a Hugging Face folder's own values
    cfg = cfg.model_copy(update={"data": cfg.data.decoding_for(cfg.model)})  # data.exif, data.alpha decided
    source = str(config_path or "config")
    conditions = build_conditions(cfg.stressors, source=source)
    check_refinement(cfg.breaking_points, conditions, source=source)
    affected: list[dict[str, Any]] = []
    scan = (  # the governance checks see the manifest rows chunk by chunk as they are read; no row is kept
        GovernanceScan(policy.governance, id_column=cfg.data.id_column, now=started, affected=affected)
        if policy.governance is not None
        else None
    )
    table = read_samples(cfg.data, class_names=cfg.model.class_names, on_chunk=scan.feed if scan else None)
    from_folders = cfg.model.class_names is None and table.class_names is not None
    if from_folders and rank == 0 and notify is not None:
        notify(folder_classes_line(table.source, table.class_names))
    findings = judge_findings(scan.findings() if scan else [], policy)
    gallery_mode = report_image_mode(policy, findings, cfg.report.images)
    layout = build_layout(table, cfg.data.intersections)
    slots = slot_matrix(table, layout)
    keys_all = sample_keys_of(table)
    attack_indices = _attack_subset(cfg, table, keys_all, layout, slots)
    plan = _plan(source, cfg, conditions, layout, attack_indices, baseline_results, gallery_mode)
    validate_policy(policy, plan)  # a rule that can never match fails here, before any image is evaluated

    device = resolve_device(cfg.device if world == 1 else distributed.local_device(cfg.device))
    base_dir = Path(config_path).resolve().parent if config_path else None
    model, model_info = load_model(cfg.model, device, base_dir=base_dir)
    dataset_all = AuditDataset(table, cfg.model)
    width = _probe_width(model, dataset_all, device)
    class_names = _class_names(cfg, table.class_names, width, source)
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

    shard = distributed.shard_indices(len(table), rank, world)
    threads = plan_threads(
        threads=cfg.threads,
        num_workers=cfg.data.num_workers,
        device=device,
        input_size=tuple(cfg.model.input_size),
        first_image=table.paths[0] if table.paths is not None else None,
    )
    if rank == 0:
        _warn_slot_memory(cfg, layout.num_slots, len(conditions), width)
    order, monitor = shard, None
    if cfg.evaluation.early_stop:
        order, monitor = _early_stop(cfg, policy, plan, table, slots, keys_all, layout, shard, attack_indices, world)
    settings = EvalSettings(
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        num_workers=threads.num_workers,
        num_classes=width,
        n_bootstrap=cfg.evaluation.n_bootstrap,
        top_k=cfg.evaluation.top_k,
        on_bad_image=cfg.data.on_bad_image,
        gallery_mode=gallery_mode if rank == 0 else "none",
        attack_indices=attack_indices,
        interval=cfg.evaluation.interval,
        monitor=monitor,
    )
    work = distributed.shared_work_dir(outputs.work if outputs is not None else Path())
    tick = progress(len(shard), "evaluating") if progress and rank == 0 else None
    allocator = apply_allocator(cfg.allocator)
    with using_threads(threads):
        state = evaluate(
            model=model,
            table=table,
            dataset=AuditDataset(table, cfg.model, order, **_decoding(cfg)),
            conditions=conditions,
            slots=slots,
            keys=keys_all,
            num_slots=layout.num_slots,
            settings=settings,
            device=device,
            predictions_path=distributed.part_path(work, rank),
            progress=tick,
        )
    state.skipped = distributed.gather_lists(state.skipped)
    if state.skipped:  # dataset order, whatever the ranks
        positions = table.indices_of([s["sample"] for s in state.skipped]).tolist()
        state.skipped = [s for _, s in sorted(zip(positions, state.skipped), key=lambda p: p[0])]
    state.attack_failures = distributed.sum_counts(state.attack_failures)
    with warnings.catch_warnings():  # a condition with no sample (all skipped) is reported with n = 0
        warnings.filterwarnings("ignore", message=".*compute.*before.*update.*")
        computed = {cid: stats.compute() for cid, stats in state.stats.items()}  # all-reduces across ranks
    distributed.barrier()  # every part file is complete
    if rank != 0:
        return AuditOutcome(None, out_dir, [])
    if computed["clean"][0]["n"] == 0:
        raise AuditError(f"{table.source}: no image could be decoded; nothing to audit")

    refine = RefineContext(
        model, table, cfg.model, keys_all, cfg.seed, cfg.batch_size, device, conditions, decoding=_decoding(cfg)
    )
    results = assemble_results(
        ResultsInputs(
            cfg=cfg,
            config_path=config_path,
            model_info=model_info,
            class_names=class_names,
            table=table,
            conditions=conditions,
            layout=layout,
            computed=computed,
            state=state,
            attack_indices=attack_indices,
            baseline=baseline_results,
            governance=Governance.model_validate(
                {"findings": findings, "policy": policy.name, "audit_date": started.date().isoformat()}
            ),
            breaking_points=run_breaking_points(work, cfg, conditions, layout, table, refine),
            started=started,
            device=str(device),
            threads=threads.threads,
            num_workers=threads.num_workers,
            allocator=allocator,
        )
    )
    verdict = PolicyOutcome.model_validate(policies.check_policy(results, policy, findings=findings))
    results = results.model_copy(update={"policy": verdict})
    predictions = outputs.stage / "predictions.csv"
    merge_predictions(work, predictions, attributes=list(table.attributes))  # the named samples come from it
    thumbnails = _error_thumbnails(results, predictions, gallery_mode, model, table, cfg, conditions, keys_all, device)
    if thumbnails:
        results = results.model_copy(
            update={"error_thumbnails": [ErrorThumbnails.model_validate(t) for t in thumbnails]}
        )
    files = _write_outputs(cfg, results, work, outputs, affected, keys, passphrase_bytes, model_info, table)
    tracked = track_audit(cfg, results, out_dir, config_path=config_path)  # MLflow; a failure only warns
    return AuditOutcome(results, out_dir, files, class_names_from_folders=from_folders, tracked=tracked)


def folder_classes_line(root: Path, names: list[str], *, shown: int = 20) -> str:
    """The class mapping of an image folder without ``model.class_names``, as one line for the person running it."""
    pairs = ", ".join(f"{k} = {echo(name)}" for k, name in enumerate(names[:shown]))
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return f"cvaudit: labels from the folder names of {root} (sorted; model.class_names not set): {pairs}{more}"


def _decoding(cfg: AuditConfig) -> dict[str, Any]:
    """How :class:`AuditDataset` decodes an image file (config ``data.max_image_pixels``, ``data.exif``, ``data.alpha``)."""
    return {"max_pixels": cfg.data.max_image_pixels, "exif": cfg.data.exif, "alpha": cfg.data.alpha}


def _error_thumbnails(results, predictions, mode, model, table, cfg, conditions, keys, device) -> list[dict]:
    """The results' ``error_thumbnails``: the samples the report names per failing target, as the model saw them.

    The samples are selected as the report selects them (:func:`reports.error_examples.error_examples`,
    from the merged predictions.csv) and stressed again (:mod:`audit.evaluation.error_thumbnails`);
    nothing when the report may show no images (``mode`` ``none``) or no rule failed or warned.
    """
    if mode == "none":
        return []
    from audit.evaluation.error_thumbnails import stressed_thumbnails
    from reports.error_examples import error_examples

    examples = [e for e in error_examples(results, predictions) if e["samples"]]
    wanted: dict[str, list[str]] = {}
    for e in examples:
        wanted.setdefault(e["condition"], []).extend(str(s["sample_id"]) for s in e["samples"])
    images = stressed_thumbnails(
        model=model,
        table=table,
        model_cfg=cfg.model,
        conditions=conditions,
        wanted=wanted,
        keys=keys,
        seed=cfg.seed,
        device=device,
        mode=mode,
        decoding=_decoding(cfg),
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


def _plan(source, cfg, conditions, layout, attack_indices, baseline, gallery_mode) -> RunPlan:
    """What this run will write: the targets policy rules are validated against."""
    from audit.evaluation.adversarial_checks import CHECKS

    attacks = any(c.model_aware for c in conditions)
    sections = set(Results.model_fields) - {
        "attack_reference",
        "baseline_comparison",
        "gallery",
        "error_thumbnails",  # made after the policy has judged
        "policy",
    }
    if attacks and attack_indices is not None:
        sections.add("attack_reference")
    if baseline is not None:
        sections.add("baseline_comparison")
    if gallery_mode != "none":
        sections.add("gallery")
    return RunPlan(
        source=source,
        conditions=tuple(
            PlannedCondition(c.id, c.stressor_name, float(c.severity), c.model_aware, c.probe) for c in conditions
        ),
        attributes={g.name: tuple(g.values) for g in layout.groupings},
        intervals=_intervals(cfg),
        top_k=cfg.evaluation.top_k is not None,
        sections=frozenset(sections),
        checks=frozenset(CHECKS) if attacks else frozenset(),
    )


def _intervals(cfg: AuditConfig) -> frozenset[str]:
    """The metrics the run gives an interval (``<metric>_ci``)."""
    closed = {"accuracy"} | ({"top_k_accuracy"} if cfg.evaluation.top_k is not None else set())
    if cfg.evaluation.n_bootstrap == 0:
        return frozenset(closed)
    return frozenset(closed | {"ece", "debiased_l2_ce", "brier", "nll", "macro_f1", "balanced_accuracy"})


#: Above this many slots (the whole dataset, plus one per group and intersection value) the run warns
#: with the memory its statistics will take (README, "Statistics").
SLOT_WARNING = 256


def _warn_slot_memory(cfg: AuditConfig, num_slots: int, num_conditions: int, num_classes: int) -> None:
    if num_slots <= SLOT_WARNING:
        return
    from audit.evaluation.metrics import state_bytes

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


def _early_stop(cfg, policy, plan, table, slots, keys_all, layout, shard, attack_indices, world):
    """The stratified evaluation order and the stop monitor of ``evaluation.early_stop``."""
    from audit.contract.intervals import CONFIDENCE_LEVEL
    from audit.evaluation.early_stop import StopMonitor, stratified_order
    from policies.early_stop import stop_targets

    if world > 1:
        raise AuditError(
            f"evaluation.early_stop needs a single process (this run has {world}): turn it off under torchrun"
        )
    n_attrs = len(table.attributes)
    strata = [tuple(slots[i, 1 : 1 + n_attrs].tolist()) + (table.labels[i],) for i in shard]
    positions = stratified_order(keys_all[shard], strata, seed=cfg.seed)
    order = [shard[p] for p in positions]
    attacked = len(shard) if attack_indices is None else len(set(shard) & attack_indices)
    monitor = StopMonitor(
        stop_targets(policy, plan),
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


def _attack_subset(cfg, table, keys_all, layout, slots) -> set[int] | None:
    n = cfg.evaluation.attack_samples
    if n is None or n >= len(table):
        return None
    from audit.evaluation.subset import stratified_subset

    groups = slots[:, 1 : 1 + len(table.attributes)].tolist()
    strata = [(*g, y) for g, y in zip(groups, table.labels.tolist())]
    return set(int(i) for i in stratified_subset(keys_all, strata, n, seed=cfg.seed))


def _write_outputs(cfg, results, work, outputs, affected, keys, passphrase, model_info, table) -> list[Path]:
    """Write every output of the run with :func:`reports.write_outputs` (the one writer, shared with ``cvaudit report``).

    What only a run has is passed to it: predictions.csv (merged into the
    staging folder already, see ``_run``), breaking_points.csv from the work
    folder, the governance scan's affected rows, and the model and data
    manifest files as attestation subjects. Notes of the swap become
    :class:`OutputRecoveryWarning`.
    """
    from policies.governance import CHECK_SECTIONS
    from reports import results_json_bytes, write_outputs

    extra = {}
    if model_info.get("sha256") and model_info.get("path"):
        extra["model:" + Path(model_info["path"]).name] = Path(model_info["path"])
    if table.source.is_file():
        extra["dataset:" + table.source.name] = table.source
    written = write_outputs(
        outputs,
        results,
        results_json=results_json_bytes(results),
        formats=tuple(cfg.report.formats),
        sign_key=cfg.report.sign_key if keys else None,
        passphrase=passphrase,
        extra_subjects=extra,
        predictions=outputs.stage / "predictions.csv",
        governance=affected,
        check_order=list(CHECK_SECTIONS),
        breaking_points=work / BREAKING_POINTS_CSV if (work / BREAKING_POINTS_CSV).exists() else None,
    )  # the whole set at once; files of an earlier run are not carried over
    for note in written.notes:
        warnings.warn(note, OutputRecoveryWarning, stacklevel=2)
    return list(written.files)


__all__ = ["AuditOutcome", "run_audit"]
