"""FAB-T (L∞, L2) and autoattack with FAB-T: the projections against a linear/quadratic program and against
torchattacks' (the reference's) code, strength against torchattacks' FAB and AutoAttack, the attack contract
(ε-ball, determinism, batch-size invariance, restarts keyed per sample) and bad options (the CLI's are in
test_apgd_cli.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_apgd_autoattack import EPS, Saturate, digits, robust  # noqa: F401  (digits: a fixture)
from torch import nn

from stressors.attacks.apgd import APGD, APGDT, AutoAttack, AutoAttackL2
from stressors.attacks.fab import FABT, FABTL2, fab_starts, projection_l2, projection_linf
from stressors.attacks.square import Square
from stressors.base import StressorError
from tests.reference_tools import torchattacks

pct = lambda m: 100 * m.float().mean().item()  # noqa: E731


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a loaded 2-core machine, thread contention made these tests 10-30x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------- the projections


def _problems(seed: int, m: int = 12, d: int = 9):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(m, d, generator=g, dtype=torch.float64)
    w = torch.randn(m, d, generator=g, dtype=torch.float64)
    w[0, :3] = 0  # coordinates the hyperplane does not depend on
    # b inside the range w·[0, 1]^d can reach (feasible), except the last two rows (unreachable)
    lo, hi = w.clamp(max=0).sum(1), w.clamp(min=0).sum(1)
    u = torch.rand(m, generator=g, dtype=torch.float64)
    b = lo + u * (hi - lo)
    b[-2], b[-1] = hi[-2] + 1.0, lo[-1] - 1.0
    return t, w, b, lo, hi


def test_linf_projection_is_the_smallest_step_onto_hyperplane_and_box():
    """Each row: the minimal L∞ step to {w·x = b} ∩ [0, 1]^d, checked by a linear program (scipy)."""
    from scipy.optimize import linprog

    t, w, b, _, hi = _problems(0)
    d = projection_linf(t, w, b)
    for i in range(len(t) - 2):
        x = t[i] + d[i]
        assert float(w[i] @ x) == pytest.approx(float(b[i]), abs=1e-8)
        assert x.min() >= -1e-12 and x.max() <= 1 + 1e-12
        n = t.shape[1]  # variables: δ (n) and s; minimise s subject to |δ| <= s, w·δ = b - w·t, 0 <= t + δ <= 1
        a_ub = np.block([[np.eye(n), -np.ones((n, 1))], [-np.eye(n), -np.ones((n, 1))]])
        bounds = [(-float(t[i, j]), 1 - float(t[i, j])) for j in range(n)] + [(0, None)]
        lp = linprog(
            np.r_[np.zeros(n), 1.0],
            A_ub=a_ub,
            b_ub=np.zeros(2 * n),
            A_eq=np.r_[w[i].numpy(), 0.0][None],
            b_eq=[float(b[i] - w[i] @ t[i])],
            bounds=bounds,
        )
        assert lp.status == 0 and float(d[i].abs().max()) == pytest.approx(lp.fun, abs=1e-7)
    for i in (len(t) - 2, len(t) - 1):  # unreachable: as far towards it as the box allows (the box's corner)
        x = t[i] + d[i]
        target = (w[i] > 0).double() if b[i] > hi[i] else (w[i] < 0).double()
        assert torch.allclose(x[w[i] != 0], target[w[i] != 0])


def test_l2_projection_is_the_smallest_step_onto_hyperplane_and_box():
    """Each row: the minimal L2 step to {w·x = b} ∩ [0, 1]^d, checked by a quadratic program (SLSQP)."""
    from scipy.optimize import minimize

    t, w, b, _, _ = _problems(1)
    d = projection_l2(t, w, b)
    for i in range(len(t) - 2):
        x = t[i] + d[i]
        assert float(w[i] @ x) == pytest.approx(float(b[i]), abs=1e-8)
        assert x.min() >= -1e-12 and x.max() <= 1 + 1e-12
        ti, wi, bi = t[i].numpy(), w[i].numpy(), float(b[i])
        qp = minimize(
            lambda z, ti=ti: 0.5 * np.sum((z - ti) ** 2),
            np.clip(ti, 0, 1),
            jac=lambda z, ti=ti: z - ti,
            constraints=[{"type": "eq", "fun": lambda z, wi=wi, bi=bi: wi @ z - bi, "jac": lambda z, wi=wi: wi}],
            bounds=[(0.0, 1.0)] * len(ti),
            method="SLSQP",
            options={"ftol": 1e-14, "maxiter": 500},
        )
        assert qp.success and float(d[i].norm()) == pytest.approx(float(np.linalg.norm(qp.x - ti)), abs=1e-5)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projections_equal_the_references_code(norm):
    fab = torchattacks().attacks.fab
    ours, theirs = {"linf": (projection_linf, fab.projection_linf), "l2": (projection_l2, fab.projection_l2)}[norm]
    g = torch.Generator().manual_seed(2)
    t = torch.rand(64, 3 * 8 * 8, generator=g)
    w = torch.randn(64, 3 * 8 * 8, generator=g)
    w[:, :20] *= torch.rand(64, 20, generator=g) < 0.5
    b = (w * torch.rand(64, 3 * 8 * 8, generator=g)).sum(1) + torch.randn(64, generator=g)
    assert torch.allclose(ours(t, w, b), theirs(t, w, b), atol=1e-6)


# ------------------------------------------------------- strength against torchattacks


def _ta_robust(attack, model, x, y):
    adv = attack(x, y)
    with torch.no_grad():
        return model(adv).argmax(1) == y


@pytest.mark.parametrize(("norm", "epsilons"), [("linf", (0.05, EPS)), ("l2", (0.5, 0.75))])
def test_fab_t_at_least_as_strong_as_torchattacks_fab(digits, norm, epsilons):  # noqa: F811
    """cvaudit's fab_t robust accuracy <= torchattacks' FAB(multi_targeted=True) + 0.5 pp, same budget."""
    ta = torchattacks()
    model, x, y, ids = digits
    cls = FABT if norm == "linf" else FABTL2
    for eps in epsilons:
        ours = robust(cls(epsilons=[eps], n_iter=10), model, x, y, ids, eps)
        ref = ta.FAB(model, norm="Linf" if norm == "linf" else "L2", eps=eps, steps=10, multi_targeted=True)
        theirs = _ta_robust(ref, model, x, y)
        assert 5 < pct(theirs) < 95, f"ε {eps} should give an intermediate robust accuracy ({pct(theirs)})"
        assert pct(ours) <= pct(theirs) + 0.5, (eps, pct(ours), pct(theirs))


def test_autoattack_standard_at_least_as_strong_as_torchattacks_autoattack(digits):  # noqa: F811
    """The four members of the standard version at torchattacks' AutoAttack(version='standard') budget
    (its members' defaults: APGD and APGD-T 10 steps, FAB 10 steps, 9 target classes, Square 5000 queries)."""
    ta = torchattacks()
    model, x, y, ids = digits
    eps = 0.15  # few samples survive the gradient members, so Square's 5000 queries stay cheap
    ours = AutoAttack(epsilons=[eps], members=["apgd-ce", "apgd-t", "fab-t", "square"], n_iter=10)
    got = robust(ours, model, x, y, ids, eps)
    theirs = _ta_robust(ta.AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=0), model, x, y)
    assert 5 < pct(theirs) < 95
    assert pct(got) <= pct(theirs) + 0.5, (pct(got), pct(theirs))
    assert [r["member"] for r in ours.last_details["members"]] == ["apgd-ce", "apgd-t", "fab-t", "square"]


