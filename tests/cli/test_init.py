"""``cvaudit init``: a working config and policy from an ImageFolder or a manifest; the label-mapping hint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from cvaudit_fixtures import COLOURS, ColourNet, ConstantNet, save_model
from PIL import Image
from results_builder import typed_results

from audit.cli import main
from audit.cli.summary import chance_bound, label_mapping_hint
from audit.contract.results import Results


def _image_folder(root: Path, names: list[str], per_class: int = 12) -> Path:
    """PNG images of ``COLOURS[k]`` in folder ``names[k]`` (ColourNet predicts k from the colour)."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            arr = np.clip(np.array(COLOURS[k]) + rng.integers(-20, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{i}.png")
    return root


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """data/val with class folders whose sorted order is the model's output order, and model.pt."""
    _image_folder(tmp_path / "data" / "val", ["a-red", "b-green", "c-blue"])
    save_model(tmp_path / "model.pt", ColourNet())
    return tmp_path


def _init(root: Path, *extra: str):
    return _cli("init", "--images", str(root / "data" / "val"), "--model", str(root / "model.pt"),
                "--out", str(root / "audit"), "--input-size", "16", "16", *extra)  # fmt: skip


def test_init_writes_a_small_valid_config_and_prints_the_classes(folder):
    result = _init(folder)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1:4] == ["  0 = 'a-red' (12 images)", "  1 = 'b-green' (12 images)", "  2 = 'c-blue' (12 images)"]
    assert "model: " in result.output and "outputs 3 classes" in result.output
    assert lines[-1] == f"next: cvaudit run {folder / 'audit' / 'config.yaml'} --out {folder / 'audit' / 'cvaudit-out'}"
    config = yaml.safe_load((folder / "audit" / "config.yaml").read_text())
    assert config["model"] == {
        "path": "../model.pt",
        "input_size": [16, 16],
        "class_names": ["a-red", "b-green", "c-blue"],
    }
    assert config["data"] == {"images": "../data/val"} and config["policy"] == "policy.yaml"
    assert set(config) == {"model", "data", "stressors", "policy", "report"}  # only the keys needed
    assert "# " in (folder / "audit" / "config.yaml").read_text()  # commented
    policy = yaml.safe_load((folder / "audit" / "policy.yaml").read_text())
    assert [r["id"] for r in policy["rules"]] == ["clean-accuracy", "mild-stress-accuracy"]


def test_init_refuses_to_overwrite_without_force(folder):
    assert _init(folder).exit_code == 0
    (folder / "audit" / "config.yaml").write_text("# mine\n")
    again = _init(folder)
    assert again.exit_code == 2 and "config.yaml: already exists" in again.output and "--force" in again.output
    assert (folder / "audit" / "config.yaml").read_text() == "# mine\n"
    assert _init(folder, "--force").exit_code == 0
    assert "cvaudit init" in (folder / "audit" / "config.yaml").read_text()


def test_init_refuses_a_model_with_another_number_of_classes(folder):
    save_model(folder / "model.pt", ConstantNet(0.0, 5))
    result = _init(folder)
    assert result.exit_code == 2 and "outputs 5 classes but" in result.output and "has 3" in result.output
    assert not (folder / "audit" / "config.yaml").exists() and not (folder / "audit" / "policy.yaml").exists()


@pytest.mark.parametrize(
    "args, expected",
    [
        ([], "give exactly one of --images"),
        (["--images", "data/val", "--manifest", "m.csv"], "give exactly one of --images"),
        (["--images", "nowhere"], "nowhere: image folder not found"),
    ],
)
def test_init_bad_arguments(folder, monkeypatch, args, expected):
    monkeypatch.chdir(folder)
    result = _cli("init", "--model", "model.pt", "--out", "audit", *args)
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output


