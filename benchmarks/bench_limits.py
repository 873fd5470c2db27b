"""Peak memory of hostile inputs: decompression-bomb PNGs and a YAML alias bomb (issue 13).

Each case runs in a fresh process and reports its peak RSS (``resource.getrusage``)
and what cvaudit did with the input. The PNGs are written here: valid files of
all-zero rows, a few hundred kilobytes that decode to hundreds of megapixels.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_limits.py [--unsafe]

``--unsafe`` adds the 12000x12000 image decoded with the limit raised, as every
image was before ``data.max_image_pixels`` (about 4.4 GB: not for a busy machine).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASE = r"""
import json, resource, sys, time
from pathlib import Path
kind, path, limit = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
started = time.monotonic()
if kind == "image":
    from audit.contract.config import DataConfig, ModelConfig
    from audit.evaluation.data import AuditDataset, read_samples
    (path.parent / "m.csv").write_text(f"path,label\n{path.name},0\n")
    table = read_samples(DataConfig(manifest=path.parent / "m.csv"), class_names=None)
    item = AuditDataset(table, ModelConfig(path="m.pt", input_size=(224, 224)), max_pixels=limit)[0]
    outcome = item.get("error", "decoded")
else:
    from audit.contract.errors import CvauditError
    from policies.loader import parse_policy
    try:
        parse_policy(path.read_bytes(), source=path.name)
        outcome = "loaded"
    except CvauditError as err:
        outcome = f"error of {len(str(err))} characters: {str(err)[:90]}"
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"peak_mib": round(peak, 1), "seconds": round(time.monotonic() - started, 2), "outcome": outcome}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unsafe", action="store_true", help="also decode the 144 Mpx bomb with the limit raised")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from cvaudit_fixtures import write_png_bomb

    from audit.contract.config import DEFAULT_MAX_IMAGE_PIXELS

    folder = Path(tempfile.mkdtemp(prefix="cvaudit-bench-limits-"))
    cases = []
    for w, h, c in ((20000, 20000, 1), (12000, 12000, 3), (8000, 8000, 1), (8000, 8000, 3), (4000, 4000, 3)):
        path = write_png_bomb(folder / f"bomb{w}x{h}x{c}.png", w, h, c)
        kind = "gray" if c == 1 else "RGB"
        label = f"{kind} PNG {w}x{h} ({path.stat().st_size // 1024} kB), default limit"
        cases.append((label, "image", path, DEFAULT_MAX_IMAGE_PIXELS))
    if args.unsafe:
        for c in (1, 3):
            path = folder / f"bomb12000x12000x{c}.png"
            if not path.exists():
                write_png_bomb(path, 12000, 12000, c)
            kind = "gray" if c == 1 else "RGB"
            cases.append((f"{kind} PNG 12000x12000, limit raised (as before issue 13)", "image", path, 10**9))
    levels = ['  a0: &a0 "' + "y" * 300 + '"'] + [
        f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 4)
    ]
    policy = folder / "bomb.yaml"
    policy.write_text(
        "version: 1\nname: b\nx:\n" + "\n".join(levels) + "\nrules: [{id: r, condition: *a3, metric: accuracy}]\n"
    )
    cases.append((f"policy of {policy.stat().st_size} bytes, 1000 aliases of 300 characters", "policy", policy, 0))
    levels = ['  a0: &a0 "' + "y" * 300 + '"'] + [
        f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 6)
    ]
    policy2 = folder / "bomb2.yaml"
    policy2.write_text(
        "version: 1\nname: b\nx:\n" + "\n".join(levels) + "\nrules: [{id: r, condition: *a5, metric: accuracy}]\n"
    )
    cases.append((f"policy of {policy2.stat().st_size} bytes, 100000 aliases of 300 characters", "policy", policy2, 0))

    print("| case | peak RSS (MiB) | seconds | outcome |\n|---|---:|---:|---|")
    for label, kind, path, limit in cases:
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", CASE, kind, str(path), str(limit)], capture_output=True, text=True)
        if done.returncode != 0:
            print(
                f"| {label} | — | {time.monotonic() - started:.1f} | crashed: {done.stderr.strip().splitlines()[-1][:80]} |"
            )
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| {label} | {row['peak_mib']} | {row['seconds']} | {row['outcome'][:110]} |")


if __name__ == "__main__":
    main()
