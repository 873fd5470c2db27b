"""The detector loop example really improves the detector under the failing conditions (not just that it runs)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "detector_loop" / "detector_loop.py"


@pytest.mark.slow
def test_the_recipe_fine_tune_gains_under_the_failing_conditions(tmp_path):
    spec = importlib.util.spec_from_file_location("detector_loop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary = module.detector_loop(tmp_path, control=False)
    before, after, failing = summary["before"], summary["after"]["recipe"], summary["failing"]
    # the failing conditions are the recipe's: every condition of a recipe stressor within its severity range
    assert failing and all(c in before and c != "clean" for c in failing)
    gain_map = sum(after[c]["map"] - before[c]["map"] for c in failing) / len(failing)
    gain_recall = sum(after[c]["recall"] - before[c]["recall"] for c in failing) / len(failing)
    assert summary["gain"]["recipe"]["map"] == pytest.approx(gain_map)
    assert gain_map > 0 and gain_recall > 0, summary["gain"]
    assert (tmp_path / "queue" / "tasks.json").is_file()
    assert json.loads((tmp_path / "gain.json").read_text())["failing"] == failing
