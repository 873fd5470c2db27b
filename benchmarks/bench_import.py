"""Start-up cost of ``cvaudit --help`` (and, with ``--commands``, of the commands on stored results).

``cvaudit --help`` must stay fast: subcommands import their heavy dependencies
(torch, WeasyPrint, pyHanko) and the optional extras (transformers, MLflow,
huggingface_hub) only when they run. This script times the console script in
fresh processes (median and spread after one warm-up) and lists which heavy
modules a ``--help`` loads (none is expected).

    .venv/bin/python benchmarks/bench_import.py --runs 20
    .venv/bin/python benchmarks/bench_import.py --runs 10 --commands [--results results.json]

``--commands`` also times ``cvaudit policy check RESULTS --policy demo``, ``cvaudit verify``
(of a folder signed once with fresh keys), ``cvaudit report RESULTS --format html`` and the
import of ``audit.runner`` (what ``cvaudit run`` loads before it reads its config), and lists
the heavy modules each loads (torch, torchmetrics and foolbox are expected only for the runner).
The default results are the repository's 600-image demo fixture.

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

HEAVY = (
    "torch",
    "torchmetrics",
    "foolbox",
    "scipy",
    "transformers",
    "mlflow",
    "huggingface_hub",
    "weasyprint",
    "pyhanko",
    "safetensors",
    "jsonschema",
)
ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "audit" / "contract" / "data" / "results-1.0.json"

_COMMAND_PROBE = """
import json, sys
from click.testing import CliRunner
from audit.cli import main
CliRunner().invoke(main, json.loads(sys.argv[1]))
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""

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


def time_command(argv: list[str], runs: int) -> list[float]:
    """Wall seconds of ``argv`` in ``runs`` fresh processes (after one warm-up); it must exit 0 or 1."""
    times = []
    for k in range(runs + 1):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True)
        if done.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
        if k:
            times.append(time.perf_counter() - start)
    return times


def heavy_of_command(python: Path, args: list[str]) -> list[str]:
    out = subprocess.run(
        [str(python), "-c", _COMMAND_PROBE, json.dumps(args)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    ).stdout
    loaded = set(json.loads(out.strip().splitlines()[-1]))
    return [m for m in HEAVY if m in loaded]


def commands(exe: Path, results: Path, runs: int) -> None:
    """Time the commands that work on stored results, and ``import audit.runner``."""
    work = Path(tempfile.mkdtemp(prefix="cvaudit-bench-import-"))
    subprocess.run([str(exe), "keygen", "--out", str(work / "keys")], check=True, capture_output=True)
    subprocess.run(
        [
            str(exe),
            "report",
            str(results),
            "--out",
            str(work / "signed"),
            "--format",
            "html",
            "--sign-key",
            str(work / "keys"),
        ],
        check=True,
        capture_output=True,
    )
    cases = {
        "cvaudit --help": ["--help"],
        "cvaudit policy check": ["policy", "check", str(results), "--policy", "demo"],
        "cvaudit verify": ["verify", str(work / "signed"), "--key", str(work / "keys")],
        "cvaudit report (html)": ["report", str(results), "--out", str(work / "again"), "--format", "html"],
    }
    print(f"{'command':<24} {'median':>8} {'min':>8} {'max':>8}  heavy modules")
    for name, args in cases.items():
        times = time_command([str(exe), *args], runs)
        heavy = heavy_of_command(Path(sys.executable), args)
        print(
            f"{name:<24} {statistics.median(times) * 1000:>6.0f}ms {min(times) * 1000:>6.0f}ms"
            f" {max(times) * 1000:>6.0f}ms  {', '.join(heavy) or 'none'}"
        )
    times = time_command([sys.executable, "-c", "import audit.runner"], runs)
    print(
        f"{'import audit.runner':<24} {statistics.median(times) * 1000:>6.0f}ms {min(times) * 1000:>6.0f}ms"
        f" {max(times) * 1000:>6.0f}ms"
    )
    print(f"load average: {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--commands", action="store_true", help="also time policy check, verify, report, run imports")
    parser.add_argument("--results", type=Path, default=FIXTURE, help="results.json for --commands")
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
    if args.commands:
        commands(exe, args.results, args.runs)


if __name__ == "__main__":
    main()
