"""``cvaudit slices`` on a detection run folder through the real command line: objects (clustered in images) as the
units, recall as the metric, the slice's numbers against a hand-written reference of the image-level split and the
cluster-robust test, and one line + exit 2 on bad input.

The run folder is synthetic (results.json of a detection audit, detections.csv, objects.csv as the run writes
them): fast, with a planted weak slice (small objects near the left edge) and misses correlated within images.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
from click.testing import CliRunner
from detection_results import detection_dict
from results_builder import complete_results

from audit.cli import main
from audit.contract import csvfile
from audit.contract.image_properties import PROPERTY_COLUMNS
from audit.contract.metric_specs import DETECTION_COUNTS
from audit.evaluation.detection.objects import GEOMETRY_COLUMNS
from audit.evaluation.slices.run_folder import SLICES_COLUMNS, read_detection_table, read_slices_csv

OBJECT_HEADER = (
    "condition",
    "sample_id",
    "image_row",
    "object_index",
    "class",
    "size",
    "object.occluded",
    *GEOMETRY_COLUMNS,
    "present",
    "found",
    "visibility",
    "occluded_fraction",
)


def write_detection_run(folder: Path, *, images: int = 400, seed: int = 0, planted: bool = True) -> dict:
    """A detection run folder; returns the clean objects as arrays (image, missed, size, center_x)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    (folder / "results.json").write_text(json.dumps(complete_results(detection_dict())), encoding="utf-8")
    det = io.StringIO()
    dw = csvfile.writer(det)
    dw.writerow(
        ["condition", "sample_id", "image_id", "file_name", "camera", "objects", "detections"]
        + [spec.name for spec in DETECTION_COUNTS]
    )
    obj = io.StringIO()
    ow = csvfile.writer(obj)
    ow.writerow(OBJECT_HEADER)
    kept: dict[str, list] = {"image": [], "missed": [], "size": [], "center_x": []}
    for r in range(images):
        camera = "AB"[r % 2]
        count = int(rng.integers(1, 7))
        hard = rng.normal(0.0, 1.0)  # an image effect: misses of one image are correlated
        for cond in ("clean", "night@3"):
            dw.writerow(
                [cond, f"s{r:04d}", r + 1, f"images/{r}.png", camera, count, count] + [0] * len(DETECTION_COUNTS)
            )
        for k in range(count):
            size = rng.choice(["small", "medium", "large"])
            cx, cy, share = rng.random(), rng.random(), rng.uniform(0.001, 0.3)
            logit = -2.2 + 0.8 * hard + (3.0 if planted and size == "small" and cx < 0.25 else 0.0)
            missed = rng.random() < 1 / (1 + math.exp(-logit))
            for cond in ("clean", "night@3"):
                found = "false" if missed or cond != "clean" else "true"
                ow.writerow(
                    [
                        cond,
                        f"s{r:04d}",
                        r,
                        k,
                        rng.choice(["car", "person"]),
                        size,
                        "true" if k % 3 == 0 else "false",
                        share,
                        cx,
                        cy,
                        "true",
                        found,
                        1.0,
                        "",
                    ]
                )
            kept["image"].append(r)
            kept["missed"].append(float(missed))
            kept["size"].append(size)
            kept["center_x"].append(cx)
    (folder / "detections.csv").write_text(det.getvalue(), encoding="utf-8", newline="")
    (folder / "objects.csv").write_text(obj.getvalue(), encoding="utf-8", newline="")
    return {k: np.array(v) for k, v in kept.items()}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("det") / "run"
    return folder, write_detection_run(folder)


def _invoke(*args: str):
    return CliRunner().invoke(main, ["slices", *args])


