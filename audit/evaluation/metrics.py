"""Mergeable audit statistics for one condition, per slot (overall and groups).

Metric definitions (CONTRIBUTING.md, "Metric definitions"), per slot of N samples:

- accuracy = mean(argmax p == label); argmax ties go to the lowest class.
- accuracy_ci: 95% percentile interval of a Poisson bootstrap (see
  ``audit.evaluation.bootstrap``); ece_ci likewise for the ECE.
- balanced_accuracy = mean recall over the classes present in the labels.
- macro_f1 = mean over the labels in ``y_true ∪ y_pred`` of
  ``2 TP / (2 TP + FP + FN)`` — scikit-learn's ``f1_score(average="macro")``
  (its F is computed this way, so no zero division can occur on that label set).
- top_k_accuracy: the true class has fewer than k classes with strictly higher
  probability (ties count in favour of the true class).
- ece, mce, adaptive_ece, reliability: see ``audit.evaluation.calibration``.
- brier = mean_i sum_k (p_ik - 1[k = y_i])^2; nll = -mean_i log max(p_i,y_i, eps)
  with eps = float64 machine epsilon (~2.2e-16), scikit-learn ``log_loss``'s
  clipping, so a zero probability costs 36.04 nats instead of infinity.
- per_class_fnr[c] = FN / (TP + FN), per_class_fpr[c] = FP / (FP + TN), None
  when undefined; overconfident_errors = wrong with confidence >= threshold.

Slots: column g of ``slots`` gives each sample's slot in grouping g (column 0
is the overall slot 0). Every state is a sum indexed by slot, so states merge
by addition across batches, shards and processes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric

from audit.evaluation import calibration
from audit.evaluation.bootstrap import percentile_interval, poisson_weights

_F64 = torch.float64
_I64 = torch.int64
_SUM_TOLERANCE = 1e-3
_PROB_FLOOR = float(torch.finfo(torch.float64).eps)  # sklearn.metrics.log_loss's clip
_TOP_CONFUSIONS = 5


def _state_shapes(*, num_classes: int, num_slots: int, n_bins: int, n_bootstrap: int) -> dict[str, tuple]:
    s, k, b, r, f = num_slots, num_classes, n_bins, n_bootstrap, calibration.FINE_BINS
    return {
        "confusion": ((s, k, k), _I64),
        "bin_count": ((s, b), _I64),
        "bin_conf": ((s, b), _F64),
        "bin_correct": ((s, b), _I64),
        "fine_count": ((s, f), _I64),
        "fine_conf": ((s, f), _F64),
        "fine_correct": ((s, f), _I64),
        "brier_sum": ((s,), _F64),
        "nll_sum": ((s,), _F64),
        "topk_correct": ((s,), _I64),
        "overconfident": ((s,), _I64),
        "boot_n": ((s, r), _I64),
        "boot_correct": ((s, r), _I64),
        "boot_bin_count": ((s, r, b), _I64),
        "boot_bin_conf": ((s, r, b), _F64),
        "boot_bin_correct": ((s, r, b), _I64),
    }


def _validate(
    probs: Tensor, labels: Tensor, slots: Tensor, sample_keys: Tensor, *, num_classes: int, num_slots: int
) -> None:
    """Raise ValueError naming the problem (and how many entries) in a batch."""
    if probs.ndim != 2 or probs.shape[1] != num_classes or not probs.is_floating_point():
        raise ValueError(
            f"probs must be a float tensor of shape (N, {num_classes}); got {probs.dtype} {tuple(probs.shape)}"
        )
    n = probs.shape[0]
    for name, t, ndim in (("labels", labels, 1), ("slots", slots, 2), ("sample_keys", sample_keys, 1)):
        if t.ndim != ndim or t.shape[0] != n or t.is_floating_point() or t.dtype == torch.bool:
            raise ValueError(
                f"{name} must be an integer tensor with {ndim} dim(s) and {n} rows; got {t.dtype} {tuple(t.shape)}"
            )
    if slots.shape[1] < 1:
        raise ValueError("slots must have at least one column (column 0 is the overall slot)")
    n_nan, n_inf = int(torch.isnan(probs).sum()), int(torch.isinf(probs).sum())
    if n_nan or n_inf:
        raise ValueError(f"probs contains {n_nan} NaN and {n_inf} inf values")
    n_neg = int((probs < 0).sum())
    if n_neg:
        raise ValueError(f"probs contains {n_neg} negative values")
    deviation = (probs.to(_F64).sum(dim=1) - 1.0).abs()
    bad = int((deviation > _SUM_TOLERANCE).sum())
    if bad:
        raise ValueError(
            f"{bad} rows of probs do not sum to 1 (tolerance {_SUM_TOLERANCE}, max deviation "
            f"{float(deviation.max()):.4g}); pass probabilities (softmax), not logits"
        )
    bad = int(((labels < 0) | (labels >= num_classes)).sum())
    if bad:
        low, high = int(labels.min()), int(labels.max())
        raise ValueError(f"{bad} labels outside [0, {num_classes}); got min {low}, max {high}")
    bad = int(((slots < 0) | (slots >= num_slots)).sum())
    if bad:
        low, high = int(slots.min()), int(slots.max())
        raise ValueError(f"{bad} slot indices outside [0, {num_slots}); got min {low}, max {high}")
    bad = int((sample_keys < 0).sum())
    if bad:
        raise ValueError(f"{bad} sample_keys are negative; keys must be non-negative 63-bit integers")


def _update_stats(
    probs: Tensor,
    labels: Tensor,
    slots: Tensor,
    sample_keys: Tensor,
    *,
    num_classes: int,
    num_slots: int,
    n_bins: int,
    n_bootstrap: int,
    seed: int,
    top_k: int | None,
    overconfidence: float,
) -> dict[str, Tensor]:
    """Sufficient statistics of one batch (validated inputs), one tensor per state."""
    k, s, b, r, f = num_classes, num_slots, n_bins, n_bootstrap, calibration.FINE_BINS
    device = probs.device
    p = probs.to(_F64)
    labels, slots, keys = labels.to(_I64), slots.to(_I64), sample_keys.to(_I64)
    g = slots.shape[1]
    pred = p.argmax(dim=1)
    conf = p.gather(1, pred[:, None]).squeeze(1)
    p_true = p.gather(1, labels[:, None]).squeeze(1)
    correct = pred == labels
    onehot = torch.nn.functional.one_hot(labels, k).to(_F64)
    brier = ((p - onehot) ** 2).sum(dim=1)
    nll = -torch.log(p_true.clamp(min=_PROB_FLOOR))
    rank = (p > p_true[:, None]).sum(dim=1)
    topk = rank < (top_k if top_k is not None else 1)
    overconf = ~correct & (conf >= overconfidence)
    coarse, fine = calibration.bin_index(conf, b), calibration.bin_index(conf, f)

    def rep(v: Tensor) -> Tensor:  # per-sample value -> one entry per (sample, grouping)
        return v.unsqueeze(1).expand(-1, g).reshape(-1)

    fs = slots.reshape(-1)
    cr = rep(correct)

    def count(idx: Tensor, size: int, mask: Tensor | None = None) -> Tensor:
        return torch.bincount(idx if mask is None else idx[mask], minlength=size).to(_I64)

    def fsum(idx: Tensor, size: int, vals: Tensor) -> Tensor:
        return torch.zeros(size, dtype=_F64, device=device).index_add_(0, idx, vals)

    def isum(idx: Tensor, size: int, vals: Tensor) -> Tensor:
        return torch.zeros(size, dtype=_I64, device=device).index_add_(0, idx, vals)

    out = {
        "confusion": count(fs * k * k + rep(labels) * k + rep(pred), s * k * k).view(s, k, k),
        "brier_sum": fsum(fs, s, rep(brier)),
        "nll_sum": fsum(fs, s, rep(nll)),
        "topk_correct": count(fs, s, rep(topk)),
        "overconfident": count(fs, s, rep(overconf)),
    }
    for prefix, bins, nb in (("bin", coarse, b), ("fine", fine, f)):
        idx = fs * nb + rep(bins)
        out[f"{prefix}_count"] = count(idx, s * nb).view(s, nb)
        out[f"{prefix}_conf"] = fsum(idx, s * nb, rep(conf)).view(s, nb)
        out[f"{prefix}_correct"] = count(idx, s * nb, cr).view(s, nb)

    w = poisson_weights(keys, r, seed=seed)  # (N, R)
    wr = w.unsqueeze(1).expand(-1, g, -1).reshape(fs.numel(), r)  # (N*G, R)
    reps = torch.arange(r, dtype=_I64, device=device)
    idx = (fs[:, None] * r + reps[None, :]).reshape(-1)
    wc = wr * cr[:, None]
    out["boot_n"] = isum(idx, s * r, wr.reshape(-1)).view(s, r)
    out["boot_correct"] = isum(idx, s * r, wc.reshape(-1)).view(s, r)
    bidx = idx * b + rep(coarse).repeat_interleave(r)
    size = s * r * b
    out["boot_bin_count"] = isum(bidx, size, wr.reshape(-1)).view(s, r, b)
    out["boot_bin_conf"] = fsum(bidx, size, (wr * rep(conf)[:, None]).reshape(-1)).view(s, r, b)
    out["boot_bin_correct"] = isum(bidx, size, wc.reshape(-1)).view(s, r, b)
    return out


def _rate(num: float, den: float) -> float | None:
    return num / den if den else None


def _compute_slot(st: dict[str, Tensor], i: int, *, top_k: int | None, adaptive_bins: int) -> dict:
    """Metrics of slot ``i`` from CPU states (see module docstring)."""
    cm = st["confusion"][i]
    k = cm.shape[0]
    n = int(cm.sum())
    cm_list = cm.tolist()
    reliability = calibration.reliability(st["bin_count"][i], st["bin_conf"][i], st["bin_correct"][i])
    if n == 0:
        return {
            "n": 0,
            "accuracy": None,
            "accuracy_ci": None,
            "balanced_accuracy": None,
            "macro_f1": None,
            "top_k_accuracy": None,
            "ece": None,
            "ece_ci": None,
            "mce": None,
            "adaptive_ece": None,
            "brier": None,
            "nll": None,
            "confusion": cm_list,
            "per_class_fnr": [None] * k,
            "per_class_fpr": [None] * k,
            "top_confusions": [],
            "overconfident_errors": 0,
            "reliability": reliability,
        }
    cmf = cm.to(_F64)
    tp, support, predicted = cmf.diag(), cmf.sum(dim=1), cmf.sum(dim=0)
    fn, fp = support - tp, predicted - tp
    tn = n - tp - fn - fp
    present = support > 0
    in_union = (support + predicted) > 0
    f1 = 2 * tp[in_union] / (2 * tp[in_union] + fp[in_union] + fn[in_union])
    ece, mce = calibration.ece_mce(st["bin_count"][i], st["bin_conf"][i], st["bin_correct"][i])
    boot_acc = st["boot_correct"][i].to(_F64) / st["boot_n"][i].to(_F64)  # NaN where a replicate is empty
    boot_ece = calibration.batched_ece(st["boot_bin_count"][i], st["boot_bin_conf"][i], st["boot_bin_correct"][i])
    off = cm.clone()
    off.fill_diagonal_(0)
    cells = torch.nonzero(off.flatten()).squeeze(1)  # ascending cell index
    counts = off.flatten()[cells]
    top = cells[torch.sort(-counts, stable=True).indices[:_TOP_CONFUSIONS]].tolist()  # ties: lower (true, pred)
    return {
        "n": n,
        "accuracy": float(tp.sum()) / n,
        "accuracy_ci": percentile_interval(boot_acc),
        "balanced_accuracy": float((tp[present] / support[present]).mean()),
        "macro_f1": float(f1.mean()),
        "top_k_accuracy": int(st["topk_correct"][i]) / n if top_k is not None else None,
        "ece": ece,
        "ece_ci": percentile_interval(boot_ece),
        "mce": mce,
        "adaptive_ece": calibration.adaptive_ece(
            st["fine_count"][i], st["fine_conf"][i], st["fine_correct"][i], n_bins=adaptive_bins
        ),
        "brier": float(st["brier_sum"][i]) / n,
        "nll": float(st["nll_sum"][i]) / n,
        "confusion": cm_list,
        "per_class_fnr": [_rate(float(fn[c]), float(support[c])) for c in range(k)],
        "per_class_fpr": [_rate(float(fp[c]), float(fp[c] + tn[c])) for c in range(k)],
        "top_confusions": [{"true": c // k, "predicted": c % k, "count": int(cm[c // k, c % k])} for c in top],
        "overconfident_errors": int(st["overconfident"][i]),
        "reliability": reliability,
    }


def _compute(states: dict[str, Tensor], *, top_k: int | None, adaptive_bins: int) -> list[dict]:
    st = {name: t.detach().cpu() for name, t in states.items()}
    return [_compute_slot(st, i, top_k=top_k, adaptive_bins=adaptive_bins) for i in range(st["confusion"].shape[0])]


def _check_settings(
    *,
    num_classes: int,
    num_slots: int,
    n_bins: int,
    adaptive_bins: int,
    n_bootstrap: int,
    top_k: int | None,
    overconfidence: float,
) -> None:
    for name, value, low in (
        ("num_classes", num_classes, 1),
        ("num_slots", num_slots, 1),
        ("n_bins", n_bins, 1),
        ("adaptive_bins", adaptive_bins, 1),
        ("n_bootstrap", n_bootstrap, 0),
    ):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}; got {value!r}")
    if top_k is not None and not (isinstance(top_k, int) and 1 <= top_k <= num_classes):
        raise ValueError(f"top_k must be None or an int in [1, {num_classes}]; got {top_k!r}")
    valid = isinstance(overconfidence, (int, float)) and not math.isnan(overconfidence)
    if not (valid and 0.0 <= overconfidence <= 1.0):
        raise ValueError(f"overconfidence must be in [0, 1]; got {overconfidence!r}")


class AuditStats(Metric):
    """Per-slot sufficient statistics of one condition (accuracy, calibration, errors).

    Every state is a float64 or int64 sum declared with
    ``add_state(..., dist_reduce_fx="sum")``: memory is independent of the
    number of images, and ``merge_state`` or torch.distributed sync add them.
    Bootstrap weights are keyed by sample, so any split gives the same result.

    Args:
        num_classes: K.
        num_slots: S (slot 0 = overall, then one per (grouping, value)).
        n_bins: equal-width calibration bins for ECE/MCE/reliability.
        adaptive_bins: equal-mass bins for ``adaptive_ece``.
        n_bootstrap: Poisson bootstrap replicates R (0 disables the intervals).
        seed: bootstrap seed.
        top_k: k for ``top_k_accuracy`` (None: not computed, reported as None).
        overconfidence: confidence threshold for ``overconfident_errors``.
        **kwargs: forwarded to ``torchmetrics.Metric`` (e.g. ``process_group``).

    Raises:
        ValueError: on invalid settings.

    Example:
        >>> m = AuditStats(num_classes=2, num_slots=1, n_bootstrap=0)
        >>> m.update(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 0]),
        ...          torch.zeros(2, 1, dtype=torch.long), torch.tensor([1, 2]))
        >>> m.compute()[0]["accuracy"]
        0.5
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(
        self,
        *,
        num_classes: int,
        num_slots: int,
        n_bins: int = 15,
        adaptive_bins: int = 15,
        n_bootstrap: int = 200,
        seed: int = 0,
        top_k: int | None = None,
        overconfidence: float = 0.9,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        _check_settings(
            num_classes=num_classes,
            num_slots=num_slots,
            n_bins=n_bins,
            adaptive_bins=adaptive_bins,
            n_bootstrap=n_bootstrap,
            top_k=top_k,
            overconfidence=overconfidence,
        )
        self.num_classes, self.num_slots, self.n_bins = num_classes, num_slots, n_bins
        self.adaptive_bins, self.n_bootstrap, self.seed = adaptive_bins, n_bootstrap, seed
        self.top_k, self.overconfidence = top_k, float(overconfidence)
        shapes = _state_shapes(num_classes=num_classes, num_slots=num_slots, n_bins=n_bins, n_bootstrap=n_bootstrap)
        for name, (shape, dtype) in shapes.items():
            self.add_state(name, default=torch.zeros(shape, dtype=dtype), dist_reduce_fx="sum")

    def update(self, probs: Tensor, labels: Tensor, slots: Tensor, sample_keys: Tensor) -> None:
        """Add one batch.

        Args:
            probs: class probabilities (rows sum to 1 within 1e-3).
            labels: true classes in ``[0, num_classes)``.
            slots: slot index per sample and grouping, in ``[0, num_slots)``;
                column 0 is the overall slot 0.
            sample_keys: stable non-negative per-sample keys (bootstrap).

        Raises:
            ValueError: NaN/inf or negative probs, rows not summing to 1,
                labels, slots or keys out of range, wrong shapes.

        Shape:
            probs (N, K) float; labels (N,), slots (N, G), sample_keys (N,) int.
        """
        _validate(probs, labels, slots, sample_keys, num_classes=self.num_classes, num_slots=self.num_slots)
        stats = _update_stats(
            probs,
            labels,
            slots,
            sample_keys,
            num_classes=self.num_classes,
            num_slots=self.num_slots,
            n_bins=self.n_bins,
            n_bootstrap=self.n_bootstrap,
            seed=self.seed,
            top_k=self.top_k,
            overconfidence=self.overconfidence,
        )
        for name, value in stats.items():
            getattr(self, name).add_(value.to(getattr(self, name).device))

    def compute(self) -> list[dict]:
        """Metrics per slot (empty slots kept, n = 0, rates None); see module docstring.

        Returns:
            One dict per slot with keys n, accuracy, accuracy_ci, balanced_accuracy,
            macro_f1, top_k_accuracy, ece, ece_ci, mce, adaptive_ece, brier, nll,
            confusion, per_class_fnr, per_class_fpr, top_confusions,
            overconfident_errors, reliability.
        """
        names = _state_shapes(
            num_classes=self.num_classes, num_slots=self.num_slots, n_bins=self.n_bins, n_bootstrap=self.n_bootstrap
        )
        return _compute(
            {name: getattr(self, name) for name in names}, top_k=self.top_k, adaptive_bins=self.adaptive_bins
        )


def audit_metrics(
    probs: Tensor,
    labels: Tensor,
    *,
    sample_keys: Tensor | None = None,
    n_bins: int = 15,
    adaptive_bins: int = 15,
    n_bootstrap: int = 200,
    seed: int = 0,
    top_k: int | None = None,
    overconfidence: float = 0.9,
) -> dict:
    """One-shot metrics of a whole set of predictions (the functional ``AuditStats``).

    Args:
        probs: class probabilities; K is ``probs.shape[1]``.
        labels: true classes.
        sample_keys: bootstrap keys (default ``arange(N)``).
        n_bins, adaptive_bins, n_bootstrap, seed, top_k, overconfidence: as in ``AuditStats``.

    Returns:
        The same dict as one slot of ``AuditStats.compute()``.

    Raises:
        ValueError: as ``AuditStats.update``.

    Shape:
        probs (N, K); labels (N,); sample_keys (N,).
    """
    if probs.ndim != 2:
        raise ValueError(f"probs must have shape (N, K); got {tuple(probs.shape)}")
    num_classes = probs.shape[1]
    _check_settings(
        num_classes=num_classes,
        num_slots=1,
        n_bins=n_bins,
        adaptive_bins=adaptive_bins,
        n_bootstrap=n_bootstrap,
        top_k=top_k,
        overconfidence=overconfidence,
    )
    if sample_keys is None:
        sample_keys = torch.arange(probs.shape[0], device=probs.device)
    slots = torch.zeros(probs.shape[0], 1, dtype=_I64, device=probs.device)
    _validate(probs, labels, slots, sample_keys, num_classes=num_classes, num_slots=1)
    stats = _update_stats(
        probs,
        labels,
        slots,
        sample_keys,
        num_classes=num_classes,
        num_slots=1,
        n_bins=n_bins,
        n_bootstrap=n_bootstrap,
        seed=seed,
        top_k=top_k,
        overconfidence=overconfidence,
    )
    return _compute(stats, top_k=top_k, adaptive_bins=adaptive_bins)[0]
