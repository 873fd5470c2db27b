"""End to end: `cvaudit run` on a Hugging Face folder (a tiny ViT saved offline), checked against
the library's own processor and model; bad folders exit 2 with one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hf_fixtures import CLASSES, save_tiny_vit
from PIL import Image

from audit.cli import main

transformers = pytest.importorskip("transformers")

POLICY = "version: 1\nname: hf\nrules:\n  - {id: clean-accuracy, condition: clean, metric: accuracy, min: 0.0, blocking: true}\n"


def _config(root: Path, model: str = "vit", extra_model: str = "") -> Path:
    (root / "policy.yaml").write_text(POLICY)
    text = (
        "seed: 0\ndevice: cpu\nbatch_size: 5\n"
        f"model:\n  format: huggingface\n  path: {model}\n{extra_model}"
        "data:\n  manifest: manifest.csv\n  attributes: [camera]\n  num_workers: 0\n"
        "stressors:\n  - {name: night, severities: [1, 3]}\n  - {name: fgsm, epsilons: [0.02]}\n"
        "policy: policy.yaml\nevaluation:\n  min_group_size: 5\n  n_bootstrap: 20\nreport:\n  formats: [html]\n"
    )
    (root / "config.yaml").write_text(text)
    return root / "config.yaml"


def _run(cfg: Path, out: Path):
    return CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"])


def _train(folder: Path, workspace: Path, steps: int = 60) -> None:
    """A few Adam steps on the workspace images, so that the ViT tells the colours apart."""
    processor = transformers.AutoImageProcessor.from_pretrained(str(folder), backend="pil")
    model = transformers.AutoModelForImageClassification.from_pretrained(str(folder))
    with open(workspace / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    images = [Image.open(workspace / r["path"]).convert("RGB") for r in rows]
    x = torch.from_numpy(processor(images=images, return_tensors="np")["pixel_values"])
    y = torch.tensor([int(r["label"]) for r in rows])
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(pixel_values=x).logits, y).backward()
        opt.step()
    model.eval().save_pretrained(folder)


@pytest.mark.slow
def test_audit_of_a_saved_vit_matches_the_library(workspace):
    """The clean predictions equal transformers' own pipeline: its PIL processor, then the model."""
    folder = save_tiny_vit(workspace / "vit")
    _train(folder, workspace)
    out = workspace / "out"
    result = _run(_config(workspace), out)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    model = results["model"]
    assert model["format"] == "huggingface" and model["class_names"] == CLASSES and model["num_classes"] == 3
    assert model["path"] == str(folder / "model.safetensors")
    assert set(model["files"]) == {"config.json", "preprocessor_config.json", "model.safetensors"}
    assert [c["id"] for c in results["conditions"]] == ["clean", "night@1", "night@3", "fgsm@0.02"]

    with open(out / "predictions.csv", newline="") as fh:
        clean = [r for r in csv.DictReader(fh) if r["condition"] == "clean"]
    with open(workspace / "manifest.csv", newline="") as fh:
        paths = {r["sample_id"]: workspace / r["path"] for r in csv.DictReader(fh)}
    processor = transformers.AutoImageProcessor.from_pretrained(str(folder), backend="pil")
    reference = transformers.AutoModelForImageClassification.from_pretrained(str(folder)).eval()
    images = [Image.open(paths[r["sample_id"]]).convert("RGB") for r in clean]
    pixel_values = torch.from_numpy(processor(images=images, return_tensors="np")["pixel_values"])
    with torch.no_grad():
        probs = reference(pixel_values=pixel_values).logits.softmax(dim=1).numpy()
    assert [int(r["prediction"]) for r in clean] == probs.argmax(axis=1).tolist()
    assert len(set(probs.argmax(axis=1).tolist())) > 1  # the check is not vacuous
    conf = np.array([float(r["confidence"]) for r in clean])
    np.testing.assert_allclose(conf, probs.max(axis=1), atol=2e-6)
    accuracy = float(np.mean([int(r["prediction"]) == int(r["label"]) for r in clean]))
    assert results["conditions"][0]["metrics"]["accuracy"] == pytest.approx(accuracy) and accuracy > 0.9


@pytest.mark.parametrize(
    "setup, extra, expected",
    [
        ("no-config", "", "no config.json"),
        ("bert", "", "is not an image classifier"),
        ("names", "  class_names: [blue, green, red]\n", "do not match id2label"),
    ],
)
def test_bad_folders_exit_2_with_one_line(workspace, setup, extra, expected):
    folder = workspace / "vit"
    if setup == "no-config":
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"")
    elif setup == "bert":
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    else:
        save_tiny_vit(folder)
    result = _run(_config(workspace, extra_model=extra), workspace / "out")
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cvaudit: error: ") and expected in lines[0]
    assert not (workspace / "out").exists()