def test_a_detection_run_is_searched_on_its_objects(run, tmp_path):
    folder, truth = run
    out = tmp_path / "slices.csv"
    result = _invoke(str(folder), "--out", str(out), "--depth", "2")
    assert result.exit_code == 0, result.output
    assert f"{len(truth['missed'])} objects of clean" in result.output
    assert "no image_properties.csv" in result.output  # a synthetic folder without the file: said, not hidden
    rows = read_slices_csv(out)
    assert rows and list(rows[0]) == list(SLICES_COLUMNS)
    top = rows[0]
    assert top["metric"] == "recall"
    # the planted slice: small objects with their centre in the left quarter
    assert "size = small" in top["definition"] and "center_x" in top["definition"], top["definition"]
    assert float(top["effect"]) > 0.2 and float(top["value"]) < float(top["rest_value"])
    definition = json.loads(top["definition_json"])
    (upper,) = [p["max"] for p in definition["all"] if p["attribute"] == "center_x"]
    assert upper <= 0.35

    # the reference: the image-level split (images in id order, permuted by the seed, first half discovery) and
    # the slice's recall, its rest and the cluster-robust p-value on the confirmation half, by hand
    images = np.unique(truth["image"])
    first = set(images[np.random.default_rng(0).permutation(len(images))[: (len(images) + 1) // 2]].tolist())
    confirm = np.array([i not in first for i in truth["image"]])
    in_slice = (truth["size"] == "small") & (truth["center_x"] < upper)
    lower = next(p.get("min") for p in definition["all"] if p["attribute"] == "center_x")
    if lower is not None:
        in_slice &= truth["center_x"] >= lower
    assert int(in_slice.sum()) == int(top["n"])
    s, r = in_slice & confirm, ~in_slice & confirm
    assert int(top["n_confirm"]) == s.sum() and int(top["rest_n_confirm"]) == r.sum()
    assert float(top["value"]) == pytest.approx(1 - truth["missed"][s].mean(), abs=1e-12)
    assert float(top["rest_value"]) == pytest.approx(1 - truth["missed"][r].mean(), abs=1e-12)
    _, p_raw = _reference_test(truth["missed"], truth["image"], s, r, set(truth["image"][confirm].tolist()))
    assert float(top["p_raw"]) == pytest.approx(p_raw, rel=1e-9, abs=1e-300)


def _reference_test(missed, image, s, r, half: set) -> tuple[float, float]:
    """One-sided test of recall(S) < recall(R) with the sandwich variance over images, written out by hand."""
    ms, ns, mr, nr = {}, {}, {}, {}
    for b, i, a, c in zip(missed, image, s, r):
        if a:
            ms[i], ns[i] = ms.get(i, 0.0) + b, ns.get(i, 0) + 1
        if c:
            mr[i], nr[i] = mr.get(i, 0.0) + b, nr.get(i, 0) + 1
    big_ns, big_nr = sum(ns.values()), sum(nr.values())
    p_s, p_r = sum(ms.values()) / big_ns, sum(mr.values()) / big_nr
    total = 0.0
    for i in half:
        d = (ms.get(i, 0.0) - p_s * ns.get(i, 0)) / big_ns - (mr.get(i, 0.0) - p_r * nr.get(i, 0)) / big_nr
        total += d * d
    g = len(half)
    var = total * g / (g - 1)
    a_s, a_r = (sum(ms.values()) + 1) / (big_ns + 2), (sum(mr.values()) + 1) / (big_nr + 2)
    floor = a_s * (1 - a_s) / (big_ns + 2) + a_r * (1 - a_r) / (big_nr + 2)
    z = (p_s - p_r) / math.sqrt(max(var, floor))
    return z, 1 - NormalDist().cdf(z)


def test_same_seed_same_slices_csv(run, tmp_path):
    folder, _ = run
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert _invoke(str(folder), "--out", str(a), "--depth", "2", "--seed", "3").exit_code == 0
    assert _invoke(str(folder), "--out", str(b), "--depth", "2", "--seed", "3").exit_code == 0
    assert a.read_bytes() == b.read_bytes() and len(a.read_text().splitlines()) > 1


def test_a_null_detection_run_reports_nothing(tmp_path):
    folder = tmp_path / "null"
    write_detection_run(folder, images=300, seed=5, planted=False)
    result = _invoke(str(folder), "--out", str(tmp_path / "s.csv"), "--depth", "2")
    assert result.exit_code == 0, result.output
    assert "no slice confirmed" in result.output


def _one_line_exit_2(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_a_classification_metric_on_a_detection_run_is_refused(run, tmp_path):
    folder, _ = run
    _one_line_exit_2(_invoke(str(folder), "--metric", "accuracy", "--out", str(tmp_path / "s.csv")), "recall")
    assert not (tmp_path / "s.csv").exists()


def test_recall_on_a_classification_run_is_refused(tmp_path):
    from test_slices_cli import _write_run

    folder = _write_run(tmp_path / "cls", n=300)
    _one_line_exit_2(_invoke(str(folder), "--metric", "recall", "--out", str(tmp_path / "s.csv")), "classification")


def test_promote_on_a_detection_run_prints_a_recall_rule(run, tmp_path):
    import yaml

    from audit.contract.slices import WatchedSlice

    folder, _ = run
    out = tmp_path / "slices.csv"
    assert _invoke(str(folder), "--out", str(out), "--depth", "1").exit_code == 0
    row = read_slices_csv(out)[0]
    # the slices.csv alone (no run folder beside it) is promoted alike: the rule reads only slices.csv
    for where in (folder, tmp_path / "nowhere"):
        result = _invoke(str(where), "--out", str(out), "--promote", "1")
        assert result.exit_code == 0, result.output
        snippet = yaml.safe_load(result.stdout)
        (rule,) = snippet["rules"]
        assert (rule["section"], rule["entry"], rule["metric"]) == ("slices", row["id"], "gap.recall")
        assert rule["max"] == float(row["tolerance"] or 0) and rule["min_samples"] == max(2, int(row["n_confirm"] or 0))
        (watch,) = snippet["slices"]["watch"]
        assert WatchedSlice.model_validate(watch).canonical() == json.loads(row["definition_json"] or "")
    _one_line_exit_2(_invoke(str(folder), "--out", str(out), "--promote", "99"), "no slice 99")


def _copy(run, tmp_path: Path) -> Path:
    folder, _ = run
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("results.json", "detections.csv", "objects.csv"):
        (copy / name).write_bytes((folder / name).read_bytes())
    return copy


def _write_properties(folder: Path, images: int, *, bad: bool = False) -> dict[str, float]:
    """image_properties.csv for the images s0000..: brightness 0.2 for every fourth image, else 0.6 (width r + 1)."""
    rows, brightness = [",".join(PROPERTY_COLUMNS)], {}
    for r in range(images):
        brightness[f"s{r:04d}"] = 0.2 if r % 4 == 0 else 0.6
        cell = "dark" if bad and r == 3 else repr(brightness[f"s{r:04d}"])
        rows.append(f"s{r:04d},{cell},0.1,0.01,0.2,0.3,1.5,{r + 1},64")
    (folder / "image_properties.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return brightness


def test_objects_carry_their_images_properties(run, tmp_path):
    copy = _copy(run, tmp_path)
    _, truth = run
    brightness = _write_properties(copy, 400)
    table = read_detection_table(copy)
    assert table.properties == list(PROPERTY_COLUMNS[1:]) and table.properties_file
    images = truth["image"]  # each object's image row r (sample s{r:04d})
    assert table.attributes["brightness"].tolist() == [brightness[f"s{r:04d}"] for r in images]
    assert table.attributes["width"].tolist() == [float(r + 1) for r in images]
    result = _invoke(str(copy), "--out", str(tmp_path / "s.csv"), "--depth", "1", "--attribute", "brightness")
    assert result.exit_code == 0 and "no image_properties.csv" not in result.output, result.output
    assert "1 attributes" in result.output


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("bad property", "image_properties.csv: line 5: brightness 'dark' is not a number"),
        ("no objects.csv", "objects.csv"),
        ("no detections.csv", "detections.csv"),
        ("bad found", "line 2: present/found"),
        ("bad share", "area_share"),
        ("unknown image", "s9999"),
        ("unknown attribute", "'colour'"),
        ("attribute clash", "also an object column"),
    ],
)
def test_bad_detection_input_is_one_line(run, tmp_path, case, needle):
    copy = _copy(run, tmp_path)
    objects, detections = copy / "objects.csv", copy / "detections.csv"
    lines = objects.read_text().splitlines(keepends=True)
    extra: list[str] = []
    if case == "no objects.csv":
        objects.unlink()
    elif case == "no detections.csv":
        detections.unlink()
    elif case in ("bad found", "bad share"):
        cells = lines[1].split(",")
        column = "found" if case == "bad found" else "area_share"
        cells[OBJECT_HEADER.index(column)] = "yes"
        objects.write_text(lines[0] + ",".join(cells) + "".join(lines[2:]))
    elif case == "unknown image":
        objects.write_text(lines[0] + lines[1].replace("s0000", "s9999") + "".join(lines[2:]))
    elif case == "unknown attribute":
        extra = ["--attribute", "colour"]
    elif case == "bad property":
        _write_properties(copy, 400, bad=True)
    else:
        detections.write_text(detections.read_text().replace(",camera,", ",size,", 1))
    result = _invoke(str(copy), "--out", str(tmp_path / "s.csv"), *extra)
    _one_line_exit_2(result, needle)
    assert not (tmp_path / "s.csv").exists()


def test_slices_search_in_a_detection_config_is_refused_at_validation(tmp_path):
    """``slices: search on`` stays refused for task: detection (fail closed, one line); ``watch`` is accepted
    (tests/test_slices_detection_watch.py)."""
    from detection_fixtures import make_detection_dataset, write_detection_config

    from audit.contract.config import load_config
    from audit.contract.errors import CvauditError

    make_detection_dataset(tmp_path, n=2)
    path = write_detection_config(tmp_path, tmp_path / "detector.pt", slices={"search": "on"})
    with pytest.raises(CvauditError, match="slices.search is not supported with task: detection") as err:
        load_config(path)
    assert "\n" not in str(err.value)
