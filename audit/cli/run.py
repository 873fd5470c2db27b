"""``cvaudit run`` and ``cvaudit demo``: run an audit and print its summary."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import click

from audit.cli.boundary import boundary, say
from audit.cli.summary import label_mapping_hint, print_summary
from audit.contract.results import Results
from audit.contract.text import neutralise

#: The allocator of ``cvaudit run`` and ``cvaudit demo`` when the config leaves ``allocator`` unset.
CLI_ALLOCATOR = "retain"


def _progress_factory(enabled: bool) -> Callable[[int, str], Callable[..., None]] | None:
    """A rich progress bar on stderr that names the condition being evaluated and shows an ETA."""
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)

    def factory(total: int, label: str) -> Callable[..., None]:
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("images"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        progress.start()
        task = progress.add_task(label, total=total)
        done = [0]

        def tick(n: int, condition: str | None = None) -> None:
            if condition is not None:
                progress.update(task, description=f"{label}: {neutralise(condition)}")
            if n:
                done[0] += n
                progress.update(task, advance=n)
            if done[0] >= total:
                progress.update(task, description=label)
                progress.stop()

        return tick

    return factory


def report_skipped(results: Results, *, shown: int = 5) -> None:
    """Skipped (undecodable) images on stderr: how many, and the first few names."""
    skipped = results.dataset.skipped
    if not skipped:
        return
    names = ", ".join(s.sample for s in skipped[:shown])
    more = f" and {len(skipped) - shown} more" if len(skipped) > shown else ""
    say(
        f"warning: {len(skipped)} image(s) could not be decoded and were skipped: {names}{more}"
        " (all of them in skipped.csv and results.json dataset.skipped)"
    )


def _refuse_fitted_attacks(config: Path, nproc: int) -> None:
    """Refuse, before any process starts, a config with a fitted attack (trait ``needs_fit``: cross-fitted
    over the whole audit set) in a run of several processes; each rank refuses it too (``torchrun`` directly).

    Raises:
        AuditError: one line naming the config and the stressor.
    """
    import stressors
    from audit.contract.config import load_config
    from audit.contract.errors import AuditError

    for entry in load_config(config).condition_stressors:
        try:
            factory = stressors.factory(entry.name)
        except stressors.StressorError:
            continue  # an unknown stressor is named by the run itself
        if getattr(factory, "needs_fit", False):
            raise AuditError(
                f"{config}: stressor {entry.name!r} is a fitted attack (cross-fitted over the whole audit set); "
                f"it does not run in a distributed run ({nproc} processes): run it with one process"
            )


@click.command("run")
@click.argument("config", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("cvaudit-out"),
    show_default=True,
    help="Output folder, replaced as a whole (an empty or new folder, or one cvaudit wrote).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Write into a non-empty --out that cvaudit did not make (no .cvaudit-output marker); its files are kept. "
    "Never a system folder, a symbolic link, or a folder holding the config or the data.",
)
@click.option(
    "--out-mode",
    default="700",
    show_default=True,
    metavar="OCTAL",
    help="Mode of the --out folder; its files get the same bits without execute (700: folder 0700, files 0600). "
    "750 shares the outputs with the group (docs/security.md#output-folders).",
)
@click.option("--seed", type=int, default=None, help="Override the config's seed.")
@click.option("--device", type=str, default=None, help="auto | cpu | cuda | cuda:N (overrides the config).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Override the config's batch size.")
@click.option(
    "--attack-samples",
    type=click.IntRange(min=1),
    default=None,
    help="Attack a seeded subset of N samples, stratified by group and class.",
)
@click.option(
    "--baseline",
    type=click.Path(path_type=Path),
    default=None,
    help="A results.json of the deployed model to compare against.",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--mlflow",
    "mlflow_experiment",
    metavar="EXPERIMENT",
    default=None,
    help="Also log the run to this MLflow experiment (overrides tracking.mlflow.experiment; extra cvaudit[mlflow]).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option(
    "--nproc-per-node",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes on this machine (one per GPU, or CPU processes with gloo); exit codes stay 0/1/2.",
)
@boundary
def run_command(
    config: Path,
    out_dir: Path,
    seed,
    device,
    batch_size,
    attack_samples,
    baseline,
    fmt,
    mlflow_experiment,
    quiet,
    nproc_per_node,
    force,
    out_mode,
) -> int | None:
    """Run the audit described by CONFIG (a config.yaml) and write every output into --out.

    Returns the exit code (the boundary exits with it): 0 pass, 1 a blocking rule failed;
    None on a non-zero rank of a distributed run.
    """
    if nproc_per_node > 1 and "WORLD_SIZE" not in os.environ:
        from audit.cli.launch import launch

        _refuse_fitted_attacks(config, nproc_per_node)  # one line here, not one per process

        argv = ["run", str(config), "--out", str(out_dir), "--format", fmt]
        for flag, value in (
            ("--seed", seed),
            ("--device", device),
            ("--batch-size", batch_size),
            ("--attack-samples", attack_samples),
            ("--baseline", baseline),
            ("--mlflow", mlflow_experiment),
        ):
            if value is not None:
                argv += [flag, str(value)]
        argv += ["--out-mode", str(out_mode), *(["--force"] if force else [])]
        return launch(nproc_per_node, [*argv, *(["--quiet"] if quiet else [])])
    outcome = run_config(
        config,
        out_dir=out_dir,
        seed=seed,
        device=device,
        batch_size=batch_size,
        attack_samples=attack_samples,
        baseline=baseline,
        quiet=quiet,
        mlflow=mlflow_experiment,
        force=force,
        out_mode=out_mode,
    )
    if outcome is None:  # a non-zero rank of a distributed run
        return None
    report_skipped(outcome.results)
    if outcome.tracked is not None:
        t = outcome.tracked
        say(f"mlflow: logged run {t.run_id} to experiment {t.experiment!r} at {t.tracking_uri}")
    print_summary(outcome.results, out_dir, fmt=fmt)
    hint = label_mapping_hint(outcome.results, from_folders=outcome.class_names_from_folders)
    if hint is not None:
        say(hint)
    return outcome.exit_code


def run_config(
    config: Path,
    *,
    out_dir: Path,
    seed=None,
    device=None,
    batch_size=None,
    attack_samples=None,
    baseline=None,
    quiet=False,
    mlflow=None,
    force=False,
    out_mode="700",
):
    """Load a config file (with CLI overrides) and run it; None on non-zero ranks.

    ``force`` and ``out_mode`` are ``--force`` and ``--out-mode`` (:mod:`reports.outputs`): --out is
    checked before any image is read.

    ``mlflow`` names an MLflow experiment to log the run to (``--mlflow``). The command owns its
    process, so a config that leaves ``allocator`` unset runs with ``retain`` here (the Python API
    and the pytest plugin leave the allocator alone; :mod:`audit.evaluation.allocator`).
    """
    from audit.contract.config import load_config
    from audit.tracking import require_tracking, with_experiment
    from policies import PolicyGate
    from reports import check_out_dir, parse_mode

    mode = parse_mode(out_mode)

    # The config and the policy are read and validated before torch is imported (seconds): a typo is
    # reported at once. tests/test_cli_imports.py checks that torch is not loaded after such an error.
    cfg = load_config(config, seed=seed, device=device, batch_size=batch_size, attack_samples=attack_samples)
    if mlflow:
        cfg = with_experiment(cfg, mlflow)
    require_tracking(cfg)
    if cfg.allocator is None:
        cfg = cfg.model_copy(update={"allocator": CLI_ALLOCATOR})
    gate = PolicyGate.load(cfg.policy)  # a policy with nothing that can fail: refused before torch is imported
    if os.environ.get("RANK", "0") == "0":  # --out refused in a moment, not after torch loads (the runner checks again)
        check_out_dir(out_dir, force=force)

    from audit.runner import run_audit

    outcome = run_audit(
        cfg,
        config_path=config,
        out_dir=out_dir,
        baseline=baseline,
        progress=_progress_factory(not quiet),
        policy=gate,
        notify=say,
        force=force,
        out_mode=mode,
    )
    return outcome if outcome.results else None


@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("cvaudit-demo"), show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option(
    "--sign/--no-sign", default=True, show_default=True, help="Sign the report with a demo key made in --out."
)
@click.option(
    "--train",
    is_flag=True,
    help="Train the demo model here instead of using the shipped weights (numbers then depend on the CPU).",
)
@click.option(
    "--task",
    type=click.Choice(["classification", "detection"]),
    default="classification",
    show_default=True,
    help="classification: a CNN on scikit-learn's digits; detection: a small detector on generated shape scenes.",
)
@boundary
def demo_command(out_dir: Path, quiet: bool, sign: bool, train: bool, task: str) -> int:
    """Audit a small model trained here on bundled or generated data (nothing is downloaded).

    ``--task classification`` (the default) audits a CNN trained on scikit-learn's digits;
    ``--task detection`` a small detector trained on generated scenes of shapes (docs/detection.md).
    """

    def log(message: str) -> None:
        click.echo(message, err=True)

    from reports import claim_output_folder

    # the demo keeps its workspace/ inside --out: --out must be cvaudit's (or new) before anything is written
    claim_output_folder(out_dir, own=("workspace",))
    if task == "detection":
        from audit.demo_detection import write_detection_demo

        config = write_detection_demo(out_dir / "workspace", sign=sign, train=train, log=log)
    else:
        from audit.demo import prepare_demo

        config = prepare_demo(out_dir / "workspace", sign=sign, train=train, log=log)
    outcome = run_config(config, out_dir=out_dir, quiet=quiet)
    report_skipped(outcome.results)
    print_summary(outcome.results, out_dir)
    return outcome.exit_code
