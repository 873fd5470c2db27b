"""``cvaudit demo --task detection``: a detector audit with nothing downloaded.

Synthetic scenes (:func:`build_scenes`), a small anchor-free detector in pure torch
(:class:`ShapesDetector`, built by the config's factory :func:`shapes_detector`), its
training recipe (:func:`train_detector`, under three minutes on two CPU cores) and the
writer of the demo's audit set (:func:`write_detection_demo`): PNG images, a COCO
instances JSON, a manifest, a policy and a ``config.yaml`` that runs through exactly the
code path of ``cvaudit run``.

**The scenes.** 128x128 RGB images on varied backgrounds (two-colour gradients, stripes,
checkerboards, soft blotches) with zero to four objects of three classes (``square``,
``disc``, ``triangle``) in COCO's three size classes (box area below 32², below 96²,
above; ``area`` is the box's area). Image attributes that genuinely differ:

- ``camera``: ``A`` is clean; ``B`` is a dim, low-contrast, slightly blurred and noisy
  sensor. The detector is trained mostly (90%) on ``A`` and audited on a 50/50 split,
  so it misses more objects on ``B``.
- ``lighting``: ``day`` or ``dusk`` (darker, bluish), in training and audit alike.

Object attribute ``occluded``: a grey striped bar covers a quarter to a half of the
object's box (the box is the whole object, as an annotator would draw it). Governance
columns (``capture_date``, ``consent``, ``region``, ``purpose``, ``lawful_basis``) carry a
few deliberate violations, as in :mod:`audit.demo`.

**The same pixels on every CPU.** Every pixel is computed in float64 numpy with
additions, multiplications, divisions and comparisons only (no transcendental function,
whose SIMD implementations differ between processors) and noise from numpy's
``default_rng`` keyed by (seed, split, index), so the PNG files hold the same pixels
everywhere. Training is not reproducible across CPUs, so the demo ships the weights
:func:`train_detector` produced for seed 0 (``audit/demo_weights/shapes_detector_seed0.pt``,
recorded by ``scripts/train_detection_demo_weights.py`` and checked against
:data:`DETECTION_WEIGHTS_SHA256`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CLASS_NAMES",
    "DETECTION_POLICY_RULES",
    "DETECTION_WEIGHTS",
    "DETECTION_WEIGHTS_SHA256",
    "Scene",
    "ShapesDetector",
    "build_scenes",
    "load_detection_demo_weights",
    "shapes_detector",
    "train_detector",
    "write_detection_demo",
]

DETECTION_DEMO_VERSION = "1"  # bump when the data, the weights or the recipe change
SIZE = 128
CLASS_NAMES = ("square", "disc", "triangle")
#: Images in the audit set (camera A and B half each).
AUDIT_IMAGES = 400
#: Share of camera-B images in the training and in the audit split.
CAMERA_B_SHARE = {"train": 0.1, "audit": 0.5}
DETECTION_WEIGHTS_SEED = 0
DETECTION_WEIGHTS = Path(__file__).resolve().parent / "demo_weights" / "shapes_detector_seed0.pt"
# SHA-256 of DETECTION_WEIGHTS: scripts/train_detection_demo_weights.py prints it when it records new weights.
DETECTION_WEIGHTS_SHA256 = "9362aa394e6517eefa1d1ae489ef4e44add4657bcc3504bc8ad04562ce6edbbb"

_SPLITS = {"audit": 0, "train": 1}
#: Side (pixels) of the square an object is drawn in, per COCO size class: box area below 32², below 96², above.
_SIDES = {"small": (10, 30), "medium": (34, 88), "large": (98, 116)}


@dataclass(frozen=True)
class Scene:
    """One synthetic image with its ground truth.

    Attributes:
        image: uint8 (128, 128, 3) RGB pixels.
        boxes: float64 (N, 4) COCO ``[x, y, width, height]`` in pixels (integers).
        labels: int64 (N,) class indices into :data:`CLASS_NAMES`.
        occluded: bool (N,) whether a bar covers part of the object.
        camera: ``"A"`` or ``"B"``.
        lighting: ``"day"`` or ``"dusk"``.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    occluded: np.ndarray
    camera: str
    lighting: str


# ----------------------------------------------------------------------- scenes


