"""Time per image per ε: cvaudit's PGD vs plain foolbox LinfPGD vs the model's own cost.

Three timings per model and ε, with the same steps and absolute step size
(2.5·ε/steps) and a random start in every case:

- ``cvaudit``: ``stressors.adversarial.PGD(...).perturb`` (gradient probe,
  per-sample seeded random starts, foolbox underneath);
- ``foolbox``: ``foolbox.attacks.LinfPGD(abs_stepsize=..., steps=...)`` called directly;
- ``fwd+bwd x steps``: one forward and input-gradient backward pass of the model
  on the batch, times ``steps`` (the floor any PGD pays).

Each timing is the median of ``--repeats`` runs, interleaved so that load from
other processes hits all three alike. Models: a small CNN at 32x32, and the
ResNet-18-like model of ``benchmarks/models.py`` when that file exists.

Usage:
    python benchmarks/bench_attacks.py [--n 256] [--steps 10] [--repeats 3] [--resnet-n 32]
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import sys
import time
from pathlib import Path

import foolbox as fb
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stressors.adversarial import PGD


def small_cnn(classes: int = 10) -> nn.Module:
    """A small CIFAR-sized CNN (about 0.3 M parameters)."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(64 * 16, 128),
        nn.ReLU(),
        nn.Linear(128, classes),
    )


def resnet18_like() -> nn.Module | None:
    """The ResNet-18-like model from benchmarks/models.py, or None if that file is absent."""
    path = Path(__file__).resolve().parent / "models.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("bench_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ResNet18(num_classes=10)


def time_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def forward_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    xg = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(xg), y, reduction="sum")
    torch.autograd.grad(loss, xg)


def bench(name: str, model: nn.Module, n: int, epsilons: list[float], steps: int, repeats: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    ids = torch.arange(n, dtype=torch.int64)
    model.eval()
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device="cpu")
    ours = PGD(epsilons=epsilons, steps=steps)
    rows = []
    for eps in epsilons:
        step = ours.step_for(eps)
        plain = fb.attacks.LinfPGD(abs_stepsize=step, steps=steps, random_start=True)
        runs = {
            "cvaudit": lambda eps=eps: ours.perturb(model, x, y, severity=eps, sample_ids=ids, seed=0),
            "foolbox": lambda eps=eps, plain=plain: plain(fmodel, x, y, epsilons=eps),
            "fwd+bwd x steps": lambda: forward_backward(model, x, y),
        }
        times: dict[str, list[float]] = {k: [] for k in runs}
        time_once(runs["fwd+bwd x steps"])  # warm-up
        for _ in range(repeats):
            for key, fn in runs.items():
                times[key].append(time_once(fn) * (steps if key == "fwd+bwd x steps" else 1))
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"model": name, "n": n, "eps": eps, **{k: 1000 * v / n for k, v in med.items()}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=256, help="images for the small CNN")
    parser.add_argument("--resnet-n", type=int, default=32, help="images for the ResNet-18-like model")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)  # model initialisation only (a benchmark script, not library code)
    epsilons = [2 / 255, 8 / 255]
    rows = bench("small CNN 32x32", small_cnn(), args.n, epsilons, args.steps, args.repeats)
    resnet = resnet18_like()
    if resnet is not None:
        rows += bench("ResNet-18-like 32x32", resnet, args.resnet_n, [8 / 255], args.steps, args.repeats)
    print(
        f"torch {torch.__version__}, foolbox {fb.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, steps={args.steps}, step=2.5*eps/steps, median of {args.repeats}"
    )
    print(
        "| model | n | eps | cvaudit PGD ms/img | foolbox LinfPGD ms/img | fwd+bwd x steps ms/img | overhead vs foolbox |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        overhead = 100 * (r["cvaudit"] / r["foolbox"] - 1)
        print(
            f"| {r['model']} | {r['n']} | {r['eps'] * 255:.0f}/255 | {r['cvaudit']:.2f} | {r['foolbox']:.2f} "
            f"| {r['fwd+bwd x steps']:.2f} | {overhead:+.1f}% |"
        )


if __name__ == "__main__":
    main()
