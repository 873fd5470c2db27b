"""A dataset and a model whose accuracy is set exactly, for early-stopping runs.

Each image is a flat 8x8 colour: the red channel codes the label (``label / 9``), the green
channel says whether the model should get it wrong. :class:`CodedNet` reads both and predicts
the label, or the next class when told to be wrong. So a run's accuracy is the share of
images marked right, whatever the resizing, and stressors that change the colours (night)
make it err. Used by ``benchmarks/bench_early_stop.py`` and the early-stopping tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

SIZE = 8
CLASSES = 10


class CodedNet(nn.Module):
    """Predicts ``round(9 * red)``, shifted by one class where green > 0.5 (logits 10 · one-hot)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = torch.round(x[:, 0].mean(dim=(1, 2)) * 9).long().clamp(0, 9)
        wrong = x[:, 1].mean(dim=(1, 2)) > 0.5
        pred = torch.where(wrong, (code + 1) % 10, code)
        return 10.0 * nn.functional.one_hot(pred, 10).float()


def write_npz(path: Path, n: int, accuracy: float, *, seed: int = 0, groups: int = 2) -> Path:
    """``n`` coded images, exactly ``round(accuracy * n)`` of them right, with a ``site`` attribute."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    wrong = np.zeros(n, dtype=bool)
    wrong[rng.permutation(n)[: n - round(accuracy * n)]] = True
    images = np.zeros((n, SIZE, SIZE, 3), dtype=np.uint8)
    images[..., 0] = np.round(labels / 9 * 255).astype(np.uint8)[:, None, None]
    images[..., 1] = np.where(wrong, 255, 0).astype(np.uint8)[:, None, None]
    site = np.array([f"s{i % groups}" for i in range(n)])
    np.savez(path, images=images, labels=labels, site=site)
    return path


def save_model(path: Path) -> Path:
    torch.jit.save(torch.jit.script(CodedNet()), str(path))
    return path


def config(root: Path, *, policy: str, early_stop: bool, stressors: str = "", batch_size: int = 128) -> Path:
    """A config for ``data.npz`` and ``model.pt`` in ``root`` (no report, one DataLoader worker less)."""
    text = (
        f"seed: 0\ndevice: cpu\nbatch_size: {batch_size}\n"
        f"model:\n  path: model.pt\n  input_size: [{SIZE}, {SIZE}]\n  mean: [0, 0, 0]\n  std: [1, 1, 1]\n"
        "data:\n  npz: data.npz\n  attributes: [site]\n  num_workers: 0\n"
        + (f"stressors:\n{stressors}" if stressors else "stressors: []\n")
        + f"policy: {policy}\n"
        f"evaluation:\n  early_stop: {str(early_stop).lower()}\n"
        "report:\n  formats: [html]\n"
    )
    path = root / "config.yaml"
    path.write_text(text)
    return path
