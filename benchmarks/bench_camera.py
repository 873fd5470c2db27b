"""Throughput of the camera-shift stressors with boxes against Albumentations' Affine and Perspective.

Run from the repository root (CPU)::

    python benchmarks/bench_camera.py [--batch 64] [--sizes 224 640] [--boxes 4] [--repeats 5]

For each geometric stressor at severity 3 and each image size, in one process:

- cvaudit: one batch of ``--batch`` float32 images (N, 3, S, S) in [0, 1] (as an
  audit's data loader yields them) with ``--boxes`` boxes each, stressed through
  :func:`stressors.boxes.stress_with_boxes` when it exists (images, boxes moved,
  clipped and filtered at visibility 0.3), else ``sample_params`` + ``apply`` +
  the boxes' mapped corners (``map_points``), their hull clipped to the frame;
- Albumentations, per image as a user runs it: ``A.Compose([transform],
  bbox_params=A.BboxParams(format="pascal_voc", min_visibility=0.3))`` on uint8
  HWC numpy arrays (its fast path) and on float32 HWC arrays in [0, 1].

The transforms are the closest Albumentations equivalents of the same amount at
severity 3 (rotation ±15 degrees, translation by 15 % of the frame, zoom 1.35 in
or out, a perspective tilt), black constant border on both sides. Each number is
images per second from the fastest of ``--repeats`` timed runs after one
warm-up (the fastest, because on a shared machine other work only adds time).
A diagnostic column gives the rate of the stressor's ``grid_sample`` call alone
(its grid built beforehand): the floor of the torch path; another the rate of
the same homographies run by OpenCV per image on the float32 batch (not
cvaudit's path: what an OpenCV CPU path would cost).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stressors.base import sample_keys
from stressors.camera import Perspective, Rotation, Translation, Zoom
from stressors.preview import load_image

SEVERITY = 3
MIN_VISIBILITY = 0.3


def albumentations_counterparts() -> dict[str, tuple[str, Any]]:
    """Stressor name -> (description, transform): the Albumentations transform doing the same at severity 3."""
    import albumentations as A
    import cv2

    border = {"border_mode": cv2.BORDER_CONSTANT, "fill": 0}
    return {
        "rotation": ("Affine(rotate=±15)", A.Affine(rotate=(-15, 15), p=1, **border)),
        "translation": ("Affine(translate_percent=±0.15)", A.Affine(translate_percent=(-0.15, 0.15), p=1, **border)),
        "zoom": ("Affine(scale=(1/1.35, 1.35))", A.Affine(scale=(1 / 1.35, 1.35), p=1, **border)),
        "perspective": ("Perspective(scale=(0.05, 0.1))", A.Perspective(scale=(0.05, 0.1), p=1, **border)),
    }


def make_batch(n: int, size: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` crops of scikit-learn's two photographs resized to ``size``², uint8 (N, S, S, 3), and k boxes each."""
    rng = np.random.default_rng(seed)
    photos = [load_image("sample:china"), load_image("sample:flower")]
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        photo = photos[i % 2]
        h, w = photo.shape[:2]
        side = int(rng.integers(h // 2, h))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(photo[y : y + side, x : x + side]).resize((size, size), Image.Resampling.BILINEAR)
        images[i] = np.asarray(crop)
    lo = rng.uniform(0.1, 0.6, size=(n, k, 2)) * size
    wh = rng.uniform(0.1, 0.3, size=(n, k, 2)) * size
    boxes = np.concatenate([lo, np.minimum(lo + wh, size - 1)], axis=-1)
    return images, boxes


def ours(stressor: Any, x: torch.Tensor, boxes: list[torch.Tensor], keys: torch.Tensor) -> Callable[[], Any]:
    """The cvaudit call: images and boxes of the whole batch."""
    size = (x.shape[-2], x.shape[-1])
    try:  # the box API (stressors.boxes and ImageStressor.transform_boxes)
        from stressors.boxes import stress_with_boxes
    except ImportError:
        stress_with_boxes = None
    if not hasattr(stressor, "transform_boxes"):
        stress_with_boxes = None

    if stress_with_boxes is not None:

        def run() -> Any:
            return stress_with_boxes(
                stressor, x, boxes, sample_ids=keys, severity=SEVERITY, seed=0, min_visibility=MIN_VISIBILITY
            )

        return run
    stacked = torch.stack(boxes)  # (N, K, 4)

    def run_fallback() -> Any:
        params = stressor.sample_params(keys, SEVERITY, seed=0)
        out = stressor.apply(x, params)
        x1, y1, x2, y2 = stacked.unbind(-1)
        corners = torch.stack([torch.stack(c, -1) for c in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))], -2)
        moved = stressor.map_points(corners.flatten(1, 2), params, size).unflatten(1, corners.shape[1:3])
        hull = torch.cat([moved.amin(2), moved.amax(2)], -1)
        frame = torch.tensor([size[1], size[0]] * 2, dtype=torch.float64)
        return out, torch.minimum(hull.clamp(min=0), frame)

    return run_fallback


