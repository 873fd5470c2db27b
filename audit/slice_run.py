"""``slices.search: on`` inside a run: the slice search over the run's own per-sample files, its examples and
slices.csv.

The search itself is :mod:`audit.evaluation.slices` (``search``, ``columns_from_table``, ``SEARCH_METRICS``,
``SearchSettings``, ``write_slices_csv``; docs/slices.md). This module only feeds it the clean predictions joined with
the image properties (:func:`audit.evaluation.slice_watch.search_inputs`), marks the findings that name a protected
attribute (config ``slices.protected``) as fairness findings, adds up to :data:`EXAMPLES` misclassified samples
of each found slice as thumbnails of the clean image when ``report.images`` allows, and writes ``slices.csv``.
:func:`check_search_available` refuses ``search: on`` before any data are read when the search is not installed.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from audit.contract.errors import AuditError
from audit.contract.slices import SliceDefinition, slice_id

__all__ = ["EXAMPLES", "SLICES_CSV", "check_search_available", "run_search"]

#: Misclassified samples shown per found slice.
EXAMPLES = 3
#: The run folder's file of found slices.
SLICES_CSV = "slices.csv"

_NEEDED = ("search", "columns_from_table", "SEARCH_METRICS", "SearchSettings", "write_slices_csv")


def _search_module() -> Any:
    try:
        module = importlib.import_module("audit.evaluation.slices")
    except ImportError:
        module = None
    missing = [name for name in _NEEDED if module is None or not hasattr(module, name)]
    if missing:
        raise AuditError(
            "slices.search: on needs the slice search (audit.evaluation.slices), which this installation lacks "
            f"({missing[0]}); set slices.search: off"
        )
    return module


def check_search_available() -> None:
    """Raise :class:`AuditError` (exit 2, before any image) when ``slices.search: on`` cannot run here."""
    _search_module()


def run_search(ctx: Any, table: Any, stage: Path, *, reading: Any, loaded: Any) -> dict[str, Any]:
    """Search the run's clean predictions and image properties; write ``stage/slices.csv``.

    Returns:
        results.json ``slice_search`` (:class:`audit.contract.results.SliceSearchResult`) as plain data.
    """
    from audit.evaluation import search_inputs

    module = _search_module()
    cfg = ctx.cfg.slices
    settings = module.SearchSettings(
        depth=cfg.depth, tolerance=cfg.tolerance, min_size=cfg.min_size, alpha=cfg.alpha, seed=ctx.cfg.seed
    )
    columns, numeric, bad = search_inputs(table, cfg.metric)
    result = module.search(
        module.columns_from_table(columns, numeric, settings), bad, module.SEARCH_METRICS[cfg.metric], settings
    )
    module.write_slices_csv(result, stage / SLICES_CSV)
    protected = set(cfg.protected)
    findings = []
    for f in result.findings:
        definition = SliceDefinition.model_validate(f.definition.model_dump(exclude_none=True))
        findings.append(
            {
                "id": slice_id(definition),
                "text": definition.text(),
                "definition": definition.canonical(),
                "n": int(f.n),
                "value": float(f.value),
                "interval": f.interval,
                "rest_value": float(f.rest_value),
                "rest_interval": f.rest_interval,
                "effect": float(f.effect),
                "p_value": float(f.p_value),
                "fairness": bool(protected & set(definition.attributes)),
                "examples": [],
            }
        )
    _add_examples(ctx, findings, table, reading=reading, loaded=loaded)
    return {
        "metric": cfg.metric,
        "depth": cfg.depth,
        "tolerance": cfg.tolerance,
        "min_size": cfg.min_size,
        "alpha": cfg.alpha,
        "attributes": list(columns),
        "candidates": int(result.candidates),
        "findings": findings,
    }


def _add_examples(ctx: Any, findings: list[dict[str, Any]], table: Any, *, reading: Any, loaded: Any) -> None:
    """Up to :data:`EXAMPLES` misclassified samples of each finding (first in dataset order), as the gallery shows
    images (``report.images``: none adds nothing)."""
    mode = reading.gallery_mode
    if mode == "none" or not findings:
        return
    from audit.contract.slices import select
    from audit.evaluation import stressed_thumbnails

    wanted: list[str] = []
    chosen: list[list[str]] = []
    for f in findings:
        mask = select(SliceDefinition.model_validate(f["definition"]), table.columns) & ~table.correct
        ids = [table.ids[k] for k in np.flatnonzero(mask)[:EXAMPLES]]
        chosen.append(ids)
        wanted += [i for i in ids if i not in wanted]
    clean = [c for c in reading.conditions if c.stressor is None]
    images = stressed_thumbnails(
        model=loaded.model,
        table=reading.table,
        model_cfg=ctx.cfg.model,
        conditions=clean,
        wanted={"clean": wanted},
        keys=reading.keys,
        seed=ctx.cfg.seed,
        device=loaded.device,
        mode=mode,
        decoding=ctx.decoding,
    )
    for f, ids in zip(findings, chosen):
        f["examples"] = [{"sample_id": i, "image": images[("clean", i)]} for i in ids if ("clean", i) in images]
