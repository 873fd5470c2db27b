"""Per-object outcomes and each condition's own truth, in process: objects.csv round trip, the moved truth of a
letterbox batch (hand-computed visibilities through the padding band), the refusal of an undeclared stressor."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from detection_fixtures import make_detection_dataset, write_detection_config
from detection_shift_plugin import PLUGIN_SOURCE

import stressors
from audit.contract.config import load_config
from audit.contract.errors import AuditError
from audit.evaluation.conditions import Condition
from audit.evaluation.detection.coco_metrics import ImageTruth
from audit.evaluation.detection.evaluate import (
    ConditionObjects,
    check_box_support,
    condition_truth,
    read_detection_data,
    stress_detection_batch,
)
from audit.evaluation.detection.letterbox import apply_resize, plan_resize
from audit.evaluation.detection.objects import ObjectOutcomes, ObjectsCsvWriter, read_objects


@pytest.fixture(scope="module")
def plugin():
    namespace: dict = {}
    exec(compile(PLUGIN_SOURCE, "cvaudit_test_shift", "exec"), namespace)  # the test stressors, not installed
    return namespace


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    make_detection_dataset(root, n=6)
    return root


@pytest.fixture(scope="module")
def data(root):
    cfg = load_config(write_detection_config(root, root / "detector.pt"))
    return read_detection_data(cfg)


def test_objects_csv_round_trip(data, root, tmp_path):
    n = [len(image.objects) for image in data.truth.images]
    rows = [(r, k) for r, count in enumerate(n) for k in range(count)]
    outcomes = ObjectOutcomes(
        condition=["-odd@1"] * len(rows),  # an id a spreadsheet would read as a formula
        image_row=[r for r, _ in rows],
        object_index=[k for _, k in rows],
        present=[k % 2 == 0 for _, k in rows],
        found=[k == 0 for _, k in rows],
        visibility=[1 / (k + 3) for _, k in rows],
        occluded_fraction=[math.nan if k else 0.25 for _, k in rows],
    )
    path = tmp_path / "objects.csv"
    with path.open("w", newline="") as f:
        ObjectsCsvWriter(f, data).write(outcomes)
    text = path.read_text()
    assert text.splitlines()[0] == (
        "condition,sample_id,image_row,object_index,class,size,object.occluded,"
        "area_share,center_x,center_y,present,found,visibility,occluded_fraction"
    )
    assert text.splitlines()[1].startswith("'-odd@1,s000,0,0,")
    # the box geometry against the annotation file by hand: share of the image, centre as fractions of the frame
    instances = json.loads((root / "instances.json").read_text())
    size = {image["id"]: (image["width"], image["height"]) for image in instances["images"]}
    expected = [
        (
            a["bbox"][2] * a["bbox"][3] / (size[a["image_id"]][0] * size[a["image_id"]][1]),
            (a["bbox"][0] + a["bbox"][2] / 2) / size[a["image_id"]][0],
            (a["bbox"][1] + a["bbox"][3] / 2) / size[a["image_id"]][1],
        )
        for a in instances["annotations"]
    ]
    with path.open(newline="") as f:
        written = [(float(r["area_share"]), float(r["center_x"]), float(r["center_y"])) for r in csv.DictReader(f)]
    assert len(written) == len(expected) > 0
    np.testing.assert_allclose(written, expected, rtol=1e-12)
    assert all(0 < a <= 1 and 0 < x < 1 and 0 < y < 1 for a, x, y in written)
    back = read_objects(path)
    for name in ObjectOutcomes.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(back, name), getattr(outcomes, name))
    assert back.conditions == ("-odd@1",) and len(back.select("-odd@1")) == len(rows)
    assert len(read_objects(path, conditions=["clean"])) == 0


def test_read_objects_names_the_bad_line(tmp_path):
    path = tmp_path / "objects.csv"
    path.write_text(
        "condition,image_row,object_index,present,found,visibility,occluded_fraction\nclean,0,0,yes,true,1.0,\n"
    )
    with pytest.raises(AuditError, match=r"objects\.csv, line 2: bad value"):
        read_objects(path)
    path.write_text("condition,image_row\n")
    with pytest.raises(AuditError, match="missing column 'object_index'"):
        read_objects(path)


def test_condition_truth_is_the_clean_truth_unless_boxes_moved():
    clean = ImageTruth(1, 100, 50, np.array([[10.0, 10, 20, 10], [0, 0, 5, 5]]), np.array([1, 2]), area=[150.0, 25.0])
    assert condition_truth(clean, None) is clean
    assert condition_truth(clean, ConditionObjects.unchanged(1, 2)) is clean
    moved = ConditionObjects(
        1, np.array([True, False]), np.array([0.5, 0.0]), np.full(2, np.nan), np.array([[90.0, 10, 100, 20]])
    )
    truth = condition_truth(clean, moved)
    np.testing.assert_array_equal(truth.boxes, [[90, 10, 10, 10]])
    np.testing.assert_array_equal(truth.category_ids, [1])
    assert truth.area.tolist() == [75.0]  # the annotated area scaled by the box's visible share


def test_letterbox_padding_is_outside_the_image(plugin, data):
    """A 96 x 64 image letterboxed into 96 x 96 (16 grey rows above and below, scale 1), shifted 20 rows down:
    an object's visible share is what stays above row 64 of the original, by hand."""
    shift = Condition("test_shift@1", plugin["Shift"](), 1, "test_shift")
    rows = list(range(len(data)))
    params = plan_resize([(64, 96)] * len(rows), input_size=(96, 96), mode="letterbox")
    assert float(params.pad_top[0]) == 16 and float(params.scale_y[0]) == 1
    images = apply_resize([torch.rand(3, 64, 96) for _ in rows], params)
    keys = torch.from_numpy(data.keys[rows])
    for min_visibility in (0.3, 0.6):
        _, objects = stress_detection_batch(
            shift, "geometric", images, keys, data=data, rows=rows, params=params, seed=0, min_visibility=min_visibility
        )
        assert objects is not None
        seen_partial = False
        for r, state in zip(rows, objects):
            boxes = [o.box for o in data.truth.images[r].objects]
            expected_vis = [max(0.0, min(y2 + 20, 64) - (y1 + 20)) / (y2 - y1) for _, y1, _, y2 in boxes]
            np.testing.assert_allclose(state.visibility, expected_vis, atol=1e-12)
            expected_kept = [v >= min_visibility and v > 0 for v in expected_vis]
            assert state.kept.tolist() == expected_kept
            kept_boxes = [[x1, y1 + 20, x2, min(y2 + 20, 64)] for (x1, y1, x2, y2), k in zip(boxes, expected_kept) if k]
            np.testing.assert_allclose(state.boxes.reshape(-1, 4), np.reshape(kept_boxes, (-1, 4)), atol=1e-9)
            seen_partial |= any(0 < v < 1 for v in expected_vis)
        assert seen_partial


