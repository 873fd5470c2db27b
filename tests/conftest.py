"""Fixtures shared by the end-to-end and plugin tests (helpers live in cvaudit_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from cvaudit_fixtures import workspace  # noqa: F401  (a fixture)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """One real ``cvaudit demo`` per test session (its output folder; read it, do not change it)."""
    from audit.cli import main

    out = tmp_path_factory.mktemp("demo") / "cvaudit-demo"
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "verdict: PASS" in result.output and "report:" in result.output
    return out
