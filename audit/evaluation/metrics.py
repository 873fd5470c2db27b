"""Mergeable audit statistics for one condition, per slot (overall and groups).

Metric definitions (CONTRIBUTING.md, "Metric definitions"), per slot of N samples:

- accuracy = mean(argmax p == label); argmax ties go to the lowest class.
- balanced_accuracy = mean recall over the classes present in the labels.
- macro_f1 = mean over the labels in ``y_true ∪ y_pred`` of
  ``2 TP / (2 TP + FP + FN)`` — scikit-learn's ``f1_score(average="macro")``
  (its F is computed this way, so no zero division can occur on that label set).
- top_k_accuracy: the true class has fewer than k classes with strictly higher
  probability (ties count in favour of the true class).
- ece, mce, adaptive_ece, debiased_l2_ce, reliability: see ``audit.evaluation.calibration``.
- brier = mean_i sum_k (p_ik - 1[k = y_i])^2; nll = -mean_i log max(p_i,y_i, eps)
  with eps = float64 machine epsilon (~2.2e-16), scikit-learn ``log_loss``'s
  clipping, so a zero probability costs 36.04 nats instead of infinity.
- per_class_fnr[c] = FN / (TP + FN), per_class_fpr[c] = FP / (FP + TN), None
  when undefined; overconfident_errors = wrong with confidence >= threshold.

Intervals (two-sided, coverage ``level``):

- proportions (accuracy, top_k_accuracy, per-class rates): by ``interval``:
  ``wilson`` (default) or ``clopper-pearson`` from the merged counts
  (:mod:`audit.contract.intervals`: exact under any split, no seed), or
  ``bootstrap``: the percentile interval of the replicates (with 0 or N
  successes, where every replicate is equal, the Wilson interval instead);
- brier_ci, nll_ci, macro_f1_ci, balanced_accuracy_ci: percentile interval of
  the Poisson bootstrap (``audit.evaluation.bootstrap``); macro_f1_ci and
  balanced_accuracy_ci need per-class replicate sums, kept only up to
  :data:`CLASSWISE_BOOTSTRAP_MAX_CLASSES` classes (else None);
- ece_ci: the percentile interval moved by the bootstrap estimate of the bias
  (:func:`~audit.evaluation.bootstrap.bias_corrected_interval`), its ends
  clipped at 0: the plug-in ECE is biased upwards and its replicates more so;
- debiased_l2_ce_ci: the same bias-corrected interval of the debiased squared
  error, then ``sqrt(max(., 0))`` of each end.

Slots: column g of ``slots`` gives each sample's slot in grouping g (column 0
is the overall slot 0). Every state is a sum indexed by slot, so states merge
by addition across batches, shards and processes. An update adds into the
states in place with ``index_add_``: its cost grows with the batch, the number
of groupings and the replicates, never with the number of slots. Bootstrap
counts are float32 (integers, exact below 2**24 per slot and replicate), the
bootstrap sums of confidences, Brier scores and log-losses float64, the other
states int64 and float64.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor
from torchmetrics import Metric

from audit.contract.intervals import INTERVAL_METHODS, wilson
from audit.contract.intervals import proportion_interval as closed_form_interval
from audit.contract.metric_specs import specs
from audit.evaluation import calibration
from audit.evaluation.bootstrap import bias_corrected_interval, percentile_intervals, poisson_weights

_F64 = torch.float64
_F32 = torch.float32
_I64 = torch.int64
_SUM_TOLERANCE = 1e-3
_PROB_FLOOR = float(torch.finfo(torch.float64).eps)  # sklearn.metrics.log_loss's clip
_TOP_CONFUSIONS = 5
_CHUNK = 64  # slots whose replicate statistics are derived at once in compute()

#: Per-class bootstrap sums (macro_f1_ci, balanced_accuracy_ci, bootstrap per-class rates) up to this many classes.
CLASSWISE_BOOTSTRAP_MAX_CLASSES = 100


class BootstrapWeights(NamedTuple):
    """A batch's Poisson weights in the two dtypes the replicate sums take, converted once.

    The conditions of a batch share its weights; passing them to :meth:`AuditStats.update` in
    this form saves each condition the two conversions (the same values: the weights are small
    integers, exact in both dtypes).
    """

    counts: Tensor  # float32, for the replicate counts
    sums: Tensor  # float64, for the replicate sums of confidences, Brier scores and log-losses

    @classmethod
    def of(cls, weights: Tensor) -> BootstrapWeights:
        """From :func:`~audit.evaluation.bootstrap.poisson_weights` (N, R)."""
        return cls(weights.to(_F32), weights.to(_F64))

    @property
    def shape(self) -> torch.Size:
        return self.sums.shape

    def rows(self, mask: Tensor) -> BootstrapWeights:
        """The weights of the samples ``mask`` selects."""
        return BootstrapWeights(self.counts[mask], self.sums[mask])

    def to(self, device: torch.device) -> BootstrapWeights:
        return BootstrapWeights(self.counts.to(device), self.sums.to(device))


def state_shapes(
    *,
    num_classes: int,
    num_slots: int,
    n_bins: int = 15,
    n_bootstrap: int = 1000,
    top_k: int | None = None,
    interval: str = "wilson",
) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """The name, shape and dtype of every state of :class:`AuditStats` (its memory is their sum).

    Returns:
        ``{name: (shape, dtype)}``.
    """
    s, k, b, r, f = num_slots, num_classes, n_bins, n_bootstrap, calibration.FINE_BINS
    shapes: dict[str, tuple[tuple[int, ...], torch.dtype]] = {
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
    }
    if r > 0:
        columns = 3 if (top_k is not None and interval == "bootstrap") else 2  # brier, nll[, top-k correct]
        shapes["boot_means"] = ((s, columns, r), _F64)
        shapes["boot_bins"] = ((s, b, 2, r), _F32)  # count, correct (integers: exact in float32)
        shapes["boot_bin_conf"] = ((s, b, r), _F64)  # sum of confidence
        if k <= CLASSWISE_BOOTSTRAP_MAX_CLASSES:
            shapes["boot_true"] = ((s, k, 2, r), _F32)  # support, true positives (by true class)
            shapes["boot_pred"] = ((s, k, r), _F32)  # predictions (by predicted class)
    return shapes


def state_bytes(**settings) -> int:
    """Bytes of all states of one :class:`AuditStats` with these settings (see :func:`state_shapes`)."""
    return sum(math.prod(shape) * dtype.itemsize for shape, dtype in state_shapes(**settings).values())


def _validate(
    probs: Tensor,
    labels: Tensor,
    slots: Tensor,
    sample_keys: Tensor,
    *,
    num_classes: int,
    num_slots: int,
    weights: Tensor | BootstrapWeights | None = None,
    n_bootstrap: int = 0,
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
    values = weights.counts if isinstance(weights, BootstrapWeights) else weights
    if values is not None and (tuple(weights.shape) != (n, n_bootstrap) or bool((values < 0).any())):
        raise ValueError(
            f"weights must be non-negative bootstrap weights of shape ({n}, {n_bootstrap}); got {tuple(weights.shape)}"
        )


def _accumulate(
    st: dict[str, Tensor],
    probs: Tensor,
    labels: Tensor,
    slots: Tensor,
    weights: BootstrapWeights | None,
    *,
    n_bins: int,
    top_k: int | None,
    overconfidence: float,
) -> None:
    """Add one batch (validated inputs, on the states' device) into the states ``st`` in place.

    Shape:
        probs (N, K); labels (N,); slots (N, G); weights (N, R) each, or None.
    """
    if probs.shape[0] == 0:
        return
    k, b, f = probs.shape[1], n_bins, calibration.FINE_BINS
    p = probs.to(_F64)
    labels, slots = labels.to(_I64), slots.to(_I64)
    n, g = slots.shape
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
    ones = torch.ones(n * g, dtype=_I64, device=probs.device)
    st["confusion"].view(-1).index_add_(0, fs * k * k + rep(labels * k + pred), ones)
    st["brier_sum"].index_add_(0, fs, rep(brier))
    st["nll_sum"].index_add_(0, fs, rep(nll))
    st["topk_correct"].index_add_(0, fs, rep(topk.to(_I64)))
    st["overconfident"].index_add_(0, fs, rep(overconf.to(_I64)))
    for prefix, bins, nb in (("bin", coarse, b), ("fine", fine, f)):
        idx = fs * nb + rep(bins)
        st[f"{prefix}_count"].view(-1).index_add_(0, idx, ones)
        st[f"{prefix}_conf"].view(-1).index_add_(0, idx, rep(conf))
        st[f"{prefix}_correct"].view(-1).index_add_(0, idx, rep(correct.to(_I64)))
    if weights is None or "boot_bins" not in st:
        return
    # Bootstrap: one row of R replicate sums per sample, added to its slot's row in every grouping.
    w, w64 = weights.counts, weights.sums
    s = st["boot_bins"].shape[0]
    one = torch.ones(n, dtype=_F32, device=probs.device)
    hit = correct.to(_F32)
    columns = st["boot_means"].shape[1]
    means_vals = torch.stack([brier, nll, topk.to(_F64)][:columns], dim=1)
    means_src = (w64[:, None, :] * means_vals[:, :, None]).reshape(n, -1)
    counts_src = (w[:, None, :] * torch.stack([one, hit], dim=1)[:, :, None]).reshape(n, -1)
    conf_src = w64 * conf[:, None]
    means, bins_state = st["boot_means"].view(s, -1), st["boot_bins"].view(s * b, -1)
    conf_state = st["boot_bin_conf"].view(s * b, -1)
    classwise = "boot_true" in st
    if classwise:
        true_state, pred_state = st["boot_true"].view(s * k, -1), st["boot_pred"].view(s * k, -1)
    for j in range(g):
        column = slots[:, j]
        means.index_add_(0, column, means_src)
        bins_state.index_add_(0, column * b + coarse, counts_src)
        conf_state.index_add_(0, column * b + coarse, conf_src)
        if classwise:
            true_state.index_add_(0, column * k + labels, counts_src)
            pred_state.index_add_(0, column * k + pred, w)


def _rate(num: float, den: float) -> float | None:
    return num / den if den else None


def _proportion_ci(
    successes: int, trials: int, replicate_ci: list[float] | None, *, interval: str, level: float
) -> list[float] | None:
    """The interval of a proportion by the configured method (see the module docstring)."""
    if trials == 0:
        return None
    if interval != "bootstrap":
        return closed_form_interval(successes, trials, method=interval, level=level)
    if successes in (0, trials) or replicate_ci is None:  # every replicate equal: no spread to read
        return wilson(successes, trials, level=level)
    return replicate_ci


def _clip_low(interval: list[float] | None) -> list[float] | None:
    return None if interval is None else [max(interval[0], 0.0), max(interval[1], 0.0)]


def _sqrt_ends(interval: list[float] | None) -> list[float] | None:
    return None if interval is None else [max(interval[0], 0.0) ** 0.5, max(interval[1], 0.0) ** 0.5]


def _replicate_intervals(st: dict[str, Tensor], lo: int, hi: int, *, level: float) -> list[dict]:
    """Bootstrap intervals of slots ``lo:hi`` from the replicate sums (one dict per slot)."""
    bb = st["boot_bins"][lo:hi].to(_F64)  # (S, B, 2, R)
    count, correct = bb[:, :, 0, :], bb[:, :, 1, :]
    conf = st["boot_bin_conf"][lo:hi]  # (S, B, R)
    rep_n = count.sum(dim=1)  # (S, R)
    nan = torch.full_like(rep_n, float("nan"))
    has = rep_n > 0
    safe_n = rep_n.clamp(min=1.0)
    rows: dict[str, Tensor] = {
        "accuracy": torch.where(has, correct.sum(dim=1) / safe_n, nan),
        "ece": torch.where(has, (correct - conf).abs().sum(dim=1) / safe_n, nan),
    }
    ce2 = calibration.debiased_l2_squared(count.transpose(1, 2), conf.transpose(1, 2), correct.transpose(1, 2))
    means = st["boot_means"][lo:hi].to(_F64)  # (S, C, R)
    rows["brier"] = torch.where(has, means[:, 0] / safe_n, nan)
    rows["nll"] = torch.where(has, means[:, 1] / safe_n, nan)
    if means.shape[1] > 2:
        rows["top_k_accuracy"] = torch.where(has, means[:, 2] / safe_n, nan)
    classwise = "boot_true" in st
    if classwise:
        true = st["boot_true"][lo:hi].to(_F64)  # (S, K, 2, R)
        support, tp = true[:, :, 0, :], true[:, :, 1, :]
        predicted = st["boot_pred"][lo:hi].to(_F64)  # (S, K, R)
        den = support + predicted
        f1 = torch.where(den > 0, 2 * tp / den.clamp(min=1.0), torch.full_like(den, float("nan")))
        recall = torch.where(support > 0, tp / support.clamp(min=1.0), torch.full_like(support, float("nan")))
        rows["macro_f1"] = torch.nanmean(f1, dim=1)
        rows["balanced_accuracy"] = torch.nanmean(recall, dim=1)
        negatives = rep_n[:, None, :] - support
        fpr = torch.where(
            negatives > 0, (predicted - tp) / negatives.clamp(min=1.0), torch.full_like(negatives, float("nan"))
        )
    size = hi - lo
    out: list[dict] = [{} for _ in range(size)]
    for name, values in rows.items():
        for i, ci in enumerate(percentile_intervals(values, level=level)):
            out[i][name] = ci
    for i in range(size):
        out[i]["ce2"] = ce2[i]
        out[i]["ece_reps"] = rows["ece"][i]
        if classwise:
            out[i]["fnr"] = percentile_intervals(1.0 - recall[i], level=level)
            out[i]["fpr"] = percentile_intervals(fpr[i], level=level)
    return out


def _empty_slot(k: int, reliability: list[dict]) -> dict:
    """A slot without samples: every registered metric of a slot or condition undefined (counts 0)."""
    out: dict = {}
    for spec in specs(lambda s: s.scope in ("slot", "condition")):
        undefined = [None] * k if spec.kind == "rate" else None
        out[spec.name] = 0 if spec.kind == "count" else undefined
        if spec.interval != "none":
            out[f"{spec.name}_ci"] = undefined
    out.update(confusion=[[0] * k for _ in range(k)], top_confusions=[], reliability=reliability)
    return out


def _compute_slot(
    st: dict[str, Tensor],
    i: int,
    boot: dict | None,
    *,
    top_k: int | None,
    adaptive_bins: int,
    interval: str,
    level: float,
) -> dict:
    """Metrics of slot ``i`` from CPU states and its bootstrap intervals ``boot`` (see module docstring)."""
    cm = st["confusion"][i]
    k = cm.shape[0]
    n = int(cm.sum())
    reliability = calibration.reliability(st["bin_count"][i], st["bin_conf"][i], st["bin_correct"][i])
    if n == 0:
        return _empty_slot(k, reliability)
    boot = boot or {}
    cmf = cm.to(_F64)
    tp, support, predicted = cmf.diag(), cmf.sum(dim=1), cmf.sum(dim=0)
    fn, fp = support - tp, predicted - tp
    tn = n - tp - fn - fp
    present = support > 0
    in_union = (support + predicted) > 0
    f1 = 2 * tp[in_union] / (2 * tp[in_union] + fp[in_union] + fn[in_union])
    ece, mce = calibration.ece_mce(st["bin_count"][i], st["bin_conf"][i], st["bin_correct"][i])
    debiased, squared = calibration.debiased_l2_ce(st["bin_count"][i], st["bin_conf"][i], st["bin_correct"][i])
    ce2_reps = boot.get("ce2")
    off = cm.clone()
    off.fill_diagonal_(0)
    cells = torch.nonzero(off.flatten()).squeeze(1)  # ascending cell index
    counts = off.flatten()[cells]
    top = cells[torch.sort(-counts, stable=True).indices[:_TOP_CONFUSIONS]].tolist()  # ties: lower (true, pred)
    correct = int(cm.diag().sum())
    topk_correct = int(st["topk_correct"][i])
    fnr_reps, fpr_reps = boot.get("fnr") or [None] * k, boot.get("fpr") or [None] * k
    cm_int = cm.tolist()
    return {
        "n": n,
        "accuracy": correct / n,
        "accuracy_ci": _proportion_ci(correct, n, boot.get("accuracy"), interval=interval, level=level),
        "balanced_accuracy": float((tp[present] / support[present]).mean()),
        "balanced_accuracy_ci": boot.get("balanced_accuracy"),
        "macro_f1": float(f1.mean()),
        "macro_f1_ci": boot.get("macro_f1"),
        "top_k_accuracy": topk_correct / n if top_k is not None else None,
        "top_k_accuracy_ci": (
            _proportion_ci(topk_correct, n, boot.get("top_k_accuracy"), interval=interval, level=level)
            if top_k is not None
            else None
        ),
        "ece": ece,
        "ece_ci": _clip_low(bias_corrected_interval(boot["ece_reps"], ece, level=level))
        if "ece_reps" in boot
        else None,
        "debiased_l2_ce": debiased,
        "debiased_l2_ce_ci": (
            _sqrt_ends(bias_corrected_interval(ce2_reps, squared, level=level))
            if ce2_reps is not None and squared is not None
            else None
        ),
        "mce": mce,
        "adaptive_ece": calibration.adaptive_ece(
            st["fine_count"][i], st["fine_conf"][i], st["fine_correct"][i], n_bins=adaptive_bins
        ),
        "brier": float(st["brier_sum"][i]) / n,
        "brier_ci": boot.get("brier"),
        "nll": float(st["nll_sum"][i]) / n,
        "nll_ci": boot.get("nll"),
        "confusion": cm_int,
        "per_class_fnr": [_rate(float(fn[c]), float(support[c])) for c in range(k)],
        "per_class_fnr_ci": [
            _proportion_ci(int(fn[c]), int(support[c]), fnr_reps[c], interval=interval, level=level) for c in range(k)
        ],
        "per_class_fpr": [_rate(float(fp[c]), float(fp[c] + tn[c])) for c in range(k)],
        "per_class_fpr_ci": [
            _proportion_ci(int(fp[c]), int(fp[c] + tn[c]), fpr_reps[c], interval=interval, level=level)
            for c in range(k)
        ],
        "top_confusions": [{"true": c // k, "predicted": c % k, "count": int(cm[c // k, c % k])} for c in top],
        "overconfident_errors": int(st["overconfident"][i]),
        "reliability": reliability,
    }


def _compute(
    states: dict[str, Tensor], *, top_k: int | None, adaptive_bins: int, interval: str, level: float
) -> list[dict]:
    st = {name: t.detach().cpu() for name, t in states.items()}
    num_slots = st["confusion"].shape[0]
    out = []
    for lo in range(0, num_slots, _CHUNK):
        hi = min(lo + _CHUNK, num_slots)
        boots = _replicate_intervals(st, lo, hi, level=level) if "boot_bins" in st else [None] * (hi - lo)
        for i, boot in zip(range(lo, hi), boots):
            out.append(
                _compute_slot(st, i, boot, top_k=top_k, adaptive_bins=adaptive_bins, interval=interval, level=level)
            )
    return out


def _check_settings(
    *,
    num_classes: int,
    num_slots: int,
    n_bins: int,
    adaptive_bins: int,
    n_bootstrap: int,
    top_k: int | None,
    overconfidence: float,
    interval: str = "wilson",
    level: float = 0.95,
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
    if interval not in INTERVAL_METHODS:
        raise ValueError(f"interval must be one of {', '.join(INTERVAL_METHODS)}; got {interval!r}")
    if interval == "bootstrap" and n_bootstrap == 0:
        raise ValueError("interval 'bootstrap' needs n_bootstrap > 0")
    if not (isinstance(level, float) and 0.0 < level < 1.0):
        raise ValueError(f"level must be a float in (0, 1); got {level!r}")


class AuditStats(Metric):
    """Per-slot sufficient statistics of one condition (accuracy, calibration, errors).

    Every state is a sum declared with ``add_state(..., dist_reduce_fx="sum")``:
    memory is independent of the number of images (:func:`state_bytes` gives it),
    and ``merge_state`` or torch.distributed sync add them. Bootstrap weights are
    keyed by sample, so any split gives the same result.

    Args:
        num_classes: K.
        num_slots: S (slot 0 = overall, then one per (grouping, value)).
        n_bins: equal-width calibration bins for ECE/MCE/reliability.
        adaptive_bins: equal-mass bins for ``adaptive_ece``.
        n_bootstrap: Poisson bootstrap replicates R (0 disables the bootstrap intervals).
        seed: bootstrap seed.
        top_k: k for ``top_k_accuracy`` (None: not computed, reported as None).
        overconfidence: confidence threshold for ``overconfident_errors``.
        interval: interval of proportions: ``wilson``, ``clopper-pearson`` or ``bootstrap``.
        level: coverage of every interval.
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
        n_bootstrap: int = 1000,
        seed: int = 0,
        top_k: int | None = None,
        overconfidence: float = 0.9,
        interval: str = "wilson",
        level: float = 0.95,
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
            interval=interval,
            level=level,
        )
        self.num_classes, self.num_slots, self.n_bins = num_classes, num_slots, n_bins
        self.adaptive_bins, self.n_bootstrap, self.seed = adaptive_bins, n_bootstrap, seed
        self.top_k, self.overconfidence = top_k, float(overconfidence)
        self.interval, self.level = interval, level
        self._names = tuple(self._shapes())
        for name, (shape, dtype) in self._shapes().items():
            self.add_state(name, default=torch.zeros(shape, dtype=dtype), dist_reduce_fx="sum")

    def _shapes(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        return state_shapes(
            num_classes=self.num_classes,
            num_slots=self.num_slots,
            n_bins=self.n_bins,
            n_bootstrap=self.n_bootstrap,
            top_k=self.top_k,
            interval=self.interval,
        )

    def update(
        self,
        probs: Tensor,
        labels: Tensor,
        slots: Tensor,
        sample_keys: Tensor,
        weights: Tensor | BootstrapWeights | None = None,
    ) -> None:
        """Add one batch.

        Args:
            probs: class probabilities (rows sum to 1 within 1e-3).
            labels: true classes in ``[0, num_classes)``.
            slots: slot index per sample and grouping, in ``[0, num_slots)``;
                column 0 is the overall slot 0.
            sample_keys: stable non-negative per-sample keys (bootstrap).
            weights: the bootstrap weights of these samples,
                ``poisson_weights(sample_keys, n_bootstrap, seed=seed)``, when the
                caller already drew them for another condition of the same batch
                (as :class:`BootstrapWeights`, converted once for all of them);
                None draws them here.

        Raises:
            ValueError: NaN/inf or negative probs, rows not summing to 1,
                labels, slots or keys out of range, wrong shapes.

        Shape:
            probs (N, K) float; labels (N,), slots (N, G), sample_keys (N,) int; weights (N, R).
        """
        _validate(
            probs,
            labels,
            slots,
            sample_keys,
            num_classes=self.num_classes,
            num_slots=self.num_slots,
            weights=weights,
            n_bootstrap=self.n_bootstrap,
        )
        device = self.confusion.device
        shared = None
        if self.n_bootstrap:
            if weights is None:
                weights = poisson_weights(sample_keys.to(device), self.n_bootstrap, seed=self.seed)
            shared = weights if isinstance(weights, BootstrapWeights) else BootstrapWeights.of(weights)
        _accumulate(
            {name: getattr(self, name) for name in self._names},
            probs.to(device),
            labels.to(device),
            slots.to(device),
            None if shared is None else shared.to(device),
            n_bins=self.n_bins,
            top_k=self.top_k,
            overconfidence=self.overconfidence,
        )

    def compute(self) -> list[dict]:
        """Metrics per slot (empty slots kept, n = 0, rates None); see module docstring.

        Returns:
            One dict per slot with keys n, accuracy, accuracy_ci, balanced_accuracy,
            balanced_accuracy_ci, macro_f1, macro_f1_ci, top_k_accuracy,
            top_k_accuracy_ci, ece, ece_ci, debiased_l2_ce, debiased_l2_ce_ci, mce,
            adaptive_ece, brier, brier_ci, nll, nll_ci, confusion, per_class_fnr,
            per_class_fnr_ci, per_class_fpr, per_class_fpr_ci, top_confusions,
            overconfident_errors, reliability.
        """
        return _compute(
            {name: getattr(self, name) for name in self._names},
            top_k=self.top_k,
            adaptive_bins=self.adaptive_bins,
            interval=self.interval,
            level=self.level,
        )


def audit_metrics(
    probs: Tensor,
    labels: Tensor,
    *,
    sample_keys: Tensor | None = None,
    n_bins: int = 15,
    adaptive_bins: int = 15,
    n_bootstrap: int = 1000,
    seed: int = 0,
    top_k: int | None = None,
    overconfidence: float = 0.9,
    interval: str = "wilson",
    level: float = 0.95,
) -> dict:
    """One-shot metrics of a whole set of predictions (the functional ``AuditStats``).

    Args:
        probs: class probabilities; K is ``probs.shape[1]``.
        labels: true classes.
        sample_keys: bootstrap keys (default ``arange(N)``).
        n_bins, adaptive_bins, n_bootstrap, seed, top_k, overconfidence, interval, level: as in ``AuditStats``.

    Returns:
        The same dict as one slot of ``AuditStats.compute()``.

    Raises:
        ValueError: as ``AuditStats.update``.

    Shape:
        probs (N, K); labels (N,); sample_keys (N,).
    """
    if probs.ndim != 2:
        raise ValueError(f"probs must have shape (N, K); got {tuple(probs.shape)}")
    metric = AuditStats(
        num_classes=probs.shape[1],
        num_slots=1,
        n_bins=n_bins,
        adaptive_bins=adaptive_bins,
        n_bootstrap=n_bootstrap,
        seed=seed,
        top_k=top_k,
        overconfidence=overconfidence,
        interval=interval,
        level=level,
    ).to(probs.device)
    if sample_keys is None:
        sample_keys = torch.arange(probs.shape[0], device=probs.device)
    metric.update(probs, labels, torch.zeros(probs.shape[0], 1, dtype=_I64, device=probs.device), sample_keys)
    return metric.compute()[0]
