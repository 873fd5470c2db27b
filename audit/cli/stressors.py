"""``cvaudit stressors``: list the stressors and what their severities mean; preview them on a photo.

Exceptions become exit code 2 (with one line on stderr) at the command boundary
(:mod:`audit.cli.boundary`); results go to stdout or to the file given with ``--out``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from audit.cli.boundary import boundary
from audit.contract.conditions import format_severity


def describe(name: str) -> dict[str, Any]:
    """A JSON-serialisable description of the stressor ``name`` built with its default options.

    Works for any registered stressor: plugins need not subclass
    :class:`~stressors.base.ImageStressor`, so missing attributes get defaults.
    """
    from stressors import get

    stressor = get(name)
    meaning = getattr(stressor, "severity_meaning", {}) or {}
    options = getattr(stressor, "options", {})
    return {
        "name": name,
        "model_aware": bool(getattr(stressor, "model_aware", False)),
        "severities": [s for s in getattr(stressor, "severities", ())],
        "severity_meaning": {format_severity(k): v for k, v in dict(meaning).items()},
        "devices": getattr(stressor, "devices", "cpu, cuda"),
        "options": options if isinstance(options, dict) else {},
        "description": (type(stressor).__doc__ or "").strip().split("\n")[0],
    }


@click.group("stressors")
def stressors_group() -> None:
    """List the stressors and preview them."""


@stressors_group.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@boundary
def list_command(fmt: str) -> None:
    """Every stressor: its severities, what each means physically, its devices."""
    from stressors import StressorError, available, broken

    entries, failures = [], dict(broken())
    for name in available():
        try:
            entries.append(describe(name))
        except (StressorError, TypeError, ValueError) as exc:
            failures[name] = f"cannot be built with default options: {exc}"
    if fmt == "json":
        click.echo(json.dumps({"stressors": entries, "broken": failures}, indent=2, default=str))
        return
    for entry in entries:
        kind = "model-aware" if entry["model_aware"] else "image"
        levels = ", ".join(format_severity(s) for s in entry["severities"])
        click.echo(f"{entry['name']}  [{kind}; severities {levels}; devices: {entry['devices']}]")
        if entry["description"]:
            click.echo(f"    {entry['description']}")
        for level, text in entry["severity_meaning"].items():
            click.echo(f"    {level:>8}  {text}")
    for name, error in failures.items():
        click.echo(f"{name}  [broken: {error}]")


@stressors_group.command("preview")
@click.argument("image")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("grid.png"),
    show_default=True,
    help="Where to write the PNG grid.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed keying the random draws.")
@click.option(
    "--size", type=click.IntRange(min=8), default=224, show_default=True, help="Shorter side of each tile, in pixels."
)
@click.option("--name", "names", multiple=True, help="Only these stressors (repeatable); default all image stressors.")
@boundary
def preview_command(image: str, out: Path, seed: int, size: int, names: tuple[str, ...]) -> None:
    """Render IMAGE under every stressor and severity into one PNG grid.

    IMAGE is a file path or sample:china / sample:flower (scikit-learn's photographs).
    """
    from stressors import render_preview

    grid = render_preview(image, names=list(names) or None, seed=seed, size=size)
    grid.save(out)
    click.echo(str(out))
