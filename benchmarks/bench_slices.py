"""The slice search measured by simulation (docs/slices.md, benchmarks/README.md), through cvaudit's own code.

    PYTHONPATH=. python benchmarks/bench_slices.py all --runs 200
    PYTHONPATH=. python benchmarks/bench_slices.py time
    PYTHONPATH=. python benchmarks/bench_slices.py detection --runs 100

An oracle model whose errors are planted: every sample is classified correctly with a probability set by
the scenario, independently. Attributes: 8 categorical manifest attributes with 2, 3, 4, 5, 5, 6, 8 and
``k7`` values, uniform and independent; image properties: 8 uniform numbers (``brightness`` ...).

- ``null``: accuracy ``base`` everywhere: the share of runs that report any slice (the family-wise error);
- ``planted``: the slice ``a4 = 0 AND a7 = 0`` (``n / (5 k7)`` images) has accuracy ``base - 0.10``: the share of
  runs whose report has that exact definition;
- ``property``: the darkest 5 % (lowest ``brightness``) have accuracy ``base - 0.10``: the share of runs whose
  first slice has a predicate on ``brightness``;
- ``detection``: a detector's objects, clustered in images whose misses are correlated (module
  :func:`make_detection`): the share of runs that report any slice on null data, with cvaudit's cluster-robust
  test and, for contrast, with the same search treating the objects as independent (the classification test);
  and the share of runs that report the planted slice (small objects centred in the left fifth of the frame);
- ``oracle``: what a test that already knows the planted slice reaches, for the targets' context: its power on
  the confirmation half alone (at ``alpha``, and at ``alpha / max_confirm``, Holm's first step when the search
  keeps ``max_confirm`` slices) and on the whole run at Bonferroni's ``alpha / m`` over the ``m`` slices the
  search tests (``candidates``, counted on one simulated run);
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

from audit.evaluation.slices.search import (
    DETECTION_METRICS,
    SEARCH_METRICS,
    SearchSettings,
    columns_from_table,
    one_sided_p,
    search,
)

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


def oracle_table(runs: int) -> str:
    """The oracle rows (module docstring): the share of ``runs`` binomial draws in which the one-sided test of the
    search (:func:`~audit.evaluation.slices.search.one_sided_p`, tolerance 0) rejects for the planted slice."""
    settings = SearchSettings()
    rng = np.random.default_rng(4)
    lines = [
        "| rest accuracy | planted slice | confirmation half, alpha | confirmation half, alpha / 5 "
        "| whole run, alpha / m | m (slices tested) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for base in (0.9, 0.97):
        for k7, size in ((10, 200), (5, 400)):
            table, bad, numeric = make(10_000, rng, base=base, planted="slice", k7=k7)
            m = search(columns_from_table(table, numeric, settings), bad, ACC, settings).candidates
            shares = []
            for n_s, n_r, level in (
                (size // 2, (10_000 - size) // 2, settings.alpha),
                (size // 2, (10_000 - size) // 2, settings.alpha / settings.max_confirm),
                (size, 10_000 - size, settings.alpha / m),
            ):
                k_s = rng.binomial(n_s, 1.0 - (base - 0.10), runs).astype(float)
                k_r = rng.binomial(n_r, 1.0 - base, runs).astype(float)
                _, p = one_sided_p(k_s, np.full(runs, n_s), k_r, np.full(runs, n_r), tolerance=0.0, proportion=True)
                shares.append(float((p <= level).mean()))
            lines.append(
                f"| {base} | {PLANTED} (~{size} images, -0.10) | {shares[0]:.3f} | {shares[1]:.3f} | {shares[2]:.3f} "
                f"| {m:,} |"
            )
    return "\n".join(lines)


#: detection simulation: images, the image effect's standard deviation on the logit of a miss, the base logit
DET_IMAGES, DET_SIGMA, DET_BASE, DET_PLANT = 1_000, 1.0, -1.6, 1.5


def make_detection(
    rng: np.random.Generator,
    *,
    planted: bool,
    images: int = DET_IMAGES,
    sigma: float = DET_SIGMA,
    plant: float = DET_PLANT,
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, bool], np.ndarray]:
    """One simulated detection run: ``images`` images with 1 + Poisson(4) objects each; per object ``class`` (4
    values), ``size`` (small / medium / large: 40 / 35 / 25 %), ``object.occluded``, ``area_share``, ``center_x``,
    ``center_y``, ``center_distance``; per image ``camera`` (3) and ``site`` (4). An object is missed with
    probability ``logistic(DET_BASE + sigma u)``, ``u ~ N(0, 1)`` one per image (misses correlated within an
    image; about 21 % missed at sigma 1), plus ``plant`` on the logit for small objects with ``center_x < 0.2``
    when ``planted`` (about 8 % of the objects; at plant 1.5 missed about 50 %). Returns the columns, the misses, which columns are
    numeric, and each object's image."""
    counts = 1 + rng.poisson(4.0, images)
    image = np.repeat(np.arange(images), counts)
    n = len(image)
    u = rng.normal(0.0, 1.0, images)[image]
    table: dict[str, np.ndarray] = {
        "class": rng.integers(0, 4, n).astype(str),
        "size": rng.choice(np.array(["small", "medium", "large"]), n, p=[0.4, 0.35, 0.25]),
        "object.occluded": rng.choice(np.array(["true", "false"]), n),
        "area_share": rng.uniform(0.001, 0.3, n),
        "center_x": rng.random(n),
        "center_y": rng.random(n),
        "camera": rng.integers(0, 3, images).astype(str)[image],
        "site": rng.integers(0, 4, images).astype(str)[image],
    }
    table["center_distance"] = np.hypot(table["center_x"] - 0.5, table["center_y"] - 0.5) / np.sqrt(0.5)
    logit = DET_BASE + sigma * u
    if planted:
        logit = logit + plant * ((table["size"] == "small") & (table["center_x"] < 0.2))
    missed = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(float)
    numeric = {name: name in ("area_share", "center_x", "center_y", "center_distance") for name in table}
    return table, missed, numeric, image