def _grid() -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x), each (128, 128) float64."""
    c = np.arange(SIZE, dtype=np.float64) + 0.5
    return c[:, None] * np.ones(SIZE)[None, :], np.ones(SIZE)[:, None] * c[None, :]


def _triangle_wave(t: np.ndarray) -> np.ndarray:
    """A period-1 triangle wave in [0, 1] (exact arithmetic: floor, subtraction, abs)."""
    return 2.0 * np.abs(t - np.floor(t) - 0.5)


def _background(rng: np.random.Generator) -> np.ndarray:
    """A muted background (128, 128, 3) in [0, 1]: gradient, stripes, checkerboard or blotches."""
    yy, xx = _grid()
    c0 = rng.uniform(0.2, 0.8, 3)
    c1 = np.clip(c0 + rng.uniform(-0.3, 0.3, 3), 0.05, 0.95)
    kind = int(rng.integers(4))
    if kind == 0:  # linear gradient in a random direction
        d = rng.uniform(-1.0, 1.0, 2)
        t = (d[0] * (xx - 64.0) + d[1] * (yy - 64.0)) / (128.0 * (abs(d[0]) + abs(d[1]) + 1e-9)) + 0.5
    elif kind == 1:  # stripes
        period = rng.uniform(6.0, 24.0)
        d = rng.uniform(-1.0, 1.0, 2)
        t = _triangle_wave((d[0] * xx + d[1] * yy) / period)
    elif kind == 2:  # checkerboard with soft contrast
        cell = int(rng.integers(8, 25))
        t = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2) * 0.6 + 0.2
    else:  # blotches: an 8x8 random grid, bilinear-upsampled by 16
        g = rng.uniform(0.0, 1.0, (9, 9))
        fy, fx = yy / 16.0, xx / 16.0
        iy, ix = np.floor(fy).astype(np.int64), np.floor(fx).astype(np.int64)
        wy, wx = fy - iy, fx - ix
        t = (g[iy, ix] * (1 - wy) * (1 - wx) + g[iy + 1, ix] * wy * (1 - wx)) + (
            g[iy, ix + 1] * (1 - wy) * wx + g[iy + 1, ix + 1] * wy * wx
        )
    bg = c0[None, None, :] * (1.0 - t[..., None]) + c1[None, None, :] * t[..., None]
    return bg + rng.uniform(-0.03, 0.03, bg.shape)  # a fine paper-like grain


def _mask(label: int, x0: int, y0: int, side: int) -> np.ndarray:
    """The object's pixels: a square, a disc or an upright triangle inscribed in a side x side square."""
    yy, xx = _grid()
    if label == 0:
        return (xx > x0) & (xx < x0 + side) & (yy > y0) & (yy < y0 + side)
    if label == 1:
        r = side / 2.0
        return (xx - x0 - r) ** 2 + (yy - y0 - r) ** 2 <= r * r
    # apex (x0 + side/2, y0), base from (x0, y0 + side) to (x0 + side, y0 + side)
    u = (yy - y0) / side  # 0 at the apex, 1 at the base
    half = u * (side / 2.0)
    return (u >= 0) & (u <= 1) & (np.abs(xx - x0 - side / 2.0) <= half)


