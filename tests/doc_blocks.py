"""Run the fenced code blocks of README.md and of the documentation pages (docs/) on the demo workspace.

Shared by ``tests/test_readme.py`` and ``tests/test_docs.py``. Fenced blocks are taken from a
Markdown file in order and run in a sandbox built from one real ``cvaudit demo`` run:

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

A ``text`` block (a command synopsis) is documentation only. A command may exit 0 or 1 (a failed
gate, an untrusted signature), never 2 (bad input) and never with a traceback. A block that cannot
run here says why in a ``<!-- readme-test: skip (reason) -->`` line right above it; any other block
is run, so an example cannot drift from the code.
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

ROOT = Path(__file__).resolve().parents[1]
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((.+)\)\s*-->")
RUNNABLE = {"cvaudit", "pytest", "pdfsig", "pdfdetach", "openssl", "sha256sum", "python3", "python"}
LANGUAGES = ("bash", "yaml", "python", "text")


@dataclass(frozen=True)
class Block:
    """One fenced block: its file (relative to the repository root), first line, language and text."""

    path: str
    line: int
    lang: str
    text: str
    skip: str | None

    @property
    def name(self) -> str:
        return f"{self.path}:{self.line} ({self.lang})"

    @property
    def stem(self) -> str:
        """A Python identifier naming the block, for the files it is written to."""
        return re.sub(r"\W", "_", f"{Path(self.path).with_suffix('')}_{self.line}")


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, in order, with their skip reason if marked."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = path.relative_to(ROOT).as_posix()
    found, i = [], 0
    while i < len(lines):
        match = re.match(r"^```(\w*)\s*$", lines[i])
        if not match:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        marker = SKIP.search(lines[i - 1]) if i else None
        found.append(
            Block(rel, i + 1, match.group(1), "\n".join(lines[i + 1 : end]) + "\n", marker.group(1) if marker else None)
        )
        i = end + 1
    return found


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


def not_runnable(found: list[Block]) -> list[str]:
    """Why each block that is neither run nor marked with a skip reason cannot run here (empty: all fine)."""
    problems = [
        f"{b.name}: neither run nor marked '<!-- readme-test: skip (reason) -->'"
        for b in found
        if b.skip is None and b.lang not in LANGUAGES
    ]
    for block in found:
        if block.lang == "bash" and block.skip is None:
            for command in commands(block.text):
                words = shlex.split(command, comments=True)
                word = next(w for w in words if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w))  # after VAR=value
                if word not in RUNNABLE:
                    problems.append(f"{block.name}: {word!r} cannot run here; mark the block with a reason")
    return problems


def make_sandbox(demo_run: Path, box: Path) -> Path:
    """Lay out ``box`` as the examples assume, from one real demo run."""
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


def run_block(block: Block, sandbox: Path) -> None:
    """Run one block in the sandbox as the module docstring says; fail the test with its output."""
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
    elif block.lang == "python":
        defines_tests = re.search(r"^def test_", block.text, re.M) is not None
        name = f"test_{block.stem}.py" if defines_tests else f"{block.stem}.py"
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
    else:
        pytest.fail(f"{block.name}: no way to run a {block.lang!r} block")


def relative_links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every relative Markdown link and image in a file, outside code blocks."""
    found, fence = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            fence = not fence
            continue
        if fence:
            continue
        for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", line)):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):
                found.append((number, target))
    return found


def anchors(path: Path) -> set[str]:
    """The heading anchors of a Markdown file, as GitHub and MkDocs' toc extension spell them."""
    found, fence = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = not fence
            continue
        match = None if fence else re.match(r"^#{1,6} (.+)$", line)
        if match:
            text = re.sub(r"[`*]", "", match.group(1)).strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return found
