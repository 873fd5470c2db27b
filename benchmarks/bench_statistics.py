"""The simulations behind the documentation's Statistics page (``docs/statistics.md``), through cvaudit's own code.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_statistics.py all --write-docs
    PYTHONPATH=. .venv/bin/python benchmarks/bench_statistics.py intervals --datasets 1000

Sections (each prints a Markdown table; ``--write-docs`` also replaces the block of ``docs/statistics.md``
between ``<!-- statistics:<name>:start -->`` and ``<!-- statistics:<name>:end -->``):

- ``intervals``: coverage and mean width of the accuracy intervals (Wilson, Clopper-Pearson,
  the percentile Poisson bootstrap), p in {0.6, 0.9, 0.97}, n in {20, 50, 200, 1000};
- ``bootstrap``: coverage and width of the bootstrap metrics' intervals (ECE, the debiased L2
  calibration error, Brier, NLL, macro-F1, balanced accuracy) for a calibrated model and one
  over-confident by 0.05, with how often the built-in policies' calibration rules pass;
- ``gaps``: how often a fair model fails a gap rule (point estimate against the test), how
  often a true gap of 0.10 is detected, a glob over 24 targets, equalized odds of a fair
  10-class model;
- ``sizes``: samples per group at which common gap rules become testable;
- ``sequential``: false passes at an accuracy exactly at the threshold when the bound is
  re-checked during the run (fixed-n Wilson against the anytime-valid test), and the samples
  the anytime-valid test needs 0.05 away from the threshold.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import exact_claims
import sim

from audit.contract import gaptests
from audit.contract.intervals import wilson
from audit.contract.sequential import decide

ROOT = Path(__file__).resolve().parents[1]
PS, NS = (0.6, 0.9, 0.97), (20, 50, 200, 1000)


def _covers(ci: np.ndarray, truth: float) -> np.ndarray:
    return (ci[:, 0] <= truth) & (truth <= ci[:, 1])


def intervals(datasets: int, replicates: int) -> str:
    lines = [
        f"Coverage of the true accuracy p (and mean width) over {datasets} simulated datasets per cell, through "
        f"cvaudit's `AuditStats` (one slot per dataset); exact: the coverage summed over the binomial distribution. "
        f"Percentile bootstrap: {replicates} Poisson replicates, raw; `interval: bootstrap` is the same except "
        "that an interval at 0 or n correct (every replicate equal, width 0) is replaced by Wilson's.",
        "",
        "| p | n | Wilson (default) | exact | Clopper-Pearson | exact | percentile bootstrap | degenerate "
        "| `interval: bootstrap` |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in PS:
        for n in NS:
            r = sim.proportion_intervals(p, n, datasets, replicates=replicates)
            cells = []
            for key in ("wilson", "clopper-pearson"):
                ci = r[key]
                cells.append(f"{_covers(ci, p).mean():.3f} ({np.mean(ci[:, 1] - ci[:, 0]):.3f})")
                cells.append(f"{sim.exact_coverage(p, n, key):.3f}")
            boot = r["bootstrap"]
            cells.append(f"{_covers(boot, p).mean():.3f} ({np.nanmean(boot[:, 1] - boot[:, 0]):.3f})")
            degenerate = (r["k"] == 0) | (r["k"] == n)
            cells.append(f"{degenerate.mean():.1%}")
            used = np.where(degenerate[:, None], r["wilson"], boot)
            cells.append(f"{_covers(used, p).mean():.3f} ({np.mean(used[:, 1] - used[:, 0]):.3f})")
            lines.append(f"| {p} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _policy_rules(metric_names: tuple[str, ...]):
    from policies import load_policy
    from policies.schema import MetricRule

    out = []
    for name in ("ci-gate", "high-risk", "demo"):
        policy = load_policy(name)
        for rule in policy.rules:
            if isinstance(rule, MetricRule) and rule.condition == "clean" and rule.metric in metric_names:
                out.append((name, rule))
    return out


def _judge(rule, metrics: dict) -> bool:
    """Whether one calibration rule passes on these clean metrics (judged by the policy engine)."""
    from policies import check_policy
    from policies.loader import policy_from_dict

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from results_builder import typed_results  # the rest of a valid results.json, filled in

    policy = policy_from_dict(  # a non-blocking rule alone is no gate: judged in a report-only policy
        {"version": 1, "name": "p", "report_only": not rule.blocking, "rules": [rule.model_dump(exclude_unset=True)]},
        source="builtin",
    )
    results = {
        "evaluation": {"min_group_size": 30, "confidence_level": 0.95},
        "conditions": [{"id": "clean", "stressor": None, "metrics": metrics, "groups": []}],
        "fairness": [],
    }
    return check_policy(typed_results(results), policy)["rules"][0]["status"] == "pass"


def bootstrap(datasets: int, replicates: int) -> tuple[str, str]:
    sizes = (200, 500, 1000, 5000)
    rules = _policy_rules(("ece", "debiased_l2_ce"))
    coverage = [
        f"Coverage (mean width) of the bootstrap intervals, {replicates} replicates, {datasets} datasets per cell "
        f"({max(datasets // 2, 1)} at n = 5000); 5 classes, top-label confidence 0.4 + 0.6·Beta(4, 1.5), right with "
        "probability confidence − δ (δ = 0: calibrated; the true ECE and L2 error are δ).",
        "",
        "| δ | n | " + " | ".join(sim.BOOTSTRAP_METRICS) + " |",
        "|---:|---:|" + "---:|" * len(sim.BOOTSTRAP_METRICS),
    ]
    passes = [
        "How often the built-in calibration rules pass (same datasets):",
        "",
        "| δ | n | mean ECE | mean debiased L2 | " + " | ".join(f"{p} `{r.id}`" for p, r in rules) + " |",
        "|---:|---:|---:|---:|" + "---:|" * len(rules),
    ]
    for delta in (0.0, 0.05):
        truth = sim.true_values(delta)
        for n in sizes:
            d = datasets if n < 5000 else max(datasets // 2, 1)
            rows = list(sim.bootstrap_metric_intervals(n, d, delta=delta, replicates=replicates))
            cells = []
            for metric in sim.BOOTSTRAP_METRICS:
                cis = np.array([r[f"{metric}_ci"] for r in rows], dtype=float)
                cells.append(f"{_covers(cis, truth[metric]).mean():.3f} ({np.mean(cis[:, 1] - cis[:, 0]):.3f})")
            coverage.append(f"| {delta} | {n} | " + " | ".join(cells) + " |")
            rates = [np.mean([_judge(rule, _scalar_metrics(r)) for r in rows]) for _, rule in rules]
            passes.append(
                f"| {delta} | {n} | {np.mean([r['ece'] for r in rows]):.4f} | "
                f"{np.mean([r['debiased_l2_ce'] for r in rows]):.4f} | " + " | ".join(f"{x:.1%}" for x in rates) + " |"
            )
    return "\n".join(coverage), "\n".join(passes)


def _scalar_metrics(slot: dict) -> dict:
    from audit.contract.results import Metrics

    return {k: slot[k] for k in Metrics.model_fields if k in slot}


def _fair_groups(rng, groups: int, low: int, high: int, p: float = 0.9, unfair: float = 0.0):
    sizes = rng.integers(low, high + 1, groups)
    rates = np.full(groups, p)
    rates[0] -= unfair
    correct = rng.binomial(sizes, rates)
    return [
        {"value": f"g{i}", "n": int(n), "accuracy": k / n, "confusion": [[int(k), int(n - k)], [0, 0]]}
        for i, (n, k) in enumerate(zip(sizes, correct))
    ]


def _fails(groups_list, tolerance: float, mode: str = "detect") -> tuple[bool, bool]:
    """(point rule fails, tested rule fails) for one rule over these targets."""
    point = any(max(g["accuracy"] for g in gs) - min(g["accuracy"] for g in gs) > tolerance for gs in groups_list)
    targets = [gaptests.estimates(gs, "accuracy", min_group_size=30) for gs in groups_list]
    results = gaptests.decide_targets(targets, kind="gap", tolerance=tolerance, mode=mode)
    bad = ("violation",) if mode == "detect" else ("not_shown", None)
    return point, any(r.decision in bad for r in results)


def gaps(datasets: int) -> str:
    rng = np.random.default_rng(0)
    lines = [
        f"A fair model (every group at 0.90; group sizes drawn from 30-300), rule `gap <= 0.05`, {datasets} "
        "datasets per cell: how often it fails.",
        "",
        "| groups | point estimate | detect test (default) |",
        "|---:|---:|---:|",
    ]
    for g in (2, 5, 10, 20):
        outcomes = np.array([_fails([_fair_groups(rng, g, 30, 300)], 0.05) for _ in range(datasets)])
        lines.append(f"| {g} | {outcomes[:, 0].mean():.1%} | {outcomes[:, 1].mean():.1%} |")
    edge = [_fails([_fair_groups(rng, 2, 500, 500, unfair=0.05)], 0.05)[1] for _ in range(datasets)]
    exact_edge = exact_claims.gap_fail_rate(500, 500, 0.85, 0.90, tolerance=0.05)
    worst, at, size = exact_claims.boundary_scan(range(30, 301))
    at50 = exact_claims.boundary_worst(50)
    small, at_small, size_small = exact_claims.boundary_scan(range(10, 30))
    lines += [
        "",
        f"At the boundary (two groups of 500 at 0.85 and 0.90: the true gap is exactly the tolerance 0.05) the "
        f"detect test fails {np.mean(edge):.1%} of {datasets} datasets (exact: {exact_edge:.2%}). Its level is "
        f"near, not at most, the nominal 5 %: exactly, over the accuracies p/p + 0.05 (step 0.01) and two equal "
        f"groups of 30 (the default `min_group_size`) to 300, the worst case is {worst:.2%} (2 × {size} at "
        f"{at:.2f}/{at + 0.05:.2f}); {at50[0]:.2%} at 2 × 50 ({at50[1]:.2f}/{at50[1] + 0.05:.2f}); {small:.2%} at "
        f"2 × {size_small} ({at_small:.2f}/{at_small + 0.05:.2f}) when smaller groups take part "
        "(`benchmarks/exact_claims.py boundary`).",
    ]
    targets = []
    for _ in range(datasets):
        groups_list = [_fair_groups(rng, int(rng.integers(2, 6)), 30, 300) for _ in range(24)]
        targets.append(_fails(groups_list, 0.05))
    targets = np.array(targets)
    lines += [
        "",
        f"A glob rule over 24 targets (2-5 fair groups each): point {targets[:, 0].mean():.1%}, "
        f"detect test with Holm across all targets {targets[:, 1].mean():.1%}.",
        "",
        f"Detection of a true gap of 0.10 (one group at 0.80, the others at 0.90), {datasets} datasets per cell:",
        "",
        "| groups | group size | tolerance 0 | tolerance 0.02 | tolerance 0.05 |",
        "|---:|---:|---:|---:|---:|",
    ]
    for g in (2, 5, 10, 20):
        for low, high in ((200, 300), (500, 500), (1000, 1000)):
            cells = []
            for tol in (0.0, 0.02, 0.05):
                hit = np.mean([_fails([_fair_groups(rng, g, low, high, unfair=0.10)], tol)[1] for _ in range(datasets)])
                cells.append(f"{hit:.1%}")
            label = f"{low}-{high}" if low != high else str(low)
            lines.append(f"| {g} | {label} | " + " | ".join(cells) + " |")
    lines += ["", _equalized_odds(rng, datasets)]
    return "\n".join(lines)


def _equalized_odds(rng, datasets: int, classes: int = 10, n: int = 250) -> str:
    point = tested = 0
    for _ in range(datasets):
        groups = []
        for name in ("a", "b"):
            labels = rng.integers(0, classes, n)
            right = rng.random(n) < 0.9
            wrong = (labels + rng.integers(1, classes, n)) % classes
            pred = np.where(right, labels, wrong)
            cm = np.zeros((classes, classes), dtype=int)
            np.add.at(cm, (labels, pred), 1)
            groups.append({"value": name, "n": n, "confusion": cm.tolist()})
        from audit.contract.groupstats import equalized_odds_difference

        point += equalized_odds_difference([g["confusion"] for g in groups]) > 0.10
        items = gaptests.estimates(groups, "equalized_odds_difference", min_group_size=30)
        (result,) = gaptests.decide_targets([items], kind="gap", tolerance=0.10)
        tested += result.decision == "violation"
    return (
        f"Equalized odds of a fair 10-class model (2 groups of {n}, accuracy 0.90), rule "
        f"`equalized_odds_difference <= 0.10`: the point estimate fails {point / datasets:.1%} of "
        f"{datasets} datasets, the detect test {tested / datasets:.1%}."
    )


def sizes() -> str:
    lines = [
        "Samples per group at which a gap rule on accuracy becomes testable (accuracy about 0.90; detect: a true "
        "gap of twice the tolerance is found with 80 % probability; demonstrate: equal groups are shown within "
        "the tolerance with 80 % probability), by the number of groups:",
        "",
        "| tolerance | mode | 2 groups | 5 groups | 10 groups |",
        "|---:|---|---:|---:|---:|",
    ]
    for tol in (0.02, 0.05, 0.10):
        for mode in ("detect", "demonstrate"):
            cells = []
            for g in (2, 5, 10):
                groups = [{"value": f"g{i}", "n": 100, "confusion": [[90, 10], [0, 0]]} for i in range(g)]
                items = gaptests.estimates(groups, "accuracy", min_group_size=1)
                (r,) = gaptests.decide_targets([items], kind="gap", tolerance=tol, mode=mode)
                cells.append(f"{r.samples_needed:,}" if r.samples_needed else "—")
            lines.append(f"| {tol} | {mode} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "These are the rule's own normal approximation at a pooled accuracy of 0.90 (what `samples_needed` "
        "reports). Exactly, for two groups at 0.85 and 0.95 and `max: 0.05`, the power is at least 80 % from "
        f"{_gap_stays(0.85, 0.95, 0.05, 380, 700):,} per group on (checked to 700; at 446: {exact_claims.gap_power(446, 0.85, 0.95, 0.05):.1%}); "
        f"at 0.80 and 0.90 (pooled 0.85) only from {_gap_stays(0.80, 0.90, 0.05, 500, 800):,} "
        f"(checked to 800; at 446: {exact_claims.gap_power(446, 0.80, 0.90, 0.05):.1%}).",
        "",
        "Images for an accuracy bound `judge: ci_lower, min: t` (Wilson) to pass a model whose accuracy is t + 0.05 "
        "with at least 80 % probability at every size from there on (checked up to 2,000; exact, over the binomial "
        "distribution). The power of a discrete test zigzags: the first size that reaches 80 % is smaller, and "
        "some sizes above it fall below again.",
        "",
        "| t | images (80 % from here on) | first size at 80 % |",
        "|---:|---:|---:|",
    ]
    for t in (0.70, 0.80, 0.90, 0.94):
        first, stay = exact_claims.stays_above(lambda n, t=t: exact_claims.bound_power(n, t, t + 0.05), 20, 2000)
        lines.append(f"| {t:.2f} | {stay:,} | {first:,} |")
    return "\n".join(lines)


def _gap_stays(p1: float, p2: float, tolerance: float, start: int, horizon: int) -> int:
    """The group size from which the exact two-group detect power stays at 80 % or more (up to ``horizon``)."""
    return exact_claims.stays_above(lambda n: exact_claims.gap_power(n, p1, p2, tolerance), start, horizon)[1]


def sequential(datasets: int, threshold: float = 0.8, n_max: int = 10_000, batch: int = 128) -> str:
    rng = np.random.default_rng(0)
    wilson_every_50 = anytime = 0
    for _ in range(datasets):
        x = rng.random(n_max) < threshold
        k = np.cumsum(x)
        if any(wilson(int(k[n - 1]), n)[0] >= threshold for n in range(50, n_max + 1, 50)):
            wilson_every_50 += 1
        passed = False
        for n in range(batch, n_max + 1, batch):
            side = decide(int(k[n - 1]), n, threshold, alpha=0.025)
            if side is not None:
                passed = side == "above" and wilson(int(k[n - 1]), n)[0] >= threshold
                break
        else:
            passed = wilson(int(k[-1]), n_max)[0] >= threshold  # undecided: judged on all the data
        anytime += passed
    early, fixed = exact_claims.sequential_false_pass(threshold, n_max=n_max, batch=batch)
    lines = [
        f"Accuracy exactly at the threshold {threshold} (a `judge: ci_lower` rule, {datasets} runs of up to "
        f"{n_max:,} samples): false passes when the 95 % Wilson lower bound is re-checked every 50 samples: "
        f"{wilson_every_50 / datasets:.1%}; cvaudit's early stop (anytime-valid test after every batch of {batch}, "
        f"α = 0.025 per side, then the fixed-n rule on all the data when undecided): {anytime / datasets:.1%}. "
        f"Exact (dynamic programming over the count, `benchmarks/exact_claims.py sequential`): early stop "
        f"{early:.2%} against {fixed:.2%} for the fixed-n rule on all {n_max:,} samples — early stopping adds "
        f"about {100 * (early - fixed):.1f} points of false passes at the threshold; the nominal one-sided level is 2.5 %.",
        "",
        "| true accuracy | decided | median samples | 90th percentile | share of 10,000 (median) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for p in (threshold + 0.05, threshold - 0.05, threshold + 0.02):
        used, decided = [], 0
        for _ in range(max(datasets // 4, 1)):
            x = rng.random(n_max) < p
            k = np.cumsum(x)
            stop = n_max
            for n in range(batch, n_max + 1, batch):
                if decide(int(k[n - 1]), n, threshold, alpha=0.025) is not None:
                    stop, decided = n, decided + 1
                    break
            used.append(stop)
        lines.append(
            f"| {p:.2f} | {decided / len(used):.0%} | {np.median(used):,.0f} | {np.quantile(used, 0.9):,.0f} | "
            f"{np.median(used) / n_max:.1%} |"
        )
    return "\n".join(lines)


#: The page whose ``<!-- statistics:<name>:start/end -->`` blocks hold the tables.
STATISTICS_PAGE = ROOT / "docs" / "statistics.md"


def _write(page: Path, name: str, text: str) -> None:
    start, end = f"<!-- statistics:{name}:start -->", f"<!-- statistics:{name}:end -->"
    content = page.read_text(encoding="utf-8")
    if start not in content or end not in content:
        raise SystemExit(f"{page}: no block {start} ... {end}")
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    page.write_text(f"{head}{start}\n{text}\n{end}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", choices=["intervals", "bootstrap", "gaps", "sizes", "sequential", "all"])
    parser.add_argument("--datasets", type=int, default=None, help="datasets per cell (default per section)")
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument(
        "--write-docs",
        "--write-readme",
        dest="write_docs",
        action="store_true",
        help="replace the blocks of docs/statistics.md",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    chosen = ["intervals", "bootstrap", "gaps", "sizes", "sequential"] if args.section == "all" else [args.section]
    for section in chosen:
        started = time.perf_counter()
        if section == "intervals":
            blocks = {"intervals": intervals(args.datasets or 1000, args.replicates)}
        elif section == "bootstrap":
            cov, passes = bootstrap(args.datasets or 400, args.replicates)
            blocks = {"bootstrap": cov, "calibration": passes}
        elif section == "gaps":
            blocks = {"gaps": gaps(args.datasets or 1000)}
        elif section == "sizes":
            blocks = {"sizes": sizes()}
        else:
            blocks = {"sequential": sequential(args.datasets or 2000)}
        for name, text in blocks.items():
            print(f"### {name}\n\n{text}\n", flush=True)
            if args.write_docs:
                _write(STATISTICS_PAGE, name, text)
        print(f"({section}: {time.perf_counter() - started:.0f} s)\n", flush=True)


if __name__ == "__main__":
    main()
