"""Group fairness against fairlearn and per-group metrics against scikit-learn, on the same predictions."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from fairlearn.metrics import demographic_parity_difference as fl_dp
from fairlearn.metrics import equalized_odds_difference as fl_eo
from sklearn import metrics as skm

from audit.contract.groupstats import fairness_summary
from audit.evaluation.metrics import AuditStats

K, N, GROUPS = 4, 600, ("a", "b", "c")


@pytest.fixture(scope="module")
def audited():
    g = torch.Generator().manual_seed(11)
    group = torch.randint(0, len(GROUPS), (N,), generator=g)
    labels = torch.randint(0, K, (N,), generator=g)
    logits = torch.randn(N, K, generator=g) * 1.5
    logits[torch.arange(N), labels] += 1.0 + group.double().float()  # accuracy differs by group
    probs = torch.softmax(logits.double(), dim=1)
    slots = torch.stack([torch.zeros(N, dtype=torch.long), 1 + group], dim=1)
    metric = AuditStats(num_classes=K, num_slots=1 + len(GROUPS), n_bootstrap=20, top_k=2)
    metric.update(probs, labels, slots, torch.arange(N))
    out = metric.compute()
    groups = [
        {"value": v, **{k: out[1 + i][k] for k in ("n", "confusion", "accuracy", "ece")}} for i, v in enumerate(GROUPS)
    ]
    return probs.numpy(), labels.numpy(), group.numpy(), out, groups


def _fairlearn_max_over_classes(fn, y, pred, sensitive):
    return max(fn((y == c).astype(int), (pred == c).astype(int), sensitive_features=sensitive) for c in range(K))


def test_equalized_odds_and_demographic_parity_match_fairlearn(audited):
    p, y, group, _, groups = audited
    pred = p.argmax(axis=1)
    sensitive = np.array(GROUPS)[group]
    summary = fairness_summary(groups, min_group_size=1)
    assert math.isclose(
        summary["equalized_odds_difference"],
        _fairlearn_max_over_classes(fl_eo, y, pred, sensitive),
        rel_tol=1e-9,
        abs_tol=1e-12,
    )
    assert math.isclose(
        summary["demographic_parity_difference"],
        _fairlearn_max_over_classes(fl_dp, y, pred, sensitive),
        rel_tol=1e-9,
        abs_tol=1e-12,
    )
    accs = {v: skm.accuracy_score(y[group == i], pred[group == i]) for i, v in enumerate(GROUPS)}
    assert summary["worst_group"] == min(accs, key=accs.get)
    assert math.isclose(summary["accuracy_gap"], max(accs.values()) - min(accs.values()), rel_tol=1e-12)
    assert math.isclose(summary["accuracy_ratio"], min(accs.values()) / max(accs.values()), rel_tol=1e-12)
    eces = [g["ece"] for g in groups]
    assert math.isclose(summary["ece_gap"], max(eces) - min(eces), rel_tol=1e-12)
    assert summary["excluded"] == []
    assert summary["equalized_odds_difference"] > 0.05 and summary["demographic_parity_difference"] > 0.01


def test_group_metrics_match_sklearn(audited):
    p, y, group, out, _ = audited
    for i in range(len(GROUPS)):
        mask = group == i
        yi, pi = y[mask], p[mask]
        predi = pi.argmax(axis=1)
        m = out[1 + i]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = {
                "accuracy": skm.accuracy_score(yi, predi),
                "macro_f1": skm.f1_score(yi, predi, average="macro"),
                "balanced_accuracy": skm.balanced_accuracy_score(yi, predi),
                "nll": skm.log_loss(yi, pi, labels=list(range(K))),
                "brier": skm.brier_score_loss(yi, pi, labels=list(range(K))),
                "top_k_accuracy": skm.top_k_accuracy_score(yi, pi, k=2, labels=list(range(K))),
            }
        for key, value in expected.items():
            assert math.isclose(m[key], value, rel_tol=1e-9, abs_tol=1e-12), (i, key)
        assert m["confusion"] == skm.confusion_matrix(yi, predi, labels=list(range(K))).tolist()
    assert out[0]["n"] == N


def test_small_groups_are_excluded_and_marked(audited):
    _, _, _, _, groups = audited
    smallest = min(groups, key=lambda g: g["n"])
    summary = fairness_summary(groups, min_group_size=smallest["n"] + 1)
    assert summary["excluded"] == [smallest["value"]]
    assert summary["exclusions"] == [{"value": smallest["value"], "n": smallest["n"], "reason": "below min_group_size"}]
    rest = [g for g in groups if g is not smallest]
    same = {k: v for k, v in summary.items() if k not in ("excluded", "exclusions", "min_group_size")}
    assert same == {
        k: v
        for k, v in fairness_summary(rest, min_group_size=0).items()
        if k not in ("excluded", "exclusions", "min_group_size")
    }


def test_fewer_than_two_eligible_groups_gives_none():
    empty = {"value": "x", "n": 0, "confusion": [[0, 0], [0, 0]], "accuracy": None, "ece": None}
    one = {"value": "y", "n": 3, "confusion": [[2, 0], [0, 1]], "accuracy": 1.0, "ece": 0.0}
    summary = fairness_summary([empty, one], min_group_size=1)
    assert summary["excluded"] == ["x"]
    assert summary["exclusions"] == [{"value": "x", "n": 0, "reason": "empty"}]
    assert summary["groups_compared"] == 1 and summary["min_group_size"] == 1
    bookkeeping = ("excluded", "exclusions", "groups_compared", "min_group_size")
    assert all(summary[k] is None for k in summary if k not in bookkeeping)


def test_undefined_rates_are_left_out_of_equalized_odds():
    # group b has no positives of class 1: its TPR for class 1 is undefined, not 0
    a = {"value": "a", "n": 4, "confusion": [[2, 0], [1, 1]], "accuracy": 0.75, "ece": None}
    b = {"value": "b", "n": 2, "confusion": [[2, 0], [0, 0]], "accuracy": 1.0, "ece": None}
    summary = fairness_summary([a, b], min_group_size=1)
    # class 0: TPR 1 vs 1, FPR 1/2 vs undefined; class 1: TPR 1/2 vs undefined, FPR 0 vs 0
    assert summary["equalized_odds_difference"] == 0.0
    assert summary["demographic_parity_difference"] == pytest.approx(0.25)
    assert summary["ece_gap"] is None and summary["accuracy_ratio"] == 0.75
