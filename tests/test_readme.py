"""The README is true: every config, policy, command and code example in it runs on the demo workspace.

Fenced blocks are taken from README.md in order and run in a sandbox built from
one real ``cvaudit demo`` run:

- ``yaml`` with ``model:`` and ``data:``: a config, run with ``cvaudit run`` on
  the demo's model and manifest (attacks on a 40-sample subset to save time);
- ``yaml`` with ``version:`` and ``rules:``: a policy, judged with ``cvaudit
  policy check`` against the demo's results.json;
- ``bash``: each command (``\\``-continued lines joined), in the sandbox, whose
  ``out/`` is the demo's output folder, ``keys/`` its signing keys (and
  ``trust.txt`` the reviewer's copy of ``keys/public/trust.txt``),
  ``config.yaml``, ``model.pt``, ``manifest.csv`` and ``images/`` its workspace,
  plus ``data/manifest.csv`` and ``models/model.pt`` as the examples name them;
- ``python``: executed there; a block defining pytest tests is run by pytest
  against the demo's results.

A ``text`` block (a command synopsis) is documentation only. A command may exit 0 or 1 (a failed gate, an untrusted signature), never 2
(bad input) and never with a traceback. A block that cannot run here says why
in a ``<!-- readme-test: skip (reason) -->`` line right above it; any other
block is run, so an example cannot drift from the code.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((.+)\)\s*-->")
RUNNABLE = {"cvaudit", "pytest", "pdfsig", "pdfdetach", "openssl", "sha256sum", "python3", "python"}


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    text: str
    skip: str | None

    @property
    def name(self) -> str:
        return f"README.md:{self.line} ({self.lang})"


def readme_blocks() -> list[Block]:
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = re.match(r"^```(\w*)\s*$", lines[i])
        if not match:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        marker = SKIP.search(lines[i - 1]) if i else None
        blocks.append(
            Block(i + 1, match.group(1), "\n".join(lines[i + 1 : end]) + "\n", marker.group(1) if marker else None)
        )
        i = end + 1
    return blocks


def commands(text: str) -> list[str]:
    """Shell commands of a bash block: continuation lines joined, comments and blanks dropped."""
    out, current = [], ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip() and not current.lstrip().startswith("#"):
            out.append(current.strip())
        current = ""
    return out


@pytest.fixture(scope="module")
def sandbox(demo_run: Path, tmp_path_factory) -> Path:
    """A folder laid out as the README's examples assume, from one real demo run."""
    box = tmp_path_factory.mktemp("readme")
    workspace = demo_run / "workspace"
    for item in ("config.yaml", "model.pt", "manifest.csv"):
        shutil.copy(workspace / item, box / item)
    shutil.copytree(workspace / "images", box / "images")  # a copy: a symlink would leave the data root
    shutil.copytree(workspace / "keys", box / "keys")
    shutil.copy(box / "keys" / "public" / "trust.txt", box / "trust.txt")  # what a reviewer keeps
    shutil.copytree(demo_run, box / "out", ignore=shutil.ignore_patterns("workspace"))
    (box / "data").mkdir()
    shutil.copy(workspace / "manifest.csv", box / "data" / "manifest.csv")
    (box / "models").mkdir()
    shutil.copy(workspace / "model.pt", box / "models" / "model.pt")
    (box / "cvaudit-demo").symlink_to(demo_run)
    (box / "examples").symlink_to(ROOT / "examples")
    return box


