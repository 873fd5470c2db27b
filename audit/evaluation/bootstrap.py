"""Counter-based Poisson bootstrap weights and bootstrap intervals.

The Poisson bootstrap replaces "resample N items with replacement" by giving
every sample an independent Poisson(1) weight in each replicate. Because each
weight is a pure function of ``(seed, sample key, replicate)`` — never of the
batch position, the batch size, the process or the order of arrival — the
replicate sums are mergeable statistics: adding them across batches, shards
or ranks gives exactly the single-pass result.

The weights come from a counter-based integer hash (Chris Wellons' 32-bit
"lowbias32" mixer, chained over the 32-bit words of the seed, the key and
the replicate index) followed by the inverse CDF of Poisson(1). All integer
arithmetic is done in ``int64`` tensors on values below 2**32 with products
split into 16-bit halves, so nothing ever overflows a signed 64-bit integer
(no reliance on wrap-around), on any device.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from audit.contract.seeds import derive_seed

_MASK32 = 0xFFFFFFFF
_MASK16 = 0xFFFF
# Distinct odd constants that separate the hash streams.
_SEED_SALT = 0x9E3779B9
_SECOND_SALT = 0x85EBCA6B
_REPLICATE_SALT = 0xC2B2AE35
# Poisson(1) support cut at 20: P(X > 20) < 1e-19, below float64 resolution of
# a 32-bit uniform, so the truncation never changes a drawn weight.
_POISSON_MAX = 20
_POISSON_CDF = torch.tensor(
    [sum(math.exp(-1.0) / math.factorial(j) for j in range(k + 1)) for k in range(_POISSON_MAX + 1)],
    dtype=torch.float64,
)
# The inverse CDF on the 32-bit draw u itself: (u + 0.5) / 2**32 <= F(k)  <=>  u <= floor(F(k) 2**32 - 0.5)
# (every step exact in float64), so no float conversion of the N x R draws is needed.
_POISSON_THRESHOLDS = torch.floor(_POISSON_CDF * 2.0**32 - 0.5).to(torch.int64)
# Draws are made in blocks of about this many weights, which keeps the temporaries in cache.
_BLOCK = 1 << 16


def _bucket_table() -> tuple[np.ndarray, np.ndarray]:
    """The inverse CDF by the top 16 bits of the draw: the weight of each of the 65,536 buckets
    of 2**16 draws, and whether a threshold falls inside the bucket (then the weight depends on
    the low bits and is looked up exactly)."""
    thresholds = _POISSON_THRESHOLDS.numpy()[:-1]  # F(20) * 2**32 exceeds every draw
    first = np.arange(1 << 16, dtype=np.int64) << 16
    low = np.searchsorted(thresholds, first, side="left")
    high = np.searchsorted(thresholds, first + _MASK16, side="left")
    return low.astype(np.uint8), low != high


_BUCKET_WEIGHT, _BUCKET_SPLIT = _bucket_table()


def _mul32(x, c: int):
    """Return ``(x * c) mod 2**32`` for ``0 <= x, c < 2**32`` without overflow.

    Works on Python ints and on int64 tensors: every intermediate stays below
    2**49.
    """
    c_lo, c_hi = c & _MASK16, c >> 16
    return (x * c_lo + (((x * c_hi) & _MASK16) << 16)) & _MASK32


def _mix32(x):
    """Wellons' lowbias32 bijective mixer on 32-bit values (int or int64 tensor)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _mix32_u32(x: np.ndarray) -> np.ndarray:
    """:func:`_mix32` on a uint32 array, whose multiplication wraps modulo 2**32 by itself."""
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def _poisson_u32(u32: np.ndarray) -> np.ndarray:
    """The inverse CDF of Poisson(1) on uint32 draws: ``searchsorted(thresholds, u32)``, by bucket.

    A table lookup on the top 16 bits gives the weight of all but the draws in the (at most
    20) buckets a threshold splits; those are searched exactly. Returns uint8 weights.
    """
    bucket = u32 >> np.uint32(16)
    weight = _BUCKET_WEIGHT[bucket]
    split = _BUCKET_SPLIT[bucket]
    if split.any():
        thresholds = _POISSON_THRESHOLDS.numpy()[:-1].astype(np.uint32)
        weight[split] = np.searchsorted(thresholds, u32[split], side="left")
    return weight


