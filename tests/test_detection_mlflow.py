"""End to end: `cvaudit run` of a detection audit (``task: detection``) logging to MLflow (a local SQLite store),
read back with MLflow's client and compared with results.json read as plain JSON; an unreachable server changes
neither verdict nor exit code; the sections a small run leaves out (intervals, gap tests, mPC / rPC) are logged
under their documented names when results hold them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from detection_fixtures import make_detection_dataset, save_detector, write_detection_config
from mlflow_server import free_port

from audit.cli import main
from audit.contract.load import load_results
from audit.tracking import TAGS, metric_values, severity_steps, step_params

mlflow = pytest.importorskip("mlflow")

pytestmark = pytest.mark.slow

POLICY = """\
version: 1
name: detection-mlflow
on_insufficient_data: fail
rules:
  - id: clean-map
    condition: clean
    metric: map
    min: 0.2
  - id: clean-fp
    condition: clean
    metric: fp_per_image
    max: 0.5
"""

#: the metrics the issue names for every condition (all in the registry's detection metrics)
NAMED = ("map", "map_50", "recall", "precision", "f1", "fp_per_image", "missed_per_image")


def _history(client, run_id: str, name: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, name)}


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One tracked detection run: (run folder, results.json as plain JSON, MLflow client, the run)."""
    root = tmp_path_factory.mktemp("det-mlflow")
    make_detection_dataset(root, n=24)
    save_detector(root / "detector.pt")
    (root / "policy.yaml").write_text(POLICY)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = write_detection_config(
        root,
        root / "detector.pt",
        policy="policy.yaml",
        tracking={"mlflow": {"experiment": "det-e2e", "run_name": "colour-boxes", "tracking_uri": uri}},
    )
    out = root / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # a local store keeps artifacts in ./mlruns
        result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("det-e2e").experiment_id])
    assert f"mlflow: logged run {run.info.run_id} to experiment 'det-e2e' at {uri}" in result.stderr
    return out, results, client, run


def test_every_condition_and_group_metric_is_on_its_stressor_curve(logged):
    _, results, client, run = logged
    run_id = run.info.run_id
    assert run.info.status == "FINISHED" and run.info.run_name == "colour-boxes"
    conditions = results["detection"]["conditions"]
    assert [c["id"] for c in conditions] == ["clean", "night@3"]
    clean = conditions[0]
    checked = 0
    for c in conditions:
        prefix = "clean" if c["id"] == "clean" else c["stressor"]
        at = 0 if c["id"] == "clean" else severity_steps([c["severity"]])[c["severity"]]
        for name in NAMED:
            value = c["metrics"].get(name)
            logged_values = _history(client, run_id, f"{prefix}/{name}")
            if value is None:
                assert at not in logged_values  # undefined values are left out, not logged as 0
            else:
                assert logged_values[at] == value
                checked += 1
        for g in c["groups"]:
            name = f"{prefix}/group/{g['attribute']}/{g['value']}/recall"
            assert g["metrics"]["recall"] is not None
            assert _history(client, run_id, name)[at] == g["metrics"]["recall"]
            checked += 1
        if c["calibration"] and c["calibration"]["dece"] is not None:
            assert _history(client, run_id, f"{prefix}/dece")[at] == c["calibration"]["dece"]
        for t in c["tide"] or []:
            assert _history(client, run_id, f"{prefix}/tide/{t['error']}/dap")[at] == t["dap"]
    levels = {g["level"] for g in clean["groups"]}
    assert levels == {"image", "object"}  # both kinds of group were checked
    assert checked > 20
    # the clean condition starts the night curve at step 0
    assert _history(client, run_id, "night/map")[0] == clean["metrics"]["map"]
    assert _history(client, run_id, "night/map")[3] == conditions[1]["metrics"]["map"]
    assert _history(client, run_id, "policy/pass") == {0: 1.0}
    # nothing of the classification layout is logged for a detector
    assert not any(k.endswith("/accuracy") or k.startswith("summary/mce") for k in run.data.metrics)


