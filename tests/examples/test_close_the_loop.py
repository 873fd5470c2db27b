"""The loop example really improves the targeted stressor (not just that it runs)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "loop" / "close_the_loop.py"


@pytest.mark.slow
def test_the_recipe_fine_tune_improves_its_top_stressor_and_the_baseline_comparison_shows_every_change(tmp_path):
    spec = importlib.util.spec_from_file_location("close_the_loop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    acc = module.close_the_loop(tmp_path)
    recipe = yaml.safe_load((tmp_path / "recipe.yaml").read_text())
    top = max(recipe["stressors"], key=lambda s: s["weight"])["stressor"]  # where the model lost most accuracy
    targeted = [c for c in acc["before"] if c.startswith(f"{top}@")]
    gain = sum(acc["after"][c] - acc["before"][c] for c in targeted) / len(targeted)
    assert gain >= 0.10, (top, acc)
    assert acc["after"]["clean"] >= acc["before"]["clean"] - 0.02
    after = json.loads((tmp_path / "audit-after" / "results.json").read_text())
    rows = {r["condition"]: r for r in after["baseline_comparison"] if r["attribute"] is None}
    assert rows[f"{top}@3"]["delta"] >= 0.10 and rows[f"{top}@3"]["status"] == "ok"
    # the re-audit states every change against the baseline, a loss elsewhere included
    for cid, row in rows.items():
        delta = acc["after"][cid] - acc["before"][cid]
        assert row["delta"] == pytest.approx(delta, abs=1e-9)
        assert row["status"] == ("regressed" if delta < -0.01 else "ok"), row  # tolerance: one point
    assert (tmp_path / "queue" / "tasks.json").is_file() and (tmp_path / "recipe.yaml").is_file()
