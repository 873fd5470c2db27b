"""The ImageNet-C example on the demo: the suite runs, the report shows the heat map and mCE against the baseline."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

import stressors
from audit.contract.corruption_suite import BENCHMARK, CORRUPTIONS, HELD_OUT

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "imagenet_c" / "run_example.py"


@pytest.mark.slow
def test_the_suite_runs_on_the_demo_against_the_deployed_models_run(tmp_path):
    spec = importlib.util.spec_from_file_location("imagenet_c_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    registered = [c for c in CORRUPTIONS if c in stressors.available()]
    # every corruption once the 19 are registered; until then the registered ones (the suite names the others)
    outs = module.run_example(
        tmp_path, corruptions=None if registered == list(CORRUPTIONS) else registered, samples=200
    )
    deployed = json.loads((outs["deployed"] / "results.json").read_text())
    candidate = json.loads((outs["candidate"] / "results.json").read_text())
    section = candidate["imagenet_c"]
    assert [r["corruption"] for r in section["corruptions"]] == registered
    assert section["complete"] == (registered == list(CORRUPTIONS))
    assert section["baseline"]["kind"] == "results"
    base_acc = {c["id"]: c["metrics"]["accuracy"] for c in deployed["conditions"]}
    acc = {c["id"]: c["metrics"]["accuracy"] for c in candidate["conditions"]}
    ces = {}
    for row in section["corruptions"]:
        ids = [f"{row['corruption']}@{s}" for s in range(1, 6)]
        ces[row["corruption"]] = sum(1 - acc[i] for i in ids) / sum(1 - base_acc[i] for i in ids)
        assert row["ce"] == pytest.approx(ces[row["corruption"]])
    main = [ces[c] for c in registered if c in BENCHMARK]
    assert section["mce"] == pytest.approx(sum(main) / len(main))
    held = [ces[c] for c in registered if c in HELD_OUT]
    assert section["held_out_mce"] == (pytest.approx(sum(held) / len(held)) if held else None)
    rules = {r["id"]: r for r in candidate["policy"]["rules"]}
    assert rules["mce"]["observed"] == pytest.approx(section["mce"])
    assert rules["mce"]["status"] == ("pass" if section["mce"] <= 1.0 else "fail")
    # the report: the section, its heat map and CE bars against the deployed model, a preview per condition
    html = (outs["candidate"] / "report.html").read_text()
    part = re.search(r'<section id="corruptions".*?</section>', html, re.DOTALL).group(0)
    assert f'<th scope="row">mCE</th><td class="num">{section["mce"]:.3f}</td>' in part
    assert "<title>Corruption error by severity." in part and "<title>Corruption error against the baseline run" in part
    assert part.count("on an audit image") == 5 * len(registered)
    assert deployed["imagenet_c"]["baseline"]["kind"] == "alexnet"
