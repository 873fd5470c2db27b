"""cvaudit queue on a detection run: rectangles in Label Studio's percent coordinates, the documented ranking,
governance hold-backs, bad input."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET

import jsonschema
import pytest
from click.testing import CliRunner
from loop_helpers import DETECTION_HELD, check_in_label_studio, one_line_error

from audit.cli import main

#: Label Studio's JSON import format with pre-annotations, restricted to what a RectangleLabels task holds
#: (docs: "Import pre-annotated data", "Bounding boxes": x, y, width, height in percent of the image).
RECT_TASKS_SCHEMA = {
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
                    "required": ["result", "model_version"],
                    "properties": {
                        "model_version": {"type": "string"},
                        "score": {"type": "number", "minimum": 0, "maximum": 1},
                        "result": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": [
                                    "id",
                                    "type",
                                    "from_name",
                                    "to_name",
                                    "original_width",
                                    "original_height",
                                    "value",
                                ],
                                "properties": {
                                    "type": {"const": "rectanglelabels"},
                                    "score": {"type": "number", "minimum": 0, "maximum": 1},
                                    "value": {
                                        "type": "object",
                                        "required": ["x", "y", "width", "height", "rotation", "rectanglelabels"],
                                        "properties": {
                                            **{
                                                k: {"type": "number", "minimum": 0, "maximum": 100}
                                                for k in ("x", "y", "width", "height")
                                            },
                                            "rotation": {"const": 0},
                                            "rectanglelabels": {
                                                "type": "array",
                                                "items": {"type": "string"},
                                                "minItems": 1,
                                                "maxItems": 1,
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
    },
}


def queue(run_dir, out, *args):
    return CliRunner().invoke(main, ["queue", str(run_dir), "--out", str(out), *map(str, args)])


@pytest.fixture(scope="module")
def det_queue(det_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("detqueue") / "q"
    result = queue(det_run, out, "--budget", 50)
    assert result.exit_code == 0, result.output
    return out, result.output


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_governance_holds_images_back_and_never_exports_them(det_queue):
    out, printed = det_queue
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "detection"
    assert summary["held_back_by_check"] == {check: 1 for check in DETECTION_HELD.values()}
    assert summary["held_back"] == 4 and "4 held back by governance" in printed
    rows = _csv(out / "queue.csv")
    tasks = json.loads((out / "tasks.json").read_text())
    assert rows and not {r["sample_id"] for r in rows} & set(DETECTION_HELD)
    assert not {t["data"]["sample_id"] for t in tasks} & set(DETECTION_HELD)
    files = " ".join(p.name for p in (out / "images").iterdir())
    assert not any(sid in files for sid in DETECTION_HELD)
    # every one of the 24 scenes has a reason (camera B: missed on clean; camera A: lost at night), 4 held back
    assert len(rows) == summary["selected"] == 20 == len(tasks)


def test_rectangles_are_in_percent_of_the_original_image(det_queue, det_run):
    """Every box against a hand computation from instances.json and detections.json (96 x 64 images)."""
    out, _ = det_queue
    root = det_run.parent
    instances = json.loads((root / "instances.json").read_text())
    names = {c["id"]: c["name"] for c in instances["categories"]}
    by_file = {im["file_name"]: im for im in instances["images"]}
    manifest = {r["sample_id"]: r["path"] for r in _csv(root / "manifest.csv")}
    results = json.loads((det_run / "results.json").read_text())
    threshold = results["detection"]["settings"]["score_threshold"]
    detections = json.loads((det_run / "detections.json").read_text())
    checked = 0
    for t in json.loads((out / "tasks.json").read_text()):
        image = by_file[manifest[t["data"]["sample_id"]]]
        w, h = image["width"], image["height"]
        assert (w, h) == (96, 64)
        truth, model = t["predictions"]
        assert truth["model_version"].startswith("ground-truth:") and model["model_version"].startswith("cvaudit:")
        expected = sorted(
            (names[a["category_id"]], a["bbox"][0] * 100 / 96, a["bbox"][1] * 100 / 64, a["bbox"][2] * 100 / 96)
            + (a["bbox"][3] * 100 / 64,)
            for a in instances["annotations"]
            if a["image_id"] == image["id"]
        )
        got = sorted(
            (r["value"]["rectanglelabels"][0], r["value"]["x"], r["value"]["y"], r["value"]["width"])
            + (r["value"]["height"],)
            for r in truth["result"]
        )
        assert [g[0] for g in got] == [e[0] for e in expected]
        assert [g[1:] for g in got] == [pytest.approx(e[1:]) for e in expected]
        dets = sorted(
            (d for d in detections if d["condition"] == "clean" and d["image_id"] == image["id"]),
            key=lambda d: -d["score"],
        )
        dets = [d for d in dets if d["score"] >= threshold]
        assert len(model["result"]) == len(dets)
        for r, d in zip(model["result"], dets):
            x, y, bw, bh = d["bbox"]
            assert r["value"]["x"] == pytest.approx(x / w * 100) and r["value"]["y"] == pytest.approx(y / h * 100)
            assert r["value"]["width"] == pytest.approx(bw / w * 100)
            assert r["value"]["height"] == pytest.approx(bh / h * 100)
            assert r["score"] == pytest.approx(d["score"]) and r["value"]["rectanglelabels"] == [
                names[d["category_id"]]
            ]
            assert (r["original_width"], r["original_height"]) == (w, h)
        checked += len(truth["result"]) + len(model["result"])
    assert checked > 20


def test_percent_box_by_hand():
    from audit.loop.labelstudio import percent_box

    # a 640 x 480 image, box from (64, 120) to (320, 360): 10 %, 25 %, 40 % wide, 50 % high
    assert percent_box((64, 120, 320, 360), 640, 480) == {
        "x": 10.0,
        "y": 25.0,
        "width": 40.0,
        "height": 50.0,
        "rotation": 0,
    }


def test_label_studio_files_follow_the_documented_format(det_queue):
    out, _ = det_queue
    tasks = json.loads((out / "tasks.json").read_text())
    jsonschema.validate(tasks, RECT_TASKS_SCHEMA)
    config = ET.fromstring((out / "labeling_config.xml").read_text())
    image, rects = config.find("Image"), config.find("RectangleLabels")
    assert config.tag == "View" and image.get("value") == "$image" and rects.get("toName") == image.get("name")
    classes = [c.get("value") for c in rects.findall("Label")]
    assert classes == ["red", "green", "blue"]
    ids = []
    for t in tasks:
        for p in t["predictions"]:
            for r in p["result"]:
                assert (r["from_name"], r["to_name"]) == (rects.get("name"), image.get("name"))
                assert r["value"]["rectanglelabels"][0] in classes
                ids.append(r["id"])
        assert (out / t["data"]["image"].split("?d=")[1]).is_file()
    assert len(set(ids)) == len(ids)  # Label Studio wants distinct result ids


def test_label_studio_sdk_accepts_the_rectangles_when_installed(det_queue):
    label_interface = pytest.importorskip("label_studio_sdk.label_interface")
    out, _ = det_queue
    li = label_interface.LabelInterface((out / "labeling_config.xml").read_text())
    li.validate()
    for t in json.loads((out / "tasks.json").read_text()):
        assert li.validate_task({"data": t["data"]})
        for p in t["predictions"]:
            assert li.validate_prediction(p, return_errors=True) == []


def test_the_ranking_follows_the_documented_reasons(det_queue, det_run):
    """From detections.csv alone: camera B images miss every object on clean (missed_on_clean = fn / objects);
    camera A images find them all on clean and lose them at night (missed_under_stress = night fn / clean tp)."""
    out, _ = det_queue
    per = {(r["condition"], r["sample_id"]): r for r in _csv(det_run / "detections.csv")}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failing_conditions"] == {"night": "night@3"}
    rows = _csv(out / "queue.csv")
    for r in rows:
        clean, night = per[("clean", r["sample_id"])], per[("night@3", r["sample_id"])]
        assert int(r["missed_on_clean"]) == int(clean["fn"]) and int(r["false_positives_on_clean"]) == int(clean["fp"])
        scores = []
        if int(clean["fn"]):
            scores.append(int(clean["fn"]) / int(clean["objects"]))
        lost = int(night["fn"]) - int(clean["fn"])
        if int(clean["tp"]) and lost:
            scores.append(lost / int(clean["tp"]))
        scores.sort(reverse=True)
        assert float(r["priority"]) == pytest.approx(scores[0] + 0.1 * (len(scores) - 1), abs=1e-4)
    priorities = [float(r["priority"]) for r in rows]
    assert priorities == sorted(priorities, reverse=True)
    # strata share the budget by miss rate: every candidate fits a budget of 50
    assert {s["stratum"]: s["selected"] for s in summary["strata"]} == {"A": 10, "B": 10}


def test_a_small_budget_goes_to_the_stratum_that_misses_most(det_run, tmp_path):
    out = tmp_path / "q"
    assert queue(det_run, out, "--budget", 4).exit_code == 0
    summary = json.loads((out / "summary.json").read_text())
    rates = {s["stratum"]: s["miss_rate"] for s in summary["strata"]}
    assert rates["B"] == 1.0 and rates["A"] == pytest.approx(0.5)  # B misses on clean and at night; A at night
    assert {s["stratum"]: s["selected"] for s in summary["strata"]} == {"A": 1, "B": 3}  # 4 x 0.5/1.5, 4 x 1/1.5


def test_variants_are_refused_for_detection(det_run, tmp_path):
    one_line_error(queue(det_run, tmp_path / "q", "--variants"), "--variants: not available for detection runs")


def test_a_detection_run_without_detections(det_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(det_run, copy)
    (copy / "detections.json").unlink()
    one_line_error(queue(copy, tmp_path / "q"), "no detections.json")


def test_an_unknown_stratify_attribute(det_run, tmp_path):
    one_line_error(queue(det_run, tmp_path / "q", "--stratify", "lens"), "--stratify 'lens': not an attribute")


@pytest.mark.slow
def test_label_studio_imports_the_rectangles_after_the_documented_steps(det_queue, tmp_path):
    """The documented steps with the rectangle interface against a real Label Studio: every image served and
    both pre-annotations of every task stored as rectangles."""

    def check(session, base, pid, tasks):
        listed = session.get(f"{base}/api/tasks", params={"project": pid, "page_size": 1000}, timeout=30).json()
        listed = listed["tasks"] if isinstance(listed, dict) else listed
        assert len(listed) == len(tasks)
        for item in listed:
            stored = session.get(f"{base}/api/predictions/", params={"task": item["id"]}, timeout=30).json()
            assert len(stored) == 2 and all(r["type"] == "rectanglelabels" for p in stored for r in p["result"])

    check_in_label_studio(det_queue[0], tmp_path, check)


def test_a_run_without_objects_csv_is_matched_again_to_the_same_queue(det_queue, det_run, tmp_path):
    """objects.csv (the audit's per-object outcomes) and the queue's own matching agree on a run whose stressors
    move no pixel (the runs before objects.csv existed)."""
    import shutil

    assert (det_run / "objects.csv").is_file()
    copy = tmp_path / "run"
    shutil.copytree(det_run, copy)
    (copy / "objects.csv").unlink()
    assert queue(copy, tmp_path / "q", "--budget", 50).exit_code == 0
    assert (tmp_path / "q" / "queue.csv").read_text() == (det_queue[0] / "queue.csv").read_text()


def test_an_attack_is_never_a_failing_condition_of_the_queue():
    """An attack's mAP drop says nothing about which photographs to collect: only image stressors fail."""
    from types import SimpleNamespace

    from audit.loop.detection_queue import failing_conditions

    def cond(cid, stressor, severity, value):
        return SimpleNamespace(id=cid, stressor=stressor, severity=severity, metrics=SimpleNamespace(map=value))

    results = SimpleNamespace(
        stressors=[
            SimpleNamespace(name="night", model_aware=False),
            SimpleNamespace(name="detection_pgd", model_aware=True),
        ],
        detection=SimpleNamespace(
            conditions=[
                cond("clean", None, 0, 0.6),
                cond("night@1", "night", 1, 0.59),
                cond("night@3", "night", 3, 0.3),
                cond("detection_pgd@0.0157", "detection_pgd", 0.0157, 0.01),
            ]
        ),
    )
    assert failing_conditions(SimpleNamespace(results=results)) == {"night": "night@3"}
