"""The Albumentations adapter and boxes: image-only transforms leave them, dual transforms move them with the pixels."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from stressors.albumentations_adapter import AlbumentationsStressor
from stressors.base import StressorError, sample_keys

H, W = 96, 112
IDS = [f"box-{i}" for i in range(6)]
KEYS = sample_keys(IDS)


def adapter(transform, **params):
    return AlbumentationsStressor(transform=transform, params={1: params})


def drawn(n=6):
    """One filled white box per image on black, and its box (pixel-aligned, inside the frame)."""
    x = torch.zeros(n, 3, H, W)
    boxes = []
    for i in range(n):
        x0, y0, w, h = 20 + 6 * i, 22 + 4 * i, 30 + 2 * i, 24
        x[i, :, y0 : y0 + h, x0 : x0 + w] = 1.0
        boxes.append(torch.tensor([[x0, y0, x0 + w, y0 + h]], dtype=torch.float64))
    return x, boxes


def mask_box(image):
    """The bounding box (continuous pixel frame) of the bright pixels of one stressed image."""
    ys, xs = (image.float().mean(0) > 0.5).nonzero(as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]


def clip(b):
    return torch.minimum(b.clamp(min=0), torch.tensor([W, H, W, H], dtype=torch.float64))


def test_an_image_only_transform_is_photometric_and_leaves_boxes():
    s = adapter("RandomSunFlare", src_radius=20)
    assert s.moves_pixels is False and s.box_refusal is None
    _x, boxes = drawn()
    p = s.sample_params(KEYS, 1, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(s.transform_boxes(boxes, p, (H, W)), boxes))


def test_a_flip_moves_boxes_exactly():
    """Hand reference: a horizontal flip takes [x1, y1, x2, y2] to [W - x2, y1, W - x1, y2]."""
    s = adapter("HorizontalFlip")
    assert s.moves_pixels is True
    boxes = [torch.tensor([[3.5, 4.0, 20.25, 30.0], [0.0, 0.0, W, H]], dtype=torch.float64)] * 2
    p = s.sample_params(KEYS[:2], 1, seed=0)
    for moved in s.transform_boxes(boxes, p, (H, W)):
        assert torch.allclose(moved, torch.tensor([[W - 20.25, 4.0, W - 3.5, 30.0], [0.0, 0.0, W, H]]).double())


@pytest.mark.parametrize(
    ("transform", "params", "tolerance"),
    [
        ("Affine", {"rotate": (-30, 30), "translate_percent": (-0.15, 0.15), "scale": (0.8, 1.2)}, 1.5),
        ("Rotate", {"limit": 40}, 1.5),
        ("Perspective", {"scale": (0.05, 0.1)}, 1.5),
        ("SafeRotate", {"limit": 40}, 1.5),
        ("ElasticTransform", {"alpha": 40, "sigma": 6}, 1.5),
        ("GridDistortion", {}, 1.5),
        ("VerticalFlip", {}, 1e-4),
    ],
)
def test_a_dual_transforms_boxes_follow_its_pixels(transform, params, tolerance):
    """A filled box drawn on black, stressed: the moved box is the bounding box of the moved pixels."""
    s = adapter(transform, **params)
    x, boxes = drawn()
    p = s.sample_params(KEYS, 1, seed=0)
    y = s.apply(x, p)
    moved = s.transform_boxes(boxes, p, (H, W))
    for i in range(len(IDS)):
        assert moved[i].shape == (1, 4) and moved[i].dtype == torch.float64
        err = max(abs(a - b) for a, b in zip(mask_box(y[i]), clip(moved[i][0]).tolist()))
        assert err <= tolerance, (transform, i, err)


def test_boxes_come_back_unclipped_and_clip_to_albumentations_own_pipeline():
    """Pushed partly out of the frame: the box reaches outside; clipped, it is Compose + BboxParams' box."""
    import albumentations as A

    s = adapter("Affine", translate_px={"x": (60, 60), "y": (0, 0)})
    boxes = [torch.tensor([[50.0, 10.0, 90.0, 40.0], [5.0, 50.0, 25.0, 80.0]], dtype=torch.float64)]
    p = s.sample_params(KEYS[:1], 1, seed=0)
    (moved,) = s.transform_boxes(boxes, p, (H, W))
    assert moved[0, 2] > W + 30  # 90 + 60 = 150: unclipped
    assert torch.allclose(
        moved, torch.tensor([[110.0, 10.0, 150.0, 40.0], [65.0, 50.0, 85.0, 80.0]]).double(), atol=1e-3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compose = A.Compose(
            [A.Affine(translate_px={"x": (60, 60), "y": (0, 0)}, p=1.0)],
            bbox_params=A.BboxParams(format="pascal_voc", label_fields=["i"]),
        )
    out = compose(image=np.zeros((H, W, 3), np.uint8), bboxes=boxes[0].numpy(), i=[0, 1])
    assert torch.allclose(clip(moved), torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float64)), atol=1e-3)