def _object_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated colour: one channel high, one low, one anywhere (shuffled)."""
    c = np.array([rng.uniform(0.75, 1.0), rng.uniform(0.0, 0.25), rng.uniform(0.0, 1.0)])
    return c[rng.permutation(3)]


def _bar(rng: np.random.Generator, x0: float, y0: float, x1: float, y1: float) -> tuple[np.ndarray, np.ndarray]:
    """A grey bar with fine stripes over the box (x0, y0)-(x1, y1): its mask and its (128, 128, 3) colours."""
    yy, xx = _grid()
    mask = (xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)
    grey = rng.uniform(0.3, 0.7)
    t = _triangle_wave((xx + yy) / 5.0)
    return mask, np.repeat((grey + 0.15 * (t - 0.5))[..., None], 3, axis=-1)


def _occluder(rng: np.random.Generator, box: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """A bar covering 25-50% of ``box`` (x, y, w, h) from one of its sides, reaching past it."""
    x, y, w, h = box
    f = rng.uniform(0.25, 0.5)
    side = int(rng.integers(4))
    if side == 0:  # from the left
        return x - 4.0, y - 4.0, x + f * w, y + h + 4.0
    if side == 1:  # from the right
        return x + (1 - f) * w, y - 4.0, x + w + 4.0, y + h + 4.0
    if side == 2:  # from the top
        return x - 4.0, y - 4.0, x + w + 4.0, y + f * h
    return x - 4.0, y + (1 - f) * h, x + w + 4.0, y + h + 4.0


def _blur121(x: np.ndarray) -> np.ndarray:
    """A separable [1, 2, 1] / 4 blur with replicated edges (dyadic weights: exact)."""
    p = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h = 0.25 * p[:, :-2] + 0.5 * p[:, 1:-1] + 0.25 * p[:, 2:]
    return 0.25 * h[:-2] + 0.5 * h[1:-1] + 0.25 * h[2:]


def _scene(rng: np.random.Generator, camera: str) -> Scene:
    img = _background(rng)
    n = 0 if rng.random() < 0.08 else int(rng.integers(1, 5))
    sizes = ["large"] if n and rng.random() < 0.12 else [("small", "medium")[int(rng.integers(2))] for _ in range(n)]
    placed: list[tuple[int, int, int, int]] = []
    labels: list[int] = []
    for size in sizes:
        lo, hi = _SIDES[size]
        for _ in range(30):  # rejection sampling: objects do not overlap (2-pixel gap)
            side = int(rng.integers(lo, hi + 1))
            x0, y0 = int(rng.integers(1, SIZE - side)), int(rng.integers(1, SIZE - side))
            if all(
                x0 + side + 2 <= a or a + w + 2 <= x0 or y0 + side + 2 <= b or b + h + 2 <= y0 for a, b, w, h in placed
            ):
                placed.append((x0, y0, side, side))
                labels.append(int(rng.integers(len(CLASS_NAMES))))
                break
    boxes, occluded = [], []
    for (x0, y0, side, _), label in zip(placed, labels):
        mask = _mask(label, x0, y0, side)
        img[mask] = _object_colour(rng) * rng.uniform(0.85, 1.0)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        boxes.append((int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)))
        occluded.append(bool(rng.random() < 0.3))
    for box, occ in zip(boxes, occluded):
        if occ:
            mask, colour = _bar(rng, *_occluder(rng, box))
            img[mask] = colour[mask]
    if rng.random() < 0.4:  # a free-standing bar clear of the objects: a distractor, not an object
        x, y = rng.uniform(0, 110, 2)
        w, h = rng.uniform(4, 20, 2)
        if all(x + w + 2 <= a or a + bw + 2 <= x or y + h + 2 <= b or b + bh + 2 <= y for a, b, bw, bh in boxes):
            mask, colour = _bar(rng, x, y, x + w, y + h)
            img[mask] = colour[mask]
    lighting = "dusk" if rng.random() < 0.3 else "day"
    if lighting == "dusk":
        img = img * np.array([0.45, 0.5, 0.65])
    if camera == "B":  # dim, low contrast, slight blur, sensor noise
        img = 0.2 + 0.45 * _blur121(img)
        img = img + 0.05 * rng.standard_normal(img.shape)
    pixels = np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    return Scene(
        image=pixels,
        boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4),
        labels=np.array(labels, dtype=np.int64),
        occluded=np.array(occluded, dtype=bool),
        camera=camera,
        lighting=lighting,
    )


def build_scenes(seed: int, n: int, *, split: str = "audit") -> list[Scene]:
    """``n`` synthetic scenes of ``split`` (``"audit"`` or ``"train"``), the same pixels on every CPU.

    Scene ``i`` depends only on ``(seed, split, i)``, so a longer list starts with the shorter one.
    Camera ``B`` is drawn for :data:`CAMERA_B_SHARE` of the split (exactly, on a seeded permutation).

    Raises:
        ValueError: an unknown split or a negative ``n``.
    """
    if split not in _SPLITS or n < 0:
        raise ValueError(f"build_scenes: split must be one of {sorted(_SPLITS)} and n >= 0, got {split!r}, {n}")
    stream = _SPLITS[split]
    scenes = []
    for i in range(n):
        rng = np.random.default_rng([seed, stream, i])
        camera = "B" if rng.random() < CAMERA_B_SHARE[split] else "A"
        scenes.append(_scene(rng, camera))
    return scenes


# ----------------------------------------------------------------------- detector


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class ShapesDetector(nn.Module):
    """A small anchor-free detector (CenterNet-style, stride 4) with the Ultralytics YOLO export layout.

    A four-level backbone (strides 4, 8, 16, 32) merged top-down to stride 4, and one head
    predicting per cell a class heatmap, the centre's offset within the cell and the box's
    log size. :meth:`raw` gives the head's logits (for training); :meth:`forward` decodes
    them to one candidate box per cell: a cell's class scores are its heatmap where it is a
    3x3 local maximum among the image's 100 best, else 0 (CenterNet's peak extraction), so
    cvaudit's NMS has little left to do.

    Shape:
        input: (B, 3, H, W) in [0, 1], H and W multiples of 32 (the demo: 128x128).
        output: (B, 4 + C, A), A = (H / 4) * (W / 4) cells row-major; rows ``cx, cy, w, h`` in
        input pixels, then the C class scores in [0, 1].
    """

    stride = 4
    max_peaks = 100

    def __init__(self, num_classes: int = len(CLASS_NAMES), width: int = 16) -> None:
        super().__init__()
        c = width
        self.num_classes = num_classes
        self.stem = nn.Sequential(_conv(3, c, 2), _conv(c, 2 * c, 2))
        self.level4 = _conv(2 * c, 2 * c)
        self.level8 = nn.Sequential(_conv(2 * c, 3 * c, 2), _conv(3 * c, 3 * c))
        self.level16 = nn.Sequential(_conv(3 * c, 4 * c, 2), _conv(4 * c, 4 * c))
        self.level32 = nn.Sequential(_conv(4 * c, 4 * c, 2), _conv(4 * c, 4 * c))
        self.merge16 = _conv(4 * c, 3 * c)
        self.merge8 = _conv(3 * c, 2 * c)
        self.merge4 = _conv(2 * c, 2 * c)
        self.head = nn.Conv2d(2 * c, num_classes + 4, 1)
        with torch.no_grad():  # CenterNet's prior: heatmap logits start at about 1% probability
            self.head.bias[:num_classes].fill_(-4.6)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The head's logits, (B, C + 4, H / 4, W / 4): C heatmap logits, 2 offset logits, 2 log sizes."""
        f4 = self.level4(self.stem(x))
        f8 = self.level8(f4)
        f16 = self.level16(f8)
        f32 = self.level32(f16)
        p16 = self.merge16(f16 + F.interpolate(f32, scale_factor=2.0, mode="nearest"))
        p8 = self.merge8(f8 + F.interpolate(p16, scale_factor=2.0, mode="nearest"))
        p4 = self.merge4(f4 + F.interpolate(p8, scale_factor=2.0, mode="nearest"))
        return self.head(p4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.raw(x)
        c = self.num_classes
        heat = torch.sigmoid(out[:, :c])
        peak = F.max_pool2d(heat, 3, stride=1, padding=1)
        scores = heat * (heat == peak).to(heat.dtype)
        flat = scores.flatten(1)  # CenterNet keeps the top 100 peaks of an image (COCO counts 100 per image)
        kth = flat.topk(min(self.max_peaks, flat.shape[1]), dim=1).values[:, -1:]
        scores = torch.where(flat >= kth, flat, torch.zeros_like(flat)).view_as(scores)
        h, w = out.shape[2], out.shape[3]
        gy = torch.arange(h, dtype=out.dtype, device=out.device).view(1, h, 1)
        gx = torch.arange(w, dtype=out.dtype, device=out.device).view(1, 1, w)
        off = torch.sigmoid(out[:, c : c + 2])
        cx = (gx + off[:, 0]) * self.stride
        cy = (gy + off[:, 1]) * self.stride
        size = torch.exp(out[:, c + 2 : c + 4].clamp(-3.0, 5.0)) * self.stride
        boxes = torch.stack((cx, cy, size[:, 0], size[:, 1]), dim=1)
        return torch.cat((boxes, scores), dim=1).flatten(2)


def shapes_detector() -> ShapesDetector:
    """The demo detector's architecture, untrained, in eval mode (``model.factory`` in the demo's config)."""
    return ShapesDetector().eval()


def load_detection_demo_weights() -> ShapesDetector:
    """The shipped demo detector (:func:`train_detector` for seed 0), its file checked by digest.

    Raises:
        CvauditError: the weights are missing or do not match :data:`DETECTION_WEIGHTS_SHA256`.
    """
    from audit.contract.errors import CvauditError

    if not DETECTION_WEIGHTS.is_file():
        raise CvauditError(f"{DETECTION_WEIGHTS.name}: the detection demo's weights are missing from the installation")
    blob = DETECTION_WEIGHTS.read_bytes()
    if hashlib.sha256(blob).hexdigest() != DETECTION_WEIGHTS_SHA256:
        raise CvauditError(f"{DETECTION_WEIGHTS.name}: the detection demo's weights do not match their SHA-256")
    model = ShapesDetector()
    model.load_state_dict(torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True))
    return model.eval()


