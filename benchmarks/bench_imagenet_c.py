"""Throughput of cvaudit's ImageNet-C corruptions against ``imagecorruptions`` and ``corrupt-tta``, side by side.

Run from the repository root (CPU)::

    python benchmarks/bench_imagenet_c.py [--batch 64] [--size 224] [--severities 3] [--repeats 3] [--names ...]

For every name of ``imagecorruptions.get_corruption_names('all')`` (the 15
ImageNet-C corruptions and the 4 held-out ones) that is a registered cvaudit
stressor (names not registered yet are listed as skipped), on one batch of
crops of scikit-learn's sample photographs:

- cvaudit: ``sample_params`` + ``apply`` on the contiguous float (N, 3, H, W)
  batch, as the audit's loader stacks it;
- imagecorruptions 1.1.2: ``corrupt(image, severity, corruption_name)`` image by
  image on uint8 (H, W, 3) arrays, the way a user would otherwise run the
  benchmark. Its ``gaussian(..., multichannel=True)`` calls are mapped to
  ``channel_axis=-1`` and ``np.float_`` to ``np.float64`` (removed in numpy 2),
  as the tests shim them;
- corrupt-tta 0.1.7 (optional: the column is "-" when it is not installed):
  ``corrupt_tta.corrupt`` image by image, where it implements the corruption.

Each number is the median over ``--repeats`` timed rounds after one warm-up
round (a round runs cvaudit and each reference once, in turn, so that the
load of a shared machine drifting over minutes falls on all alike), in
images per second, summed over the ``--severities`` asked for. Ratios are
cvaudit / reference; the issue's targets are >= 1.2x imagecorruptions and
>= 1.0x corrupt-tta for every corruption. ``--device cuda`` (or ``--alone``)
times cvaudit's corruptions alone, against the issue's GPU target of 50,000
images/s for the elementwise ones.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stressors
from stressors.base import sample_keys


def photo_batch(batch: int, size: int) -> torch.Tensor:
    """``batch`` random square crops of scikit-learn's two sample photographs, resized to ``size``, (N, 3, H, W)."""
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
    return (torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0).contiguous()


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    return interleaved({"fn": fn}, repeats)["fn"]


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds of each ``fn()`` over ``repeats`` rounds after one warm-up round; each round runs every
    ``fn`` once, in turn, so that a shared machine's load drifting over minutes falls on all of them alike."""
    times: dict[str, list[float]] = {key: [] for key in fns}
    for round_ in range(repeats + 1):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            if round_:
                times[key].append(time.perf_counter() - start)
    return {key: statistics.median(t) for key, t in times.items()}


def imagecorruptions_shimmed() -> Any:
    """``imagecorruptions.corrupt`` with its calls mapped to today's scikit-image and numpy."""
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if not hasattr(np, "float_"):
        np.float_ = np.float64  # type: ignore[attr-defined]  # removed in numpy 2; fog's plasma_fractal uses it
    import imagecorruptions
    import imagecorruptions.corruptions as corruptions

    gaussian = corruptions.gaussian

    def shim(image: Any, *args: Any, multichannel: bool | None = None, **kwargs: Any) -> Any:
        if multichannel:
            kwargs["channel_axis"] = -1
        return gaussian(image, *args, **kwargs)

    corruptions.gaussian = shim
    return imagecorruptions


#: The issue's target on a GPU: every elementwise corruption at least this many 224x224 images per second.
GPU_TARGET = 50_000
#: The corruptions computed pixel by pixel (the noises draw their fields per sample with numpy on the CPU,
#: identical on every device, and move them to the device: stressors/imagenet_c.py), contrast per image mean.
ELEMENTWISE = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "brightness",
    "contrast",
    "saturate",
)


