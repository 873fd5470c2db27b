"""Typed results end to end: after the one reader, product code reads the Results model, never a dict of it.

An AST scan of the product packages finds every ``.to_dict()`` call; only the places named
in :data:`ALLOWED` may make one. The test fails on a new call, and on an allowance whose call
is gone (so the list cannot rot).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("audit", "reports", "policies")

#: (file, enclosing function) -> why a ``.to_dict()`` call is allowed there.
ALLOWED = {
    ("reports/__init__.py", "results_json_bytes"): "the one writer of results.json serialises the model",
    ("audit/cli/report.py", "verify_command"): "a verification report (reports.verify), not results",
}


def _to_dict_calls(path: Path) -> list[tuple[str, int]]:
    """(enclosing function, line) of every ``<expr>.to_dict()`` call in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute)
                and child.func.attr == "to_dict"
                and not child.args
                and not child.keywords
            ):
                found.append((function, child.lineno))
            visit(child, name)

    visit(tree, "<module>")
    return found


def _calls() -> dict[tuple[str, str], list[int]]:
    calls: dict[tuple[str, str], list[int]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for function, line in _to_dict_calls(path):
                calls.setdefault((rel, function), []).append(line)
    return calls


def test_no_product_code_turns_results_back_into_a_dict():
    calls = _calls()
    unexpected = [
        f"{rel}:{lines[0]} in {function}()"
        for (rel, function), lines in calls.items()
        if (rel, function) not in ALLOWED
    ]
    assert not unexpected, (
        "read the Results model's attributes instead of .to_dict() (or add the place to ALLOWED with a reason): "
        + ", ".join(unexpected)
    )


def test_every_allowance_is_still_needed():
    calls = _calls()
    stale = [f"{rel} {function}()" for rel, function in ALLOWED if (rel, function) not in calls]
    assert not stale, f"ALLOWED names places that no longer call .to_dict(): {', '.join(stale)}"


def test_the_scan_finds_a_call(tmp_path):
    """The scan itself: a call inside a method is found with its function; a definition is not a call."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "class A:\n    def to_dict(self):\n        return {}\n\n"
        "def read(results):\n    data = results.to_dict()\n    return data\n",
        encoding="utf-8",
    )
    assert _to_dict_calls(sample) == [("read", 6)]
