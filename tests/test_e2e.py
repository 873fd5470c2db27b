"""End to end: `cvaudit run` on a tiny generated dataset; exit codes 0, 1 and 2; bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from cvaudit_fixtures import ConstantNet, save_model, write_config

from audit.cli import main
from audit.contract.results import SCHEMA_VERSION
from audit.contract.schema import shipped_schema


def run(cfg: Path, out: Path, *args: str):
    return CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet", *args])


def test_pass_writes_every_output(workspace):
    out = workspace / "out"
    result = run(write_config(workspace), out)
    assert result.exit_code == 0, result.output
    for name in ("results.json", "predictions.csv", "report.html", "junit.xml"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    jsonschema.validate(results, shipped_schema())  # an independent validator, the shipped schema
    assert results["schema_version"] == SCHEMA_VERSION and results["policy"]["verdict"] == "pass"
    ids = [c["id"] for c in results["conditions"]]
    assert ids == ["clean", "night@1", "night@5", "blur@1", "blur@5"]
    clean = results["conditions"][0]
    assert clean["metrics"]["n"] == 24 and clean["metrics"]["accuracy"] == 1.0
    assert {"accuracy_ci", "ece", "ece_ci", "mce", "brier", "nll", "macro_f1", "balanced_accuracy"} <= set(
        clean["metrics"]
    )
    groups = {(g["attribute"], g["value"]): g["metrics"]["n"] for g in clean["groups"]}
    assert groups == {("camera", "A"): 12, ("camera", "B"): 12}
    with open(out / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 24 * 5
    assert list(rows[0]) == [
        "sample_id",
        "condition",
        "stressor",
        "severity",
        "label",
        "prediction",
        "confidence",
        "p_true",
        "prob_sq_sum",
        "camera",
    ]
    # predictions.csv agrees with results.json (an independent recount).
    clean_rows = [r for r in rows if r["condition"] == "clean"]
    assert sum(r["label"] == r["prediction"] for r in clean_rows) / len(clean_rows) == clean["metrics"]["accuracy"]
    night5 = [r for r in rows if r["condition"] == "night@5"]
    acc5 = sum(r["label"] == r["prediction"] for r in night5) / len(night5)
    assert acc5 == pytest.approx(next(c for c in results["conditions"] if c["id"] == "night@5")["metrics"]["accuracy"])


def test_blocking_failure_exits_1(workspace):
    result = run(write_config(workspace, threshold=1.01), workspace / "out")
    assert result.exit_code == 1, result.output
    results = json.loads((workspace / "out" / "results.json").read_text())
    assert results["policy"]["verdict"] == "fail"


def test_same_seed_same_results(workspace):
    cfg = write_config(workspace)
    assert run(cfg, workspace / "a").exit_code == 0
    assert run(cfg, workspace / "b", "--batch-size", "7").exit_code == 0
    a = json.loads((workspace / "a" / "results.json").read_text())
    b = json.loads((workspace / "b" / "results.json").read_text())
    assert_tree_close(a["conditions"], b["conditions"], tol=1e-9)
    rows_a, rows_b = (list(csv.DictReader((workspace / d / "predictions.csv").read_text().splitlines())) for d in "ab")
    assert [(r["sample_id"], r["condition"], r["prediction"]) for r in rows_a] == [
        (r["sample_id"], r["condition"], r["prediction"]) for r in rows_b
    ]
    assert max(abs(float(x["p_true"]) - float(y["p_true"])) for x, y in zip(rows_a, rows_b)) <= 2e-6


def assert_tree_close(a, b, *, tol: float, path: str = "") -> None:
    """Equal structure and integers; floats equal to ``tol`` (summation order may differ)."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=tol, rel=tol), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_tree_close(a[k], b[k], tol=tol, path=f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_tree_close(x, y, tol=tol, path=f"{path}[{i}]")
    else:
        assert a == b, path


def test_skip_bad_images_is_counted(workspace):
    (workspace / "img" / "3.png").write_bytes(b"broken")
    out = workspace / "out"
    result = run(
        write_config(workspace, extra="", stressors="  - {name: night, severities: [1]}\n").parent / "config.yaml", out
    )
    assert result.exit_code == 2 and "img/3.png" in result.output and "corrupt" in result.output
    assert not out.exists()
    cfg = workspace / "config.yaml"
    cfg.write_text(cfg.read_text().replace("num_workers: 0", "num_workers: 0\n  on_bad_image: skip"))
    result = run(cfg, out)
    assert result.exit_code == 0, result.output
    dataset = json.loads((out / "results.json").read_text())["dataset"]
    assert dataset["num_skipped"] == 1 and dataset["skipped"][0]["sample"] == "s003"
    assert dataset["num_samples"] == 23
    assert dataset["skipped_share"] == 1 / 24
    assert (out / "skipped.csv").read_text().splitlines() == [
        "sample_id,reason",
        "s003,not a readable image (corrupt or unknown format)",
    ]


