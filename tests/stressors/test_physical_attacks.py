"""The cross-fitted physical attacks: universal perturbation and adversarial patch (stressors/attacks/physical.py).

Strength is checked on the shipped demo CNN (a trained model): the universal perturbation fools far more
held-out samples than a random-sign perturbation of the same ε, and is at least as strong as ART's
UniversalPerturbation on the same held-out fold; the patch's robust accuracy falls with its share and a
random-noise patch of the same size is much weaker.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.contract.errors import AuditError
from audit.evaluation.conditions import Condition
from audit.evaluation.fitting import check_fitted_attacks
from stressors.adversarial import AdversarialPatch, UniversalPerturbation
from stressors.attacks.physical import folds_of, margin_loss
from stressors.base import StressorError

EPS = 16 / 255


@pytest.fixture(scope="module")
def demo():
    """The demo CNN and 160 audit images it classifies correctly (fixed, deterministic)."""
    from audit.demo import build_demo_data, load_demo_weights

    data = build_demo_data(0)
    model = load_demo_weights().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.tensor(data["audit_x"]).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor(data["audit_y"])
    with torch.no_grad():
        correct = (model(x).argmax(1) == y).nonzero().squeeze(1)[:160]
    ids = torch.arange(7000, 7000 + len(correct), dtype=torch.int64)
    return model, x[correct], y[correct], ids


@pytest.fixture(scope="module")
def tiny():
    """The conformance checks' tiny untrained CNN and 24 photo-like images (fast)."""
    from stressors.testing import photo_like, tiny_classifier

    model = tiny_classifier()
    x = photo_like(24)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y, torch.arange(100, 124, dtype=torch.int64)


def batches(x, y, ids, size):
    return lambda: ((x[i : i + size], y[i : i + size], ids[i : i + size]) for i in range(0, len(x), size))


@pytest.fixture(scope="module")
def universal(demo):
    model, x, y, ids = demo
    attack = UniversalPerturbation(epsilons=[EPS], epochs=6)
    attack.fit(model, batches(x, y, ids, 50), seed=0)
    return attack


@pytest.fixture(scope="module")
def tiny_universal(tiny):
    model, x, y, ids = tiny
    attack = UniversalPerturbation(epsilons=[0.1], epochs=2, fit_batch_size=4)
    attack.fit(model, batches(x, y, ids, 5), seed=0)
    return attack


