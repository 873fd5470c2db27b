"""Coverage of the per-object survival intervals of detectors, simulated with known truth.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/bench_object_survival_coverage.py
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/bench_object_survival_coverage.py --datasets 200 --sizes 50 200

Everything goes through cvaudit's own code (:mod:`audit.evaluation.detection.object_breaking`:
:func:`derive_object` for each object's state, :func:`survival_entries` for the Kaplan-Meier curves and
their cluster-bootstrap intervals). It prints a Markdown table: per number of images, the coverage of
the 95 % intervals of S at each of the three levels, over all objects, over an object subgroup
(``small``) and an image subgroup (``camera=B``), plus a naive bootstrap that resamples objects instead
of images for contrast (same percentile interval, same Kaplan-Meier replicates).

The simulated detector (``SCENE``): image ``i`` holds ``1 + Poisson(objects - 1)`` objects and has a
latent robustness ``z_i ~ N(0, image_sd²)`` (a dark or blurred image loses many of its objects at
once: objects are clustered by image); camera B (a ``camera_b`` share of the images) shifts it by
``camera_shift``. Object ``j`` is ``small`` with probability ``small`` (shift ``small_shift``) and has
``T_ij = z_i + shifts + e_ij``, ``e_ij ~ N(0, 1)``; it is found at level ``k`` while ``T_ij >= c_k``
(``cuts``), so it breaks at the first level whose cut is above ``T_ij``. Independently it is missed on
clean with probability ``missed`` (excluded) and removed by ``min_visibility`` at level ``k`` with
probability ``drop[k]`` (censored: independent censoring, so Kaplan-Meier is consistent). The truth:
S(k) = P(T >= c_k), a normal probability over the mixture of shifts.
"""

from __future__ import annotations

import argparse
import sys
import time
from statistics import NormalDist

import numpy as np

from audit.evaluation.breaking_points import Track
from audit.evaluation.detection.object_breaking import ObjectBreak, ObjectInfo, derive_object, survival_entries
from audit.evaluation.detection.statistics import percentile_interval

SCENE = {
    "objects": 3.0,
    "image_sd": 1.0,
    "camera_b": 0.3,
    "camera_shift": -0.7,
    "small": 0.35,
    "small_shift": -0.5,
    "missed": 0.1,
}
CUTS = (-1.0, -0.3, 0.4)
DROP = (0.03, 0.06, 0.12)
TRACK = Track("zoom", "zoom", "severity", (1.0, 2.0, 3.0), ("zoom@1", "zoom@2", "zoom@3"))
GROUPINGS = [("object.size", "object"), ("camera", "image")]
TARGETS = {"all": None, "small": ("object.size", "small"), "camera=B": ("camera", "B")}


def truth(scene: dict[str, float] = SCENE) -> dict[str, list[float]]:
    """True S per level: all objects, small objects, objects of camera B."""
    sd = (scene["image_sd"] ** 2 + 1.0) ** 0.5
    normal = NormalDist()

    def surv(shift: float, cut: float) -> float:
        return 1.0 - normal.cdf((cut - shift) / sd)

    def mix(cut: float, cam: list[tuple[float, float]], size: list[tuple[float, float]]) -> float:
        return sum(pc * ps * surv(sc + ss, cut) for pc, sc in cam for ps, ss in size)

    cams = [(1 - scene["camera_b"], 0.0), (scene["camera_b"], scene["camera_shift"])]
    sizes = [(1 - scene["small"], 0.0), (scene["small"], scene["small_shift"])]
    # objects per image do not depend on the camera, so the object mixture weights are the image ones
    return {
        "all": [mix(c, cams, sizes) for c in CUTS],
        "small": [mix(c, cams, [(1.0, scene["small_shift"])]) for c in CUTS],
        "camera=B": [mix(c, [(1.0, scene["camera_shift"])], sizes) for c in CUTS],
    }


