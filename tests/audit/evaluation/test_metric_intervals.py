"""Intervals and the debiased calibration error of AuditStats against independent references.

- proportions: statsmodels' proportion_confint (Wilson, Clopper-Pearson) on the same counts;
- bootstrap metrics: every replicate recomputed with scikit-learn (sample weights = the
  Poisson weights) or a plain loop, then numpy's percentile;
- the debiased L2 calibration error: a loop over bins written from Kumar et al. (2019).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from statsmodels.stats.proportion import proportion_confint

from audit.evaluation.bootstrap import poisson_weights
from audit.evaluation.metrics import AuditStats, audit_metrics, state_bytes, state_shapes

K, N, R = 5, 400, 300


def _predictions(n=N, k=K, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(n, k, generator=g, dtype=torch.float64) * 2.0, dim=1)
    labels = torch.where(
        torch.rand(n, generator=g) < 0.7,
        torch.multinomial(probs, 1, generator=g).squeeze(1),
        torch.randint(0, k, (n,), generator=g),
    )
    return probs, labels


def _bins(conf, n_bins=15):
    edges = np.arange(1, n_bins) / n_bins
    return np.searchsorted(edges, conf, side="left")  # (lo, hi] with 0 in the first bin


def _debiased_reference(conf, correct, weights=None, n_bins=15):
    """Kumar et al. (2019): sum_b p_b [(acc_b - conf_b)^2 - acc_b (1 - acc_b) / (n_b - 1)], bins < 2 give 0."""
    w = np.ones(len(conf)) if weights is None else weights
    b = _bins(conf, n_bins)
    total, n = 0.0, w.sum()
    for j in range(n_bins):
        m = b == j
        n_b = w[m].sum()
        if n_b < 2:
            continue
        acc, avg = (w[m] * correct[m]).sum() / n_b, (w[m] * conf[m]).sum() / n_b
        total += n_b / n * ((acc - avg) ** 2 - acc * (1 - acc) / (n_b - 1))
    return total


def test_proportion_intervals_match_statsmodels():
    probs, labels = _predictions()
    p, y = probs.numpy(), labels.numpy()
    pred = p.argmax(axis=1)
    rank = (p > p[np.arange(N), y][:, None]).sum(axis=1)
    for interval, method in (("wilson", "wilson"), ("clopper-pearson", "beta")):
        r = audit_metrics(probs, labels, top_k=2, n_bootstrap=0, interval=interval)
        expected = proportion_confint(int((pred == y).sum()), N, alpha=0.05, method=method)
        assert r["accuracy_ci"] == pytest.approx(list(expected), abs=1e-12)
        expected = proportion_confint(int((rank < 2).sum()), N, alpha=0.05, method=method)
        assert r["top_k_accuracy_ci"] == pytest.approx(list(expected), abs=1e-12)
        for c in range(K):
            fn, pos = int(((y == c) & (pred != c)).sum()), int((y == c).sum())
            fp, neg = int(((y != c) & (pred == c)).sum()), int((y != c).sum())
            assert r["per_class_fnr_ci"][c] == pytest.approx(
                list(proportion_confint(fn, pos, method=method)), abs=1e-12
            )
            assert r["per_class_fpr_ci"][c] == pytest.approx(
                list(proportion_confint(fp, neg, method=method)), abs=1e-12
            )


def test_closed_form_intervals_do_not_depend_on_the_seed_or_the_replicates():
    probs, labels = _predictions()
    a = audit_metrics(probs, labels, seed=0, n_bootstrap=50)
    b = audit_metrics(probs, labels, seed=7, n_bootstrap=0)
    assert a["accuracy_ci"] == b["accuracy_ci"] and a["per_class_fnr_ci"] == b["per_class_fnr_ci"]
    assert b["ece_ci"] is None and b["brier_ci"] is None and b["debiased_l2_ce_ci"] is None


def test_bootstrap_intervals_match_a_replicate_by_replicate_reference():
    probs, labels = _predictions()
    keys = torch.arange(N) * 31 + 5
    r = audit_metrics(probs, labels, sample_keys=keys, n_bootstrap=R, seed=3, interval="bootstrap", top_k=2)
    w = poisson_weights(keys, R, seed=3).numpy().astype(float)  # (N, R)
    p, y = probs.numpy(), labels.numpy()
    pred, conf = p.argmax(axis=1), p.max(axis=1)
    correct = (pred == y).astype(float)
    brier = ((p - np.eye(K)[y]) ** 2).sum(axis=1)
    nll = -np.log(np.clip(p[np.arange(N), y], np.finfo(float).eps, None))
    topk = ((p > p[np.arange(N), y][:, None]).sum(axis=1) < 2).astype(float)
    bins = _bins(conf)
    reps = {k: [] for k in ("accuracy", "top_k_accuracy", "brier", "nll", "ece", "macro_f1", "balanced_accuracy")}
    for j in range(R):
        wj = w[:, j]
        m = wj > 0
        reps["accuracy"].append((wj * correct).sum() / wj.sum())
        reps["top_k_accuracy"].append((wj * topk).sum() / wj.sum())
        reps["brier"].append((wj * brier).sum() / wj.sum())
        reps["nll"].append((wj * nll).sum() / wj.sum())
        gaps = [abs((wj * (correct - conf))[bins == b].sum()) for b in range(15)]
        reps["ece"].append(sum(gaps) / wj.sum())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reps["macro_f1"].append(skm.f1_score(y[m], pred[m], average="macro", sample_weight=wj[m]))
            reps["balanced_accuracy"].append(skm.balanced_accuracy_score(y[m], pred[m], sample_weight=wj[m]))
    for name, values in reps.items():
        expected = np.percentile(values, [2.5, 97.5])
        if name == "ece":  # moved by the bootstrap bias, clipped at 0
            expected = np.clip(expected - (np.mean(values) - r["ece"]), 0.0, None)
        assert r[f"{name}_ci"] == pytest.approx(list(expected), rel=1e-9, abs=1e-12), name


def test_debiased_l2_ce_matches_kumar_reference_and_its_interval_is_bias_corrected():
    probs, labels = _predictions(seed=4)
    keys = torch.arange(N)
    r = audit_metrics(probs, labels, sample_keys=keys, n_bootstrap=R, seed=1)
    p, y = probs.numpy(), labels.numpy()
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    squared = _debiased_reference(conf, correct)
    assert math.isclose(r["debiased_l2_ce"], math.sqrt(max(squared, 0.0)), rel_tol=1e-9, abs_tol=1e-12)
    w = poisson_weights(keys, R, seed=1).numpy().astype(float)
    reps = np.array([_debiased_reference(conf, correct, w[:, j]) for j in range(R)])
    lo, hi = np.percentile(reps, [2.5, 97.5]) - (reps.mean() - squared)
    expected = [math.sqrt(max(lo, 0.0)), math.sqrt(max(hi, 0.0))]
    assert r["debiased_l2_ce_ci"] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_debiased_value_is_near_zero_for_a_calibrated_model_while_the_plug_in_ece_is_not():
    g = torch.Generator().manual_seed(0)
    n = 5000
    conf = 0.5 + 0.5 * torch.rand(n, generator=g, dtype=torch.float64)
    right = torch.rand(n, generator=g, dtype=torch.float64) < conf  # calibrated by construction
    probs = torch.stack([conf, 1 - conf], dim=1)
    labels = (~right).long()
    r = audit_metrics(probs, labels, n_bootstrap=200)
    assert r["ece"] > 0.005 and r["debiased_l2_ce"] < 0.5 * r["ece"]
    assert r["debiased_l2_ce_ci"][0] == 0.0  # the interval reaches 0: calibration is not excluded


@pytest.mark.parametrize("interval", ["wilson", "clopper-pearson", "bootstrap"])
@pytest.mark.parametrize("all_right", [True, False])
def test_no_degenerate_interval_when_all_samples_are_right_or_wrong(interval, all_right):
    n = 30
    probs = torch.tensor([[0.9, 0.1]], dtype=torch.float64).repeat(n, 1)
    labels = torch.zeros(n, dtype=torch.long) if all_right else torch.ones(n, dtype=torch.long)
    r = audit_metrics(probs, labels, n_bootstrap=100, interval=interval, top_k=1)
    for key in ("accuracy_ci", "top_k_accuracy_ci"):
        lo, hi = r[key]
        assert hi - lo > 0.05, (key, r[key])
        assert (hi == 1.0) if all_right else (lo == 0.0)
    assert r["accuracy_ci"] == audit_metrics(probs, labels, n_bootstrap=0)["accuracy_ci"] or interval != "bootstrap"


def test_weights_given_equal_weights_drawn():
    probs, labels = _predictions(100)
    keys = torch.arange(100) + 99
    slots = torch.zeros(100, 1, dtype=torch.long)
    a, b = (AuditStats(num_classes=K, num_slots=1, n_bootstrap=40, seed=2) for _ in range(2))
    a.update(probs, labels, slots, keys)
    b.update(probs, labels, slots, keys, poisson_weights(keys, 40, seed=2))
    assert a.compute() == b.compute()
    with pytest.raises(ValueError, match="weights must be"):
        b.update(probs, labels, slots, keys, torch.ones(100, 39))


def test_state_bytes_is_the_memory_of_the_states():
    m = AuditStats(num_classes=K, num_slots=9, n_bootstrap=100, top_k=2, interval="bootstrap")
    held = sum(
        getattr(m, name).numel() * getattr(m, name).element_size()
        for name in state_shapes(num_classes=K, num_slots=9, n_bootstrap=100, top_k=2, interval="bootstrap")
    )
    assert held == state_bytes(num_classes=K, num_slots=9, n_bootstrap=100, top_k=2, interval="bootstrap")
    big = state_bytes(num_classes=1000, num_slots=9, n_bootstrap=100)
    assert "boot_true" not in state_shapes(num_classes=1000, num_slots=9, n_bootstrap=100) and big > 0


def test_classwise_intervals_absent_above_the_class_limit():
    probs, labels = _predictions(50, k=101)
    r = audit_metrics(probs, labels, n_bootstrap=20)
    assert r["macro_f1_ci"] is None and r["balanced_accuracy_ci"] is None and r["ece_ci"] is not None


def test_bad_interval_settings():
    with pytest.raises(ValueError, match="interval must be one of"):
        AuditStats(num_classes=2, num_slots=1, interval="wald")
    with pytest.raises(ValueError, match="needs n_bootstrap"):
        AuditStats(num_classes=2, num_slots=1, interval="bootstrap", n_bootstrap=0)
