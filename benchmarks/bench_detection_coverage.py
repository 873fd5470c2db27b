"""Coverage of the detection intervals and error rates of the recall gap tests, simulated with known truth.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/bench_detection_coverage.py all
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/bench_detection_coverage.py counts --datasets 2000

Everything goes through cvaudit's own code (:mod:`audit.evaluation.detection.statistics`). Sections
(each prints a Markdown table, the one in docs/statistics.md, "Detectors"):

- ``counts``: coverage and mean width of the 95 % cluster-bootstrap intervals of precision, recall,
  F1, false positives and missed objects per image, at 200 and 1000 images, plus a naive bootstrap
  that resamples objects and detections instead of images;
- ``gaps``: how often the Holm-corrected recall gap tests find a gap where none is (an image-level
  and an object-level attribute, three groups each, six pairs in one family), and how often they
  find a true gap of 0.10 in each;
- ``map``: coverage of the mAP and AP50 intervals (faster-coco-eval re-accumulated per replicate)
  against the mAP of a 20,000-image dataset from the same scene model;
- ``cost``: seconds for the mAP intervals of 500 images with 200 replicates, against one evaluation.

The simulated detector (per image ``i``; ``SCENES`` holds the parameters): ``N_i ~ Poisson(objects)`` objects, each found with the
image's probability ``p_i ~ Beta`` of mean ``recall`` and ``a + b = concentration`` (images differ:
a dark image loses many of its objects at once, so objects are clustered by image);
``FP_i ~ Poisson(m_i)`` false positives with ``m_i ~ Gamma`` of mean ``fp_mean`` and shape
``fp_shape``. The truth follows: recall ``= recall``, precision ``= objects * recall / (objects *
recall + fp_mean)``, ``fp_per_image = fp_mean``, ``missed_per_image = objects * (1 - recall)``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from audit.evaluation.detection.coco_metrics import CocoEvaluator, ImageDetections, ImageTruth, write_detections_json
from audit.evaluation.detection.operating_point import ObjectGroupCounts, OperatingPointCounts
from audit.evaluation.detection.statistics import (
    cluster_bootstrap_intervals,
    image_group_counts,
    map_bootstrap_intervals,
    map_bootstrap_replicates,
    percentile_interval,
    recall_gap_tests,
)

ROOT = Path(__file__).resolve().parents[1]
SIZES = (200, 1000)
METRICS = ("recall", "precision", "f1", "fp_per_image", "missed_per_image")
SCENE = {"objects": 6.0, "recall": 0.7, "concentration": 4.0, "fp_mean": 0.5, "fp_shape": 1.0}
#: The scenes of the ``counts`` table: ``crowded`` (the default SCENE) and ``sparse`` (2 objects per image,
#: recall 0.8 varying more between images, few false positives, very unevenly spread).
SCENES = {
    "crowded": SCENE,
    "sparse": {"objects": 2.0, "recall": 0.8, "concentration": 1.5, "fp_mean": 0.3, "fp_shape": 0.3},
}
GROUPS = ("a", "b", "c")


def truth(scene: dict[str, float] = SCENE) -> dict[str, float]:
    """The simulated detector's true rates."""
    lam, r, mu = scene["objects"], scene["recall"], scene["fp_mean"]
    return {
        "recall": r,
        "precision": lam * r / (lam * r + mu),
        "f1": 2 * lam * r / (2 * lam * r + mu + lam * (1 - r)),
        "fp_per_image": mu,
        "missed_per_image": lam * (1 - r),
    }


def simulate_counts(
    rng: np.random.Generator,
    n_images: int,
    *,
    scene: dict[str, float] = SCENE,
    camera_gap: float = 0.0,
    size_gap: float = 0.0,
) -> tuple[OperatingPointCounts, np.ndarray, ObjectGroupCounts]:
    """One simulated condition: its counts (one category), a camera per image, object sizes.

    ``camera_gap`` lowers the mean recall of camera ``c`` by that much (``p_i`` scaled), ``size_gap``
    the recall of size ``c`` objects; each image's camera and each object's size are uniform over
    ``a``, ``b``, ``c``.
    """
    r, k = scene["recall"], scene["concentration"]
    p = rng.beta(r * k, (1 - r) * k, n_images)
    camera = rng.choice(np.array(GROUPS), n_images)
    p = np.where(camera == "c", p * (r - camera_gap) / r, p)
    n = rng.poisson(scene["objects"], n_images)
    by_size = rng.multinomial(n, [1 / 3] * 3)  # objects per image and size (a, b, c)
    scale = np.array([1.0, 1.0, (r - size_gap) / r])
    found = rng.binomial(by_size, np.clip(p[:, None] * scale[None, :], 0.0, 1.0))
    fp = rng.poisson(rng.gamma(scene["fp_shape"], scene["fp_mean"] / scene["fp_shape"], n_images))
    tp = found.sum(axis=1)
    ids = tuple(range(1, n_images + 1))
    counts = OperatingPointCounts(ids, (1,), tp[:, None], fp[:, None], (n - tp)[:, None])
    sizes = ObjectGroupCounts(ids, GROUPS, found.astype(np.int64), by_size.astype(np.int64))
    return counts, camera, sizes


