"""Time and peak memory of the gap tests for k groups x 10 classes, through the paths a run uses.

    PYTHONPATH=. python benchmarks/bench_gaptests.py --groups 10 100 200 1000

Each size runs in a fresh process (peak RSS from ``resource.getrusage``), with synthetic groups of
150-250 samples, 10 classes, accuracy about 0.85, every group metric with a bootstrap interval:

- ``evaluator``: :func:`audit.contract.groupstats.fairness_summary` with ``level=0.95``, what the
  evaluator calls for every condition x grouping (it tests all 8 gap metrics, equalized odds over
  20 per-class rates and demographic parity over 10, every pair of groups of each);
- ``policy``: :func:`policies.check_policy` on a results.json holding that one grouping, with three
  tested rules (accuracy gap, equalized odds, demographic parity, detect at 95 %);
- ``rss``: the process's peak resident memory after both (MiB).

``--timeout`` bounds each size (a size that does not finish is reported as such).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 10


def make_groups(k: int, *, classes: int = CLASSES, seed: int = 0) -> list[dict]:
    """k synthetic groups as stored in results.json (confusion, metrics and their intervals)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for i in range(k):
        n = int(rng.integers(150, 251))
        labels = rng.integers(0, classes, n)
        right = rng.random(n) < 0.85
        pred = np.where(right, labels, (labels + rng.integers(1, classes, n)) % classes)
        cm = np.zeros((classes, classes), dtype=int)
        np.add.at(cm, (labels, pred), 1)
        acc = float(np.trace(cm) / n)
        g = {"value": f"g{i}", "n": n, "confusion": cm.tolist(), "accuracy": acc, "top_k_accuracy": min(1.0, acc + 0.1)}
        for metric, centre in (("balanced_accuracy", acc), ("macro_f1", acc - 0.01), ("ece", 0.05)):
            g[metric] = centre
            g[f"{metric}_ci"] = [centre - 0.05, centre + 0.05]
        for metric, centre in (("debiased_l2_ce", 0.03), ("brier", 0.2), ("nll", 0.5)):
            value = abs(centre + float(rng.normal(0, 0.01)))
            g[metric] = value
            g[f"{metric}_ci"] = [value - 0.04, value + 0.04]
        g["accuracy_ci"] = [acc - 0.05, acc + 0.05]
        g["top_k_accuracy_ci"] = [g["top_k_accuracy"] - 0.05, min(1.0, g["top_k_accuracy"] + 0.05)]
        out.append(g)
    return out


def _results(groups: list[dict]) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from results_builder import typed_results

    from audit.contract.groupstats import fairness_summary

    stored = [
        {"attribute": "site", "value": g["value"], "metrics": {k: v for k, v in g.items() if k != "value"}}
        for g in groups
    ]
    summary = fairness_summary(groups, min_group_size=30, level=0.95)
    results = {
        "model": {"num_classes": CLASSES, "class_names": [str(c) for c in range(CLASSES)]},
        "evaluation": {"min_group_size": 30, "confidence_level": 0.95},
        "conditions": [{"id": "clean", "stressor": None, "metrics": {"accuracy": 0.85}, "groups": stored}],
        "fairness": [{"condition": "clean", "attribute": "site", **summary}],
    }
    return typed_results(results)


POLICY = {
    "version": 1,
    "name": "bench",
    "rules": [
        {
            "id": "acc-gap",
            "metric": "accuracy",
            "aggregate": "gap",
            "attribute": "site",
            "condition": "clean",
            "max": 0.10,
        },
        {"id": "eod", "metric": "equalized_odds_difference", "attribute": "site", "condition": "clean", "max": 0.30},
        {
            "id": "dpd",
            "metric": "demographic_parity_difference",
            "attribute": "site",
            "condition": "clean",
            "max": 0.30,
        },
    ],
}


def one(k: int) -> dict:
    """Measure one size in this process."""
    from audit.contract.groupstats import fairness_summary

    groups = make_groups(k)
    t0 = time.perf_counter()
    summary = fairness_summary(groups, min_group_size=30, level=0.95)
    evaluator = time.perf_counter() - t0
    results = _results(groups)
    from policies import check_policy
    from policies.loader import policy_from_dict

    policy = policy_from_dict(POLICY, source="builtin")
    t0 = time.perf_counter()
    verdict = check_policy(results, policy)
    policy_s = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "groups": k,
        "evaluator_s": evaluator,
        "policy_s": policy_s,
        "rss_mib": rss,
        "pairs": sum(t["pairs"] for t in summary["tests"].values()),
        "statuses": [r["status"] for r in verdict["rules"]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, nargs="+", default=[10, 100, 200, 1000])
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(one(args.one)))
        return 0
    print("| groups | pairs tested (evaluator) | evaluator (s) | policy (s) | peak RSS (MiB) |")
    print("|---:|---:|---:|---:|---:|")
    for k in args.groups:
        try:
            done = subprocess.run(
                [sys.executable, __file__, "--one", str(k)],
                capture_output=True,
                text=True,
                timeout=args.timeout,
                check=True,
            )
        except subprocess.TimeoutExpired:
            print(f"| {k:,} | — | did not finish in {args.timeout:g} s | | |")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"| {k:,} | {r['pairs']:,} | {r['evaluator_s']:.2f} | {r['policy_s']:.2f} | {r['rss_mib']:.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
