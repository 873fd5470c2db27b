"""Fitted attacks (trait ``needs_fit``: the universal perturbation, the adversarial patch) are fitted here,
once, before the streaming evaluation pass.

The fit streams the samples that attack conditions evaluate (the attack subset when
``evaluation.attack_samples`` is set, else every sample) from a fresh loader once per epoch,
in dataset order, until both of the stressor's two cross-fitting folds hold ``fit_samples``
(:mod:`stressors.attacks.physical`). An image that does not decode stops the run with the evaluation's
line under ``data.on_bad_image: error``; under ``skip`` it is left out of the fit (the evaluation pass
reports it as usual). Fitted attacks are refused in a distributed run
(:func:`check_fitted_attacks`): each rank would fit on its own shard only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from audit.contract.config import ModelConfig
from audit.contract.errors import AuditError
from audit.evaluation.conditions import Condition
from audit.evaluation.data import AuditDataset, SampleTable, make_loader
from audit.evaluation.evaluate import bad_image_error
from stressors.base import StressorError


def fitted_stressors(conditions: Sequence[Condition]) -> list[tuple[str, Any]]:
    """(label, stressor) of every distinct fitted attack among ``conditions``, in config order."""
    out: list[tuple[str, Any]] = []
    for cond in conditions:
        fitted = cond.stressor is not None and getattr(cond.stressor, "needs_fit", False)
        if fitted and all(s is not cond.stressor for _, s in out):
            out.append((str(cond.label), cond.stressor))
    return out


def check_fitted_attacks(
    conditions: Sequence[Condition], *, world: int, source: str = "config", input_size: Sequence[int] | None = None
) -> None:
    """Refuse fitted attacks in a distributed run (``torchrun`` / ``--nproc-per-node``), and a patch that does not
    fit inside the model's ``input_size`` ([H, W]) at its largest scale and rotation, before any image.

    Raises:
        AuditError: one line naming the first fitted attack.
    """
    fitted = fitted_stressors(conditions)
    if input_size is not None:
        for label, stressor in fitted:
            if hasattr(stressor, "check_image_size"):
                try:
                    stressor.check_image_size(int(input_size[0]), int(input_size[1]))
                except StressorError as err:
                    raise AuditError(f"{source}: stressor {label!r}: {err} (model.input_size)") from None
    if fitted and world > 1:
        raise AuditError(
            f"{source}: stressor {fitted[0][0]!r} is a fitted attack (cross-fitted over the whole audit set); "
            f"it does not run in a distributed run ({world} processes): run it with one process"
        )


def fit_attacks(
    *,
    model: Any,
    table: SampleTable,
    model_cfg: ModelConfig,
    conditions: Sequence[Condition],
    keys: Tensor,
    indices: Sequence[int] | None,
    seed: int,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    decoding: Mapping[str, Any] | None = None,
    on_bad_image: str = "error",
    progress: Callable[[int, str], Callable[..., None]] | None = None,
) -> None:
    """Fit every fitted attack of ``conditions`` on the samples ``indices`` (None: all), in dataset order.

    ``progress(total, label)`` (the run's progress factory) makes a bar advanced by the images of every batch
    of every epoch; None: none. ``on_bad_image`` (``data.on_bad_image``): ``error`` raises on the first image
    that does not decode, with the line the evaluation pass would give; ``skip`` leaves it out of the fit.

    Raises:
        AuditError: a bad image under ``on_bad_image: error`` (naming the file and sample), or the fit is
            refused (e.g. a cross-fitting fold without samples), naming the stressor.
    """
    fitted = fitted_stressors(conditions)
    if not fitted:
        return
    order = sorted(range(len(table)) if indices is None else set(indices))
    dataset = AuditDataset(table, model_cfg, order, **dict(decoding or {}))
    order_keys = keys[torch.as_tensor(order, dtype=torch.int64)]
    total = 0
    for _, s in fitted:  # each epoch reads up to the loader batch that fills both folds
        reads = s.fit_reads(order_keys, seed) if hasattr(s, "fit_reads") else len(order)
        total += int(getattr(s, "epochs", 1)) * min(len(order), -(-reads // batch_size) * batch_size)
    tick = progress(total, "fitting " + ", ".join(label for label, _ in fitted)) if progress else None

    def batches() -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        for raw in make_loader(dataset, batch_size=batch_size, num_workers=num_workers):
            if tick is not None:
                tick(len(raw["index"]) + len(raw["bad"]))
            if on_bad_image == "error" and raw["bad"]:
                raise bad_image_error(table, *raw["bad"][0])
            if raw["images"] is None:
                continue
            idx = raw["index"]
            labels = torch.from_numpy(table.labels[idx.numpy()]).to(device)
            yield raw["images"].to(device), labels, keys[idx]

    for label, stressor in fitted:
        try:
            stressor.fit(model, batches, seed=seed)
        except StressorError as err:
            raise AuditError(f"stressor {label!r}: {err}") from None


__all__ = ["check_fitted_attacks", "fit_attacks", "fitted_stressors"]