def naive_intervals(rng: np.random.Generator, counts: OperatingPointCounts, replicates: int) -> dict:
    """A bootstrap that ignores the images: every object and detection its own Poisson(1) weight.

    The sum of ``c`` independent Poisson(1) weights is Poisson(``c``), so an image's weighted TP,
    FP and FN are drawn as Poisson of its counts.
    """
    tp, fp, fn = (a.sum(axis=1) for a in (counts.tp, counts.fp, counts.fn))
    wtp, wfp, wfn = (rng.poisson(np.broadcast_to(c[:, None], (len(c), replicates))).sum(axis=0) for c in (tp, fp, fn))
    return {
        "recall": percentile_interval(wtp / np.maximum(wtp + wfn, 1)),
        "precision": percentile_interval(wtp / np.maximum(wtp + wfp, 1)),
    }


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def counts_table(datasets: int, replicates: int, seed: int = 0, scenes: tuple[str, ...] = tuple(SCENES)) -> str:
    """Coverage (and mean width) of the operating point's intervals, cluster and naive bootstrap."""
    lines = [
        f"Coverage of the true value by the 95 % intervals (mean width in brackets) over {datasets} simulated "
        f"datasets per scene and size, {replicates} replicates.",
        "",
        _row(["scene", "images", "interval", *METRICS]),
        _row(["---", "---:", "---", *(["---:"] * len(METRICS))]),
    ]
    for name in scenes:
        lines.extend(_counts_rows(name, datasets, replicates, seed))
    return "\n".join(lines)


def _counts_rows(scene_name: str, datasets: int, replicates: int, seed: int) -> list[str]:
    scene = SCENES[scene_name]
    true = truth(scene)
    lines = []
    for n in SIZES:
        rng = np.random.default_rng([seed, n] if scene_name == "crowded" else [seed, n, len(scene_name)])
        hits = {m: [] for m in METRICS}
        widths = {m: [] for m in METRICS}
        naive_hits = {m: [] for m in ("recall", "precision")}
        naive_widths = {m: [] for m in ("recall", "precision")}
        for d in range(datasets):
            counts, _, _ = simulate_counts(rng, n, scene=scene)
            keys = np.arange(n, dtype=np.int64)
            ci = cluster_bootstrap_intervals(counts, image_keys=keys, n_bootstrap=replicates, seed=d)
            for m in METRICS:
                hits[m].append(ci[m][0] <= true[m] <= ci[m][1])
                widths[m].append(ci[m][1] - ci[m][0])
            naive = naive_intervals(rng, counts, replicates)
            for m in naive:
                naive_hits[m].append(naive[m][0] <= true[m] <= naive[m][1])
                naive_widths[m].append(naive[m][1] - naive[m][0])
        cells = [f"{np.mean(hits[m]):.3f} ({np.mean(widths[m]):.3f})" for m in METRICS]
        lines.append(_row([scene_name, str(n), "cluster bootstrap (images)", *cells]))
        naive_cells = [
            f"{np.mean(naive_hits[m]):.3f} ({np.mean(naive_widths[m]):.3f})" if m in naive_hits else "—"
            for m in METRICS
        ]
        lines.append(_row([scene_name, str(n), "naive bootstrap (objects)", *naive_cells]))
    return lines


def gap_rates(n: int, datasets: int, *, camera_gap: float, size_gap: float, seed: int = 1, alpha: float = 0.05):
    """How often the Holm-corrected tests find a gap: any pair, the camera pairs, the size pairs."""
    rng = np.random.default_rng([seed, n, int(camera_gap * 100), int(size_gap * 100)])
    any_gap, camera_found, size_found = [], [], []
    for _ in range(datasets):
        counts, camera, sizes = simulate_counts(rng, n, camera_gap=camera_gap, size_gap=size_gap)
        result = recall_gap_tests(
            {"camera": image_group_counts(counts, camera, groups=GROUPS), "object.size": sizes}, min_group_size=30
        )
        found = {a.attribute: a.p_holm is not None and a.p_holm < alpha for a in result.attributes}
        any_gap.append(any(found.values()))
        camera_found.append(found["camera"])
        size_found.append(found["object.size"])
    return float(np.mean(any_gap)), float(np.mean(camera_found)), float(np.mean(size_found))