def simulate(rng: np.random.Generator, n_images: int, scene: dict[str, float] = SCENE) -> list[ObjectBreak]:
    """One dataset's object states under TRACK."""
    out = []
    for i in range(n_images):
        camera = "B" if rng.random() < scene["camera_b"] else "A"
        z = rng.normal(0.0, scene["image_sd"]) + (scene["camera_shift"] if camera == "B" else 0.0)
        for j in range(1 + int(rng.poisson(scene["objects"] - 1))):
            small = rng.random() < scene["small"]
            t = z + (scene["small_shift"] if small else 0.0) + rng.normal()
            outcome = {"clean": (True, bool(rng.random() >= scene["missed"]))}
            for cid, cut, drop in zip(TRACK.conditions, CUTS, DROP):
                outcome[cid] = (bool(rng.random() >= drop), bool(t >= cut))
            state = derive_object(outcome, TRACK)
            assert state is not None
            info = ObjectInfo(i, j, f"s{i}", i, {"object.size": "small" if small else "large", "camera": camera})
            out.append(ObjectBreak(info, TRACK, *state))
    return out


def naive_intervals(rng: np.random.Generator, breaks: list[ObjectBreak], members: list[int], replicates: int) -> list:
    """Percentile intervals of S from resampling the group's objects (ignores the images)."""
    from audit.evaluation.detection.object_breaking import _level_counts, kaplan_meier

    ok = [breaks[k] for k in members if breaks[k].state != "missed_on_clean"]
    risk = np.array([_level_counts(b)[0] for b in ok])
    lost = np.array([_level_counts(b)[1] for b in ok])
    idx = rng.integers(0, len(ok), size=(replicates, len(ok)))
    curves = kaplan_meier(risk[idx].sum(axis=1), lost[idx].sum(axis=1))
    return [percentile_interval(curves[:, k]) for k in range(len(CUTS))]


def coverage(n_images: int, datasets: int, replicates: int, seed: int) -> dict[str, np.ndarray]:
    """Share of datasets whose interval covers the truth: target (and ``naive all``) -> per level."""
    true = truth()
    rng = np.random.default_rng(seed)
    hits = {name: np.zeros(len(CUTS)) for name in [*TARGETS, "naive all"]}
    for d in range(datasets):
        breaks = simulate(rng, n_images)
        entries, _ = survival_entries(
            breaks, TRACK, GROUPINGS, min_group_size=1, n_bootstrap=replicates, seed=seed * 100_000 + d
        )
        by_id = {(e.attribute, e.value): e for e in entries}
        for name, key in TARGETS.items():
            entry = by_id[(None, None) if key is None else key]
            for k, point in enumerate(entry.survival):
                ci = point.surviving_ci
                hits[name][k] += ci is not None and ci[0] <= true[name][k] <= ci[1]
        for k, ci in enumerate(naive_intervals(rng, breaks, list(range(len(breaks))), replicates)):
            hits["naive all"][k] += ci is not None and ci[0] <= true["all"][k] <= ci[1]
    return {name: h / datasets for name, h in hits.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=1000, help="simulated datasets per size")
    parser.add_argument("--replicates", type=int, default=1000, help="bootstrap replicates")
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000], help="images per dataset")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    true = truth()
    print("true S:", {k: [round(v, 3) for v in vals] for k, vals in true.items()})
    print("| images | target | interval | S(1) | S(2) | S(3) |")
    print("| ---: | --- | --- | ---: | ---: | ---: |")
    for n in args.sizes:
        start = time.perf_counter()
        cov = coverage(n, args.datasets, args.replicates, args.seed + n)
        for name, values in cov.items():
            kind = "naive bootstrap (objects)" if name.startswith("naive") else "cluster bootstrap (images)"
            target = name.removeprefix("naive ")
            print(f"| {n} | {target} | {kind} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
        print(f"<!-- {n} images: {time.perf_counter() - start:.0f} s -->", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
