"""Tiny detectors whose outputs a test can work out by hand (for the detector loading tests).

Both read the **normalised** input, so the expected detections depend on ``model.mean`` and
``model.std`` (see each class).
"""

from __future__ import annotations

import torch
from torch import nn


class ContentBoxes(nn.Module):
    """Already-decoded detections from the image content: ``(boxes (B, 2, 4), scores (B, 2), labels (B, 2))``.

    Detection 0: the bounding box (xyxy, pixel edges) of the pixels whose normalised channel 0 is
    > 0; its score is the normalised channel 1 at pixel (0, 0) clamped to [0, 1]; its label is 1
    where the normalised channel 2 at pixel (0, 0) is > 0, else 0. Detection 1: the fixed box
    (1, 2, 3, 4), score 0.5, label 2.
    """

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, h, w = x.shape[0], x.shape[2], x.shape[3]
        inside = (x[:, 0] > 0).to(x.dtype)
        cols, rows = inside.amax(dim=1), inside.amax(dim=2)
        x1 = cols.argmax(dim=1).to(x.dtype)
        x2 = w - cols.flip(1).argmax(dim=1).to(x.dtype)
        y1 = rows.argmax(dim=1).to(x.dtype)
        y2 = h - rows.flip(1).argmax(dim=1).to(x.dtype)
        fixed = torch.tensor([1.0, 2.0, 3.0, 4.0]).to(x.dtype).expand(b, 4)
        boxes = torch.stack((torch.stack((x1, y1, x2, y2), dim=1), fixed), dim=1)
        s0 = x[:, 1, 0, 0].clamp(0.0, 1.0)
        scores = torch.stack((s0, torch.full_like(s0, 0.5)), dim=1)
        l0 = (x[:, 2, 0, 0] > 0).to(torch.int64)
        labels = torch.stack((l0, torch.full_like(l0, 2)), dim=1)
        return boxes, scores, labels


class FixedYolo(nn.Module):
    """An Ultralytics-layout head (B, 4 + 2, 4): four fixed anchors, class-0 scores times ``s``.

    ``s`` is the normalised channel 0 at pixel (0, 0), clamped to [0, 1]. Anchors (cx, cy, w, h):
    a0 (10, 10, 4, 4), a1 (10.5, 10, 4, 4), a2 (10, 10, 4, 4), a3 (30, 20, 6, 2); class-0 scores
    (0.9, 0.8, 0, 0.0005) * s, class-1 scores (0.1, 0.05, 0.7, 0.0002). IoU(a0, a1) = 14 / 18,
    IoU(a0, a2) = 1.
    """

    def __init__(self) -> None:
        super().__init__()
        anchors = [[10.0, 10.0, 4.0, 4.0], [10.5, 10.0, 4.0, 4.0], [10.0, 10.0, 4.0, 4.0], [30.0, 20.0, 6.0, 2.0]]
        self.register_buffer("anchors", torch.tensor(anchors).T.contiguous())  # (4, A)
        self.register_buffer("cls0", torch.tensor([0.9, 0.8, 0.0, 0.0005]))
        self.register_buffer("cls1", torch.tensor([0.1, 0.05, 0.7, 0.0002]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        s = x[:, 0, 0, 0].clamp(0.0, 1.0)[:, None]
        cls0 = (self.cls0[None, :] * s)[:, None]
        cls1 = self.cls1[None, None, :].expand(b, 1, 4)
        return torch.cat((self.anchors[None].expand(b, 4, 4), cls0, cls1), dim=1)


class RandomYolo(nn.Module):
    """A small random conv head in the Ultralytics layout (B, 4 + C, A) with A = H * W / 16."""

    def __init__(self, num_classes: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 4 + num_classes, kernel_size=4, stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).flatten(2)  # (B, 4 + C, A)
        b, a = y.shape[0], y.shape[2]
        h, w = x.shape[2], x.shape[3]
        centre = torch.sigmoid(y[:, :2]) * torch.tensor([w, h]).to(x.dtype)[None, :, None]
        size = torch.sigmoid(y[:, 2:4]) * torch.tensor([w, h]).to(x.dtype)[None, :, None] / 2
        return torch.cat((centre, size, torch.sigmoid(y[:, 4:])), dim=1).reshape(b, -1, a)


def make_boxes() -> nn.Module:
    return ContentBoxes()


def make_yolo() -> nn.Module:
    return FixedYolo()
