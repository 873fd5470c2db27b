"""Boxes through stressors: stress_with_boxes, box_support, clipping, min_visibility and the box conformance check."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from torch import Tensor

import stressors
from stressors.base import ImageStressor, Params, check_severity, uniform
from stressors.boxes import clip_boxes
from stressors.testing import check_box_conformance, check_stressor, photo_like, sample_boxes

IDS = [f"img-{i}" for i in range(6)]
KEYS = stressors.sample_keys(IDS)


class Shift(ImageStressor):
    """A test geometric stressor: shifts the image right by severity x 10 % of its width (zero fill),
    with a per-sample random extra of up to 5 % (so batch invariance means something)."""

    name = "test_shift"
    moves_pixels: ClassVar[bool] = True
    severity_meaning: ClassVar[dict[int, str]] = {1: "10 %", 2: "20 %", 3: "30 %"}
    wrong_boxes = False

    def _sample(self, seeds: list[int], severity: int) -> dict[str, Tensor]:
        return {"fraction": 0.1 * severity + 0.05 * uniform(seeds, 1)[:, 0]}

    def _pixels(self, params: Params, width: int) -> Tensor:
        return (params["fraction"] * width).round()

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        out = torch.zeros_like(images)
        for i, shift in enumerate(self._pixels(params, images.shape[-1]).long().tolist()):
            if shift < images.shape[-1]:
                out[i, :, :, shift:] = images[i, :, :, : images.shape[-1] - shift]
        return out

    def map_points(self, points: Tensor, params: Params, size: tuple[int, int]) -> Tensor:
        shift = self._pixels(params, size[1]).to(torch.float64)
        if self.wrong_boxes:
            shift = -shift
        out = points.clone()
        out[..., 0] += shift[:, None]
        return out


class Undeclared:
    """A classifier-only plugin: image stressor methods, no moves_pixels."""

    name = "undeclared"
    severities = (1,)
    model_aware = False

    def sample_params(self, sample_ids, severity, *, seed, fractional=False):
        if fractional:
            raise stressors.StressorError("undeclared: no fractional severities")
        check_severity(severity, self.severities, self.name)
        return Params(severity=severity)

    def apply(self, images, params):
        return images


def test_photometric_stressor_keeps_every_box_and_its_images_are_those_of_apply() -> None:
    night = stressors.get("night")
    images = photo_like(6, 32)
    boxes = sample_boxes(IDS, (32, 32))
    out = stressors.stress_with_boxes(night, images, boxes, sample_ids=KEYS, severity=3, seed=7)
    assert torch.equal(out.images, night.apply(images, night.sample_params(KEYS, 3, seed=7)))
    assert all(torch.equal(a, b) for a, b in zip(out.boxes, boxes))
    assert out.dropped == 0 and all(bool((v == 1).all()) for v in out.visibility)
    assert stressors.box_support(night) == "invariant"


def test_geometric_boxes_move_clip_and_drop_by_visibility() -> None:
    shift = Shift()
    images = photo_like(2, 40)
    # a box at x 20..30: shifted right by 4 + extra px; a box at x 30..40 ends partly out of view
    boxes = [torch.tensor([[20.0, 5.0, 30.0, 15.0], [30.0, 5.0, 40.0, 15.0]], dtype=torch.float64)] * 2
    params = shift.sample_params(KEYS[:2], 2, seed=0)
    pixels = shift._pixels(params, 40)
    out = stressors.stress_with_boxes(shift, images, boxes, sample_ids=KEYS[:2], severity=2, seed=0, min_visibility=0.5)
    for i in range(2):
        s = float(pixels[i])
        visible = (40 - (30 + s)) / 10  # the second box: share of its width still in the frame
        assert out.visibility[i][0].item() == 1.0
        assert out.visibility[i][1].item() == pytest.approx(max(visible, 0.0))
        assert out.kept[i].tolist() == [True, visible >= 0.5]
        assert out.boxes[i][0].tolist() == [20 + s, 5.0, 30 + s, 15.0]
    assert out.dropped == sum(int(not k[1]) for k in out.kept)


def test_clip_boxes_never_keeps_a_box_out_of_view_and_handles_degenerate_boxes() -> None:
    moved = torch.tensor(
        [[-20.0, 0, -10, 5], [5, 5, 5, 5], [45, 5, 45, 5], [-5, 0, 5, 10]], dtype=torch.float64
    )  # out of view; a point inside; a point outside; half visible
    clipped, visibility, kept = clip_boxes(moved, (40, 40), 0.0)
    assert visibility.tolist() == [0.0, 1.0, 0.0, 0.5]
    assert kept.tolist() == [False, True, False, True]
    assert clipped[3].tolist() == [0.0, 0.0, 5.0, 10.0]
    assert clip_boxes(moved, (40, 40), 0.6)[2].tolist() == [False, True, False, False]


def test_box_conformance_passes_for_a_correct_geometric_stressor_and_fails_for_misplaced_boxes() -> None:
    check_stressor(Shift())
    wrong = Shift()
    wrong.wrong_boxes = True
    with pytest.raises(AssertionError, match="boxes follow the pixels"):
        check_box_conformance(wrong, photo_like(6, 32))


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        ([torch.zeros(0, 4)] * 5, "5 box lists for a batch of 6 images"),
        (torch.zeros(6, 1, 4), "must be a list"),
        ([torch.zeros(1, 3)] + [torch.zeros(0, 4)] * 5, r"image 0 must have shape \(K, 4\)"),
        ([torch.tensor([[5.0, 5, 2, 8]])] + [torch.zeros(0, 4)] * 5, "box 0 of image 0 has x2 < x1"),
        ([torch.tensor([[0.0, 0, 50, 8]])] + [torch.zeros(0, 4)] * 5, "outside the 32x32 frame"),
        ([torch.tensor([[0.0, float("nan"), 5, 8]])] + [torch.zeros(0, 4)] * 5, "non-finite"),
    ],
)
def test_bad_boxes_are_one_line_errors_naming_the_stressor(boxes, message: str) -> None:
    with pytest.raises(stressors.StressorError, match=message) as err:
        stressors.stress_with_boxes(
            stressors.get("blur"), photo_like(6, 32), boxes, sample_ids=KEYS, severity=1, seed=0
        )
    assert str(err.value).startswith("blur:") and "\n" not in str(err.value)


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), True, "0.5"])
def test_min_visibility_outside_zero_one_is_refused(value) -> None:
    with pytest.raises(stressors.StressorError, match="min_visibility must be a number in"):
        stressors.stress_with_boxes(
            Shift(),
            photo_like(6, 32),
            sample_boxes(IDS, (32, 32)),
            sample_ids=KEYS,
            severity=1,
            seed=0,
            min_visibility=value,
        )


def test_a_stressor_that_does_not_declare_moves_pixels_and_an_attack_are_refused() -> None:
    with pytest.raises(stressors.StressorError, match="undeclared: does not declare moves_pixels"):
        stressors.box_support(Undeclared())
    with pytest.raises(stressors.StressorError, match="an attack needs the model"):
        stressors.box_support(stressors.get("fgsm"))
    check_stressor(Undeclared())  # a classifier-only plugin still passes the classifier contract


def test_a_stressor_that_needs_boxes_refuses_to_sample_without_them() -> None:
    class NeedsBoxes(Shift):
        name = "test_needs_boxes"
        needs_boxes = True

        def _sample_with_boxes(self, seeds, severity, boxes):
            return self._sample(seeds, int(severity))

    with pytest.raises(stressors.StressorError, match="needs the boxes of every sample"):
        NeedsBoxes().sample_params(KEYS, 1, seed=0)
    with pytest.raises(stressors.StressorError, match="got 2 box lists for 6 samples"):
        NeedsBoxes().sample_params(KEYS, 1, seed=0, boxes=[torch.zeros(0, 4)] * 2)
    check_stressor(NeedsBoxes())


def test_a_geometric_stressor_without_a_box_map_is_refused_before_any_image() -> None:
    class NoMap(ImageStressor):
        name = "test_no_map"
        moves_pixels: ClassVar[bool] = True

        def _apply(self, images: Tensor, params: Params) -> Tensor:
            return images.flip(-1)

    with pytest.raises(stressors.StressorError, match="implements neither map_points nor transform_boxes"):
        stressors.box_support(NoMap())


def test_area_scale_is_the_objects_change_of_area_not_the_hulls() -> None:
    """A rotation leaves an object's area alone though its hull grows; a zoom scales it by the factor squared."""
    images = photo_like(6, 64)
    boxes = [torch.tensor([[20.0, 20.0, 40.0, 36.0]], dtype=torch.float64)] * 6
    rot = stressors.stress_with_boxes(stressors.get("rotation"), images, boxes, sample_ids=KEYS, severity=5, seed=0)
    for scale, box in zip(rot.area_scale, rot.boxes):
        assert scale.tolist() == pytest.approx([1.0], abs=1e-9)
        assert (box[0, 2] - box[0, 0]) * (box[0, 3] - box[0, 1]) > 1.5 * 20 * 16  # the hull grew
    zoom = stressors.get("zoom")
    out = stressors.stress_with_boxes(zoom, images, boxes, sample_ids=KEYS, severity=3, seed=0)
    mapped = zoom.map_points(
        torch.tensor([[[0.0, 0.0], [1.0, 0.0]]] * 6, dtype=torch.float64), zoom.sample_params(KEYS, 3, seed=0), (64, 64)
    )
    factor = (mapped[:, 1] - mapped[:, 0]).norm(dim=1)
    assert torch.cat(out.area_scale).tolist() == pytest.approx((factor**2).tolist(), rel=1e-9)
    night = stressors.stress_with_boxes(stressors.get("night"), images, boxes, sample_ids=KEYS, severity=1, seed=0)
    assert torch.cat(night.area_scale).tolist() == [1.0] * 6