def theirs(transform: Any, images: list[np.ndarray], boxes: np.ndarray) -> Callable[[], Any]:
    """Albumentations per image, with its bounding boxes."""
    import albumentations as A

    pipeline = A.Compose(
        [transform],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=MIN_VISIBILITY),
    )
    labels = list(range(boxes.shape[1]))
    lists = [b.tolist() for b in boxes]

    def run() -> Any:
        return [pipeline(image=im, bboxes=b, labels=labels) for im, b in zip(images, lists)]

    return run


def opencv_path(stressor: Any, x: torch.Tensor, keys: torch.Tensor) -> Callable[[], Any]:
    """Diagnostic, not cvaudit's path: the same homographies run by OpenCV per image on the float32 batch.

    What an OpenCV CPU path would cost (HWC copy, ``cv2.warpPerspective`` per image, back to NCHW).
    OpenCV rounds source positions to 1/32 pixel, so its pixels differ from ``grid_sample``'s
    (tests/stressors/test_camera.py bounds the difference: mean < 2e-3, worst < 0.05).
    """
    import cv2

    size = (x.shape[-2], x.shape[-1])
    to_index = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])  # pixel index -> continuous frame

    def run() -> Any:
        params = stressor.sample_params(keys, SEVERITY, seed=0)
        maps = np.linalg.inv(to_index) @ stressor.homography(params, size).numpy() @ to_index
        hwc = x.permute(0, 2, 3, 1).contiguous().numpy()
        out = np.empty_like(hwc)
        for i in range(hwc.shape[0]):
            out[i] = cv2.warpPerspective(
                hwc[i], maps[i], (size[1], size[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
            )
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()

    return run


def best_rate(fn: Callable[[], Any], n: int, repeats: int) -> float:
    """Images per second of the fastest of ``repeats`` timed calls after one warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 640])
    parser.add_argument("--boxes", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    import albumentations
    import cv2

    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), albumentations {albumentations.__version__}, "
        f"opencv {cv2.__version__} ({cv2.getNumThreads()} threads); batch {args.batch}, {args.boxes} boxes per image, "
        f"severity {SEVERITY}, best of {args.repeats}"
    )
    counterparts = albumentations_counterparts()
    stressors = [Rotation(), Translation(), Zoom(), Perspective()]
    keys = sample_keys([f"bench-{i}" for i in range(args.batch)])
    print(
        "| stressor | size | cvaudit float32 batch (img/s) | its grid_sample alone (img/s) "
        "| OpenCV per image on the batch (img/s) | Albumentations "
        "| A. uint8 (img/s) | A. float32 (img/s) | cvaudit / A. uint8 | cvaudit / A. float32 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        images, boxes = make_batch(args.batch, size, args.boxes)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).contiguous()
        tboxes = [torch.from_numpy(b) for b in boxes]
        floats = [im.astype(np.float32) / 255 for im in images]
        uint8 = list(images)
        for stressor in stressors:
            label, transform = counterparts[stressor.name]
            a = best_rate(ours(stressor, x, tboxes, keys), args.batch, args.repeats)
            grid = stressor.sampling_grid(stressor.sample_params(keys, SEVERITY, seed=0), (size, size), x.device)
            g = best_rate(lambda x=x, grid=grid: F.grid_sample(x, grid, align_corners=False), args.batch, args.repeats)
            o = best_rate(opencv_path(stressor, x, keys), args.batch, args.repeats)
            b = best_rate(theirs(transform, uint8, boxes), args.batch, args.repeats)
            c = best_rate(theirs(transform, floats, boxes), args.batch, args.repeats)
            print(
                f"| {stressor.name} | {size}² | {a:,.0f} | {g:,.0f} | {o:,.0f} | {label} | {b:,.0f} | {c:,.0f} | {a / b:.2f}× | {a / c:.2f}× |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
