"""cvaudit recipe on a detection run: the mAP-weighted mix, the detection section, and boxes that move with
the pixels in the torch module and in the Albumentations pipeline (BboxParams, min_visibility)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from audit.cli import main
from stressors.base import ImageStressor
from stressors.recipe import Recipe, _Detection, _Entry, load


class Shift(ImageStressor):
    """A tiny geometric test stressor: moves the image ``8 x severity`` pixels to the right (zeros enter on the left).

    Pixel i lands on i + dx, so a continuous x lands on x + dx; only ``map_points`` is given, the boxes follow
    through the base class's ``transform_boxes`` (the hull of the moved corners)."""

    name = "test_shift"
    moves_pixels = True

    def _sample(self, seeds, severity):
        return {"dx": torch.full((len(seeds),), 8 * int(severity), dtype=torch.int64)}

    def _apply(self, images, params):
        out = torch.zeros_like(images)
        for i, dx in enumerate(params["dx"].tolist()):
            out[i, ..., dx:] = images[i, ..., : images.shape[-1] - dx]
        return out

    def map_points(self, points, params, size):
        moved = points.clone()
        moved[..., 0] += params["dx"].to(points.dtype)[:, None]
        return moved


def _shift_recipe(min_visibility=0.3, severity=(3, 3)) -> Recipe:
    entry = _Entry(name="shift", stressor="test_shift", severity=severity, weight=1.0)
    return Recipe([entry], 1.0, _Detection(min_visibility=min_visibility), resolve=lambda name, **o: Shift())


def _white_box_image(h, w, box):
    x1, y1, x2, y2 = box
    x = torch.zeros(3, h, w)
    x[:, y1:y2, x1:x2] = 1.0
    return x


def _extent(image_chw):
    mask = image_chw.amax(dim=0) > 0.5
    rows, cols = torch.nonzero(mask.any(dim=1)).flatten(), torch.nonzero(mask.any(dim=0)).flatten()
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


