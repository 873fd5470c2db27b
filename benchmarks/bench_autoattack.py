"""Strength and time of cvaudit's APGD / AutoAttack against ART's AutoProjectedGradientDescent.

Two models on the demo's 32x32 digits:

- ``demo``: the shipped demo CNN (``audit/demo_weights``, standard training);
- ``adv``: the same architecture trained here with FGSM + random-start adversarial training
  (Wong et al. 2020, "Fast is better than free") at ε = 16/255, seed 0 (nothing is cached).

For every L∞ ε of the sweep, robust accuracy on the first ``--n`` audit images of:

- cvaudit ``apgd`` (APGD-CE), ``apgd`` with ``loss: dlr`` (APGD-DLR), ``apgd_t`` and the
  ``autoattack`` ensemble (its default members apgd-ce, apgd-t; FAB-T is not built, Square is not a default member);
- ART 1.20 ``AutoProjectedGradientDescent`` with the same budget (``max_iter`` = n_iter,
  ``nb_random_init`` 1, ``eps_step`` 2ε = APGD's initial step), cross-entropy and DLR loss,
  and their ensemble (a sample is robust only if it survives both).

The claim checked: cvaudit's robust accuracy <= ART's + 0.5 pp (APGD-CE vs ART-CE, APGD-DLR vs
ART-DLR, and the ensemble vs ART's CE+DLR ensemble). Times are wall-clock seconds for the whole
batch, APGD-CE vs ART-CE (same batch, same budget, same thread count). torchattacks is not
measured: it cannot be installed next to cvaudit's pins (it forces torchvision and requests~=2.25).

Usage:
    python benchmarks/bench_autoattack.py [--n 100] [--n-iter 100] [--targets 9] [--threads 1]
        [--models demo,adv] [--epsilons 2,4,8,16]
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
from stressors.adversarial import APGD, APGDT, AutoAttack

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
    for eps in [float(e) / 255 for e in args.epsilons.split(",")]:
        kw = {"epsilons": [eps], "n_iter": args.n_iter}
        ce, t_ce = ours_robust(APGD(**kw), model, x, y, eps)
        dlr, _ = ours_robust(APGD(loss="dlr", **kw), model, x, y, eps)
        tgt, _ = ours_robust(APGDT(n_target_classes=args.targets, **kw), model, x, y, eps)
        aa, t_aa = ours_robust(AutoAttack(n_target_classes=args.targets, **kw), model, x, y, eps)
        art_ce, t_art = art_robust(model, x, y, eps, args.n_iter, "cross_entropy")
        art_dlr, _ = art_robust(model, x, y, eps, args.n_iter, "difference_logits_ratio")
        acc = {
            k: v.float().mean().item() * 100
            for k, v in {
                "ce": ce,
                "dlr": dlr,
                "t": tgt,
                "aa": aa,
                "art_ce": art_ce,
                "art_dlr": art_dlr,
                "art_aa": art_ce & art_dlr,
            }.items()
        }
        ok = (
            acc["ce"] <= acc["art_ce"] + 0.5 and acc["dlr"] <= acc["art_dlr"] + 0.5 and acc["aa"] <= acc["art_aa"] + 0.5
        )
        row = (
            f"| {name} | {eps * 255:.0f}/255 | {clean * 100:.1f} | {acc['ce']:.1f} | {acc['art_ce']:.1f} | "
            f"{acc['dlr']:.1f} | {acc['art_dlr']:.1f} | {acc['t']:.1f} | {acc['aa']:.1f} | {acc['art_aa']:.1f} | "
            f"{'yes' if ok else 'NO'} | {t_ce:.1f} | {t_art:.1f} | {t_aa:.1f} |"
        )
        print(row, flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--n-iter", type=int, default=100)
    parser.add_argument("--targets", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default="demo,adv")
    parser.add_argument("--epsilons", default="2,4,8,16", help="L-inf radii in 1/255, comma-separated")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = build_demo_data(0)
    x = torch.from_numpy(data["audit_x"][: args.n]).permute(0, 3, 1, 2).float().contiguous()
    y = torch.from_numpy(data["audit_y"][: args.n])
    print(
        f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, threads {args.threads}, "
        f"n {args.n}, n_iter {args.n_iter}, APGD-T targets {args.targets}"
    )
    print(
        "| model | ε | clean % | APGD-CE % | ART CE % | APGD-DLR % | ART DLR % | APGD-T % | autoattack % "
        "| ART CE+DLR % | ≤ ART + 0.5 pp | APGD-CE s | ART CE s | autoattack s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        model = frozen(Normalised(load_demo_weights())) if name == "demo" else adversarially_trained(data)
        sweep(name, model, x, y, args)


if __name__ == "__main__":
    main()