def gpu_table(args: argparse.Namespace) -> None:
    """cvaudit's corruptions alone on ``args.device``, synchronised around every timed call."""
    device = torch.device(args.device)
    names = args.names or [n for n in stressors.available() if n in _imagenet_c_names()]
    images = photo_batch(args.batch, args.size).to(device)
    ids = sample_keys([f"bench{i}" for i in range(args.batch)])
    count = args.batch * len(args.severities)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(
        f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else device}, torch {torch.__version__}; "
        f"batch {args.batch} x 3 x {args.size} x {args.size}, severities {args.severities}, median of {args.repeats}\n"
    )
    print(f"| corruption | cvaudit img/s on {device.type} | elementwise | >= {GPU_TARGET:,} img/s |")
    print("|---|---|---|---|")
    for name in names:
        stressor = stressors.get(name)

        def ours(stressor: Any = stressor) -> None:
            for severity in args.severities:
                stressor.apply(images, stressor.sample_params(ids, severity, seed=0))
            sync()

        rate = count / timed(ours, args.repeats)
        elementwise = name in ELEMENTWISE
        verdict = ("met" if rate >= GPU_TARGET else "not met") if elementwise else "-"
        print(f"| {name} | {rate:.0f} | {'yes' if elementwise else 'no'} | {verdict} |")


def _imagenet_c_names() -> set[str]:
    """The 19 names of ``imagecorruptions.get_corruption_names('all')`` (without importing it on a GPU machine)."""
    return {
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
        "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
        "speckle_noise", "gaussian_blur", "spatter", "saturate",
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--severities", type=int, nargs="+", default=[3])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--names", nargs="+", help="only these corruptions (default: all 19)")
    parser.add_argument(
        "--device",
        default="cpu",
        help="run cvaudit's corruptions on this device (e.g. cuda): then alone, against the issue's GPU target "
        f"of {GPU_TARGET:,} img/s for the elementwise ones, without the CPU references",
    )
    parser.add_argument("--alone", action="store_true", help="cvaudit's corruptions only (implied off the CPU)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device != "cpu" or args.alone:
        gpu_table(args)
        return

    icc = imagecorruptions_shimmed()
    try:
        import corrupt_tta
    except ImportError:
        corrupt_tta = None
    names = args.names or icc.get_corruption_names("all")
    registered = set(stressors.available())
    skipped = [n for n in names if n not in registered]
    names = [n for n in names if n in registered]

    images = photo_batch(args.batch, args.size)
    uint8 = [np.ascontiguousarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for img in images]
    ids = sample_keys([f"bench{i}" for i in range(args.batch)])
    count = args.batch * len(args.severities)

    # The floor of any corruption that returns a fresh float32 batch, as cvaudit's do: allocating the
    # output and writing it once (the kernel faults in and zeroes every page of it).
    fresh_output = count / timed(lambda: [torch.empty_like(images).fill_(0.5) for _ in args.severities], args.repeats)
    rows = []
    for name in names:
        stressor = stressors.get(name)

        def ours(stressor: Any = stressor) -> None:
            for severity in args.severities:
                stressor.apply(images, stressor.sample_params(ids, severity, seed=0))

        def reference(corrupt: Callable[..., Any], name: str = name) -> Callable[[], None]:
            def run() -> None:
                for severity in args.severities:
                    for u in uint8:
                        corrupt(u, severity=severity, corruption_name=name)

            return run

        fns = {"ours": ours, "icc": reference(icc.corrupt)}
        if corrupt_tta is not None and name in corrupt_tta.corruption_dict:
            fns["ctta"] = reference(corrupt_tta.corrupt)
        row: dict[str, Any] = {"name": name, **{key: count / t for key, t in interleaved(fns, args.repeats).items()}}
        rows.append(row)
        print(f"{name}: {row['ours']:.0f} img/s", file=sys.stderr)

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), imagecorruptions 1.1.2"
        + (f", corrupt-tta {corrupt_tta.__version__}" if corrupt_tta is not None else ", corrupt-tta not installed")
        + f"; batch {args.batch} x 3 x {args.size} x {args.size}, severities {args.severities}, "
        f"median of {args.repeats}; a fresh output batch alone (allocate + write once): {fresh_output:.0f} img/s\n"
    )
    print("| corruption | cvaudit img/s | imagecorruptions img/s | ratio | corrupt-tta img/s | ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ctta = f"{r['ctta']:.0f} | {r['ours'] / r['ctta']:.2f}x" if "ctta" in r else "- | -"
        print(f"| {r['name']} | {r['ours']:.0f} | {r['icc']:.0f} | {r['ours'] / r['icc']:.2f}x | {ctta} |")
    if skipped:
        print(f"\nnot registered (skipped): {', '.join(skipped)}")


if __name__ == "__main__":
    main()
