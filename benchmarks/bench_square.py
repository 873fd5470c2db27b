"""Strength of cvaudit's ``square`` (or ``square_l2``) against ART's SquareAttack on the demo CNN, at equal budget.

Robust accuracy (clean errors count as fooled) on the first ``--n`` audit images of the demo,
for each ε, cvaudit (seed 0, per-sample draws) against ART (numpy seeds 0 .. ``--art-seeds``-1;
ART draws one window per iteration for the whole batch). Prints a markdown table.

    python benchmarks/bench_square.py --n 200 --queries 300 --eps 0.03 0.06 --art-seeds 2
    python benchmarks/bench_square.py --norm l2 --n 200 --queries 100 --eps 2 3 --art-seeds 2

With ``--norm l2`` it runs ``square_l2`` against ``SquareAttack(norm=2)``; ART's L2 search also draws
from Python's ``random``, seeded with the numpy seed.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch
from torch import nn


def main() -> None:
    from art.attacks.evasion import SquareAttack
    from art.estimators.classification import PyTorchClassifier

    from audit.demo import build_demo_data, load_demo_weights
    from stressors.adversarial import Square, SquareL2

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--eps", type=float, nargs="+", default=[0.03, 0.06])
    ap.add_argument("--art-seeds", type=int, default=2)
    ap.add_argument("--norm", choices=["linf", "l2"], default="linf")
    args = ap.parse_args()
    data = build_demo_data(0)
    model = load_demo_weights()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.tensor(data["audit_x"][: args.n]).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor(data["audit_y"][: args.n])
    ids = torch.arange(args.n, dtype=torch.int64)
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    clf = PyTorchClassifier(
        model, loss=nn.CrossEntropyLoss(), input_shape=(3, 32, 32), nb_classes=10, clip_values=(0, 1)
    )
    cls, art_norm = (Square, np.inf) if args.norm == "linf" else (SquareL2, 2)
    print(f"n={args.n} clean accuracy={clean:.3f} queries={args.queries} norm={args.norm}", flush=True)
    print(f"| ε | cvaudit {cls.name} | ART SquareAttack (per seed) | ART mean | cvaudit s | ART s/seed |")
    print("|---|---|---|---|---|---|", flush=True)
    for eps in args.eps:
        t = time.perf_counter()
        res = cls(epsilons=[eps], n_queries=args.queries).attack(model, x, y, severity=eps, sample_ids=ids, seed=0)
        ours, t_ours = 1 - res.fooled.float().mean().item(), time.perf_counter() - t
        theirs, t_art = [], 0.0
        for seed in range(args.art_seeds):
            np.random.seed(seed)
            random.seed(seed)
            t = time.perf_counter()
            adv = SquareAttack(clf, norm=art_norm, eps=eps, max_iter=args.queries, verbose=False).generate(
                x.numpy(), y=np.eye(10, dtype=np.float32)[y.numpy()]
            )
            t_art += time.perf_counter() - t
            with torch.no_grad():
                theirs.append((model(torch.from_numpy(adv)).argmax(1) == y).float().mean().item())
        shown = ", ".join(f"{a:.3f}" for a in theirs)
        print(
            f"| {eps:g} | {ours:.3f} | {shown} | {np.mean(theirs):.3f} | {t_ours:.0f} | {t_art / len(theirs):.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
