"""Limits before reading, through the real CLI: every file a user names is checked on its descriptor first.

Issue 31, point 5: config, policy, results.json and trust files were read whole before the 1 MiB
check (a 1 GB config cost 1.0-1.4 GB), and ``/dev/zero`` as a config, a ``--trust`` file or a
``report`` / ``model-card`` argument read forever and ended in ``MemoryError``. Each case here runs
``cvaudit`` in a subprocess with a timeout (a regression cannot hang the suite) and measures the
peak RSS the command adds (``ru_maxrss`` after the command minus before it, with the modules the
command imports loaded first).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audit.contract.load import MAX_RESULTS_BYTES
from audit.contract.yaml_loader import MAX_BYTES
from reports.trust import MAX_TRUST_FILE

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT_S = 120  # generous for a loaded machine; the refusals themselves take milliseconds
RSS_GROWTH_KB = 100 * 1024
_MARK = "CVAUDIT_RSS_GROWTH_KB="

# Runs the CLI in-process after importing the modules the command needs, so the RSS growth is the command's.
_DRIVER = f"""
import importlib, resource, sys
for name in filter(None, sys.argv[1].split(",")):
    importlib.import_module(name)
from audit.cli import main
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
code = 0
try:
    main(args=sys.argv[2:], prog_name="cvaudit")
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 1
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sys.stderr.write("\\n{_MARK}%d\\n" % (after - before))
sys.exit(code)
"""


def _size_text(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _cvaudit(args: list[str], cwd: Path, preload: str = "") -> tuple[int, list[str], int]:
    """(exit code, non-empty stderr lines without the RSS mark, RSS growth in KiB)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CVAUDIT_TRUST": ""}
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, preload, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    growth = [int(line[len(_MARK) :]) for line in lines if line.startswith(_MARK)]
    assert growth, f"the command did not finish normally: {proc.stderr[-2000:]}"
    return proc.returncode, [line for line in lines if not line.startswith(_MARK)], growth[0]


def _sparse(path: Path, size: int = 1 << 30) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(size)  # 1 GiB that costs no disk: reading it costs 1 GiB of memory
    return path


def _minimal_run_config(root: Path) -> Path:
    """A config whose policy loads; the baseline is read before the model or any image."""
    (root / "policy.yaml").write_text(
        "version: 1\nname: t\nrules:\n  - id: clean-accuracy\n    condition: clean\n"
        "    metric: accuracy\n    min: 0.5\n    blocking: true\n"
    )
    cfg = root / "config.yaml"
    cfg.write_text(
        "seed: 0\ndevice: cpu\nmodel:\n  path: model.pt\n  input_size: [16, 16]\n  class_names: [a, b]\n"
        "data:\n  manifest: manifest.csv\n  num_workers: 0\nstressors: []\npolicy: policy.yaml\n"
    )
    return cfg


# kind -> (argv with {F} the file under test and {T} the test's folder, modules the command imports, limit)
CASES = {
    "config": (["run", "{F}", "--out", "{T}/out"], "audit.cli.run,audit.runner", MAX_BYTES),
    "policy show": (["policy", "show", "{F}"], "audit.cli.policy,policies", MAX_BYTES),
    "policy check --policy": (
        ["policy", "check", "{T}/results.json", "--policy", "{F}"],
        "audit.cli.policy,policies,audit.contract.load",
        MAX_BYTES,
    ),
    "policy check results": (
        ["policy", "check", "{F}", "--policy", "ci-gate"],
        "audit.cli.policy,policies,audit.contract.load",
        MAX_RESULTS_BYTES,
    ),
    "report": (["report", "{F}", "--out", "{T}/out"], "audit.cli.report,reports", MAX_RESULTS_BYTES),
    "run --baseline": (
        ["run", "{T}/config.yaml", "--out", "{T}/out", "--baseline", "{F}"],
        "audit.cli.run,audit.runner,torch",
        MAX_RESULTS_BYTES,
    ),
    "verify --trust": (["verify", "{T}/nothing", "--trust", "{F}"], "audit.cli.report,reports", MAX_TRUST_FILE),
    "model-card": (["model-card", "{F}", "--out", "{T}/card.md"], "audit.cli.model_card,reports", MAX_RESULTS_BYTES),
}


def _prepare(tmp_path: Path) -> None:
    from results_builder import complete_results

    _minimal_run_config(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps(complete_results({})))


def _args(kind: str, target: Path, tmp_path: Path) -> tuple[list[str], str]:
    argv, preload, _ = CASES[kind]
    return [a.replace("{F}", str(target)).replace("{T}", str(tmp_path)) for a in argv], preload


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_sparse_1gb_file_is_refused_before_reading(kind, tmp_path):
    _prepare(tmp_path)
    limit = CASES[kind][2]
    big = _sparse(tmp_path / ("big.yaml" if limit == MAX_BYTES else "big.json"))
    argv, preload = _args(kind, big, tmp_path)
    code, lines, growth = _cvaudit(argv, tmp_path, preload)
    assert growth < RSS_GROWTH_KB, f"{kind}: the refusal cost {growth} KiB of peak RSS"
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert big.name in lines[0] and "1024.0 MiB" in lines[0] and f"at most {_size_text(limit)}" in lines[0], lines


@pytest.mark.parametrize("kind", sorted(CASES))
@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_devices_and_fifos_are_refused_at_once(kind, special, tmp_path):
    _prepare(tmp_path)
    if special == "fifo":
        target = tmp_path / "pipe.yaml"
        os.mkfifo(target)  # no writer ever comes: opening it without O_NONBLOCK would wait forever
        what = "is a FIFO (named pipe)"
    else:
        if not os.path.exists(special):
            pytest.skip(f"{special} not on this system")
        target = Path(special)
        what = "is a character device"
    argv, preload = _args(kind, target, tmp_path)
    code, lines, growth = _cvaudit(argv, tmp_path, preload)
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert str(target) in lines[0] and what in lines[0], lines
    assert "internal error" not in lines[0] and "MemoryError" not in lines[0]
    assert growth < RSS_GROWTH_KB
