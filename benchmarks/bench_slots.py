"""Statistics update time and state memory against the number of group slots.

A slot is the whole dataset, or one value of an attribute or intersection; each batch adds
every image to one slot per grouping. The update adds into the persistent states with
``index_add_``, so its cost should follow the batch (images x groupings x replicates), not the
number of slots; the states themselves grow with slots x replicates.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_slots.py
    # the code before, with its own bootstrap weights, to compare:
    mkdir -p /tmp/before && git show <commit>:audit/evaluation/bootstrap.py > /tmp/before/bootstrap_before.py
    git show <commit>:audit/evaluation/metrics.py \
        | sed 's/^from audit.evaluation.bootstrap import/from bootstrap_before import/' > /tmp/before/metrics_before.py
    PYTHONPATH=. .venv/bin/python benchmarks/bench_slots.py --before /tmp/before/metrics_before.py

Each setting: 10 classes, batches of 128 float64 softmax rows, one torch thread, 5 warm-up
batches then the median of 30 timed ones (the Poisson weights of the batch are drawn once and
shared by every condition, so they are timed separately).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

from audit.evaluation.bootstrap import poisson_weights

# (slots, groupings): the demo's 9 (camera, ink, camera×ink); 359 (a 50-value site and its
# intersections with camera and ink); 2559 (four attributes and six intersections)
SETTINGS = ((9, 4), (359, 7), (2559, 11))
BATCH, CLASSES = 128, 10


def _slots(num_slots: int, groupings: int, g: torch.Generator) -> torch.Tensor:
    """(BATCH, groupings) slot indices: column 0 the overall slot, the others spread over the rest."""
    per = max((num_slots - 1) // (groupings - 1), 1)
    cols = [torch.zeros(BATCH, dtype=torch.long)]
    for j in range(groupings - 1):
        cols.append(1 + j * per + torch.randint(0, per, (BATCH,), generator=g))
    return torch.stack(cols, dim=1).clamp(max=num_slots - 1)


def _load(path: Path):
    sys.path.insert(0, str(path.parent))  # its own bootstrap module sits beside it
    spec = importlib.util.spec_from_file_location("metrics_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def measure(module, num_slots: int, groupings: int, replicates: int, *, shared_weights: bool) -> tuple[float, float]:
    """(median ms per batch update, MiB of state) for one AuditStats."""
    g = torch.Generator().manual_seed(0)
    stats = module.AuditStats(num_classes=CLASSES, num_slots=num_slots, n_bootstrap=replicates)
    mib = sum(t.numel() * t.element_size() for t in stats.metric_state.values()) / 2**20
    times = []
    for i in range(35):
        probs = torch.softmax(torch.randn(BATCH, CLASSES, generator=g, dtype=torch.float64) * 2, dim=1)
        labels = torch.randint(0, CLASSES, (BATCH,), generator=g)
        slots = _slots(num_slots, groupings, g)
        keys = torch.arange(i * BATCH, (i + 1) * BATCH)
        weights = poisson_weights(keys, replicates, seed=0) if shared_weights and replicates else None
        start = time.perf_counter()
        if weights is not None:
            stats.update(probs, labels, slots, keys, weights)
        else:
            stats.update(probs, labels, slots, keys)
        if i >= 5:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="an older audit/evaluation/metrics.py to compare with")
    parser.add_argument("--replicates", type=int, nargs="+", default=[200, 1000])
    args = parser.parse_args()
    torch.set_num_threads(1)
    from audit.evaluation import metrics

    before = _load(args.before) if args.before else None
    weights_ms = []
    for replicates in args.replicates:
        keys = torch.arange(BATCH)
        start = time.perf_counter()
        for _ in range(20):
            poisson_weights(keys, replicates, seed=0)
        weights_ms.append((replicates, 1000 * (time.perf_counter() - start) / 20))
    print("| slots | groupings | replicates | before: ms / batch | before: MiB | now: ms / batch | now: MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for replicates in args.replicates:
        for num_slots, groupings in SETTINGS:
            old = measure(before, num_slots, groupings, replicates, shared_weights=False) if before else None
            new = measure(metrics, num_slots, groupings, replicates, shared_weights=True)
            old_cells = f"{old[0]:.1f} | {old[1]:.1f}" if old else "— | —"
            print(
                f"| {num_slots:,} | {groupings} | {replicates} | {old_cells} | {new[0]:.1f} | {new[1]:.1f} |",
                flush=True,
            )
    print()
    for replicates, ms in weights_ms:
        print(f"Poisson weights of one batch of {BATCH}, {replicates} replicates: {ms:.1f} ms (once per batch)")


if __name__ == "__main__":
    main()