def test_tags_params_and_artifacts(logged):
    out, results, client, run = logged
    tags, params = run.data.tags, run.data.params
    assert set(tags) >= set(TAGS)
    assert tags["cvaudit.task"] == "detection" and tags["cvaudit.verdict"] == results["policy"]["verdict"] == "pass"
    assert tags["cvaudit.schema_version"] == results["schema_version"]
    assert tags["cvaudit.policy_sha256"] == results["policy"]["sha256"]
    assert params["task"] == "detection" and params["detection.score_threshold"] == "0.5"
    assert params["detection.object_attributes"] == '["occluded"]'
    assert json.loads(params["cvaudit.steps.night"]) == [[0, 0.0], [3, 3.0]]
    assert not any(k.startswith("tracking") for k in params)
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert names == {"results.json", "report.html", "junit.xml"}  # detections.json/.csv stay local
    copy = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id,
        artifact_path="results.json",
        dst_path=str(out.parent / "dl"),
        tracking_uri=client.tracking_uri,
    )
    assert Path(copy).read_bytes() == (out / "results.json").read_bytes()


def test_intervals_gap_tests_and_robustness_are_logged_when_present(logged):
    """results with every optional detection section (as a run with intervals, gap tests and mPC / rPC has)."""
    out, _, _, _ = logged
    data = json.loads((out / "results.json").read_text())
    det = data["detection"]
    clean = det["conditions"][0]
    clean["metrics"]["recall_ci"] = [0.4, 0.6]
    det["gap_tests"] = [
        {
            "condition": "clean",
            "attribute": "camera",
            "level": "image",
            "recalls": {"A": 1.0, "B": 0.0},
            "objects": {"A": 28, "B": 27},
            "worst_group": "B",
            "best_group": "A",
            "gap": 1.0,
            "gap_ci": [0.9, 1.0],
            "p_value": 0.001,
            "p_holm": 0.004,
            "excluded": [],
        }
    ]
    det["robustness"] = {
        "clean_map": clean["metrics"]["map"],
        "mpc": 0.1,
        "rpc": 0.25,
        "stressors": [{"stressor": "night", "mean_map": 0.1, "relative": 0.25}],
    }
    path = out.parent / "complete" / "results.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(data))
    values = metric_values(load_results(path))
    assert values[("clean/recall_ci_low", 0)] == 0.4 and values[("clean/recall_ci_high", 0)] == 0.6
    assert values[("night/recall_ci_low", 0)] == 0.4  # the clean start of the night curve
    assert not any(name.startswith("clean/dece_ci") for name, _ in values)
    assert values[("clean/fairness/camera/recall_gap", 0)] == 1.0
    assert values[("clean/fairness/camera/recall_gap_ci_low", 0)] == 0.9
    assert values[("clean/fairness/camera/recall_gap_p_holm", 0)] == 0.004
    assert values[("summary/mpc", 0)] == 0.1 and values[("summary/rpc", 0)] == 0.25
    assert values[("summary/night/mean_map", 0)] == 0.1 and values[("summary/night/relative_map", 0)] == 0.25
    assert step_params(load_results(path)) == {"cvaudit.steps.night": "[[0, 0.0], [3, 3.0]]"}


def test_unreachable_server_keeps_verdict_exit_code_and_outputs(tmp_path):
    make_detection_dataset(tmp_path, n=12)
    save_detector(tmp_path / "detector.pt")
    (tmp_path / "policy.yaml").write_text(POLICY.replace("min: 0.2", "min: 0.99"))  # a failing audit
    uri = f"http://127.0.0.1:{free_port()}"
    cfg = write_detection_config(
        tmp_path,
        tmp_path / "detector.pt",
        policy="policy.yaml",
        stressors=[],
        tracking={"mlflow": {"experiment": "x", "tracking_uri": uri, "max_retries": 0, "timeout_s": 2}},
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"])
    assert result.exit_code == 1, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("cvaudit: warning: MLflow")]
    assert len(warnings) == 1 and "verdict stands" in warnings[0] and uri in warnings[0]
    assert json.loads((out / "results.json").read_text())["policy"]["verdict"] == "fail"
    assert (out / "detections.json").is_file()
