"""Model cards from a finished run: Hugging Face ``README.md``, Model Card Toolkit JSON, plain Markdown.

``cvaudit model-card RUN_DIR --format huggingface|mct|markdown --out FILE``
(:mod:`audit.cli.model_card`) calls :func:`write_model_card`. The numbers of
every format come from one place: :func:`reports.model_card.facts.read_run`
reads results.json through the contract's one reader and, for a signed run,
the attestation (which must attest exactly that results.json).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reports.atomic import atomic_write_text
from reports.model_card.facts import CardFacts, ModelCardError, read_run
from reports.model_card.huggingface import render_huggingface
from reports.model_card.markdown import render_markdown
from reports.model_card.mct import render_mct

__all__ = ["FORMATS", "ModelCardError", "render_model_card", "write_model_card"]

#: format -> renderer of the card's text.
FORMATS: dict[str, Callable[[CardFacts], str]] = {
    "huggingface": render_huggingface,
    "mct": render_mct,
    "markdown": render_markdown,
}


def render_model_card(facts: CardFacts, fmt: str) -> str:
    """The card's text in ``fmt`` (a key of :data:`FORMATS`).

    Raises:
        ModelCardError: an unknown format.
    """
    if fmt not in FORMATS:
        raise ModelCardError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return FORMATS[fmt](facts)


def write_model_card(run: str | Path, fmt: str, out: str | Path, *, name: str | None = None) -> Path:
    """Read a run folder and write its model card atomically.

    Args:
        run: The run's output folder (or its results.json).
        fmt: ``huggingface``, ``mct`` or ``markdown``.
        out: The file to write (its folder is created).
        name: The model's name in the card (default: from the model's path).

    Returns:
        The path written.

    Raises:
        ResultsError: results.json missing or invalid.
        ModelCardError: unknown format, unfinished results, an attestation that does not match.
    """
    if fmt not in FORMATS:
        raise ModelCardError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    text = render_model_card(read_run(run, name=name), fmt)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, text)
