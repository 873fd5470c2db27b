"""The run and the C allocator: the Python API leaves ``mallopt`` alone unless the config asks.

``audit.runner.run`` is a library call inside someone else's process (a notebook, a pytest
session through the plugin), so config ``allocator`` unset must not call ``mallopt``; a config
that says ``retain`` has it applied during the evaluation and restored after; ``cvaudit run``
owns its process and uses ``retain`` when the config says nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from audit import runner
from audit.cli import main
from audit.evaluation import allocator

sys.path.append(str(Path(__file__).resolve().parents[2] / "benchmarks"))
import coded

POLICY = """\
version: 1
name: allocator
rules:
  - {id: clean-accuracy, condition: clean, metric: accuracy, min: 0.5}
"""

APPLIED = [(-3, allocator.MMAP_THRESHOLD), (-1, allocator.TRIM_THRESHOLD)]
RESTORED = [(-3, 128 * 1024), (-1, 128 * 1024)]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("allocator")
    coded.write_npz(root / "data.npz", 200, 0.9)
    coded.save_model(root / "model.pt")
    (root / "policy.yaml").write_text(POLICY)
    path = coded.config(root, policy="policy.yaml", early_stop=False)
    path.write_text(path.read_text().replace("report:\n  formats: [html]\n", "report:\n  formats: []\n"))
    return path


@pytest.fixture()
def mallopt(monkeypatch) -> list[tuple[int, int]]:
    """The calls made to glibc's ``mallopt`` (the binding replaced by a recorder that accepts every value)."""
    calls: list[tuple[int, int]] = []

    def record(parameter: int, value: int) -> int:
        calls.append((parameter, value))
        return 1

    monkeypatch.setattr(allocator, "_mallopt", lambda: record)
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    return calls


def _with_allocator(config: Path, mode: str) -> Path:
    path = config.with_name(f"config-{mode}.yaml")
    path.write_text(config.read_text() + f"allocator: {mode}\n")
    return path


def test_the_python_api_does_not_call_mallopt_unless_asked(config, mallopt, tmp_path):
    outcome = runner.run(config, out_dir=tmp_path / "out")
    assert outcome.verdict == "pass"
    assert mallopt == []
    assert outcome.results.provenance.allocator == "system"


def test_a_run_that_asks_for_retain_applies_it_while_evaluating_and_restores_it(config, mallopt, tmp_path, monkeypatch):
    during: list[list[tuple[int, int]]] = []
    evaluate = runner.evaluate

    def spying(**kwargs):
        during.append(list(mallopt))
        return evaluate(**kwargs)

    monkeypatch.setattr(runner, "evaluate", spying)
    outcome = runner.run(_with_allocator(config, "retain"), out_dir=tmp_path / "out")
    assert during == [APPLIED]  # in force while the images are evaluated
    assert mallopt == APPLIED + RESTORED  # and set back once the outputs are written
    assert outcome.results.provenance.allocator == "retain"


def test_a_failed_run_restores_the_allocator_too(config, mallopt, tmp_path, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("the model failed half-way")

    monkeypatch.setattr(runner, "evaluate", broken)
    with pytest.raises(RuntimeError, match="half-way"):
        runner.run(_with_allocator(config, "retain"), out_dir=tmp_path / "out")
    assert mallopt == APPLIED + RESTORED


def test_the_command_line_uses_retain_when_the_config_says_nothing(config, mallopt, tmp_path):
    result = CliRunner().invoke(main, ["run", str(config), "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert mallopt == APPLIED + RESTORED


def test_the_command_line_respects_system(config, mallopt, tmp_path):
    path = _with_allocator(config, "system")
    result = CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert mallopt == []
