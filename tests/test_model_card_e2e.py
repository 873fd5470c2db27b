"""End to end: a signed `cvaudit run`, then `cvaudit model-card` in every format from its folder."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml
from click.testing import CliRunner
from cvaudit_fixtures import write_config

from audit.cli import main
from reports.keys import keygen


@pytest.mark.slow
def test_cards_of_a_signed_run(workspace, tmp_path):
    keygen(workspace / "keys")
    cfg = write_config(workspace, extra="", stressors="  - {name: night, severities: [3]}\n")
    cfg.write_text(
        cfg.read_text().replace("report:\n  formats: [html]\n", "report:\n  formats: [html]\n  sign_key: keys\n")
    )
    out = workspace / "out"
    runner = CliRunner()
    assert runner.invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"]).exit_code == 0
    results = json.loads((out / "results.json").read_text())
    digest = hashlib.sha256((out / "attestation.dsse.json").read_bytes()).hexdigest()

    cards = {}
    for fmt in ("huggingface", "mct", "markdown"):
        target = tmp_path / f"card.{fmt}"
        result = runner.invoke(main, ["model-card", str(out), "--format", fmt, "--out", str(target)])
        assert result.exit_code == 0, result.output
        cards[fmt] = target.read_text()
        assert digest in cards[fmt]

    meta = yaml.safe_load(cards["huggingface"].split("---\n")[1])
    metrics = {r["dataset"]["config"]: r["metrics"] for r in meta["model-index"][0]["results"]}
    assert set(metrics) == {"clean", "night@3"}
    for c in results["conditions"]:
        accuracy = next(m for m in metrics[c["id"]] if m["type"] == "accuracy")
        assert accuracy["value"] == c["metrics"]["accuracy"]
    doc = json.loads(cards["mct"])
    groups = {m["slice"]: m for m in doc["quantitative_analysis"]["performance_metrics"] if m["type"] == "accuracy"}
    for g in results["conditions"][1]["groups"]:
        assert float(groups[f"night@3 | camera={g['value']}"]["value"]) == g["metrics"]["accuracy"]
    # the run folder is untouched: it still verifies
    assert runner.invoke(main, ["verify", str(out), "--key", str(workspace / "keys")]).exit_code == 0
