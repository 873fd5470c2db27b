"""Scale (issue 17, point 1): wall time, set-up time and peak memory of ``cvaudit run`` at 10k, 100k and 1M samples.

Run from the repository root::

    .venv/bin/python benchmarks/bench_scale.py --dir /tmp/cvaudit-scale --sizes 10000 100000 1000000 --bare-at 100000

The workspace (made once in ``--dir``, reused afterwards) holds ``--images`` distinct 32x32
PNG digits (scikit-learn's bundled ``load_digits``, upsampled as the demo does), the demo's
CNN architecture untrained (seed 0, TorchScript) and one manifest per size whose rows reuse
those images (row ``i`` reads image ``i mod --images``), so a million rows cost a 60 MB
manifest and no more image files. Every row has a unique ``sample_id``, a label, the demo's
attributes ``camera`` (A/B) and ``ink`` (thin/thick) and its governance columns with the
demo's pattern of violations. The audit is the demo's set-up at scale: clean + ``night@3`` +
``occlusion@3``, attributes ``camera``, ``ink`` and ``camera×ink``, 200 bootstrap replicates,
the ``demo`` policy (every governance check), HTML report only.

Each size runs ``cvaudit run`` as a child process (``--cvaudit``; put another revision's
source first with ``--src DIR`` to measure it with the same packages) and records:

- **wall**: process start to exit (imports, set-up, evaluation, outputs);
- **set-up**: process start until the evaluation opens its predictions file in the run's work
  folder (everything before the streaming pass: imports, config, policy, manifest, governance,
  groups, model, width probe), and **first batch**: until the first predictions rows reach the disk;
- **peak RSS, main**: the main process's ``ru_maxrss`` (``os.wait4``);
- **peak, whole tree**: the largest sum over the main process and its DataLoader workers of
  the proportional set size (PSS, ``/proc/PID/smaps_rollup``: pages shared by n processes
  count 1/n each, so the copy-on-write pages workers share with the main process are not
  counted twice), sampled every 0.1 s.

``--bare-at N`` also times a bare loop at size N in a child process: read the manifest's
paths with the csv module, decode each PNG with PIL into a float tensor in a DataLoader with
the same workers, batch size and torch threads as the audit used (read from the audit's
``provenance``), apply the same two stressors with the same per-sample parameters, normalise,
forward and softmax; nothing else. Its wall time includes its own start-up.
``--pairs K`` (with ``--bare-at N``) measures the audit against the bare loop K times at size N,
alternating which of the two runs first (this machine's speed drifts between minutes, so each
ratio is taken within one pair and the order cannot favour either side), and prints every pair
and the median and geometric mean of the ratios (with the alternation, the geometric mean cancels
a steady slow-down of the machine between the first and the second run of a pair);
``--pause S`` idles S seconds before each run. ``--bare-allocator system retain`` runs two bare
loops per round, one with glibc's defaults and one that calls the audit's
``apply_allocator("retain")`` after its imports (config ``allocator``; the audit's own setting is
read from its ``provenance``), so the audit's overhead is also measured against a bare loop that
gets the same allocator; the order of the three runs rotates from round to round.
``--first-batch-only`` stops each audit after its first batch (for revisions that would take
too long or too much memory at a million rows).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = 3000

CONFIG = """\
seed: 0
device: cpu
batch_size: 128
model:
  path: model.pt
  outputs: logits
  input_size: [32, 32]
  mean: [0.5, 0.5, 0.5]
  std: [0.25, 0.25, 0.25]
data:
  manifest: manifest-{n}.csv
  attributes: [camera, ink]
  intersections: [[camera, ink]]
  allow_duplicate_paths: true  # the rows reuse a few thousand rendered images
stressors:
  - {{name: night, severities: [3]}}
  - {{name: occlusion, fill: black, severities: [3]}}
policy: demo
report:
  formats: [html]
