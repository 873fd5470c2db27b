"""Real torchrun processes (gloo, CPU): a 2-rank audit equals the single-process audit."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cvaudit_fixtures import write_config
from test_e2e import assert_tree_close

pytestmark = pytest.mark.slow


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


def test_two_ranks_equal_one_process(workspace):
    cfg = write_config(
        workspace, stressors="  - {name: night, severities: [2]}\n  - {name: occlusion, severities: [3]}\n"
    )
    env = {**os.environ, "CVAUDIT_DIST_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, "-m", "audit", "run", str(cfg), "--out", str(workspace / "one"), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    multi = subprocess.run(
        [
            *_torchrun(),
            "--nproc-per-node",
            "2",
            "--standalone",
            "-m",
            "audit",
            "run",
            str(cfg),
            "--out",
            str(workspace / "two"),
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=workspace,
    )
    assert multi.returncode == 0, multi.stderr[-3000:]
    one = json.loads((workspace / "one" / "results.json").read_text())
    two = json.loads((workspace / "two" / "results.json").read_text())
    assert two["provenance"]["world_size"] == 2 and one["provenance"]["world_size"] == 1
    assert_tree_close(one["conditions"], two["conditions"], tol=1e-9)
    assert_tree_close(one["fairness"], two["fairness"], tol=1e-9)
    assert one["policy"]["verdict"] == two["policy"]["verdict"]
    rows_one = list(csv.reader((workspace / "one" / "predictions.csv").read_text().splitlines()))
    rows_two = list(csv.reader((workspace / "two" / "predictions.csv").read_text().splitlines()))
    # same rows in the same order; probabilities to print precision (batch composition differs per rank)
    assert [r[:6] + r[8:] for r in rows_one] == [r[:6] + r[8:] for r in rows_two]
    assert max(abs(float(a[7]) - float(b[7])) for a, b in zip(rows_one[1:], rows_two[1:])) <= 2e-6
    assert not [p for p in workspace.iterdir() if p.name.startswith(".cvaudit-")]  # work folders cleaned up


def _cvaudit() -> str:
    return str(Path(sys.executable).with_name("cvaudit"))


def test_documented_torchrun_command_works_from_a_folder_with_its_own_packages(workspace):
    """`torchrun --no-python cvaudit run` imports the installed cvaudit, not ./reports or ./policies."""
    for shadow in ("reports", "policies", "audit"):
        (workspace / shadow).mkdir()
        (workspace / shadow / "__init__.py").write_text("raise SystemExit('imported the wrong package')\n")
    cfg = write_config(workspace, threshold=1.01, stressors="  - {name: night, severities: [2]}\n")
    env = {**os.environ, "CVAUDIT_DIST_BACKEND": "gloo", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        [
            *_torchrun(),
            "--nproc-per-node",
            "2",
            "--standalone",
            "--no-python",
            "cvaudit",
            "run",
            cfg.name,
            "--out",
            "out",
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=workspace,
    )
    assert done.returncode == 1, done.stderr[-3000:]  # the policy failed; torchrun reports it as exit 1
    assert "wrong package" not in done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("verdict: FAIL (policy e2e: 1 blocking failure")
    assert json.loads((workspace / "out" / "results.json").read_text())["policy"]["verdict"] == "fail"


def test_nproc_per_node_keeps_cvaudit_exit_codes_without_launcher_tracebacks(workspace):
    cfg = write_config(workspace, threshold=1.01, stressors="  - {name: night, severities: [2]}\n")
    env = {**os.environ, "CVAUDIT_DIST_BACKEND": "gloo"}
    failed = subprocess.run(
        [_cvaudit(), "run", str(cfg), "--out", str(workspace / "out"), "--quiet", "--nproc-per-node", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "Traceback" not in failed.stderr and "ChildFailedError" not in failed.stderr, failed.stderr
    assert failed.stdout.strip().splitlines()[-1].startswith("verdict: FAIL (policy e2e: 1 blocking failure")
    bad = subprocess.run(
        [_cvaudit(), "run", str(workspace / "missing.yaml"), "--out", str(workspace / "o2"), "--nproc-per-node", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2, bad.stderr[-3000:]
    assert "Traceback" not in bad.stderr and "config file not found" in bad.stderr
