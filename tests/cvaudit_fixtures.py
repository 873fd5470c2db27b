"""Shared test helpers: a tiny real dataset (PNG files + manifest) and TorchScript models."""

from __future__ import annotations

import csv
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn


class ColourNet(nn.Module):
    """Predicts the class from the mean of each channel (deterministic, no training)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 8.0 * x.mean(dim=(2, 3))


class ConstantNet(nn.Module):
    def __init__(self, value: float, width: int):
        super().__init__()
        self.value, self.width = value, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], self.width), self.value)


COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]


def make_dataset(root: Path, n: int = 24) -> Path:
    """n images of three colours (class = dominant channel), two cameras, written as PNG."""
    (root / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        label = i % 3
        arr = np.clip(np.array(COLOURS[label]) + rng.integers(-20, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(root / "img" / f"{i}.png")
        rows.append(
            {
                "sample_id": f"s{i:03d}",
                "path": f"img/{i}.png",
                "label": label,
                "camera": "A" if i % 2 else "B",
                "capture_date": "2026-01-01",
                "consent": "granted",
            }
        )
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root / "manifest.csv"


def save_model(path: Path, module: nn.Module) -> Path:
    torch.jit.save(torch.jit.script(module), str(path))
    return path


POLICY = """\
version: 1
name: e2e
rules:
  - id: clean-accuracy
    condition: clean
    metric: accuracy
    min: {threshold}
    blocking: true
"""


def write_config(
    root: Path, *, model: str = "model.pt", threshold: float = 0.5, extra: str = "", stressors: str | None = None
) -> Path:
    (root / "policy.yaml").write_text(POLICY.format(threshold=threshold))
    stressors = (
        stressors
        if stressors is not None
        else ("  - {name: night, severities: [1, 5]}\n  - {name: blur, kind: gaussian, severities: [1, 5]}\n")
    )
    text = (
        "seed: 0\ndevice: cpu\nbatch_size: 5\n"
        f"model:\n  path: {model}\n  input_size: [16, 16]\n  mean: [0, 0, 0]\n  std: [1, 1, 1]\n  class_names: [red, green, blue]\n"
        "data:\n  manifest: manifest.csv\n  attributes: [camera]\n  num_workers: 0\n"
        + (f"stressors:\n{stressors}" if stressors else "stressors: []\n")
        + "policy: policy.yaml\n"
        "evaluation:\n  min_group_size: 5\n  n_bootstrap: 50\n"
        "report:\n  formats: [html]\n" + extra
    )
    cfg = root / "config.yaml"
    cfg.write_text(text)
    return cfg


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    """A folder with manifest.csv, 24 PNG images and model.pt (a colour classifier)."""
    make_dataset(tmp_path)
    save_model(tmp_path / "model.pt", ColourNet())
    return tmp_path


def write_png_bomb(path: Path, width: int, height: int, channels: int = 1) -> Path:
    """A valid 8-bit grayscale (``channels=1``) or RGB (3) PNG of zeros, compressed as far as deflate goes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    compressor = zlib.compressobj(9)
    row = b"\x00" * (width * channels + 1)  # filter byte + pixels
    parts, done = [], 0
    while done < height:
        n = min(256, height - done)
        parts.append(compressor.compress(row * n))
        done += n
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0 if channels == 1 else 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    )
    return path
