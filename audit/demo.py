"""``cvaudit demo``: a complete audit with nothing downloaded.

It trains (seconds, cached) a small CNN on scikit-learn's bundled handwritten
digits (``load_digits``, 8x8, upsampled to 32x32 RGB), writes a held-out audit
set as real PNG files with a manifest, and returns a ``config.yaml`` that the
caller runs through exactly the code path of ``cvaudit run``.

The manifest has subgroup attributes that genuinely differ:

- ``camera``: two simulated sensor profiles on disjoint subsets. Camera ``A``
  is clean; camera ``B`` is a dim, low-contrast, warm-tinted, slightly blurred
  and noisy sensor. The model is trained mostly (90%) on ``A`` and audited on
  a 50/50 split, so it is measurably worse on ``B``.
- ``ink``: ``thin`` or ``thick`` strokes, split at the median ink mass.

and governance columns (``capture_date``, ``consent``, ``region``,
``purpose``) with a few deliberate violations: expired retention, withdrawn
consent, a region outside the allowed list.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

DEMO_VERSION = "1"  # bump when the data or the training recipe changes (invalidates the cache)
SIZE = 32


class DigitsCNN(nn.Module):
    """A small CNN for 32x32 RGB digits (about 60k parameters)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Linear(64 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def _upsample(digits: np.ndarray) -> np.ndarray:
    """(N, 8, 8) in 0..16 -> (N, 32, 32, 3) float in [0, 1]: dark ink on light paper."""
    x = torch.from_numpy(digits.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    gray = 1.0 - x.clamp(0, 1)
    return gray.repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()


def camera_b(images: np.ndarray, seed: int) -> np.ndarray:
    """Sensor profile B: dim, low contrast, warm tint, slight blur, noise (deterministic)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    kernel = torch.tensor([1.0, 2.0, 1.0]) / 4
    k2 = (kernel[:, None] * kernel[None, :]).expand(3, 1, 3, 3).contiguous()
    x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k2, groups=3)
    x = 0.25 + 0.45 * x
    x = x * torch.tensor([1.0, 0.85, 0.6]).view(1, 3, 1, 1)
    g = torch.Generator().manual_seed(seed)
    x = x + 0.06 * torch.randn(x.shape, generator=g)
    return x.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def build_demo_data(seed: int = 0) -> dict[str, np.ndarray]:
    """The demo's train and audit splits with their attributes (deterministic)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    n = len(digits.target)
    order = rng.permutation(n)
    n_audit = 600
    audit_idx, train_idx = np.sort(order[:n_audit]), order[n_audit:]
    images = _upsample(digits.images)
    labels = digits.target.astype(np.int64)
    # Camera B for 10% of training images and 50% of audit images (disjoint subsets by construction).
    cam = np.zeros(n, dtype=bool)
    cam[train_idx[: len(train_idx) // 10]] = True
    cam[audit_idx[rng.permutation(n_audit)[: n_audit // 2]]] = True
    out = images.copy()
    out[cam] = camera_b(images[cam], seed + 1)
    ink_mass = digits.images.reshape(n, -1).sum(axis=1)
    thick = ink_mass > np.median(ink_mass)
    return {
        "train_x": out[train_idx],
        "train_y": labels[train_idx],
        "audit_x": out[audit_idx],
        "audit_y": labels[audit_idx],
        "audit_index": audit_idx,
        "audit_camera": np.where(cam[audit_idx], "B", "A"),
        "audit_ink": np.where(thick[audit_idx], "thick", "thin"),
    }


def _photometric_jitter(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Mild training augmentation: contrast, brightness and sensor-noise jitter per image."""
    n = x.shape[0]
    contrast = 0.5 + 0.5 * torch.rand(n, 1, 1, 1, generator=g)
    brightness = 0.3 * (torch.rand(n, 1, 1, 1, generator=g) - 0.5)
    sigma = 0.08 * torch.rand(n, 1, 1, 1, generator=g)
    x = 0.5 + contrast * (x - 0.5) + brightness + sigma * torch.randn(x.shape, generator=g)
    return x.clamp(0, 1)


def train_demo_model(data: dict[str, np.ndarray], *, seed: int = 0, epochs: int = 12) -> DigitsCNN:
    """Train :class:`DigitsCNN` on the demo's training split (seconds on a CPU).

    Half of each batch gets mild photometric jitter, as a production model would be
    trained with; the model stays clearly worse on camera B, which it rarely saw.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsCNN()
        x = torch.from_numpy(data["train_x"]).permute(0, 3, 1, 2).float()
        y = torch.from_numpy(data["train_y"])
        mean, std = 0.5, 0.25
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(len(y), generator=g)
            for start in range(0, len(y), 64):
                idx = perm[start : start + 64]
                xb = x[idx]
                half = len(idx) // 2
                xb = torch.cat([_photometric_jitter(xb[:half], g), xb[half:]])
                loss = F.cross_entropy(model((xb - mean) / std), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        model.eval()
    return model


def _write_images(folder: Path, data: dict[str, np.ndarray]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for img, k in zip(data["audit_x"], data["audit_index"]):
        name = f"digit-{int(k):04d}.png"
        Image.fromarray((img * 255).round().astype(np.uint8)).save(folder / name)
        paths.append(f"images/{name}")
    return paths


def _governance_columns(i: int) -> dict[str, str]:
    """Capture metadata; a few rows deliberately violate the demo policy."""
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


def write_manifest(path: Path, rel_paths: list[str], data: dict[str, np.ndarray]) -> None:
    cols = [
        "sample_id",
        "path",
        "label",
        "camera",
        "ink",
        "capture_date",
        "consent",
        "region",
        "purpose",
        "lawful_basis",
    ]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for i, rel in enumerate(rel_paths):
            w.writerow(
                {
                    "sample_id": f"digits-{int(data['audit_index'][i]):04d}",
                    "path": rel,
                    "label": int(data["audit_y"][i]),
                    "camera": data["audit_camera"][i],
                    "ink": data["audit_ink"][i],
                    **_governance_columns(i),
                }
            )


DEMO_CONFIG = """\
# The demo audit: written by `cvaudit demo`; run it yourself with `cvaudit run config.yaml`.
seed: 0
device: auto
batch_size: 128
model:
  path: model.pt
  outputs: logits
  input_size: [32, 32]
  mean: [0.5, 0.5, 0.5]
  std: [0.25, 0.25, 0.25]
  class_names: [zero, one, two, three, four, five, six, seven, eight, nine]
data:
  manifest: manifest.csv
  attributes: [camera, ink]
  intersections: [[camera, ink]]
  on_bad_image: error
stressors:
  - {name: night, severities: [1, 2, 3, 4, 5]}
  - {name: glare, severities: [1, 3, 5]}
  - {name: blur, kind: defocus, severities: [1, 3, 5]}
  - {name: occlusion, fill: black, severities: [1, 3, 5]}
  - {name: pgd, epsilons: [0.0, 0.01, 0.03, 0.1, 0.5], steps: 20}
  - {name: fgsm, epsilons: [0.0, 0.01, 0.03, 0.1]}
policy: demo
evaluation:
  min_group_size: 30
  n_bootstrap: 1000
  attack_samples: 200
report:
  formats: [html, pdf]
  images: anonymized
  sign_key: {sign_key}
"""


def _fingerprint(seed: int) -> str:
    import sklearn

    return hashlib.sha256(f"{DEMO_VERSION}|{seed}|{torch.__version__}|{sklearn.__version__}".encode()).hexdigest()[:16]


def prepare_demo(workspace: Path, *, seed: int = 0, sign: bool = True, log: Callable[[str], None] = print) -> Path:
    """Build (or reuse) the demo workspace and return the path of its ``config.yaml``."""
    workspace.mkdir(parents=True, exist_ok=True)
    stamp = workspace / "demo.json"
    fingerprint = _fingerprint(seed)
    cached = stamp.exists() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint
    if not cached:
        log("cvaudit demo: building the digits audit set and training the demo CNN ...")
        data = build_demo_data(seed)
        model = train_demo_model(data, seed=seed)
        torch.jit.save(torch.jit.script(model), str(workspace / "model.pt"))
        rel = _write_images(workspace / "images", data)
        write_manifest(workspace / "manifest.csv", rel, data)
        stamp.write_text(json.dumps({"fingerprint": fingerprint}))
    else:
        log("cvaudit demo: reusing the cached model and audit set")
    sign_key = "null"
    if sign:
        keys = workspace / "keys"
        if not (keys / "pdf-signing.cert.pem").exists():
            from reports.keys import keygen

            keygen(keys, passphrase=None)
        sign_key = "keys"
    config = workspace / "config.yaml"
    config.write_text(DEMO_CONFIG.replace("{sign_key}", sign_key))
    return config
