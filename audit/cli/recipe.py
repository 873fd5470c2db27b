"""``cvaudit recipe RUN_DIR --out recipe.yaml``: an augmentation mix from where the audited model lost."""

from __future__ import annotations

from pathlib import Path

import click

from audit.cli.boundary import boundary, say


@click.command("recipe")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True, help="The recipe file to write.")
@click.option("--probability", default="0.5", show_default=True, help="Share of training images augmented (0..1].")
@boundary
def recipe_command(run_dir: Path, out_path: Path, probability: str) -> None:
    """Write a training augmentation recipe from RUN_DIR (a cvaudit run folder): stressors weighted by the loss.

    A detection run's recipe weighs by the mAP drop and moves boxes with the pixels (docs/loop.md)."""
    from audit.contract.errors import AuditError
    from audit.loop.recipe import build_recipe, dump_recipe
    from audit.loop.run_folder import open_run
    from reports import atomic_write_text

    try:
        p = float(probability)
    except ValueError:
        raise AuditError(f"--probability {probability!r}: not a number") from None
    if not 0 < p <= 1:
        raise AuditError(f"--probability {p:g}: must lie in (0, 1]")
    run = open_run(run_dir, need_predictions=False)
    recipe = build_recipe(run, probability=p)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_path, dump_recipe(recipe))  # a link at out_path is replaced, never written through
    mix = ", ".join(
        f"{s['name']} {s['severity'][0]}-{s['severity'][1]} ({s['weight']:.2f})" for s in recipe["stressors"]
    )
    boxes = recipe.get("detection")
    if boxes is not None:
        mix += f"; boxes {boxes['bbox_format']}, min_visibility {boxes['min_visibility']:g} ({boxes['min_visibility_from']})"
    say(f"recipe: {mix}; written to {out_path}", err=False)
