"""Regenerate the demo numbers of the documentation (``docs/getting-started.md``) from a ``make demo`` run.

Usage (after ``make demo``)::

    .venv/bin/python scripts/update_readme_demo.py [cvaudit-demo] [--check]

Rewrites the block of ``docs/getting-started.md`` between ``<!-- demo-numbers:start -->`` and
``<!-- demo-numbers:end -->`` from ``cvaudit-demo/results.json``; with
``--check`` it only reports whether the page still says what the run says
(exit 1 when not). ``tests/test_docs.py`` compares the page's numbers with a
fresh demo run. (The script keeps its name from when the numbers were in the README.)
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- demo-numbers:start -->", "<!-- demo-numbers:end -->"
#: The page that holds the demo numbers, relative to the repository root.
PAGE = "docs/getting-started.md"


def _acc(node: dict[str, Any]) -> float:
    return float(node["metrics"]["accuracy"])


def _group(cond: dict[str, Any], attribute: str, value: str) -> float:
    return next(_acc(g) for g in cond["groups"] if g["attribute"] == attribute and g["value"] == value)


def render(results: dict[str, Any]) -> str:
    """The demo-numbers block of ``docs/getting-started.md`` for these demo results."""
    conditions = {c["id"]: c for c in results["conditions"]}
    clean = conditions["clean"]
    by_stressor: dict[str, dict[float, float]] = defaultdict(dict)
    for c in results["conditions"]:
        if c["stressor"] is not None and not c.get("model_aware"):
            by_stressor[c["stressor"]][c["severity"]] = _acc(c)
    levels = sorted({s for table in by_stressor.values() for s in table})
    lines = [
        f"Clean accuracy is {_acc(clean):.3f} (camera A {_group(clean, 'camera', 'A'):.3f}, "
        f"B {_group(clean, 'camera', 'B'):.3f}) on {clean['metrics']['n']} images. Accuracy per stressor and "
        "severity (seed 0; ten classes, so chance is 0.10):",
        "",
        "| stressor | clean | " + " | ".join(str(int(s)) for s in levels) + " |",
        "|---|---:|" + "---:|" * len(levels),
    ]
    for name, table in by_stressor.items():
        cells = [f"{table[s]:.3f}" if s in table else "—" for s in levels]
        lines.append(f"| `{name}` | {_acc(clean):.3f} | " + " | ".join(cells) + " |")
    attacks: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in results["conditions"]:
        if c.get("model_aware"):
            attacks[c["stressor"]].append(c)
    lines.append("")
    for name, conds in attacks.items():
        points = ", ".join(
            f"{_acc(c):.3f} at ε = {c['severity']:g}" for c in sorted(conds, key=lambda c: c["severity"])
        )
        subset = conds[0].get("attack_subset")
        lines.append(
            f"Under {name} ({subset or clean['metrics']['n']} stratified samples) robust accuracy is {points}."
        )
    night3 = conditions.get("night@3")
    if night3 is not None:
        lines.append(
            f"At night severity 3 camera B keeps {_group(night3, 'camera', 'B'):.3f} accuracy against camera A's "
            f"{_group(night3, 'camera', 'A'):.3f}, the kind of fairness-under-stress finding the report puts first."
        )
    policy = results["policy"]
    counts = policy["counts"]
    governance = policy.get("governance_counts") or {}
    lines.append(
        f"The `{policy['name']}` policy's verdict is {policy['verdict'].upper()}: "
        + ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(counts.items()))
        + " rule outcome(s); governance: "
        + ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(governance.items()))
        + "."
    )
    return "\n".join(lines)


def replace_block(page: str, block: str) -> str:
    """``page`` with the text between the markers replaced by ``block``."""
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block}\n{END}{tail}"


def main(argv: list[str]) -> int:
    import json

    folder = Path(next((a for a in argv if not a.startswith("--")), "cvaudit-demo"))
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    page_path = ROOT / PAGE
    page = page_path.read_text(encoding="utf-8")
    updated = replace_block(page, render(results))
    if "--check" in argv:
        ok = updated == page
        print(f"{PAGE}: demo numbers are " + ("up to date" if ok else f"stale; run {Path(__file__).name}"))
        return 0 if ok else 1
    page_path.write_text(updated, encoding="utf-8")
    print(f"{PAGE}: demo numbers from {folder / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