@pytest.fixture(scope="module")
def det_recipe(det_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("detrecipe") / "recipe.yaml"
    result = CliRunner().invoke(main, ["recipe", str(det_run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_the_detection_recipe_weighs_by_the_map_drop_and_states_min_visibility(det_recipe, det_run):
    data = yaml.safe_load(det_recipe.read_text())
    results = json.loads((det_run / "results.json").read_text())
    maps = {c["id"]: c["metrics"]["map"] for c in results["detection"]["conditions"]}
    assert maps["clean"] - maps["night@3"] >= 0.02  # ColourBoxNet is blind at night
    (entry,) = data["stressors"]
    assert entry["stressor"] == "night" and entry["severity"] == [3, 3] and entry["weight"] == 1.0
    assert entry["loss"] == pytest.approx(maps["clean"] - maps["night@3"], abs=1e-6)
    assert data["detection"] == {
        "bbox_format": "pascal_voc",
        "label_fields": ["labels"],
        "min_visibility": 0.3,
        "min_visibility_from": "default",  # no stressor of this run moves pixels: it records none
    }
    assert results["detection"]["settings"].get("min_visibility") is None
    assert "albumentations_pipeline" in det_recipe.read_text()


def test_min_visibility_comes_from_the_run_else_the_stated_default(det_run, tmp_path):
    import shutil

    for recorded, expected, source in ((0.6, 0.6, "run"), (None, 0.3, "default")):
        copy = tmp_path / f"run-{source}"
        shutil.copytree(det_run, copy)
        results = json.loads((copy / "results.json").read_text())
        results["detection"]["settings"]["min_visibility"] = recorded
        (copy / "results.json").write_text(json.dumps(results))
        out = tmp_path / f"{source}.yaml"
        result = CliRunner().invoke(main, ["recipe", str(copy), "--out", str(out)])
        assert result.exit_code == 0, result.output
        section = yaml.safe_load(out.read_text())["detection"]
        assert (section["min_visibility"], section["min_visibility_from"]) == (expected, source)
        assert f"min_visibility {expected:g} ({source})" in result.output


def test_the_exported_albumentations_pipeline_transforms_an_image_with_boxes(det_recipe):
    import albumentations as A

    augment = load(det_recipe)
    pipeline = augment.albumentations_pipeline(A.HorizontalFlip(p=0.0), seed=3)
    assert isinstance(pipeline, A.Compose)
    bbox = pipeline.processors["bboxes"].params
    assert (bbox.format, list(bbox.label_fields), bbox.min_visibility) == ("pascal_voc", ["labels"], 0.3)
    image = (np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8)
    boxes = [[10.0, 5.0, 40.0, 30.0], [50.0, 20.0, 90.0, 60.0]]
    changed = 0
    for _ in range(8):
        out = pipeline(image=image, bboxes=boxes, labels=["red", "blue"])
        assert out["image"].shape == image.shape and out["image"].dtype == np.uint8
        np.testing.assert_allclose(np.asarray(out["bboxes"]), boxes)  # night moves no pixel: boxes as they were
        assert list(out["labels"]) == ["red", "blue"]
        changed += not np.array_equal(out["image"], image)
    assert 0 < changed < 8  # probability 0.5


def test_the_torch_module_keeps_photometric_boxes(det_recipe):
    augment = load(det_recipe)
    x = torch.rand(4, 3, 64, 96)
    boxes = [torch.tensor([[10.0, 5.0, 40.0, 30.0]])] * 4
    out = augment.with_boxes(x, boxes, generator=torch.Generator().manual_seed(0))
    assert out.images.shape == x.shape
    assert all(b.tolist() == boxes[0].tolist() for b in out.boxes)
    assert all(bool(k.all()) for k in out.kept)
    # the same draws as the image-only module
    same = augment(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.images, same)


def test_the_torch_module_moves_boxes_with_the_pixels_of_a_geometric_entry():
    augment = _shift_recipe()
    x = torch.stack([_white_box_image(48, 64, (10, 8, 30, 20)), _white_box_image(48, 64, (30, 20, 60, 40))])
    boxes = [torch.tensor([[10.0, 8.0, 30.0, 20.0]]), torch.tensor([[30.0, 20.0, 60.0, 40.0], [50.0, 0.0, 64.0, 8.0]])]
    out = augment.with_boxes(x, boxes, generator=torch.Generator().manual_seed(0))
    # dx = 24: the first box lies inside the frame; it is where the white pixels went
    assert out.boxes[0].tolist() == [[34.0, 8.0, 54.0, 20.0]] == [_extent(out.images[0])]
    # second image: the 30-wide box moves to x 54..84; 10 of its 30 columns stay in the 64-wide frame: 1/3 >= 0.3,
    # kept and clipped to the pixels still there; the 14-wide box at x 50 leaves the frame entirely: dropped
    assert out.kept[1].tolist() == [True, False]
    assert out.visibility[1][0].item() == pytest.approx(1 / 3)
    assert out.boxes[1].tolist() == [[54.0, 20.0, 64.0, 40.0]] == [_extent(out.images[1])]
    strict = _shift_recipe(min_visibility=0.5).with_boxes(x, boxes, generator=torch.Generator().manual_seed(0))
    assert strict.kept[1].tolist() == [False, False] and strict.dropped == 2


def test_the_albumentations_transform_moves_boxes_with_the_pixels_and_applies_min_visibility():
    augment = _shift_recipe()
    pipeline = augment.albumentations_pipeline(seed=0)
    image = (_white_box_image(48, 64, (30, 20, 60, 40)).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    out = pipeline(image=image, bboxes=[[30.0, 20.0, 60.0, 40.0], [50.0, 0.0, 64.0, 8.0]], labels=[1, 2])
    moved = torch.from_numpy(out["image"]).permute(2, 0, 1).float() / 255
    np.testing.assert_allclose(np.asarray(out["bboxes"]), [_extent(moved)])  # clipped by BboxParams
    assert list(out["labels"]) == [1]  # the box that left the frame is gone with its label
    strict = _shift_recipe(min_visibility=0.5).albumentations_pipeline(seed=0)
    out = strict(image=image, bboxes=[[30.0, 20.0, 60.0, 40.0]], labels=[1])
    assert list(out["labels"]) == []  # 1/3 visible < 0.5


def test_bad_boxes_and_a_bad_detection_section_are_one_line_errors(tmp_path):
    from stressors.base import StressorError

    augment = _shift_recipe()
    with pytest.raises(StressorError, match=r"^recipe: 1 box lists for a batch of 2 images$"):
        augment.with_boxes(torch.rand(2, 3, 16, 16), [torch.zeros(0, 4)])
    with pytest.raises(StressorError, match=r"box 0 of image 0 lies outside the 16x16 frame"):
        augment.with_boxes(torch.rand(1, 3, 16, 16), [torch.tensor([[0.0, 0.0, 20.0, 8.0]])])
    path = tmp_path / "r.yaml"
    path.write_text(
        "version: 1\nstressors: [{name: n, stressor: night, severity: [1, 2], weight: 1}]\n"
        "detection: {min_visibility: 1.5}\n"
    )
    with pytest.raises(StressorError, match=r"r.yaml: detection.min_visibility: .*less than or equal to 1"):
        load(path)


def test_a_plugin_that_does_not_say_whether_it_moves_pixels_is_refused_for_boxes():
    from stressors.base import StressorError

    class Undeclared:
        name = "undeclared"
        severities = (1,)

    entry = _Entry(name="u", stressor="undeclared", severity=(1, 1), weight=1.0)
    augment = Recipe([entry], 1.0, _Detection(min_visibility=0.3), resolve=lambda name, **o: Undeclared())
    with pytest.raises(StressorError, match="undeclared: does not declare moves_pixels"):
        augment.albumentations()
    with pytest.raises(StressorError, match="undeclared: does not declare moves_pixels"):
        augment.with_boxes(torch.rand(1, 3, 8, 8), [torch.zeros(0, 4)], generator=torch.Generator().manual_seed(0))
