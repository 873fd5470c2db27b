"""The results.json contract: models and shipped schema agree, the one reader validates and versions."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from results_builder import complete_results

from audit.contract import SCHEMA_VERSION, Results, ResultsError, load_results, parse_results
from audit.contract.schema import schema_text, shipped_schema

DATA = Path(__file__).parent / "data"
PREVIOUS_MINOR = DATA / "results-1.0.json"  # written by cvaudit 0.1.0 (schema 1.0), trimmed
# written by the demo of schema 1.1 (before policy.report_only, provenance.exif/alpha), trimmed to three conditions
PREVIOUS_MINORS = {"1.0": PREVIOUS_MINOR, "1.1": DATA / "results-1.1.json"}


def test_shipped_schema_is_generated_from_the_models():
    shipped = (Path(__file__).parents[3] / "audit" / "contract" / "schema" / "results.schema.json").read_text()
    assert shipped == schema_text(), "run: python -m audit.contract.schema"


def test_schema_is_draft_2020_12_and_versioned():
    schema = shipped_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["x-schema-version"] == SCHEMA_VERSION


def test_every_key_is_described():
    """Every property of every object in the schema carries a description or refers to a described model."""
    schema = shipped_schema()
    missing = []
    for name, definition in {"Results": schema, **schema["$defs"]}.items():
        for key, prop in definition.get("properties", {}).items():
            described = "description" in prop or "$ref" in prop or any("$ref" in p for p in prop.get("anyOf", []))
            if not described and "items" in prop:
                described = "$ref" in prop["items"]
            if not described:
                missing.append(f"{name}.{key}")
    assert not missing, f"keys without a description (add Field(description=...)): {missing}"


@pytest.mark.parametrize("version", sorted(PREVIOUS_MINORS))
def test_a_results_file_of_a_previous_minor_version_still_loads(version):
    results = load_results(PREVIOUS_MINORS[version])
    assert results.schema_version == version
    assert results.conditions[0].id == "clean" and results.verdict == "pass"
    assert results.notes == []
    jsonschema.validate(json.loads(PREVIOUS_MINORS[version].read_text()), shipped_schema())


def test_a_newer_minor_version_loads_without_the_keys_it_adds():
    data = json.loads(PREVIOUS_MINOR.read_text())
    major, minor = (int(x) for x in SCHEMA_VERSION.split("."))
    data["schema_version"] = f"{major}.{minor + 1}"
    data["a_new_section"] = {"x": 1}
    data["conditions"][0]["metrics"]["a_new_metric"] = 0.5
    results = parse_results(json.dumps(data), source="new.json")
    assert "a_new_section" not in results.to_dict()
    assert "a_new_metric" not in results.to_dict()["conditions"][0]["metrics"]
    assert results.notes and "2 key(s)" in results.notes[0] and "new.json" in results.notes[0]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d.update(schema_version="2.0"), "$.schema_version: 2.0 is a newer major version"),
        (lambda d: d.update(schema_version="0.9"), "$.schema_version: 0.9 is a older major version"),
        (lambda d: d.update(schema_version="one"), "$.schema_version: schema_version 'one' is not of the form"),
        (lambda d: d.pop("schema_version"), "$.schema_version: required key is missing"),
        (
            lambda d: d["conditions"][1]["metrics"].update(n=-1),
            "$.conditions[1].metrics.n: expected greater than or equal to 0, got -1",
        ),
        (
            lambda d: d["conditions"][0]["metrics"].update(accuracy=1.5),
            "$.conditions[0].metrics.accuracy: expected less than or equal to 1",
        ),
        (lambda d: d["conditions"][0].pop("groups"), "$.conditions[0].groups: required key is missing"),
        (lambda d: d["model"].update(colour="red"), "$.model.colour: unknown key"),
        (lambda d: d["policy"].update(verdict="maybe"), "$.policy.verdict: expected 'pass' or 'fail'"),
    ],
    ids=[
        "newer-major",
        "older-major",
        "malformed-version",
        "no-version",
        "negative-n",
        "accuracy-above-1",
        "missing-key",
        "unknown-key",
        "bad-verdict",
    ],
)
def test_invalid_results_are_one_line_naming_file_path_and_expectation(tmp_path, edit, expected):
    data = json.loads(PREVIOUS_MINOR.read_text())
    edit(data)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ResultsError) as info:
        load_results(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message, message
    assert "\n" not in message and len(message) < 400


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"{nope", "not valid JSON"),
        (b"[1, 2]", "$: expected a results object, got list"),
        (b'{"schema_version": "1.1", "seed": NaN}', "not valid JSON (NaN is not a JSON number)"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_unreadable_files_are_one_line(tmp_path, content, expected):
    path = tmp_path / "r.json"
    path.write_bytes(content)
    with pytest.raises(ResultsError, match=f"^{path}: .*") as info:
        load_results(path)
    assert expected in str(info.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ResultsError, match="results file not found"):
        load_results(tmp_path / "absent.json")
    with pytest.raises(ResultsError, match="is a folder"):
        load_results(tmp_path)


def test_typed_results_round_trip_to_the_same_dict():
    data = complete_results({"conditions": [{"id": "clean", "stressor": None, "metrics": {"n": 1, "accuracy": 1.0}}]})
    results = parse_results(data)
    assert isinstance(results, Results) and results.to_dict() == json.loads(json.dumps(data))
