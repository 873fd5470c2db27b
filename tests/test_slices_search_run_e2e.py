"""``slices.search: on`` in a real run: a planted dark slice is found by an image property, shown in the report with
example images, written to slices.csv; on a fair variant (errors at random) nothing is found."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from cvaudit_fixtures import COLOURS, ColourNet, save_model, write_config
from PIL import Image

N = 400


def _dataset(root: Path, *, planted: bool) -> set[str]:
    """N 16x16 images of three colours; a ColourNet gets a grey-noise image right by chance (1 in 3).

    planted: 15% of the images, dimmed to a quarter and greyed with noise, are a dark slice the model gets wrong
    two times in three; otherwise (fair) every image is ordinary and the same share of labels is wrong at random,
    so the errors are independent of every attribute and property the search sees.
    """
    (root / "img").mkdir(parents=True)
    rng = np.random.default_rng(7)
    noisy = set(rng.choice(N, size=int(0.15 * N), replace=False).tolist())
    rows = []
    for i in range(N):
        label = i % 3
        arr = np.clip(np.array(COLOURS[label]) + rng.integers(-20, 20, (16, 16, 3)), 0, 255).astype(float)
        if i in noisy and planted:
            arr = 0.25 * (arr.mean() + rng.normal(0, 30, (16, 16, 3)))
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(root / "img" / f"{i}.png")
        written = (label + 1) % 3 if i in noisy and not planted else label
        rows.append({"sample_id": f"s{i:03d}", "path": f"img/{i}.png", "label": written, "camera": "AB"[i % 2]})
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    save_model(root / "model.pt", ColourNet())
    return {f"s{i:03d}" for i in noisy}


def _run(root: Path, *, sign: bool = False) -> Path:
    from audit.cli import main

    key = ""
    if sign:
        from reports import keygen

        keygen(root / "keys", passphrase=None)
        key = "  sign_key: keys\n"
    extra = f"  images: raw\n{key}slices:\n  search: on\n  min_size: 30\n  depth: 2\n"
    cfg = write_config(root, stressors="", extra=extra)
    text = cfg.read_text().replace("n_bootstrap: 50", "n_bootstrap: 0")
    cfg.write_text(text)
    (root / "policy.yaml").write_text(
        "version: 1\nname: s\nrules:\n  - {id: c, condition: clean, metric: accuracy, min: 0.1, blocking: true}\n"
    )
    out = root / "out"
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_a_planted_dark_slice_is_found_by_its_property_and_reported(tmp_path: Path):
    planted = _dataset(tmp_path, planted=True)
    out = _run(tmp_path, sign=True)
    search = json.loads((out / "results.json").read_text())["slice_search"]
    assert search["findings"], search
    top = search["findings"][0]
    props = {p["attribute"] for p in top["definition"]["all"]}
    assert props & {"brightness", "contrast", "saturation", "colourfulness"}, top["text"]
    # the found slice is the planted one: most of its images are planted and most planted images are in it
    with open(out / "slices.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["id"] == top["id"] and rows[0]["definition"] == top["text"]
    from audit.contract.slices import SliceDefinition, select
    from audit.evaluation import read_slice_table

    table = read_slice_table(out / "predictions.csv", out / "image_properties.csv", attributes=["camera"])
    members = {
        table.ids[k] for k in np.flatnonzero(select(SliceDefinition.model_validate(top["definition"]), table.columns))
    }
    assert len(members & planted) / len(members | planted) > 0.6
    assert top["fairness"] is ("camera" in props)
    assert 1 <= len(top["examples"]) <= 3 and all(e["sample_id"] in planted for e in top["examples"])
    html = (out / "report.html").read_text()
    section = html.split('<section id="slices"')[1].split("</section>")[0]
    assert top["text"].replace("<", "&lt;") in section and 'alt="sample ' in section
    # both files are outputs of the run, covered by its attestation
    envelope = json.loads((out / "attestation.dsse.json").read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert {"slices.csv", "image_properties.csv"} <= {s["name"] for s in statement["subject"]}


@pytest.mark.slow
def test_a_fair_variant_finds_no_slice(tmp_path: Path):
    _dataset(tmp_path, planted=False)
    out = _run(tmp_path)
    search = json.loads((out / "results.json").read_text())["slice_search"]
    assert search["findings"] == [] and search["candidates"] > 0
    with open(out / "slices.csv", newline="") as fh:
        assert list(csv.DictReader(fh)) == []
    assert "No slice was found" in (out / "report.html").read_text()