def _env(box: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "GITHUB_STEP_SUMMARY": str(box / "step-summary.md"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{box / 'mlflow.db'}",
        "OMP_NUM_THREADS": "1",
    }


def _check(done: subprocess.CompletedProcess, what: str) -> None:
    output = (done.stdout or "") + (done.stderr or "")
    assert done.returncode in (0, 1), f"{what}: exit {done.returncode}\n{output[-3000:]}"
    assert "Traceback" not in output and "internal error" not in output, f"{what}\n{output[-3000:]}"


BLOCKS = readme_blocks()


def test_every_block_is_run_or_says_why_not():
    unknown = [b.name for b in BLOCKS if b.skip is None and b.lang not in ("bash", "yaml", "python", "text")]
    assert not unknown, f"blocks neither run nor marked '<!-- readme-test: skip (reason) -->': {unknown}"
    for block in BLOCKS:
        if block.lang == "bash" and block.skip is None:
            for command in commands(block.text):
                words = shlex.split(command, comments=True)
                word = next(w for w in words if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w))  # after VAR=value
                assert word in RUNNABLE, f"{block.name}: {word!r} cannot run here; mark the block with a reason"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.skip is None and b.lang != "text"], ids=lambda b: b.name)
def test_readme_block_runs(block: Block, sandbox: Path):
    env = _env(sandbox)
    if block.lang == "yaml":
        if "model:" in block.text and "data:" in block.text:
            (sandbox / "readme-config.yaml").write_text(block.text, encoding="utf-8")
            done = subprocess.run(
                ["cvaudit", "run", "readme-config.yaml", "--out", "readme-out", "--quiet", "--attack-samples", "40"],
                cwd=sandbox,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            _check(done, block.name)
            assert (sandbox / "readme-out" / "results.json").is_file()
        elif "version:" in block.text and "rules:" in block.text:
            (sandbox / "readme-policy.yaml").write_text(block.text, encoding="utf-8")
            done = subprocess.run(
                ["cvaudit", "policy", "check", "out/results.json", "--policy", "readme-policy.yaml"],
                cwd=sandbox,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            _check(done, block.name)
        else:
            pytest.fail(f"{block.name}: a yaml block that is neither a config nor a policy; mark it with a reason")
    elif block.lang == "bash":
        for command in commands(block.text):
            done = subprocess.run(
                ["bash", "-c", command], cwd=sandbox, env=env, capture_output=True, text=True, timeout=900
            )
            _check(done, f"{block.name}: {command}")
    else:
        defines_tests = re.search(r"^def test_", block.text, re.M) is not None
        name = f"test_readme_{block.line}.py" if defines_tests else f"readme_{block.line}.py"
        (sandbox / name).write_text(block.text, encoding="utf-8")
        argv = (
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                name,
                "--cvaudit-results",
                "out/results.json",
            ]
            if defines_tests
            else [sys.executable, name]
        )
        done = subprocess.run(argv, cwd=sandbox, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{block.name}\n{(done.stdout + done.stderr)[-3000:]}"


def test_readme_demo_numbers_match_a_demo_run(demo_run: Path):
    """The README's demo block is what scripts/update_readme_demo.py writes from a demo run (to 0.01).

    The demo's weights are shipped and its images byte-identical on every CPU, so its numbers are too
    (to the last printed digit on the kernels measured; 0.01 leaves two attacked samples of 200 room).
    """
    import json

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from update_readme_demo import END, START, render
    finally:
        sys.path.pop(0)
    fresh = render(json.loads((demo_run / "results.json").read_text()))
    text = README.read_text(encoding="utf-8")
    stored = text.split(START, 1)[1].split(END, 1)[0].strip()
    number = re.compile(r"\d+\.\d+")
    mine, theirs = [float(x) for x in number.findall(stored)], [float(x) for x in number.findall(fresh)]
    assert len(mine) == len(theirs), "the README's demo block has another shape: run scripts/update_readme_demo.py"
    worst = max((abs(a - b) for a, b in zip(mine, theirs)), default=0.0)
    assert worst <= 0.01, (
        f"README demo numbers differ from a fresh run by {worst:.3f}: run scripts/update_readme_demo.py"
    )


def test_the_pytest_example_names_a_config_that_exists(demo_run: Path):
    text = README.read_text(encoding="utf-8")
    paths = re.findall(r"--cvaudit-config (\S+)", text)
    assert paths and all(p == "cvaudit-demo/workspace/config.yaml" for p in paths), paths
    assert (demo_run / "workspace" / "config.yaml").is_file()