# ----------------------------------------------------------------------- contract


@pytest.mark.parametrize("cls, eps", [(FABT, EPS), (FABTL2, 0.5)])
def test_ball_range_fooled_mask_and_details(digits, cls, eps):  # noqa: F811
    model, x, y, ids = digits
    attack = cls(epsilons=[0.0, eps, 10 * eps], n_iter=10, n_target_classes=3)
    for e in (0.0, eps):
        res = attack.attack(model, x, y, severity=e, sample_ids=ids, seed=0)
        d = (res.images - x).flatten(1)
        size = d.abs().amax(1) if cls is FABT else d.norm(dim=1)
        assert res.images.min() >= 0 and res.images.max() <= 1 and size.max() <= e + 1e-5
        with torch.no_grad():
            assert torch.equal(res.fooled, model(res.images).argmax(1) != y)
        assert torch.equal(res.images[~res.fooled], x[~res.fooled]), "unfooled samples come back unchanged"
    assert 0 < pct(~res.fooled) < 90
    (row,) = attack.last_details["members"]
    assert row["member"] == "fab-t" and row["attacked"] == len(x) and row["robust"] == int((~res.fooled).sum())
    assert attack.last_details["eot_samples"] == 1 and not attack.last_details["randomised_model"]


@pytest.mark.parametrize(
    "attack",
    [
        FABT(epsilons=[EPS], n_iter=10, n_target_classes=3),
        FABTL2(epsilons=[0.5], n_iter=10, n_target_classes=3, restarts=2),
        AutoAttack(epsilons=[EPS], members=["apgd-ce", "fab-t"], n_iter=5, n_target_classes=2),
    ],
    ids=["fab_t", "fab_t_l2-restarts", "autoattack"],
)
def test_batch_size_and_order_do_not_matter(digits, attack):  # noqa: F811
    model, x, y, ids = digits
    eps = attack.severities[0]
    whole = attack.attack(model, x, y, severity=eps, sample_ids=ids, seed=0)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(5))
    fooled, images = torch.zeros(len(x), dtype=torch.bool), torch.empty_like(x)
    for part in perm.split(37):
        res = attack.attack(model, x[part], y[part], severity=eps, sample_ids=ids[part], seed=0)
        fooled[part], images[part] = res.fooled, res.images
    assert torch.equal(fooled, whole.fooled)
    assert torch.allclose(images, whole.images, atol=1e-5)
    assert torch.equal(attack.attack(model, x, y, severity=eps, sample_ids=ids, seed=0).images, whole.images)