def _bad(workspace: Path, case: str) -> tuple[Path, str]:
    """Set up one bad input; return the config and a fragment the error line must contain."""
    if case == "missing-image":
        (workspace / "img" / "0.png").unlink()
        return write_config(workspace), "img/0.png"
    if case == "label-out-of-range":
        text = (workspace / "manifest.csv").read_text().replace("s001,img/1.png,1", "s001,img/1.png,7")
        (workspace / "manifest.csv").write_text(text)
        return write_config(workspace), "manifest.csv: line 3 (sample s001): label '7' (column 'label') is not a class"
    if case == "label-beyond-the-model":  # integer labels without class names: checked against the model's outputs
        text = (workspace / "manifest.csv").read_text().replace("s001,img/1.png,1", "s001,img/1.png,7")
        (workspace / "manifest.csv").write_text(text)
        cfg = write_config(workspace)
        cfg.write_text(cfg.read_text().replace("  class_names: [red, green, blue]\n", ""))
        return cfg, "manifest.csv: line 3 (sample s001): label 7 is outside the model's 3 classes (0..2)"
    if case == "same-image-twice":
        text = (workspace / "manifest.csv").read_text().replace("s002,img/2.png", "s002,./img/1.png")
        (workspace / "manifest.csv").write_text(text)
        return write_config(
            workspace
        ), "line 4 (sample s002): image 'img/1.png' is already listed at line 3 (sample s001)"
    if case == "empty-dataset":
        (workspace / "manifest.csv").write_text("sample_id,path,label,camera\n")
        return write_config(workspace), "empty"
    if case == "width-mismatch":
        save_model(workspace / "wide.pt", ConstantNet(0.0, 5))
        return write_config(workspace, model="wide.pt"), "outputs 5 classes"
    if case == "nan-output":
        save_model(workspace / "nan.pt", ConstantNet(float("nan"), 3))
        return write_config(workspace, model="nan.pt"), "NaN or inf"
    if case == "probabilities-not-normalised":
        save_model(workspace / "prob.pt", ConstantNet(0.5, 3))
        cfg = write_config(workspace, model="prob.pt")
        cfg.write_text(cfg.read_text().replace("  path: prob.pt", "  path: prob.pt\n  outputs: probabilities"))
        return cfg, "do not sum to 1"
    if case == "wrong-input-channels":
        import torch

        save_model(
            workspace / "gray.pt",
            torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()),
        )
        return write_config(workspace, model="gray.pt"), "forward pass failed on a (1, 3, 16, 16) input"
    if case == "unknown-key":
        cfg = write_config(workspace)
        cfg.write_text(cfg.read_text() + "colour: red\n")
        return cfg, "colour: unknown key"
    if case == "missing-model":
        return write_config(workspace, model="nothing.pt"), "model file not found"
    if case == "unreadable-model":
        (workspace / "junk.pt").write_bytes(b"junk")
        return write_config(workspace, model="junk.pt"), "unreadable model file"
    if case == "unknown-stressor":
        return write_config(workspace, stressors="  - {name: hailstorm}\n"), "hailstorm"
    if case == "out-is-a-file":
        return write_config(workspace), "exists and is not a folder"
    if case == "missing-config":
        return workspace / "nope.yaml", "config file not found"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "missing-image",
        "label-out-of-range",
        "label-beyond-the-model",
        "same-image-twice",
        "empty-dataset",
        "width-mismatch",
        "nan-output",
        "probabilities-not-normalised",
        "wrong-input-channels",
        "unknown-key",
        "missing-model",
        "unreadable-model",
        "unknown-stressor",
        "missing-config",
        "out-is-a-file",
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_report(workspace, case):
    cfg, fragment = _bad(workspace, case)
    out = workspace / "out"
    if case == "out-is-a-file":
        out.write_text("not a folder")
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cvaudit: error: "), result.output
    assert fragment in lines[0]
    assert not out.exists() or out.is_file() or not any(out.iterdir())


@pytest.mark.slow
def test_signed_run_verifies_and_detects_tampering(workspace):
    keys = workspace / "keys"
    assert CliRunner().invoke(main, ["keygen", "--out", str(keys)]).exit_code == 0
    cfg = write_config(workspace, stressors="  - {name: night, severities: [3]}\n", extra="  sign_key: keys\n")
    cfg.write_text(cfg.read_text().replace("formats: [html]", "formats: [html, pdf]"))
    out = workspace / "out"
    result = run(cfg, out)
    assert result.exit_code == 0, result.output
    for name in ("report.pdf", "attestation.dsse.json"):
        assert (out / name).is_file()
    verify = CliRunner().invoke(main, ["verify", str(out), "--key", str(keys)])
    assert verify.exit_code == 0, verify.output
    envelope = json.loads((out / "attestation.dsse.json").read_text())
    import base64

    statement = json.loads(base64.b64decode(envelope["payload"]))
    subjects = {s["name"] for s in statement["subject"]}
    assert {"results.json", "predictions.csv", "junit.xml", "report.html", "report.pdf"} <= subjects
    assert {"groups.csv", "skipped.csv", "governance.csv"} <= subjects
    assert any(name.startswith("model:") or name.endswith("model.pt") for name in subjects), subjects
    data = bytearray((out / "predictions.csv").read_bytes())
    data[-3] ^= 1
    (out / "predictions.csv").write_bytes(bytes(data))
    tampered = CliRunner().invoke(main, ["verify", str(out), "--key", str(keys)])
    assert tampered.exit_code == 1 and "predictions.csv" in tampered.output


