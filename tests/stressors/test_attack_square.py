"""Square Attack, L∞ (``square``) and L2 (``square_l2``): conformance, the reference's schedule and L2
update, black-box use, and strength against ART's SquareAttack."""

from __future__ import annotations

import math
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import stressors
from stressors.adversarial import Square, SquareL2
from stressors.attacks.square import corner, eta, margin, p_selection
from stressors.base import StressorError
from stressors.testing import (
    check_batch_invariance,
    check_determinism,
    check_perturbation_bound,
    check_stressor,
)

EPS = 0.03  # the demo CNN's robust accuracy is intermediate here (about 0.4 of its correct samples)
EPS_L2 = 3.0  # the same for L2: about 0.25 of its correct samples fall at 100 iterations
#: (attack class, an intermediate ε, a huge ε at which nearly every sample falls) for the tests both norms share.
NORMS = [pytest.param(Square, EPS, 0.3, id="linf"), pytest.param(SquareL2, EPS_L2, 20.0, id="l2")]


@pytest.fixture(scope="module")
def demo():
    """The shipped demo CNN and 64 audit images it classifies correctly (fixed, deterministic)."""
    from audit.demo import build_demo_data, load_demo_weights

    data = build_demo_data(0)
    model = load_demo_weights()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.tensor(data["audit_x"]).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor(data["audit_y"])
    with torch.no_grad():
        correct = (model(x).argmax(1) == y).nonzero().squeeze(1)[:64]
    ids = torch.arange(5000, 5000 + len(correct), dtype=torch.int64)
    return model, x[correct], y[correct], ids


class Counting(nn.Module):
    """Counts the rows the attack asks the model about; forbids gradients (a black box)."""

    has_gradients = False

    def __init__(self, net):
        super().__init__()
        self.net, self.rows = net, 0

    def forward(self, x):
        self.rows += x.shape[0]
        with torch.no_grad():
            return self.net(x)


# ------------------------------------------------------------------ the reference's pieces


def test_p_schedule_is_the_references():
    """ART's SquareAttack implements the same AutoAttack schedule independently (``bisect`` over intervals)."""
    from art.attacks.evasion import SquareAttack

    for budget in (100, 1000, 5000):
        ref = SquareAttack.__new__(SquareAttack)
        ref.p_init, ref.max_iter = 0.8, budget
        ours = [p_selection(0.8, i, budget) for i in range(budget)]
        theirs = [ref._get_percentage_of_elements(i) for i in range(budget)]
        # the two differ only exactly at a boundary (AutoAttack: `10 < it <= 50` on int(it/n*1e4); ART: bisect_left)
        assert sum(abs(a - b) > 1e-12 for a, b in zip(ours, theirs)) <= 9, budget
    assert p_selection(0.8, 0, 5000) == 0.8 and p_selection(0.8, 4999, 5000) == pytest.approx(0.8 / 512)


def test_margin_is_true_logit_minus_best_other():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 5.5]])
    assert margin(logits, torch.tensor([0, 1])).tolist() == [1.0, -0.5]


def test_eta_is_the_references_meta_pattern():
    """Nested rectangles of weight 1/k² (k = 1 at the centre of each half), + on top, - below, unit norm."""
    e = eta(5).numpy()
    # rows 0..1, eta_rectangles(2, 5): weight 1 on (1, 2), 1/4 on rows 0..1 x cols 1..3, 1/9 everywhere
    top = np.full((2, 5), 1 / 9)
    top[:, 1:4] += 1 / 4
    top[1, 2] += 1
    # rows 2..4, eta_rectangles(3, 5): weight 1 on its (1, 2), 1/4 on cols 1..3, 1/9 everywhere
    bottom = np.full((3, 5), 1 / 9)
    bottom[:, 1:4] += 1 / 4
    bottom[1, 2] += 1
    expected = np.vstack([top / np.linalg.norm(top), -bottom / np.linalg.norm(bottom)]) / np.sqrt(2)
    assert np.allclose(e, expected, atol=1e-12)
    assert eta(1).tolist() == [[-1.0]] and abs(float(eta(28).norm()) - 1) < 1e-12


