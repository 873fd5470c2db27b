"""The ImageNet-C suite through `cvaudit run`: bad input is one line and exit 2 before any image; a baseline run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cvaudit_fixtures import ConstantNet, save_model, write_config

import stressors
from audit.cli import main

RULES = """\
  - id: mce
    section: imagenet_c
    metric: mce
    max: 1.0
    blocking: true
  - id: relative-mce
    section: imagenet_c
    metric: relative_mce
    max: 1.0
    blocking: false
"""


def _config(root: Path, benchmark: str, *, name: str = "config.yaml", rules: str = "", model: str = "model.pt") -> Path:
    cfg = write_config(root, model=model, stressors="", extra=f"benchmark:\n{benchmark}")
    if rules:
        policy = root / "policy.yaml"
        policy.write_text(policy.read_text() + rules)
    return cfg.rename(root / name)


def _run(cfg: Path, out: Path):
    return CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"])


def _break_images(root: Path) -> None:
    """Every image unreadable: a run that reached the pixels would fail on the first one, naming it."""
    for png in (root / "img").glob("*.png"):
        png.write_bytes(b"not a png")


def _one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("benchmark", "needles"),
    [
        ("  corruptions: [gaussian_noise, fake_blur]\n", ("benchmark.corruptions", "unknown corruption 'fake_blur'")),
        ("  corruptions: [contrast]\n  severities: [1, 6]\n", ("benchmark.severities", "severity 6 is outside 0-5")),
        ("  corruptions: [contrast]\n  severities: [-1]\n", ("benchmark.severities", "severity -1 is outside 0-5")),
        ("  corruptions: [contrast, contrast]\n", ("benchmark.corruptions", "named twice")),
        ("  corruptions: [contrast]\n  severities: [2.5]\n", ("benchmark", "alexnet has published errors at")),
        ("  suite: imagenet-p\n", ("benchmark.suite",)),
        ("  corruptions: [contrast]\n  baseline: missing.json\n", ("benchmark.baseline", "missing.json")),
    ],
)
def test_bad_benchmark_is_one_line_before_any_image(workspace, benchmark, needles):
    _break_images(workspace)
    _one_line_error(_run(_config(workspace, benchmark), workspace / "out"), *needles)
    assert not (workspace / "out" / "results.json").exists()


def test_a_corruption_that_is_not_registered_is_refused(workspace, monkeypatch):
    registered = [n for n in stressors.available() if n != "contrast"]
    monkeypatch.setattr(stressors, "available", lambda: registered)
    _break_images(workspace)
    line = _one_line_error(
        _run(_config(workspace, "  corruptions: [brightness, contrast]\n"), workspace / "out"),
        "benchmark.corruptions",
        "'contrast' is not a registered stressor",
    )
    assert "registered: brightness" in line


def test_the_default_suite_names_all_19_and_refuses_the_unregistered(workspace, monkeypatch):
    monkeypatch.setattr(stressors, "available", lambda: ["gaussian_noise", "contrast"])
    _break_images(workspace)
    _one_line_error(
        _run(_config(workspace, "  suite: imagenet-c\n"), workspace / "out"),
        "benchmark.corruptions (default: all 19)",
        "'shot_noise' is not a registered stressor",
        "17 of 19 missing",
    )


def test_a_stressor_entry_that_collides_with_the_suite_is_refused(workspace):
    cfg = write_config(
        workspace, stressors="  - {name: contrast, severities: [1]}\n", extra="benchmark:\n  corruptions: [contrast]\n"
    )
    _break_images(workspace)
    _one_line_error(_run(cfg, workspace / "out"), "stressors[0] (contrast)", "also the benchmark's")


def _baseline(workspace: Path, corruptions: str = "[brightness, contrast]", severities: str = "[1, 3]") -> Path:
    """A real run of another model (always class 0: error 2/3 everywhere) on the same data, as the baseline."""
    save_model(workspace / "constant.pt", ConstantNet(0.0, 3))
    cfg = _config(
        workspace,
        f"  corruptions: {corruptions}\n  severities: {severities}\n",
        name="baseline.yaml",
        model="constant.pt",
    )
    result = _run(cfg, workspace / "baseline")
    assert result.exit_code in (0, 1), result.output  # the gate fails the constant model; its results are written
    return workspace / "baseline" / "results.json"


def test_a_baseline_of_another_dataset_is_refused(workspace):
    baseline = _baseline(workspace)
    manifest = workspace / "manifest.csv"
    manifest.write_text(manifest.read_text().replace("s000", "t000"))  # another dataset: its manifest differs
    _break_images(workspace)
    cfg = _config(workspace, f"  corruptions: [brightness, contrast]\n  severities: [1, 3]\n  baseline: {baseline}\n")
    _one_line_error(_run(cfg, workspace / "out"), str(baseline), "dataset: the baseline ran on another dataset")


@pytest.mark.parametrize(
    ("benchmark", "missing"),
    [
        ("  corruptions: [brightness, contrast, gaussian_noise]\n  severities: [1, 3]\n", "gaussian_noise@1"),
        ("  corruptions: [brightness, contrast]\n  severities: [1, 2, 3]\n", "brightness@2"),
    ],
)
def test_a_baseline_without_the_suite_conditions_is_refused(workspace, benchmark, missing):
    baseline = _baseline(workspace)
    _break_images(workspace)
    cfg = _config(workspace, f"{benchmark}  baseline: baseline/results.json\n")
    _one_line_error(_run(cfg, workspace / "out"), str(baseline), f"no condition {missing!r}")


def test_a_baseline_that_is_not_results_is_refused(workspace):
    (workspace / "other.json").write_text(json.dumps({"hello": 1}))
    _break_images(workspace)
    cfg = _config(workspace, "  corruptions: [contrast]\n  baseline: other.json\n")
    _one_line_error(_run(cfg, workspace / "out"), "benchmark.baseline", "other.json")


def test_a_benchmark_rule_without_a_benchmark_is_refused(workspace):
    cfg = write_config(workspace, stressors="")
    (workspace / "policy.yaml").write_text((workspace / "policy.yaml").read_text() + RULES)
    _one_line_error(_run(cfg, workspace / "out"), "imagenet_c")


def test_a_run_against_its_baseline_run(workspace):
    """CE divides the audited model's summed errors by the baseline run's, condition by condition."""
    _baseline(workspace)
    cfg = _config(
        workspace,
        "  corruptions: [brightness, contrast]\n  severities: [1, 3]\n  baseline: baseline/results.json\n",
        rules=RULES,
    )
    result = _run(cfg, workspace / "out")
    assert result.exit_code == 0, result.output
    results = json.loads((workspace / "out" / "results.json").read_text())
    base = json.loads((workspace / "baseline" / "results.json").read_text())
    section = results["imagenet_c"]
    acc = {c["id"]: c["metrics"]["accuracy"] for c in results["conditions"]}
    base_acc = {c["id"]: c["metrics"]["accuracy"] for c in base["conditions"]}
    ces = []
    for row in section["corruptions"]:
        ids = [f"{row['corruption']}@{s}" for s in (1, 3)]
        errs, base_errs = [1 - acc[i] for i in ids], [1 - base_acc[i] for i in ids]
        assert base_errs == pytest.approx([2 / 3, 2 / 3])  # the constant model is right on one class of three
        assert row["errors"] == pytest.approx(errs) and row["baseline_errors"] == pytest.approx(base_errs)
        assert row["ce"] == pytest.approx(sum(errs) / sum(base_errs))
        assert row["relative_ce"] is None  # the baseline's errors do not grow under the corruption: 0 / 0
        ces.append(row["ce"])
    assert section["mce"] == pytest.approx(sum(ces) / 2)
    assert section["baseline"]["kind"] == "results" and len(section["baseline"]["sha256"]) == 64
    assert section["baseline"]["clean_error"] == pytest.approx(2 / 3)
    assert not section["complete"]
    verdicts = {r["id"]: r["status"] for r in results["policy"]["rules"]}
    assert verdicts["mce"] == "pass", verdicts
    assert "previews" not in section  # report.images defaults to none


def test_the_real_command_line_refuses_an_unknown_corruption(workspace):
    cfg = _config(workspace, "  corruptions: [fog_of_war]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "audit", "run", str(cfg), "--out", str(workspace / "out"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "benchmark.corruptions" in lines[0] and "fog_of_war" in lines[0], proc.stderr


def test_a_detection_metric_rule_on_a_classification_suite_is_refused(workspace):
    rule = "  - id: rpc\n    section: imagenet_c\n    metric: rpc\n    min: 0.5\n"
    cfg = _config(workspace, "  corruptions: [contrast]\n", rules=rule)
    _break_images(workspace)
    _one_line_error(_run(cfg, workspace / "out"), "'rpc' is a detection metric", "imagenet_c.mce")


def test_the_benchmark_metrics_are_registered_keys_of_the_section():
    from audit.contract.metric_specs import BENCHMARK_METRICS, benchmark_metric_names
    from audit.contract.results import ImageNetCResults

    assert set(benchmark_metric_names()) == {"mce", "relative_mce", "held_out_mce", "held_out_relative_mce"} | {
        "mpc",
        "rpc",
        "held_out_mpc",
    }
    for name, spec in BENCHMARK_METRICS.items():
        key = name.split(".", 1)[1]
        assert ImageNetCResults.model_fields[key].description.startswith(spec.task), name


def _refused_level() -> tuple[str, float] | None:
    """A registered suite corruption and a severity in 0-5 that its stressor does not take, if any."""
    from audit.contract.corruption_suite import CORRUPTIONS

    for name in (n for n in CORRUPTIONS if n in stressors.available()):
        for level in (0, 2.5, 0.5):
            try:
                stressors.get(name, severities=[level])
            except stressors.StressorError:
                return name, level
    return None


def test_a_severity_the_corruption_does_not_take_names_the_benchmark_key(workspace):
    refused = _refused_level()
    if refused is None:
        pytest.skip("every registered corruption takes severities 0, 0.5 and 2.5")
    name, level = refused
    baseline = "" if float(level).is_integer() and level >= 1 else "  baseline: b.json\n"
    _break_images(workspace)
    cfg = _config(workspace, f"  corruptions: [{name}]\n  severities: [{level:g}]\n{baseline}")
    _one_line_error(_run(cfg, workspace / "out"), "benchmark.severities", name)


def test_the_benchmark_metrics_go_to_mlflow_under_summary():
    pytest.importorskip("mlflow")
    from results_builder import typed_results

    from audit.tracking import metric_values

    results = typed_results(
        {
            "conditions": [{"id": "clean", "stressor": None, "severity": 0, "metrics": {"n": 4, "accuracy": 0.5}}],
            "imagenet_c": {
                "suite": "imagenet-c",
                "task": "classification",
                "severities": [1],
                "complete": False,
                "corruptions": [],
                "mce": 0.8,
                "relative_mce": None,
            },
        }
    )
    values = metric_values(results)
    assert values[("summary/imagenet_c/mce", 0)] == 0.8
    assert ("summary/imagenet_c/relative_mce", 0) not in values  # null: not logged
