"""The streaming evaluation loop: batches -> stressors -> model -> mergeable statistics.

One pass over the data. For every batch and every condition the stressed
batch is built on the model's device, the model runs, the probabilities are
checked, and the per-condition :class:`audit.evaluation.metrics.AuditStats` are updated.
The bookkeeping of a batch (its bootstrap weights, drawn once and shared by every condition,
the statistics updates and the predictions rows) runs in order in a second thread
(:mod:`audit.evaluation.ordered_jobs`) while the next batch is stressed and evaluated; the
statistics and the predictions file are read only after it has caught up.
Per-sample rows go to the predictions file batch by batch. Nothing here
holds a per-sample list of the whole dataset.

With ``evaluation.early_stop`` the dataset comes in a stratified random order and a
:class:`~audit.evaluation.early_stop.StopMonitor` stops conditions whose blocking rules
are decided (see :mod:`audit.evaluation.early_stop`); the loop ends when all have stopped,
and the predictions rows are put back in dataset order.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from audit.contract import csvfile
from audit.contract.conditions import format_severity
from audit.contract.errors import AuditError
from audit.evaluation.bootstrap import poisson_weights
from audit.evaluation.conditions import Condition
from audit.evaluation.data import AuditDataset, SampleTable, make_loader
from audit.evaluation.early_stop import StopMonitor, sort_rows
from audit.evaluation.image_properties import PropertyRecorder
from audit.evaluation.metrics import AuditStats, BootstrapWeights
from audit.evaluation.model import AuditModel
from audit.evaluation.ordered_jobs import OrderedJobs
from audit.evaluation.predictions import LINE_END

#: progress(images_done, condition=None): advance by the images of a batch; name the condition being evaluated.
Progress = Callable[..., None]


@dataclass
class EvalSettings:
    seed: int
    batch_size: int
    num_workers: int
    num_classes: int
    n_bootstrap: int
    top_k: int | None
    on_bad_image: str
    gallery_mode: str = "none"  # none | anonymized | raw
    attack_indices: set[int] | None = None  # None: attack every sample
    interval: str = "wilson"  # evaluation.interval
    monitor: StopMonitor | None = None  # evaluation.early_stop


@dataclass
class EvalState:
    stats: dict[str, AuditStats]
    skipped: list[dict[str, str]] = field(default_factory=list)
    gallery: dict[str, str] = field(default_factory=dict)
    attack_failures: dict[str, int] = field(default_factory=dict)
    attack_details: dict[str, dict] = field(default_factory=dict)
    physical: dict[str, dict] = field(default_factory=dict)  # fitted attacks: samples, changed predictions, images
    early_stop: dict[str, dict] = field(default_factory=dict)


#: Statistics key of the clean images restricted to the attack subset (not a condition of its own).
SUBSET_CLEAN = "clean@attack-subset"


def png_data_uri(image: Tensor, mode: str) -> str:
    """One image as a gallery thumbnail: a PNG data URI, pixelated for ``anonymized``, a small image enlarged by a whole factor towards 128 px.

    Shape:
        image: (C, H, W) in [0, 1].
    """
    arr = (image.detach().float().clamp(0, 1).cpu() * 255).round().to(torch.uint8)
    arr = arr.permute(1, 2, 0).numpy()
    img = Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr)
    if mode == "anonymized":  # heavy pixelation: 8 blocks across the shorter side
        w, h = img.size
        block = max(1, min(w, h) // 8)
        small = img.resize((max(1, w // block), max(1, h // block)), Image.Resampling.BOX)
        img = small.resize((w, h), Image.Resampling.NEAREST)
    scale = max(1, 128 // max(img.size))
    if scale > 1:
        img = img.resize((img.size[0] * scale, img.size[1] * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def merge_attack_details(total: dict | None, batch: dict, n: int) -> dict:
    """Add one batch's ``last_details`` of an attack (samples ``n``) to the condition's running total.

    Counts and seconds add up (members matched by position and name), ``randomised_model`` is
    true if any batch was, ``eot_samples`` is the largest used. Pure: neither input is changed.
    """
    members = [{**m} for m in batch["members"]]
    if total is None:
        return {
            "n": n,
            "randomised_model": bool(batch["randomised_model"]),
            "eot_samples": int(batch["eot_samples"]),
            "zero_gradient_samples": int(batch["zero_gradient_samples"]),
            "members": members,
        }
    if [m["member"] for m in total["members"]] != [m["member"] for m in members]:
        raise AuditError("attack details: the members of one condition changed between batches (a bug)")
    merged = [
        {
            **a,
            "attacked": a["attacked"] + b["attacked"],
            "robust": a["robust"] + b["robust"],
            "seconds": a["seconds"] + b["seconds"],
        }
        for a, b in zip(total["members"], members)
    ]
    return {
        "n": total["n"] + n,
        "randomised_model": total["randomised_model"] or bool(batch["randomised_model"]),
        "eot_samples": max(total["eot_samples"], int(batch["eot_samples"])),
        "zero_gradient_samples": total["zero_gradient_samples"] + int(batch["zero_gradient_samples"]),
        "members": merged,
    }


def stress(cond: Condition, model: AuditModel, images: Tensor, labels: Tensor, keys: Tensor, seed: int) -> Tensor:
    """The batch as the model sees it under ``cond``: clean, stressed or attacked (per-sample keyed randomness).

    Shape:
        images: (N, C, H, W) on the model's device; labels, keys: (N,). Returns (N, C, H, W).
    """
    if cond.stressor is None:
        return images
    if cond.model_aware:
        with torch.enable_grad():
            return cond.stressor.perturb(model, images, labels, severity=cond.severity, sample_ids=keys, seed=seed)
    params = cond.stressor.sample_params(keys, cond.severity, seed=seed)
    return cond.stressor.apply(images, params)


def _probabilities(model: AuditModel, images: Tensor, *, num_classes: int) -> Tensor:
    with torch.no_grad():
        logits = model(images)
    if logits.shape[1] != num_classes:
        raise AuditError(
            f"model output has {logits.shape[1]} columns but the audit has {num_classes} classes "
            "(model.class_names or the labels)"
        )
    bad = ~torch.isfinite(logits).all(dim=1)
    if bad.any():
        raise AuditError(f"model output: {int(bad.sum())} rows contain NaN or inf")
    return torch.softmax(logits.double(), dim=1)


def evaluate(
    *,
    model: AuditModel,
    table: SampleTable,
    dataset: AuditDataset,
    conditions: list[Condition],
    slots: Tensor,
    keys: Tensor,
    num_slots: int,
    settings: EvalSettings,
    device: torch.device,
    predictions_path: Path,
    progress: Progress | None = None,
    properties_path: Path | None = None,
) -> EvalState:
    """Run every condition over the dataset once, streaming.

    Args:
        slots: (N_total, G+1) slot index of every sample of ``table``.
        keys: (N_total,) stable per-sample keys.
        predictions_path: where this process writes its predictions rows (CSV with
            a leading ``_index`` column so shards can be merged in dataset order).
        properties_path: where this process writes the image properties of its decoded samples
            (:mod:`audit.evaluation.image_properties`, computed on the clean batch as it is read;
            ``_index`` first, sorted by it); None: none are computed.

    Raises:
        AuditError: bad image (unless skipping), label out of range, bad model output.
    """

    def new_stats() -> AuditStats:
        return AuditStats(
            num_classes=settings.num_classes,
            num_slots=num_slots,
            n_bootstrap=settings.n_bootstrap,
            seed=settings.seed,
            top_k=settings.top_k,
            interval=settings.interval,
        )

    state = EvalState(stats={c.id: new_stats() for c in conditions})
    subset_clean = settings.attack_indices is not None and any(c.model_aware for c in conditions)
    if subset_clean:  # the clean reference of attacks run on a subset (like-for-like drops)
        state.stats[SUBSET_CLEAN] = new_stats()
    attr_names = list(table.attributes)
    monitor = settings.monitor
    loader = make_loader(dataset, batch_size=settings.batch_size, num_workers=settings.num_workers)
    done = 0
    recorder = PropertyRecorder() if properties_path is not None else None
    with open(predictions_path, "w", newline="", encoding="utf-8") as fh, OrderedJobs() as jobs:
        writer = csvfile.writer(fh, lineterminator=LINE_END)
        for raw in loader:
            _record_bad_images(raw["bad"], table, settings, state)
            if raw["images"] is not None:
                batch = _Batch.build(raw, table, keys, slots, settings, device)
                if recorder is not None:
                    recorder.add(batch.index, batch.images, raw["sizes"])
                pending: list[_Update] = []
                rows: list[_Rows] = []
                for order, cond in enumerate(conditions):
                    if monitor is not None and not monitor.active(cond.id):
                        continue
                    part = batch.attack_part() if cond.model_aware else batch
                    if part is None:
                        continue
                    if progress:
                        progress(0, cond.id)
                    x = stress(cond, model, part.images, part.labels_dev, part.keys, settings.seed)
                    probs = _probabilities(model, x, num_classes=settings.num_classes).cpu()
                    pending.append(
                        _Update(state.stats[cond.id], probs, part.labels, part.slots, part.keys, part.subset)
                    )
                    if cond.stressor is None and subset_clean and batch.in_subset.any():
                        m = batch.in_subset
                        pending.append(
                            _Update(state.stats[SUBSET_CLEAN], probs[m], part.labels[m], part.slots[m], part.keys[m], m)
                        )
                    failed = getattr(cond.stressor, "last_failed_starts", None) if cond.model_aware else None
                    if failed is not None:
                        state.attack_failures[cond.id] = state.attack_failures.get(cond.id, 0) + int(failed.sum())
                    details = getattr(cond.stressor, "last_details", None) if cond.model_aware else None
                    if details is not None:
                        state.attack_details[cond.id] = merge_attack_details(
                            state.attack_details.get(cond.id), details, len(part.keys)
                        )
                    changed = getattr(cond.stressor, "last_changed", None) if cond.model_aware else None
                    if changed is not None:
                        _count_changed(state, cond, changed, settings.gallery_mode)
                    if settings.gallery_mode != "none" and cond.id not in state.gallery:
                        state.gallery[cond.id] = png_data_uri(x[0], settings.gallery_mode)
                    rows.append(_Rows(order, cond, part.index, part.labels, probs))
                jobs.submit(
                    partial(_bookkeeping, pending, rows, batch.keys, settings, writer, table=table, attrs=attr_names)
                )
            if progress:
                progress(len(raw["index"]) + len(raw["bad"]))
            done += len(raw["index"]) + len(raw["bad"])
            if monitor is not None:
                jobs.drain()
                monitor.after_batch(state.stats)
                if monitor.all_stopped():
                    break
        jobs.drain()
    if recorder is not None and properties_path is not None:
        recorder.write(properties_path, table.ids)
    if monitor is not None:
        if progress and done < len(dataset):
            progress(len(dataset) - done, "stopped early")
        for cond in conditions:
            state.early_stop[cond.id] = monitor.summary(cond.id, int(state.stats[cond.id].confusion[0].sum()))
        order = {c.id: i for i, c in enumerate(conditions)}
        sort_rows(predictions_path, key=lambda row: (int(row[0]), order[row[2]]))
    return state


def _count_changed(state: EvalState, cond: Condition, changed: Tensor, gallery_mode: str) -> None:
    """A fitted attack's batch: add its samples and changed predictions (the fooling rate); on its first batch,
    its fitted perturbations as PNG data URIs when the policy allows images."""
    entry = state.physical.get(cond.id)
    if entry is None:
        images = None
        if gallery_mode != "none" and hasattr(cond.stressor, "artefacts"):
            images = [png_data_uri(t, gallery_mode) for t in cond.stressor.artefacts(cond.severity)]
        entry = state.physical[cond.id] = {"n": 0, "changed": 0, "images": images}
    entry["n"] += int(changed.numel())
    entry["changed"] += int(changed.sum())


def bad_image_error(table: SampleTable, index: int, reason: str) -> AuditError:
    """The one line of an image that does not decode under ``on_bad_image: error``: file, sample, reason."""
    where = table.paths[index] if table.paths is not None else f"{table.source}[{index}]"
    return AuditError(f"{where}: sample {table.ids[index]}: {reason}")


def _record_bad_images(
    bad: list[tuple[int, str]], table: SampleTable, settings: EvalSettings, state: EvalState
) -> None:
    """Fail on the first undecodable image, or count it as skipped (``on_bad_image``)."""
    for index, reason in bad:
        if settings.on_bad_image == "error":
            raise bad_image_error(table, index, reason)
        state.skipped.append({"sample": table.ids[index], "reason": reason})


@dataclass(frozen=True)
class _Batch:
    """One decoded batch with everything a condition needs (images and labels on the device)."""

    index: Tensor
    images: Tensor
    labels: Tensor
    labels_dev: Tensor
    keys: Tensor
    slots: Tensor
    in_subset: Tensor | None  # attack subset mask, when attacks run on a subset
    subset: Tensor | None = None  # of an attack part: its rows of the whole batch (a mask)

    @classmethod
    def build(
        cls,
        raw: dict[str, Any],
        table: SampleTable,
        keys: Tensor,
        slots: Tensor,
        settings: EvalSettings,
        device: torch.device,
    ) -> _Batch:
        idx = raw["index"]
        labels = torch.from_numpy(table.labels[idx.numpy()])
        out_of_range = (labels < 0) | (labels >= settings.num_classes)
        if out_of_range.any():
            i = int(idx[out_of_range.nonzero()[0, 0]])
            raise AuditError(
                f"{table.source}: sample {table.ids[i]}: label {table.labels[i]} is outside the model's "
                f"{settings.num_classes} classes (0..{settings.num_classes - 1})"
            )
        in_subset = None
        if settings.attack_indices is not None:
            in_subset = torch.tensor([i in settings.attack_indices for i in idx.tolist()], dtype=torch.bool)
        return cls(idx, raw["images"].to(device), labels, labels.to(device), keys[idx], slots[idx], in_subset)

    def attack_part(self) -> _Batch | None:
        """The samples to attack: the whole batch, its attack-subset part, or None if empty."""
        if self.in_subset is None:
            return self
        if not self.in_subset.any():
            return None
        m, m_dev = self.in_subset, self.in_subset.to(self.images.device)
        return _Batch(
            self.index[m],
            self.images[m_dev],
            self.labels[m],
            self.labels_dev[m_dev],
            self.keys[m],
            self.slots[m],
            None,
            m,
        )


@dataclass(frozen=True)
class _Update:
    """One statistics update: these rows of a batch into ``stats`` (``subset``: their mask in the batch, None: all)."""

    stats: AuditStats
    probs: Tensor
    labels: Tensor
    slots: Tensor
    keys: Tensor
    subset: Tensor | None


@dataclass(frozen=True)
class _Rows:
    """The predictions rows of one condition of a batch (``order``: the condition's place in the run)."""

    order: int
    cond: Condition
    index: Tensor
    labels: Tensor
    probs: Tensor


def _bookkeeping(
    updates: list[_Update],
    rows: list[_Rows],
    batch_keys: Tensor,
    settings: EvalSettings,
    writer: Any,
    *,
    table: SampleTable,
    attrs: list[str],
) -> None:
    """One batch's statistics updates (its bootstrap weights drawn once, shared) and predictions rows."""
    weights = (
        BootstrapWeights.of(poisson_weights(batch_keys, settings.n_bootstrap, seed=settings.seed))
        if settings.n_bootstrap
        else None
    )
    for u in updates:
        w = None if weights is None else weights if u.subset is None else weights.rows(u.subset)
        u.stats.update(u.probs, u.labels, u.slots, u.keys, w)
    keyed = [row for r in rows for row in _rows(r.order, r.cond, r.index, r.labels, r.probs, table, attrs)]
    keyed.sort(key=lambda r: (r[0], r[1]))
    writer.writerows(r[2] for r in keyed)


def _rows(
    order: int, cond: Condition, idx: Tensor, labels: Tensor, probs: Tensor, table: SampleTable, attrs: list[str]
):
    """Predictions rows of one condition, keyed (sample index, condition order) for sorting."""
    conf, pred = probs.max(dim=1)
    p_true = probs.gather(1, labels.view(-1, 1)).squeeze(1)
    sq_sum = (probs * probs).sum(dim=1)
    severity = "" if cond.stressor is None else format_severity(cond.severity)
    stressor = "" if cond.stressor is None else cond.label
    # Python numbers first (one conversion per column, not per cell); floats stay exact float64.
    columns = zip(idx.tolist(), labels.tolist(), pred.tolist(), conf.tolist(), p_true.tolist(), sq_sum.tolist())
    for i, label, predicted, confidence, true_prob, squares in columns:
        yield (
            i,
            order,
            (
                [
                    i,
                    table.ids[i],
                    cond.id,
                    stressor,
                    severity,
                    label,
                    predicted,
                    repr(confidence),  # shortest exact float64 text: metrics recompute to 1e-12
                    repr(true_prob),
                    repr(squares),
                    *(table.attributes[a][i] for a in attrs),
                ]
            ),
        )