def reference_l2_step(x, x_best, eps, p, u):
    """The reference's L2 iteration (``autoattack/square.py``, norm 'L2'), written with its slices, one sample at
    a time; the window corners, ``eta``'s orientation and the signs come from the uniforms ``u`` (M, 5 + C)."""
    c, h, w = x.shape[1:]
    s = max(round(math.sqrt(p * h * w)), 3)  # the reference: int(round(...))
    s += s % 2 == 0
    out = []
    for i in range(x.shape[0]):
        x_curr, delta = x[i : i + 1], (x_best[i : i + 1] - x[i : i + 1]).clone()
        vh, vw, vh2, vw2 = (int(corner(u[i : i + 1, k], n, s)) for k, n in enumerate((h, w, h, w)))
        pattern = eta(s).float().T if u[i, 4] > 0.5 else eta(s).float()
        choice = torch.where(u[i, 5:] < 0.5, -1.0, 1.0).float().view(1, c, 1, 1)
        norms_window_1 = (delta[:, :, vh : vh + s, vw : vw + s] ** 2).sum(dim=(-2, -1), keepdim=True).sqrt()
        mask_1, mask_2 = torch.zeros_like(x_curr), torch.zeros_like(x_curr)
        mask_1[:, :, vh : vh + s, vw : vw + s] = 1.0
        mask_2[:, :, vh2 : vh2 + s, vw2 : vw2 + s] = 1.0
        norms_image = (delta**2).sum().sqrt()
        norms_windows = ((delta * torch.max(mask_1, mask_2)) ** 2).sum().sqrt()
        new = torch.ones([1, c, s, s]) * pattern.view(1, 1, s, s) * choice
        new += delta[:, :, vh : vh + s, vw : vw + s] / (1e-12 + norms_window_1)
        budget = torch.clamp(eps**2 - norms_image**2, min=0) / c + norms_windows**2
        new = new / (1e-12 + (new**2).sum(dim=(-2, -1), keepdim=True).sqrt()) * budget.sqrt()
        delta[:, :, vh2 : vh2 + s, vw2 : vw2 + s] = 0.0
        delta[:, :, vh : vh + s, vw : vw + s] = new
        out.append(torch.clamp(x_curr + delta / ((delta**2).sum().sqrt() + 1e-12) * eps, 0.0, 1.0))
    return torch.cat(out)


@pytest.mark.parametrize("p", [0.8, 0.1, 0.01, 0.0015625])
def test_l2_update_is_the_references_per_sample(p):
    """The batched L2 window update equals the reference's code run sample by sample (windows may overlap)."""
    g = torch.Generator().manual_seed(7)
    x = torch.rand(6, 3, 24, 28, generator=g)
    eps = 1.5
    start = torch.randn(6, 3, 24, 28, generator=g)
    x_best = (x + eps * start / start.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).clamp(0, 1)
    x_best[0] = x[0]  # a sample with no perturbation yet
    u = torch.rand(6, 8, generator=g, dtype=torch.float64)
    u[1, :4] = torch.tensor([0.5, 0.5, 0.5, 0.5])  # the two windows coincide
    ours = SquareL2(epsilons=[eps])._candidate(x, x_best, eps, p, u)
    assert torch.allclose(ours, reference_l2_step(x, x_best, eps, p, u), atol=1e-6)
    assert float((ours - x).flatten(1).norm(dim=1).max()) <= eps + 1e-5