# ----------------------------------------------------------------------- training


def _targets(scenes: Sequence[Scene], num_classes: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CenterNet targets: Gaussian heatmaps (N, C, h, w) and objects (M, 7) = image, class, cell y, cell x,
    offset x, offset y as fractions of a cell, and ``log(w / stride)``, ``log(h / stride)`` in two more columns."""
    cells = SIZE // stride
    heat = np.zeros((len(scenes), num_classes, cells, cells), dtype=np.float32)
    c = np.arange(cells, dtype=np.float64)
    rows = []
    for i, scene in enumerate(scenes):
        for (x, y, w, h), label in zip(scene.boxes, scene.labels):
            cx, cy = (x + w / 2) / stride, (y + h / 2) / stride
            gx, gy = min(int(cx), cells - 1), min(int(cy), cells - 1)
            sigma = max(0.5, 0.12 * math.sqrt(w * h) / stride)
            g = np.exp(-((c[None, :] - gx) ** 2 + (c[:, None] - gy) ** 2) / (2 * sigma * sigma))
            heat[i, label] = np.maximum(heat[i, label], g)
            rows.append((i, label, gy, gx, cx - gx, cy - gy, math.log(w / stride), math.log(h / stride)))
    return torch.from_numpy(heat), torch.tensor(rows, dtype=torch.float32).reshape(-1, 8)


def _loss(raw: torch.Tensor, heat: torch.Tensor, objects: torch.Tensor, num_classes: int) -> torch.Tensor:
    """CenterNet's loss: penalty-reduced focal loss on the heatmap plus L1 on offsets and log sizes."""
    pred = torch.sigmoid(raw[:, :num_classes]).clamp(1e-4, 1 - 1e-4)
    pos = heat.eq(1.0).to(pred.dtype)
    pos_loss = -torch.log(pred) * (1 - pred) ** 2 * pos
    neg_loss = -torch.log(1 - pred) * pred**2 * (1 - heat) ** 4 * (1 - pos)
    n = max(int(objects.shape[0]), 1)
    loss = (pos_loss.sum() + neg_loss.sum()) / n
    if objects.shape[0]:
        b, gy, gx = objects[:, 0].long(), objects[:, 2].long(), objects[:, 3].long()
        reg = raw[b, num_classes:, gy, gx]  # (M, 4)
        loss = loss + F.l1_loss(torch.sigmoid(reg[:, :2]), objects[:, 4:6], reduction="sum") / n
        loss = loss + F.l1_loss(reg[:, 2:], objects[:, 6:8], reduction="sum") / n
    return loss


def train_detector(
    *,
    seed: int = 0,
    n_train: int = 2000,
    epochs: int = 12,
    batch_size: int = 32,
    log: Callable[[str], None] | None = None,
) -> ShapesDetector:
    """Train :class:`ShapesDetector` on ``n_train`` training scenes (about 140 CPU seconds: under three minutes on one core).

    AdamW with a one-cycle learning rate; half of each batch flipped left-right, a mild
    brightness and contrast jitter. Everything random is drawn from generators seeded
    with ``seed`` (never the global RNG); the result still depends on the CPU's kernels.
    """
    scenes = build_scenes(seed, n_train, split="train")
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).contiguous()
    c, stride = len(CLASS_NAMES), ShapesDetector.stride
    heat, objects = _targets(scenes, c, stride)
    flipped_scenes = [
        Scene(
            s.image,
            np.column_stack([SIZE - s.boxes[:, 0] - s.boxes[:, 2], s.boxes[:, 1:]]) if len(s.boxes) else s.boxes,
            s.labels,
            s.occluded,
            s.camera,
            s.lighting,
        )
        for s in scenes
    ]
    heat_f, objects_f = _targets(flipped_scenes, c, stride)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ShapesDetector()
    steps = epochs * math.ceil(n_train / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=steps, pct_start=0.15)
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(n_train, generator=g)
        total = 0.0
        for start in range(0, n_train, batch_size):
            idx = perm[start : start + batch_size]
            flip = torch.rand(len(idx), generator=g) < 0.5
            x = images[idx].float() / 255.0
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            contrast = 0.8 + 0.4 * torch.rand(len(idx), 1, 1, 1, generator=g)
            bright = 0.1 * (torch.rand(len(idx), 1, 1, 1, generator=g) - 0.5)
            x = (0.5 + contrast * (x - 0.5) + bright).clamp(0, 1)
            h = torch.where(flip[:, None, None, None], heat_f[idx], heat[idx])
            rows = []
            for k, (i, f) in enumerate(zip(idx.tolist(), flip.tolist())):
                src = objects_f if f else objects
                sel = src[src[:, 0] == i].clone()
                sel[:, 0] = k
                rows.append(sel)
            loss = _loss(model.raw(x), h, torch.cat(rows), c)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs}: loss {total / n_train:.3f}")
    return model.eval()


