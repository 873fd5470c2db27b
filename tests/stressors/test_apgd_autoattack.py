"""APGD-CE, APGD-T and the autoattack ensemble: the reference's schedule and losses (hand-written
from the paper), strength against ART's AutoProjectedGradientDescent, the attack contract, EoT on a
randomised model, and bad input (options here, the CLI in test_apgd_cli.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from audit.evaluation.adversarial_checks import WHITE_BOX_STRONGER, attack_traits, sanity_checks
from stressors.attacks.apgd import (
    APGD,
    APGDL2,
    APGDT,
    APGDTL2,
    MEMBERS,
    NOT_BUILT,
    AutoAttack,
    AutoAttackL2,
    checkpoints,
    dlr_loss,
    dlr_targeted_loss,
    is_randomised,
)
from stressors.attacks.square import Square, SquareL2
from stressors.base import StressorError

EPS = 0.1  # the 8x8 digits CNN has an intermediate robust accuracy here


class Normalize(nn.Module):
    def forward(self, x):
        return (x - 0.3) / 0.4


def tiny_cnn() -> nn.Module:
    return nn.Sequential(
        Normalize(),
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )


@pytest.fixture(scope="module")
def digits():
    """A CNN trained for a few seconds on sklearn's 8x8 digits, and 120 held-out samples."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target, dtype=torch.int64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = tiny_cnn()
        order = torch.randperm(len(x))
    train, test = order[:1400], order[1400:1520]
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
    return model, x[test], y[test], torch.arange(500, 500 + len(test), dtype=torch.int64)


def robust(attack, model, x, y, ids, eps=EPS):
    return ~attack.attack(model, x, y, severity=eps, sample_ids=ids, seed=0).fooled


# ------------------------------------------------------------- the reference, by hand


def test_checkpoints_follow_the_papers_p_j():
    # Croce & Hein 2020, Sec. 3.2: p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1.0 + 1e-9:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    assert checkpoints(100) == [round(v * 100) for v in p[1:]]
    assert checkpoints(1) == [1]


def test_dlr_losses_match_their_definitions():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(50, 10, generator=g)
    y = torch.randint(0, 10, (50,), generator=g)
    y[:10] = z[:10].argmax(1)  # some samples classified correctly, some not
    t = torch.randint(0, 10, (50,), generator=g)
    for i in range(50):
        zs = sorted(z[i].tolist())
        best_other = max(v for k, v in enumerate(z[i].tolist()) if k != y[i])
        want = -(z[i, y[i]].item() - best_other) / (zs[-1] - zs[-3] + 1e-12)
        assert dlr_loss(z[i : i + 1], y[i : i + 1]).item() == pytest.approx(want, rel=1e-5)
        want_t = -(z[i, y[i]].item() - z[i, t[i]].item()) / (zs[-1] - 0.5 * (zs[-3] + zs[-4]) + 1e-12)
        assert dlr_targeted_loss(z[i : i + 1], y[i : i + 1], t[i : i + 1]).item() == pytest.approx(want_t, rel=1e-5)


def test_defaults_are_the_references_standard_version():
    a, t = APGD(), APGDT()
    assert (a.n_iter, a.restarts, a.rho, a.eot_samples, a.loss) == (100, 1, 0.75, 20, "ce")
    assert t.n_target_classes == 9 and t.options["momentum"] == 0.75
    aa = AutoAttack()
    assert aa.options["members"] == ["apgd-ce", "apgd-t"]
    assert aa.options["members_not_run"] == ["fab-t", "square"]  # Square is built but not a default member
    assert aa.options["budgets"]["apgd-t"] == {"n_iter": 100, "restarts": 1, "n_target_classes": 9}


# ------------------------------------------------------------ strength against ART


