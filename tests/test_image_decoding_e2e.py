"""End to end: `cvaudit run` on a Hugging Face folder decodes sideways phone photos and transparent
images as transformers' own pipeline does, records how in results.json and states it in the report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hf_fixtures import save_tiny_vit
from PIL import Image

from audit.cli import main

transformers = pytest.importorskip("transformers")

POLICY = "version: 1\nname: d\nrules:\n  - {id: clean-accuracy, condition: clean, metric: accuracy, min: 0.0, blocking: true}\n"


def _workspace(root: Path, data_keys: str) -> Path:
    """A tiny ViT, ten JPEGs stored sideways (EXIF Orientation 6) and ten RGBA PNGs, a config."""
    save_tiny_vit(root / "vit", seed=2)
    rng = np.random.default_rng(0)
    exif = Image.Exif()
    exif[0x0112] = 6
    (root / "img").mkdir()
    rows = ["path,label"]
    for i in range(20):
        blocks = rng.integers(0, 2, (3, 6, 3 if i < 10 else 4), dtype=np.uint8) * 255
        if i < 10:
            big = Image.fromarray(blocks).resize((48, 24), Image.NEAREST)
            big.save(root / "img" / f"{i}.jpg", exif=exif.tobytes(), quality=95)
            rows.append(f"img/{i}.jpg,red")
        else:
            Image.fromarray(blocks, "RGBA").resize((40, 40), Image.NEAREST).save(root / "img" / f"{i}.png")
            rows.append(f"img/{i}.png,red")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    (root / "policy.yaml").write_text(POLICY)
    (root / "config.yaml").write_text(
        "seed: 0\ndevice: cpu\nbatch_size: 8\nmodel:\n  format: huggingface\n  path: vit\n"
        f"data:\n  manifest: manifest.csv\n  num_workers: 0\n{data_keys}"
        "policy: policy.yaml\nevaluation:\n  min_group_size: 5\n  n_bootstrap: 0\nreport:\n  formats: [html]\n"
    )
    return root / "config.yaml"


@pytest.mark.slow
@pytest.mark.parametrize(
    "data_keys, exif, alpha, row",
    [
        (
            "",
            "apply",
            "drop",
            "EXIF orientation applied (images turned upright); alpha channel of transparent images dropped",
        ),
        (
            "  exif: ignore\n  alpha: composite_white\n",
            "ignore",
            "composite_white",
            "EXIF orientation ignored (pixels as stored); transparent images composited over white",
        ),
    ],
)
def test_run_decodes_as_the_pipeline_and_says_how(tmp_path, data_keys, exif, alpha, row):
    config = _workspace(tmp_path, data_keys)
    result = CliRunner().invoke(main, ["run", str(config), "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert (results["provenance"]["exif"], results["provenance"]["alpha"]) == (exif, alpha)
    assert f'<th scope="row">Image decoding</th><td>{row} (config data.exif, data.alpha)</td>' in (
        tmp_path / "out" / "report.html"
    ).read_text(encoding="utf-8")

    with open(tmp_path / "out" / "predictions.csv", newline="") as fh:
        ours = {r["sample_id"]: int(r["prediction"]) for r in csv.DictReader(fh) if r["condition"] == "clean"}
    pipe = transformers.pipeline("image-classification", model=str(tmp_path / "vit"), device="cpu")
    names = pipe.model.config.label2id
    theirs = {sid: names[pipe(str(tmp_path / sid), top_k=1)[0]["label"]] for sid in ours}
    agree_jpeg = sum(ours[s] == theirs[s] for s in ours if s.endswith(".jpg"))
    agree_png = sum(ours[s] == theirs[s] for s in ours if s.endswith(".png"))
    if exif == "apply":
        assert (agree_jpeg, agree_png) == (10, 10)
    else:  # the decoding of earlier versions: the deployed pipeline sees other images
        assert agree_jpeg < 10 and agree_png < 10
