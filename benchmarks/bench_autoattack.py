"""Strength and time of cvaudit's APGD / FAB-T / Square / AutoAttack against ART and torchattacks.

Two models on the demo's 32x32 digits:

- ``demo``: the shipped demo CNN (``audit/demo_weights``, standard training);
- ``adv``: the same architecture trained here with FGSM + random-start adversarial training
  (Wong et al. 2020, "Fast is better than free") at ε = 16/255, seed 0 (nothing is cached).

For every L∞ ε of the sweep, robust accuracy on the first ``--n`` audit images of:

- cvaudit ``apgd`` (APGD-CE), ``apgd`` with ``loss: dlr`` (APGD-DLR), ``apgd_t``, ``fab_t``, ``square``
  and the ``autoattack`` ensemble (its default members apgd-ce, apgd-t) and, with ``--queries``, its
  standard version (members apgd-ce, apgd-t, fab-t, square);
- ART 1.20 ``AutoProjectedGradientDescent`` with the same budget (``max_iter`` = n_iter,
  ``nb_random_init`` 1, ``eps_step`` 2ε = APGD's initial step), cross-entropy and DLR loss,
  and their ensemble (a sample is robust only if it survives both);
- torchattacks 3.5.1 (from its side folder, ``tests/reference_tools.py``; ``make test`` installs it):
  ``APGD(loss='ce')``, ``APGDT``, ``FAB(multi_targeted=True)`` and ``Square`` at the same budget
  (``steps`` = n_iter, ``n_classes`` = targets + 1, so that APGDT / FAB attack ``--targets`` classes;
  ``n_queries``), and their ensemble (robust only if a sample survives all four, as its MultiAttack).

The claims checked: cvaudit's robust accuracy <= the reference's + 0.5 pp (APGD-CE vs ART-CE and
torchattacks' APGD, APGD-DLR vs ART-DLR, autoattack vs ART's CE+DLR, APGD-T vs APGDT, FAB-T vs FAB,
the standard ensemble vs torchattacks' four). Square against torchattacks' Square is printed but not
in that column: both are random searches with different draws, so one run each differs by a few
samples either way (``--square-seeds`` compares their means over seeds). Times are wall-clock seconds for the
whole batch (same batch, same budget, same thread count).

``--timing R`` measures only APGD-CE against torchattacks' APGD and ART's, R times each, interleaved,
and prints the medians (the issue's target: APGD-CE <= 1.2x torchattacks' APGD time on the CPU).
``--square-seeds K`` compares only Square with torchattacks' Square over K seeds (``--queries``);
``--apgdt-seeds K`` only APGD-T with torchattacks' APGDT over K seeds.

Usage:
    python benchmarks/bench_autoattack.py [--n 100] [--n-iter 100] [--targets 9] [--queries 0]
        [--threads 1] [--models demo,adv] [--epsilons 2,4,8,16] [--timing 0] [--square-seeds 0] [--apgdt-seeds 0]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audit.demo import DigitsCNN, build_demo_data, load_demo_weights
from stressors.adversarial import APGD, APGDT, FABT, AutoAttack, Square
from tests.reference_tools import load_torchattacks

MEAN, STD = 0.5, 0.25


class Normalised(nn.Module):
    """The demo's mean/std inside the model (cvaudit's attacks see [0, 1] images)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - MEAN) / STD)


