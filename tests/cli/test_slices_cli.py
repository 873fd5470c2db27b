"""``cvaudit slices`` through the real command line: slices.csv, --promote, and one line + exit 2 on bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from results_builder import complete_results

from audit.cli import main
from audit.contract import csvfile
from audit.contract.predictions import PREDICTIONS_COLUMNS
from audit.contract.slices import WatchedSlice, select, slice_id
from policies.schema import MetricRule


def _write_run(folder: Path, *, n: int = 3000, seed: int = 0, planted: bool = True, properties: bool = True) -> Path:
    """A classification run folder: results.json, predictions.csv (clean + one stressed condition) and
    image_properties.csv, with the darkest images and camera B at dusk made weak when ``planted``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    camera = rng.choice(["A", "B", "C"], n)
    light = rng.choice(["day", "dusk"], n)
    brightness = rng.random(n)
    weak = ((camera == "B") & (light == "dusk")) if planted else np.zeros(n, dtype=bool)
    correct = rng.random(n) < np.where(weak, 0.5, 0.95)
    results = complete_results(
        {"task": "classification", "dataset": {"attributes": {"camera": {}, "light": {}}, "num_samples": n}}
    )
    (folder / "results.json").write_text(json.dumps(results), encoding="utf-8")
    out = io.StringIO()
    w = csvfile.writer(out, lineterminator="\r\n")
    w.writerow([*PREDICTIONS_COLUMNS, "camera", "light"])
    for i in range(n):
        label = i % 3
        pred = label if correct[i] else (label + 1) % 3
        p_true = 0.9 if correct[i] else 0.2
        for cond, stressor, sev in (("clean", "", ""), ("night@3", "night", 3)):
            w.writerow([f"img{i}.png", cond, stressor, sev, label, pred, 0.9, p_true, 0.83, camera[i], light[i]])
    (folder / "predictions.csv").write_text(out.getvalue(), encoding="utf-8", newline="")
    if properties:
        props = io.StringIO()
        pw = csvfile.writer(props)
        pw.writerow(
            [
                "id",
                "brightness",
                "contrast",
                "sharpness",
                "colourfulness",
                "saturation",
                "aspect_ratio",
                "width",
                "height",
            ]
        )
        for i in range(n):
            pw.writerow(
                [f"img{i}.png", brightness[i], rng.random(), rng.random(), rng.random(), rng.random(), 1.0, 32, 32]
            )
        (folder / "image_properties.csv").write_text(props.getvalue(), encoding="utf-8", newline="")
    return folder


def _invoke(*args: str):
    return CliRunner().invoke(main, ["slices", *args])


def _rows(path: Path) -> list[dict]:
    return list(csvfile.DictReader(path.read_text(encoding="utf-8").splitlines(keepends=True)))