# ----------------------------------------------------------------------- measuring


def sample_id(index: int) -> str:
    """The manifest's ``sample_id`` of audit scene ``index`` (also the stressors' per-sample key)."""
    return f"shapes-{index:04d}"


@dataclass(frozen=True)
class DemoMeasurement:
    """The demo detector on a list of scenes under one condition.

    Attributes:
        map50, map: COCO AP at IoU 0.5 and mAP@[.5:.95] (faster-coco-eval).
        recall: recall at the operating point (score >= 0.5, IoU >= 0.5), all objects.
        recall_by_camera, recall_by_occlusion: the same per camera / per ``occluded`` value.
        fp_per_image: false positives per image at the operating point.
    """

    map50: float
    map: float
    recall: float
    recall_by_camera: dict[str, float]
    recall_by_occlusion: dict[str, float]
    fp_per_image: float


def measure_detector(
    model: nn.Module,
    scenes: Sequence[Scene],
    *,
    stressor: str | None = None,
    severity: float | None = None,
    seed: int = 0,
    score_threshold: float = 0.5,
    iou_threshold: float = 0.5,
) -> DemoMeasurement:
    """Score ``model`` on ``scenes`` (optionally stressed) with cvaudit's own detection library.

    The stressor is applied as the audit applies it (parameters drawn per sample from
    :func:`sample_id` keys and ``seed``, then ``apply``); the output goes through
    ``decode_yolo`` (score > 0.001 for AP, cvaudit's NMS at ``iou_threshold``) and
    :class:`~audit.evaluation.detection.coco_metrics.CocoEvaluator`; recall and false
    positives per image come from the operating point's matching at ``score_threshold``.
    """
    import tempfile

    from audit.evaluation.detection.coco_metrics import (
        CocoEvaluator,
        ImageDetections,
        ImageTruth,
        write_detections_json,
    )
    from audit.evaluation.detection.operating_point import count_matches, match_images, summarize
    from audit.evaluation.detection.outputs import decode_yolo
    from stressors import get as get_stressor
    from stressors import sample_keys

    ids = [sample_id(i) for i in range(len(scenes))]
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255.0
    if stressor is not None:
        st = get_stressor(stressor)
        params = st.sample_params(sample_keys(ids), severity, seed=seed)
        images = st.apply(images, params)
    detections = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(scenes), 64):
            out = model(images[start : start + 64])
            decoded = decode_yolo(
                out,
                image_ids=ids[start : start + 64],
                num_classes=len(CLASS_NAMES),
                score_threshold=0.001,
                iou_threshold=iou_threshold,
                max_detections=100,
            )
            for k, d in enumerate(decoded):
                detections.append(
                    ImageDetections(
                        start + k + 1, d.boxes.double().numpy(), d.scores.double().numpy(), d.labels.numpy() + 1
                    )
                )
    truths = [ImageTruth(i + 1, SIZE, SIZE, s.boxes, s.labels + 1) for i, s in enumerate(scenes)]
    categories = {k + 1: name for k, name in enumerate(CLASS_NAMES)}
    evaluator = CocoEvaluator(truths=truths, categories=categories)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "detections.json"
        write_detections_json(path, detections, image_ids=evaluator.image_ids, categories=categories)
        coco = evaluator.evaluate(path)
    matches = match_images(truths, detections, score_threshold=score_threshold, iou_threshold=iou_threshold)
    overall = summarize(count_matches(matches, categories))

    def recall_by(values: Callable[[Scene], Sequence[str]]) -> dict[str, float]:
        hit: dict[str, list[int]] = {}
        for scene, m in zip(scenes, matches):
            for value, missed in zip(values(scene), m.missed.tolist()):
                tally = hit.setdefault(value, [0, 0])
                tally[0] += not missed
                tally[1] += 1
        return {k: v[0] / v[1] for k, v in sorted(hit.items())}

    return DemoMeasurement(
        map50=float(coco.ap50),
        map=float(coco.map),
        recall=float(overall.recall or 0.0),
        recall_by_camera=recall_by(lambda s: [s.camera] * len(s.labels)),
        recall_by_occlusion=recall_by(lambda s: ["true" if o else "false" for o in s.occluded.tolist()]),
        fp_per_image=float(overall.fp_per_image or 0.0),
    )