def test_bad_sign_key_exits_2_before_any_output(workspace):
    (workspace / "keys").mkdir()
    cfg = write_config(workspace, stressors="", extra="  sign_key: keys\n")
    out = workspace / "out"
    result = run(cfg, out)
    assert result.exit_code == 2 and "keys" in result.output
    assert not out.exists() or not any(out.iterdir())


def test_missing_attribute_values_are_a_reported_group(workspace):
    text = (workspace / "manifest.csv").read_text().replace("s001,img/1.png,1,A", "s001,img/1.png,1,")
    (workspace / "manifest.csv").write_text(text)
    out = workspace / "out"
    assert run(write_config(workspace, stressors=""), out).exit_code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["attributes"]["camera"] == {"<missing>": 1, "A": 11, "B": 12}
    groups = {g["value"]: g for g in results["conditions"][0]["groups"]}
    assert groups["<missing>"]["metrics"]["n"] == 1 and groups["<missing>"]["insufficient_data"]


def test_baseline_comparison(workspace):
    cfg = write_config(workspace, stressors="  - {name: night, severities: [5]}\n")
    assert run(cfg, workspace / "old").exit_code == 0
    result = run(cfg, workspace / "new", "--baseline", str(workspace / "old" / "results.json"))
    assert result.exit_code == 0, result.output
    comparison = json.loads((workspace / "new" / "results.json").read_text())["baseline_comparison"]
    overall = (
        [c for c in comparison if c["attribute"] is None] if any("attribute" in c for c in comparison) else comparison
    )
    assert {c["condition"] for c in overall} >= {"clean", "night@5"}
    assert all(c["delta"] == 0 and not c["regressed"] for c in comparison if c.get("delta") is not None)
    bad = run(cfg, workspace / "x", "--baseline", str(workspace / "nothing.json"))
    assert bad.exit_code == 2 and "--baseline: " in bad.output and "results file not found" in bad.output


def test_attack_subset_is_compared_like_for_like(workspace):
    cfg = write_config(workspace, stressors="  - {name: pgd, epsilons: [0.0, 0.05], steps: 5}\n")
    out = workspace / "out"
    result = run(cfg, out, "--attack-samples", "9")
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    pgd = {c["id"]: c for c in results["conditions"] if c["model_aware"]}
    assert set(pgd) == {"pgd@0", "pgd@0.05"}
    assert all(c["metrics"]["n"] == 9 and c["attack_subset"] == 9 for c in pgd.values())
    assert results["evaluation"]["attack_samples"] == 9
    reference = results["attack_reference"]
    assert reference["metrics"]["n"] == 9 and reference["metrics"]["accuracy"] == pgd["pgd@0"]["metrics"]["accuracy"]
    drop0 = next(r for r in results["robustness"] if r["condition"] == "pgd@0")
    assert drop0["drop"] == 0
    zero = next(c for c in results["adversarial_checks"] if c["check"] == "adversarial.zero_epsilon_matches_clean")
    assert zero["status"] == "pass"
    with open(out / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sum(r["condition"] == "pgd@0.05" for r in rows) == 9


def test_factory_beside_the_config_from_another_folder(workspace, monkeypatch, tmp_path_factory):
    (workspace / "mynet.py").write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return 8.0 * x.mean(dim=(2, 3))\n"
        "def make():\n"
        "    return Net()\n"
        "def broken():\n"
        "    raise RuntimeError('boom')\n"
    )
    cfg = write_config(workspace, stressors="")
    cfg.write_text(cfg.read_text().replace("  path: model.pt", "  factory: 'mynet:make'"))
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    assert run(cfg, workspace / "out").exit_code == 0
    cfg.write_text(cfg.read_text().replace("mynet:make", "mynet:broken"))
    result = run(cfg, workspace / "out2")
    assert result.exit_code == 2 and "'mynet:broken' raised RuntimeError: boom" in result.output


def test_attack_samples_must_be_positive(workspace):
    result = run(write_config(workspace, stressors=""), workspace / "out", "--attack-samples", "0")
    assert result.exit_code == 2 and "--attack-samples" in result.output


def test_report_language_is_recorded_and_declared(workspace):
    out = workspace / "out"
    result = run(write_config(workspace, extra="  language: en-GB\n", stressors=""), out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "results.json").read_text())["report"] == {"language": "en-GB"}
    assert '<html lang="en-GB">' in (out / "report.html").read_text()
