"""Tests of the adversarial attacks against an independent plain-torch PGD on a trained digits CNN."""

from __future__ import annotations

import math

import foolbox as fb
import pytest
import torch
from torch import nn

from stressors.adversarial import FGSM, PGD, PGDL2, DeepFool, HopSkipJump
from stressors.base import StressorError

EPS = 0.1  # pixel units; robust accuracy of the digits CNN is intermediate here
STEPS = 20


# ------------------------------------------------------------------------ fixtures


class Normalize(nn.Module):
    """Mean/std inside the model, as the audit's model wrapper does."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x - self.mean) / self.std


def tiny_cnn(classes: int = 10) -> nn.Module:
    return nn.Sequential(
        Normalize(0.3, 0.4),
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, classes),
    )


@pytest.fixture(scope="module")
def digits():
    """A CNN trained for a few seconds on sklearn's 8x8 digits and 240 held-out test samples."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target, dtype=torch.int64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = tiny_cnn()
        order = torch.randperm(len(x))
    train, test = order[:1400], order[1400:1640]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(6):
        for batch in train[torch.randperm(len(train), generator=g)].split(100):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    xt, yt = x[test], y[test]
    ids = torch.arange(1000, 1000 + len(test), dtype=torch.int64)
    return model, xt, yt, ids


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def reference_pgd(model, x, y, *, eps: float, steps: int, step: float, g: torch.Generator):
    """Madry et al. L-inf PGD in plain autograd: uniform random start, signed steps, projection."""
    adv = (x + (torch.rand(x.shape, generator=g) * 2 - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + step * grad.sign()
        adv = (x + (adv - x).clamp(-eps, eps)).clamp(0, 1)
    return adv


def noise_bound(p: float, n: int) -> float:
    """Three standard errors of a difference of two independent accuracies, plus one sample."""
    return 3 * math.sqrt(2 * max(p * (1 - p), 0.05) / n) + 1 / n


# ---------------------------------------------------------------- independent checks


def test_clean_model_is_trained(digits):
    model, x, y, _ = digits
    assert accuracy(model, x, y) > 0.9


def test_pgd_agrees_with_plain_torch_reference(digits):
    model, x, y, ids = digits
    ours = PGD(epsilons=[EPS], steps=STEPS).perturb(model, x, y, severity=EPS, sample_ids=ids, seed=0)
    ref = reference_pgd(model, x, y, eps=EPS, steps=STEPS, step=2.5 * EPS / STEPS, g=torch.Generator().manual_seed(7))
    ours_acc, ref_acc = accuracy(model, ours, y), accuracy(model, ref, y)
    assert 0.05 < ref_acc < 0.9, "epsilon should give an intermediate robust accuracy"
    assert abs(ours_acc - ref_acc) <= noise_bound(ref_acc, len(y)), (ours_acc, ref_acc)


def test_default_pgd_much_stronger_than_foolbox_default_step(digits):
    model, x, y, ids = digits
    eps = 32 / 255
    ours = PGD(epsilons=[eps]).perturb(model, x, y, severity=eps, sample_ids=ids, seed=0)
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device="cpu")
    _, weak, _ = fb.attacks.LinfPGD(steps=10)(fmodel, x, y, epsilons=eps)
    assert accuracy(model, weak, y) - accuracy(model, ours, y) >= 0.2


def test_fgsm_is_no_stronger_than_pgd(digits):
    model, x, y, ids = digits
    for eps in (EPS, 0.2):
        fgsm = FGSM(epsilons=[eps]).perturb(model, x, y, severity=eps, sample_ids=ids, seed=0)
        pgd = PGD(epsilons=[eps]).perturb(model, x, y, severity=eps, sample_ids=ids, seed=0)
        assert accuracy(model, fgsm, y) >= accuracy(model, pgd, y)


def test_robust_accuracy_curve_decreases_to_zero(digits):
    model, x, y, ids = digits
    attack = PGD(epsilons=[0.0, 0.05, EPS, 0.5])
    curve = [
        accuracy(model, attack.perturb(model, x, y, severity=e, sample_ids=ids, seed=0), y) for e in attack.severities
    ]
    assert curve[0] == accuracy(model, x, y)
    assert curve == sorted(curve, reverse=True)
    assert curve[-1] == 0.0


# --------------------------------------------------------------- output contract


@pytest.mark.parametrize("attack", [FGSM(), PGD(), DeepFool(steps=10)], ids=lambda a: a.name)
def test_linf_attacks_respect_the_ball_and_range(digits, attack):
    model, x, y, ids = digits
    x, y, ids = x[:32], y[:32], ids[:32]
    for eps in attack.severities:
        adv = attack.perturb(model, x, y, severity=eps, sample_ids=ids, seed=3)
        assert adv.shape == x.shape and adv.dtype == x.dtype and adv.device == x.device
        assert adv.min() >= 0 and adv.max() <= 1
        assert (adv - x).abs().max() <= eps + 1e-6
        fooled = attack.last_result.fooled
        with torch.no_grad():
            assert torch.equal(fooled, model(adv).argmax(1) != y)


def test_pgd_l2_respects_the_l2_ball(digits):
    model, x, y, ids = digits
    attack = PGDL2(epsilons=[0.5, 2.0])
    for eps in attack.severities:
        adv = attack.perturb(model, x[:32], y[:32], severity=eps, sample_ids=ids[:32], seed=0)
        assert (adv - x[:32]).flatten(1).norm(dim=1).max() <= eps + 1e-5
    assert attack.last_result.fooled.float().mean() > 0.3


def test_zero_epsilon_returns_the_clean_images(digits):
    model, x, y, ids = digits
    for attack in (FGSM(), PGD(), PGDL2(), DeepFool(steps=5)):
        adv = attack.perturb(model, x[:16], y[:16], severity=0.0, sample_ids=ids[:16], seed=0)
        assert torch.equal(adv, x[:16]), attack.name


# ------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_images_and_other_seed_differs(digits):
    model, x, y, ids = digits
    attack = PGD(epsilons=[EPS], steps=5)
    a = attack.perturb(model, x[:32], y[:32], severity=EPS, sample_ids=ids[:32], seed=0)
    b = attack.perturb(model, x[:32], y[:32], severity=EPS, sample_ids=ids[:32], seed=0)
    c = attack.perturb(model, x[:32], y[:32], severity=EPS, sample_ids=ids[:32], seed=1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_fooled_samples_do_not_depend_on_batch_split(digits):
    model, x, y, ids = digits
    attack = PGD(epsilons=[EPS], steps=10, restarts=2)
    whole = attack.attack(model, x, y, severity=EPS, sample_ids=ids, seed=0)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(5))
    fooled = torch.zeros(len(x), dtype=torch.bool)
    images = torch.empty_like(x)
    for part in perm.split(37):
        res = attack.attack(model, x[part], y[part], severity=EPS, sample_ids=ids[part], seed=0)
        fooled[part], images[part] = res.fooled, res.images
    assert torch.equal(fooled, whole.fooled)
    assert torch.allclose(images, whole.images, atol=1e-5)


def test_restarts_take_the_worst_case_per_sample(digits):
    model, x, y, ids = digits
    one = PGD(epsilons=[0.05], steps=5).attack(model, x, y, severity=0.05, sample_ids=ids, seed=0)
    many = PGD(epsilons=[0.05], steps=5, restarts=4).attack(model, x, y, severity=0.05, sample_ids=ids, seed=0)
    assert bool((many.fooled | ~one.fooled).all()), "a sample fooled by restart 1 must stay fooled"
    assert many.fooled.sum() >= one.fooled.sum()
    with torch.no_grad():
        assert torch.equal(model(many.images).argmax(1) != y, many.fooled)
    assert PGD(thorough=True).restarts == 5


def test_deepfool_result_does_not_depend_on_call_order(digits):
    model, x, y, ids = digits
    x, y, ids = x[:32], y[:32], ids[:32]
    first = DeepFool(epsilons=[0.05, 0.2], steps=10)
    first.perturb(model, x, y, severity=0.2, sample_ids=ids, seed=0)
    cached = first.perturb(model, x, y, severity=0.05, sample_ids=ids, seed=0)
    fresh = DeepFool(epsilons=[0.05, 0.2], steps=10).perturb(model, x, y, severity=0.05, sample_ids=ids, seed=0)
    assert torch.equal(cached, fresh)


# ---------------------------------------------------------------- HopSkipJump


class NoGradients(nn.Module):
    """A model like an ONNX session: no autograd, ``has_gradients = False``."""

    has_gradients = False

    def __init__(self, net):
        super().__init__()
        self.net = net

    @torch.no_grad()
    def forward(self, x):
        return self.net(x)


class Constant(nn.Module):
    """Predicts class 0 for every image."""

    def forward(self, x):
        return torch.zeros(x.shape[0], 3, dtype=x.dtype) + torch.tensor([1.0, 0.0, 0.0])


def test_hopskipjump_fools_a_model_without_gradients(digits):
    model, x, y, ids = digits
    attack = HopSkipJump(epsilons=[0.02, 0.5], steps=3, initial_gradient_eval_steps=20, max_gradient_eval_steps=50)
    blind = NoGradients(model).eval()
    state = torch.get_rng_state()
    small = attack.perturb(blind, x[:16], y[:16], severity=0.02, sample_ids=ids[:16], seed=0)
    large = attack.perturb(blind, x[:16], y[:16], severity=0.5, sample_ids=ids[:16], seed=0)
    assert torch.equal(torch.get_rng_state(), state), "the global RNG must be left as it was"
    assert (small - x[:16]).abs().max() <= 0.02 + 1e-6
    assert not attack.last_failed_starts.any()
    assert attack.last_result.fooled.float().mean() >= 0.9
    again = HopSkipJump(epsilons=[0.02, 0.5], steps=3, initial_gradient_eval_steps=20, max_gradient_eval_steps=50)
    assert torch.equal(again.perturb(blind, x[:16], y[:16], severity=0.5, sample_ids=ids[:16], seed=0), large)


def test_hopskipjump_reports_samples_it_cannot_start_from():
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(6, dtype=torch.int64)
    attack = HopSkipJump(epsilons=[0.5], steps=2, init_tries=3)
    adv = attack.perturb(Constant(), x, y, severity=0.5, sample_ids=torch.arange(6), seed=0)
    assert attack.last_failed_starts.tolist() == [True] * 6
    assert not attack.last_result.fooled.any(), "samples without a start count as not fooled"
    assert torch.equal(adv, x)


def test_hopskipjump_needs_no_start_for_clean_errors():
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.ones(4, dtype=torch.int64)  # Constant predicts 0: all already wrong
    attack = HopSkipJump(epsilons=[0.1], steps=2)
    attack.perturb(Constant(), x, y, severity=0.1, sample_ids=torch.arange(4), seed=0)
    assert attack.last_result.fooled.all() and not attack.last_failed_starts.any()


# -------------------------------------------------------------------- bad input


class Detaching(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.detach())


class Rounding(nn.Module):
    """8-bit quantisation in the preprocessing: the input gradient is zero everywhere."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(torch.round(x * 255) / 255)


@pytest.mark.parametrize("cls", [FGSM, PGD, PGDL2, DeepFool])
def test_gradient_attack_on_model_without_gradients_names_hopskipjump(digits, cls):
    model, x, y, ids = digits
    with pytest.raises(StressorError, match=rf"{cls.name}: .*has_gradients.*hopskipjump"):
        cls().perturb(NoGradients(model), x[:4], y[:4], severity=0.0, sample_ids=ids[:4], seed=0)


@pytest.mark.parametrize("wrapper, words", [(Detaching, "detaches"), (Rounding, "all zero")])
def test_preprocessing_that_breaks_gradients_is_refused(digits, wrapper, words):
    model, x, y, ids = digits
    with pytest.raises(StressorError, match=rf"pgd: .*{words}"):
        PGD().perturb(wrapper(model), x[:4], y[:4], severity=0.0, sample_ids=ids[:4], seed=0)


@pytest.mark.parametrize("bad", [[1.5], [-0.01], ["a"], [True], [float("nan")], [], 0.1, [0.1, 0.1]])
@pytest.mark.parametrize("cls", [FGSM, PGD, DeepFool, HopSkipJump])
def test_bad_epsilons_are_refused(cls, bad):
    with pytest.raises(StressorError, match=rf"^{cls.name}: .*epsilons"):
        cls(epsilons=bad)


def test_l2_epsilon_may_exceed_one_but_not_be_negative():
    assert PGDL2(epsilons=[3.0]).severities == (3.0,)
    with pytest.raises(StressorError, match="pgd_l2: option 'epsilons'"):
        PGDL2(epsilons=[-1.0])


@pytest.mark.parametrize(
    "options, words",
    [
        ({"stepz": 3}, "unknown option 'stepz'"),
        ({"steps": 0}, "option 'steps'"),
        ({"steps": 2.5}, "option 'steps'"),
        ({"restarts": 3, "random_start": False}, "restarts"),
        ({"step_size": 0.01, "step_size_factor": 2.0}, "not both"),
        ({"thorough": "yes"}, "option 'thorough'"),
        ({"epsilons": [0.1], "severities": [0.1]}, "not both"),
    ],
)
def test_bad_pgd_options_are_refused(options, words):
    with pytest.raises(StressorError, match=rf"^pgd: .*{words}"):
        PGD(**options)


def test_unknown_option_is_refused_by_every_attack():
    for cls in (FGSM, PGD, PGDL2, DeepFool, HopSkipJump):
        with pytest.raises(StressorError, match=rf"^{cls.name}: unknown option 'foo'"):
            cls(foo=1)


def test_bad_batches_are_refused(digits):
    model, x, y, ids = digits
    attack = PGD(epsilons=[EPS])
    with pytest.raises(StressorError, match="pgd: severity 0.3"):
        attack.perturb(model, x[:4], y[:4], severity=0.3, sample_ids=ids[:4], seed=0)
    with pytest.raises(StressorError, match="pgd: labels"):
        attack.perturb(model, x[:4], y[:3], severity=EPS, sample_ids=ids[:4], seed=0)
    with pytest.raises(StressorError, match="pgd: sample_ids"):
        attack.perturb(model, x[:4], y[:4], severity=EPS, sample_ids=ids[:4].int(), seed=0)
    with pytest.raises(StressorError, match=r"pgd: images must lie in \[0, 1\]"):
        attack.perturb(model, x[:4] * 2, y[:4], severity=EPS, sample_ids=ids[:4], seed=0)


def test_settings_are_recorded():
    attack = PGD(epsilons=[0.0, 8 / 255], steps=40)
    assert attack.model_aware and attack.severities == (0.0, 8 / 255)
    assert attack.options["steps"] == 40 and attack.options["restarts"] == 1
    assert attack.step_for(8 / 255) == pytest.approx(2.5 * (8 / 255) / 40)
    assert "2/255" not in attack.severity_meaning[8 / 255] and "8/255" in attack.severity_meaning[8 / 255]