# ----------------------------------------------------------------------- the demo's files


#: The demo policy's rules (the policy YAML's ``rules``); each is one the data decide honestly:
#: clean AP50 and false positives pass, night and the camera gap are meant to show real problems.
DETECTION_POLICY_RULES: list[dict[str, object]] = [
    {
        "id": "clean-map50",
        "description": "COCO AP at IoU 0.5 on clean images.",
        "condition": "clean",
        "metric": "map_50",
        "min": 0.5,
        "blocking": True,
        "required": True,
    },
    {
        "id": "clean-fp-per-image",
        "description": "False positives per image at the operating point (score 0.5, IoU 0.5).",
        "condition": "clean",
        "metric": "fp_per_image",
        "max": 0.5,
        "blocking": True,
    },
    {
        "id": "night3-map50",
        "description": "AP50 at night (severity 3) keeps most of the clean AP50 (tight on purpose).",
        "condition": "night@3",
        "metric": "map_50",
        "min": 0.5,
        "blocking": False,
        "required": False,
    },
    {
        "id": "occlusion3-map50",
        "description": "AP50 with a fifth of the image hidden.",
        "condition": "occlusion@3",
        "metric": "map_50",
        "min": 0.4,
        "blocking": False,
        "required": False,
    },
    {
        "id": "clean-camera-recall-gap",
        "description": "Cameras A and B should find the same share of objects at the operating point.",
        "condition": "clean",
        "attribute": "camera",
        "aggregate": "gap",
        "metric": "recall",
        "max": 0.10,
        "blocking": False,
    },
]

