"""``cvaudit model-card``: a model card (Hugging Face, Model Card Toolkit or Markdown) from a finished run.

Exit codes: 0 written, 2 unusable input (missing or invalid results.json, an
attestation that does not attest it), with one line on stderr.
"""

from __future__ import annotations

from pathlib import Path

import click

from audit.cli.boundary import boundary

__all__ = ["model_card_command"]


@click.command("model-card")
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["huggingface", "mct", "markdown"]),
    default="huggingface",
    show_default=True,
    help="huggingface: README.md with model-index front matter; mct: Model Card Toolkit JSON (schema 0.0.2); "
    "markdown: a plain card.",
)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="File to write.")
@click.option("--name", default=None, help="The model's name in the card (default: the model's folder or file name).")
@boundary
def model_card_command(run_dir: Path, fmt: str, out: Path, name: str | None) -> None:
    """Write the model card of the run in RUN_DIR (its output folder, or its results.json).

    Every number comes from RUN_DIR/results.json. When the run was signed, the card states
    the attestation's digest and key, and the attestation must attest that very results.json.
    """
    from reports import write_model_card

    click.echo(str(write_model_card(run_dir, fmt, out, name=name)))