def predict(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def test_folds_are_a_hash_of_seed_and_sample():
    ids = torch.arange(7000, 7200, dtype=torch.int64)
    folds = folds_of(ids, 0)
    assert set(folds.tolist()) == {0, 1} and 0.35 < folds.float().mean() < 0.65
    assert torch.equal(folds_of(ids.flip(0), 0), folds.flip(0))  # per sample, not per position
    assert not torch.equal(folds_of(ids, 1), folds)


def test_universal_is_cross_fitted_and_respects_epsilon(tiny, tiny_universal):
    model, x, y, ids = tiny
    universal, eps = tiny_universal, 0.1
    out = universal.perturb(model, x, y, severity=eps, sample_ids=ids, seed=0)
    deltas = universal.fitted[eps]
    assert all(0 < float(d.abs().max()) <= np.float32(eps) for d in deltas)  # the fitted δ: within ε exactly
    assert float((out - x).abs().max()) <= eps + 1e-6  # after adding and clipping to [0, 1] (float32 rounding)
    other = 1 - folds_of(ids, 0)
    inside = (x + deltas[0] > 0) & (x + deltas[0] < 1) & (x + deltas[1] > 0) & (x + deltas[1] < 1)
    for i in range(len(x)):  # each sample got the δ fitted on the other fold
        expected = (x[i] + deltas[int(other[i])])[inside[i]]
        assert torch.allclose(out[i][inside[i]], expected, atol=1e-6)
    assert not torch.equal(deltas[0], deltas[1])
    assert universal.fold_sizes == [int((other == 1).sum()), int((other == 0).sum())]


@pytest.mark.slow
def test_universal_fools_far_more_than_a_random_sign_perturbation(demo, universal):
    model, x, y, ids = demo
    clean = predict(model, x)
    out = universal.perturb(model, x, y, severity=EPS, sample_ids=ids, seed=0)
    fooling = float(universal.last_changed.float().mean())
    assert torch.equal(universal.last_changed, predict(model, out) != clean)
    g = torch.Generator().manual_seed(3)
    rates = []
    for _ in range(5):
        sign = (torch.randint(0, 2, x.shape[1:], generator=g) * 2 - 1).float() * EPS
        rates.append(float((predict(model, (x + sign).clamp(0, 1)) != clean).float().mean()))
    assert fooling > 0.15 and fooling > 4 * max(rates), (fooling, rates)
    assert float((predict(model, out) == y).float().mean()) == pytest.approx(1 - fooling)  # all clean-correct


def test_fit_is_deterministic_and_independent_of_the_loader_batch_size(tiny, tiny_universal):
    model, x, y, ids = tiny
    again = UniversalPerturbation(epsilons=[0.1], epochs=2, fit_batch_size=4)
    again.fit(model, batches(x, y, ids, 7), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(again.fitted[0.1], tiny_universal.fitted[0.1]))
    whole = tiny_universal.perturb(model, x, y, severity=0.1, sample_ids=ids, seed=0)
    parts = torch.cat(
        [
            tiny_universal.perturb(model, x[i : i + 5], y[i : i + 5], severity=0.1, sample_ids=ids[i : i + 5], seed=0)
            for i in range(0, len(x), 5)
        ]
    )
    assert torch.equal(whole, parts)


def test_perturb_before_fit_or_with_another_seed_is_refused(tiny, tiny_universal):
    model, x, y, ids = tiny
    with pytest.raises(StressorError, match="must be fitted"):
        UniversalPerturbation(epsilons=[0.1]).perturb(model, x, y, severity=0.1, sample_ids=ids, seed=0)
    with pytest.raises(StressorError, match="same seed"):
        tiny_universal.perturb(model, x, y, severity=0.1, sample_ids=ids, seed=1)


def test_a_fold_without_samples_is_refused(tiny):
    model, x, y, ids = tiny
    one = UniversalPerturbation(epsilons=[EPS], epochs=1)
    with pytest.raises(StressorError, match="both folds; fold . has none"):
        one.fit(model, batches(x[:1], y[:1], ids[:1], 1), seed=0)


def test_margin_loss_is_zero_once_fooled():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    assert margin_loss(logits, torch.tensor([0, 0])).tolist() == [-2.0, 0.0]


@pytest.mark.slow
def test_universal_is_at_least_as_strong_as_arts_on_the_held_out_fold(demo, universal):
    """ART's UniversalPerturbation (Moosavi-Dezfooli's algorithm with an FGSM inner attack) fitted on fold 0,
    evaluated on fold 1, against cvaudit's δ fitted on fold 0: cvaudit's robust accuracy is no higher."""
    from art.attacks.evasion import UniversalPerturbation as ArtUniversal
    from art.estimators.classification import PyTorchClassifier

    model, x, y, ids = demo
    folds = folds_of(ids, 0)
    x0, y0, x1, y1 = x[folds == 0], y[folds == 0], x[folds == 1], y[folds == 1]
    clf = PyTorchClassifier(
        model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10, clip_values=(0, 1)
    )
    art = ArtUniversal(
        clf, attacker="fgsm", attacker_params={"eps": EPS}, delta=0.2, max_iter=2, eps=EPS, norm=np.inf, verbose=False
    )
    np.random.seed(0)
    art.generate(x0.numpy(), y=np.eye(10)[y0.numpy()])
    art_delta = torch.tensor(art.noise[0]).float()
    assert float(art_delta.abs().max()) <= EPS + 1e-6
    ours = float((predict(model, (x1 + universal.fitted[EPS][0]).clamp(0, 1)) == y1).float().mean())
    theirs = float((predict(model, (x1 + art_delta).clamp(0, 1)) == y1).float().mean())
    assert ours <= theirs + 0.005, (ours, theirs)


@pytest.fixture(scope="module")
def patch(demo):
    model, x, y, ids = demo
    attack = AdversarialPatch(shares=[0.02, 0.05, 0.1], epochs=3)
    attack.fit(model, batches(x, y, ids, 50), seed=0)
    return attack


@pytest.mark.slow
def test_patch_robust_accuracy_falls_with_its_share_and_beats_random_noise(demo, patch):
    model, x, y, ids = demo
    clean = float((predict(model, x) == y).float().mean())
    robust = {}
    for share in patch.severities:
        out = patch.perturb(model, x, y, severity=share, sample_ids=ids, seed=0)
        changed = (out != x).any(dim=1).flatten(1).float().mean(dim=1)  # pixels the patch touches, per image
        side = patch.fitted[share][0].shape[-1]
        assert side == round((share * 32 * 32) ** 0.5)
        area = patch.record(share)["area_share"]
        assert area == side**2 / 1024 and f"{area:.4g} of the 32 x 32 image area" in patch.describe_budget(share)
        # pixels touched: at least the square's own area, at most a one-pixel bilinear rim around it
        assert area - 0.5 * side / 1024 <= float(changed.min()) and float(changed.max()) <= (side + 2) ** 2 / 1024
        robust[share] = float((predict(model, out) == y).float().mean())
    shares = sorted(robust)
    assert all(robust[b] <= robust[a] + 0.02 for a, b in zip(shares, shares[1:])), robust
    assert robust[0.1] < clean - 0.25, (robust, clean)  # measured: 1 -> 0.64 (0.95 at 2 %, 0.74 at 5 %)
    # a random-noise patch of the same size, pasted at the same per-sample places: much weaker
    g = torch.Generator().manual_seed(0)
    for share in (0.05, 0.1):
        noise = AdversarialPatch(shares=[share], epochs=1)
        noise.fitted = {share: [torch.rand(patch.fitted[share][0].shape, generator=g) for _ in range(2)]}
        noise.fold_sizes, noise._fit_key = patch.fold_sizes, (0,)
        out = noise.perturb(model, x, y, severity=share, sample_ids=ids, seed=0)
        noisy = float((predict(model, out) == y).float().mean())  # measured: 0.91 at 5 %, 0.79 at 10 %
        assert clean - robust[share] > 1.5 * (clean - noisy) and robust[share] < noisy - 0.1, (share, noisy, robust)


@pytest.mark.slow
def test_patch_placement_is_per_sample_and_batch_size_invariant(demo, patch):
    model, x, y, ids = demo
    whole = patch.perturb(model, x, y, severity=0.05, sample_ids=ids, seed=0)
    alone = torch.cat(
        [
            patch.perturb(model, x[i : i + 1], y[i : i + 1], severity=0.05, sample_ids=ids[i : i + 1], seed=0)
            for i in range(20)
        ]
    )
    assert torch.equal(whole[:20], alone)
    again = AdversarialPatch(shares=[0.02, 0.05, 0.1], epochs=3)
    again.fit(model, batches(x, y, ids, 33), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(again.fitted[0.05], patch.fitted[0.05]))
    assert patch.record(0.05)["patch_side"] == 7 and patch.record(0.05)["fold_sizes"] == patch.fold_sizes


@pytest.mark.parametrize(
    ("cls", "options", "message"),
    [
        (AdversarialPatch, {"shares": [1.0]}, "patch share 1.0 must be a number in (0, 1)"),
        (AdversarialPatch, {"shares": [0]}, "patch share 0 must be a number in (0, 1)"),
        (AdversarialPatch, {"severities": [0.05, 1.5]}, "patch share 1.5"),
        (AdversarialPatch, {"eot_samples": 0}, "option 'eot_samples' must be an integer >= 1"),
        (AdversarialPatch, {"scale_range": [1.2, 0.8]}, "option 'scale_range'"),
        (AdversarialPatch, {"max_rotation": 270}, "option 'max_rotation'"),
        (AdversarialPatch, {"learning_rate": -1}, "option 'learning_rate'"),
        (UniversalPerturbation, {"epsilons": [1.5]}, "outside [0, 1]"),
        (UniversalPerturbation, {"epsilons": [-0.1]}, "outside [0, 1]"),
        (UniversalPerturbation, {"epsilons": [0.0]}, "fits nothing"),
        (UniversalPerturbation, {"epochs": 0}, "option 'epochs' must be an integer >= 1"),
        (UniversalPerturbation, {"fit_batch_size": 0}, "option 'fit_batch_size'"),
        (UniversalPerturbation, {"fit_samples": 1.5}, "option 'fit_samples'"),
        (UniversalPerturbation, {"steps": 3}, "unknown option 'steps'"),
    ],
)
def test_bad_options_are_one_line(cls, options, message):
    with pytest.raises(StressorError) as err:
        cls(**options)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_fitted_attacks_are_refused_in_a_distributed_run():
    conditions = [Condition("clean"), Condition("universal@0.03", UniversalPerturbation(), 0.03, "universal")]
    check_fitted_attacks(conditions, world=1)
    with pytest.raises(AuditError, match="fitted attack .* does not run in a distributed run \\(2 processes\\)"):
        check_fitted_attacks(conditions, world=2)


def test_fit_samples_caps_each_fold_at_the_first_samples_in_order(tiny):
    model, x, y, ids = tiny
    capped = UniversalPerturbation(epsilons=[0.1], epochs=2, fit_batch_size=2, fit_samples=3)
    capped.fit(model, batches(x, y, ids, 5), seed=0)
    assert capped.fold_sizes == [3, 3] and capped.record(0.1)["fit"]["steps"] == [4, 4]
    folds = folds_of(ids, 0)
    first = torch.cat([(folds == f).nonzero().squeeze(1)[:3] for f in (0, 1)]).sort().values
    same = UniversalPerturbation(epsilons=[0.1], epochs=2, fit_batch_size=2, fit_samples=3)
    same.fit(model, batches(x[first], y[first], ids[first], 4), seed=0)  # only those samples: the same fit
    assert all(torch.equal(a, b) for a, b in zip(capped.fitted[0.1], same.fitted[0.1]))


def counting(x, y, ids, size, seen):
    """batches() that counts the images it yields (per call, i.e. per epoch) in ``seen``."""

    def gen():
        seen.append(0)
        for i in range(0, len(x), size):
            seen[-1] += len(x[i : i + size])
            yield x[i : i + size], y[i : i + size], ids[i : i + size]

    return gen


def test_the_fit_stops_reading_once_both_folds_hold_fit_samples(tiny):
    model, x, y, ids = tiny
    folds = folds_of(ids, 0)
    full = max(int((folds == f).nonzero()[1]) for f in (0, 1)) + 1  # images until both folds hold 2
    seen: list[int] = []
    capped = UniversalPerturbation(epsilons=[0.1], epochs=3, fit_batch_size=4, fit_samples=2)
    capped.fit(model, counting(x, y, ids, 1, seen), seed=0)
    assert capped.fold_sizes == [2, 2] and seen == [full] * 3 and full < len(x)
    seen.clear()  # loader batches of 5: the batch holding the last needed image is the last read
    UniversalPerturbation(epsilons=[0.1], epochs=2, fit_samples=2).fit(model, counting(x, y, ids, 5, seen), seed=0)
    assert seen == [5 * -(-full // 5)] * 2


def test_an_empty_fold_is_refused_after_the_first_read(tiny):
    model, x, y, ids = tiny
    seen: list[int] = []
    with pytest.raises(StressorError, match="both folds; fold . has none"):
        UniversalPerturbation(epsilons=[EPS], epochs=5).fit(model, counting(x[:1], y[:1], ids[:1], 1, seen), seed=0)
    assert seen == [1]


@pytest.mark.parametrize("background", [0.0, 0.5])
def test_the_patch_composite_mixes_its_edge_pixels_once(background):
    """A white 3x3 patch, no rotation, at a sub-pixel position on a flat 32x32 image: bilinear sampling spreads
    the patch's 9 pixels of mass over its neighbours, so the image gains exactly 9 x (1 - background) (hand
    computation: x (1 - m) + 1 x m summed is background x (1024 - 9) + 9); the edge pixels are mixed once."""
    attack = AdversarialPatch(shares=[9 / 1024], epochs=1, max_rotation=0)
    state = torch.ones(3, 3, 3)
    attack.fitted, attack.fold_sizes, attack._fit_key = {9 / 1024: [state, state]}, [1, 1], (0,)
    x = torch.full((16, 3, 32, 32), background)
    ids = torch.arange(16, dtype=torch.int64)
    out = attack._paste(x, state, 9 / 1024, ids, 0)
    assert not torch.equal(out[0].round(), out[0])  # sub-pixel: edge pixels are neither 0 nor 1
    expected = background * (1024 - 9) + 9
    assert torch.allclose(out.sum(dim=(2, 3)), torch.full((16, 3), expected), atol=1e-3)
    assert float(out.max()) <= 1 + 1e-6


def test_a_share_whose_patch_cannot_fit_the_image_is_refused():
    # scale 1.2, rotation 22.5 degrees: the bounding box is 1.2 x (cos + sin)(22.5°) = 1.568 x the side
    AdversarialPatch(shares=[0.39]).check_image_size(32, 32)  # side 20 <= 32 / 1.568 = 20.4
    with pytest.raises(StressorError) as err:
        AdversarialPatch(shares=[0.05, 0.42]).check_image_size(32, 32)  # side 21
    line = str(err.value)
    assert "share 0.42 gives a 21 px patch" in line and "32 x 32" in line and "largest side that fits is 20 px" in line
    assert "\n" not in line
    AdversarialPatch(shares=[0.6], scale_range=[1, 1], max_rotation=0).check_image_size(32, 32)  # side 25 fits
    with pytest.raises(StressorError, match="does not fit"):
        AdversarialPatch(shares=[0.6], max_rotation=45, scale_range=[1, 1]).check_image_size(32, 32)  # 25 x 1.414


def test_patch_breaking_points_and_checks_are_in_area_share_not_epsilon(tmp_path):
    from audit.contract.results.breaking_points import BreakingPointDisparity, BreakingPointSummary
    from audit.evaluation.adversarial_checks import check_monotone, sanity_checks
    from audit.evaluation.breaking_points import _condition_dicts, compute_breaking_points, tracks_of
    from reports.breaking_points_view import _panel

    attack = AdversarialPatch(shares=[0.05, 0.1])
    conds = [Condition("clean")] + [Condition(f"patch@{s:g}", attack, s, "patch") for s in (0.05, 0.1)]
    dicts = _condition_dicts(conds)
    assert [t.measure for t in tracks_of(dicts)] == ["area_share"]
    rows = []  # 8 samples: correct on clean, 4 broken at 5 %, 2 at 10 %, 2 never
    for i, (p5, p10) in enumerate([(1, 1)] * 4 + [(0, 1)] * 2 + [(0, 0)] * 2):
        for cid, sev, pred in (("clean", "", 0), ("patch@0.05", "0.05", p5), ("patch@0.1", "0.1", p10)):
            rows.append([f"s{i}", cid, "" if cid == "clean" else "patch", sev, "0", str(pred), "0.9", "0.5", "0.5"])
    keys = compute_breaking_points(
        rows=lambda: iter(rows), conditions=dicts, attributes=[], groupings=[], min_group_size=1,
        out_csv=tmp_path / "bp.csv", names={"patch": "patch"},
    )  # fmt: skip
    entry = BreakingPointSummary.model_validate(keys["breaking_points"][0])
    assert entry.measure == "area_share" and entry.median == pytest.approx(0.05)
    disparity = BreakingPointDisparity.model_validate(
        {
            "id": "patch:camera",
            "stressor": "patch",
            "attribute": "camera",
            "groups_compared": 2,
            "disparity": 0.5,
            "at_severity": 0.05,
            "worst_group": "B",
            "best_group": "A",
            "median_gap": 0.05,
            "excluded": [],
        }
    )
    panel = _panel("patch", "camera", [entry], disparity)
    assert (
        panel["measure_name"] == "patch share of the image area" and "patch share of the image area" in panel["chart"]
    )
    assert "ε" not in panel["chart"] + panel["sentence"] and "share of the image area 0.05" in panel["sentence"]
    failing = check_monotone("patch", [(0.05, 100, 0.5), (0.1, 100, 0.9)], None, 0.0, "area_share")
    assert "share=0.05" in failing["message"] and "eps=" not in failing["message"]
    results = [
        {"id": "clean", "stressor": None, "severity": 0, "model_aware": False, "metrics": {"n": 100, "accuracy": 1.0}},
        {"id": "patch@0.05", "stressor": "patch", "severity": 0.05, "model_aware": True,
         "metrics": {"n": 100, "accuracy": 0.8}},
        {"id": "patch@0.1", "stressor": "patch", "severity": 0.1, "model_aware": True,
         "metrics": {"n": 100, "accuracy": 0.6}},
    ]  # fmt: skip
    monotone = [f for f in sanity_checks(results) if f["attack"] == "patch" and "monotone" in f["check"]]
    assert (
        monotone
        and "patch share of the image area" in monotone[0]["message"]
        and "epsilon" not in monotone[0]["message"]
    )


@pytest.mark.parametrize("mode", ["anonymized", "raw"])
def test_fitted_perturbation_images_follow_the_gallery_mode(tiny_universal, mode):
    from audit.evaluation.evaluate import EvalState, _count_changed, png_data_uri

    state = EvalState(stats={})
    cond = Condition("universal@0.1", tiny_universal, 0.1, "universal")
    _count_changed(state, cond, torch.tensor([True, False]), mode)
    expected = [png_data_uri(t, mode) for t in tiny_universal.artefacts(0.1)]
    assert state.physical[cond.id]["images"] == expected and state.physical[cond.id]["changed"] == 1
    if mode == "anonymized":
        assert expected != [png_data_uri(t, "raw") for t in tiny_universal.artefacts(0.1)]