#: The demo policy's governance section (as in the classifier demo's policy).
DETECTION_POLICY_GOVERNANCE: dict[str, object] = {
    "id_column": "sample_id",
    "retention": {"period_days": 1825},
    "consent": {},
    "purpose": {},
    "lawful_basis": {},
    "region": {"allowed": ["eu-west", "eu-central"]},
}

DETECTION_DEMO_CONFIG = """\
# The detection demo audit: written by `cvaudit demo --task detection`; run it with `cvaudit run config.yaml`.
task: detection
seed: {seed}
device: auto
batch_size: 64
model:
  factory: "audit.demo_detection:shapes_detector"
  weights: {weights}
  input_size: [128, 128]
  mean: [0, 0, 0]
  std: [1, 1, 1]
  class_names: [square, disc, triangle]
data:
  manifest: manifest.csv
  attributes: [camera, lighting]
detection:
  annotations: instances.json
  object_attributes: [occluded]
  output: yolo
  score_threshold: 0.5
  iou_threshold: 0.5
stressors:
  - {{name: night, severities: [1, 3]}}
  - {{name: occlusion, severities: [1, 3]}}
  - {{name: blur, kind: defocus, severities: [1, 3]}}
  - {{name: rotation, severities: [1, 3, 5]}}
  - {{name: occlusion, label: occluded_objects, target: objects, severities: [1, 3, 5]}}
policy: policy.yaml
report:
  formats: [html, pdf]
  images: anonymized
  sign_key: {sign_key}
"""


def _governance_columns(i: int) -> dict[str, str]:
    """Capture metadata of audit image ``i``; a few rows deliberately violate the demo policy."""
    row = {
        "capture_date": f"2025-{(i % 12) + 1:02d}-{(i % 27) + 1:02d}",
        "consent": "granted",
        "region": "eu-west" if i % 2 else "eu-central",
        "purpose": "model evaluation",
        "lawful_basis": "consent",
    }
    if i % 97 == 5:
        row["capture_date"] = "2017-03-14"  # retention period long expired
    if i % 151 == 7:
        row["consent"] = "withdrawn"
    if i % 199 == 11:
        row["region"] = "us-east"  # outside the allowed regions
    if i % 173 == 13:
        row["lawful_basis"] = ""  # no recorded lawful basis
    return row


