"""Thumbnails of named samples as the model saw them under a condition (the stressed image).

After the policy has judged, the report names a few misclassified samples per failing condition
and group (:mod:`reports.error_examples`). Where the report may show images, the runner asks
this module for those samples' images: each sample is decoded as in the evaluation
(:class:`~audit.evaluation.data.AuditDataset` with the run's decoding settings) and stressed by the
evaluation's own code path (:func:`audit.evaluation.evaluate.stress`). Stressors draw their
randomness from (seed, stressor, severity, sample id), and attacks key theirs by sample too, so the
image is the one the model was judged on, whatever the batch it came in. Each image is encoded as a
stressor-gallery entry (:func:`audit.evaluation.evaluate.png_data_uri`: the same size, PNG encoding and
pixelation for ``anonymized``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from audit.contract import csvfile
from audit.contract.config import ModelConfig
from audit.evaluation.conditions import Condition
from audit.evaluation.data import AuditDataset, SampleTable, make_loader
from audit.evaluation.evaluate import png_data_uri, stress

__all__ = ["stressed_thumbnails"]


def stressed_thumbnails(
    *,
    model: torch.nn.Module,
    table: SampleTable,
    model_cfg: ModelConfig,
    conditions: Sequence[Condition],
    wanted: Mapping[str, Sequence[str]],
    keys: Tensor,
    seed: int,
    device: torch.device,
    mode: str,
    decoding: Mapping[str, Any] | None = None,
) -> dict[tuple[str, str], str]:
    """The gallery thumbnail of each wanted sample under each wanted condition.

    Args:
        model: The audited model (needed by attack conditions).
        table: The run's samples.
        model_cfg: The model settings (input size, channels, resizing), as in the evaluation.
        conditions: The run's conditions; ``wanted`` names some of them by id.
        wanted: Condition id -> sample ids of ``table``, as the table holds them or as predictions.csv gives
            them back (:func:`audit.contract.csvfile.read_back`); each condition's samples stressed as one batch.
        keys: (N_total,) the sample keys of ``table`` (:func:`audit.evaluation.data.sample_keys_of`).
        seed: The audit seed.
        device: Where the model runs.
        mode: ``anonymized`` or ``raw`` (``report_image_mode``); ``none`` gives nothing.
        decoding: :class:`AuditDataset`'s decoding keywords (``data.max_image_pixels``, ``data.exif``,
            ``data.alpha``), as in the evaluation.

    Returns:
        (condition id, sample id as predictions.csv gives it back) -> a ``data:image/png;base64`` URI. A sample whose image no longer
        decodes is left out.

    Raises:
        KeyError: a sample id that is not in ``table``, or a condition id that is not in ``conditions``.
    """
    if mode == "none":
        return {}
    by_id = {c.id: c for c in conditions}
    out: dict[tuple[str, str], str] = {}
    # ids as predictions.csv gives them back (control characters escaped) -> the table's ids
    raw = {back: sid for sid in map(str, table.ids) if (back := csvfile.read_back(sid)) != sid}
    for cid, sample_ids in wanted.items():
        cond = by_id[cid]
        ids = list(dict.fromkeys(raw.get(str(s), str(s)) for s in sample_ids))
        if not ids:
            continue
        indices = table.indices_of(ids).tolist()
        dataset = AuditDataset(table, model_cfg, indices, **dict(decoding or {}))  # decoded as in the evaluation
        batch = next(iter(make_loader(dataset, batch_size=len(indices), num_workers=0)))
        if batch["images"] is None:
            continue
        index = batch["index"]
        labels = torch.from_numpy(table.labels[index.numpy()]).to(device)
        x = stress(cond, model, batch["images"].to(device), labels, keys[index], seed)
        for row, i in enumerate(index.tolist()):
            out[(cid, csvfile.read_back(str(table.ids[i])))] = png_data_uri(x[row], mode)
    return out
