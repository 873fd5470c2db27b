"""Simulated data with known ground truth, run through cvaudit's own statistics code.

Shared by ``benchmarks/bench_statistics.py`` (the tables of ``docs/statistics.md``) and the slow
tests that assert the stated bounds (``tests/audit/evaluation/test_statistics_simulation.py``).

- :func:`proportion_intervals`: many datasets of ``n`` Bernoulli(p) outcomes, one
  :class:`~audit.evaluation.metrics.AuditStats` slot per dataset, so each dataset's Poisson
  bootstrap, Wilson and Clopper-Pearson intervals are exactly what a run computes.
- :func:`synthetic_predictions`: K-class probabilities whose top-label calibration is known:
  the top class is right with probability ``confidence - delta``, so the true binned ECE and
  L2 calibration error are both ``delta``.
- :func:`bootstrap_metric_intervals`: the intervals of the bootstrap metrics of many datasets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from audit.contract.intervals import clopper_pearson, proportion_interval
from audit.evaluation import metrics as m

CHUNK = 250  # datasets per AuditStats (memory: slots x replicates)
BATCH = 1024  # samples per update


def _updates(stats: m.AuditStats, probs: torch.Tensor, labels: torch.Tensor, slot: torch.Tensor, key0: int) -> None:
    for lo in range(0, len(labels), BATCH):
        hi = min(lo + BATCH, len(labels))
        keys = torch.arange(key0 + lo, key0 + hi, dtype=torch.int64)
        stats.update(probs[lo:hi], labels[lo:hi], slot[lo:hi, None], keys)


def proportion_intervals(
    p: float, n: int, datasets: int, *, replicates: int = 1000, seed: int = 0
) -> dict[str, np.ndarray]:
    """Wilson, Clopper-Pearson and percentile-bootstrap intervals of ``datasets`` accuracies.

    Returns:
        ``{"k": (D,), "wilson": (D, 2), "clopper-pearson": (D, 2), "bootstrap": (D, 2)}``; the
        bootstrap is the raw percentile interval of ``replicates`` Poisson replicates (NaN where
        undefined); ``k`` the correct counts.
    """
    rng = np.random.default_rng([seed, n, int(p * 1000)])
    out: dict[str, list] = {"k": [], "wilson": [], "clopper-pearson": [], "bootstrap": []}
    key0 = int(rng.integers(0, 2**40))
    for start in range(0, datasets, CHUNK):
        d = min(CHUNK, datasets - start)
        correct = torch.from_numpy(rng.random((d, n)) < p).reshape(-1)
        probs = torch.where(correct[:, None], torch.tensor([0.7, 0.3]), torch.tensor([0.3, 0.7])).double()
        labels = torch.zeros(d * n, dtype=torch.int64)
        slot = torch.arange(d).repeat_interleave(n)
        stats = m.AuditStats(num_classes=2, num_slots=d, n_bins=1, adaptive_bins=1, n_bootstrap=replicates, seed=seed)
        _updates(stats, probs, labels, slot, key0 + start * n)
        key0 += d * n
        st = {name: getattr(stats, name).detach() for name in stats._names}
        boots = m._replicate_intervals(st, 0, d, level=0.95) if replicates else [{} for _ in range(d)]
        results = stats.compute()
        for i in range(d):
            k = int(results[i]["confusion"][0][0])
            out["k"].append(k)
            out["wilson"].append(results[i]["accuracy_ci"])
            out["clopper-pearson"].append(clopper_pearson(k, n))
            out["bootstrap"].append(boots[i].get("accuracy") or [math.nan, math.nan])
    return {key: np.asarray(value, dtype=float) for key, value in out.items()}


def exact_coverage(p: float, n: int, method: str) -> float:
    """The coverage of a closed-form interval at (p, n), summed over the binomial distribution."""
    from scipy.stats import binom

    total = 0.0
    for k in range(n + 1):
        lo, hi = proportion_interval(k, n, method=method)
        if lo <= p <= hi:
            total += float(binom.pmf(k, n, p))
    return total


def synthetic_predictions(
    n: int, rng: np.random.Generator, *, classes: int = 5, delta: float = 0.0, low: float = 0.4
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` predictions of a K-class model whose top label is right with probability ``conf - delta``.

    The top-label confidence is ``low + (1 - low)·Beta(4, 1.5)`` (``low`` 0.4: accuracy about 0.84;
    0.8: about 0.95); the predicted class is uniform; the
    other classes share the rest of the probability (Dirichlet(1)); a wrong prediction's label is
    drawn from the other classes in proportion to their probabilities.

    Returns:
        float64 probabilities (n, K) and int64 labels (n,).
    """
    conf = low + (1 - low) * rng.beta(4.0, 1.5, n)
    pred = rng.integers(0, classes, n)
    rest = rng.dirichlet(np.ones(classes - 1), n) * (1 - conf)[:, None]
    probs = np.empty((n, classes))
    cols = np.arange(classes)[None, :].repeat(n, 0)
    other_cols = cols[cols != pred[:, None]].reshape(n, classes - 1)
    probs[np.arange(n)[:, None], other_cols] = rest
    probs[np.arange(n), pred] = conf
    right = rng.random(n) < np.clip(conf - delta, 0, 1)
    wrong_pick = (rest.cumsum(1) / rest.sum(1, keepdims=True) > rng.random(n)[:, None]).argmax(1)
    labels = np.where(right, pred, other_cols[np.arange(n), wrong_pick])
    return torch.from_numpy(probs), torch.from_numpy(labels.astype(np.int64))


BOOTSTRAP_METRICS = ("ece", "debiased_l2_ce", "brier", "nll", "macro_f1", "balanced_accuracy")


def true_values(delta: float, *, classes: int = 5, n: int = 2_000_000, seed: int = 99) -> dict[str, float]:
    """The population value of each bootstrap metric: ECE and the L2 error are ``delta`` by
    construction; the others from one sample of ``n`` (their plug-in bias is below 1e-5 there)."""
    rng = np.random.default_rng(seed)
    probs, labels = synthetic_predictions(n, rng, classes=classes, delta=delta)
    big = m.audit_metrics(probs, labels, n_bootstrap=0)
    out = {k: float(big[k]) for k in ("brier", "nll", "macro_f1", "balanced_accuracy")}
    out.update(ece=delta, debiased_l2_ce=delta)
    return out


def bootstrap_metric_intervals(
    n: int, datasets: int, *, delta: float, classes: int = 5, replicates: int = 1000, seed: int = 0
) -> Iterator[dict[str, Any]]:
    """Each dataset's metrics and intervals (one AuditStats slot per dataset)."""
    rng = np.random.default_rng([seed, n, int(delta * 1000)])
    key0 = 0
    for start in range(0, datasets, CHUNK):
        d = min(CHUNK, datasets - start)
        probs, labels = synthetic_predictions(d * n, rng, classes=classes, delta=delta)
        slot = torch.arange(d).repeat_interleave(n)
        stats = m.AuditStats(num_classes=classes, num_slots=d, n_bootstrap=replicates, seed=seed)
        _updates(stats, probs, labels, slot, key0)
        key0 += d * n
        yield from stats.compute()