def coco_instances(scenes: Sequence[Scene], file_names: Sequence[str]) -> dict[str, object]:
    """The scenes' ground truth as a COCO instances document (category ids 1..3, ``occluded`` per annotation)."""
    images, annotations = [], []
    for i, (scene, name) in enumerate(zip(scenes, file_names)):
        images.append({"id": i + 1, "file_name": name, "width": SIZE, "height": SIZE})
        for box, label, occ in zip(scene.boxes.tolist(), scene.labels.tolist(), scene.occluded.tolist()):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": label + 1,
                    "bbox": [int(v) for v in box],
                    "area": int(box[2] * box[3]),
                    "iscrowd": 0,
                    "occluded": bool(occ),
                }
            )
    categories = [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(CLASS_NAMES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _write_policy(path: Path) -> None:
    import yaml

    policy = {
        "version": 1,
        "name": "detection-demo",
        "description": "Detection demo policy: blocking rules on clean AP50 and false positives; warnings on "
        "night, occlusion, the camera recall gap and data governance.",
        "on_insufficient_data": "warn",
        "rules": DETECTION_POLICY_RULES,
        "governance": DETECTION_POLICY_GOVERNANCE,
        "report": {"images": "anonymized"},
    }
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")


def write_detection_demo(
    folder: Path,
    *,
    seed: int = 0,
    train: bool = False,
    sign: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Write the detection demo's audit set into ``folder`` and return the path of its ``config.yaml``.

    Writes ``images/shapes-NNNN.png`` (:data:`AUDIT_IMAGES` held-out scenes), ``instances.json``
    (COCO), ``manifest.csv`` (``path``, ``sample_id``, ``camera``, ``lighting`` and the governance
    columns), ``policy.yaml`` (:data:`DETECTION_POLICY_RULES`) and ``config.yaml``. The detector is
    the shipped one (its weights file named in the config, checked by digest here) unless
    ``train`` is set or ``seed`` is not the seed it was trained for; then :func:`train_detector`
    trains it (about two minutes) and its weights are written to ``folder/detector.pt``.

    Raises:
        CvauditError: the shipped weights are missing or altered.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if train or seed != DETECTION_WEIGHTS_SEED:
        log("cvaudit demo: training the shapes detector (about two minutes on a CPU) ...")
        model = train_detector(seed=seed)
        weights = folder / "detector.pt"
        torch.save({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, weights)
    else:
        load_detection_demo_weights()  # checks the digest before the config names the file
        weights = DETECTION_WEIGHTS
    log("cvaudit demo: writing the shapes audit set ...")
    scenes = build_scenes(seed, AUDIT_IMAGES, split="audit")
    images = folder / "images"
    if images.exists():
        shutil.rmtree(images)
    images.mkdir()
    from PIL import Image

    names = []
    for i, scene in enumerate(scenes):
        name = f"images/{sample_id(i)}.png"
        Image.fromarray(scene.image).save(folder / name)
        names.append(name)
    (folder / "instances.json").write_text(json.dumps(coco_instances(scenes, names), indent=1), encoding="utf-8")
    columns = [
        "path",
        "sample_id",
        "camera",
        "lighting",
        "capture_date",
        "consent",
        "region",
        "purpose",
        "lawful_basis",
    ]
    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for i, (scene, name) in enumerate(zip(scenes, names)):
            writer.writerow(
                {"path": name, "sample_id": sample_id(i), "camera": scene.camera, "lighting": scene.lighting}
                | _governance_columns(i)
            )
    _write_policy(folder / "policy.yaml")
    sign_key = "null"
    if sign:
        keys = folder / "keys"
        if not (keys / "pdf-signing.cert.pem").exists():
            from reports import keygen

            keygen(keys, passphrase=None)
        sign_key = "keys"
    config = folder / "config.yaml"
    config.write_text(
        DETECTION_DEMO_CONFIG.format(seed=seed, weights=json.dumps(str(weights)), sign_key=sign_key), encoding="utf-8"
    )
    return config
