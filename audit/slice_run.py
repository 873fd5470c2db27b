"""``slices.search: on`` inside a run: the slice search over the run's own per-sample files, its examples and
slices.csv.

The search is the one of ``cvaudit slices`` (:mod:`audit.evaluation.slices`; docs/slices.md), fed by
:func:`audit.evaluation.search_table` with the staged clean predictions and image properties (no image is read
again). This module turns its result into results.json ``slice_search``, marks the findings that name a protected
attribute (config ``slices.protected``; default every ``data.attributes`` column, as ``cvaudit slices``) as
fairness findings, adds up to :data:`EXAMPLES` misclassified samples of each found slice as thumbnails of the clean
image when ``report.images`` allows, and writes ``slices.csv`` (the same file ``cvaudit slices`` writes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from audit.contract.slices import SliceDefinition, slice_id

__all__ = ["EXAMPLES", "run_search"]

#: Misclassified samples shown per found slice.
EXAMPLES = 3


def run_search(ctx: Any, table: Any, stage: Path, *, reading: Any, loaded: Any) -> dict[str, Any]:
    """Search the run's clean predictions and image properties; write ``stage/slices.csv`` atomically.

    Returns:
        results.json ``slice_search`` (:class:`audit.contract.results.SliceSearchResult`) as plain data.
    """
    from audit.evaluation import SLICES_CSV, SearchSettings, search_table, slices_csv_text
    from reports.atomic import atomic_write_bytes

    cfg = ctx.cfg.slices
    settings = SearchSettings(
        depth=cfg.depth, tolerance=cfg.tolerance, min_size=cfg.min_size, alpha=cfg.alpha, seed=ctx.cfg.seed
    )
    found = search_table(
        table,
        metric=cfg.metric,
        settings=settings,
        attributes=list(reading.table.attributes),
        protected=cfg.protected,
    )
    atomic_write_bytes(stage / SLICES_CSV, slices_csv_text(found).encode("utf-8"))
    protected = set(found.protected)
    findings = []
    for f in found.result.findings:
        definition: SliceDefinition = f.definition
        findings.append(
            {
                "id": slice_id(definition),
                "text": definition.text(),
                "definition": {"all": [p.model_dump(exclude_none=True) for p in definition.all]},
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
    _add_examples(ctx, findings, found.result.findings, table, reading=reading, loaded=loaded)
    return {
        "metric": cfg.metric,
        "condition": cfg.condition,
        "depth": cfg.depth,
        "tolerance": cfg.tolerance,
        "min_size": cfg.min_size,
        "alpha": cfg.alpha,
        "attributes": list(found.table.attributes),
        "candidates": int(found.result.candidates),
        "findings": findings,
    }


def _add_examples(
    ctx: Any, findings: list[dict[str, Any]], found: list[Any], table: Any, *, reading: Any, loaded: Any
) -> None:
    """Up to :data:`EXAMPLES` misclassified samples of each finding (first in dataset order), as the gallery shows
    images (``report.images``: none adds nothing)."""
    mode = reading.gallery_mode
    if mode == "none" or not findings:
        return
    from audit.contract.slices import select
    from audit.evaluation import stressed_thumbnails

    wanted: list[str] = []
    chosen: list[list[str]] = []
    for f in found:
        mask = select(f.definition, table.columns) & ~table.correct
        ids = [table.ids[k] for k in np.flatnonzero(mask)[:EXAMPLES]]
        chosen.append(ids)
        wanted += [i for i in ids if i not in wanted]
    if not wanted:
        return
    images = stressed_thumbnails(
        model=loaded.model,
        table=reading.table,
        model_cfg=ctx.cfg.model,
        conditions=[c for c in reading.conditions if c.id == ctx.cfg.slices.condition],
        wanted={ctx.cfg.slices.condition: wanted},
        keys=reading.keys,
        seed=ctx.cfg.seed,
        device=loaded.device,
        mode=mode,
        decoding=ctx.decoding,
    )
    cond = ctx.cfg.slices.condition
    for f, ids in zip(findings, chosen):
        f["examples"] = [{"sample_id": i, "image": images[(cond, i)]} for i in ids if (cond, i) in images]
