"""cvaudit queue: governance holds samples back, Label Studio files follow the documented format, bad input."""

from __future__ import annotations

import csv
import json
import shutil
import xml.etree.ElementTree as ET

import jsonschema
import pytest
from click.testing import CliRunner
from loop_helpers import check_in_label_studio, one_line_error

from audit.cli import main
from audit.loop.queue import allocate

HELD = {
    "s001": "consent_withdrawn",
    "s002": "consent_missing",
    "s003": "retention_expired",
    "s004": "region_not_allowed",
}

#: Label Studio's basic JSON import format with pre-annotations (docs: "Import pre-annotated data"),
#: restricted to what a single-choice image classification task holds.
TASKS_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["data", "predictions"],
        "properties": {
            "data": {"type": "object", "required": ["image"], "properties": {"image": {"type": "string"}}},
            "predictions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["result"],
                    "properties": {
                        "model_version": {"type": "string"},
                        "score": {"type": "number", "minimum": 0, "maximum": 1},
                        "result": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["id", "type", "from_name", "to_name", "value"],
                                "properties": {
                                    "type": {"const": "choices"},
                                    "value": {
                                        "type": "object",
                                        "required": ["choices"],
                                        "properties": {
                                            "choices": {"type": "array", "items": {"type": "string"}, "maxItems": 1}
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def queue(run_dir, out, *args):
    return CliRunner().invoke(main, ["queue", str(run_dir), "--out", str(out), *map(str, args)])


@pytest.fixture(scope="module")
def built(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("queue") / "q"
    result = queue(run_dir, out, "--budget", 50, "--variants")
    assert result.exit_code == 0, result.output
    return out, result.output


def test_governance_holds_samples_back_and_the_summary_says_why(built):
    out, printed = built
    summary = json.loads((out / "summary.json").read_text())
    assert summary["held_back_by_check"] == {check: 1 for check in HELD.values()}
    assert summary["held_back"] == 4 and "4 held back by governance" in printed
    with open(out / "queue.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    exported = {r["sample_id"] for r in rows}
    assert exported and not exported & set(HELD)
    tasks = json.loads((out / "tasks.json").read_text())
    assert not {t["data"]["sample_id"] for t in tasks} & set(HELD)
    files = " ".join(p.name for p in (out / "images").iterdir()) + (out / "variants" / "params.jsonl").read_text()
    assert not any(sid in files for sid in HELD)
    assert len(rows) == summary["selected"] == 20  # 24 samples, 4 held back: every other one is a label-noise suspect
    assert all("label_noise_suspect" in r["reasons"] and r["rationale"] for r in rows)


def test_label_studio_files_follow_the_documented_format(built, run_dir):
    out, _ = built
    tasks = json.loads((out / "tasks.json").read_text())
    jsonschema.validate(tasks, TASKS_SCHEMA)
    config = ET.fromstring((out / "labeling_config.xml").read_text())
    image = config.find("Image")
    choices = config.find("Choices")
    assert config.tag == "View" and image.get("value") == "$image"
    assert choices.get("toName") == image.get("name") and choices.get("choice") == "single"
    classes = [c.get("value") for c in choices.findall("Choice")]
    assert classes == ["red", "green", "blue"]
    for t in tasks:
        (result,) = t["predictions"][0]["result"]
        assert (result["from_name"], result["to_name"]) == (choices.get("name"), image.get("name"))
        assert result["value"]["choices"][0] in classes
        assert (out / t["data"]["image"].split("?d=")[1]).is_file()
    ids = [r["id"] for t in tasks for r in t["predictions"][0]["result"]]
    assert len(set(ids)) == len(ids)  # Label Studio wants distinct result ids


def test_label_studio_sdk_accepts_the_files_when_installed(built):
    label_interface = pytest.importorskip("label_studio_sdk.label_interface")
    out, _ = built
    li = label_interface.LabelInterface((out / "labeling_config.xml").read_text())
    li.validate()
    for t in json.loads((out / "tasks.json").read_text()):
        # label-studio-sdk 2.1.2's validate_task calls validate_prediction() without its argument
        # when a task has predictions: the data and each prediction are validated on their own
        assert li.validate_task({"data": t["data"]})
        assert li.validate_prediction(t["predictions"][0], return_errors=True) == []


def test_variants_reproduce_from_their_parameters(built, run_dir):
    import numpy as np
    import torch
    from PIL import Image

    import stressors
    from audit.contract.config import load_config
    from audit.evaluation.data import AuditDataset, read_samples
    from stressors.base import sample_keys

    out, _ = built
    records = [json.loads(line) for line in (out / "variants" / "params.jsonl").read_text().splitlines()]
    assert records
    cfg = load_config(run_dir.parent / "config.yaml")
    table = read_samples(cfg.data, class_names=cfg.model.class_names)
    for rec in records[:3]:
        s = stressors.get(rec["stressor"], **rec["options"])
        params = s.sample_params(
            sample_keys([rec["sample_id"]]), rec["severity"], seed=rec["seed"], fractional=rec["fractional"]
        )
        x = AuditDataset(table, cfg.model, table.indices_of([rec["sample_id"]]).tolist())[0]["image"][None]
        expected = (s.apply(x, params)[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        assert np.array_equal(np.asarray(Image.open(out / rec["file"])), expected)
        assert torch.is_tensor(x)


def test_the_budget_is_shared_by_error_rate_so_a_small_worst_group_gets_its_share():
    shares = allocate(10, {"large-good": 0.05, "small-bad": 0.45}, {"large-good": 500, "small-bad": 12})
    assert shares == {"large-good": 1, "small-bad": 9}
    assert allocate(10, {"a": 0.5, "b": 0.5}, {"a": 2, "b": 2}) == {"a": 2, "b": 2}


def test_a_budget_of_zero(run_dir, tmp_path):
    one_line_error(queue(run_dir, tmp_path / "q", "--budget", 0), "--budget 0: must be at least 1")


def test_an_unknown_format(run_dir, tmp_path):
    one_line_error(queue(run_dir, tmp_path / "q", "--format", "coco"), "--format 'coco': unknown format")


def test_a_run_folder_without_predictions(run_dir, tmp_path):

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "predictions.csv").unlink()
    one_line_error(queue(copy, tmp_path / "q"), "no predictions.csv")


def test_not_a_run_folder(tmp_path):
    one_line_error(queue(tmp_path, tmp_path / "q"), "no results.json")


def test_a_changed_policy_is_refused_unless_named(run_dir, tmp_path):

    root = tmp_path / "copy"
    shutil.copytree(run_dir.parent, root)
    results = json.loads((root / "run" / "results.json").read_text())
    results["provenance"]["config"] = str(root / "config.yaml")
    (root / "run" / "results.json").write_text(json.dumps(results))
    (root / "policy.yaml").write_text((root / "policy.yaml").read_text() + "\n# edited\n")
    one_line_error(queue(root / "run", tmp_path / "q"), "has changed since the run")
    assert queue(root / "run", tmp_path / "q", "--policy", root / "policy.yaml").exit_code == 0


def test_the_printed_label_studio_steps_name_the_folders(built):
    out, printed = built
    root = out.resolve()
    assert f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={root};" in printed
    assert f"Local files source storage with the absolute path {root / 'images'}" in printed


@pytest.mark.slow
def test_label_studio_shows_every_image_after_the_documented_steps(built, tmp_path):
    """The documented steps (docs/integrations/label-studio.md) against a real Label Studio (loop_helpers)."""
    check_in_label_studio(built[0], tmp_path)