def gaps_table(datasets: int) -> str:
    """Type-I error (family-wise) under no gap, power at a true gap of 0.10."""
    lines = [
        f"Recall gap tests at α = 0.05, Holm over the 6 pairs of two attributes (camera: image-level, "
        f"object.size: object-level; 3 groups each), {datasets} simulated datasets per cell.",
        "",
        _row(["images", "true gaps", "any gap found (family-wise)", "camera gap found", "object.size gap found"]),
        _row(["---:", "---", "---:", "---:", "---:"]),
    ]
    for n in SIZES:
        for label, cam, size in (("none", 0.0, 0.0), ("camera c −0.10", 0.10, 0.0), ("object.size c −0.10", 0.0, 0.10)):
            rates = gap_rates(n, datasets, camera_gap=cam, size_gap=size)
            lines.append(_row([str(n), label, *(f"{r:.3f}" for r in rates)]))
    return "\n".join(lines)


WIDTH, HEIGHT = 640, 480


def simulate_scene(rng: np.random.Generator, n_images: int, n_categories: int = 2):
    """Boxes and scores for the mAP coverage: the counts model with boxes, ``n_categories`` categories.

    Each found object gets a box jittered by 2-12 % of its size (IoU spread over 0.5-0.95), score
    ``Beta(4, 2)`` shifted by the image's quality; misses have no detection; false positives are
    random boxes scoring ``Beta(2, 4)``.
    """
    truths, dets = [], []
    r, k = SCENE["recall"], SCENE["concentration"]
    for image_id in range(1, n_images + 1):
        p = rng.beta(r * k, (1 - r) * k)
        n = rng.poisson(SCENE["objects"])
        size = np.exp(rng.uniform(np.log(12), np.log(200), size=(n, 2)))
        xy = rng.uniform(0, 1, size=(n, 2)) * (np.array([WIDTH, HEIGHT]) - size)
        boxes = np.concatenate([xy, size], axis=1)
        cats = rng.integers(1, n_categories + 1, n)
        truths.append(ImageTruth(image_id, WIDTH, HEIGHT, boxes, cats))
        hit = rng.random(n) < p
        jitter = rng.normal(0, rng.uniform(0.02, 0.12, (n, 1)), (n, 4)) * np.c_[size, size]
        x1y1 = boxes[:, :2] + jitter[:, :2]
        x2y2 = boxes[:, :2] + boxes[:, 2:] + jitter[:, 2:]
        det_boxes = np.c_[np.minimum(x1y1, x2y2), np.maximum(x1y1, x2y2)][hit]
        det_scores = np.clip(rng.beta(4, 2, n) + 0.2 * (p - r), 0, 1)[hit]
        n_fp = rng.poisson(rng.gamma(SCENE["fp_shape"], SCENE["fp_mean"] / SCENE["fp_shape"]))
        fxy = rng.uniform(0, 1, (n_fp, 2)) * [WIDTH - 20, HEIGHT - 20]
        fwh = rng.uniform(10, 150, (n_fp, 2))
        dets.append(
            ImageDetections(
                image_id,
                np.r_[det_boxes, np.c_[fxy, fxy + fwh]],
                np.r_[det_scores, rng.beta(2, 4, n_fp)],
                np.r_[cats[hit], rng.integers(1, n_categories + 1, n_fp)],
            )
        )
    return truths, dets


def _evaluator_and_file(truths, dets, path: Path, n_categories: int = 2) -> CocoEvaluator:
    categories = {c: f"class {c}" for c in range(1, n_categories + 1)}
    evaluator = CocoEvaluator(truths=truths, categories=categories)
    write_detections_json(path, dets, image_ids=evaluator.image_ids, categories=categories)
    return evaluator


