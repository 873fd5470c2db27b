"""A first run in a fresh process (nothing imported yet, no keys, a new output folder) prints no warning that
cvaudit did not write: a dependency's DeprecationWarning at import would appear here as ``cvaudit: warning:``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cvaudit_fixtures import write_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_first_run_prints_no_dependency_warnings(workspace, tmp_path):
    cfg = write_config(workspace)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("PYTHONWARNINGS", None)  # the filters a user's shell has by default
    env["HOME"] = str(tmp_path / "home")  # no caches or keys from earlier runs
    result = subprocess.run(
        [sys.executable, "-m", "audit", "run", str(cfg), "--out", str(workspace / "out"), "--quiet"],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line.lower()]
    assert warnings == [], warnings
    assert "deprecat" not in result.stderr.lower()
