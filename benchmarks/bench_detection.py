"""Detection audit performance (issue 25): overhead against a bare loop, metric computation, memory.

Run from the repository root (``PYTHONPATH=.``), one subcommand per target of the issue::

    python benchmarks/bench_detection.py overhead [--n 32] [--size 640] [--input 320] [--width 32] [--repeats 3]
    python benchmarks/bench_detection.py metrics  [--n 40] [--groups 20] [--heavy-ms MS] [--profile]
    python benchmarks/bench_detection.py memory   [--sizes 5000 50000] [--tracemalloc] [--dir DIR]

The defaults finish in a few minutes on two CPU cores; the flags give the bigger runs.

**overhead** (target: the whole audit <= 1.15x a bare loop). Writes ``--n`` PNG scenes of
``--size`` squared (crops of scikit-learn's sample photographs, so PNG decoding costs what it costs
on photographs, with coloured rectangles as objects), a COCO ``instances.json`` and a manifest with
one image attribute (``site``, 4 values); saves :class:`YoloNet` (a ResNet-18 trunk, channels
``--width`` ... ``8 * --width``, with a YOLO-layout head returning ``(B, 4 + C, A)``) as TorchScript.
Then times, alternating (bare, audit, audit, bare, ...) after one warm-up of each:

- **bare**: ``torch.jit.load``; the audit's own decoding dataset
  (:class:`audit.evaluation.detection.evaluate.DetectionImages`) in a DataLoader with the same batch
  size and workers; the same letterbox (``plan_resize`` / ``apply_resize``); per condition the same
  stressor with the same per-image keys, mean/std normalisation, forward, ``decode_yolo`` (same
  thresholds, batched NMS), boxes mapped back to the original pixels; then one faster-coco-eval
  evaluation (``COCOeval_faster``: evaluate, accumulate, summarize) per condition over all images;
- **audit**: ``audit.cli.run.run_config`` in-process (what ``cvaudit run`` calls): clean + 3 stressor
  conditions, ``report.formats: []`` (results.json, detections.json, detections.csv, junit.xml are
  still written), with the time spent in ``evaluate_detector`` (the pass) and in
  ``summarize_detection`` (every metric) recorded inside the same runs.

**metrics** (target: metric computation for 30 conditions x 20 subgroups <= 10 % of the run).
``--n`` small scenes (96 x 64 grey backgrounds, up to one rectangle per class) with a 20-value image
attribute and one object attribute; a fast TorchScript detector (:class:`SyntheticDetector`: the
colour boxes of ``tests/detection_fixtures.ColourBoxNet``, which are true positives on clean images,
plus ``--junk`` low-scoring boxes drawn from the image's pixels, so every image has about 100
detections as a real detector's output capped at 100 has); clean + 29 stressor conditions. One
``run_config`` with the time of ``summarize_detection`` and of the detector calls recorded. The
share is given twice: of this run, and of the same run with every detector call costing what
:class:`YoloNet`'s does per image (measured here at ``--heavy-input``, or ``--heavy-ms``):
``share = summary / (run - fast detector calls + n x conditions x heavy ms)``.

**memory** (target: peak RSS at 50k images <= 150 MB above 5k). For each size, tiny 32 x 32 PNG
scenes, ColourBoxNet (output ``boxes``), one stressor condition; ``python -m audit run`` in a fresh
process, peak RSS read with ``resource.getrusage(RUSAGE_CHILDREN)`` by a process that runs only it.
``--tracemalloc`` adds, per size, one in-process run under :mod:`tracemalloc` (slow) with the traced
peak and the top allocation lines at the end of the pass and of the summary.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import csv
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from detection_fixtures import ColourBoxNet  # noqa: E402

from benchmarks.models import BasicBlock  # noqa: E402

CLASSES = ("red", "green", "blue")
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
#: The 29 stressor conditions of the metric benchmark (clean makes 30).
THIRTY = [
    {"name": "brightness", "severities": [1, 2, 3, 4, 5]},
    {"name": "contrast", "severities": [1, 2, 3, 4, 5]},
    {"name": "gaussian_noise", "severities": [1, 2, 3, 4, 5]},
    {"name": "occlusion", "severities": [1, 2, 3, 4, 5]},
    {"name": "night", "severities": [1, 2, 3, 4, 5]},
    {"name": "defocus_blur", "severities": [1, 2, 3, 4]},
]
#: The 3 stressor conditions of the overhead benchmark.
THREE = [
    {"name": "night", "severities": [3]},
    {"name": "gaussian_noise", "severities": [3]},
    {"name": "defocus_blur", "severities": [3]},
]


# ----------------------------------------------------------------------- detectors


class YoloNet(nn.Module):
    """A forward-dominant detector: ResNet-18 trunk, YOLO-layout head on strides 16 and 32.

    Untrained (seeded); the class logits' bias starts at -4.6 so that scores sit near 0.01, as a
    trained detector's do on most anchors. ``cx, cy`` are the cell plus a sigmoid offset, ``w, h``
    an exponential of the stride.

    Args:
        width: channels of the first stage (64 is ResNet-18's; 32 costs about a quarter).
        num_classes: C.

    Shape:
        (B, 3, H, W) normalised -> (B, 4 + C, H * W / 256 + H * W / 1024), boxes in input pixels.
    """

    def __init__(self, width: int = 32, num_classes: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 7, 2, 3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        widths = [width, 2 * width, 4 * width, 8 * width]
        blocks, channels = [], width
        for i, w in enumerate(widths):
            blocks.append(nn.Sequential(BasicBlock(channels, w, 1 if i == 0 else 2), BasicBlock(w, w)))
            channels = w
        self.s1, self.s2, self.s3, self.s4 = blocks
        self.head16 = nn.Conv2d(widths[2], 4 + num_classes, 1)
        self.head32 = nn.Conv2d(widths[3], 4 + num_classes, 1)
        for head in (self.head16, self.head32):
            nn.init.constant_(head.bias[4:], -4.6)

    def _decode(self, raw: Tensor, stride: int) -> Tensor:
        b, _, h, w = raw.shape
        gy, gx = torch.meshgrid(torch.arange(h, device=raw.device), torch.arange(w, device=raw.device), indexing="ij")
        cx = (gx.to(raw.dtype) + torch.sigmoid(raw[:, 0])) * stride
        cy = (gy.to(raw.dtype) + torch.sigmoid(raw[:, 1])) * stride
        bw = torch.exp(raw[:, 2].clamp(-3.0, 3.0)) * stride * 2
        bh = torch.exp(raw[:, 3].clamp(-3.0, 3.0)) * stride * 2
        scores = torch.sigmoid(raw[:, 4:])
        out = torch.cat([torch.stack([cx, cy, bw, bh], dim=1), scores], dim=1)
        return out.reshape(b, 4 + self.num_classes, h * w)

    def forward(self, x: Tensor) -> Tensor:
        f8 = self.s2(self.s1(self.stem(x)))
        f16 = self.s3(f8)
        f32 = self.s4(f16)
        return torch.cat([self._decode(self.head16(f16), 16), self._decode(self.head32(f32), 32)], dim=2)


class SyntheticDetector(nn.Module):
    """A fast detector with about as many detections as a real one: colour boxes plus ``junk`` boxes.

    The first three detections are :class:`ColourBoxNet`'s (true positives on clean images of the
    scenes); the others are boxes placed on a grid, moved, sized and scored by the image's pooled
    pixels (scores 0.01 to 0.6, classes in turn), so they change under every stressor.

    Shape:
        (B, 3, H, W) in [0, 1] -> boxes (B, 3 + junk, 4), scores (B, 3 + junk), labels (B, 3 + junk).
    """

    def __init__(self, junk: int = 97) -> None:
        super().__init__()
        self.colour = ColourBoxNet()
        self.junk = junk
        self.grid = int(np.ceil(np.sqrt(junk)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        boxes, scores, labels = self.colour(x)
        b, _, h, w = x.shape
        g = self.grid
        cells = nn.functional.adaptive_avg_pool2d(x, g).flatten(2)[:, :, : self.junk]  # (B, 3, junk)
        idx = torch.arange(self.junk, device=x.device)
        cx = ((idx % g).to(x.dtype) + cells[:, 0]) / g * w
        cy = ((idx // g).to(x.dtype) + cells[:, 1]) / g * h
        bw = (0.05 + 0.3 * cells[:, 2]) * w
        bh = (0.05 + 0.3 * cells[:, 0]) * h
        junk = torch.stack(
            [
                (cx - bw / 2).clamp(0, w),
                (cy - bh / 2).clamp(0, h),
                (cx + bw / 2).clamp(0, w),
                (cy + bh / 2).clamp(0, h),
            ],
            dim=2,
        )
        junk_scores = (0.01 + 0.6 * cells[:, 1] * cells[:, 2]).clamp(0, 1)
        junk_labels = (idx % 3).expand(b, self.junk)
        return (
            torch.cat([boxes, junk], dim=1),
            torch.cat([scores, junk_scores], dim=1),
            torch.cat([labels, junk_labels], dim=1),
        )


def save_script(module: nn.Module, path: Path) -> Path:
    """``module`` (built after ``torch.manual_seed(0)`` by the callers) as TorchScript at ``path``."""
    torch.jit.save(torch.jit.script(module.eval()), str(path))
    return path


# ----------------------------------------------------------------------- fixtures


def make_scenes(
    folder: Path,
    n: int,
    *,
    width: int,
    height: int,
    values: int,
    background: str,
    seed: int = 0,
) -> None:
    """``n`` PNG scenes, ``instances.json`` (COCO, key ``occluded``) and ``manifest.csv`` into ``folder``.

    Each class (red, green, blue) appears at most once per image, as a rectangle of its pure colour in
    its own third of the width (so :class:`ColourBoxNet` finds it on a clean image). ``background``:
    ``photo`` (crops of scikit-learn's sample photographs) or ``grey`` (uniform noise around 0.45).
    The manifest has ``sample_id``, ``path`` and ``site`` (``values`` values, in turn).
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = []
    if background == "photo":
        from sklearn.datasets import load_sample_images

        photos = [Image.fromarray(a) for a in load_sample_images().images]
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, annotations, rows = [], [], []
    third = width // 3
    for i in range(n):
        if photos:
            photo = photos[i % len(photos)]
            pw, ph = photo.size
            side = int(rng.integers(min(pw, ph) // 2, min(pw, ph)))
            x0, y0 = int(rng.integers(0, pw - side + 1)), int(rng.integers(0, ph - side + 1))
            crop = photo.crop((x0, y0, x0 + side, y0 + side)).resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(crop, dtype=np.float64) / 255.0
        else:
            pixels = 0.45 + rng.uniform(-0.04, 0.04, size=(height, width, 3))
        for c in range(3):
            if rng.random() >= 0.7:
                continue
            bw = int(rng.integers(max(2, third // 4), max(3, third - 1)))
            bh = int(rng.integers(max(2, height // 8), max(3, height // 2)))
            x = c * third + int(rng.integers(0, third - bw + 1))
            y = int(rng.integers(0, height - bh + 1))
            pixels[y : y + bh, x : x + bw] = np.eye(3)[c]
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
        name = f"images/scene_{i:06d}.png"
        Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(folder / name)
        images.append({"id": i + 1, "file_name": name, "width": width, "height": height})
        rows.append({"sample_id": f"s{i:06d}", "path": name, "site": f"site{i % values:02d}"})
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(CLASSES)]
    (folder / "instances.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories}), encoding="utf-8"
    )
    with (folder / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["sample_id", "path", "site"])
        writer.writeheader()
        writer.writerows(rows)


def write_config(folder: Path, **settings: Any) -> Path:
    """``config.yaml`` for the scenes in ``folder``; ``settings`` override the top-level keys."""
    cfg: dict[str, Any] = {
        "task": "detection",
        "seed": 0,
        "device": "cpu",
        "batch_size": 16,
        "model": {"path": "model.pt", "input_size": [320, 320], "mean": MEAN, "std": STD},
        "data": {"manifest": "manifest.csv", "attributes": ["site"]},
        "detection": {"annotations": "instances.json", "object_attributes": ["occluded"], "output": "yolo"},
        "stressors": THREE,
        "evaluation": {"min_group_size": 5},
        "policy": "policy.yaml",
        "report": {"formats": []},
    }
    for key, value in settings.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) and isinstance(cfg.get(key), dict) else value
    (folder / "policy.yaml").write_text(POLICY, encoding="utf-8")
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


#: The benchmarks' policy: the built-in detection-gate's point rules (mAP, false positives per image,
#: the object-size recall gap, mAP under stress), judged on the estimates; the untrained detectors fail it.
POLICY = """\
version: 1
name: bench-detection
rules:
  - {id: clean-map, condition: clean, metric: map, min: 0.5, blocking: true}
  - {id: clean-false-positives, condition: clean, metric: fp_per_image, max: 0.2, blocking: true}
  - {id: clean-size-recall-gap, condition: clean, attribute: object.size, aggregate: gap, metric: recall,
     max: 0.10, test: point, blocking: false}
  - {id: stress-map, condition: "*", metric: map, min: 0.35, blocking: false}
"""


# ----------------------------------------------------------------------- timing hooks


@contextlib.contextmanager
def timed_stages(sink: dict[str, float], *, profile: cProfile.Profile | None = None) -> Iterator[None]:
    """Record, inside a ``run_config``, the time of the pass, of the summary and of every detector call.

    Patches the names :mod:`audit.detection_run` calls (``load_detector``, ``evaluate_detector``,
    ``summarize_detection``) for the duration; the audit code is not edited. ``profile``, if given,
    profiles ``summarize_detection`` only.
    """
    import audit.detection_run as run

    originals = {name: getattr(run, name) for name in ("load_detector", "evaluate_detector", "summarize_detection")}
    sink.update(detector=0.0, detector_images=0.0)

    def load_detector(*args: Any, **kwargs: Any) -> Any:
        detector, info = originals["load_detector"](*args, **kwargs)

        def call(x: Tensor, *, image_ids: list[str]) -> Any:
            t = time.perf_counter()
            try:
                return detector(x, image_ids=image_ids)
            finally:
                sink["detector"] += time.perf_counter() - t
                sink["detector_images"] += len(image_ids)

        return call, info

    def timed(name: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            if profile is not None and name == "summarize_detection":
                profile.enable()
            try:
                return originals[name](*args, **kwargs)
            finally:
                if profile is not None and name == "summarize_detection":
                    profile.disable()
                sink[name] = time.perf_counter() - t

        return wrapper

    run.load_detector = load_detector
    run.evaluate_detector = timed("evaluate_detector")
    run.summarize_detection = timed("summarize_detection")
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(run, name, fn)


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its reaped children (the DataLoader workers)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_audit(config: Path, out: Path, *, profile: cProfile.Profile | None = None) -> dict[str, Any]:
    """``run_config`` in-process with :func:`timed_stages`. ``error`` is set if the run raised."""
    from audit.cli.run import run_config

    sink: dict[str, Any] = {}
    t0, c0 = time.perf_counter(), cpu_seconds()
    with timed_stages(sink, profile=profile):
        try:
            run_config(config, out_dir=out, quiet=True)
        except Exception as err:
            sink["error"] = f"{type(err).__name__}: {err}"
    sink["total"], sink["cpu"] = time.perf_counter() - t0, cpu_seconds() - c0
    return sink


# ----------------------------------------------------------------------- the bare loop


def _items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


def run_bare(config: Path) -> dict[str, Any]:
    """Decode, letterbox, stress, forward, decode_yolo + NMS, map back; one COCOeval_faster per condition."""
    import faster_coco_eval
    from torch.utils.data import DataLoader

    from audit.contract.config import load_config
    from audit.contract.seeds import sample_key
    from audit.evaluation.conditions import build_conditions
    from audit.evaluation.detection.evaluate import DetectionImages
    from audit.evaluation.detection.letterbox import apply_resize, boxes_to_original, plan_resize
    from audit.evaluation.detection.outputs import decode_yolo

    t0, c0 = time.perf_counter(), cpu_seconds()
    cfg = load_config(config)
    det = cfg.detection
    assert det is not None and det.annotations is not None
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    net = torch.jit.load(str(cfg.model.path), map_location="cpu").eval()
    mean = torch.tensor(cfg.model.mean).view(1, -1, 1, 1)
    std = torch.tensor(cfg.model.std).view(1, -1, 1, 1)
    conditions = build_conditions(cfg.stressors)
    coco = json.loads(det.annotations.read_text(encoding="utf-8"))
    images = coco["images"]
    cat_ids = np.array(sorted(c["id"] for c in coco["categories"]), dtype=np.float64)
    with cfg.data.manifest.open(newline="", encoding="utf-8") as fh:
        sample_of = {row["path"]: row["sample_id"] for row in csv.DictReader(fh)}
    ids = [sample_of[im["file_name"]] for im in images]
    keys = torch.tensor([sample_key(s) for s in ids], dtype=torch.int64)
    root = det.annotations.parent
    dataset = DetectionImages(
        [root / im["file_name"] for im in images],
        [(im["width"], im["height"]) for im in images],
        channels=3,
        max_pixels=cfg.data.max_image_pixels,
        exif="ignore",
        alpha="composite_white",
    )
    loader = DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.data.num_workers or 0, collate_fn=_items
    )
    found: dict[str, list[np.ndarray]] = {c.id: [] for c in conditions}
    n = 0
    with torch.no_grad():
        for batch in loader:
            rows = [it["index"] for it in batch]
            params = plan_resize(
                [(images[i]["height"], images[i]["width"]) for i in rows],
                input_size=tuple(cfg.model.input_size),
                mode=det.resize,
            )
            x = apply_resize([it["image"] for it in batch], params)
            for cond in conditions:
                stressed = x
                if cond.stressor is not None:
                    p = cond.stressor.sample_params(keys[rows], cond.severity, seed=cfg.seed)
                    stressed = cond.stressor.apply(x, p)
                out = decode_yolo(
                    net((stressed - mean) / std),
                    image_ids=[ids[i] for i in rows],
                    num_classes=len(cat_ids),
                    score_threshold=det.nms_score_threshold,
                    iou_threshold=det.nms_iou_threshold,
                    max_detections=det.max_detections,
                )
                for k, (i, d) in enumerate(zip(rows, out)):
                    b = boxes_to_original(d.boxes.to(torch.float64), params[k]).numpy()
                    arr = np.empty((len(b), 7))
                    arr[:, 0] = images[i]["id"]
                    arr[:, 1:3] = b[:, :2]
                    arr[:, 3:5] = b[:, 2:] - b[:, :2]
                    arr[:, 5] = d.scores.numpy()
                    arr[:, 6] = cat_ids[d.labels.numpy()]
                    found[cond.id].append(arr)
            n += len(rows)
    gt = faster_coco_eval.COCO(str(det.annotations), print_function=lambda *a, **k: None)
    maps, counts = {}, {}
    for cid, arrays in found.items():
        counts[cid] = int(sum(len(a) for a in arrays))
        res = gt.loadRes(np.concatenate(arrays))
        ev = faster_coco_eval.COCOeval_faster(gt, res, "bbox", print_function=lambda *a, **k: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        maps[cid] = float(ev.stats[0])
    return {"total": time.perf_counter() - t0, "cpu": cpu_seconds() - c0, "n": n, "map": maps, "detections": counts}


# ----------------------------------------------------------------------- overhead


def _range(xs: list[float]) -> str:
    return f"{min(xs):.1f}-{max(xs):.1f}"


def cmd_overhead(args: argparse.Namespace) -> int:
    with _folder(args.dir) as folder:
        t = time.perf_counter()
        if not (folder / "instances.json").exists():
            make_scenes(folder, args.n, width=args.size, height=args.size, values=4, background="photo")
        torch.manual_seed(0)
        save_script(YoloNet(args.width, len(CLASSES)), folder / "model.pt")
        config = write_config(
            folder,
            batch_size=args.batch_size,
            threads=args.threads,
            model={"input_size": [args.input, args.input]},
            data={"num_workers": args.workers},
        )
        print(f"fixtures: {args.n} PNG {args.size}x{args.size} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        out = folder / "out"
        run_bare(config)  # warm-ups: imports, page cache, allocator
        first = run_audit(config, out)
        if "error" in first:
            print(f"note: the audit run stopped: {first['error']}", file=sys.stderr)
        bare: list[dict[str, Any]] = []
        audit: list[dict[str, Any]] = []
        loads = []
        for i in range(args.repeats):
            for variant in ("bare", "audit") if i % 2 == 0 else ("audit", "bare"):
                loads.append(os.getloadavg()[0])
                r = run_bare(config) if variant == "bare" else run_audit(config, out)
                (bare if variant == "bare" else audit).append(r)
                extra = (
                    ""
                    if variant == "bare"
                    else f" (pass {r['evaluate_detector']:.1f} s, metrics {r.get('summarize_detection', float('nan')):.1f} s)"
                )
                print(f"run {i + 1} {variant:5s}: {r['total']:.1f} s, CPU {r['cpu']:.1f} s{extra}", file=sys.stderr)
        b = statistics.median(r["total"] for r in bare)
        a = statistics.median(r["total"] for r in audit)
        ratios = [x["total"] / y["total"] for x, y in zip(audit, bare)]
        print(
            f"\nN = {args.n} PNG {args.size}x{args.size}, model input {args.input}x{args.input}, YoloNet width "
            f"{args.width}, clean + {len(THREE)} conditions, batch {args.batch_size}, {args.workers} worker(s), "
            f"{torch.get_num_threads()} torch thread(s), {os.cpu_count()} CPUs, {args.repeats} runs each "
            f"(alternating, after a warm-up), 1-min load average {min(loads):.1f}-{max(loads):.1f}"
        )
        if any("error" in r for r in audit):
            print(f"\nWARNING: the audit runs stopped early: {audit[0].get('error')}")
        print("\n| variant | median s | range s | images x conditions / s | x bare (median of pairs) |")
        print("|---|---:|---:|---:|---:|")
        work = args.n * (len(THREE) + 1)
        print(f"| bare loop | {b:.1f} | {_range([r['total'] for r in bare])} | {work / b:.1f} | 1.00 |")
        for key, label in (("evaluate_detector", "audit: the pass (`evaluate_detector`)"),):
            xs = [r[key] for r in audit]
            print(f"| {label} | {statistics.median(xs):.1f} | {_range(xs)} | {work / statistics.median(xs):.1f} | |")
        if all("summarize_detection" in r for r in audit):
            xs = [r["summarize_detection"] for r in audit]
            print(f"| audit: the metrics (`summarize_detection`) | {statistics.median(xs):.2f} | {_range(xs)} | | |")
        xs = [r["detector"] for r in audit]
        print(f"| audit: detector calls (forward + decode + NMS) | {statistics.median(xs):.1f} | {_range(xs)} | | |")
        print(
            f"| audit: end to end (`run_config`) | {a:.1f} | {_range([r['total'] for r in audit])} | {work / a:.1f} | "
            f"{statistics.median(ratios):.3f} |"
        )
        bc = statistics.median(r["cpu"] for r in bare)
        ac = statistics.median(r["cpu"] for r in audit)
        cpu_ratios = [x["cpu"] / y["cpu"] for x, y in zip(audit, bare)]
        print(
            f"| CPU time (user + system, workers included): bare | {bc:.1f} | {_range([r['cpu'] for r in bare])} | | 1.00 |"
        )
        print(
            f"| CPU time: audit end to end | {ac:.1f} | {_range([r['cpu'] for r in audit])} | | "
            f"{statistics.median(cpu_ratios):.3f} |"
        )
        print(f"\nwall: ratio of medians {a / b:.3f}, median of pair ratios {statistics.median(ratios):.3f}")
        print(f"CPU: ratio of medians {ac / bc:.3f}, median of pair ratios {statistics.median(cpu_ratios):.3f}")
        print(f"target <= 1.15 (wall, median of pairs): {'met' if statistics.median(ratios) <= 1.15 else 'NOT met'}")
        _same_work(bare[-1], out)
    return 0


def _same_work(bare: dict[str, Any], out: Path) -> None:
    """Print, per condition, the bare loop's and the audit's detection count and mAP (the same work done)."""
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    records = json.loads((out / "detections.json").read_text(encoding="utf-8"))
    audit_counts: dict[str, int] = {}
    for rec in records:
        audit_counts[rec["condition"]] = audit_counts.get(rec["condition"], 0) + 1
    print("\n| condition | detections bare / audit | mAP bare / audit |\n|---|---:|---:|")
    for cond in results["detection"]["conditions"]:
        cid = cond["id"]
        print(
            f"| {cid} | {bare['detections'][cid]} / {audit_counts.get(cid, 0)} | "
            f"{bare['map'][cid]:.6f} / {cond['metrics']['map']:.6f} |"
        )


@contextlib.contextmanager
def _folder(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="cvaudit-bench-det-") as tmp:
        yield Path(tmp)


# ----------------------------------------------------------------------- metrics


def heavy_ms_per_image(*, width: int, size: int, batch: int = 8, repeats: int = 3) -> float:
    """Median ms per image of :class:`YoloNet` through the audit's detector wrapper (forward + decode + NMS)."""
    from audit.contract.config import ModelConfig
    from audit.evaluation.detection.model import load_detector

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        path = save_script(YoloNet(width, len(CLASSES)), Path(tmp) / "yolo.pt")
        model_cfg = ModelConfig(path=path, input_size=[size, size], mean=MEAN, std=STD)
        detector, _ = load_detector(
            model_cfg, output="yolo", num_classes=len(CLASSES), device=torch.device("cpu"), base_dir=None
        )
        x = torch.rand(batch, 3, size, size)
        ids = [str(i) for i in range(batch)]
        detector(x, image_ids=ids)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            detector(x, image_ids=ids)
            times.append((time.perf_counter() - t) / batch * 1000)
    return statistics.median(times)


def cmd_metrics(args: argparse.Namespace) -> int:
    with _folder(args.dir) as folder:
        if not (folder / "instances.json").exists():
            make_scenes(folder, args.n, width=96, height=64, values=args.groups, background="grey")
        save_script(SyntheticDetector(args.junk), folder / "model.pt")
        config = write_config(
            folder,
            batch_size=64,
            threads=args.threads,
            model={"input_size": [64, 96], "mean": [0.0], "std": [1.0]},
            data={"num_workers": 0},
            detection={"output": "boxes"},
            stressors=THIRTY,
        )
        conditions = 1 + sum(len(s["severities"]) for s in THIRTY)
        heavy = args.heavy_ms
        if heavy is None:
            heavy = heavy_ms_per_image(width=args.heavy_width, size=args.heavy_input)
            print(f"YoloNet width {args.heavy_width} at {args.heavy_input}: {heavy:.1f} ms per image", file=sys.stderr)
        profile = cProfile.Profile() if args.profile else None
        runs = []
        for i in range(args.repeats):
            r = run_audit(config, folder / "out", profile=profile if i == args.repeats - 1 else None)
            runs.append(r)
            print(
                f"run {i + 1}: {r['total']:.1f} s, summary {r.get('summarize_detection', float('nan')):.1f} s, "
                f"detector {r['detector']:.1f} s, load average {os.getloadavg()[0]:.1f}"
                + (f", stopped: {r['error']}" if "error" in r else ""),
                file=sys.stderr,
            )
        if any("summarize_detection" not in r for r in runs):
            print("the run stopped before the metrics were computed", file=sys.stderr)
            return 1
        med = {k: statistics.median(r[k] for r in runs) for k in ("total", "summarize_detection", "detector")}
        images = args.n * conditions
        heavy_run = med["total"] - med["detector"] + images * heavy / 1000
        print(
            f"\nN = {args.n} images (96x64), {conditions} conditions, image attribute with {args.groups} values, "
            f"object attributes size / class / occluded, ~{3 + args.junk} detections per image, "
            f"{args.threads} torch thread(s), median of {args.repeats} run(s)"
        )
        if any("error" in r for r in runs):
            print(
                f"\nnote: the run stopped after the metrics: {runs[0]['error']} (the whole run's time is up to there)"
            )
        print("\n| quantity | s |\n|---|---:|")
        print(f"| whole run (`run_config`) | {med['total']:.1f} |")
        print(f"| metric computation (`summarize_detection`) | {med['summarize_detection']:.1f} |")
        print(f"| detector calls, fast detector ({images} image-conditions) | {med['detector']:.1f} |")
        print(f"| the same run with YoloNet's {heavy:.1f} ms per image-condition | {heavy_run:.1f} |")
        s = med["summarize_detection"]
        print(
            f"\nshare of this run: {s / med['total']:.1%}; share of the heavy-detector run: {s / heavy_run:.1%} "
            f"= {s:.1f} / ({med['total']:.1f} - {med['detector']:.1f} + {images} x {heavy / 1000:.4f}); "
            f"target <= 10 %: {'met' if s / heavy_run <= 0.10 else 'NOT met'} (heavy), "
            f"{'met' if s / med['total'] <= 0.10 else 'NOT met'} (fast)"
        )
        print(f"metric time per condition: {s / conditions:.2f} s, per image-condition {s / images * 1000:.2f} ms")
        even = (10 * s - (med["total"] - med["detector"])) / images * 1000
        print(
            f"break-even: the metrics are <= 10 % of the run when a detector call costs >= {even:.0f} ms per "
            f"image-condition (10 x {s:.1f} - ({med['total']:.1f} - {med['detector']:.1f})) / {images}"
        )
        if profile is not None:
            buf = io.StringIO()
            stats = pstats.Stats(profile, stream=buf)
            stats.sort_stats("tottime").print_stats(args.top)
            stats.sort_stats("cumulative").print_stats(r"audit[/\\]", args.top)
            print(buf.getvalue())
    return 0


# ----------------------------------------------------------------------- memory

_PEAK = "import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"


def memory_fixture(folder: Path, n: int) -> Path:
    if not (folder / "instances.json").exists():
        make_scenes(folder, n, width=32, height=32, values=4, background="grey")
    save_script(ColourBoxNet(), folder / "model.pt")
    return write_config(
        folder,
        batch_size=256,
        model={"input_size": [32, 32], "mean": [0.0], "std": [1.0]},
        detection={"output": "boxes"},
        stressors=[{"name": "brightness", "severities": [3]}],
    )


def cmd_memory(args: argparse.Namespace) -> int:
    rows = []
    with _folder(args.dir) as base:
        for n in args.sizes:
            folder = base / f"n{n}"
            t = time.perf_counter()
            config = memory_fixture(folder, n)
            print(f"fixtures: {n} PNG 32x32 in {time.perf_counter() - t:.1f} s", file=sys.stderr)
            cmd = [sys.executable, "-m", "audit", "run", str(config), "--out", str(folder / "out"), "--quiet"]
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", _PEAK, *cmd], capture_output=True, text=True, env=_env())
            wall = time.perf_counter() - t
            rc, kib = done.stdout.split()[-2:]
            tail = done.stderr.strip().splitlines()[-1:] if int(rc) else []
            fce = "-"
            if int(rc) in (0, 1):
                alone = subprocess.run(
                    [sys.executable, __file__, "_fce", str(folder)], capture_output=True, text=True, env=_env()
                )
                gt_mib, eval_mib = (float(v) for v in alone.stdout.split()[-2:])
                fce = f"{gt_mib:.1f} + {eval_mib:.1f}"
            rows.append((n, int(kib) / 1024, wall, int(rc), tail, fce))
            print(
                f"{n}: peak RSS {int(kib) / 1024:.1f} MiB, {wall:.1f} s, exit {rc} {tail}, fce {fce}", file=sys.stderr
            )
            for wanted, extra, title in (
                (args.steps, ["--rss"], "RSS per step"),
                (args.tracemalloc, [], "tracemalloc"),
            ):
                if not wanted:
                    continue
                trace = [
                    sys.executable,
                    __file__,
                    "_trace",
                    str(config),
                    str(folder / "out-trace"),
                    "--top",
                    str(args.top),
                ]
                traced = subprocess.run(trace + extra, capture_output=True, text=True, env=_env())
                print(f"\n### {title}, {n} images\n\n{traced.stdout}{traced.stderr[-2000:]}", flush=True)
    print(
        "\n| images | peak RSS of cvaudit run (MiB) | wall (s) | exit | faster-coco-eval alone, clean: "
        "GT index + one evaluation (MiB) |\n|---:|---:|---:|---:|---:|"
    )
    for n, mib, wall, rc, tail, fce in rows:
        print(f"| {n:,} | {mib:.1f} | {wall:.1f} | {rc}{' ' + tail[0] if tail else ''} | {fce} |")
    if len(rows) >= 2:
        delta = rows[-1][1] - rows[0][1]
        print(
            f"\npeak RSS {rows[-1][0]:,} minus {rows[0][0]:,}: {delta:.1f} MiB ({delta * 1.048576:.1f} MB); target <= 150 MB"
        )
    return 0


def cmd_fce(args: argparse.Namespace) -> int:
    """faster-coco-eval alone on one condition of an audit's detections.json: its RSS rise, as a floor.

    Prints ``<GT index rise MiB> <evaluation rise MiB>``: the ground truth indexed (``COCO``), then, the
    detections already in a numpy array, the resident peak of ``loadRes`` + ``evaluate`` + ``accumulate``
    + ``summarize`` above the RSS before it (Linux ``VmHWM``).
    """
    import gc

    import faster_coco_eval

    quiet = lambda *a, **k: None  # noqa: E731
    folder = Path(args.folder)
    base = _proc_kib("VmRSS")
    gt = faster_coco_eval.COCO(str(folder / "instances.json"), print_function=quiet)
    indexed = _proc_kib("VmRSS")
    records = json.loads((folder / "out" / "detections.json").read_text(encoding="utf-8"))
    arr = np.array(
        [[r["image_id"], *r["bbox"], r["score"], r["category_id"]] for r in records if r["condition"] == "clean"]
    )
    del records
    gc.collect()
    before = _proc_kib("VmRSS")
    _reset_rss_peak()
    ev = faster_coco_eval.COCOeval_faster(gt, gt.loadRes(arr), "bbox", print_function=quiet)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    print((indexed - base) / 1024, (_proc_kib("VmHWM") - before) / 1024)
    return 0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


#: (module, attribute) of the functions whose traced peak ``_trace`` reports (the names the run calls).
_TRACED = [
    ("audit.detection_run", "read_detection_data"),
    ("audit.detection_run", "evaluate_detector"),
    ("audit.detection_run", "summarize_detection"),
    ("audit.detection_run", "detection_examples"),
    ("audit.detection_run", "detection_results"),
    ("audit.detection_run", "_write_outputs"),
    ("audit.evaluation.detection.summary", "CocoEvaluator.__init__"),
    ("audit.evaluation.detection.summary", "CocoEvaluator.load"),
    ("audit.evaluation.detection.summary", "CocoEvaluator.evaluate"),
    ("audit.evaluation.detection.summary", "DetectionPass.detections"),
    ("audit.evaluation.detection.summary", "write_detections_json"),
    ("audit.evaluation.detection.summary", "match_images"),
    ("audit.evaluation.detection.summary", "object_group_counts"),
    ("audit.evaluation.detection.summary", "tide_errors"),
    ("audit.evaluation.detection.summary", "calibration_samples"),
    ("audit.evaluation.detection.summary", "_csv_rows"),
]


def _proc_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_rss_peak() -> None:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def cmd_trace(args: argparse.Namespace) -> int:
    """One in-process ``run_config``: the memory rise of each step, and top lines after the pass.

    For each function of :data:`_TRACED`: the largest rise of memory above its value at the call's
    entry, over all its calls (nested calls are folded into their callers' spans). Memory is
    tracemalloc's traced memory (Python and numpy allocations), or with ``--rss`` the process's
    resident set (``VmRSS`` / ``VmHWM``, every allocation, C++ and torch included; Linux only).
    """
    import importlib
    import tracemalloc

    if args.rss:
        current = lambda: _proc_kib("VmRSS") * 1024  # noqa: E731
        peak = lambda: _proc_kib("VmHWM") * 1024  # noqa: E731
        reset = _reset_rss_peak
    else:
        current = lambda: tracemalloc.get_traced_memory()[0]  # noqa: E731
        peak = lambda: tracemalloc.get_traced_memory()[1]  # noqa: E731
        reset = tracemalloc.reset_peak
    stack: list[list[Any]] = []
    rises: dict[str, list[int]] = {}
    snaps: dict[str, Any] = {}

    def fold() -> None:
        top = peak()
        for frame in stack:
            frame[1] = max(frame[1], top)
        reset()

    def wrap(module: str, attr: str) -> None:
        owner: Any = importlib.import_module(module)
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        original = getattr(owner, name)

        def wrapper(*a: Any, **k: Any) -> Any:
            fold()
            entry = current()
            frame = [entry, entry]
            stack.append(frame)
            try:
                return original(*a, **k)
            finally:
                fold()
                stack.pop()
                rise = rises.setdefault(attr, [0, 0])
                rise[0], rise[1] = max(rise[0], frame[1] - frame[0]), rise[1] + 1
                if attr == "evaluate_detector" and not args.rss:
                    snaps[attr] = tracemalloc.take_snapshot()

        setattr(owner, name, wrapper)

    for module, attr in _TRACED:
        wrap(module, attr)
    if not args.rss:
        tracemalloc.start(1)
    r = run_audit(Path(args.config), Path(args.out))
    what = "RSS" if args.rss else "traced"
    print(f"{what} at the end {current() / 2**20:.1f} MiB, run {r['total']:.0f} s {r.get('error', '')}")
    print(f"\n| step | calls | largest {what} rise during a call (MiB) |\n|---|---:|---:|")
    for _, attr in _TRACED:
        if attr in rises:
            print(f"| `{attr}` | {rises[attr][1]} | {rises[attr][0] / 2**20:.1f} |")
    for name, snap in snaps.items():
        print(f"\nheld after {name}, top lines:")
        for stat in snap.statistics("lineno")[: args.top]:
            frame = stat.traceback[0]
            where = os.path.relpath(frame.filename, ROOT) if frame.filename.startswith(str(ROOT)) else frame.filename
            print(f"  {stat.size / 2**20:8.1f} MiB {stat.count:9d} blocks  {where}:{frame.lineno}")
    return 0


# ----------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("overhead", help="the whole audit against a bare loop")
    o.add_argument("--n", type=int, default=32, help="images")
    o.add_argument("--size", type=int, default=640, help="image side (pixels)")
    o.add_argument("--input", type=int, default=320, help="model input side (letterboxed)")
    o.add_argument("--width", type=int, default=32, help="YoloNet's first-stage channels (64: ResNet-18)")
    o.add_argument("--batch-size", type=int, default=16)
    o.add_argument("--workers", type=int, default=1, help="DataLoader workers (both variants)")
    o.add_argument("--threads", type=int, default=2, help="torch intra-op threads (both variants)")
    o.add_argument("--repeats", type=int, default=3, help="timed runs of each variant, after a warm-up of each")
    o.add_argument("--dir", type=Path, default=None, help="use (and keep) this folder; fixtures reused if present")
    m = sub.add_parser("metrics", help="metric computation (30 conditions x 20 subgroups) as a share of the run")
    m.add_argument("--n", type=int, default=40, help="images")
    m.add_argument("--groups", type=int, default=20, help="values of the image attribute")
    m.add_argument("--junk", type=int, default=97, help="low-scoring detections per image besides the 3 colour boxes")
    m.add_argument("--threads", type=int, default=1)
    m.add_argument("--repeats", type=int, default=1)
    m.add_argument("--heavy-ms", type=float, default=None, help="ms per image-condition of the heavy detector")
    m.add_argument("--heavy-width", type=int, default=32)
    m.add_argument("--heavy-input", type=int, default=320)
    m.add_argument("--profile", action="store_true", help="cProfile summarize_detection in the last run")
    m.add_argument("--top", type=int, default=30)
    m.add_argument("--dir", type=Path, default=None)
    r = sub.add_parser("memory", help="peak RSS of cvaudit run against the number of images")
    r.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    r.add_argument("--tracemalloc", action="store_true", help="per size, the traced rise of each step (slow)")
    r.add_argument("--steps", action="store_true", help="per size, the RSS rise of each step (one more run)")
    r.add_argument("--top", type=int, default=12)
    r.add_argument("--dir", type=Path, default=None, help="keep fixtures here (one folder per size) and reuse them")
    f = sub.add_parser("_fce", help=argparse.SUPPRESS)
    f.add_argument("folder")
    t = sub.add_parser("_trace", help=argparse.SUPPRESS)
    t.add_argument("config")
    t.add_argument("out")
    t.add_argument("--top", type=int, default=12)
    t.add_argument("--rss", action="store_true")
    args = ap.parse_args(argv)
    return {
        "overhead": cmd_overhead,
        "metrics": cmd_metrics,
        "memory": cmd_memory,
        "_trace": cmd_trace,
        "_fce": cmd_fce,
    }[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
