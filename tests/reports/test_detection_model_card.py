"""`cvaudit model-card` of an object detector's audit (``task: detection``): every format from a real, signed
detection run (``cvaudit run`` over the colour-box scenes), every number checked against results.json read as
plain JSON; the Hugging Face front matter read back with PyYAML and huggingface_hub (``object-detection``), the
Model Card Toolkit JSON valid against its schema v0.0.2; the sections a small run leaves empty (intervals,
gap tests, mPC / rPC) shown when results hold them."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from detection_fixtures import make_detection_dataset, save_detector, write_detection_config
from detection_report_fixture import detection_results

from audit.cli import main
from audit.contract.load import load_results
from audit.contract.metric_specs import detection_metric_names
from reports import results_json_bytes
from reports.keys import keygen

SCHEMA = Path(__file__).parent / "mct_schema" / "v0.0.2" / "model_card.schema.json"

POLICY = """\
version: 1
name: detection-cards
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

#: HF metric type -> results.json key of a condition's metrics (the operating point's and COCO's)
OPERATING = ("precision", "recall", "f1", "fp_per_image", "missed_per_image")
COCO = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "ar_100")


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory) -> Path:
    """A real signed detection run folder (clean + night@3; camera, size, class and occlusion groups)."""
    root = tmp_path_factory.mktemp("det-cards")
    make_detection_dataset(root, n=24)
    save_detector(root / "detector.pt")
    (root / "policy.yaml").write_text(POLICY)
    keygen(root / "keys")
    cfg = write_detection_config(
        root, root / "detector.pt", policy="policy.yaml", report={"formats": ["html"], "sign_key": "keys"}
    )
    out = root / "out"
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert (out / "attestation.dsse.json").is_file()
    return out


def _card(run: Path, fmt: str, out: Path):
    return CliRunner().invoke(main, ["model-card", str(run), "--format", fmt, "--out", str(out)])


def _made(run: Path, fmt: str, tmp_path: Path) -> str:
    out = tmp_path / f"card-{fmt}"
    result = _card(run, fmt, out)
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8")


def _stored(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_huggingface_card_is_an_object_detection_model_index(signed_run, tmp_path):
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    text = _made(signed_run, "huggingface", tmp_path)
    meta = _front_matter(text)
    assert meta["pipeline_tag"] == "object-detection" and "object-detection" in meta["tags"]
    stored = _stored(signed_run)
    det = stored["detection"]
    point = f"score ≥ {det['settings']['score_threshold']:g}, IoU ≥ {det['settings']['iou_threshold']:g}"
    results = meta["model-index"][0]["results"]
    assert [r["dataset"]["config"] for r in results] == [c["id"] for c in det["conditions"]]
    checked = 0
    for r, c in zip(results, det["conditions"], strict=True):
        assert r["task"]["type"] == "object-detection"
        assert r["dataset"]["args"]["annotations_sha256"] == det["ground_truth"]["sha256"]
        by_type = {m["type"]: m for m in r["metrics"]}
        for key in (*COCO, *OPERATING):
            value = c["metrics"].get(key)
            if value is None:
                assert key not in by_type  # undefined values are left out
                continue
            assert by_type[key]["value"] == value
            assert by_type[key]["args"]["n_objects"] == c["metrics"]["n_objects"]
            checked += 1
        for key in OPERATING:
            if key in by_type:
                assert point in by_type[key]["name"] and c["id"] in by_type[key]["name"]
                assert by_type[key]["args"]["score_threshold"] == det["settings"]["score_threshold"]
                assert by_type[key]["args"]["iou_threshold"] == det["settings"]["iou_threshold"]
        assert by_type["map"]["name"] == f"mAP@[.5:.95] ({c['id']})"
        if c["calibration"]["dece"] is not None:
            assert by_type["d_ece"]["value"] == c["calibration"]["dece"]
    assert checked >= 15
    readme = tmp_path / "README.md"
    readme.write_text(text, encoding="utf-8")
    card = ModelCard.load(readme)
    assert card.data.pipeline_tag == "object-detection"
    name, evals = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert name == "detector" and {e.task_type for e in evals} == {"object-detection"}
    clean_map = next(e for e in evals if e.dataset_config == "clean" and e.metric_type == "map")
    assert clean_map.metric_value == det["conditions"][0]["metrics"]["map"]


def test_mct_document_is_valid_and_every_slice_equals_results(signed_run, tmp_path):
    doc = json.loads(_made(signed_run, "mct", tmp_path))
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    metrics = doc["quantitative_analysis"]["performance_metrics"]
    got = {(m["slice"], m["type"]): m for m in metrics}
    assert len(got) == len(metrics)  # one value per slice and metric
    expected = {}
    for c in _stored(signed_run)["detection"]["conditions"]:
        slices = [(c["id"], c["metrics"])] + [
            (f"{c['id']} | {g['attribute']}={g['value']}", g["metrics"]) for g in c["groups"]
        ]
        for name, values in slices:
            for key in detection_metric_names():
                if values.get(key) is not None:
                    expected[(name, key)] = values[key]
        if c["calibration"]["dece"] is not None:
            expected[(c["id"], "d_ece")] = c["calibration"]["dece"]
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert float(got[key]["value"]) == value, key
    assert ("clean | object.size=small", "recall") in got and ("clean | camera=B", "recall") in got
    assert doc["model_parameters"]["output_format_map"][2] == {"key": "2", "value": "blue"}
    assert "score ≥ 0.5, IoU ≥ 0.5" in doc["model_parameters"]["output_format"]


def _table(text: str, heading: str) -> list[list[str]]:
    block = text.split(f"### {heading}\n\n", 1)[1].split("\n\n", 1)[0]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in block.splitlines()[2:]]


