"""``cvaudit run`` and ``cvaudit demo``: run an audit and print its summary."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from audit.cli.boundary import boundary
from audit.contract.text import neutralise


def _progress_factory(enabled: bool) -> Callable[[int, str], Callable[[int], None]] | None:
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)

    def factory(total: int, label: str) -> Callable[[int], None]:
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        progress.start()
        task = progress.add_task(label, total=total)
        done = [0]

        def tick(n: int) -> None:
            done[0] += n
            progress.update(task, advance=n)
            if done[0] >= total:
                progress.stop()

        return tick

    return factory


def _plain(text: str):
    """A user's string for the terminal: control characters escaped, never read as rich markup."""
    from rich.text import Text

    return Text(neutralise(str(text)))


def print_summary(results: dict[str, Any], out_dir: Path, *, fmt: str = "text") -> None:
    """A short summary table on stdout (or the verdict and paths as JSON)."""
    policy = results["policy"]
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "verdict": policy["verdict"],
                    "out": str(out_dir),
                    "rules": [
                        {k: r.get(k) for k in ("id", "status", "blocking", "observed", "threshold")}
                        for r in policy["rules"]
                    ],
                },
                indent=2,
            )
        )
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120)
    table = Table(title="cvaudit: accuracy per condition")
    for col in ("condition", "n", "accuracy", "95% CI", "ECE", "worst group (gap)"):
        table.add_column(col, justify="right" if col not in ("condition", "worst group (gap)") else "left")
    gaps: dict[str, Any] = {}
    for f in results.get("fairness", []):
        if f.get("accuracy_gap") is not None and (
            f["condition"] not in gaps or f["accuracy_gap"] > gaps[f["condition"]]["accuracy_gap"]
        ):
            gaps[f["condition"]] = f
    for c in results["conditions"]:
        m = c["metrics"]
        ci = m.get("accuracy_ci")
        g = gaps.get(c["id"])
        table.add_row(
            _plain(c["id"]),
            str(m["n"]),
            "-" if m.get("accuracy") is None else f"{m['accuracy']:.3f}",
            "-" if not ci or ci[0] is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]",
            "-" if m.get("ece") is None else f"{m['ece']:.3f}",
            "" if g is None else _plain(f"{g['attribute']}={g['worst_group']} ({g['accuracy_gap']:.3f})"),
        )
    console.print(table)
    counts: dict[str, int] = {}
    for r in policy["rules"]:
        key = r["status"] if not (r["status"] == "fail" and not r.get("blocking")) else "warn"
        counts[key] = counts.get(key, 0) + 1
    findings = [f for f in results.get("governance", {}).get("findings", []) if f.get("status") != "pass"]
    colour = "green" if policy["verdict"] == "pass" else "red"
    console.print(
        f"verdict: [bold {colour}]{policy['verdict'].upper()}[/] (policy {escape(neutralise(str(policy['name'])))}; "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        + f"; {len(findings)} governance finding(s))"
    )
    report = out_dir / "report.html"
    console.print(_plain(f"report: {report if report.exists() else out_dir}"))


@click.command("run")
@click.argument("config", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("cvaudit-out"),
    show_default=True,
    help="Output folder.",
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
@click.option("--quiet", is_flag=True, help="No progress bars.")
@boundary
def run_command(config: Path, out_dir: Path, seed, device, batch_size, attack_samples, baseline, fmt, quiet) -> None:
    """Run the audit described by CONFIG (a config.yaml) and write every output into --out."""
    outcome = run_config(
        config,
        out_dir=out_dir,
        seed=seed,
        device=device,
        batch_size=batch_size,
        attack_samples=attack_samples,
        baseline=baseline,
        quiet=quiet,
    )
    if outcome is None:  # a non-zero rank of a distributed run
        return
    print_summary(outcome.results, out_dir, fmt=fmt)
    sys.exit(outcome.exit_code)


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
):
    """Load a config file (with CLI overrides) and run it; None on non-zero ranks."""
    from audit.contract.config import load_config
    from audit.runner import run_audit

    cfg = load_config(config, seed=seed, device=device, batch_size=batch_size, attack_samples=attack_samples)
    outcome = run_audit(
        cfg, config_path=config, out_dir=out_dir, baseline=baseline, progress=_progress_factory(not quiet)
    )
    return outcome if outcome.results else None


@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("cvaudit-demo"), show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option(
    "--sign/--no-sign", default=True, show_default=True, help="Sign the report with a demo key made in --out."
)
@boundary
def demo_command(out_dir: Path, quiet: bool, sign: bool) -> None:
    """Train a small CNN on scikit-learn's digits and audit it (nothing is downloaded)."""
    from audit.demo import prepare_demo

    config = prepare_demo(out_dir / "workspace", sign=sign, log=lambda m: click.echo(m, err=True))
    outcome = run_config(config, out_dir=out_dir, quiet=quiet)
    print_summary(outcome.results, out_dir)
    sys.exit(outcome.exit_code)
