"""The slice search measured by simulation (docs/slices.md, benchmarks/README.md), through cvaudit's own code.

    PYTHONPATH=. python benchmarks/bench_slices.py all --runs 200
    PYTHONPATH=. python benchmarks/bench_slices.py time

An oracle model whose errors are planted: every sample is classified correctly with a probability set by
the scenario, independently. Attributes: 8 categorical manifest attributes with 2, 3, 4, 5, 5, 6, 8 and
``k7`` values, uniform and independent; image properties: 8 uniform numbers (``brightness`` ...).

- ``null``: accuracy ``base`` everywhere: the share of runs that report any slice (the family-wise error);
- ``planted``: the slice ``a4 = 0 AND a7 = 0`` (``n / (5 k7)`` images) has accuracy ``base - 0.10``: the share of
  runs whose report has that exact definition;
- ``property``: the darkest 5 % (lowest ``brightness``) have accuracy ``base - 0.10``: the share of runs whose
  first slice has a predicate on ``brightness``;
- ``time``: ``cvaudit slices`` on a run folder of 100 000 clean predictions (read + search + slices.csv),
  8 manifest attributes, with and without image_properties.csv.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from audit.evaluation.slices.search import SEARCH_METRICS, SearchSettings, columns_from_table, search

ACC = SEARCH_METRICS["accuracy"]
PLANTED = "a4 = 0 AND a7 = 0"
PROPERTIES = ("brightness", "contrast", "sharpness", "colourfulness", "saturation", "aspect_ratio", "width", "height")


def make(
    n: int, rng: np.random.Generator, *, base: float, planted: str, k7: int = 10, properties: bool = False
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, bool]]:
    """One simulated run: attribute columns, per-sample errors (1 = wrong), which columns are numeric."""
    ks = [2, 3, 4, 5, 5, 6, 8, k7]
    table: dict[str, np.ndarray] = {f"a{j}": rng.integers(0, k, n).astype(str) for j, k in enumerate(ks)}
    if properties:
        for name in PROPERTIES:
            table[name] = rng.random(n)
    accuracy = np.full(n, base)
    if planted == "slice":
        accuracy[(table["a4"] == "0") & (table["a7"] == "0")] = base - 0.10
    elif planted == "property":
        accuracy[table["brightness"] < np.quantile(table["brightness"], 0.05)] = base - 0.10
    bad = (rng.random(n) >= accuracy).astype(float)
    return table, bad, {name: name in PROPERTIES for name in table}


def rate(scenario: str, *, runs: int, n: int, base: float, k7: int = 10, seed: int = 0, **settings: object) -> float:
    """The share of ``runs`` simulated runs where the scenario's event happens (module docstring)."""
    rng = np.random.default_rng(seed)
    hits = 0
    properties = scenario == "property"
    planted = {"null": "none", "planted": "slice", "property": "property"}[scenario]
    for r in range(runs):
        table, bad, numeric = make(n, rng, base=base, planted=planted, k7=k7, properties=properties)
        config = SearchSettings(seed=r, **settings)  # type: ignore[arg-type]
        found = search(columns_from_table(table, numeric, config), bad, ACC, config).findings
        if scenario == "null":
            hits += bool(found)
        elif scenario == "planted":
            hits += any(f.definition.text() == PLANTED for f in found)
        else:
            hits += bool(found) and "brightness" in found[0].definition.attributes
    return hits / runs


def error_table(runs: int) -> str:
    lines = [
        "| scenario | images | rest accuracy | planted slice | runs | share |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for n, base in ((10_000, 0.9), (10_000, 0.97), (2_000, 0.9)):
        share = rate("null", runs=runs, n=n, base=base, seed=1)
        lines.append(f"| null: any slice reported | {n:,} | {base} | none | {runs} | {share:.3f} |")
    for base in (0.9, 0.97):
        for k7, size in ((10, 200), (5, 400)):
            share = rate("planted", runs=runs, n=10_000, base=base, k7=k7, seed=2)
            lines.append(
                f"| planted: right definition | 10,000 | {base} | {PLANTED} (~{size} images, -0.10) | {runs} "
                f"| {share:.3f} |"
            )
    for base in (0.9, 0.97):
        share = rate("property", runs=runs, n=10_000, base=base, seed=3)
        lines.append(
            f"| property: first slice on brightness | 10,000 | {base} | darkest 5 % (500 images, -0.10) | {runs} "
            f"| {share:.3f} |"
        )
    return "\n".join(lines)


def _write_run(folder: Path, n: int, *, properties: bool) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from results_builder import complete_results

    from audit.contract import csvfile
    from audit.contract.predictions import PREDICTIONS_COLUMNS

    rng = np.random.default_rng(0)
    table, bad, _ = make(n, rng, base=0.9, planted="slice", properties=properties)
    names = [f"a{j}" for j in range(8)]
    results = complete_results({"task": "classification", "dataset": {"attributes": {a: {} for a in names}}})
    (folder / "results.json").write_text(json.dumps(results), encoding="utf-8")
    out = io.StringIO()
    w = csvfile.writer(out, lineterminator="\r\n")
    w.writerow([*PREDICTIONS_COLUMNS, *names])
    columns = [table[a] for a in names]
    for i in range(n):
        w.writerow(
            [
                f"img{i}.png",
                "clean",
                "",
                "",
                0,
                int(bad[i]),
                0.9,
                0.2 if bad[i] else 0.9,
                0.83,
                *(c[i] for c in columns),
            ]
        )
    (folder / "predictions.csv").write_text(out.getvalue(), encoding="utf-8", newline="")
    if properties:
        props = io.StringIO()
        pw = csvfile.writer(props)
        pw.writerow(["id", *PROPERTIES])
        values = [table[p] for p in PROPERTIES]
        for i in range(n):
            pw.writerow([f"img{i}.png", *(float(v[i]) for v in values)])
        (folder / "image_properties.csv").write_text(props.getvalue(), encoding="utf-8", newline="")


def time_table(n: int = 100_000) -> str:
    from click.testing import CliRunner

    from audit.cli import main

    lines = ["| predictions | attributes | depth | `cvaudit slices` (s) | slices found |", "|---:|---|---:|---:|---:|"]
    for properties in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            _write_run(folder, n, properties=properties)
            start = time.perf_counter()
            result = CliRunner().invoke(main, ["slices", str(folder)])
            elapsed = time.perf_counter() - start
            if result.exit_code != 0:
                raise SystemExit(result.output)
            found = len((folder / "slices.csv").read_text(encoding="utf-8").splitlines()) - 1
            what = "8 manifest + 8 properties" if properties else "8 manifest"
            lines.append(f"| {n:,} | {what} | 3 | {elapsed:.1f} | {found} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["all", "errors", "time"])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    if args.what in ("all", "errors"):
        print(error_table(args.runs), flush=True)
    if args.what in ("all", "time"):
        print(time_table(), flush=True)


if __name__ == "__main__":
    main()