def map_table(datasets: int, replicates: int, sizes: tuple[int, ...] = (200,), truth_images: int = 20_000) -> str:
    """Coverage of the mAP and AP50 intervals against a large dataset's values.

    Per size: the percentile interval's coverage (mean width) for mAP and AP50, the coverage of
    mAP's percentile interval moved by the bootstrap bias, the mean estimate and the mean
    bootstrap bias (replicates' mean minus the estimate).
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "detections.json"
        big_t, big_d = simulate_scene(np.random.default_rng(99), truth_images)
        big = _evaluator_and_file(big_t, big_d, path).evaluate(path)
        true = {"map": big.map, "ap50": big.ap50}
        lines = [
            f"Coverage of mAP and AP50 (true values {true['map']:.4f} and {true['ap50']:.4f}: one dataset of "
            f"{truth_images:,} images from the same model) by the 95 % intervals, {datasets} datasets per size, "
            f"{replicates} replicates; mean width in brackets; seconds per interval (evaluation and replicates).",
            "",
            _row(["images", "mAP", "mAP, bias-corrected", "AP50", "mean mAP", "mean bootstrap bias", "s / interval"]),
            _row(["---:"] * 7),
        ]
        for n in sizes:
            rng = np.random.default_rng([7, n])
            hits: dict[str, list[bool]] = {"map": [], "ap50": [], "map_bc": []}
            widths: dict[str, list[float]] = {"map": [], "ap50": []}
            estimates, biases = [], []
            took = 0.0
            for d in range(datasets):
                truths, dets = simulate_scene(rng, n)
                evaluator = _evaluator_and_file(truths, dets, path)
                start = time.perf_counter()
                estimate = evaluator.evaluate(path)
                reps = map_bootstrap_replicates(
                    evaluator, path, image_keys=np.arange(n, dtype=np.int64), n_bootstrap=replicates, seed=d
                )
                took += time.perf_counter() - start
                for m in ("map", "ap50"):
                    low, high = percentile_interval(reps[m])
                    hits[m].append(low <= true[m] <= high)
                    widths[m].append(high - low)
                bias = float(np.nanmean(reps["map"])) - estimate.map
                low, high = percentile_interval(reps["map"])
                hits["map_bc"].append(low - bias <= true["map"] <= high - bias)
                estimates.append(estimate.map)
                biases.append(bias)
            lines.append(
                _row(
                    [
                        str(n),
                        f"{np.mean(hits['map']):.3f} ({np.mean(widths['map']):.3f})",
                        f"{np.mean(hits['map_bc']):.3f}",
                        f"{np.mean(hits['ap50']):.3f} ({np.mean(widths['ap50']):.3f})",
                        f"{np.mean(estimates):.4f} (sd {np.std(estimates):.4f})",
                        f"{np.mean(biases):+.4f}",
                        f"{took / datasets:.2f}",
                    ]
                )
            )
    return "\n".join(lines)


def cost_table(n_images: int = 500, replicates: int = 200) -> str:
    """Seconds for one COCO evaluation and for the mAP intervals of one condition."""
    import tempfile

    lines = [
        f"One condition of {n_images} images (6 objects per image on average), {replicates} replicates: seconds "
        "for one faster-coco-eval evaluation and for `map_bootstrap_intervals` (which evaluates once more, matches "
        "once and accumulates each replicate): the six metrics of area `all` (default) and all twelve "
        "(`sizes=True`); median of 3.",
        "",
        _row(["categories", "one evaluation (s)", "intervals (s)", "ratio", "with sizes (s)", "ratio"]),
        _row(["---:", "---:", "---:", "---:", "---:", "---:"]),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "detections.json"
        for k in (2, 20, 80):
            truths, dets = simulate_scene(np.random.default_rng(k), n_images, n_categories=k)
            evaluator = _evaluator_and_file(truths, dets, path, n_categories=k)
            times: dict[str, list[float]] = {"once": [], "all": [], "sizes": []}
            keys = np.arange(n_images, dtype=np.int64)
            for _ in range(3):
                start = time.perf_counter()
                evaluator.evaluate(path)
                times["once"].append(time.perf_counter() - start)
                for mode in ("all", "sizes"):
                    start = time.perf_counter()
                    map_bootstrap_intervals(
                        evaluator, path, image_keys=keys, n_bootstrap=replicates, seed=0, sizes=mode == "sizes"
                    )
                    times[mode].append(time.perf_counter() - start)
            once, full, sized = (float(np.median(times[m])) for m in ("once", "all", "sizes"))
            lines.append(
                _row(
                    [
                        str(k),
                        f"{once:.3f}",
                        f"{full:.2f}",
                        f"{full / once:.0f}x",
                        f"{sized:.2f}",
                        f"{sized / once:.0f}x",
                    ]
                )
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=("all", "counts", "gaps", "map", "cost"))
    parser.add_argument("--datasets", type=int, default=1000, help="simulated datasets per cell (counts, gaps)")
    parser.add_argument("--map-datasets", type=int, default=200, help="simulated datasets per size (map)")
    parser.add_argument("--replicates", type=int, default=1000, help="bootstrap replicates (counts)")
    parser.add_argument("--scenes", nargs="+", choices=tuple(SCENES), default=tuple(SCENES), help="scenes (counts)")
    parser.add_argument("--map-replicates", type=int, default=200, help="bootstrap replicates (map)")
    parser.add_argument("--map-sizes", type=int, nargs="+", default=[200], help="images per dataset (map)")
    args = parser.parse_args(argv)
    for name in ("counts", "gaps", "map", "cost"):
        if args.section not in ("all", name):
            continue
        start = time.perf_counter()
        if name == "counts":
            table = counts_table(args.datasets, args.replicates, scenes=tuple(args.scenes))
        elif name == "gaps":
            table = gaps_table(args.datasets)
        elif name == "map":
            table = map_table(args.map_datasets, args.map_replicates, sizes=tuple(args.map_sizes))
        else:
            table = cost_table()
        print(f"\n## {name} ({time.perf_counter() - start:.0f} s)\n\n{table}\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