def frozen(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def adversarially_trained(data: dict, *, eps: float = 16 / 255, epochs: int = 6, seed: int = 0) -> nn.Module:
    """DigitsCNN trained with FGSM + random start (step 1.25ε) on the demo's training split."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Normalised(DigitsCNN())
        x = torch.from_numpy(data["train_x"]).permute(0, 3, 1, 2).float().contiguous()
        y = torch.from_numpy(data["train_y"])
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            for idx in torch.randperm(len(y), generator=g).split(64):
                xb, yb = x[idx], y[idx]
                delta = (torch.rand(xb.shape, generator=g) * 2 - 1) * eps
                delta.requires_grad_(True)
                (grad,) = torch.autograd.grad(F.cross_entropy(model((xb + delta).clamp(0, 1)), yb), delta)
                delta = (delta + 1.25 * eps * grad.sign()).clamp(-eps, eps).detach()
                loss = F.cross_entropy(model((xb + delta).clamp(0, 1)), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
    return frozen(model)


def art_robust(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, n_iter: int, loss: str):
    """Per-sample robustness under ART's APGD (1 random init, eps_step 2ε) and the seconds it took."""
    from art.attacks.evasion import AutoProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    clf = PyTorchClassifier(
        model,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type="cpu",
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
    start = time.perf_counter()
    adv = attack.generate(x.numpy(), y.numpy())
    seconds = time.perf_counter() - start
    with torch.no_grad():
        return model(torch.from_numpy(adv)).argmax(1) == y, seconds


def ta_robust(attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """Per-sample robustness under a torchattacks attack and the seconds it took."""
    torch.manual_seed(0)
    start = time.perf_counter()
    adv = attack(x, y)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        return model(adv).argmax(1) == y, seconds


def ours_robust(attack, model, x, y, eps):
    ids = torch.arange(len(x), dtype=torch.int64)
    start = time.perf_counter()
    result = attack.attack(model, x, y, severity=eps, sample_ids=ids, seed=0)
    return ~result.fooled, time.perf_counter() - start


def sweep(name: str, model: nn.Module, x, y, args) -> list[str]:
    """One table row per ε for this model (printed as it is measured)."""
    rows = []
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    ta = _torchattacks()
    for eps in [float(e) / 255 for e in args.epsilons.split(",")]:
        kw = {"epsilons": [eps], "n_iter": args.n_iter}
        n_classes = args.targets + 1
        ce, t_ce = ours_robust(APGD(**kw), model, x, y, eps)
        dlr, _ = ours_robust(APGD(loss="dlr", **kw), model, x, y, eps)
        tgt, t_t = ours_robust(APGDT(n_target_classes=args.targets, **kw), model, x, y, eps)
        fab, t_fab = ours_robust(FABT(n_target_classes=args.targets, **kw), model, x, y, eps)
        aa, t_aa = ours_robust(AutoAttack(n_target_classes=args.targets, **kw), model, x, y, eps)
        art_ce, t_art = art_robust(model, x, y, eps, args.n_iter, "cross_entropy")
        art_dlr, _ = art_robust(model, x, y, eps, args.n_iter, "difference_logits_ratio")
        ta_ce, t_ta_ce = ta_robust(ta.APGD(model, eps=eps, steps=args.n_iter, loss="ce"), model, x, y)
        ta_t, t_ta_t = ta_robust(ta.APGDT(model, eps=eps, steps=args.n_iter, n_classes=n_classes), model, x, y)
        ta_fab, t_ta_fab = ta_robust(
            ta.FAB(model, eps=eps, steps=args.n_iter, multi_targeted=True, n_classes=n_classes), model, x, y
        )
        masks = {"ce": ce, "dlr": dlr, "t": tgt, "fab": fab, "aa": aa, "art_ce": art_ce, "art_dlr": art_dlr}
        masks |= {"art_aa": art_ce & art_dlr, "ta_ce": ta_ce, "ta_t": ta_t, "ta_fab": ta_fab}
        pairs = [("ce", "art_ce"), ("ce", "ta_ce"), ("dlr", "art_dlr"), ("aa", "art_aa"), ("t", "ta_t")]
        pairs += [("fab", "ta_fab")]
        sq_cols = ""
        if args.queries:
            sq, t_sq = ours_robust(Square(epsilons=[eps], n_queries=args.queries), model, x, y, eps)
            ta_sq, t_ta_sq = ta_robust(ta.Square(model, eps=eps, n_queries=args.queries, seed=0), model, x, y)
            members = ["apgd-ce", "apgd-t", "fab-t", "square"]
            std = AutoAttack(members=members, n_target_classes=args.targets, n_queries=args.queries, **kw)
            aa_std, t_std = ours_robust(std, model, x, y, eps)
            masks |= {"sq": sq, "ta_sq": ta_sq, "std": aa_std, "ta_std": ta_ce & ta_t & ta_fab & ta_sq}
            pairs += [("std", "ta_std")]  # Square alone: one random draw each, compared in the README over seeds
        acc = {k: v.float().mean().item() * 100 for k, v in masks.items()}
        ok = all(acc[a] <= acc[b] + 0.5 for a, b in pairs)
        if args.queries:
            sq_cols = (
                f" {acc['sq']:.1f} | {acc['ta_sq']:.1f} | {acc['std']:.1f} | {acc['ta_std']:.1f} |"
                f" {t_sq:.1f} | {t_ta_sq:.1f} | {t_std:.1f} |"
            )
        row = (
            f"| {name} | {eps * 255:.0f}/255 | {clean * 100:.1f} | {acc['ce']:.1f} | {acc['art_ce']:.1f} | "
            f"{acc['ta_ce']:.1f} | {acc['dlr']:.1f} | {acc['art_dlr']:.1f} | {acc['t']:.1f} | {acc['ta_t']:.1f} | "
            f"{acc['fab']:.1f} | {acc['ta_fab']:.1f} | {acc['aa']:.1f} | {acc['art_aa']:.1f} |{sq_cols} "
            f"{'yes' if ok else 'NO'} | {t_ce:.1f} | {t_art:.1f} | {t_ta_ce:.1f} | {t_t:.1f} | {t_ta_t:.1f} | "
            f"{t_fab:.1f} | {t_ta_fab:.1f} | {t_aa:.1f} |"
        )
        print(row, flush=True)
        rows.append(row)
    return rows


def _torchattacks():
    """torchattacks 3.5.1 from its side folder, or exit with the command that installs it."""
    ta = load_torchattacks()
    if ta is None:
        raise SystemExit("torchattacks 3.5.1 is not in its side folder: run `make test` once (Makefile extras step)")
    return ta


def per_seed(name: str, model: nn.Module, x, y, args, *, seeds: int, budget: int, ours, theirs) -> None:
    """Robust accuracy (%) of cvaudit's attack and torchattacks' over ``seeds`` seeds, per ε: the means and each seed.

    ``ours(eps, seed)`` is a cvaudit attack, ``theirs(eps, seed)`` the torchattacks attack (their random draws
    differ: cvaudit draws per sample from the audit seed, torchattacks from its ``seed``); ``budget`` is printed.
    """
    ids = torch.arange(len(x), dtype=torch.int64)
    for eps in [float(e) / 255 for e in args.epsilons.split(",")]:
        mine, reference = [], []
        for seed in range(seeds):
            res = ours(eps, seed).attack(model, x, y, severity=eps, sample_ids=ids, seed=seed)
            mine.append(100 * (~res.fooled).float().mean().item())
            reference.append(100 * ta_robust(theirs(eps, seed), model, x, y)[0].float().mean().item())
        print(
            f"| {name} | {eps * 255:.0f}/255 | {budget} | {np.mean(mine):.1f} | {np.mean(reference):.1f} "
            f"| {', '.join(f'{v:.1f}' for v in mine)} | {', '.join(f'{v:.1f}' for v in reference)} |",
            flush=True,
        )


def square_seeds(name: str, model: nn.Module, x, y, args) -> None:
    """Square vs torchattacks' Square: robust accuracy (%) per seed and the means, ``args.square_seeds`` seeds."""
    ta = _torchattacks()
    per_seed(
        name, model, x, y, args, seeds=args.square_seeds, budget=args.queries,
        ours=lambda eps, seed: Square(epsilons=[eps], n_queries=args.queries),
        theirs=lambda eps, seed: ta.Square(model, eps=eps, n_queries=args.queries, seed=seed),
    )  # fmt: skip


def apgdt_seeds(name: str, model: nn.Module, x, y, args) -> None:
    """APGD-T vs torchattacks' APGDT: robust accuracy (%) per seed and the means, ``args.apgdt_seeds`` seeds."""
    ta = _torchattacks()
    per_seed(
        name, model, x, y, args, seeds=args.apgdt_seeds, budget=args.n_iter,
        ours=lambda eps, seed: APGDT(n_target_classes=args.targets, epsilons=[eps], n_iter=args.n_iter),
        theirs=lambda eps, seed: ta.APGDT(model, eps=eps, steps=args.n_iter, n_classes=args.targets + 1, seed=seed),
    )  # fmt: skip


def timing(name: str, model: nn.Module, x, y, args) -> None:
    """APGD-CE against torchattacks' APGD and ART's, ``args.timing`` runs each, interleaved; medians."""
    ta = _torchattacks()
    for eps in [float(e) / 255 for e in args.epsilons.split(",")]:
        ours, theirs, art = [], [], []
        for _ in range(args.timing):
            ours.append(ours_robust(APGD(epsilons=[eps], n_iter=args.n_iter), model, x, y, eps)[1])
            theirs.append(ta_robust(ta.APGD(model, eps=eps, steps=args.n_iter, loss="ce"), model, x, y)[1])
            art.append(art_robust(model, x, y, eps, args.n_iter, "cross_entropy")[1])
        med = [float(np.median(v)) for v in (ours, theirs, art)]
        print(
            f"| {name} | {eps * 255:.0f}/255 | {args.n_iter} | {args.timing} | {med[0]:.2f} | {med[1]:.2f} | {med[2]:.2f} "
            f"| {med[0] / med[1]:.2f} | {', '.join(f'{a:.2f}/{b:.2f}' for a, b in zip(ours, theirs))} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--n-iter", type=int, default=100)
    parser.add_argument("--targets", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default="demo,adv")
    parser.add_argument("--epsilons", default="2,4,8,16", help="L-inf radii in 1/255, comma-separated")
    parser.add_argument("--queries", type=int, default=0, help="Square's n_queries (0: no Square columns)")
    parser.add_argument("--timing", type=int, default=0, help="only time APGD-CE vs torchattacks / ART, R runs each")
    parser.add_argument("--square-seeds", type=int, default=0, help="only Square vs torchattacks' Square, K seeds")
    parser.add_argument("--apgdt-seeds", type=int, default=0, help="only APGD-T vs torchattacks' APGDT, K seeds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = build_demo_data(0)
    x = torch.from_numpy(data["audit_x"][: args.n]).permute(0, 3, 1, 2).float().contiguous()
    y = torch.from_numpy(data["audit_y"][: args.n])
    print(
        f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, threads {args.threads}, "
        f"n {args.n}, n_iter {args.n_iter}, APGD-T / FAB-T targets {args.targets}, Square queries {args.queries}"
    )
    if args.square_seeds:
        print("| model | ε | queries | Square % (mean) | ta Square % (mean) | Square per seed | ta per seed |")
        print("|---|---|---|---|---|---|---|")
        for name in args.models.split(","):
            model = frozen(Normalised(load_demo_weights())) if name == "demo" else adversarially_trained(data)
            square_seeds(name, model, x, y, args)
        return
    if args.apgdt_seeds:
        print("| model | ε | n_iter | APGD-T % (mean) | ta APGDT % (mean) | APGD-T per seed | ta per seed |")
        print("|---|---|---|---|---|---|---|")
        for name in args.models.split(","):
            model = frozen(Normalised(load_demo_weights())) if name == "demo" else adversarially_trained(data)
            apgdt_seeds(name, model, x, y, args)
        return
    if args.timing:
        print("| model | ε | n_iter | runs | APGD-CE s | torchattacks APGD s | ART CE s | ratio | runs (ours/ta) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name in args.models.split(","):
            model = frozen(Normalised(load_demo_weights())) if name == "demo" else adversarially_trained(data)
            timing(name, model, x, y, args)
        return
    square = " Square % | ta Square % | AA std % | ta 4 members % | Square s | ta Square s | AA std s |"
    print(
        "| model | ε | clean % | APGD-CE % | ART CE % | ta APGD % | APGD-DLR % | ART DLR % | APGD-T % | ta APGDT % "
        "| FAB-T % | ta FAB % | autoattack % | ART CE+DLR % |"
        + (square if args.queries else "")
        + " ≤ ref + 0.5 pp | APGD-CE s | ART CE s | ta APGD s | APGD-T s | ta APGDT s | FAB-T s | ta FAB s "
        "| autoattack s |"
    )
    print("|---" * (23 + (7 if args.queries else 0)) + "|")
    for name in args.models.split(","):
        model = frozen(Normalised(load_demo_weights())) if name == "demo" else adversarially_trained(data)
        sweep(name, model, x, y, args)


if __name__ == "__main__":
    main()
