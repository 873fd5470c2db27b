"""Time ``cvaudit demo`` from this checkout against the same command at another git revision.

Usage::

    .venv/bin/python benchmarks/bench_demo.py --base REV [--runs 5]

``REV`` is checked out into a temporary git worktree and run with this interpreter (its packages
first on ``PYTHONPATH``), so both sides use the same torch and dependencies. The two commands
(``python -m audit demo --quiet --no-sign --out <tmp>``) run in turn, A B A B ..., after one
warm-up each; each run is a child process timed by its wall clock and its CPU time (user + system,
from ``resource.getrusage(RUSAGE_CHILDREN)``). Prints the median, min and max of each side and the
median of the pairwise ratios this/base (a pair shares the machine's state at that moment, so the
ratio holds when the machine's speed drifts).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _time(tree: Path, out: Path) -> tuple[float, float]:
    """(wall, cpu) seconds of one ``python -m audit demo`` run of the package in ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "audit", "demo", "--quiet", "--no-sign", "--out", str(out)],
        cwd=tree,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _row(name: str, values: list[float]) -> str:
    return f"{name:<22} median {statistics.median(values):7.2f}  min {min(values):7.2f}  max {max(values):7.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare against (e.g. a commit before a change)")
    parser.add_argument("--runs", type=int, default=5, help="counted runs of each side (default 5)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base], check=True)
        try:
            sides = {"this": ROOT, "base": base}
            times: dict[str, list[tuple[float, float]]] = {"this": [], "base": []}
            for run in range(args.runs + 1):  # the first round is the warm-up
                for name, tree in sides.items():
                    measured = _time(tree, Path(tmp) / f"out-{name}")
                    if run:
                        times[name].append(measured)
            print(f"cvaudit demo, {args.runs} runs each after one warm-up; this checkout vs {args.base}")
            for name in sides:
                print(_row(f"{name} wall (s)", [w for w, _ in times[name]]))
                print(_row(f"{name} cpu (s)", [c for _, c in times[name]]))
            for i, label in ((0, "wall"), (1, "cpu")):
                ratios = [a[i] / b[i] for a, b in zip(times["this"], times["base"], strict=True)]
                print(_row(f"ratio this/base {label}", ratios))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