def test_l2_start_is_the_references_tiles():
    """The L2 start: 5 x 5 tiles of side 32 // 5 = 6 from (1, 1), each eta times a sign per channel, norm ε."""
    from audit.contract.seeds import stream_seed
    from stressors.attacks.square import _STREAM
    from stressors.base import generator

    x = torch.full((2, 3, 32, 32), 0.5)
    seeds = [11, 12]
    got = SquareL2(epsilons=[1.0])._start(x, 1.0, [generator(stream_seed(s, _STREAM)) for s in seeds])
    for i, s in enumerate(seeds):
        u = torch.rand((25, 4), generator=generator(stream_seed(s, _STREAM)), dtype=torch.float64)
        delta = torch.zeros(3, 32, 32)
        for k in range(25):
            top, left = 1 + 6 * (k // 5), 1 + 6 * (k % 5)
            pattern = eta(6).float().T if u[k, 0] > 0.5 else eta(6).float()
            delta[:, top : top + 6, left : left + 6] += pattern * torch.where(u[k, 1:] < 0.5, -1.0, 1.0).view(3, 1, 1)
        assert torch.allclose(got[i], 0.5 + delta / delta.norm(), atol=1e-6)
        assert delta[:, 0].abs().sum() == 0 and delta[:, :, 31].abs().sum() == 0  # the border outside the tiles
    assert torch.allclose((got - x).flatten(1).norm(dim=1), torch.ones(2), atol=1e-5)


# ------------------------------------------------------------------ the stressor contract


@pytest.mark.parametrize(("cls", "eps"), [(Square, 0.1), (SquareL2, 1.0)], ids=["linf", "l2"])
def test_square_meets_the_contract_on_a_small_budget(cls, eps):
    check_stressor(cls(epsilons=[0.0, eps], n_queries=20))


@pytest.mark.parametrize(("cls", "eps", "huge"), NORMS)
def test_square_is_deterministic_and_batch_invariant_on_the_demo_model(demo, cls, eps, huge):
    model, x, _, _ = demo
    attack = cls(epsilons=[eps], n_queries=30)
    for check in (check_determinism, check_batch_invariance, check_perturbation_bound):
        check(attack, x[:6], model=model)


@pytest.mark.parametrize(("cls", "eps", "huge"), NORMS)
def test_seed_changes_the_draws(demo, cls, eps, huge):
    model, x, y, ids = demo
    attack = cls(epsilons=[eps], n_queries=20)
    a = attack.perturb(model, x[:8], y[:8], severity=eps, sample_ids=ids[:8], seed=0)
    b = attack.perturb(model, x[:8], y[:8], severity=eps, sample_ids=ids[:8], seed=1)
    assert not torch.equal(a, b)


@pytest.mark.parametrize(("cls", "eps", "huge"), NORMS)
def test_square_needs_no_gradients_and_stops_querying_fooled_samples(demo, cls, eps, huge):
    model, x, y, ids = demo
    black_box = Counting(model)
    res = cls(epsilons=[huge], n_queries=200).attack(black_box, x, y, severity=huge, sample_ids=ids, seed=0)
    n, robust = len(x), int((~res.fooled).sum())
    assert robust < n // 10  # a huge ε: nearly every sample falls
    # clean check + stripes + final check = 3n, the full budget for the survivors, and a small share of it for
    # the others: a fooled sample is no longer queried (every sample queried to the end would be 3n + 200n)
    assert 3 * n + 200 * robust <= black_box.rows < 3 * n + 200 * robust + 200 * n // 4, (black_box.rows, robust)
    with torch.no_grad():
        assert torch.equal(model(res.images).argmax(1) != y, res.fooled)


@pytest.mark.parametrize(("cls", "eps", "huge"), NORMS)
def test_clean_errors_are_not_attacked(demo, cls, eps, huge):
    model, x, y, ids = demo
    wrong = (y + 1) % 10
    black_box = Counting(model)
    res = cls(epsilons=[eps], n_queries=50).attack(
        black_box, x[:8], wrong[:8], severity=eps, sample_ids=ids[:8], seed=0
    )
    assert res.fooled.all() and torch.equal(res.images, x[:8])
    assert black_box.rows == 2 * 8  # the clean check and the final check only


@pytest.mark.parametrize(("cls", "eps", "huge"), NORMS)
def test_restarts_keep_fooled_samples(demo, cls, eps, huge):
    model, x, y, ids = demo
    one = cls(epsilons=[eps], n_queries=30).attack(model, x, y, severity=eps, sample_ids=ids, seed=0)
    two = cls(epsilons=[eps], n_queries=30, restarts=2).attack(model, x, y, severity=eps, sample_ids=ids, seed=0)
    assert bool((two.fooled | ~one.fooled).all()) and two.fooled.sum() >= one.fooled.sum()


# ------------------------------------------------------------------ strength against the reference


@pytest.mark.slow  # ART's SquareAttack queries three times per iteration: minutes on a loaded CPU
def test_at_least_as_strong_as_arts_square_attack_at_equal_budget(demo):
    """Robust accuracy <= ART's + 0.5 pp on 64 correctly classified demo images, 100 iterations each.

    ART is a random search too; its result depends on numpy's global seed. It runs with two seeds
    and the bound is against their mean (both printed on failure). Measured spread on this case
    (64 samples, so one sample is 1.6 pp): ART 0.906 / 0.859 / 0.797 with numpy seeds 0 / 1 / 2,
    cvaudit 0.813 / 0.844 / 0.828 with audit seeds 0 / 1 / 2. Seed noise is thus several pp, far
    above the 0.5 pp margin: the test pins cvaudit's seed 0 against ART's seeds 0 and 1 (mean 0.883);
    benchmarks/bench_square.py compares on more samples.
    """
    model, x, y, ids = demo
    budget = 100
    ours = Square(epsilons=[EPS], n_queries=budget).attack(model, x, y, severity=EPS, sample_ids=ids, seed=0)
    assert (ours.images - x).abs().amax() <= EPS + 1e-6
    ours_acc = 1 - ours.fooled.float().mean().item()
    theirs = art_robust_accuracy(model, x, y, EPS, budget, norm=np.inf)
    assert 0.1 < np.mean(theirs) < 0.9, theirs  # the case is not degenerate
    assert ours_acc <= np.mean(theirs) + 0.005, (ours_acc, theirs)


@pytest.mark.slow  # as above: ART queries three times per iteration
def test_l2_at_least_as_strong_as_arts_l2_square_attack_at_equal_budget(demo):
    """L2: robust accuracy <= ART's ``SquareAttack(norm=2)`` + 0.5 pp, same case and reasoning as the L∞ test.

    Every returned perturbation has L2 norm <= ε (+1e-5 for float32 rounding) and the images stay in
    [0, 1]. ART's L2 search draws from numpy and Python's ``random`` (both seeded). Measured on this
    case (ε = 3, 100 iterations, 64 samples): ART 0.750 / 0.781 with seeds 0 / 1, cvaudit 0.734 / 0.734
    with audit seeds 0 / 1 (at ε = 2: ART 0.859 / 0.844, cvaudit 0.813 / 0.844). ART's L2 update
    divides the new window by its target norm where the reference multiplies (``square_attack.py``,
    ART 1.20.1), which can only weaken ART, so this bound is a floor, not a match of the reference.
    """
    model, x, y, ids = demo
    budget = 100
    ours = SquareL2(epsilons=[EPS_L2], n_queries=budget).attack(model, x, y, severity=EPS_L2, sample_ids=ids, seed=0)
    assert float((ours.images - x).flatten(1).norm(dim=1).max()) <= EPS_L2 + 1e-5
    assert float(ours.images.min()) >= 0 and float(ours.images.max()) <= 1
    ours_acc = 1 - ours.fooled.float().mean().item()
    theirs = art_robust_accuracy(model, x, y, EPS_L2, budget, norm=2)
    assert 0.1 < np.mean(theirs) < 0.9, theirs  # the case is not degenerate
    assert ours_acc <= np.mean(theirs) + 0.005, (ours_acc, theirs)


def art_robust_accuracy(model, x, y, eps, budget, *, norm, seeds=(0, 1)) -> list[float]:
    """ART 1.20.1's SquareAttack (p_init 0.8, 1 restart) robust accuracy per numpy/``random`` seed."""
    from art.attacks.evasion import SquareAttack
    from art.estimators.classification import PyTorchClassifier

    clf = PyTorchClassifier(
        model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10, clip_values=(0.0, 1.0)
    )
    theirs = []
    state, py_state = np.random.get_state(), random.getstate()
    try:
        for art_seed in seeds:
            np.random.seed(art_seed)
            random.seed(art_seed)
            attack = SquareAttack(clf, norm=norm, eps=eps, max_iter=budget, p_init=0.8, nb_restarts=1, verbose=False)
            adv = attack.generate(x.numpy(), y=np.eye(10, dtype=np.float32)[y.numpy()])
            with torch.no_grad():
                theirs.append((model(torch.from_numpy(adv)).argmax(1) == y).float().mean().item())
    finally:
        np.random.set_state(state)
        random.setstate(py_state)
    return theirs


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"epsilons": [1.5]}, r"option 'epsilons': epsilon 1.5 outside \[0, 1\]"),
        ({"epsilons": [-0.1]}, "outside"),
        ({"n_queries": 0}, "option 'n_queries' must be an integer >= 1, got 0"),
        ({"n_queries": 10.5}, "option 'n_queries'"),
        ({"p_init": 0}, r"option 'p_init' must be a number \(0, 1\], got 0"),
        ({"p_init": 1.5}, r"option 'p_init' must be a number \(0, 1\], got 1.5"),
        ({"restarts": 0}, "option 'restarts'"),
        ({"queries": 10}, "unknown option 'queries'"),
    ],
)
def test_bad_options_are_one_line(options, words):
    with pytest.raises(StressorError, match=rf"^square: .*{words}") as info:
        stressors.get("square", **options)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"epsilons": [-0.5]}, r"option 'epsilons': epsilon -0.5 outside \[0, inf\)"),
        ({"epsilons": [float("nan")]}, "option 'epsilons': nan is not a finite number"),
        ({"epsilons": [float("inf")]}, "option 'epsilons': inf is not a finite number"),
        ({"severities": [0.5, 0.5]}, "lists an epsilon twice"),
        ({"n_queries": 0}, "option 'n_queries' must be an integer >= 1, got 0"),
        ({"p_init": 0.0}, r"option 'p_init' must be a number \(0, 1\], got 0.0"),
        ({"p_init": 1.01}, r"option 'p_init' must be a number \(0, 1\], got 1.01"),
        ({"p_init": float("nan")}, r"option 'p_init' must be a number \(0, 1\], got nan"),
        ({"restarts": 0}, "option 'restarts'"),
        ({"norm": "l2"}, "unknown option 'norm'"),
    ],
)
def test_bad_l2_options_are_one_line(options, words):
    """As ``square``; ε may exceed 1 (an L2 radius), ε = 0 is the clean reference point of the sweep."""
    with pytest.raises(StressorError, match=rf"^square_l2: .*{words}") as info:
        stressors.get("square_l2", **options)
    assert "\n" not in str(info.value)
    assert SquareL2(epsilons=[0.0, 2.5, 40.0]).severities == (0.0, 2.5, 40.0)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: square, p_init: 1.5, epsilons: [0.01]}", "square: option 'p_init' must be a number (0, 1], got 1.5"),
        ("{name: square_l2, epsilons: [0.5, -1.0]}", "square_l2: option 'epsilons': epsilon -1.0 outside [0, inf)"),
    ],
    ids=["linf", "l2"],
)
def test_bad_option_through_the_cli_exits_2_before_any_image(tmp_path, entry, message):
    from cvaudit_fixtures import ColourNet, make_dataset, save_model, write_config

    make_dataset(tmp_path)
    save_model(tmp_path / "model.pt", ColourNet())
    cfg = write_config(tmp_path, stressors=f"  - {entry}\n")
    done = subprocess.run(
        [sys.executable, "-m", "audit", "run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert "\n" not in line and message in line, line
    assert not (tmp_path / "out").exists()


def test_settings_are_recorded():
    attack = Square()
    assert attack.options == {
        "epsilons": [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255],
        "n_queries": 5000,
        "p_init": 0.8,
        "restarts": 1,
        "loss": "margin",
    }
    assert not attack.needs_gradients and attack.norm == "linf" and attack.model_aware
    l2 = SquareL2()
    assert l2.options == {**attack.options, "epsilons": [0.0, 0.25, 0.5, 1.0]}  # AutoAttack's L2 budget is the same
    assert not l2.needs_gradients and l2.norm == "l2" and l2.iterative and l2.zero_accuracy_epsilon == 10.0
    assert "L2 norm of the perturbation <= 0.5" in l2.severity_meaning[0.5]
