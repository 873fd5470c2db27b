"""``cvaudit queue RUN_DIR --out QUEUE_DIR``: the samples most worth labelling next, governance-checked."""

from __future__ import annotations

from pathlib import Path

import click

from audit.cli.boundary import boundary, say

#: Label Studio's Local Files URL with the document root at QUEUE_DIR (docs/loop.md, "A labelling queue").
DEFAULT_IMAGE_PREFIX = "/data/local-files/?d="


@click.command("queue")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder for the queue (a new or empty folder, or one cvaudit wrote: it holds the .cvaudit-output marker).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Write into a non-empty --out that cvaudit did not make (no .cvaudit-output marker); its files are kept, "
    "and it is refused if one is named like the queue's (queue.csv, tasks.json, labeling_config.xml, summary.json, "
    "images/, variants/). Never a system folder or a symbolic link.",
)
@click.option(
    "--out-mode",
    default="700",
    show_default=True,
    metavar="OCTAL",
    help="Mode of the --out folder; its files get the same bits without execute (700: folder 0700, files 0600). "
    "The queue holds sample images and attribute values (docs/security.md#output-folders).",
)
@click.option("--budget", default="100", show_default=True, help="How many samples to select (at least 1).")
@click.option(
    "--format", "fmt", default="label-studio", show_default=True, help="label-studio (tasks JSON + XML + CSV) or csv."
)
@click.option(
    "--stratify", multiple=True, help="Attribute to share the budget over (repeatable; default: every attribute)."
)
@click.option(
    "--variants", is_flag=True, help="Also write the stressed image at each breaking point, with its parameters."
)
@click.option(
    "--image-prefix",
    default=DEFAULT_IMAGE_PREFIX,
    show_default=True,
    help="URL prefix of images/ in tasks.json (Label Studio's Local Files, document root QUEUE_DIR).",
)
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path),
    default=None,
    help="The run's config (default: the one it recorded).",
)
@click.option("--policy", "policy_name", default=None, help="Judge governance under this policy instead of the run's.")
@boundary
def queue_command(
    run_dir, out_dir, force, out_mode, budget, fmt, stratify, variants, image_prefix, config, policy_name
) -> None:
    """Select from RUN_DIR (a cvaudit run folder) the samples most worth labelling or re-checking next.

    A detection run's queue holds images with missed objects and false positives, as rectangles.
    --out is checked like `cvaudit run --out` before anything is written: a symbolic link, a system
    folder, or a non-empty folder cvaudit did not make (unless --force) is refused (exit 2)."""
    from audit.contract.errors import AuditError
    from audit.loop.queue import FORMATS, QueueSettings, build_queue
    from audit.loop.run_folder import open_run
    from audit.loop.setup import run_config_and_policy
    from reports import parse_mode

    mode = parse_mode(out_mode)

    try:
        amount = int(budget)
    except ValueError:
        raise AuditError(f"--budget {budget!r}: not a whole number") from None
    if amount < 1:
        raise AuditError(f"--budget {amount}: must be at least 1 sample")
    if fmt not in FORMATS:
        raise AuditError(f"--format {fmt!r}: unknown format (expected one of: {', '.join(FORMATS)})")
    run = open_run(run_dir)
    cfg, policy = run_config_and_policy(run, config, policy_name)
    settings = QueueSettings(amount, fmt, tuple(stratify), variants, image_prefix, force=force, out_mode=mode)
    if run.task == "detection":
        from audit.loop.detection_queue import build_detection_queue

        summary = build_detection_queue(run, cfg=cfg, policy=policy, out_dir=out_dir, settings=settings)
    else:
        summary = build_queue(run, cfg=cfg, policy=policy, out_dir=out_dir, settings=settings)
    held = ", ".join(f"{k} {v}" for k, v in summary["held_back_by_check"].items()) or "none"
    say(
        f"queue: {summary['selected']} of {summary['candidates']} candidates selected (budget {amount}); "
        f"{summary['held_back']} held back by governance under policy {summary['policy']} ({held}); "
        f"written to {out_dir}",
        err=False,
    )
    if fmt == "label-studio" and image_prefix == DEFAULT_IMAGE_PREFIX:
        root = out_dir.resolve()
        say(
            "label studio: start it with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and "
            f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={root}; in the project, add a Local files source storage with "
            f"the absolute path {root / 'images'} (without it every image is a 404), then import tasks.json "
            "(docs/loop.md, 'A labelling queue')"
        )
