"""Per-sample image properties (the contract: :mod:`audit.contract.image_properties`), batched in torch.

:func:`pixel_properties` computes them for a batch of clean model inputs on their device;
:class:`PropertyRecorder` keeps one rank's rows (a few floats per sample) during the streaming pass and
writes them, sorted by dataset index, to a part file; :func:`merge_properties` merges the parts of every rank
into ``image_properties.csv`` through cvaudit's one CSV writer, atomically.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from audit.contract import csvfile
from audit.contract.image_properties import PIXEL_PROPERTIES, PROPERTY_COLUMNS

__all__ = ["PropertyRecorder", "merge_properties", "pixel_properties", "properties_part_path"]

_LUMA = (0.299, 0.587, 0.114)
_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def pixel_properties(images: Tensor) -> Tensor:
    """The pixel properties of a batch, in :data:`PIXEL_PROPERTIES` order.

    Shape:
        images: (B, C, H, W), C of 1 (luma) or 3 (RGB), values in [0, 1], on any device.
        returns: (B, 5) float64 on the CPU.
    """
    x = images.detach().to(torch.float32)
    b, c = x.shape[0], x.shape[1]
    if c == 1:
        rgb = x.expand(b, 3, *x.shape[2:])
    elif c == 3:
        rgb = x
    else:
        raise ValueError(f"pixel_properties: {c} channels; expected 1 or 3")
    r, g, bl = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    luma = _LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * bl  # (B, H, W)
    flat = luma.reshape(b, -1)
    brightness = flat.mean(dim=1)
    contrast = flat.std(dim=1, unbiased=False)
    if luma.shape[-1] >= 3 and luma.shape[-2] >= 3:
        lap = F.conv2d(luma.unsqueeze(1), _LAPLACIAN.to(luma.device).view(1, 1, 3, 3))
        sharpness = lap.reshape(b, -1).var(dim=1, unbiased=False)
    else:  # no interior pixel
        sharpness = torch.zeros(b, device=x.device)
    rg = (r - g).reshape(b, -1)
    yb = (0.5 * (r + g) - bl).reshape(b, -1)
    colourfulness = torch.sqrt(rg.var(dim=1, unbiased=False) + yb.var(dim=1, unbiased=False)) + 0.3 * torch.sqrt(
        rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2
    )
    high = rgb.amax(dim=1)
    low = rgb.amin(dim=1)
    sat = torch.where(high > 0, (high - low) / high.clamp_min(1e-12), torch.zeros_like(high))
    saturation = sat.reshape(b, -1).mean(dim=1)
    out = torch.stack([brightness, contrast, sharpness, colourfulness, saturation], dim=1)
    assert out.shape[1] == len(PIXEL_PROPERTIES)
    return out.to(torch.float64).cpu()


def properties_part_path(work: Path, rank: int) -> Path:
    """One rank's part file of image properties (``_index`` first, sorted by it)."""
    return work / f"image_properties.part-{rank:05d}.csv"


class PropertyRecorder:
    """One rank's image properties during the streaming pass: :meth:`add` per batch, :meth:`write` once."""

    def __init__(self) -> None:
        self._index: list[Tensor] = []
        self._values: list[Tensor] = []
        self._sizes: list[Tensor] = []

    def add(self, index: Tensor, images: Tensor, sizes: Tensor) -> None:
        """Record a batch: dataset indices (B,), clean model inputs (B, C, H, W), decoded sizes (B, 2) as (w, h)."""
        self._index.append(index.cpu())
        self._values.append(pixel_properties(images))
        self._sizes.append(sizes.cpu().to(torch.int64))

    def write(self, path: Path, ids: list[str]) -> None:
        """Write the recorded rows, sorted by dataset index, with ``_index`` and the sample id first."""
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csvfile.writer(fh)
            if not self._index:
                return
            index = torch.cat(self._index)
            values = torch.cat(self._values)
            sizes = torch.cat(self._sizes)
            order = torch.argsort(index, stable=True)
            for i, vals, (w, h) in zip(index[order].tolist(), values[order].tolist(), sizes[order].tolist()):
                writer.writerow([i, ids[i], *(repr(v) for v in vals), repr(w / h) if h else "", w, h])


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csvfile.reader(fh):
            yield int(row[0]), row[1:]


def merge_properties(work: Path, dest: Path) -> None:
    """Merge ``work/image_properties.part-*.csv`` into ``dest`` in dataset order (atomically)."""
    parts = sorted(work.glob("image_properties.part-*.csv"))
    tmp = dest.with_name(dest.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csvfile.writer(fh)
        writer.writerow(PROPERTY_COLUMNS)
        writer.writerows(row for _, row in heapq.merge(*(_rows(p) for p in parts), key=lambda r: r[0]))
    os.replace(tmp, dest)