def test_deterministic_and_batch_invariant():
    s = adapter("Affine", rotate=(-30, 30), translate_percent=(-0.2, 0.2))
    _x, boxes = drawn()
    boxes = [torch.cat([b, b + 3]) for b in boxes]
    p = s.sample_params(KEYS, 1, seed=0)
    full = s.transform_boxes(boxes, p, (H, W))
    again = s.transform_boxes(boxes, s.sample_params(KEYS, 1, seed=0), (H, W))
    other = s.transform_boxes(boxes, s.sample_params(KEYS, 1, seed=1), (H, W))
    assert all(torch.equal(a, b) for a, b in zip(full, again))
    assert not all(torch.equal(a, b) for a, b in zip(full, other))
    order = [4, 1, 5]
    sub = s.transform_boxes([boxes[i] for i in order], s.sample_params(KEYS[order], 1, seed=0), (H, W))
    assert all(torch.equal(sub[j], full[i]) for j, i in enumerate(order))


def test_empty_and_zero_area_boxes():
    s = adapter("Affine", rotate=(-20, 20))
    boxes = [torch.zeros(0, 4, dtype=torch.float64), torch.tensor([[30.0, 30.0, 30.0, 50.0], [10.0, 10.0, 40.0, 40.0]])]
    moved = s.transform_boxes(boxes, s.sample_params(KEYS[:2], 1, seed=0), (H, W))
    assert moved[0].shape == (0, 4) and moved[1].shape == (2, 4) and torch.isfinite(moved[1]).all()


def test_a_transform_that_splits_boxes_is_refused():
    s = adapter("RandomGridShuffle", grid=(3, 3))
    assert s.moves_pixels is True
    _x, boxes = drawn(3)
    with pytest.raises(StressorError, match="refused for detection: it splits, merges or drops boxes") as info:
        s.transform_boxes(boxes, s.sample_params(KEYS[:3], 1, seed=0), (H, W))
    assert "\n" not in str(info.value)


def test_a_transform_driven_by_other_targets_is_refused_up_front():
    s = adapter("MaskDropout")
    assert s.moves_pixels is None and "['mask']" in s.box_refusal
    with pytest.raises(StressorError, match=r"albumentations:MaskDropout: refused for detection: .*\['mask'\]"):
        s.transform_boxes([torch.zeros(0, 4)], s.sample_params(KEYS[:1], 1, seed=0), (H, W))


def test_box_support_and_stress_with_boxes():
    """With the box API: photometric/geometric/refused, and boxes through stress_with_boxes."""
    boxes_api = pytest.importorskip("stressors.boxes")
    if not hasattr(boxes_api, "stress_with_boxes"):
        pytest.skip("stressors.boxes has no stress_with_boxes yet")
    assert boxes_api.box_support(adapter("GaussNoise")) == "invariant"
    assert boxes_api.box_support(adapter("Rotate", limit=30)) == "geometric"
    with pytest.raises(StressorError, match="albumentations:MaskDropout"):
        boxes_api.box_support(adapter("MaskDropout"))
    x, boxes = drawn()
    s = adapter("Affine", translate_px={"x": (60, 60), "y": (0, 0)})
    batch = boxes_api.stress_with_boxes(s, x, boxes, sample_ids=KEYS, severity=1, seed=0, min_visibility=0.3)
    # box i spans [20 + 6i, 50 + 8i] + 60 px: visible up to x = 112
    for i, b in enumerate(boxes):
        x1, x2 = float(b[0, 0]) + 60, float(b[0, 2]) + 60
        expected = max(0.0, min(W, x2) - x1) / (x2 - x1)
        assert float(batch.visibility[i][0]) == pytest.approx(expected, abs=1e-4)
        assert bool(batch.kept[i][0]) == (expected >= 0.3)


def test_a_dual_adapter_passes_the_conformance_checks():
    from stressors import testing

    if not hasattr(testing, "check_box_conformance"):
        pytest.skip("stressors.testing has no box conformance yet")
    testing.check_stressor(adapter("Affine", rotate=(-20, 20), translate_percent=(-0.1, 0.1)))
    testing.check_stressor(adapter("GaussNoise"))
