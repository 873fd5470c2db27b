"""Peak memory of AuditStats versus the number of images (it should not grow).

Feeds synthetic predictions (10 classes, 20 slots: overall + a 4-valued and a
3-valued attribute + their 12-valued intersection, 200 bootstrap replicates)
in batches of 512, each size in a fresh subprocess so that peak RSS
(``resource.getrusage(...).ru_maxrss``) is measured per size.

Run from the repository root:

    PYTHONPATH=. python benchmarks/bench_memory.py            # 10k and 100k
    PYTHONPATH=. python benchmarks/bench_memory.py --sizes 10000 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

K, SLOTS, BATCH = 10, 20, 512


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(n_images: int) -> dict:
    """Feed ``n_images`` predictions and report peak RSS before and after."""
    import torch

    from audit.evaluation.metrics import AuditStats

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    metric = AuditStats(num_classes=K, num_slots=SLOTS, n_bootstrap=200)
    state_mib = sum(t.numel() * t.element_size() for t in metric.metric_state.values()) / 2**20

    def batch(start: int, size: int):
        probs = torch.softmax(torch.randn(size, K, generator=g) * 2, dim=1)
        labels = torch.randint(0, K, (size,), generator=g)
        a, b = torch.randint(0, 4, (size,), generator=g), torch.randint(0, 3, (size,), generator=g)
        slots = torch.stack([torch.zeros(size, dtype=torch.long), 1 + a, 5 + b, 8 + a * 3 + b], dim=1)
        return probs, labels, slots, torch.arange(start, start + size)

    metric.update(*batch(0, BATCH))  # warm-up: allocator and kernels
    after_first = _rss_mib()
    t0 = time.perf_counter()
    for start in range(BATCH, n_images, BATCH):
        metric.update(*batch(start, min(BATCH, n_images - start)))
    seconds = time.perf_counter() - t0
    result = metric.compute()
    assert result[0]["n"] == n_images
    return {
        "n_images": n_images,
        "state_mib": round(state_mib, 2),
        "rss_after_first_batch_mib": round(after_first, 1),
        "peak_rss_mib": round(_rss_mib(), 1),
        "seconds": round(seconds, 2),
        "images_per_s": round((n_images - BATCH) / seconds) if seconds else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child)))
        return
    print("| images | state (MiB) | RSS after 1st batch (MiB) | peak RSS (MiB) | update time (s) | images/s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--child", str(n)], check=True, capture_output=True, text=True)
        r = json.loads(out.stdout)
        print(
            f"| {r['n_images']:,} | {r['state_mib']} | {r['rss_after_first_batch_mib']} | {r['peak_rss_mib']} "
            f"| {r['seconds']} | {r['images_per_s']:,} |"
        )


if __name__ == "__main__":
    main()
