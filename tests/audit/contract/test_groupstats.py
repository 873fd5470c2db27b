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
    summary = fairness_summary([empty, one], min_group_size=1, level=0.95)
    assert summary["excluded"] == ["x"]
    assert summary["exclusions"] == [{"value": "x", "n": 0, "reason": "empty"}]
    assert summary["groups_compared"] == 1 and summary["min_group_size"] == 1
    assert summary["tests"] == {}
    bookkeeping = ("excluded", "exclusions", "groups_compared", "min_group_size", "min_positives", "tests")
    assert all(summary[k] is None for k in summary if k not in bookkeeping)


def _labels_with_an_absent_class():
    """Three groups; class 2 never occurs in group b (its TPR is undefined there), class 0 is never predicted in c."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 300)
    group = np.array(["a", "b", "c"])[rng.integers(0, 3, 300)]
    y[(group == "b") & (y == 2)] = 1
    pred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 3, 300))
    pred[(group == "c") & (pred == 0)] = 1
    return y, pred, group


def _groups_of(y, pred, group, k=3):
    return [
        {
            "value": v,
            "n": int((group == v).sum()),
            "confusion": skm.confusion_matrix(y[group == v], pred[group == v], labels=list(range(k))).tolist(),
            "accuracy": float((y[group == v] == pred[group == v]).mean()),
        }
        for v in ("a", "b", "c")
    ]


def test_undefined_rates_follow_fairlearn_and_min_positives_leaves_them_out():
    y, pred, group = _labels_with_an_absent_class()
    groups = _groups_of(y, pred, group)
    summary = fairness_summary(groups, min_group_size=1)
    expected = max(fl_eo((y == c).astype(int), (pred == c).astype(int), sensitive_features=group) for c in range(3))
    assert math.isclose(summary["equalized_odds_difference"], expected, rel_tol=1e-12)
    driver = summary["equalized_odds_driver"]
    # class 2 in group b: TPR undefined -> 0 (fairlearn), which drives the difference
    assert driver["class_index"] == 2 and driver["rate"] == "tpr" and driver["groups"][0] == "b" and driver["n"][0] == 0
    left_out = fairness_summary(groups, min_group_size=1, min_positives=1)
    assert left_out["equalized_odds_difference"] < expected and left_out["min_positives"] == 1
    assert min(left_out["equalized_odds_driver"]["n"]) >= 1
    dp = fairness_summary(groups, min_group_size=1)
    exp_dp = max(fl_dp((y == c).astype(int), (pred == c).astype(int), sensitive_features=group) for c in range(3))
    assert math.isclose(dp["demographic_parity_difference"], exp_dp, rel_tol=1e-12)
    drv = dp["demographic_parity_driver"]
    assert drv["rate"] == "selection" and drv["n"] == [int((group == g).sum()) for g in drv["groups"]]


def test_min_positives_drops_rates_with_few_positives():
    a = {"value": "a", "n": 4, "confusion": [[2, 0], [1, 1]], "accuracy": 0.75}
    b = {"value": "b", "n": 3, "confusion": [[2, 0], [0, 1]], "accuracy": 1.0}
    # class 1: TPR 1/2 (2 positives) vs 1 (1 positive); FPR of class 0 the same; class 0 TPR 1 vs 1
    assert fairness_summary([a, b], min_group_size=1)["equalized_odds_difference"] == 0.5
    assert fairness_summary([a, b], min_group_size=1, min_positives=2)["equalized_odds_difference"] == 0.0
    with pytest.raises(ValueError, match="min_positives"):
        fairness_summary([a, b], min_group_size=1, min_positives=-1)


def test_entry_tests_are_stored_with_the_level(audited):
    _, _, _, _, groups = audited
    summary = fairness_summary(groups, min_group_size=1, level=0.95)
    tests = summary["tests"]
    assert set(tests) >= {"accuracy_gap", "equalized_odds_difference", "demographic_parity_difference"}
    assert 0.0 <= tests["accuracy_gap"]["p_value"] <= 1.0 and tests["accuracy_gap"]["pairs"] == 3
    assert tests["accuracy_gap"]["method"] == "agresti-caffo" and tests["accuracy_gap"]["min_detectable"] > 0
