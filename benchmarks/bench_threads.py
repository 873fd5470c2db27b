"""Threads and workers (issue 17, point 4): the automatic defaults against torch's own, idle and under load.

Run from the repository root (after ``bench_scale.py`` has made its workspace)::

    .venv/bin/python benchmarks/bench_threads.py --dir /tmp/cvaudit-scale --n 10000 --repeats 3 --hogs 2

Runs the scale benchmark's audit (``bench_scale.py``: clean + night@3 + occlusion@3, 32x32 images)
at ``--n`` samples with

- **automatic**: ``threads`` and ``data.num_workers`` left null (cvaudit's defaults);
- **torch default**: ``data.num_workers: 2`` (cvaudit's default before issue 17) and ``threads`` set
  to torch's own default (one per core);
- **one thread**: ``threads: 1``, ``data.num_workers: 2`` (what ``OMP_NUM_THREADS=1`` gave);

alternating, ``--repeats`` times, first as the machine is, then with ``--hogs`` busy-looping
processes running beside it (a machine shared with other jobs). Prints wall seconds per run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scale import CONFIG, prepare, run_audit


def _spin() -> None:
    while True:
        pass


def variants(folder: Path, n: int) -> dict[str, Path]:
    import torch

    base = CONFIG.format(n=n)
    texts = {
        "automatic": base,
        "torch default": base.replace(
            "batch_size: 128", f"batch_size: 128\nthreads: {torch.get_num_threads()}"
        ).replace("  intersections:", "  num_workers: 2\n  intersections:"),
        "one thread": base.replace("batch_size: 128", "batch_size: 128\nthreads: 1").replace(
            "  intersections:", "  num_workers: 2\n  intersections:"
        ),
    }
    out = {}
    for name, text in texts.items():
        path = folder / f"config-{n}-{name.replace(' ', '-')}.yaml"
        path.write_text(text)
        out[name] = path
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hogs", type=int, default=2, help="busy processes for the loaded runs (0: skip them)")
    parser.add_argument("--cvaudit", default=str(Path(sys.executable).parent / "cvaudit"))
    args = parser.parse_args()
    prepare(args.dir, [args.n], 3000)
    configs = variants(args.dir, args.n)
    for loaded in [False, True] if args.hogs else [False]:
        hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.hogs if loaded else 0)]
        for hog in hogs:
            hog.start()
        try:
            walls: dict[str, list[float]] = {name: [] for name in configs}
            used: dict[str, tuple] = {}
            for _ in range(args.repeats):
                for name, config in configs.items():
                    (args.dir / f"config-{args.n}.yaml").write_text(config.read_text())
                    row = run_audit(args.dir, args.n, cvaudit=args.cvaudit, src=None, first_batch_only=False)
                    walls[name].append(row["wall"])
                    used[name] = (row["threads"], row["num_workers"])
                    print(f"{'loaded' if loaded else 'as is'} {name}: {row['wall']:.1f} s", flush=True)
        finally:
            for hog in hogs:
                hog.terminate()
        print(f"\n{'with ' + str(args.hogs) + ' busy processes' if loaded else 'machine as it is'}:")
        print("| settings | threads / workers | wall, median (s) | runs (s) |")
        print("|---|---|---:|---|")
        for name, times in walls.items():
            runs = ", ".join(f"{t:.1f}" for t in times)
            print(f"| {name} | {used[name][0]} / {used[name][1]} | {statistics.median(times):.1f} | {runs} |")
        print(f"load average now: {os.getloadavg()[0]:.2f}\n", flush=True)
    (args.dir / f"config-{args.n}.yaml").write_text(CONFIG.format(n=args.n))


if __name__ == "__main__":
    main()
