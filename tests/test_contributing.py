"""CONTRIBUTING.md's "Where a change goes" table is true: each path and test it names exists, and the
two answers no other test keeps (stressors and CLI commands) are checked here."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import click
import pytest

import stressors
from audit.cli import COMMANDS
from stressors.base import ImageStressor

ROOT = Path(__file__).resolve().parents[1]
CONCEPTS = ("stressor", "metric", "governance check", "report section", "CLI command")


def _table() -> dict[str, tuple[str, str]]:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    section = text.split("## Where a change goes", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in CONCEPTS:
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def test_the_table_answers_every_concept_in_one_line():
    assert set(_table()) == set(CONCEPTS)


@pytest.mark.parametrize("concept", CONCEPTS)
def test_every_path_and_test_named_exists(concept):
    goes_in, kept_by = _table()[concept]
    for path in re.findall(r"`([\w./-]+/[\w./-]*)`", goes_in):
        assert (ROOT / path).exists(), f"{concept}: {path} does not exist"
    tests = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", kept_by)
    assert tests, f"{concept}: no test keeps the answer true"
    for path, name in tests:
        tree = ast.parse((ROOT / path).read_text())
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert name in defined, f"{concept}: {path} has no {name}"


def _stressor_modules():
    for info in pkgutil.walk_packages(stressors.__path__, prefix="stressors."):
        if info.name in {"stressors.testing"}:  # the conformance suite's deliberately broken examples
            continue
        yield importlib.import_module(info.name)


def test_every_stressor_class_is_registered():
    registered = {stressors.factory(name) for name in stressors.available()}
    concrete = {
        cls
        for module in _stressor_modules()
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, ImageStressor)
        and cls.__module__ == module.__name__
        and not inspect.isabstract(cls)
        and getattr(cls, "name", "")
    }
    assert concrete, "no stressor class found"
    unregistered = sorted(c.__qualname__ for c in concrete - registered)
    assert not unregistered, f"stressor classes without an entry point in pyproject.toml: {unregistered}"


def _reachable(command: click.Command) -> list[click.Command]:
    found = [command]
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            found += _reachable(sub)
    return found


def test_every_cli_command_is_registered_wrapped_and_documented():
    registered: list[click.Command] = []
    for target in COMMANDS.values():
        module, _, attribute = target.partition(":")
        registered += _reachable(getattr(importlib.import_module(module), attribute))
    cli = ROOT / "audit" / "cli"
    defined = [
        value
        for path in sorted(cli.glob("*.py"))
        for value in vars(importlib.import_module(f"audit.cli.{path.stem}")).values()
        if isinstance(value, click.Command) and value.callback is not None
    ]
    missing = sorted({c.name for c in defined if c not in registered and c.name != "main"})
    assert not missing, f"click commands in audit/cli not reachable from COMMANDS: {missing}"
    leaves = [c for c in registered if not isinstance(c, click.Group)]
    unwrapped = sorted(c.name for c in leaves if not getattr(c.callback, "__cvaudit_boundary__", False))
    assert not unwrapped, f"commands not wrapped in @boundary: {unwrapped}"
    docs = "\n".join(p.read_text() for p in (ROOT / "docs").rglob("*.md"))
    undocumented = sorted(name for name in COMMANDS if f"cvaudit {name}" not in docs)
    assert not undocumented, f"commands the docs never show: {undocumented}"


def test_test_module_names_are_unique():
    """Test folders are not packages (pytest's rootdir-relative import): two test files with one basename
    break collection of the whole suite, so each name is used once."""
    names: dict[str, list[str]] = {}
    for path in (ROOT / "tests").rglob("*.py"):
        if path.name != "conftest.py" and "node_modules" not in path.parts:
            names.setdefault(path.name, []).append(path.relative_to(ROOT).as_posix())
    clashes = {name: paths for name, paths in names.items() if len(paths) > 1}
    assert not clashes, f"test modules sharing a name: {clashes}"
