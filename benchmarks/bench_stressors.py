"""Throughput of the image stressors against Albumentations, ImageNet-C code and a ResNet-18 forward.

Run from the repository root (CPU; one batch of real photographs, severity 3)::

    python benchmarks/bench_stressors.py [--batch 32] [--size 224] [--repeats 5] [--threads N]

Columns: images/s of the cvaudit stressor (``sample_params`` + ``apply`` on a
float batch), its cost as a share of the ResNet-18-like forward pass on the
same batch (:mod:`benchmarks.models`), the closest Albumentations transform
(per image, uint8 HWC, as Albumentations works) and, where one exists, the
ImageNet-C implementation from ``corrupt-tta`` (a maintained copy of
``imagecorruptions``; optional, the column is skipped if it is not installed).
Each number is the median over ``--repeats`` timed runs after one warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.models import ResNet18
from stressors.base import sample_keys
from stressors.blur import Blur
from stressors.glare import Glare
from stressors.imagenet_c import Brightness, Contrast, DefocusBlur, GaussianNoise, MotionBlur
from stressors.night import Night
from stressors.occlusion import Occlusion

SEVERITY = 3


def albumentations_counterparts() -> dict[str, tuple[str, Any]]:
    """Row label -> (description, transform) of the closest Albumentations transform at severity 3."""
    import albumentations as A

    return {
        "night": (
            "RandomBrightnessContrast(-0.75) + ISONoise",
            A.Compose(
                [
                    A.RandomBrightnessContrast(brightness_limit=(-0.75, -0.75), contrast_limit=0, p=1),
                    A.ISONoise(intensity=(0.5, 0.5), p=1),
                ]
            ),
        ),
        "glare": ("RandomSunFlare(src_radius=100)", A.RandomSunFlare(src_radius=100, p=1)),
        "blur kind=defocus": ("Defocus(radius=7)", A.Defocus(radius=(7, 7), p=1)),
        "blur kind=motion": ("MotionBlur(blur_limit=15)", A.MotionBlur(blur_limit=(15, 15), p=1)),
        "blur kind=gaussian": ("GaussianBlur(sigma=3)", A.GaussianBlur(sigma_limit=(3, 3), blur_limit=0, p=1)),
        "occlusion": (
            "CoarseDropout(1 hole, 45 %)",
            A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(0.45, 0.45), hole_width_range=(0.45, 0.45), p=1),
        ),
        "gaussian_noise": ("GaussNoise(std=0.18)", A.GaussNoise(std_range=(0.18, 0.18), p=1)),
        "defocus_blur": ("Defocus(radius=6)", A.Defocus(radius=(6, 6), p=1)),
        "motion_blur": ("MotionBlur(blur_limit=15)", A.MotionBlur(blur_limit=(15, 15), p=1)),
        "contrast": (
            "RandomBrightnessContrast(contrast=-0.8)",
            A.RandomBrightnessContrast(brightness_limit=0, contrast_limit=(-0.8, -0.8), p=1),
        ),
        "brightness": (
            "RandomBrightnessContrast(brightness=+0.3)",
            A.RandomBrightnessContrast(brightness_limit=(0.3, 0.3), contrast_limit=0, p=1),
        ),
    }


#: Row label -> corrupt-tta corruption name (the ImageNet-C implementation of the same corruption).
IMAGENET_C = {
    "blur kind=defocus": "defocus_blur",
    "blur kind=motion": "motion_blur",
    "blur kind=gaussian": "gaussian_blur",
    "gaussian_noise": "gaussian_noise",
    "defocus_blur": "defocus_blur",
    "motion_blur": "motion_blur",
    "contrast": "contrast",
    "brightness": "brightness",
}

STRESSORS: dict[str, Callable[[], Any]] = {
    "night": Night,
    "glare": Glare,
    "blur kind=defocus": lambda: Blur(kind="defocus"),
    "blur kind=motion": lambda: Blur(kind="motion"),
    "blur kind=gaussian": lambda: Blur(kind="gaussian"),
    "occlusion": Occlusion,
    "gaussian_noise": GaussianNoise,
    "defocus_blur": DefocusBlur,
    "motion_blur": MotionBlur,
    "contrast": Contrast,
    "brightness": Brightness,
}


def photo_batch(batch: int, size: int) -> torch.Tensor:
    """``batch`` random square crops of scikit-learn's two sample photographs, resized to ``size``."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(0)
    crops = []
    for i in range(batch):
        photo = photos[i % len(photos)]
        side = int(rng.integers(300, 420))
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        crop = Image.fromarray(photo[top : top + side, left : left + side]).resize(
            (size, size), Image.Resampling.BICUBIC
        )
        crops.append(np.asarray(crop))
    # Contiguous (N, C, H, W), as the audit's data loader stacks its batches: the bare
    # permute of an (N, H, W, C) array would leave a channels-last batch, on which every
    # per-channel pass (and the input check's min/max) runs several times slower.
    return (torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0).contiguous()


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    images = photo_batch(args.batch, args.size)
    uint8 = [np.ascontiguousarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for img in images]
    ids = sample_keys([f"bench{i}" for i in range(args.batch)])

    model = ResNet18().eval()
    with torch.inference_mode():
        forward_s = timed(lambda: model(images), max(1, args.repeats // 2))

    try:
        albu = albumentations_counterparts()
    except ImportError:
        albu = {}
    try:
        from corrupt_tta import corrupt
    except ImportError:
        corrupt = None

    rows = []
    for label, factory in STRESSORS.items():
        stressor = factory()

        def run_ours(stressor: Any = stressor) -> torch.Tensor:
            return stressor.apply(images, stressor.sample_params(ids, SEVERITY, seed=0))

        ours_s = timed(run_ours, args.repeats)
        row = {"label": label, "ours": args.batch / ours_s, "share": ours_s / forward_s}
        if label in albu:
            desc, transform = albu[label]
            row["albu_desc"] = desc
            row["albu"] = args.batch / timed(lambda t=transform: [t(image=u)["image"] for u in uint8], args.repeats)
        if corrupt is not None and label in IMAGENET_C:
            name = IMAGENET_C[label]
            row["icc"] = args.batch / timed(
                lambda n=name: [corrupt(u, corruption_name=n, severity=SEVERITY) for u in uint8], args.repeats
            )
        rows.append(row)
        print(f"{label}: {row['ours']:.0f} img/s", file=sys.stderr)

    print_table(rows, args, forward_s, corrupt is not None)


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace, forward_s: float, have_icc: bool) -> None:
    forward_ips = args.batch / forward_s
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch} x 3 x {args.size} x {args.size}, "
        f"severity {SEVERITY}; ResNet-18-like forward: {forward_ips:.1f} images/s ({forward_s * 1000:.0f} ms per batch)\n"
    )
    header = ["stressor", "cvaudit img/s", "% of forward", "Albumentations (closest)", "img/s"]
    if have_icc:
        header += ["ImageNet-C (corrupt-tta) img/s"]
    header += ["targets"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        ok_forward = r["share"] <= 0.20
        ok_icc = r.get("icc") is None or r["ours"] >= r["icc"]
        verdict = "met" if ok_forward and ok_icc else ("slower than ImageNet-C" if not ok_icc else "> 20 % of forward")
        cells = [
            r["label"],
            f"{r['ours']:.0f}",
            f"{100 * r['share']:.1f} %",
            r.get("albu_desc", "-"),
            f"{r['albu']:.0f}" if "albu" in r else "-",
        ]
        if have_icc:
            cells.append(f"{r['icc']:.0f}" if "icc" in r else "-")
        cells.append(verdict)
        lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
