"""Calibration binning and calibration errors from binned sufficient statistics.

Binning (CONTRIBUTING.md, "Metric definitions"): ``n_bins`` equal-width bins on
[0, 1] with edges ``i / n_bins`` computed in float64; a bin is ``(lo, hi]``
and the first bin also takes 0. A confidence of exactly 1.0 therefore falls
in the LAST bin. (torchmetrics' ``MulticlassCalibrationError`` uses
``[lo, hi)`` bins and puts 1.0 in an extra bin of its own — its issue 3510 —
so its number differs whenever some confidences are exactly 1.0.)

From per-bin ``count``, ``sum confidence`` and ``sum correct``:

- ECE = sum_b (n_b / N) |acc_b - conf_b| = sum_b |correct_b - conf_sum_b| / N
- MCE = max over non-empty bins of |acc_b - conf_b|
- adaptive ECE: the same sum over equal-mass bins. The sample of rank r
  (0-based, by increasing confidence) belongs to adaptive bin
  ``floor(A * r / N)``. It is derived from a fine equal-width histogram
  (``FINE_BINS`` bins): a fine bin goes, whole, to the adaptive bin of its
  first sample, so the value is exact whenever no fine bin straddles an
  equal-mass boundary — i.e. exact up to a resolution of 1 / FINE_BINS in
  confidence.
- debiased L2 calibration error (Kumar, Liang and Ma, "Verified Uncertainty
  Calibration", NeurIPS 2019): over the same equal-width bins, with
  ``a_b = correct_b / n_b`` and ``c_b = conf_sum_b / n_b``,
  ``CE2 = sum_b (n_b / N) [(a_b - c_b)^2 - a_b (1 - a_b) / (n_b - 1)]``; a bin
  with fewer than two samples contributes 0. Subtracting the binomial variance
  of ``a_b`` makes ``CE2`` an unbiased estimate of the squared L2 calibration
  error of the binned model (it may be negative); the reported value is
  ``sqrt(max(CE2, 0))``. The plug-in ECE of a perfectly calibrated model is
  of order 1 / sqrt(N) on average (0.98 / sqrt(N) for typical confidences); the debiased
  value is about 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from audit.contract.metric_specs import ACCURACY

FINE_BINS = 1000


def bin_index(confidence: Tensor, n_bins: int) -> Tensor:
    """Equal-width bin of each confidence, bins ``(lo, hi]`` with 0 in bin 0.

    Args:
        confidence: top-label confidences in [0, 1] (compared in float64).
        n_bins: number of equal-width bins on [0, 1].

    Returns:
        int64 bin indices in ``[0, n_bins - 1]``; 1.0 maps to ``n_bins - 1``.

    Shape:
        confidence: (N,) -> (N,)

    Example:
        >>> bin_index(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64), 2).tolist()
        [0, 0, 1]
    """
    conf = confidence.to(torch.float64)
    inner = torch.arange(1, n_bins, dtype=torch.float64, device=conf.device) / n_bins
    # right=False: index i with inner[i-1] < x <= inner[i], i.e. (lo, hi] bins
    return torch.bucketize(conf, inner, right=False)


def ece_mce(count: Tensor, conf_sum: Tensor, correct_sum: Tensor) -> tuple[float | None, float | None]:
    """ECE and MCE from per-bin sums.

    Args:
        count: samples per bin.
        conf_sum: sum of top-label confidence per bin.
        correct_sum: number of correct predictions per bin.

    Returns:
        ``(ece, mce)``; both None when the bins are empty.

    Shape:
        all inputs: (B,)
    """
    n = float(count.sum())
    if n == 0:
        return None, None
    gap = (correct_sum.to(torch.float64) - conf_sum.to(torch.float64)).abs()
    ece = float(gap.sum() / n)
    nonempty = count > 0
    mce = float((gap[nonempty] / count[nonempty].to(torch.float64)).max())
    return ece, mce


def batched_ece(count: Tensor, conf_sum: Tensor, correct_sum: Tensor) -> Tensor:
    """ECE of many histograms at once (e.g. one per bootstrap replicate).

    Returns:
        float64 ECE per histogram; NaN where a histogram is empty.

    Shape:
        inputs: (R, B) -> (R,)
    """
    n = count.sum(dim=-1).to(torch.float64)
    gap = (correct_sum.to(torch.float64) - conf_sum.to(torch.float64)).abs().sum(dim=-1)
    return torch.where(n > 0, gap / n.clamp(min=1), torch.full_like(n, float("nan")))


def debiased_l2_squared(count: Tensor, conf_sum: Tensor, correct_sum: Tensor) -> Tensor:
    """The debiased squared L2 calibration error ``CE2`` of many histograms (see the module docstring).

    Args:
        count, conf_sum, correct_sum: per-bin sums, one histogram per row.

    Returns:
        float64 ``CE2`` per histogram (may be negative); NaN where a histogram is empty.

    Shape:
        inputs: (..., B) -> (...)
    """
    n_b = count.to(torch.float64)
    n = n_b.sum(dim=-1)
    safe = n_b.clamp(min=1.0)
    acc = correct_sum.to(torch.float64) / safe
    conf = conf_sum.to(torch.float64) / safe
    term = (acc - conf) ** 2 - acc * (1.0 - acc) / (n_b - 1.0).clamp(min=1.0)
    term = torch.where(n_b >= 2, term, torch.zeros_like(term))
    total = (n_b * term).sum(dim=-1)
    return torch.where(n > 0, total / n.clamp(min=1.0), torch.full_like(n, float("nan")))


def debiased_l2_ce(count: Tensor, conf_sum: Tensor, correct_sum: Tensor) -> tuple[float | None, float | None]:
    """The debiased L2 calibration error of one histogram.

    Args:
        count, conf_sum, correct_sum: per-bin sums.

    Returns:
        ``(sqrt(max(CE2, 0)), CE2)``; both None when the bins are empty.

    Shape:
        inputs: (B,)

    Example:
        >>> c = torch.tensor([0, 2]); s = torch.tensor([0.0, 1.6]); k = torch.tensor([0, 1])
        >>> value, squared = debiased_l2_ce(c, s, k)   # a = 0.5, c = 0.8: 0.09 - 0.25 < 0
        >>> value, round(squared, 4)
        (0.0, -0.16)
    """
    squared = float(debiased_l2_squared(count, conf_sum, correct_sum))
    if squared != squared:  # NaN: no sample
        return None, None
    return max(squared, 0.0) ** 0.5, squared


def adaptive_ece(count: Tensor, conf_sum: Tensor, correct_sum: Tensor, *, n_bins: int) -> float | None:
    """Equal-mass (adaptive) ECE from a fine equal-width histogram.

    Args:
        count, conf_sum, correct_sum: the fine histogram (see module docstring).
        n_bins: number of equal-mass bins A.

    Returns:
        The adaptive ECE, or None when the histogram is empty.

    Shape:
        inputs: (F,)
    """
    count = count.to(torch.int64)
    n = int(count.sum())
    if n == 0:
        return None
    before = torch.cumsum(count, 0) - count  # rank of each fine bin's first sample
    target = torch.div(before * n_bins, n, rounding_mode="floor").clamp(max=n_bins - 1)
    conf = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, target, conf_sum.to(torch.float64))
    correct = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, target, correct_sum.to(torch.float64))
    return float((correct - conf).abs().sum() / n)


def reliability(count: Tensor, conf_sum: Tensor, correct_sum: Tensor) -> list[dict]:
    """Reliability-diagram rows, one per equal-width bin (empty bins included).

    Returns:
        ``[{lo, hi, n, accuracy, confidence}]``; accuracy and confidence are
        None for empty bins.

    Shape:
        inputs: (B,)
    """
    n_bins = count.numel()
    rows = []
    for b in range(n_bins):
        n_b = int(count[b])
        rows.append(
            {
                "lo": b / n_bins,
                "hi": (b + 1) / n_bins,
                "n": n_b,
                ACCURACY.name: float(correct_sum[b]) / n_b if n_b else None,
                "confidence": float(conf_sum[b]) / n_b if n_b else None,
            }
        )
    return rows
