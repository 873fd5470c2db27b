"""Audit overhead (issue 5, point 7): a clean-only audit versus a bare decode + forward loop.

Target: on the CPU, a clean-only ``cvaudit run`` of a ResNet-18-like model
takes no more than 1.15x the time of a bare loop that decodes the same images
with the same DataLoader and runs the forward pass.

Run from the repository root::

    .venv/bin/python benchmarks/bench_overhead.py [--n 512] [--size 224] [--batch-size 64]
        [--workers 2] [--repeats 3] [--no-profile] [--keep DIR]

One run:

1. writes ``--n`` PNG files (``--size`` squared crops of the two photographs
   that ship with scikit-learn, randomly offset, scaled and flipped, so PNG
   decoding costs what it costs on real photographs) and ``manifest.csv``
   (``sample_id,path,label,camera,site``) into a temporary folder;
2. builds :class:`benchmarks.models.ResNet18` with 10 classes and saves it as
   TorchScript (``torch.jit.script``);
3. times, alternating (bare, audit, audit, bare, ...) after one warm-up of each:

   - **bare**: ``torch.jit.load`` of the same file, the same
     ``audit.evaluation.data.AuditDataset`` + ``audit.evaluation.data.make_loader`` (same batch size
     and workers), mean/std normalisation, forward under ``torch.no_grad`` and
     softmax; nothing else;
   - **audit**: ``audit.cli.run.run_config(config.yaml, out_dir=..., quiet=True)``
     in-process with no stressors and ``report.formats: []`` (results.json,
     predictions.csv and junit.xml are still written; no HTML/PDF);

   and, inside each audit run, how long ``audit.runner.evaluate`` (the
   streaming pass) took, so that "evaluation only" and "end-to-end" ratios can
   both be given;
4. profiles one more audit run with cProfile (main process only: decoding
   happens in the DataLoader workers) and prints the top functions;
5. prints a Markdown table of medians and ratios.

Both variants use torch's default intra-op thread count (printed) and the same
DataLoader worker count, so they compete for the same cores in the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import csv
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.models import ResNet18  # noqa: E402

NUM_CLASSES = 10
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------- fixtures


def make_images(folder: Path, n: int, size: int, seed: int = 0) -> Path:
    """Write ``n`` PNG crops of scikit-learn's sample photographs and a manifest; return the manifest."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(a) for a in load_sample_images().images]  # two 427x640 RGB photographs
    rng = np.random.default_rng(seed)
    img_dir = folder / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        photo = photos[i % len(photos)]
        w, h = photo.size
        side = int(rng.integers(size // 2, min(w, h)))
        x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crop = photo.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        name = f"img_{i:05d}.png"
        crop.save(img_dir / name)
        rows.append(
            {
                "sample_id": f"s{i:05d}",
                "path": f"images/{name}",
                "label": int(rng.integers(0, NUM_CLASSES)),
                "camera": ["A", "B", "C"][int(rng.integers(0, 3))],
                "site": ["north", "south"][int(rng.integers(0, 2))],
            }
        )
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def make_model(folder: Path) -> Path:
    """Save an (untrained, eval-mode) ResNet-18-like network as TorchScript."""
    torch.manual_seed(0)
    net = ResNet18(num_classes=NUM_CLASSES).eval()
    path = folder / "model.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    return path


def write_config(folder: Path, *, size: int, batch_size: int, workers: int) -> Path:
    text = f"""\
seed: 0
device: cpu
batch_size: {batch_size}
model:
  path: model.pt
  outputs: logits
  input_size: [{size}, {size}]
  mean: {list(MEAN)}
  std: {list(STD)}
data:
  manifest: manifest.csv
  attributes: [camera, site]
  num_workers: {workers}
stressors: []
report:
  formats: []
"""
    path = folder / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------- the two variants


def run_bare(config_path: Path) -> dict:
    """Decode with the audit's DataLoader, normalise, forward, softmax. Returns timings."""
    from audit.contract.config import load_config
    from audit.evaluation.data import AuditDataset, make_loader, read_samples

    t0 = time.perf_counter()
    cfg = load_config(config_path)
    net = torch.jit.load(str(cfg.model.path), map_location="cpu").eval()
    mean = torch.tensor(cfg.model.mean).view(1, -1, 1, 1)
    std = torch.tensor(cfg.model.std).view(1, -1, 1, 1)
    table = read_samples(cfg.data, class_names=cfg.model.class_names)
    loader = make_loader(AuditDataset(table, cfg.model), batch_size=cfg.batch_size, num_workers=cfg.data.num_workers)
    n = 0
    checksum = 0.0
    with torch.no_grad():
        for batch in loader:
            probs = torch.softmax(net((batch["images"] - mean) / std), dim=1)
            n += probs.shape[0]
            checksum += float(probs[:, 0].sum())
    return {"total": time.perf_counter() - t0, "n": n}


@contextlib.contextmanager
def _timed_evaluate(sink: dict):
    """Time ``audit.runner.evaluate`` (the streaming pass) without editing the audit code."""
    import audit.runner as runner

    original = runner.evaluate

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            sink["evaluate"] = time.perf_counter() - t

    runner.evaluate = wrapper
    try:
        yield
    finally:
        runner.evaluate = original


def run_audit(config_path: Path, out_dir: Path) -> dict:
    """A clean-only audit through the real code path (in-process). Returns timings."""
    from audit.cli.run import run_config

    sink: dict = {}
    with _timed_evaluate(sink):
        t0 = time.perf_counter()
        outcome = run_config(config_path, out_dir=out_dir, quiet=True)
        total = time.perf_counter() - t0
    n = outcome.results["conditions"][0]["metrics"]["n"]
    return {"total": total, "evaluate": sink["evaluate"], "n": n}


def profile_audit(config_path: Path, out_dir: Path, top: int) -> str:
    from audit.cli.run import run_config

    prof = cProfile.Profile()
    prof.enable()
    run_config(config_path, out_dir=out_dir, quiet=True)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(r"(audit|reports|policies)[/\\]", top)
    return buf.getvalue()


# ----------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512, help="number of images")
    ap.add_argument("--size", type=int, default=224, help="image side and model input size")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (data.num_workers)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each variant (after one warm-up each)")
    ap.add_argument("--top", type=int, default=25, help="rows of the cProfile listing")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--keep", type=Path, default=None, help="use (and keep) this folder instead of a temp folder")
    args = ap.parse_args(argv)

    with contextlib.ExitStack() as stack:
        if args.keep is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cvaudit-bench-")))
        else:
            folder = args.keep
            folder.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        make_images(folder, args.n, args.size)
        make_model(folder)
        config = write_config(folder, size=args.size, batch_size=args.batch_size, workers=args.workers)
        print(
            f"fixtures: {args.n} PNG {args.size}x{args.size} + TorchScript model in {time.perf_counter() - t:.1f} s",
            file=sys.stderr,
        )
        print(
            f"torch {torch.__version__}, intra-op threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
            f"load average before {os.getloadavg()}",
            file=sys.stderr,
        )

        out = folder / "out"
        # warm-up (imports, page cache, allocator)
        run_bare(config)
        run_audit(config, out)
        bare, audit = [], []
        loads = []
        for i in range(args.repeats):
            order = ("bare", "audit") if i % 2 == 0 else ("audit", "bare")
            for variant in order:
                loads.append(os.getloadavg()[0])
                if variant == "bare":
                    r = run_bare(config)
                    bare.append(r)
                else:
                    r = run_audit(config, out)
                    audit.append(r)
                assert r["n"] == args.n, r
                print(
                    f"run {i + 1} {variant:5s}: {r['total']:.2f} s"
                    + (f" (evaluate {r['evaluate']:.2f} s)" if "evaluate" in r else ""),
                    file=sys.stderr,
                )

        bare_t = statistics.median(r["total"] for r in bare)
        audit_t = statistics.median(r["total"] for r in audit)
        eval_t = statistics.median(r["evaluate"] for r in audit)
        ratios = [a["total"] / b["total"] for a, b in zip(audit, bare)]
        eval_ratios = [a["evaluate"] / b["total"] for a, b in zip(audit, bare)]

        print()
        print(
            f"N = {args.n} PNG {args.size}x{args.size}, batch size {args.batch_size}, {args.workers} workers, "
            f"{torch.get_num_threads()} torch threads, {args.repeats} runs each (alternating, after a warm-up), "
            f"1-min load average during the runs {min(loads):.1f}-{max(loads):.1f}"
        )
        print()
        print("| variant | median s | min-max s | images/s | x bare (median of pairs) |")
        print("|---|---:|---:|---:|---:|")
        rng = lambda xs: f"{min(xs):.2f}-{max(xs):.2f}"  # noqa: E731
        print(
            f"| bare loop (decode + forward + softmax) | {bare_t:.2f} | {rng([r['total'] for r in bare])} | "
            f"{args.n / bare_t:.0f} | 1.00 |"
        )
        print(
            f"| audit: `evaluate` only (streaming pass) | {eval_t:.2f} | {rng([r['evaluate'] for r in audit])} | "
            f"{args.n / eval_t:.0f} | {statistics.median(eval_ratios):.3f} |"
        )
        print(
            f"| audit: end-to-end `run_config` | {audit_t:.2f} | {rng([r['total'] for r in audit])} | "
            f"{args.n / audit_t:.0f} | {statistics.median(ratios):.3f} |"
        )
        print()
        print(
            f"ratio of medians: end-to-end {audit_t / bare_t:.3f}, evaluate only {eval_t / bare_t:.3f}; "
            f"target <= 1.15: {'met' if audit_t / bare_t <= 1.15 else 'NOT met'}"
        )
        if not args.no_profile:
            print()
            print(profile_audit(config, out, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
