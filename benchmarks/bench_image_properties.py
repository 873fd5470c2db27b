"""Cost of image_properties.csv (issue 29): the demo's streaming pass with and without the image properties.

Run from the repository root::

    .venv/bin/python benchmarks/bench_image_properties.py [--repeats 5] [--stressors]

It builds the demo workspace (``audit.demo.prepare_demo``: 600 PNG digits, the shipped CNN) in a temporary folder,
reads its config as ``cvaudit run`` does, and times :func:`audit.evaluation.evaluate.evaluate` (the one streaming
pass) in CPU time (``time.process_time``, one torch thread, no DataLoader worker: every computation in the main
thread, so the numbers hold on a shared machine, where wall times do not) alternating with ``properties_path`` set (properties computed on every clean batch and written to a part file)
and unset, after one warm-up of each; clean only, or with ``--stressors`` the demo's photometric stressors (its
attacks left out). It reports the share of the pass's CPU time spent in ``PropertyRecorder.add`` (the properties of a batch) in
the same runs, and times :func:`audit.evaluation.image_properties.pixel_properties` alone on CPU batches
of 128 images at 32x32 and 224x224. It prints a Markdown table of medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _pass(ctx: dict, properties: Path | None) -> float:
    from audit.evaluation.data import AuditDataset
    from audit.evaluation.evaluate import EvalSettings, evaluate

    cfg, table = ctx["cfg"], ctx["table"]
    settings = EvalSettings(
        seed=0,
        batch_size=cfg.batch_size,
        num_workers=0,
        num_classes=10,
        n_bootstrap=cfg.evaluation.n_bootstrap,
        top_k=None,
        on_bad_image="error",
        gallery_mode="none",
        attack_indices=None,
        interval="wilson",
        monitor=None,
    )
    start = time.process_time()
    evaluate(
        model=ctx["model"],
        table=table,
        dataset=AuditDataset(table, cfg.model),
        conditions=ctx["conditions"],
        slots=ctx["slots"],
        keys=ctx["keys"],
        num_slots=ctx["num_slots"],
        settings=settings,
        device=torch.device("cpu"),
        predictions_path=ctx["work"] / "predictions.part-00000.csv",
        properties_path=properties,
    )
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stressors", action="store_true", help="the demo's photometric stressors too")
    args = parser.parse_args()
    torch.set_num_threads(1)  # every computation in this process's main thread: CPU times add up
    from audit.contract.config import load_config
    from audit.demo import prepare_demo
    from audit.evaluation import build_conditions, build_layout, load_model, read_samples, sample_keys_of, slot_matrix
    from audit.evaluation.image_properties import pixel_properties

    with tempfile.TemporaryDirectory() as tmp:
        config = prepare_demo(Path(tmp) / "demo", sign=False, log=lambda _: None)
        cfg = load_config(config)
        stressors = [s for s in cfg.stressors if s.name not in ("pgd", "fgsm")] if args.stressors else []
        table = read_samples(cfg.data, class_names=cfg.model.class_names)
        layout = build_layout(table, [list(i) for i in cfg.data.intersections])
        model, _ = load_model(cfg.model, torch.device("cpu"), base_dir=config.parent)
        work = Path(tmp) / "work"
        work.mkdir()
        ctx = {
            "cfg": cfg,
            "table": table,
            "model": model,
            "conditions": build_conditions(stressors, source="demo"),
            "slots": slot_matrix(table, layout),
            "keys": sample_keys_of(table),
            "num_slots": layout.num_slots,
            "work": work,
        }
        props = work / "image_properties.part-00000.csv"
        from audit.evaluation import image_properties

        inside: list[float] = []
        add = image_properties.PropertyRecorder.add

        def timed_add(self, *a):
            start = time.process_time()
            add(self, *a)
            inside.append(time.process_time() - start)

        image_properties.PropertyRecorder.add = timed_add
        _pass(ctx, None), _pass(ctx, props)  # warm-up
        off, on, share = [], [], []
        for _ in range(args.repeats):
            off.append(_pass(ctx, None))
            inside.clear()
            on.append(_pass(ctx, props))
            share.append(sum(inside) / on[-1])
        micro = {}
        for size in (32, 224):
            x = torch.rand(128, 3, size, size)
            pixel_properties(x)
            t = []
            for _ in range(5):
                start = time.process_time()
                pixel_properties(x)
                t.append(time.process_time() - start)
            micro[size] = statistics.median(t) / 128 * 1e6
    a, b = statistics.median(off), statistics.median(on)
    print(f"torch threads: {torch.get_num_threads()}, images: {len(table)}, conditions: {len(ctx['conditions'])}")
    print("| streaming pass (CPU time, 1 torch thread) | median s | ratio |")
    print("|---|---|---|")
    print(f"| without properties | {a:.3f} | 1.00 |")
    print(f"| with properties | {b:.3f} | {b / a:.3f} |")
    print(f"| share of the pass inside PropertyRecorder.add | {statistics.median(share):.1%} | |")
    print()
    print("| pixel_properties, batch of 128 | µs per image |")
    print("|---|---|")
    for size, us in micro.items():
        print(f"| {size}x{size} | {us:.1f} |")


if __name__ == "__main__":
    main()
