"""AuditStats / audit_metrics against scikit-learn, torchmetrics and hand-written references."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from audit.evaluation.bootstrap import percentile_interval, poisson_weights
from audit.evaluation.calibration import bin_index
from audit.evaluation.metrics import AuditStats, BootstrapWeights, audit_metrics

K = 6


def _predictions(n: int, k: int = K, *, seed: int = 0, sharp: float = 2.0):
    """Random float32 softmax probabilities; labels drawn partly from the probs (mixed calibration)."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(n, k, generator=g) * sharp, dim=1)
    from_probs = torch.multinomial(probs, 1, generator=g).squeeze(1)
    uniform = torch.randint(0, k, (n,), generator=g)
    labels = torch.where(torch.rand(n, generator=g) < 0.6, from_probs, uniform)
    return probs, labels


def assert_close(a, b, path="result", tol=1e-9):
    """Recursive comparison: floats to tol (abs and rel), everything else exactly."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for key in a:
            assert_close(a[key], b[key], f"{path}.{key}", tol)
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{path}[{i}]", tol)
    elif isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None, f"{path}: {a} vs {b}"
        assert math.isclose(a, b, rel_tol=tol, abs_tol=tol), f"{path}: {a} vs {b}"
    else:
        assert a == b, f"{path}: {a} vs {b}"


def _ece_reference(conf: np.ndarray, correct: np.ndarray, n_bins: int = 15):
    """The documented ECE/MCE written as plainly as possible: bins (lo, hi], the first also takes 0."""
    ece, mce, n = 0.0, 0.0, len(conf)
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = [i for i in range(n) if (lo < conf[i] <= hi) or (b == 0 and conf[i] == 0.0)]
        if members:
            acc = sum(correct[i] for i in members) / len(members)
            avg = sum(conf[i] for i in members) / len(members)
            ece += len(members) / n * abs(acc - avg)
            mce = max(mce, abs(acc - avg))
    return ece, mce


def _adaptive_reference(conf: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """Equal-mass ECE on raw samples: rank r goes to bin floor(A r / N)."""
    order = np.argsort(conf, kind="stable")
    n = len(conf)
    total = 0.0
    for a in range(n_bins):
        members = [order[r] for r in range(n) if (n_bins * r) // n == a]
        if members:
            total += abs(sum(correct[i] for i in members) - sum(conf[i] for i in members))
    return total / n


def test_matches_sklearn_on_same_predictions():
    top = K
    probs, labels = _predictions(500, top)
    # class 5: never true; class 4: never predicted nor true -> excluded from macro F1's label set
    probs[:, 4] = 0.0
    probs = probs / probs.sum(dim=1, keepdim=True)
    labels = labels.clamp(max=3)
    result = audit_metrics(probs, labels, top_k=3)
    y, p = labels.numpy(), probs.double().numpy()
    pred = p.argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = {
            "accuracy": skm.accuracy_score(y, pred),
            "macro_f1": skm.f1_score(y, pred, average="macro"),
            "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
            "nll": skm.log_loss(y, p, labels=list(range(top))),
            "top_k_accuracy": skm.top_k_accuracy_score(y, p, k=3, labels=list(range(top))),
        }
    for key, value in expected.items():
        assert math.isclose(result[key], value, rel_tol=1e-9, abs_tol=1e-9), key
    assert result["confusion"] == skm.confusion_matrix(y, pred, labels=list(range(top))).tolist()
    brier = np.mean(np.sum((p - np.eye(top)[y]) ** 2, axis=1))
    assert math.isclose(result["brier"], brier, rel_tol=1e-9)
    mcm = skm.multilabel_confusion_matrix(y, pred, labels=list(range(top)))
    for c, ((tn, fp), (fn, tp)) in enumerate(mcm):
        assert result["per_class_fnr"][c] == (fn / (fn + tp) if fn + tp else None)
        assert math.isclose(result["per_class_fpr"][c], fp / (fp + tn))


def test_brier_matches_sklearn_multiclass_brier():
    probs, labels = _predictions(300, 4, seed=3)
    probs = probs.double() / probs.double().sum(dim=1, keepdim=True)
    result = audit_metrics(probs, labels, n_bootstrap=0)
    expected = skm.brier_score_loss(labels.numpy(), probs.double().numpy(), labels=[0, 1, 2, 3])
    assert math.isclose(result["brier"], expected, rel_tol=1e-9)


def test_ece_mce_match_hand_reference_including_bin_edges():
    probs, labels = _predictions(400, 4, seed=1, sharp=1.5)
    # confidences exactly on bin edges and exactly 1.0
    edge = torch.tensor([[0.6, 0.4, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.4, 0.6, 0.0, 0.0]])
    probs = torch.cat([probs.double(), edge.double()])
    labels = torch.cat([labels, torch.tensor([0, 1, 1, 0])])
    result = audit_metrics(probs, labels, n_bootstrap=0)
    p = probs.numpy()
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == labels.numpy()).astype(float)
    ece, mce = _ece_reference(conf, correct)
    assert math.isclose(result["ece"], ece, rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(result["mce"], mce, rel_tol=1e-9)
    rel = result["reliability"]
    assert len(rel) == 15 and sum(row["n"] for row in rel) == len(conf)
    assert bin_index(torch.tensor([0.0, 1 / 15, 0.6, 0.6 + 1e-12, 1.0], dtype=torch.float64), 15).tolist() == [
        0,
        0,
        8,
        9,
        14,
    ]


def test_confidence_one_goes_in_last_bin_unlike_torchmetrics_issue_3510():
    """One sample at confidence 1.0 (wrong) and one at 0.95 (right): the documented binning puts both in bin (14/15, 1]."""
    from torchmetrics.classification import MulticlassCalibrationError

    probs = torch.tensor([[1.0, 0.0], [0.95, 0.05]], dtype=torch.float64)
    labels = torch.tensor([1, 0])
    ours = audit_metrics(probs, labels, n_bootstrap=0)
    # one bin with accuracy 1/2 and mean confidence 0.975
    assert math.isclose(ours["ece"], 0.475, rel_tol=1e-12)
    assert math.isclose(ours["ece"], _ece_reference(np.array([1.0, 0.95]), np.array([0.0, 1.0]))[0])
    assert ours["reliability"][-1]["n"] == 2
    tm = float(MulticlassCalibrationError(num_classes=2, n_bins=15, norm="l1")(probs, labels))
    # torchmetrics gives 1.0 its own bin: (1/2)|0 - 1| + (1/2)|1 - 0.95| = 0.525
    assert math.isclose(tm, 0.525, rel_tol=1e-6)


def test_ece_agrees_with_torchmetrics_when_no_confidence_is_on_an_edge():
    probs, labels = _predictions(300, 5, seed=2)
    from torchmetrics.classification import MulticlassCalibrationError

    tm = float(MulticlassCalibrationError(num_classes=5, n_bins=15, norm="l1")(probs.double(), labels))
    # torchmetrics accumulates in float32, so agreement is to float32 precision only
    assert math.isclose(audit_metrics(probs, labels, n_bootstrap=0)["ece"], tm, rel_tol=1e-6)


def test_adaptive_ece_exact_when_fine_bins_hold_one_sample():
    g = torch.Generator().manual_seed(5)
    fine = torch.randperm(500, generator=g)[:300] + 500  # distinct fine bins, confidences in (0.5, 1]
    conf = (fine.double() + 0.5) / 1000
    probs = torch.stack([conf, 1 - conf], dim=1)
    labels = (torch.rand(300, generator=g, dtype=torch.float64) > conf).long()  # mixed calibration
    result = audit_metrics(probs, labels, n_bootstrap=0)
    expected = _adaptive_reference(conf.numpy(), (labels == 0).numpy().astype(float))
    assert math.isclose(result["adaptive_ece"], expected, rel_tol=1e-9, abs_tol=1e-12)


def test_adaptive_ece_close_to_exact_on_random_predictions():
    probs, labels = _predictions(2000, 4, seed=6, sharp=1.0)
    p = probs.double().numpy()
    expected = _adaptive_reference(p.max(axis=1), (p.argmax(axis=1) == labels.numpy()).astype(float))
    assert abs(audit_metrics(probs, labels, n_bootstrap=0)["adaptive_ece"] - expected) < 2e-3


def test_streaming_equals_one_shot_for_any_split_and_order():
    probs, labels = _predictions(240, seed=7)
    keys = torch.arange(240) * 7919 + 11
    expected = audit_metrics(probs, labels, sample_keys=keys, top_k=2, n_bootstrap=50)
    g = torch.Generator().manual_seed(0)
    for sizes, permute in (([240], False), ([1] * 5 + [235], True), ([17] * 14 + [2], True), ([100, 0, 140], False)):
        order = torch.randperm(240, generator=g) if permute else torch.arange(240)
        metric = AuditStats(num_classes=K, num_slots=1, top_k=2, n_bootstrap=50)
        for chunk in torch.split(order, sizes):
            metric.update(probs[chunk], labels[chunk], torch.zeros(len(chunk), 1, dtype=torch.long), keys[chunk])
        assert_close(metric.compute()[0], expected)


def test_merged_states_equal_one_pass():
    probs, labels = _predictions(200, seed=8)
    keys = torch.arange(200)
    slots = torch.stack([torch.zeros(200, dtype=torch.long), 1 + labels % 3], dim=1)
    whole, a, b = (AuditStats(num_classes=K, num_slots=4, n_bootstrap=40) for _ in range(3))
    whole.update(probs, labels, slots, keys)
    a.update(probs[:70], labels[:70], slots[:70], keys[:70])
    b.update(probs[70:], labels[70:], slots[70:], keys[70:])
    a.merge_state(b)
    assert_close(a.compute(), whole.compute(), tol=1e-12)


def test_slot_equals_one_shot_on_its_subset_and_empty_slot_is_kept():
    probs, labels = _predictions(300, seed=9)
    keys = torch.arange(300) + 10**12
    group = torch.randint(0, 2, (300,), generator=torch.Generator().manual_seed(1))
    slots = torch.stack([torch.zeros(300, dtype=torch.long), 1 + group], dim=1)  # slot 3 never used
    metric = AuditStats(num_classes=K, num_slots=4, n_bootstrap=30, top_k=3)
    metric.update(probs, labels, slots, keys)
    out = metric.compute()
    assert [row["n"] for row in out] == [300, int((group == 0).sum()), int((group == 1).sum()), 0]
    for value in (0, 1):
        mask = group == value
        assert_close(
            out[1 + value], audit_metrics(probs[mask], labels[mask], sample_keys=keys[mask], n_bootstrap=30, top_k=3)
        )
    empty = out[3]
    assert empty["accuracy"] is None and empty["accuracy_ci"] is None and empty["ece"] is None
    assert empty["confusion"] == [[0] * K for _ in range(K)] and empty["top_confusions"] == []


def test_overconfident_errors_top_confusions_and_nll_floor():
    probs = torch.tensor(
        [[0.95, 0.05, 0.0], [0.9, 0.1, 0.0], [0.89, 0.11, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64
    )
    labels = torch.tensor([1, 1, 1, 0, 1])
    r = audit_metrics(probs, labels, n_bootstrap=0)
    assert r["overconfident_errors"] == 3  # conf 0.95, 0.9 and 1.0 wrong; 0.89 below threshold
    assert r["top_confusions"] == [{"true": 1, "predicted": 0, "count": 3}, {"true": 0, "predicted": 2, "count": 1}]
    eps = float(np.finfo(np.float64).eps)
    expected = -(math.log(0.05) + math.log(0.1) + math.log(0.11) + math.log(eps) + math.log(1.0)) / 5
    assert math.isclose(r["nll"], expected, rel_tol=1e-12)


def test_bootstrap_is_seeded_and_keyed_by_sample():
    keys = torch.tensor([5, 3, 2**62 + 1, 9, 3])
    w = poisson_weights(keys, 64, seed=1)
    assert torch.equal(w, poisson_weights(keys, 64, seed=1))
    assert torch.equal(w[1], w[4]) and not torch.equal(w, poisson_weights(keys, 64, seed=2))
    perm = torch.tensor([3, 0, 4, 2, 1])
    assert torch.equal(poisson_weights(keys[perm], 64, seed=1), w[perm])
    big = poisson_weights(torch.arange(4000), 100, seed=0).double()
    assert abs(big.mean() - 1) < 0.01 and abs(big.var() - 1) < 0.02
    assert abs(float((big == 0).double().mean()) - math.exp(-1)) < 0.005


def test_bootstrap_interval_reproducible_and_covers():
    n, p = 400, 0.8
    labels = torch.zeros(n, dtype=torch.long)
    probs = torch.tensor([[0.7, 0.3]]).repeat(n, 1)
    probs[torch.randperm(n, generator=torch.Generator().manual_seed(0))[:80]] = torch.tensor([0.3, 0.7])
    a = audit_metrics(probs, labels, n_bootstrap=400, seed=0, interval="bootstrap")
    assert a["accuracy"] == p
    assert (
        a["accuracy_ci"] == audit_metrics(probs, labels, n_bootstrap=400, seed=0, interval="bootstrap")["accuracy_ci"]
    )
    other = audit_metrics(probs, labels, n_bootstrap=400, seed=1, interval="bootstrap")["accuracy_ci"]
    assert other != a["accuracy_ci"] and abs(other[0] - a["accuracy_ci"][0]) < 0.02
    lo, hi = a["accuracy_ci"]
    assert lo < p < hi
    expected_width = 2 * 1.96 * math.sqrt(p * (1 - p) / n)
    assert abs((hi - lo) - expected_width) < 0.3 * expected_width


def test_percentile_interval_matches_numpy_and_drops_undefined():
    values = torch.tensor([0.1, float("nan"), 0.5, 0.3, 0.9, 0.2], dtype=torch.float64)
    finite = values[~torch.isnan(values)].numpy()
    assert percentile_interval(values) == pytest.approx(list(np.percentile(finite, [2.5, 97.5])), abs=1e-15)
    assert percentile_interval(torch.tensor([float("nan")])) is None


def _bad(probs=None, labels=None, slots=None, keys=None, num_slots=2):
    probs = torch.tensor([[0.5, 0.5], [0.2, 0.8]]) if probs is None else probs
    labels = torch.tensor([0, 1]) if labels is None else labels
    slots = torch.tensor([[0, 1], [0, 1]]) if slots is None else slots
    keys = torch.tensor([1, 2]) if keys is None else keys
    AuditStats(num_classes=2, num_slots=num_slots, n_bootstrap=5).update(probs, labels, slots, keys)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"probs": torch.tensor([[float("nan"), 0.5], [0.2, 0.8]])}, "1 NaN and 0 inf"),
        ({"probs": torch.tensor([[float("inf"), 0.5], [float("-inf"), 0.8]])}, "0 NaN and 2 inf"),
        ({"probs": torch.tensor([[0.5, 0.6], [0.2, 0.8]])}, "1 rows of probs do not sum to 1"),
        ({"probs": torch.tensor([[2.0, -1.0], [0.2, 0.8]])}, "1 negative"),
        ({"probs": torch.tensor([[0.5, 0.5]])}, "labels must be"),
        ({"labels": torch.tensor([0, 2])}, "1 labels outside"),
        ({"labels": torch.tensor([-1, 0])}, "1 labels outside"),
        ({"slots": torch.tensor([[0, 2], [0, 1]])}, "1 slot indices outside"),
        ({"keys": torch.tensor([-3, 1])}, "negative"),
        ({"labels": torch.tensor([0.0, 1.0])}, "integer"),
    ],
)
def test_bad_input_is_a_named_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _bad(**kwargs)


def test_sum_tolerance_accepts_float32_softmax_rounding():
    probs = torch.tensor([[0.5004, 0.5], [0.2, 0.8]])
    _bad(probs=probs)  # deviation 4e-4 < 1e-3
    with pytest.raises(ValueError, match="not logits"):
        audit_metrics(torch.tensor([[2.0, 1.0]]), torch.tensor([0]))


def test_bad_settings():
    with pytest.raises(ValueError, match="top_k"):
        AuditStats(num_classes=3, num_slots=1, top_k=4)
    with pytest.raises(ValueError, match="num_slots"):
        AuditStats(num_classes=3, num_slots=0)


def test_cpu_and_device_weight_paths_draw_the_same_weights():
    """The uint32 numpy path (CPU) and the int64 tensor path (other devices, run here on the CPU) agree."""
    from audit.contract.seeds import derive_seed
    from audit.evaluation import bootstrap as b

    keys = torch.randint(0, 2**62, (300,), generator=torch.Generator().manual_seed(3))
    derived = derive_seed(5, "bootstrap")
    s = b._mix32(b._mix32((derived & b._MASK32) ^ b._SEED_SALT) ^ ((derived >> 32) & b._MASK32))
    lo, hi = keys & b._MASK32, keys >> 32
    h1, h2 = b._mix32(b._mix32(hi ^ s) ^ lo), b._mix32(b._mix32(lo ^ s ^ b._SECOND_SALT) ^ hi)
    g = b._mix32(torch.arange(77, dtype=torch.int64) ^ b._REPLICATE_SALT)
    assert torch.equal(b._tensor_weights(h1, h2, g), b._cpu_weights(h1, h2, g))
    assert torch.equal(b._cpu_weights(h1, h2, g), poisson_weights(keys, 77, seed=5))


def test_the_bucket_table_inverse_cdf_equals_the_exact_search():
    """Draws at, just below and just above every threshold and at every bucket edge near one, plus random draws."""
    import numpy as np

    from audit.evaluation import bootstrap as b

    thresholds = b._POISSON_THRESHOLDS.numpy()[:-1]
    near = np.concatenate([thresholds + d for d in (-65537, -65536, -1, 0, 1, 65535, 65536)])
    edges = np.concatenate([(thresholds >> 16 << 16) + d for d in (0, 0xFFFF)])
    rand = np.random.default_rng(0).integers(0, 2**32, 200_000)
    u = np.concatenate([near, edges, rand, [0, 2**32 - 1]])
    u = u[(u >= 0) & (u < 2**32)].astype(np.uint32)
    assert int(b._BUCKET_SPLIT.sum()) <= len(thresholds)
    assert np.array_equal(b._poisson_u32(u), np.searchsorted(thresholds.astype(np.uint32), u, side="left"))


def test_shared_bootstrap_weights_give_the_states_of_weights_drawn_per_update():
    gen = torch.Generator().manual_seed(3)
    n, k, r = 96, 4, 50
    probs = torch.softmax(torch.randn(n, k, generator=gen, dtype=torch.float64), dim=1)
    labels = torch.randint(0, k, (n,), generator=gen)
    slots = torch.stack([torch.zeros(n, dtype=torch.long), 1 + torch.randint(0, 3, (n,), generator=gen)], dim=1)
    keys = torch.arange(n) * 7919
    mask = torch.rand(n, generator=gen) < 0.4
    drawn, shared = (AuditStats(num_classes=k, num_slots=4, n_bootstrap=r, seed=5) for _ in range(2))
    drawn.update(probs, labels, slots, keys)  # weights drawn inside, int64
    drawn.update(probs[mask], labels[mask], slots[mask], keys[mask])
    weights = BootstrapWeights.of(poisson_weights(keys, r, seed=5))
    shared.update(probs, labels, slots, keys, weights)
    shared.update(probs[mask], labels[mask], slots[mask], keys[mask], weights.rows(mask))
    for name in drawn._names:
        assert torch.equal(getattr(drawn, name), getattr(shared, name)), name
    with pytest.raises(ValueError, match="non-negative bootstrap weights"):
        shared.update(probs, labels, slots, keys, BootstrapWeights(-weights.counts, weights.sums))
