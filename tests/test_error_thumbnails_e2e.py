"""End to end: thumbnails of the named misclassified samples, as the model saw them under the failing condition.

The expected samples are selected from predictions.csv by a few plain lines here, and the expected
images are made by applying the stressor (or the attack) to the sample's own PNG with the run's seed.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from cvaudit_fixtures import ColourNet, write_config
from PIL import Image

import stressors
from audit.cli import main
from stressors.base import sample_keys

POLICY = """\
version: 1
name: thumbnails
rules:
  - id: night
    condition: night@5
    metric: accuracy
    min: 0.99
    blocking: true
  - id: night-camera-b
    condition: night@5
    attribute: camera
    value: B
    metric: accuracy
    min: 0.99
    blocking: false
  - id: fgsm
    condition: fgsm@0.4
    metric: accuracy
    min: 0.99
    blocking: true
  - id: clean
    condition: clean
    metric: accuracy
    min: 0.5
    blocking: true
report:
  images: {images}
"""
STRESSORS = "  - {name: night, severities: [1, 5]}\n  - {name: fgsm, epsilons: [0.4]}\n"
#: The failing targets of POLICY: (condition, attribute, value).
TARGETS = [("night@5", None, None), ("night@5", "camera", "B"), ("fgsm@0.4", None, None)]


def _run(workspace: Path, images: str) -> tuple[Path, dict]:
    cfg = write_config(workspace, extra=f"  images: {images}\n", stressors=STRESSORS)
    (workspace / "policy.yaml").write_text(POLICY.format(images=images))
    out = workspace / "out"
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"])
    assert result.exit_code == 1, result.output  # the blocking rules fail
    return out, json.loads((out / "results.json").read_text())


def _expected_ids(predictions: Path, condition: str, attribute: str | None, value: str | None) -> list[str]:
    """The report's choice, written again: misclassified, lowest p_true first, ties by sample id, at most 5."""
    with open(predictions, newline="") as fh:
        rows = [
            r
            for r in csv.DictReader(fh)
            if r["condition"] == condition
            and r["label"] != r["prediction"]
            and (attribute is None or r[attribute] == value)
        ]
    return [r["sample_id"] for r in sorted(rows, key=lambda r: (float(r["p_true"]), r["sample_id"]))[:5]]


def _stressed(workspace: Path, condition: str, sample_id: str) -> np.ndarray:
    """The sample's image under ``condition``, made here from its PNG with the run's seed (0), as uint8 HWC."""
    index = int(sample_id[1:])  # s007 -> img/7.png (cvaudit_fixtures.make_dataset)
    pixels = np.asarray(Image.open(workspace / "img" / f"{index}.png").convert("RGB"), dtype=np.float32) / 255.0
    image = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    keys = sample_keys([sample_id])
    name, severity = condition.split("@")
    if name == "fgsm":
        attack = stressors.get("fgsm", epsilons=[float(severity)])
        label = torch.tensor([index % 3])
        with torch.enable_grad():
            image = attack.perturb(ColourNet().eval(), image, label, severity=float(severity), sample_ids=keys, seed=0)
    else:
        stressor = stressors.get(name, severities=[1, 5])
        image = stressor.apply(image, stressor.sample_params(keys, int(severity), seed=0))
    return (image[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def _thumbnails(results: dict) -> dict[tuple, dict[str, str]]:
    return {
        (t["condition"], t["attribute"], t["value"]): {s["sample_id"]: s["image"] for s in t["samples"]}
        for t in results.get("error_thumbnails") or []
    }


def _examples_section(html: str) -> str:
    return html[html.index('id="error-examples"') : html.index('id="fairness"')]


def test_raw_thumbnails_are_the_stressed_images_of_exactly_the_named_samples(workspace):
    out, results = _run(workspace, "raw")
    thumbnails = _thumbnails(results)
    assert list(thumbnails) == TARGETS
    section = _examples_section((out / "report.html").read_text())
    for target, images in thumbnails.items():
        expected = _expected_ids(out / "predictions.csv", *target)
        assert expected and list(images) == expected, target
        for sample_id, uri in images.items():
            thumb = _decode(uri)
            assert thumb.shape == (128, 128, 3)  # 16 x 16 enlarged 8 times (nearest), as the gallery
            assert np.array_equal(thumb[::8, ::8], _stressed(workspace, target[0], sample_id)), (target, sample_id)
            clean = np.asarray(Image.open(workspace / "img" / f"{int(sample_id[1:])}.png").convert("RGB"))
            assert not np.array_equal(thumb[::8, ::8], clean)  # the altered image, not the clean one
            # in the report, next to its id, with a text alternative
            figure = re.search(rf'<img src="{re.escape(uri)}" alt="([^"]+)"><figcaption>{sample_id} \(', section)
            assert figure and figure.group(1) == f"sample {sample_id} as the model saw it under condition {target[0]}"
    assert "Each sample with a thumbnail is shown as the model saw it under the condition" in section


def test_anonymized_thumbnails_are_pixelated_and_cvaudit_report_renders_them_from_results_json(workspace):
    out, results = _run(workspace, "anonymized")
    thumbnails = _thumbnails(results)
    assert list(thumbnails) == TARGETS
    for target, images in thumbnails.items():
        assert list(images) == _expected_ids(out / "predictions.csv", *target)
        for sample_id, uri in images.items():
            thumb = _decode(uri)[::8, ::8].astype(int)  # back to 16 x 16
            # 8 blocks of 2 x 2 pixels across: each block is the mean of the stressed image's block
            blocks = _stressed(workspace, target[0], sample_id).astype(float).reshape(8, 2, 8, 2, 3).mean(axis=(1, 3))
            assert np.abs(thumb[::2, ::2] - blocks).max() <= 1, (target, sample_id)
            assert np.array_equal(thumb, np.repeat(np.repeat(thumb[::2, ::2], 2, axis=0), 2, axis=1))
    # cvaudit report: the thumbnails come from results.json, with or without predictions.csv beside it
    (out / "report.html").unlink()
    elsewhere = workspace / "elsewhere"
    for folder in (out, elsewhere):
        result = CliRunner().invoke(main, ["report", str(out / "results.json"), "--out", str(folder)])
        assert result.exit_code == 0, result.output
        section = _examples_section((folder / "report.html").read_text())
        shown = re.findall(r'<img src="([^"]+)" alt="[^"]+"><figcaption>([^ <]+)', section)
        assert shown == [(uri, sid) for images in thumbnails.values() for sid, uri in images.items()], folder
    assert not (elsewhere / "predictions.csv").exists()
    assert "stored them with their thumbnails in results.json" in section


def test_without_images_there_are_no_thumbnails_and_the_report_says_why(workspace):
    out, results = _run(workspace, "none")
    assert "error_thumbnails" not in results and "gallery" not in results
    assert "data:image" not in (out / "results.json").read_text()
    section = _examples_section((out / "report.html").read_text())
    assert "<img" not in section and "s010 (" in section  # the samples are still named
    assert "No thumbnails: the report may show no images (config report.images, capped by the policy)." in section


def test_a_passing_run_has_no_thumbnails(workspace):
    cfg = write_config(workspace, extra="  images: anonymized\n")
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(workspace / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    results = json.loads((workspace / "out" / "results.json").read_text())
    assert "error_thumbnails" not in results and results["gallery"]
