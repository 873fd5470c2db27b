"""Resize and letterbox before a detector, undone exactly on its boxes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.contract.errors import AuditError
from audit.evaluation.detection.letterbox import (
    PAD_VALUE,
    apply_resize,
    boxes_to_input,
    boxes_to_original,
    plan_resize,
)

# (original (h, w), input (H, W), mode, content (h, w), pad (left, top), a box in the original,
#  the same box in the input, worked out by hand from the module docstring's rules)
HAND = [
    # wide: r = 1, dh = 160 -> top = round(79.9) = 80
    ((480, 640), (640, 640), "letterbox", (480, 640), (0, 80), [100, 50, 200, 150], [100, 130, 200, 230]),
    # tall: r = 1, dw = 320 -> left = round(159.9) = 160
    ((640, 320), (640, 640), "letterbox", (640, 320), (160, 0), [10, 20, 30, 40], [170, 20, 190, 40]),
    # square, downscaled: r = 0.64, no padding
    ((1000, 1000), (640, 640), "letterbox", (640, 640), (0, 0), [100, 200, 300, 400], [64, 128, 192, 256]),
    # odd: r = 640/517; content 640 x round(333 * 640/517 = 412.22) = 412; dh = 228 -> top 114;
    # y scale 412/333: 33.3 -> 41.2 + 114
    ((333, 517), (640, 640), "letterbox", (412, 640), (0, 114), [51.7, 33.3, 517, 333], [64, 155.2, 640, 526]),
    # odd padding, non-square input: r = min(256/100, 320/101) = 2.56; content_w = round(258.56) = 259;
    # dw = 61 -> left = round(30.4) = 30; x scale 259/101
    (
        (100, 101),
        (256, 320),
        "letterbox",
        (256, 259),
        (30, 0),
        [10, 10, 20, 20],
        [10 * 259 / 101 + 30, 25.6, 20 * 259 / 101 + 30, 51.2],
    ),
    # upscaled: r = min(320/100, 320/160) = 2; content 200 x 320; dh = 120 -> top 60
    ((100, 160), (320, 320), "letterbox", (200, 320), (0, 60), [20, 10, 60, 40], [40, 80, 120, 140]),
    # plain resize: x scale 320/640, y scale 320/480
    ((480, 640), (320, 320), "resize", (320, 320), (0, 0), [100, 60, 200, 120], [50, 40, 100, 80]),
]


@pytest.mark.parametrize(("size", "input_size", "mode", "content", "pad", "box", "in_box"), HAND)
def test_hand_worked_boxes_round_trip(size, input_size, mode, content, pad, box, in_box) -> None:
    params = plan_resize([size], input_size=input_size, mode=mode)
    p = params[0]
    assert (int(p.content_height), int(p.content_width)) == content
    assert (float(p.pad_left), float(p.pad_top)) == pad
    original = torch.tensor([box], dtype=torch.float64)
    assert boxes_to_input(original, p).tolist()[0] == pytest.approx(in_box, abs=1e-9)
    back = boxes_to_original(torch.tensor([in_box], dtype=torch.float64), p)
    assert back.tolist()[0] == pytest.approx(box, abs=1e-4)
    # float32 boxes, as a model returns them, also come back to 1e-4 px.
    back32 = boxes_to_original(torch.tensor([in_box], dtype=torch.float32), p)
    assert back32.dtype == torch.float32 and back32.tolist()[0] == pytest.approx(box, abs=1e-4)


def ultralytics_letterbox(shape: tuple[int, int], new_shape: tuple[int, int]) -> tuple[tuple[int, int], int, int]:
    """The size and padding arithmetic of ``ultralytics.data.augment.LetterBox`` (center, scaleup), restated."""
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    new_unpad = round(shape[1] * r), round(shape[0] * r)
    new_unpad = max(new_unpad[0], 1), max(new_unpad[1], 1)  # cvaudit keeps at least one pixel
    dw, dh = (new_shape[1] - new_unpad[0]) / 2, (new_shape[0] - new_unpad[1]) / 2
    return (new_unpad[1], new_unpad[0]), round(dw - 0.1), round(dh - 0.1)


def test_plan_matches_ultralytics_arithmetic_for_many_sizes() -> None:
    gen = torch.Generator().manual_seed(0)
    sizes = torch.randint(1, 3000, (500, 2), generator=gen)
    for input_size in [(640, 640), (384, 640), (321, 257)]:
        params = plan_resize(sizes, input_size=input_size)
        for i, (h, w) in enumerate(sizes.tolist()):
            content, left, top = ultralytics_letterbox((h, w), input_size)
            p = params[i]
            assert ((int(p.content_height), int(p.content_width)), int(p.pad_left), int(p.pad_top)) == (
                content,
                left,
                top,
            )


def test_letterboxed_image_puts_a_painted_box_where_the_params_say() -> None:
    # 100 x 160 -> 320 x 320: exact 2x upscale, 60 rows of padding on top. A white rectangle at
    # [20, 10, 60, 40] (x1, y1, x2, y2) lands at [40, 80, 120, 140]: with bilinear 2x, pixels
    # at >= 0.5 are exactly the mapped box.
    image = torch.zeros(3, 100, 160)
    image[:, 10:40, 20:60] = 1.0
    params = plan_resize([(100, 160)], input_size=(320, 320))
    batch = apply_resize([image], params)
    assert batch.shape == (1, 3, 320, 320)
    assert torch.all(batch[0, :, :60] == PAD_VALUE) and torch.all(batch[0, :, 260:] == PAD_VALUE)
    content = batch[0, 0, 60:260] >= 0.5
    rows, cols = content.any(dim=1).nonzero()[:, 0], content.any(dim=0).nonzero()[:, 0]
    found = torch.tensor([[cols.min(), rows.min() + 60, cols.max() + 1, rows.max() + 61]], dtype=torch.float64)
    assert found.tolist() == [[40, 80, 120, 140]]
    assert boxes_to_original(found, params[0]).tolist() == [[20, 10, 60, 40]]


def test_a_sliver_keeps_one_pixel_row() -> None:
    # 1 x 32 into 16 x 16: r = 0.5, round(0.5) = 0 rows in Ultralytics' arithmetic; cvaudit keeps 1.
    params = plan_resize([(1, 32)], input_size=(16, 16))
    assert (int(params.content_height[0]), int(params.content_width[0]), int(params.pad_top[0])) == (1, 16, 7)
    assert apply_resize([torch.ones(1, 1, 32)], params)[0, 0, 7].tolist() == [1.0] * 16
    box = torch.tensor([[0.0, 0.0, 32.0, 1.0]])
    assert boxes_to_original(boxes_to_input(box, params[0]), params[0]).tolist() == box.tolist()


def test_plain_resize_fills_the_input_and_keeps_dtype() -> None:
    images = [torch.rand(3, 48, 64, dtype=torch.float64), torch.rand(3, 20, 10, dtype=torch.float64)]
    params = plan_resize([(48, 64), (20, 10)], input_size=(32, 32), mode="resize")
    batch = apply_resize(images, params)
    assert batch.shape == (2, 3, 32, 32) and batch.dtype == torch.float64
    assert params.pad_left.tolist() == [0, 0] and params.scale_x.tolist() == [0.5, 3.2]


def test_boxes_are_clipped_to_the_original_image() -> None:
    params = plan_resize([(480, 640)], input_size=(640, 640))  # 80 rows of padding top and bottom
    boxes = torch.tensor([[-5.0, 10.0, 700.0, 630.0]])  # reaches into both pads and past the right edge
    assert boxes_to_original(boxes, params[0]).tolist() == [[0, 0, 640, 480]]
    assert boxes_to_original(boxes, params[0], clip=False).tolist() == [[-5, -70, 700, 550]]


def test_batched_boxes_equal_per_image() -> None:
    gen = torch.Generator().manual_seed(5)
    sizes = [(333, 517), (640, 320), (99, 1001)]
    params = plan_resize(sizes, input_size=(416, 416))
    boxes = torch.rand(3, 7, 4, generator=gen) * 416
    boxes[..., 2:] += boxes[..., :2]
    batched = boxes_to_original(boxes, params)
    for i in range(3):
        assert torch.equal(batched[i], boxes_to_original(boxes[i], params[i]))
    with pytest.raises(AuditError, match="must have shape \\(B, N, 4\\)"):
        boxes_to_original(boxes[0], params)


@settings(max_examples=300, deadline=None)
@given(
    h=st.integers(1, 4000),
    w=st.integers(1, 4000),
    in_h=st.integers(16, 1280),
    in_w=st.integers(16, 1280),
    mode=st.sampled_from(["letterbox", "resize"]),
    corners=st.lists(st.floats(0, 1, allow_nan=False), min_size=4, max_size=4),
)
def test_letterbox_then_undo_is_the_identity_on_box_corners(h, w, in_h, in_w, mode, corners) -> None:
    x1, x2 = sorted(corners[:2])
    y1, y2 = sorted(corners[2:])
    box = torch.tensor([[x1 * w, y1 * h, x2 * w, y2 * h]], dtype=torch.float64)
    p = plan_resize([(h, w)], input_size=(in_h, in_w), mode=mode)[0]
    in_box = boxes_to_input(box, p)
    # The box lands inside the content, which lies inside the input.
    left, top = float(p.pad_left), float(p.pad_top)
    assert left >= 0 and top >= 0
    assert left + int(p.content_width) <= in_w and top + int(p.content_height) <= in_h
    tol = 1e-9 * max(in_h, in_w, h, w)
    assert float(in_box[0, 0]) >= left - tol and float(in_box[0, 2]) <= left + int(p.content_width) + tol
    assert float(in_box[0, 1]) >= top - tol and float(in_box[0, 3]) <= top + int(p.content_height) + tol
    assert torch.allclose(boxes_to_original(in_box, p), box, rtol=0, atol=tol)


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (lambda: plan_resize([(10, 10)], input_size=(32, 32), mode="crop"), "resize mode 'crop': expected one of"),
        (lambda: plan_resize([(0, 10)], input_size=(32, 32)), "must be at least 1 pixel"),
        (
            lambda: apply_resize([torch.zeros(3, 11, 10)], plan_resize([(10, 10)], input_size=(32, 32))),
            "planned for 10x10, got (11, 10)",
        ),
    ],
)
def test_bad_input_is_one_line(call, problem: str) -> None:
    with pytest.raises(AuditError) as err:
        call()
    assert problem in str(err.value)
