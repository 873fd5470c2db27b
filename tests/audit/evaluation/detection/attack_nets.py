"""Tiny hand-made differentiable detectors for the detection-attack tests.

Every score is a closed-form function of one image statistic, so the best an attack can do
within ε is worked out by hand (tests/audit/evaluation/detection/test_detection_attacks.py).
"""

from __future__ import annotations

import torch
from torch import nn

SIZE = (32, 32)  # (H, W)
#: Two fixed anchors, xyxy input pixels: the candidate boxes of every image.
ANCHORS = ((4.0, 4.0, 12.0, 12.0), (16.0, 16.0, 28.0, 28.0))
GAIN = 8.0


def region_means(x: torch.Tensor) -> torch.Tensor:
    """Mean of channel 0 inside each anchor's box. Shape: (B, 3, H, W) -> (B, A)."""
    means = []
    for x1, y1, x2, y2 in ANCHORS:
        means.append(x[:, 0, int(y1) : int(y2), int(x1) : int(x2)].mean(dim=(1, 2)))
    return torch.stack(means, dim=1)


class LinearYolo(nn.Module):
    """Two anchors, two classes; the Ultralytics layout (B, 4 + 2, 2).

    Anchor a's class-0 score is ``sigmoid(GAIN * (m_a - 0.5))`` and its class-1 score
    ``sigmoid(-GAIN * (m_a - 0.5))``, with ``m_a`` the mean of channel 0 inside the anchor's box
    (the net sees normalised pixels; with mean 0 and std 1 they are the [0, 1] pixels).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = region_means(x)  # (B, A)
        s0 = torch.sigmoid(GAIN * (m - 0.5))
        s1 = torch.sigmoid(-GAIN * (m - 0.5))
        anchors = torch.tensor(ANCHORS, dtype=x.dtype, device=x.device)
        cxcywh = torch.cat(((anchors[:, :2] + anchors[:, 2:]) / 2, anchors[:, 2:] - anchors[:, :2]), dim=1)
        boxes = cxcywh.unsqueeze(0).expand(x.shape[0], -1, -1)  # (B, A, 4)
        return torch.cat((boxes, s0.unsqueeze(-1), s1.unsqueeze(-1)), dim=2).transpose(1, 2)  # (B, 6, A)


class LinearBoxes(nn.Module):
    """:class:`LinearYolo` after its own decoding: (boxes (B, A, 4), scores (B, A), labels (B, A)),
    each anchor with its best class (``output: boxes``)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raw = LinearYolo()(x).transpose(1, 2)  # (B, A, 6)
        cx, cy, w, h = raw[..., 0], raw[..., 1], raw[..., 2], raw[..., 3]
        boxes = torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)
        scores, labels = raw[..., 4:].max(dim=-1)
        return boxes, scores, labels


class ShatteredYolo(LinearYolo):
    """:class:`LinearYolo` behind a shattered-gradient preprocessing (Athalye et al. 2018): the
    input passes ``x + 0.002 sin(4000 x)``, which barely changes the scores but makes the input
    gradient's sign noise, so a sign-gradient attack is no better than random."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x + 0.002 * torch.sin(4000.0 * x))
