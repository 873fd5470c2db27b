"""The loop example really improves the targeted stressor (not just that it runs)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "loop" / "close_the_loop.py"


@pytest.mark.slow
def test_the_recipe_fine_tune_improves_night_and_the_baseline_comparison_shows_it(tmp_path):
    spec = importlib.util.spec_from_file_location("close_the_loop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    acc = module.close_the_loop(tmp_path)
    night = [c for c in acc["before"] if c.startswith("night@")]
    gain = sum(acc["after"][c] - acc["before"][c] for c in night) / len(night)
    assert gain >= 0.10, acc  # the recipe's top stressors are night and occlusion
    assert acc["after"]["clean"] >= acc["before"]["clean"] - 0.02
    after = json.loads((tmp_path / "audit-after" / "results.json").read_text())
    rows = {r["condition"]: r for r in after["baseline_comparison"] if r["attribute"] is None}
    assert rows["night@3"]["delta"] >= 0.10 and rows["night@3"]["status"] == "ok"
    assert (tmp_path / "queue" / "tasks.json").is_file() and (tmp_path / "recipe.yaml").is_file()