def test_restart_starts_are_keyed_per_sample_and_within_half_epsilon():
    x = torch.rand(4, 3, 8, 8)
    a = fab_starts(x, [1, 2, 3, 4], 0.1, "linf", run=1)
    assert torch.equal(a[1:], fab_starts(x[1:], [2, 3, 4], 0.1, "linf", run=1)), "a sample's start is its own"
    assert not torch.equal(a, fab_starts(x, [1, 2, 3, 4], 0.1, "linf", run=2))
    assert (a - x).abs().max() <= 0.05 + 1e-7
    b = fab_starts(x, [1, 2, 3, 4], 1.0, "l2", run=1)
    assert (b - x).flatten(1).norm(dim=1).max() <= 0.5 + 1e-6


def test_restarts_fool_more_and_depend_on_the_seed(digits):  # noqa: F811
    model, x, y, ids = digits
    eps = 0.75  # L2, one iteration per run: the random restarts (within ε/2) fool samples the first run left
    one = FABTL2(epsilons=[eps], n_iter=1, n_target_classes=1)
    four = FABTL2(epsilons=[eps], n_iter=1, n_target_classes=1, restarts=4)
    r1, r4 = robust(one, model, x, y, ids, eps), robust(four, model, x, y, ids, eps)
    assert (r1 & ~r4).any() and not (r4 & ~r1).any(), "restarts only add fooled samples"
    other = four.attack(model, x, y, severity=eps, sample_ids=ids, seed=1).images
    assert not torch.equal(other, four.attack(model, x, y, severity=eps, sample_ids=ids, seed=0).images)


def test_more_target_classes_fool_more(digits):  # noqa: F811
    model, x, y, ids = digits
    r1 = robust(FABT(epsilons=[EPS], n_iter=10, n_target_classes=1), model, x, y, ids)
    r9 = robust(FABT(epsilons=[EPS], n_iter=10), model, x, y, ids)
    assert (r1 & ~r9).any() and not (r9 & ~r1).any()


# ------------------------------------------------------------ FAB-T in the ensemble


