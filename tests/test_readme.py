"""The README is true and short: every config, policy and command in it runs on the demo workspace.

The README is the short version; the manual is the documentation site in ``docs/``
(``tests/test_docs.py`` runs its examples). Blocks are run as ``tests/doc_blocks.py`` says: a
``yaml`` config is run with ``cvaudit run``, a policy judged with ``cvaudit policy check``, ``bash``
commands run in a sandbox built from one real demo run, ``python`` executed; a block that cannot run
here says why in a ``<!-- readme-test: skip (reason) -->`` line right above it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from doc_blocks import ROOT, Block, anchors, blocks, make_sandbox, not_runnable, relative_links, run_block

README = ROOT / "README.md"
BLOCKS = blocks(README)
#: The README's length limit (issue 24): what cvaudit is, install, quickstart, a config, the gate, layout, links.
MAX_LINES = 250


def test_every_block_is_run_or_says_why_not():
    assert not not_runnable(BLOCKS), "\n".join(not_runnable(BLOCKS))


def test_the_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"README.md has {lines} lines; move the detail into docs/ (at most {MAX_LINES})"


def test_the_quickstart_commands_are_there():
    quickstart = next(b for b in BLOCKS if "make demo" in b.text)
    assert [c.split()[:2] for c in quickstart.text.splitlines()][:2] == [["make", "demo"], ["make", "test"]]


def test_the_readme_names_the_exit_codes():
    text = README.read_text(encoding="utf-8")
    for code, words in (("0", "passed"), ("1", "failed"), ("2", "could not run")):
        assert re.search(rf"^\| {code} \| [^\n]*{words}", text, re.M), f"exit code {code} ({words}) missing"


def test_relative_links_resolve():
    bad = []
    for line, target in relative_links(README):
        path, _, anchor = target.partition("#")
        resolved = (README.parent / path) if path else README
        if not resolved.exists():
            bad.append(f"README.md:{line}: {target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            bad.append(f"README.md:{line}: {target} (no such heading)")
    assert not bad, "\n".join(bad)


@pytest.fixture(scope="module")
def sandbox(demo_run: Path, tmp_path_factory) -> Path:
    """A folder laid out as the README's examples assume, from one real demo run."""
    return make_sandbox(demo_run, tmp_path_factory.mktemp("readme"))


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.skip is None and b.lang != "text"], ids=lambda b: b.name)
def test_readme_block_runs(block: Block, sandbox: Path):
    run_block(block, sandbox)