def test_photometric_condition_is_stressed_as_before(data):
    import stressors

    night = stressors.get("night", severities=[2])
    cond = Condition("night@2", night, 2, "night")
    rows = [0, 1]
    params = plan_resize([(64, 96)] * 2, input_size=(64, 64))
    images = apply_resize([torch.rand(3, 64, 96) for _ in rows], params)
    keys = torch.from_numpy(data.keys[rows])
    assert check_box_support([cond]) == {"night@2": "none"}
    out, objects = stress_detection_batch(
        cond, "none", images, keys, data=data, rows=rows, params=params, seed=3, min_visibility=0.3
    )
    assert objects is None
    assert torch.equal(out, night.apply(images, night.sample_params(keys, 2, seed=3)))


def test_an_undeclared_stressor_is_refused_in_one_line(plugin):
    cond = Condition("test_undeclared@1", plugin["Undeclared"](), 1, "test_undeclared")
    with pytest.raises(AuditError) as err:
        check_box_support([Condition("clean"), cond], source="config.yaml")
    line = str(err.value)
    assert "\n" not in line and line.startswith("config.yaml: stressor condition 'test_undeclared@1'")


def test_truth_reaching_just_past_the_edge_is_clipped_to_the_input_frame() -> None:
    """The annotation reader accepts a box up to 0.01 px past its image; the stressors' frame check must not refuse it."""
    from types import SimpleNamespace

    from audit.evaluation.detection.evaluate import _input_boxes
    from audit.evaluation.detection.letterbox import plan_resize

    image = SimpleNamespace(objects=[SimpleNamespace(box=(-0.004, 0.0, 100.005, 50.0))])
    data = SimpleNamespace(truth=SimpleNamespace(images=[image]))
    for mode in ("resize", "letterbox"):
        params = plan_resize([(50, 100)], input_size=(64, 128), mode=mode)
        (boxes,) = _input_boxes(data, [0], params)
        assert boxes.tolist()[0][0] == 0.0 and boxes.tolist()[0][2] == 128.0
        batch = stressors.stress_with_boxes(
            stressors.get("occlusion", target="objects"),
            torch.rand(1, 3, 64, 128),
            [boxes],
            sample_ids=stressors.sample_keys(["a"]),
            severity=1,
            seed=0,
        )
        assert batch.kept[0].tolist() == [True]