def _art_robust(model, x, y, eps, n_iter, loss):
    from art.attacks.evasion import AutoProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    clf = PyTorchClassifier(
        model, loss=nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=10, clip_values=(0.0, 1.0)
    )
    attack = AutoProjectedGradientDescent(
        clf,
        norm=np.inf,
        eps=eps,
        eps_step=2 * eps,
        max_iter=n_iter,
        nb_random_init=1,
        batch_size=len(x),
        loss_type=loss,
        verbose=False,
    )
    np.random.seed(0)
    adv = torch.from_numpy(attack.generate(x.numpy(), y.numpy()))
    with torch.no_grad():
        return model(adv).argmax(1) == y


@pytest.mark.parametrize("eps", [EPS])
def test_at_least_as_strong_as_art(digits, eps):
    """cvaudit's robust accuracy <= ART's + 0.5 pp at the same budget (APGD-CE, APGD-DLR, ensembles)."""
    model, x, y, ids = digits
    n_iter = 20
    art_ce = _art_robust(model, x, y, eps, n_iter, "cross_entropy")
    art_dlr = _art_robust(model, x, y, eps, n_iter, "difference_logits_ratio")
    ce = robust(APGD(epsilons=[eps], n_iter=n_iter), model, x, y, ids, eps)
    dlr = robust(APGD(epsilons=[eps], n_iter=n_iter, loss="dlr"), model, x, y, ids, eps)
    ensemble = robust(AutoAttack(epsilons=[eps], n_iter=n_iter, n_target_classes=3), model, x, y, ids, eps)
    pct = lambda m: 100 * m.float().mean().item()  # noqa: E731
    assert 5 < pct(art_ce) < 95, "ε should give an intermediate robust accuracy"
    assert pct(ce) <= pct(art_ce) + 0.5, (pct(ce), pct(art_ce))
    assert pct(dlr) <= pct(art_dlr) + 0.5, (pct(dlr), pct(art_dlr))
    assert pct(ensemble) <= pct(art_ce & art_dlr) + 0.5, (pct(ensemble), pct(art_ce & art_dlr))


def test_apgd_beats_fixed_step_pgd_with_a_bad_step(digits):
    """APGD needs no step size; PGD with a too-small fixed step overstates robustness."""
    from stressors.adversarial import PGD

    model, x, y, ids = digits
    pgd = robust(PGD(epsilons=[EPS], steps=20, step_size=EPS / 100), model, x, y, ids)
    apgd = robust(APGD(epsilons=[EPS], n_iter=20), model, x, y, ids)
    assert apgd.float().mean() + 0.2 <= pgd.float().mean()


# ------------------------------------------------------------------------ contract


@pytest.mark.parametrize(
    "attack",
    [
        APGD(n_iter=10),
        APGD(n_iter=10, loss="dlr"),
        APGDT(n_iter=10, n_target_classes=2),
        AutoAttack(n_iter=5, n_target_classes=2),
    ],
    ids=["apgd-ce", "apgd-dlr", "apgd-t", "autoattack"],
)
def test_linf_ball_range_and_fooled_mask(digits, attack):
    model, x, y, ids = digits
    x, y, ids = x[:40], y[:40], ids[:40]
    for eps in (0.0, 8 / 255, 0.2):
        attack.severities = (eps,)
        res = attack.attack(model, x, y, severity=eps, sample_ids=ids, seed=0)
        assert res.images.shape == x.shape and res.images.dtype == x.dtype
        assert res.images.min() >= 0 and res.images.max() <= 1
        assert (res.images - x).abs().max() <= eps + 1e-6
        with torch.no_grad():
            assert torch.equal(res.fooled, model(res.images).argmax(1) != y)
        if eps == 0:
            assert torch.equal(res.images, x)


@pytest.mark.parametrize("cls", [APGDL2, APGDTL2, AutoAttackL2])
def test_l2_ball(digits, cls):
    model, x, y, ids = digits
    options = {"n_iter": 10} | ({} if cls is APGDL2 else {"n_target_classes": 2})
    attack = cls(epsilons=[1.0], **options)
    res = attack.attack(model, x[:40], y[:40], severity=1.0, sample_ids=ids[:40], seed=0)
    assert (res.images - x[:40]).flatten(1).norm(dim=1).max() <= 1.0 + 1e-5
    assert res.fooled.float().mean() > 0.3