def _cpu_weights(h1: Tensor, h2: Tensor, g: Tensor) -> Tensor:
    """The last two mixing rounds and the inverse CDF on the CPU, in uint32 blocks (the same numbers)."""
    a, b, c = (t.numpy().astype(np.uint32) for t in (h1, h2, g))
    out = np.empty((a.shape[0], c.shape[0]), dtype=np.int64)
    step = max(1, _BLOCK // max(c.shape[0], 1))
    with np.errstate(over="ignore"):
        for lo in range(0, a.shape[0], step):
            hi = lo + step
            out[lo:hi] = _poisson_u32(_mix32_u32(_mix32_u32(a[lo:hi, None] ^ c[None, :]) ^ b[lo:hi, None]))
    return torch.from_numpy(out)


def poisson_weights(sample_keys: Tensor, n_bootstrap: int, *, seed: int) -> Tensor:
    """Draw Poisson(1) bootstrap weights keyed by sample, replicate and seed.

    Args:
        sample_keys: stable non-negative per-sample keys (e.g. a 63-bit hash of
            the sample id).
        n_bootstrap: number of replicates R.
        seed: the audit seed (any int; mixed in through :func:`audit.contract.seeds.derive_seed`).

    Returns:
        int64 weights; entry ``[i, b]`` depends only on ``(seed,
        sample_keys[i], b)``.

    Shape:
        sample_keys: (N,) int64 -> (N, R) int64, on ``sample_keys.device``.

    Example:
        >>> w = poisson_weights(torch.tensor([7, 7, 8]), 4, seed=0)
        >>> bool((w[0] == w[1]).all())
        True
    """
    keys = sample_keys.to(torch.int64)
    derived = derive_seed(seed, "bootstrap")
    s = _mix32(_mix32((derived & _MASK32) ^ _SEED_SALT) ^ ((derived >> 32) & _MASK32))
    lo, hi = keys & _MASK32, keys >> 32
    h1 = _mix32(_mix32(hi ^ s) ^ lo)
    h2 = _mix32(_mix32(lo ^ s ^ _SECOND_SALT) ^ hi)
    reps = torch.arange(n_bootstrap, dtype=torch.int64, device=keys.device)
    g = _mix32(reps ^ _REPLICATE_SALT)
    if keys.device.type == "cpu":
        return _cpu_weights(h1, h2, g)
    return _tensor_weights(h1, h2, g)


def _tensor_weights(h1: Tensor, h2: Tensor, g: Tensor) -> Tensor:
    """The last two mixing rounds and the inverse CDF in int64 tensors, on the keys' device (GPUs)."""
    u32 = _mix32(_mix32(h1[:, None] ^ g[None, :]) ^ h2[:, None])
    # smallest k with (u + 0.5) / 2**32 <= F(k): the inverse CDF of Poisson(1)
    return torch.bucketize(u32, _POISSON_THRESHOLDS.to(h1.device), right=False)


def percentile_interval(replicates: Tensor, *, level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap interval over the finite replicate values.

    Quantiles use linear interpolation (numpy's default), so
    ``numpy.percentile(values, [2.5, 97.5])`` gives the same numbers.

    Args:
        replicates: one statistic per replicate; NaN marks a replicate where
            the statistic is undefined (e.g. every weight in a group was 0),
            and such replicates are dropped.
        level: coverage of the interval.

    Returns:
        ``[lo, hi]`` as floats, or None when no replicate is defined.

    Shape:
        replicates: (R,)
    """
    values = replicates.to(torch.float64)
    values = values[torch.isfinite(values)]
    if values.numel() == 0:
        return None
    alpha = (1.0 - level) / 2.0
    q = torch.quantile(values.cpu(), torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64))
    return [float(q[0]), float(q[1])]


def bias_corrected_interval(replicates: Tensor, estimate: float, *, level: float = 0.95) -> list[float] | None:
    """Percentile interval moved by the bootstrap estimate of the bias.

    ``[q_lo - b, q_hi - b]`` with ``b = mean(replicates) - estimate``: for an
    estimator that is unbiased for its target (the debiased squared calibration
    error) while its replicates, drawn from the empirical distribution, are not
    centred on it (the empirical distribution's own calibration error is the
    biased plug-in value), this centres the interval on the estimate and keeps
    the bootstrap's spread.

    Args:
        replicates: one statistic per replicate; non-finite values are dropped.
        estimate: the statistic on the data.
        level: coverage of the interval.

    Returns:
        ``[lo, hi]`` as floats, or None when no replicate is defined.

    Shape:
        replicates: (R,)
    """
    values = replicates.to(torch.float64)
    values = values[torch.isfinite(values)]
    interval = percentile_interval(values, level=level)
    if interval is None:
        return None
    bias = float(values.mean()) - estimate
    return [interval[0] - bias, interval[1] - bias]


def percentile_intervals(replicates: Tensor, *, level: float = 0.95) -> list[list[float] | None]:
    """:func:`percentile_interval` of every row (non-finite values dropped per row).

    Shape:
        replicates: (M, R) -> M intervals
    """
    values = replicates.to(torch.float64).cpu()
    values = torch.where(torch.isfinite(values), values, torch.full_like(values, float("nan")))
    alpha = (1.0 - level) / 2.0
    q = torch.nanquantile(values, torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64), dim=1)  # (2, M)
    out: list[list[float] | None] = []
    for lo, hi in zip(q[0].tolist(), q[1].tolist()):
        out.append(None if lo != lo else [lo, hi])
    return out