def test_markdown_card_tables_equal_results(signed_run, tmp_path):
    text = _made(signed_run, "markdown", tmp_path)
    assert not text.startswith("---")
    det = _stored(signed_run)["detection"]
    rows = _table(text, "Detection per condition")
    assert [r[0] for r in rows] == [c["id"] for c in det["conditions"]]
    for row, c in zip(rows, det["conditions"], strict=True):
        m = c["metrics"]
        shown = [row[2], row[3], row[4], row[5], row[8], row[10], row[11], row[12]]
        want = [m["n_images"], m["n_objects"], m["map"], m["map_50"], m["recall"], m["f1"], m["fp_per_image"]]
        want.append(m["missed_per_image"])
        assert shown == [str(v) if isinstance(v, int) else f"{v:.3f}" for v in want]
    clean = det["conditions"][0]
    groups = _table(text, "Per group, clean images")
    assert len(groups) == len(clean["groups"])
    for row, g in zip(groups, clean["groups"], strict=True):
        assert [row[0].replace("\\", ""), row[1], row[2]] == [g["attribute"], g["level"], g["value"]]
        recall = g["metrics"].get("recall")
        assert row[7] == ("—" if recall is None else f"{recall:.3f}")
    tide = _table(text, "Error types on clean images (TIDE)")
    assert [(r[0], int(r[1]), r[2]) for r in tide] == [
        (t["error"], t["count"], f"{t['dap']:.3f}") for t in clean["tide"]
    ]
    camera = {g["value"]: g["metrics"]["recall"] for g in clean["groups"] if g["attribute"] == "camera"}
    gap = 100 * (max(camera.values()) - min(camera.values()))
    assert f"camera: clean recall at the operating point ranges from {min(camera.values()):.3f}" in text
    assert f"a gap of {gap:.1f} points" in text
    night = det["conditions"][1]
    drop = 100 * (clean["metrics"]["map"] - night["metrics"]["map"])
    assert f"night: mAP {night['metrics']['map']:.3f} at severity 3" in text and f"a drop of {drop:.1f} points" in text
    assert "Object detector (3 classes)" in text and "detects objects of 3 classes: red, green, blue" in text
    assert f"Annotations instances.json SHA-256 `{det['ground_truth']['sha256']}`" in text


def test_signed_detection_run_states_its_attestation(signed_run, tmp_path):
    attestation = signed_run / "attestation.dsse.json"
    digest = hashlib.sha256(attestation.read_bytes()).hexdigest()
    key_id = json.loads(attestation.read_text())["signatures"][0]["keyid"]
    for fmt in ("huggingface", "markdown"):
        text = _made(signed_run, fmt, tmp_path)
        assert f"attestation.dsse.json SHA-256 `{digest}`" in text and key_id in text
        assert "detections.json" in text  # an attested output of the detection run, listed
    doc = json.loads(_made(signed_run, "mct", tmp_path))
    assert digest in doc["model_details"]["documentation"]
    results_digest = hashlib.sha256((signed_run / "results.json").read_bytes()).hexdigest()
    assert results_digest in doc["model_details"]["documentation"]


def test_detection_results_changed_after_signing_are_refused(signed_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(signed_run, run)
    data = json.loads((run / "results.json").read_text())
    data["detection"]["conditions"][0]["metrics"]["map"] = 0.99
    (run / "results.json").write_text(json.dumps(data))
    result = _card(run, "huggingface", tmp_path / "README.md")
    assert result.exit_code == 2
    assert re.fullmatch(r"cvaudit: error: .*attests a different results\.json.*\n", result.output)
    assert not (tmp_path / "README.md").exists()


def _points(ci: list[float] | None) -> str:
    return "—" if ci is None else f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f} pt"


def test_intervals_gap_tests_and_robustness_are_shown_when_present(signed_run, tmp_path):
    """Results with every optional detection section (as a run with intervals, gap tests and mPC / rPC has);
    the verdict is the real run's (the cards do not judge)."""
    results = detection_results(tmp_path / "scenes")
    results = results.model_copy(update={"policy": load_results(signed_run / "results.json").policy})
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_bytes(results_json_bytes(results))
    stored = _stored(run)
    det = stored["detection"]
    clean = det["conditions"][0]["metrics"]

    meta = _front_matter(_made(run, "huggingface", tmp_path))
    first = {m["type"]: m for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert first["recall"]["args"]["confidence_interval"] == clean["recall_ci"]
    assert "confidence_interval" not in first["map"]["args"] and "confidence_interval" not in first["d_ece"]["args"]

    text = _made(run, "markdown", tmp_path).replace("\\", "")
    r = det["robustness"]
    assert f"mPC {r['mpc']:.3f}, rPC {r['rpc']:.3f}" in text
    tested = [t for t in det["gap_tests"] if t["gap"] is not None]
    assert tested
    rows = _table(text, "Recall gaps between groups")
    assert [(row[0], row[1], row[4], row[5]) for row in rows] == [
        (t["condition"], t["attribute"], f"{100 * t['gap']:.1f} pt", _points(t["gap_ci"])) for t in tested
    ]
    small = [g for g in det["conditions"][0]["groups"] if g["insufficient_data"]]
    assert small and "not judged" in text
    assert f"{len(det['skipped_annotations'])} bad annotation(s) were skipped" in text

    doc = json.loads(_made(run, "mct", tmp_path))
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    recall = next(
        m
        for m in doc["quantitative_analysis"]["performance_metrics"]
        if m["slice"] == "clean" and m["type"] == "recall"
    )
    assert [float(recall["confidence_interval"][k]) for k in ("lower_bound", "upper_bound")] == clean["recall_ci"]
