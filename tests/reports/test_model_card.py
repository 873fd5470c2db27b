"""`cvaudit model-card`: Hugging Face README.md (read back with huggingface_hub), Model Card Toolkit JSON
(valid against its published schema v0.0.2), plain Markdown; every number checked against results.json."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from audit.cli import main

SCHEMA = Path(__file__).parent / "mct_schema" / "v0.0.2" / "model_card.schema.json"


def _write_run(folder: Path, results: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=2))
    return folder


def _card(run: Path, fmt: str, out: Path, *extra: str):
    result = CliRunner().invoke(main, ["model-card", str(run), "--format", fmt, "--out", str(out), *extra])
    return result


def _made(run: Path, fmt: str, tmp_path: Path) -> str:
    out = tmp_path / f"card-{fmt}"
    result = _card(run, fmt, out)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out)
    return out.read_text(encoding="utf-8")


def _stored(run: Path) -> dict:
    """results.json read independently of cvaudit (plain json)."""
    return json.loads((run / "results.json").read_text())


def _metrics_of(results: dict) -> dict[str, dict]:
    """slice name -> metrics dict: 'clean', 'night@3', 'clean | camera=A'."""
    out = {}
    for c in results["conditions"]:
        out[c["id"]] = c["metrics"]
        for g in c["groups"]:
            out[f"{c['id']} | {g['attribute']}={g['value']}"] = g["metrics"]
    return out


@pytest.fixture
def run(tmp_path, results) -> Path:
    return _write_run(tmp_path / "run", results)


# ------------------------------------------------------------------ Hugging Face


def test_huggingface_card_loads_and_its_results_parse(run, tmp_path):
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    text = _made(run, "huggingface", tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(text, encoding="utf-8")
    card = ModelCard.load(readme)
    assert card.data.pipeline_tag == "image-classification"
    assert card.data.model_name == "derm-resnet50"
    name, evals = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert name == "derm-resnet50"
    stored = _stored(run)
    by_id = {c["id"]: c for c in stored["conditions"]}
    kinds = {"accuracy": "accuracy", "balanced_accuracy": "balanced_accuracy", "f1": "macro_f1"}
    kinds["expected_calibration_error"] = "ece"
    seen = set()
    for e in evals:
        assert e.task_type == "image-classification"
        assert e.dataset_type == "manifest.csv" and e.dataset_args["sha256"] == stored["dataset"]["sha256"]
        metrics = by_id[e.dataset_config]["metrics"]
        key = kinds[e.metric_type]
        assert e.metric_value == metrics[key], (e.dataset_config, key)
        assert e.metric_args["n"] == metrics["n"]
        if key in ("accuracy", "ece"):
            assert e.metric_args["confidence_interval"] == metrics[f"{key}_ci"]
        seen.add((e.dataset_config, key))
    assert seen == {(c["id"], k) for c in stored["conditions"] for k in kinds.values()}


def test_probe_conditions_stay_out_of_the_model_index(tmp_path, results):
    probe = copy.deepcopy(results["conditions"][-1])
    probe.update({"id": "pgd@0.5", "severity": 0.5, "probe": True})
    results["conditions"].append(probe)
    from huggingface_hub.repocard_data import model_index_to_eval_results

    run = _write_run(tmp_path / "run", results)
    text = _made(run, "huggingface", tmp_path)
    import yaml

    meta = yaml.safe_load(text.split("---\n")[1])
    _, evals = model_index_to_eval_results(meta["model-index"])
    assert "pgd@0.5" not in {e.dataset_config for e in evals}
    assert "pgd@0.5" in _made(run, "markdown", tmp_path)  # shown, marked as a probe


def test_hugging_face_folder_model_sets_the_library(tmp_path, results):
    import yaml

    results["model"].update({"format": "huggingface", "path": "models/my-vit/model.safetensors"})
    run = _write_run(tmp_path / "run", results)
    meta = yaml.safe_load(_made(run, "huggingface", tmp_path).split("---\n")[1])
    assert meta["library_name"] == "transformers" and meta["model-index"][0]["name"] == "my-vit"


# ------------------------------------------------------------------ Model Card Toolkit


def test_mct_document_is_valid_and_its_slices_match(run, tmp_path):
    doc = json.loads(_made(run, "mct", tmp_path))
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker()).validate(doc)
    assert doc["schema_version"] == "0.0.2"
    stored = _stored(run)
    slices = _metrics_of(stored)
    names = {"sample_count": "n", "accuracy": "accuracy", "balanced_accuracy": "balanced_accuracy"}
    names.update({"macro_f1": "macro_f1", "expected_calibration_error": "ece"})
    seen = set()
    for m in doc["quantitative_analysis"]["performance_metrics"]:
        metrics = slices[m["slice"]]
        key = names[m["type"]]
        value = metrics[key]
        assert (float if isinstance(value, float) else int)(m["value"]) == value, (m["slice"], key)
        if key in ("accuracy", "ece") and metrics.get(f"{key}_ci"):
            ci = m["confidence_interval"]
            assert [float(ci["lower_bound"]), float(ci["upper_bound"])] == metrics[f"{key}_ci"]
        seen.add((m["slice"], key))
    # every condition and every group under every condition is a slice, with its count and accuracy
    assert {(s, "n") for s in slices} | {(s, "accuracy") for s in slices} <= seen
    assert len(slices) == len(stored["conditions"]) * (1 + len(stored["conditions"][0]["groups"]))
    classes = [x["value"] for x in doc["model_parameters"]["output_format_map"]]
    assert classes == stored["model"]["class_names"]


def test_mct_schema_rejects_a_broken_document(run, tmp_path):
    """The validation in the test above can fail: a number where the schema wants a string."""
    doc = json.loads(_made(run, "mct", tmp_path))
    doc["quantitative_analysis"]["performance_metrics"][0]["value"] = 0.5
    schema = json.loads(SCHEMA.read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


# ------------------------------------------------------------------ Markdown


def _table(text: str, heading: str) -> list[list[str]]:
    block = text.split(f"### {heading}\n\n", 1)[1].split("\n\n", 1)[0]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in block.splitlines()[2:]]


def test_markdown_tables_match_results(run, tmp_path):
    text = _made(run, "markdown", tmp_path)
    assert not text.startswith("---")
    stored = _stored(run)
    rows = _table(text, "Accuracy per condition")
    assert [r[0] for r in rows] == [c["id"] for c in stored["conditions"]]
    for row, c in zip(rows, stored["conditions"]):
        m = c["metrics"]
        assert row[2] == str(m["n"])
        assert row[3] == f"{m['accuracy']:.3f}"
        assert row[4] == f"{m['accuracy_ci'][0]:.3f}–{m['accuracy_ci'][1]:.3f}"
        assert row[7] == f"{m['ece']:.3f}"
    groups = _table(text, "Accuracy per group, clean images")
    clean = stored["conditions"][0]
    assert len(groups) == len(clean["groups"])
    for row, g in zip(groups, clean["groups"]):
        assert row[1].replace("\\", "") == g["value"] and row[3] == f"{g['metrics']['accuracy']:.3f}"
        assert ("not judged" in row[5]) == g["insufficient_data"]


def test_prose_states_verdict_failures_and_governance_plainly(run, tmp_path):
    text = _made(run, "markdown", tmp_path).replace("\\", "")
    stored = _stored(run)
    assert "the verdict is FAIL" in text
    for failure in stored["policy"]["blocking_failures"]:
        assert failure in text
    for finding in stored["governance"]["findings"]:
        if finding["status"] != "pass":
            assert finding["message"] in text
    clean = stored["fairness"][0]
    assert f"a gap of {100 * clean['accuracy_gap']:.1f} points" in text
    assert "The run was not signed" in text
    digest = hashlib.sha256((run / "results.json").read_bytes()).hexdigest()
    assert digest in text


def test_user_strings_cannot_inject_markup(tmp_path, results):
    import yaml

    results["model"]["class_names"][0] = "<script>alert(1)</script> | x"
    run = _write_run(tmp_path / "run", results)
    text = _made(run, "huggingface", tmp_path)
    assert "<script>" not in text.split("---\n", 2)[2]
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["model-index"][0]["name"] == "derm-resnet50"
    doc = json.loads(_made(run, "mct", tmp_path))
    assert doc["model_parameters"]["output_format_map"][0]["value"] == "<script>alert(1)</script> | x"


# ------------------------------------------------------------------ signed runs


def test_signed_run_states_the_attestation_digest(signed_report, tmp_path):
    attestation = signed_report / "attestation.dsse.json"
    digest = hashlib.sha256(attestation.read_bytes()).hexdigest()
    key_id = json.loads(attestation.read_text())["signatures"][0]["keyid"]
    for fmt in ("huggingface", "markdown"):
        text = _made(signed_report, fmt, tmp_path)
        assert f"attestation.dsse.json SHA-256 `{digest}`" in text and key_id in text
    doc = json.loads(_made(signed_report, "mct", tmp_path))
    assert digest in doc["model_details"]["documentation"]


def test_results_changed_after_signing_are_refused(signed_report, tmp_path):
    data = json.loads((signed_report / "results.json").read_text())
    data["conditions"][0]["metrics"]["accuracy"] = 0.99
    (signed_report / "results.json").write_text(json.dumps(data))
    result = _card(signed_report, "markdown", tmp_path / "card.md")
    assert result.exit_code == 2
    assert re.fullmatch(r"cvaudit: error: .*attests a different results\.json.*\n", result.output)
    assert not (tmp_path / "card.md").exists()


# ------------------------------------------------------------------ bad input


def test_missing_results_exit_2(tmp_path):
    result = _card(tmp_path, "markdown", tmp_path / "card.md")
    assert result.exit_code == 2 and "results file not found" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_invalid_results_exit_2(tmp_path):
    (tmp_path / "results.json").write_text('{"schema_version": "1.1"}')
    result = _card(tmp_path, "mct", tmp_path / "card.json")
    assert result.exit_code == 2 and "required key is missing" in result.output


def test_results_without_a_verdict_exit_2(tmp_path, results):
    del results["policy"]
    run = _write_run(tmp_path / "run", results)
    result = _card(run, "markdown", tmp_path / "card.md")
    assert result.exit_code == 2 and "no policy verdict" in result.output


def test_malformed_attestation_exit_2(run, tmp_path):
    (run / "attestation.dsse.json").write_text('{"payload": "not base64!"}')
    result = _card(run, "huggingface", tmp_path / "README.md")
    assert result.exit_code == 2 and "not a cvaudit attestation" in result.output


def test_unknown_format_is_a_usage_error(run, tmp_path):
    result = _card(run, "pdf", tmp_path / "card")
    assert result.exit_code == 2 and "Invalid value for '--format'" in result.output


def test_results_file_as_argument_and_a_name(run, tmp_path):
    out = tmp_path / "card.md"
    result = _card(run / "results.json", "markdown", out, "--name", "skin-lesions v2")
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("# Model card: skin-lesions v2\n")
