"""The import-linter contracts in pyproject.toml hold, and each would fail on the violation it is there for.

The four packages and pyproject.toml are copied into a temporary folder; one import is added to the copy
(an arrow up the top layer, a circle inside a layer, click outside the CLI, a reach into a peer's
submodule), and ``lint-imports`` run on the copy must exit non-zero naming the contract. The untouched
copy passes. The injected lines are only parsed (import-linter reads the source), never run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: import-linter reads pyproject.toml with tomli
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("audit", "policies", "reports", "stressors")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.is_file(), reason="import-linter is not installed beside python")


def _contract(phrase: str) -> str:
    """The name of the one contract in pyproject.toml whose name contains ``phrase``."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    names = [c["name"] for c in config["tool"]["importlinter"]["contracts"] if phrase in c["name"]]
    assert len(names) == 1, (phrase, names)
    return names[0]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the product packages and pyproject.toml."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", "pyproject.toml", "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _broken(output: str) -> set[str]:
    """The contracts the report marks BROKEN (names wrap over lines in the report)."""
    flat = " ".join(output.split())
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    names = [" ".join(c["name"].split()) for c in config["tool"]["importlinter"]["contracts"]]
    return {name for name in names if f"{name} BROKEN" in flat}


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(f"\n{line}\n")


def test_the_untouched_copy_keeps_every_contract(tree):
    done = _lint(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BROKEN" not in done.stdout and _broken(done.stdout) == set()


ORDER = "top layer in order"
CIRCLES = "No circles inside a layer"
CONTRACT_CIRCLES = "No circles inside the contract layer"
CLICK = "click is imported only by the command line"
PUBLIC = "only through their public module"


@pytest.mark.parametrize(
    ("file", "line", "phrases"),
    [
        # issue 24's violations: tracking printed through the CLI's say (an arrow up, and click outside the CLI) ...
        ("audit/tracking/__init__.py", "from audit.cli.boundary import say", [ORDER, CLICK]),
        # ... the plugin and audit.testing formatted through audit.cli (click again, and testing above the CLI) ...
        ("audit/testing.py", "from audit.cli.summary import failure_lines", [ORDER, CLICK]),
        # ... groupstats <-> gaptests in the contract layer ...
        ("audit/contract/gaptests.py", "import audit.contract.groupstats", [CONTRACT_CIRCLES]),
        # ... and the top layer reaching into policies.governance and reports.atomic
        ("audit/runner.py", "from policies.governance import CHECK_SECTIONS", [PUBLIC]),
        ("audit/cli/report.py", "from reports.atomic import atomic_write_text", [PUBLIC]),
        # one of each kind more
        ("audit/runner.py", "import audit.cli", [ORDER, CLICK]),
        ("audit/tracking/__init__.py", "import audit.runner", [ORDER]),
        ("audit/demo.py", "import audit.loop", [ORDER]),
        ("policies/dates.py", "import policies.governance", [CIRCLES]),
        ("audit/evaluation/data.py", "import audit.evaluation.evaluate", [CIRCLES]),
        ("reports/junit.py", "import click", [CLICK]),
        ("stressors/base.py", "import click", [CLICK]),
        ("audit/loop/queue.py", "from stressors.base import sample_keys", [PUBLIC]),
    ],
)
def test_each_contract_fails_on_its_violation(tree, file, line, phrases):
    _append(tree / file, line)
    done = _lint(tree)
    assert done.returncode != 0, done.stdout
    assert _broken(done.stdout) == {" ".join(_contract(p).split()) for p in phrases}, done.stdout


def test_the_evaluators_public_names_load_from_their_submodules():
    """audit.evaluation's names resolve lazily; none shadows a submodule (importing it would replace the name)."""
    import pkgutil

    import audit.evaluation as evaluation

    submodules = {m.name for m in pkgutil.iter_modules(evaluation.__path__)}
    assert set(evaluation.__all__) == set(evaluation._PUBLIC)
    assert not set(evaluation.__all__) & submodules
    for name in evaluation.__all__:
        module, attribute = evaluation._PUBLIC[name]
        assert getattr(evaluation, name) is getattr(__import__(f"audit.evaluation.{module}", fromlist=["_"]), attribute)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        evaluation.nothing_here  # noqa: B018


def test_stored_results_helpers_of_the_evaluator_import_no_torch():
    probe = "import sys; from audit.evaluation import compare_to_baseline; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == "False"