@pytest.mark.parametrize(
    "attack", [APGD(epsilons=[EPS], n_iter=10), AutoAttack(epsilons=[EPS], n_iter=5, n_target_classes=2)]
)
def test_batch_size_and_order_do_not_matter(digits, attack):
    model, x, y, ids = digits
    whole = attack.attack(model, x, y, severity=EPS, sample_ids=ids, seed=0)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(5))
    fooled, images = torch.zeros(len(x), dtype=torch.bool), torch.empty_like(x)
    for part in perm.split(37):
        res = attack.attack(model, x[part], y[part], severity=EPS, sample_ids=ids[part], seed=0)
        fooled[part], images[part] = res.fooled, res.images
    assert torch.equal(fooled, whole.fooled)
    assert torch.allclose(images, whole.images, atol=1e-5)
    again = attack.attack(model, x, y, severity=EPS, sample_ids=ids, seed=0)
    assert torch.equal(again.images, whole.images)
    other = attack.attack(model, x, y, severity=EPS, sample_ids=ids, seed=1)
    assert not torch.equal(other.images, whole.images)


def test_ensemble_is_the_union_of_its_members(digits):
    """A sample is robust to autoattack only if it survives every member (each as the stand-alone attack)."""
    model, x, y, ids = digits
    ce = robust(APGD(epsilons=[EPS], n_iter=5), model, x, y, ids)
    t = robust(APGDT(epsilons=[EPS], n_iter=5, n_target_classes=2), model, x, y, ids)
    attack = AutoAttack(epsilons=[EPS], n_iter=5, n_target_classes=2)
    both = robust(attack, model, x, y, ids)
    assert torch.equal(both, ce & t)
    first, second = attack.last_details["members"]
    assert first["member"] == "apgd-ce" and second["member"] == "apgd-t"
    assert first["robust"] == int(ce.sum()) and second["robust"] == int(both.sum())
    assert second["attacked"] == first["robust"], "the second member runs only on samples still robust"
    assert first["seconds"] > 0 and attack.last_details["eot_samples"] == 1
    assert not attack.last_details["randomised_model"]


# --------------------------------------------------------------- randomised models