def test_init_on_a_manifest_with_other_column_names(folder):
    rows = ["file,species,camera"] + [
        f"data/val/{name}/{i}.png,{name},{'AB'[i % 2]}" for name in ("c-blue", "a-red", "b-green") for i in range(12)
    ]
    (folder / "m.csv").write_text("\n".join(rows) + "\n")
    missing = _cli("init", "--manifest", str(folder / "m.csv"), "--model", str(folder / "model.pt"),
                   "--out", str(folder / "audit"), "--input-size", "16", "16")  # fmt: skip
    assert (
        missing.exit_code == 2 and "column 'path' is missing (columns: 'file', 'species', 'camera')" in missing.output
    )
    result = _cli("init", "--manifest", str(folder / "m.csv"), "--model", str(folder / "model.pt"),
                  "--out", str(folder / "audit"), "--input-size", "16", "16",
                  "--path-column", "file", "--label-column", "species")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "check this order" in result.output and "  0 = 'a-red' (12 images)" in result.output
    text = (folder / "audit" / "config.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["data"] == {"manifest": "../m.csv", "path_column": "file", "label_column": "species"}
    assert '# attributes: ["camera"]' in text


def test_init_on_integer_labels_accepts_a_model_with_more_outputs(folder):
    rows = ["path,label"] + [
        f"data/val/{name}/{i}.png,{k}" for k, name in enumerate(["a-red", "b-green"]) for i in range(3)
    ]
    (folder / "m.csv").write_text("\n".join(rows) + "\n")
    args = [
        "init",
        "--manifest",
        str(folder / "m.csv"),
        "--model",
        str(folder / "model.pt"),
        "--out",
        str(folder / "a"),
    ]
    result = _cli(*args, "--input-size", "16", "16")
    assert result.exit_code == 0, result.output  # labels 0..1, three outputs: class 2 is absent from the data
    assert "integer labels 0..1" in result.output and "class_names" not in (folder / "a" / "config.yaml").read_text()
    save_model(folder / "one.pt", ConstantNet(0.0, 1))
    args[4] = str(folder / "one.pt")
    fewer = _cli(*args, "--input-size", "16", "16", "--force")
    assert fewer.exit_code == 2 and "outputs 1 classes but" in fewer.output and "labels up to 1" in fewer.output


def test_init_refuses_an_id_column_taken_for_integer_labels(folder):
    """A label column holding ids (99999999999) is one line, not an allocation of a list that long."""
    rows = ["path,label"] + [f"data/val/a-red/{i}.png,{99999999999 + i}" for i in range(3)]
    (folder / "m.csv").write_text("\n".join(rows) + "\n")
    result = _cli("init", "--manifest", str(folder / "m.csv"), "--model", str(folder / "model.pt"),
                  "--out", str(folder / "a"), "--input-size", "16", "16")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "label 100000000001 in 'label' is not a class index (at most 99999)" in result.output
    assert len(result.output.strip().splitlines()) == 1


# ------------------------------------------------------------------ the label-mapping hint


def test_chance_bound_is_three_standard_errors_above_one_over_k():
    for k, n in ((2, 30), (3, 36), (10, 100), (1000, 50_000)):
        assert chance_bound(k, n) == pytest.approx(1 / k + 3 * math.sqrt((1 / k) * (1 - 1 / k) / n), rel=1e-12)
    # under a scrambled mapping (predictions independent of balanced labels) accuracy rarely exceeds it
    rng = np.random.default_rng(0)
    k, n = 5, 200
    accuracies = (rng.integers(0, k, (2000, n)) == rng.integers(0, k, (2000, n))).mean(axis=1)
    assert (accuracies > chance_bound(k, n)).mean() < 0.01


def _results(accuracy: float, n: int, k: int) -> Results:
    return typed_results(
        {"model": {"num_classes": k}, "conditions": [{"id": "clean", "metrics": {"n": n, "accuracy": accuracy}}]}
    )


def test_the_hint_appears_near_or_below_chance_only():
    assert label_mapping_hint(_results(0.95, 300, 10), from_folders=True) is None
    assert label_mapping_hint(_results(0.30, 300, 10), from_folders=True) is None  # well above 0.1 + 3 SE
    low = label_mapping_hint(_results(0.101, 300, 10), from_folders=True)
    assert low is not None and "near chance for 10 classes" in low and "folder names in sorted order" in low
    zero = label_mapping_hint(_results(0.0, 300, 10), from_folders=False)
    assert zero is not None and "model.class_names in the order of the outputs" in zero
    assert label_mapping_hint(_results(0.0, 300, 1), from_folders=True) is None
    assert label_mapping_hint(_results(0.0, 0, 3), from_folders=True) is None


@pytest.mark.slow
def test_init_then_run_audits_the_folder(folder):
    assert _init(folder).exit_code == 0
    out = folder / "audit" / "cvaudit-out"
    result = _cli("run", str(folder / "audit" / "config.yaml"), "--out", str(out), "--quiet")
    assert result.exit_code in (0, 1), result.output
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["class_names"] == ["a-red", "b-green", "c-blue"]
    clean = next(c for c in results["conditions"] if c["id"] == "clean")
    assert clean["metrics"]["accuracy"] == 1.0 and result.exit_code == 0
    assert "hint:" not in result.output


@pytest.mark.slow
def test_folder_names_are_shown_and_a_wrong_mapping_gets_a_hint(tmp_path):
    _image_folder(tmp_path / "val", ["red", "green", "blue"])  # sorted: blue, green, red; the model: red, green, blue
    save_model(tmp_path / "model.pt", ColourNet())
    (tmp_path / "config.yaml").write_text(
        "device: cpu\nmodel: {path: model.pt, input_size: [16, 16], mean: [0, 0, 0], std: [1, 1, 1]}\n"
        "data: {images: val, num_workers: 0}\npolicy: policy.yaml\nreport: {formats: [html]}\n"
    )
    (tmp_path / "policy.yaml").write_text(
        "version: 1\nname: t\nrules:\n  - {id: acc, condition: clean, metric: accuracy, min: 0.5, blocking: true}\n"
    )
    result = _cli("run", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "out"), "--quiet")
    assert result.exit_code == 1, result.output
    assert "(sorted; model.class_names not set): 0 = 'blue', 1 = 'green', 2 = 'red'" in result.output
    assert "hint: clean accuracy 0.333 is near chance for 3 classes" in result.output
    assert "folder names in sorted order" in result.output