def _planted_found(findings: list) -> bool:
    """A reported slice is the planted one: ``size = small`` and a ``center_x`` bound of at most 0.3."""
    for f in findings:
        preds = {p.attribute: p for p in f.definition.all}
        x = preds.get("center_x")
        size = preds.get("size")
        if size is not None and size.equals == "small" and x is not None and x.max is not None and x.max <= 0.3:
            return True
    return False


def detection_rate(
    scenario: str,
    *,
    runs: int,
    seed: int,
    independent: bool = False,
    sigma: float = DET_SIGMA,
    plant: float = DET_PLANT,
) -> float:
    """The share of ``runs`` simulated detection runs where the scenario's event happens (module docstring)."""
    rng = np.random.default_rng(seed)
    hits = 0
    for r in range(runs):
        table, missed, numeric, image = make_detection(rng, planted=scenario == "planted", sigma=sigma, plant=plant)
        config = SearchSettings(seed=r)
        columns = columns_from_table(table, numeric, config)
        if independent:  # the objects as independent samples: the classification test on the miss indicator
            found = search(columns, missed, SEARCH_METRICS["accuracy"], config).findings
        else:
            found = search(columns, missed, DETECTION_METRICS["recall"], config, clusters=image).findings
        hits += bool(found) if scenario == "null" else _planted_found(found)
    return hits / runs


def detection_table(runs: int) -> str:
    lines = [
        "| scenario | image effect σ | test | planted slice | runs | share |",
        "|---|---:|---|---|---:|---:|",
    ]
    for sigma in (1.0, 2.0):
        for independent in (False, True):
            test = "objects as independent (classification test)" if independent else "cluster-robust (cvaudit)"
            share = detection_rate("null", runs=runs, seed=11, independent=independent, sigma=sigma)
            lines.append(f"| null: any slice reported | {sigma} | {test} | none | {runs} | {share:.3f} |")
    for plant, what in ((1.5, "miss ~0.5 vs ~0.2"), (0.75, "miss ~0.34 vs ~0.2")):
        share = detection_rate("planted", runs=runs, seed=12, plant=plant)
        lines.append(
            f"| planted: size = small AND center_x < bound <= 0.3 reported | 1.0 | cluster-robust (cvaudit) "
            f"| small AND center_x < 0.2 (~8 % of objects, {what}) | {runs} | {share:.3f} |"
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
    parser.add_argument("what", choices=["all", "errors", "oracle", "time", "detection"])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help="detection, oracle: replace that table of docs/slices.md (between <!-- slices:NAME:start/end -->)",
    )
    args = parser.parse_args()
    if args.what in ("all", "errors"):
        print(error_table(args.runs), flush=True)
    if args.what in ("all", "oracle"):
        table = oracle_table(20_000)
        print(table, flush=True)
        if args.write_docs:
            _write_docs("oracle", table)
    if args.what in ("all", "time"):
        print(time_table(), flush=True)
    if args.what in ("all", "detection"):
        table = detection_table(args.runs)
        print(table, flush=True)
        if args.write_docs:
            _write_docs("detection", table)


def _write_docs(name: str, table: str) -> None:
    """Replace the block of docs/slices.md between ``<!-- slices:<name>:start -->`` and ``...:end -->``."""
    path = Path(__file__).resolve().parents[1] / "docs" / "slices.md"
    text = path.read_text(encoding="utf-8")
    start, end = f"<!-- slices:{name}:start -->", f"<!-- slices:{name}:end -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{table}\n{end}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()