def test_the_ensemble_with_fab_t_is_the_union_of_the_stand_alone_members(digits):  # noqa: F811
    model, x, y, ids = digits
    model = nn.Sequential(model, Saturate()).eval()  # APGD-CE's gradient vanishes; with 2 steps APGD-T leaves some
    small = {"n_iter": 2, "n_target_classes": 1}
    ce = robust(APGD(epsilons=[EPS], n_iter=3), model, x, y, ids)
    t = robust(APGDT(epsilons=[EPS], **small), model, x, y, ids)
    fab = robust(FABT(epsilons=[EPS], **small), model, x, y, ids)
    sq = robust(Square(epsilons=[EPS], n_queries=20), model, x, y, ids)
    assert (ce & t & ~fab).any(), "FAB-T must fool samples the APGD members left, or this test cannot fail"
    attack = AutoAttack(epsilons=[EPS], members=["square", "fab-t", "apgd-t", "apgd-ce"], n_queries=20, **small)
    got = robust(attack, model, x, y, ids)
    assert torch.equal(got, ce & t & fab & sq)
    rows = attack.last_details["members"]
    assert [r["member"] for r in rows] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert rows[2]["attacked"] == rows[1]["robust"] == int((ce & t).sum())
    assert rows[2]["robust"] == int((ce & t & fab).sum()) and rows[3]["robust"] == int(got.sum())
    assert attack.options["members_not_run"] == []


def test_l2_ensemble_member_fab_t_is_the_stand_alone_fab_t_l2(digits):  # noqa: F811
    model, x, y, ids = digits
    alone = FABTL2(epsilons=[0.5], n_iter=5, n_target_classes=2).attack(
        model, x, y, severity=0.5, sample_ids=ids, seed=3
    )
    member = AutoAttackL2(epsilons=[0.5], members=["fab-t"], n_iter=5, n_target_classes=2)
    got = member.attack(model, x, y, severity=0.5, sample_ids=ids, seed=3)
    assert torch.equal(got.fooled, alone.fooled) and torch.equal(got.images, alone.images)


# --------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "cls, options, message",
    [
        (FABT, {"epsilons": [1.5]}, "fab_t: option 'epsilons': epsilon 1.5 outside [0, 1]"),
        (FABTL2, {"epsilons": [-0.5]}, "fab_t_l2: option 'epsilons': epsilon -0.5 outside [0, inf)"),
        (FABT, {"n_iter": 0}, "fab_t: option 'n_iter' must be an integer >= 1, got 0"),
        (FABT, {"restarts": 1.5}, "fab_t: option 'restarts' must be an integer >= 1, got 1.5"),
        (FABT, {"n_target_classes": 0}, "fab_t: option 'n_target_classes' must be an integer >= 1, got 0"),
        (FABT, {"alpha_max": 1.5}, "fab_t: option 'alpha_max' must be a number (0, 1], got 1.5"),
        (FABT, {"beta": 0}, "fab_t: option 'beta' must be a number (0, 1], got 0"),
        (FABT, {"eta": 0.9}, "fab_t: option 'eta' must be a number >= 1, got 0.9"),
        (FABT, {"eta": True}, "fab_t: option 'eta' must be a number >= 1, got True"),
        (FABT, {"loss": "ce"}, "fab_t: unknown option 'loss'"),
    ],
)
def test_bad_options_are_one_line(cls, options, message):
    with pytest.raises(StressorError) as err:
        cls(**options)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_single_class_model_is_refused():
    one = nn.Sequential(nn.Flatten(), nn.Linear(64, 1))
    x = torch.rand(4, 1, 8, 8)
    with pytest.raises(StressorError, match="fab_t: a targeted attack needs >= 2 classes, the model has 1"):
        FABT(epsilons=[0.1]).attack(
            one, x, torch.zeros(4, dtype=torch.int64), severity=0.1, sample_ids=torch.arange(4), seed=0
        )


@pytest.mark.parametrize("cls", [FABT, FABTL2])
def test_half_precision_images_are_refused_in_one_line(cls):
    """FAB's projections bisect in the images' precision; in float16 they do not converge, so half images
    get a named refusal instead of a crash deep in the bisection."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).half()
    x = torch.rand(4, 1, 8, 8).half()
    with pytest.raises(StressorError) as err:
        cls(epsilons=[0.1]).attack(
            model, x, torch.zeros(4, dtype=torch.int64), severity=0.1, sample_ids=torch.arange(4), seed=0
        )
    assert str(err.value) == f"{cls.name}: needs float32 or float64 images, got float16"
