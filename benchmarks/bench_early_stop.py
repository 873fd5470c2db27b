"""Early stopping on a clearly passing and a clearly failing model: images evaluated and wall time.

A 10,000-image coded dataset (``benchmarks/coded.py``: the model's accuracy is set exactly)
is audited with ``evaluation.early_stop`` off and on, for a model 0.05 above and one 0.05 below
the threshold of a ``judge: ci_lower, min: 0.80`` rule on clean accuracy, with three stressor
conditions judged by non-blocking rules; then under the built-in ``ci-gate``, whose blocking
subgroup-gap rule keeps clean running to the end. Each run is ``cvaudit run`` in a fresh
process (start-up included) with one torch thread (``OMP_NUM_THREADS=1``: two threads on a busy
2-core machine made the same runs 2-4x slower and noisy), HTML report only, the best of
``--repeat`` runs.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_early_stop.py [--images 10000] [--repeat 2] [--write-docs]

``--write-docs`` replaces the block of ``docs/statistics.md`` between ``<!-- statistics:early-stop:start -->`` and
``<!-- statistics:early-stop:end -->`` with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import coded

POLICY = """\
version: 1
name: recipe
rules:
  - {id: clean-accuracy, condition: clean, metric: accuracy, judge: ci_lower, min: 0.80, min_samples: 200}
  - {id: stress-accuracy, condition: "*@*", metric: accuracy, min: 0.5, blocking: false}
"""
STRESSORS = "  - {name: night, severities: [1, 3]}\n  - {name: blur, kind: gaussian, severities: [3]}\n"


def run(root: Path, *, policy: str, early_stop: bool, repeat: int) -> tuple[float, dict]:
    cfg = coded.config(root, policy=policy, early_stop=early_stop, stressors=STRESSORS)
    cvaudit = Path(sys.executable).with_name("cvaudit")
    best = float("inf")
    for i in range(repeat):
        out = root / f"out-{early_stop}-{i}"
        start = time.perf_counter()
        done = subprocess.run(
            [str(cvaudit), "run", str(cfg), "--out", str(out), "--quiet"],
            capture_output=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        best = min(best, time.perf_counter() - start)
        if done.returncode not in (0, 1):
            raise SystemExit(done.stderr.decode())
    return best, json.loads((out / "results.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--write-docs", "--write-readme", dest="write_docs", action="store_true")
    args = parser.parse_args()
    lines = [
        f"{args.images:,} images, clean + night@1, night@3, blur@3; `recipe`: blocking `judge: ci_lower, min: 0.80` "
        "on clean accuracy, non-blocking rules on the stressed conditions; `ci-gate`: the built-in policy. "
        f"Wall time of `cvaudit run` in a fresh process (best of {args.repeat}).",
        "",
        "| model | policy | early stop | verdict | clean images | all images evaluated | wall (s) |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for line in lines:
        print(line)
    for accuracy, name in ((0.85, "passing (0.85)"), (0.75, "failing (0.75)")):
        for policy in ("recipe", "ci-gate"):
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                coded.write_npz(root / "data.npz", args.images, accuracy)
                coded.save_model(root / "model.pt")
                (root / "policy.yaml").write_text(POLICY)
                chosen = "policy.yaml" if policy == "recipe" else policy
                for early in (False, True):
                    wall, results = run(root, policy=chosen, early_stop=early, repeat=args.repeat)
                    conds = results["conditions"]
                    used = sum(c["metrics"]["n"] for c in conds)
                    share = used / (len(conds) * args.images)
                    clean = conds[0]["metrics"]["n"]
                    lines.append(
                        f"| {name} | {policy} | {'on' if early else 'off'} | {results['policy']['verdict']} | "
                        f"{clean:,} ({clean / args.images:.1%}) | {used:,} ({share:.1%}) | {wall:.1f} |"
                    )
                    print(lines[-1], flush=True)
    if args.write_docs:
        from bench_statistics import STATISTICS_PAGE, _write

        _write(STATISTICS_PAGE, "early-stop", "\n".join(lines))


if __name__ == "__main__":
    main()