class Noisy(nn.Module):
    """A randomised defence: Gaussian noise on the input at every forward pass, even in eval mode."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x + 0.1 * torch.randn_like(x))


def test_a_randomised_model_is_detected_and_gets_eot(digits):
    model, x, y, ids = digits
    noisy = Noisy(model).eval()
    assert is_randomised(noisy, x[:8], seed=0) and not is_randomised(model, x[:8], seed=0)
    attack = APGD(epsilons=[EPS], n_iter=5, eot_samples=3)
    torch.manual_seed(1)
    a = attack.attack(noisy, x[:16], y[:16], severity=EPS, sample_ids=ids[:16], seed=0)
    assert attack.last_details["randomised_model"] and attack.last_details["eot_samples"] == 3
    torch.manual_seed(2)
    b = attack.attack(noisy, x[:16], y[:16], severity=EPS, sample_ids=ids[:16], seed=0)
    assert torch.equal(a.images, b.images), "the model's randomness is seeded per batch, not by the caller's RNG"
    torch.manual_seed(1)
    attack.attack(noisy, x[:16], y[:16], severity=EPS, sample_ids=ids[:16], seed=0)  # the model is probed once
    got = torch.randn(3)
    torch.manual_seed(1)
    assert torch.equal(got, torch.randn(3)), "the caller's RNG is left as it was"
    never = APGD(epsilons=[EPS], n_iter=5, eot="never")
    never.attack(noisy, x[:16], y[:16], severity=EPS, sample_ids=ids[:16], seed=0)
    assert never.last_details["eot_samples"] == 1 and never.last_details["randomised_model"]
    assert AutoAttack().eot_samples == 20


def test_eot_averages_the_gradient_over_samples(digits):
    from stressors.attacks.apgd import ce_loss, make_grad_fn

    model, x, y, _ = digits
    noisy = Noisy(model).eval()
    torch.manual_seed(3)
    one = [make_grad_fn(noisy, ce_loss, 1)(x[:4], y[:4], None)[2] for _ in range(8)]
    torch.manual_seed(3)
    mean = make_grad_fn(noisy, ce_loss, 8)(x[:4], y[:4], None)[2]
    assert torch.allclose(mean, torch.stack(one).mean(0), atol=1e-6)


# --------------------------------------------------------------------- bad options


@pytest.mark.parametrize(
    "cls, options, words",
    [
        (APGD, {"epsilons": [1.5]}, r"epsilon 1.5 outside \[0, 1\]"),
        (APGDL2, {"epsilons": [-0.5]}, r"epsilon -0.5 outside \[0, inf\)"),
        (AutoAttack, {"epsilons": [2.0]}, r"epsilon 2.0 outside \[0, 1\]"),
        (APGD, {"eot_samples": 0}, "option 'eot_samples' must be an integer >= 1"),
        (AutoAttack, {"eot_samples": 0}, "option 'eot_samples' must be an integer >= 1"),
        (APGD, {"eot": "sometimes"}, "option 'eot'"),
        (APGD, {"loss": "hinge"}, "option 'loss'"),
        (APGD, {"rho": 1.5}, "option 'rho'"),
        (APGDT, {"loss": "ce"}, "unknown option 'loss'"),
        (APGDT, {"n_target_classes": 0}, "option 'n_target_classes'"),
        (AutoAttack, {"members": ["apgd-ce", "pgd"]}, "unknown member 'pgd'"),
        (AutoAttack, {"members": ["fab"]}, "unknown member 'fab'"),
        (AutoAttackL2, {"members": ["square"], "p_init": 0}, r"option 'p_init' must be a number \(0, 1\]"),
        (AutoAttack, {"members": ["apgd-ce", "apgd-ce"]}, "twice"),
        (AutoAttack, {"members": "apgd-ce"}, "non-empty list"),
        (AutoAttack, {"restarts": 0}, "option 'restarts'"),
        (AutoAttack, {"foo": 1}, "unknown option 'foo'"),
    ],
)
def test_bad_options_are_refused(cls, options, words):
    with pytest.raises(StressorError, match=rf"^{cls.name}: .*{words}"):
        cls(**options)


def test_targeted_dlr_needs_four_classes():
    three = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    x = torch.rand(4, 1, 8, 8)
    with pytest.raises(StressorError, match="apgd_t: the targeted DLR loss needs >= 4 classes, the model has 3"):
        APGDT(epsilons=[0.1]).attack(
            three, x, torch.zeros(4, dtype=torch.int64), severity=0.1, sample_ids=torch.arange(4), seed=0
        )


# ------------------------------------------------------- Square as an ensemble member

SMALL = {"n_iter": 2, "n_target_classes": 2}
QUERIES = 30


class Saturate(nn.Module):
    """Logits x 1e4: the softmax saturates, so the CE gradient is exactly 0 on confident samples
    (gradient masking) while the margin, which Square minimises, keeps its sign."""

    def forward(self, z):
        return z * 1e4


def test_square_fools_what_masked_gradients_left_and_equals_the_stand_alone_square(digits):
    model, x, y, ids = digits
    masked = nn.Sequential(model, Saturate()).eval()
    ce = robust(APGD(epsilons=[EPS], n_iter=2), masked, x, y, ids)
    sq = robust(Square(epsilons=[EPS], n_queries=QUERIES), masked, x, y, ids)
    assert (ce & ~sq).any(), "Square must fool samples APGD-CE left, or this test cannot fail"
    attack = AutoAttack(epsilons=[EPS], members=["square", "apgd-ce"], n_iter=2, n_queries=QUERIES)
    got = robust(attack, masked, x, y, ids)
    assert torch.equal(got, ce & sq)
    first, second = attack.last_details["members"]
    assert (first["member"], second["member"]) == ("apgd-ce", "square")
    assert second["attacked"] == first["robust"] == int(ce.sum()), "square runs only on the samples still robust"
    assert second["robust"] == int(got.sum()) < first["robust"] and second["seconds"] > 0
    assert attack.last_details["zero_gradient_samples"] > 0


def test_the_ensemble_with_square_is_the_union_of_the_stand_alone_members(digits):
    model, x, y, ids = digits
    ce = robust(APGD(epsilons=[EPS], n_iter=2), model, x, y, ids)
    t = robust(APGDT(epsilons=[EPS], **SMALL), model, x, y, ids)
    sq = robust(Square(epsilons=[EPS], n_queries=QUERIES), model, x, y, ids)
    attack = AutoAttack(epsilons=[EPS], members=["square", "apgd-t", "apgd-ce"], n_queries=QUERIES, **SMALL)
    got = robust(attack, model, x, y, ids)
    assert torch.equal(got, ce & t & sq)
    rows = attack.last_details["members"]
    assert [r["member"] for r in rows] == ["apgd-ce", "apgd-t", "square"]
    assert rows[0]["robust"] == int(ce.sum()) and rows[1]["robust"] == int((ce & t).sum())
    assert rows[2]["attacked"] == rows[1]["robust"] and rows[2]["robust"] == int(got.sum())


def test_square_alone_in_the_ensemble_equals_the_stand_alone_square(digits):
    model, x, y, ids = digits
    alone = Square(epsilons=[EPS], n_queries=QUERIES).attack(model, x, y, severity=EPS, sample_ids=ids, seed=3)
    member = AutoAttack(epsilons=[EPS], members=["square"], n_queries=QUERIES)
    got = member.attack(model, x, y, severity=EPS, sample_ids=ids, seed=3)
    assert torch.equal(got.fooled, alone.fooled)
    assert torch.equal(got.images[got.fooled], alone.images[alone.fooled])
    assert member.last_details["zero_gradient_samples"] == 0


EPS_L2 = 1.0  # L2 on the 8x8 digits with saturated logits: APGD-CE (2 iterations) fools few, Square about half


def test_l2_ensemble_with_square_is_the_union_of_the_stand_alone_l2_members(digits):
    """Under L2 the member ``square`` is ``square_l2``: keyed by that name, it equals the stand-alone stressor."""
    model, x, y, ids = digits
    model = nn.Sequential(model, Saturate()).eval()  # masked gradients: APGD-CE leaves samples Square fools
    ce = robust(APGDL2(epsilons=[EPS_L2], n_iter=2), model, x, y, ids, eps=EPS_L2)
    sq = robust(SquareL2(epsilons=[EPS_L2], n_queries=QUERIES), model, x, y, ids, eps=EPS_L2)
    attack = AutoAttackL2(epsilons=[EPS_L2], members=["square", "apgd-ce"], n_iter=2, n_queries=QUERIES)
    got = robust(attack, model, x, y, ids, eps=EPS_L2)
    assert torch.equal(got, ce & sq)
    first, second = attack.last_details["members"]
    assert (first["member"], second["member"]) == ("apgd-ce", "square")
    assert second["attacked"] == first["robust"] == int(ce.sum()) and second["robust"] == int(got.sum())
    assert second["robust"] < first["robust"], "square_l2 must fool samples APGD-CE left, or this test cannot fail"
    alone = SquareL2(epsilons=[EPS_L2], n_queries=QUERIES).attack(model, x, y, severity=EPS_L2, sample_ids=ids, seed=3)
    member = AutoAttackL2(epsilons=[EPS_L2], members=["square"], n_queries=QUERIES)
    only = member.attack(model, x, y, severity=EPS_L2, sample_ids=ids, seed=3)
    assert torch.equal(only.fooled, alone.fooled)
    assert torch.equal(only.images[only.fooled], alone.images[alone.fooled])
    assert float((only.images - x).flatten(1).norm(dim=1).max()) <= EPS_L2 + 1e-5


def test_apgd_dlr_runs_before_apgd_t_and_square_last():
    attack = AutoAttack(members=["square", "fab-t", "apgd-t", "apgd-dlr", "apgd-ce"])
    assert attack.members == ("apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square") == MEMBERS
    assert NOT_BUILT == ()


def test_options_record_squares_budget_and_the_members_not_run():
    default = AutoAttack()
    assert default.options["members"] == ["apgd-ce", "apgd-t"], "Square is not in the default members"
    assert default.options["members_not_run"] == ["fab-t", "square"]
    full = AutoAttack(members=["apgd-ce", "apgd-t", "square"], n_queries=QUERIES, p_init=0.4)
    assert full.options["members_not_run"] == ["fab-t"]
    standard = AutoAttack(members=["apgd-ce", "apgd-t", "fab-t", "square"])
    assert standard.options["members_not_run"] == []
    assert standard.options["budgets"]["fab-t"] == {
        "n_iter": 100,
        "restarts": 1,
        "n_target_classes": 9,
        "alpha_max": 0.1,
        "eta": 1.05,
        "beta": 0.9,
    }
    assert full.options["budgets"]["square"] == {"n_queries": QUERIES, "p_init": 0.4, "restarts": 1}
    assert AutoAttack(members=["square"]).options["budgets"]["square"] == {
        "n_queries": 5000,
        "p_init": 0.8,
        "restarts": 1,
    }
    assert AutoAttackL2().options["members_not_run"] == ["fab-t", "square"]
    l2 = AutoAttackL2(members=["apgd-ce", "apgd-t", "square"], n_queries=QUERIES)
    assert l2.options["members_not_run"] == ["fab-t"] and l2.members == ("apgd-ce", "apgd-t", "square")
    assert type(AutoAttackL2(members=["fab-t"])._attacks["fab-t"]).__name__ == "FABTL2"
    assert l2.options["budgets"]["square"] == {"n_queries": QUERIES, "p_init": 0.8, "restarts": 1}
    assert isinstance(l2._attacks["square"], SquareL2), "under L2 the member 'square' is the L2 Square Attack"


@pytest.mark.parametrize(
    "cls, options, message",
    [
        (
            AutoAttackL2,
            {"members": ["apgd-ce", "fab"]},
            "autoattack_l2: unknown member 'fab'; expected some of ['apgd-ce', 'apgd-dlr', 'apgd-t', 'fab-t', 'square']",
        ),
        (AutoAttackL2, {"n_queries": 0}, "autoattack_l2: option 'n_queries' must be an integer >= 1, got 0"),
        (AutoAttackL2, {"epsilons": [-1.0]}, "autoattack_l2: option 'epsilons': epsilon -1.0 outside [0, inf)"),
        (AutoAttack, {"members": ["fab-t"], "n_target_classes": 0}, "autoattack: option 'n_target_classes' must be"),
        (AutoAttack, {"n_queries": 0}, "autoattack: option 'n_queries' must be an integer >= 1, got 0"),
        (AutoAttack, {"p_init": 1.5}, "autoattack: option 'p_init'"),
    ],
)
def test_bad_square_options_are_one_line(cls, options, message):
    with pytest.raises(StressorError) as err:
        cls(**options)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_the_black_box_check_sees_stand_alone_square():
    assert not attack_traits(Square)["needs_gradients"] and attack_traits(Square)["norm"] == "linf"

    def cond(stressor, eps, acc):
        cid = "clean" if stressor is None else f"{stressor}@{eps:.4g}"
        return {"id": cid, "stressor": stressor, "severity": eps, "metrics": {"n": 1000, "accuracy": acc}}

    conditions = [cond(None, 0, 0.95), cond("apgd", 0.03, 0.60), cond("square", 0.03, 0.30)]
    found = [f for f in sanity_checks(conditions) if f["check"] == WHITE_BOX_STRONGER and f["attack"] == "apgd"]
    assert len(found) == 1 and found[0]["status"] == "warn" and "square" in found[0]["message"]