"""

GOVERNANCE_COLUMNS = ["capture_date", "consent", "region", "purpose", "lawful_basis"]


# ----------------------------------------------------------------------- workspace


def prepare(folder: Path, sizes: list[int], images: int) -> None:
    """Images, model and one manifest and config per size (kept when already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    img_dir = folder / "images"
    if not (folder / "labels.json").exists():
        import numpy as np
        import torch
        from PIL import Image
        from sklearn.datasets import load_digits

        from audit.demo import DigitsCNN

        digits = load_digits()
        img_dir.mkdir(exist_ok=True)
        labels = []
        for k in range(images):
            j = k % len(digits.images)
            gray = (digits.images[j] / 16.0 * 255).astype(np.uint8)
            img = Image.fromarray(gray).resize((32, 32), Image.Resampling.BILINEAR).convert("RGB")
            img.save(img_dir / f"d{k:04d}.png")
            labels.append(int(digits.target[j]))
        torch.manual_seed(0)
        torch.jit.save(torch.jit.script(DigitsCNN().eval()), str(folder / "model.pt"))
        (folder / "labels.json").write_text(json.dumps(labels))
    labels = json.loads((folder / "labels.json").read_text())
    for n in sizes:
        manifest = folder / f"manifest-{n}.csv"
        if not manifest.exists():
            write_manifest(manifest, n, labels)
        (folder / f"config-{n}.yaml").write_text(CONFIG.format(n=n))


def write_manifest(path: Path, n: int, labels: list[int]) -> None:
    from audit.demo import _governance_columns

    k = len(labels)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sample_id", "path", "label", "camera", "ink", *GOVERNANCE_COLUMNS])
        for i in range(n):
            gov = _governance_columns(i)
            writer.writerow(
                [
                    f"s{i:07d}",
                    f"images/d{i % k:04d}.png",
                    labels[i % k],
                    "AB"[(i * 7919) % 13 % 2],
                    ("thin", "thick")[(i // k) % 2 ^ (i % 3 == 0)],
                    *(gov[c] for c in GOVERNANCE_COLUMNS),
                ]
            )
    tmp.replace(path)


# ----------------------------------------------------------------------- measuring


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
                tree.setdefault(int(fields[1]), []).append(int(entry))
            except OSError:
                continue
    return tree


def _descendants(pid: int) -> list[int]:
    tree, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def _kib(path: str, key: str) -> int:
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    """Samples the PSS of a process tree and watches the run's work folder and predictions."""

    def __init__(self, pid: int, out_parent: Path, t0: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.out_parent, self.t0 = pid, out_parent, t0
        self.peak_tree_pss = self.peak_main_rss = 0
        self.setup = self.first_batch = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            pids = _descendants(self.pid)
            self.peak_main_rss = max(self.peak_main_rss, _kib(f"/proc/{self.pid}/status", "VmRSS:"))
            self.peak_tree_pss = max(self.peak_tree_pss, sum(_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids))
            if self.first_batch is None:
                work = [w for w in self.out_parent.glob("*.cvaudit-*") if w.is_dir()]  # .out.cvaudit-<pid>-*
                parts = [p for w in work for p in w.glob("predictions.part-*.csv")]
                if parts and self.setup is None:
                    self.setup = time.perf_counter() - self.t0
                try:
                    if parts and parts[0].stat().st_size > 0:
                        self.first_batch = time.perf_counter() - self.t0
                except OSError:  # the run finished and removed its work folder
                    pass
            time.sleep(0.1)


def run_audit(folder: Path, n: int, *, cvaudit: str, src: str | None, first_batch_only: bool) -> dict:
    out_parent = folder / f"run-{n}"
    shutil.rmtree(out_parent, ignore_errors=True)
    out_parent.mkdir()
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [cvaudit, "run", str(folder / f"config-{n}.yaml"), "--out", str(out_parent / "out"), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    sampler = Sampler(proc.pid, out_parent, t0)
    sampler.start()
    if first_batch_only:
        while proc.poll() is None and sampler.first_batch is None:
            time.sleep(0.05)
        proc.terminate()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if not first_batch_only and code not in (0, 1):
        raise SystemExit(f"cvaudit run failed ({code}) at n={n}:\n{err[-2000:]}")
    provenance = {}
    results = out_parent / "out" / "results.json"
    if results.exists():
        provenance = json.loads(results.read_text())["provenance"]
    shutil.rmtree(out_parent, ignore_errors=True)
    return {
        "n": n,
        "wall": None if first_batch_only else wall,
        "setup": sampler.setup,
        "first_batch": sampler.first_batch,
        "main_mb": usage.ru_maxrss / 1024,
        "tree_mb": sampler.peak_tree_pss / 1024,
        "threads": provenance.get("threads"),
        "num_workers": provenance.get("num_workers"),
        "allocator": provenance.get("allocator"),
    }


BARE = r"""
import csv, sys, time
t0 = time.perf_counter()
import numpy as np, torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
import stressors
from stressors.base import sample_keys
manifest, model_path, workers, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
if sys.argv[5] == "retain":  # the audit's allocator setting (audit/evaluation/allocator.py)
    from audit.evaluation.allocator import apply_allocator
    assert apply_allocator("retain") == "retain"
with open(manifest, newline="") as fh:
    rows = list(csv.DictReader(fh))
base = manifest.rsplit("/", 1)[0]
ids = [r["sample_id"] for r in rows]
paths = [base + "/" + r["path"] for r in rows]
class Images(Dataset):
    def __len__(self): return len(paths)
    def __getitem__(self, i):
        with Image.open(paths[i]) as img:
            arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
        return i, torch.from_numpy(arr).permute(2, 0, 1).contiguous()
net = torch.jit.load(model_path).eval()
mean = torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1); std = torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1)
conditions = [(None, 0), (stressors.get("night", severities=[3]), 3), (stressors.get("occlusion", fill="black", severities=[3]), 3)]
n = 0
with torch.no_grad():
    for index, images in DataLoader(Images(), batch_size=128, num_workers=workers):
        keys = sample_keys([ids[i] for i in index.tolist()])
        for stressor, severity in conditions:
            x = images if stressor is None else stressor.apply(images, stressor.sample_params(keys, severity, seed=0))
            probs = torch.softmax(net((x - mean) / std).double(), dim=1)
        n += len(index)
print(n, time.perf_counter() - t0)
"""


def run_bare(folder: Path, n: int, *, workers: int, threads: int, allocator: str = "system") -> float:
    """Wall time of the bare loop at size n in a child process; ``allocator`` as the audit's config key."""
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-c",
            BARE,
            str(folder / f"manifest-{n}.csv"),
            str(folder / "model.pt"),
            str(workers),
            str(threads),
            allocator,
        ],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def _summary(ratios: list[float]) -> str:
    ratios = sorted(ratios)
    mid = len(ratios) // 2
    median = ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2
    geometric = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    return (
        f"median {median:.3f}, geometric mean {geometric:.3f} (min {ratios[0]:.3f}, max {ratios[-1]:.3f})"
        f" over {len(ratios)}"
    )


def run_pairs(
    folder: Path, n: int, pairs: int, *, cvaudit: str, src: str | None, pause: float, bare_allocators: list[str]
) -> None:
    """K rounds at size n of the audit and one bare loop per allocator setting, ``pause`` s before each run.

    The order rotates from round to round (with one bare loop: the audit first in odd rounds and
    second in even ones), so no run is always first or always last.
    """
    kinds = ["audit", *(f"bare-{a}" for a in bare_allocators)]
    plan = {"workers": None, "threads": None}
    results = []
    for k in range(pairs):
        load = os.getloadavg()[0]
        order = kinds[k % len(kinds) :] + kinds[: k % len(kinds)]
        if plan["workers"] is None and order[0] != "audit":  # the bare loops take the audit's workers and threads
            order = kinds
        walls: dict[str, float] = {}
        for kind in order:
            time.sleep(pause)
            if kind == "audit":
                row = run_audit(folder, n, cvaudit=cvaudit, src=src, first_batch_only=False)
                walls["audit"] = row["wall"]
                plan.update(workers=row["num_workers"] or 2, threads=row["threads"] or 2, allocator=row["allocator"])
            else:
                walls[kind] = run_bare(
                    folder, n, workers=plan["workers"], threads=plan["threads"], allocator=kind.split("-", 1)[1]
                )
        result = {"round": k + 1, "order": order, **walls, "audit_allocator": plan["allocator"], "load": load}
        for kind in kinds[1:]:
            result[f"ratio_{kind}"] = walls["audit"] / walls[kind]
        results.append(result)
        print(json.dumps(result), flush=True)
    bares = kinds[1:]
    print(
        "\n| round | order | audit (s) | "
        + " | ".join(f"{b} (s)" for b in bares)
        + " | "
        + " | ".join(f"audit / {b}" for b in bares)
        + " | load before |"
    )
    print("|---:|---|---:|" + "---:|" * (2 * len(bares)) + "---:|")
    for r in results:
        print(
            f"| {r['round']} | {', '.join(r['order'])} | {r['audit']:.1f} | "
            + " | ".join(f"{r[b]:.1f}" for b in bares)
            + " | "
            + " | ".join(f"{r['ratio_' + b]:.3f}" for b in bares)
            + f" | {r['load']:.1f} |"
        )
    print()
    for b in bares:
        print(f"audit / {b}: " + _summary([r["ratio_" + b] for r in results]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="workspace (made once, then reused)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--images", type=int, default=IMAGES, help="distinct image files the rows reuse")
    parser.add_argument("--cvaudit", default=str(Path(sys.executable).parent / "cvaudit"))
    parser.add_argument("--src", default=None, help="a source tree to put first on PYTHONPATH (another revision)")
    parser.add_argument("--bare-at", type=int, default=None, help="also time the bare loop at this size")
    parser.add_argument("--first-batch-only", action="store_true", help="stop each audit after its first batch")
    parser.add_argument("--pairs", type=int, default=0, help="only K audit/bare pairs at --bare-at, alternating order")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds of idle before each run of --pairs")
    parser.add_argument(
        "--bare-allocator",
        nargs="+",
        choices=["system", "retain"],
        default=["system"],
        help="the bare loop's allocator (the audit's config key allocator); two values: a bare loop with each",
    )
    args = parser.parse_args()
    prepare(args.dir, args.sizes, args.images)
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    if args.pairs:
        if args.bare_at is None:
            raise SystemExit("--pairs needs --bare-at")
        run_pairs(
            args.dir,
            args.bare_at,
            args.pairs,
            cvaudit=args.cvaudit,
            src=args.src,
            pause=args.pause,
            bare_allocators=args.bare_allocator,
        )
        return
    rows = []
    for n in args.sizes:
        row = run_audit(args.dir, n, cvaudit=args.cvaudit, src=args.src, first_batch_only=args.first_batch_only)
        row["load"] = os.getloadavg()[0]
        if args.bare_at == n and row["wall"] is not None:
            row["bare"] = run_bare(
                args.dir,
                n,
                workers=row["num_workers"] or 2,
                threads=row["threads"] or 2,
                allocator=args.bare_allocator[0],
            )
            row["load_after_bare"] = os.getloadavg()[0]
        rows.append(row)
        print(json.dumps(row), flush=True)

    def fmt(v, spec=".1f"):
        return "—" if v is None else format(v, spec)

    print(
        "\n| samples | wall (s) | set-up (s) | first batch (s) | peak RSS main (MB) | peak PSS tree (MB) | bare (s) | load |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['n']:,} | {fmt(r['wall'])} | {fmt(r['setup'])} | {fmt(r['first_batch'])} | {fmt(r['main_mb'], '.0f')}"
            f" | {fmt(r['tree_mb'], '.0f')} | {fmt(r.get('bare'))} | {r['load']:.1f} |"
        )


if __name__ == "__main__":
    main()
