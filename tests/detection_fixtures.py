"""Shared detection test helpers: a real scene set (PNG files, COCO JSON, manifest) and a detector that needs no training.

The scenes: grey, slightly noisy backgrounds with up to one rectangle per class, each painted in its class's
pure colour (red, green, blue). :class:`ColourBoxNet` finds them by colour: exact on clean images of camera
``A``, blind to camera ``B`` (a dimmer sensor: the colours no longer pass its threshold) and to dark
(night) images. So a run has a real camera gap and a real drop under night, with no training.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image
from torch import nn

CLASSES = ("red", "green", "blue")
WIDTH, HEIGHT = 96, 64


class ColourBoxNet(nn.Module):
    """One detection per class: the bounding box of the pixels of that class's pure colour.

    Output (the ``boxes`` contract's batched tuple): boxes (B, 3, 4) xyxy input pixels, scores (B, 3),
    labels (B, 3). A class whose colour is absent gets score 0 and an empty box.
    """

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, _, h, w = x.shape
        boxes, scores = [], []
        for c in range(3):
            a, b2 = (c + 1) % 3, (c + 2) % 3
            mask = (x[:, c] > 0.75) & (x[:, a] < 0.35) & (x[:, b2] < 0.35)
            cols, rows = mask.any(dim=1), mask.any(dim=2)  # (B, W), (B, H)
            found = cols.any(dim=1)
            x1 = torch.argmax(cols.int(), dim=1)
            x2 = w - torch.argmax(cols.flip(1).int(), dim=1)
            y1 = torch.argmax(rows.int(), dim=1)
            y2 = h - torch.argmax(rows.flip(1).int(), dim=1)
            box = torch.stack([x1, y1, x2, y2], dim=1).float() * found[:, None]
            inside = (x[:, c] * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1)
            boxes.append(box)
            scores.append((inside * found).clamp(0, 1))
        labels = torch.arange(3).expand(b, 3)
        return torch.stack(boxes, dim=1), torch.stack(scores, dim=1), labels


def make_detection_dataset(root: Path, n: int = 24, *, seed: int = 0, dim_camera_b: bool = True) -> tuple[Path, Path]:
    """``n`` scenes as PNG files under ``root/images``, ``root/instances.json`` and ``root/manifest.csv``.

    Camera ``A`` (even images) is bright, camera ``B`` (odd) dims every pixel to 70 % (unless
    ``dim_camera_b`` is false: then :class:`ColourBoxNet` finds every object). Returns the annotation file
    and the manifest.
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations, rows = [], [], []
    colours = np.eye(3)
    for i in range(n):
        camera = "A" if i % 2 == 0 else "B"
        pixels = 0.45 + rng.uniform(-0.04, 0.04, size=(HEIGHT, WIDTH, 3))
        present = [c for c in range(3) if rng.random() < 0.7]
        for c in present:
            bw, bh = int(rng.integers(10, 30)), int(rng.integers(8, 22))
            x, y = int(rng.integers(0, WIDTH - bw)), int(rng.integers(0, HEIGHT - bh))
            # rectangles of one class may not overlap another's: place them in their own third of the width
            x = min(c * WIDTH // 3 + x % (WIDTH // 3 - bw + 1), WIDTH - bw)
            pixels[y : y + bh, x : x + bw] = colours[c]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": c + 1,
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                    "occluded": bool(rng.random() < 0.3),
                }
            )
        if camera == "B" and dim_camera_b:
            pixels = pixels * 0.7
        name = f"scene_{i:03d}.png"
        Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(root / "images" / name)
        images.append({"id": i + 1, "file_name": f"images/{name}", "width": WIDTH, "height": HEIGHT})
        rows.append({"path": f"images/{name}", "sample_id": f"s{i:03d}", "camera": camera})
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(CLASSES)]
    instances = root / "instances.json"
    instances.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "sample_id", "camera"])
        writer.writeheader()
        writer.writerows(rows)
    return instances, manifest


def save_detector(path: Path, module: nn.Module | None = None) -> Path:
    """TorchScript of ``module`` (default :class:`ColourBoxNet`) at ``path``."""
    scripted = torch.jit.script(module or ColourBoxNet())
    scripted.save(str(path))
    return path


def write_detection_config(root: Path, model: Path, **overrides: Any) -> Path:
    """A ``task: detection`` config for :func:`make_detection_dataset`'s files in ``root``; ``overrides`` merged."""
    cfg: dict[str, Any] = {
        "task": "detection",
        "seed": 0,
        "device": "cpu",
        "batch_size": 8,
        "model": {"path": str(model), "input_size": [64, 64], "mean": [0.0], "std": [1.0]},
        "data": {"manifest": "manifest.csv", "attributes": ["camera"]},
        "detection": {"annotations": "instances.json", "object_attributes": ["occluded"]},
        "stressors": [{"name": "night", "severities": [3]}],
        "evaluation": {"n_bootstrap": 50, "min_group_size": 5},
        "report": {"formats": ["html"]},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def detection_section(root: Path, **overrides: Any) -> Any:
    """results.json's ``detection`` section of a real pass of :class:`ColourBoxNet` over :func:`make_detection_dataset`.

    Runs the evaluator's own pass and summary (no runner, no policy): for tests of what reads the section.
    """
    from audit.contract.config import load_config
    from audit.evaluation.conditions import build_conditions
    from audit.evaluation.detection.evaluate import evaluate_detector, read_detection_data
    from audit.evaluation.detection.outputs import decode_boxes
    from audit.evaluation.detection.summary import summarize_detection

    make_detection_dataset(root)
    cfg = load_config(write_detection_config(root, save_detector(root / "detector.pt"), **overrides))
    data = read_detection_data(cfg)
    conditions = build_conditions(cfg.stressors)
    net = ColourBoxNet()

    def detector(x: torch.Tensor, *, image_ids: list[str]) -> list[Any]:
        return decode_boxes(net(x), image_ids=image_ids, num_classes=len(CLASSES))

    work = root / "work"
    work.mkdir(exist_ok=True)
    passed = evaluate_detector(
        detector=detector, data=data, conditions=conditions, cfg=cfg, device=torch.device("cpu"), work=work
    )
    return summarize_detection(data=data, conditions=conditions, passed=passed, cfg=cfg, work=work).results
