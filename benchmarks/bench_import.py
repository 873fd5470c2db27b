"""Start-up cost of ``cvaudit --help``: wall time and what it imports.

``cvaudit --help`` must stay fast: subcommands import their heavy dependencies
(torch, WeasyPrint, pyHanko) and the optional extras (transformers, MLflow,
huggingface_hub) only when they run. This script times the console script in
fresh processes (median and spread after one warm-up) and lists which heavy
modules a ``--help`` loads (none is expected).

    .venv/bin/python benchmarks/bench_import.py --runs 20

To time another revision with the same installed packages, put its source tree first on
``PYTHONPATH`` (``git archive REV | tar -x -C /tmp/rev``, then ``PYTHONPATH=/tmp/rev``): the
console script and the probe import ``audit`` from there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "transformers", "mlflow", "huggingface_hub", "weasyprint", "pyhanko", "safetensors", "jsonschema")

_PROBE = """
import sys
from click.testing import CliRunner
from audit.cli import main
result = CliRunner().invoke(main, ["--help"])
assert result.exit_code == 0, result.output
import json
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def time_help(exe: Path, runs: int) -> list[float]:
    """Wall seconds of ``cvaudit --help`` in ``runs`` fresh processes (after one warm-up)."""
    subprocess.run([str(exe), "--help"], check=True, capture_output=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(exe), "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def imported_heavy(python: Path) -> list[str]:
    """Heavy top-level packages present in ``sys.modules`` after ``--help``."""
    # run outside the checkout: `python -c` puts the working directory first on sys.path
    out = subprocess.run(
        [str(python), "-c", _PROBE], check=True, capture_output=True, text=True, cwd=tempfile.gettempdir()
    ).stdout
    loaded = set(json.loads(out))
    return [m for m in HEAVY if m in loaded]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    exe = bindir / ("cvaudit.exe" if os.name == "nt" else "cvaudit")
    times = time_help(exe, args.runs)
    print(f"cvaudit --help, {args.runs} runs after a warm-up:")
    print(
        f"  median {statistics.median(times) * 1000:.0f} ms, "
        f"min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
    )
    print(f"  load average: {os.getloadavg()[0]:.2f}")
    heavy = imported_heavy(Path(sys.executable))
    print(f"  heavy modules imported by --help: {', '.join(heavy) if heavy else 'none'}")


if __name__ == "__main__":
    main()
