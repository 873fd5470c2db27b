"""Record what a demo run wrote, as the reference ``tests/test_outputs_unchanged.py`` compares runs with.

    # in a checkout of the revision whose outputs are the reference (e.g. main before a change):
    .venv/bin/cvaudit demo --out /tmp/ref-demo --quiet
    .venv/bin/python scripts/make_output_reference.py /tmp/ref-demo --commit "$(git rev-parse --short HEAD)"

writes ``tests/data/demo_outputs_reference.json.gz``: the SHA-256 of ``predictions.csv`` and
``governance.csv``, ``breaking_points.csv`` and results.json without what differs between two runs of the same inputs
(:func:`normalise`: run times and dates, absolute paths, the TorchScript file's digest, whose zip
bytes vary although its weights do not, and the library versions).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "demo_outputs_reference.json.gz"


def normalise(results: dict[str, Any]) -> dict[str, Any]:
    """results.json without the values that differ between two runs of the same inputs."""
    out = json.loads(json.dumps(results))
    for section, keys in (
        ("provenance", ("started", "finished", "config", "versions")),
        ("model", ("path", "sha256")),
        ("dataset", ("path",)),
        ("governance", ("audit_date",)),
    ):
        for key in keys:
            (out.get(section) or {}).pop(key, None)
    return out


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_out", type=Path, help="the --out folder of a `cvaudit demo` run")
    parser.add_argument("--commit", required=True, help="the revision that wrote it")
    args = parser.parse_args()
    record = {
        "commit": args.commit,
        "sha256": {
            name: digest(args.demo_out / name) for name in ("predictions.csv", "governance.csv", "breaking_points.csv")
        },
        "results": normalise(json.loads((args.demo_out / "results.json").read_text(encoding="utf-8"))),
    }
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE.write_bytes(gzip.compress(json.dumps(record, sort_keys=True).encode("utf-8"), mtime=0))
    print(f"wrote {REFERENCE.relative_to(ROOT)} ({REFERENCE.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