def test_finds_the_planted_slice_and_promotes_it(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run")
    result = _invoke(str(run))
    assert result.exit_code == 0, result.output
    rows = _rows(run / "slices.csv")
    assert rows[0]["definition"] == "camera = B AND light = dusk"
    assert rows[0]["fairness"] == "true" and rows[0]["protected_attributes"] == "camera;light"
    assert float(rows[0]["p_value"]) <= 0.05 and float(rows[0]["effect"]) > 0.3
    assert "1. camera = B AND light = dusk" in result.output

    promoted = _invoke(str(run), "--promote", "1")
    assert promoted.exit_code == 0, promoted.output
    doc = yaml.safe_load(promoted.output)
    rule = MetricRule.model_validate(doc["rules"][0])
    watched = WatchedSlice.model_validate(doc["slices"]["watch"][0])
    assert rule.section == "slices" and rule.entry == watched.id == rows[0]["id"] == slice_id(watched)
    assert rule.metric == "gap.accuracy" and rule.max == 0.0
    camera = np.array(["B", "B", "A"])
    assert select(watched, {"camera": camera, "light": np.array(["dusk", "day", "dusk"])}).tolist() == [
        True,
        False,
        False,
    ]


def test_fair_run_reports_no_slice(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", planted=False, seed=1)
    result = _invoke(str(run), "--out", str(tmp_path / "s.csv"))
    assert result.exit_code == 0, result.output
    assert "no slice confirmed" in result.output
    assert _rows(tmp_path / "s.csv") == []


def test_without_properties_says_so(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", properties=False)
    result = _invoke(str(run), "--attribute", "camera", "--depth", "1")
    assert result.exit_code == 0
    assert "no image_properties.csv" in result.output


def test_property_slice_is_found_by_its_property(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", planted=False, seed=2)
    # make the darkest 10% weak: rewrite the clean rows' predictions
    props = _rows(run / "image_properties.csv")
    dark = {r["id"] for r in props if float(r["brightness"]) < 0.1}
    text = run.joinpath("predictions.csv").read_bytes().decode("utf-8")
    rng = np.random.default_rng(0)
    lines = []
    for line in text.split("\r\n"):
        cells = line.split(",")
        if len(cells) > 5 and cells[1] == "clean" and cells[0] in dark and rng.random() < 0.5:
            cells[5] = str((int(cells[4]) + 1) % 3)
        lines.append(",".join(cells))
    run.joinpath("predictions.csv").write_text("\r\n".join(lines), encoding="utf-8", newline="")
    result = _invoke(str(run))
    assert result.exit_code == 0, result.output
    rows = _rows(run / "slices.csv")
    assert rows and "brightness <" in rows[0]["definition"] and rows[0]["fairness"] == "false"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--attribute", "night"], "attribute 'night' is not in the manifest attributes of this run"),
        (["--protected", "age"], "attribute 'age' is not in the manifest attributes"),
        (["--depth", "0"], "depth must be 1 to 4"),
        (["--depth", "5"], "depth must be 1 to 4"),
        (["--tolerance", "-0.1"], "tolerance must be in [0, 1]"),
        (["--tolerance", "1.5"], "tolerance must be in [0, 1]"),
        (["--metric", "ece"], "cannot be searched"),
        (["--promote", "1"], "no slices.csv"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    run = _write_run(tmp_path / "run", n=300)
    result = _invoke(str(run), *args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.output
    assert not (run / "slices.csv").exists()


def test_run_folder_without_predictions(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", n=100)
    (run / "predictions.csv").unlink()
    result = _invoke(str(run))
    assert result.exit_code == 2 and "no predictions.csv in the run folder" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_promote_out_of_range_and_malformed_properties(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run")
    assert _invoke(str(run)).exit_code == 0
    result = _invoke(str(run), "--promote", "99")
    assert result.exit_code == 2 and "no slice 99" in result.output
    text = (run / "image_properties.csv").read_text(encoding="utf-8").replace("img5.png,", "img5.png,dark", 1)
    (run / "image_properties.csv").write_text(text, encoding="utf-8")
    bad = _invoke(str(run))
    assert bad.exit_code == 2 and "image_properties.csv: line 7: brightness" in bad.output


def test_signed_run_folder_needs_out(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", n=300)
    (run / "attestation.dsse.json").write_text("{}", encoding="utf-8")
    result = _invoke(str(run))
    assert result.exit_code == 2 and "is a signed run folder" in result.output
    assert not (run / "slices.csv").exists()
    assert _invoke(str(run), "--out", str(tmp_path / "elsewhere.csv")).exit_code == 0


def test_signed_run_folder_refuses_an_out_into_it(tmp_path: Path) -> None:
    """--out naming a file in the signed folder, directly or through a link, is refused as the default is."""
    run = _write_run(tmp_path / "run", n=300)
    (run / "attestation.dsse.json").write_text("{}", encoding="utf-8")
    (tmp_path / "link").symlink_to(run)
    for out in (run / "slices.csv", tmp_path / "link" / "." / "slices.csv", run / "sub" / "x.csv"):
        result = _invoke(str(run), "--out", str(out))
        assert result.exit_code == 2 and "is a signed run folder" in result.output, out
        assert len(result.output.strip().splitlines()) == 1
    assert not (run / "slices.csv").exists()


@pytest.mark.parametrize(
    ("column", "text", "message"),
    [
        ("metric", "accuracy\n    blocking: false\n    on_insufficient_data: pass", "is not a search metric"),
        ("value", "0.5\nrules: []", "value"),
        ("tolerance", "abc", "tolerance 'abc' is not a finite number"),
        ("n_confirm", "12.5", "n_confirm '12.5' is not a whole number"),
        ("p_value", "nan", "p_value 'nan' is not a finite number"),
    ],
)
def test_promote_refuses_a_cell_that_is_not_what_slices_wrote(tmp_path: Path, column, text, message) -> None:
    """A slices.csv is a user file: a newline in a cell must not add keys to the printed rule (one line, exit 2)."""
    import csv

    run = _write_run(tmp_path / "run")
    assert _invoke(str(run)).exit_code == 0
    with open(run / "slices.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows, "the planted run must give a slice"
    rows[0][column] = text
    with open(run / "slices.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = _invoke(str(run), "--promote", "1")
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
