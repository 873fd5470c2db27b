"""Camera shifts (stressors/camera.py): homographies by hand, pixels against OpenCV, boxes follow the pixels."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial.transform import Rotation as R3

from stressors.base import Params, StressorError, sample_keys
from stressors.boxes import stress_with_boxes
from stressors.camera import (
    PERSPECTIVE_DEG,
    ROTATION_DEG,
    TRANSLATION_FRACTION,
    ZOOM_FACTOR,
    Perspective,
    Rotation,
    Translation,
    Zoom,
    invert3,
)
from stressors.preview import load_image
from stressors.testing import check_stressor, photo_like

CLASSES = [Rotation, Translation, Zoom, Perspective]
IDS = [f"camera-{i}" for i in range(8)]


def params(stressor, severity, n=8, seed=0):
    return stressor.sample_params(sample_keys(IDS[:n]), severity, seed=seed)


def hull(stressor, boxes, p, size):
    """Where the boxes go: ``transform_boxes`` (the hull of each box's 4 mapped corners), stacked (N, K, 4)."""
    return torch.stack(stressor.transform_boxes(list(boxes), p, size))


# ----------------------------------------------------------------------- the maps by hand


def test_rotation_by_90_degrees_maps_corners_counter_clockwise_about_the_centre():
    s = Rotation()
    p = Params(severity=1, values={"angle_deg": torch.tensor([90.0], dtype=torch.float64)})
    # W = 8, H = 6, centre (4, 3): (x, y) -> (y + 1, 7 - x)
    corners = torch.tensor([[[0.0, 0.0], [8.0, 0.0], [8.0, 6.0], [0.0, 6.0], [4.0, 3.0]]], dtype=torch.float64)
    out = s.map_points(corners, p, (6, 8))
    expected = torch.tensor([[[1.0, 7.0], [1.0, -1.0], [7.0, -1.0], [7.0, 7.0], [4.0, 3.0]]], dtype=torch.float64)
    assert torch.allclose(out, expected, atol=1e-12)


def test_rotation_by_90_degrees_moves_the_top_left_pixel_to_the_bottom_left():
    s = Rotation(fill="constant", fill_value=0.0)
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 0, 0] = 1.0
    p = Params(severity=1, values={"angle_deg": torch.tensor([90.0], dtype=torch.float64)})
    out = s.apply(x, p)
    expected = torch.zeros_like(x)
    expected[0, 0, 4, 0] = 1.0
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(out, torch.rot90(x, k=1, dims=(2, 3)), atol=1e-5)


def test_translation_shifts_by_the_fraction_of_the_frame_in_pixels():
    s = Translation(fill="constant", fill_value=0.25)
    x = torch.rand(1, 3, 12, 16)
    p = Params(severity=1, values={"shift_x": torch.tensor([0.25]), "shift_y": torch.tensor([-1 / 6])})
    out = s.apply(x, p)  # 4 px right, 2 px up
    assert torch.allclose(out[..., :10, 4:], x[..., 2:, :12], atol=1e-5)
    assert torch.all(out[..., :, :4] == 0.25) and torch.all(out[..., 10:, :] == 0.25)
    moved = s.map_points(torch.tensor([[[1.0, 5.0]]], dtype=torch.float64), p, (12, 16))
    assert torch.allclose(moved, torch.tensor([[[5.0, 3.0]]], dtype=torch.float64))


def test_zoom_scales_distances_from_the_centre():
    s = Zoom()
    p = Params(severity=1, values={"scale": torch.tensor([2.0, 0.5], dtype=torch.float64)})
    pts = torch.tensor([[[13.0, 9.0]], [[13.0, 9.0]]], dtype=torch.float64)  # centre (10, 8) + (3, 1)
    out = s.map_points(pts, p, (16, 20))
    assert torch.allclose(out, torch.tensor([[[16.0, 10.0]], [[11.5, 8.5]]], dtype=torch.float64))


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("angle", [-40.0, 25.0])
def test_perspective_is_a_pinhole_camera_orbiting_the_centre(axis, angle):
    """Independent: rotate the scene plane in 3-D (scipy), put it at the focal distance, project."""
    h, w = 60, 90
    f = float(max(h, w))
    s = Perspective()
    p = Params(
        severity=1,
        values={"axis": torch.tensor([axis]), "angle_deg": torch.tensor([angle], dtype=torch.float64)},
    )
    pts = np.array([[0.0, 0.0], [90.0, 0.0], [90.0, 60.0], [0.0, 60.0], [45.0, 30.0], [12.5, 47.0]])
    uv0 = np.c_[pts[:, 0] - w / 2, pts[:, 1] - h / 2, np.zeros(len(pts))]
    # axis 0: vertical (y); 1: horizontal (x). Positive angle: the right (bottom) side comes closer.
    rot = R3.from_euler("y" if axis == 0 else "x", angle if axis == 0 else -angle, degrees=True)
    xyz = rot.apply(uv0) + [0.0, 0.0, f]
    expected = np.c_[f * xyz[:, 0] / xyz[:, 2] + w / 2, f * xyz[:, 1] / xyz[:, 2] + h / 2]
    out = s.map_points(torch.from_numpy(pts)[None], p, (h, w))[0].numpy()
    np.testing.assert_allclose(out, expected, atol=1e-9)
    assert np.allclose(out[4], [45.0, 30.0])  # the centre stays put


def test_invert3_inverts():
    m = torch.randn(5, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(invert3(m) @ m, torch.eye(3, dtype=torch.float64).expand(5, 3, 3), atol=1e-10)


# ------------------------------------------------------------------ pixels against OpenCV


@pytest.mark.parametrize("cls", CLASSES)
def test_pixels_match_opencv_warp_perspective_with_the_same_homography(cls):
    """cv2 in pixel-index coordinates (centre of pixel i at i): M = T(-1/2) H T(1/2); it rounds
    positions to 1/32 pixel, hence the tolerance (mean 2e-3, worst 0.05 on a smooth photo)."""
    photo = load_image("sample:china")[::4, ::4]  # 107 x 160
    x = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1)[None].float() / 255
    s = cls(fill="constant", fill_value=0.0)
    h, w = x.shape[-2:]
    for severity in (2, 5):
        p = params(s, severity, n=1)
        ours = s.apply(x, p)[0].permute(1, 2, 0).numpy()
        hm = s.homography(p, (h, w))[0].numpy()
        shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
        m = np.linalg.inv(shift) @ hm @ shift
        ref = cv2.warpPerspective(
            np.ascontiguousarray(x[0].permute(1, 2, 0).numpy()),
            m,
            (w, h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        diff = np.abs(ours - ref)
        assert diff.mean() < 2e-3 and diff.max() < 0.05, (cls.name, severity, diff.mean(), diff.max())


# --------------------------------------------------------------------- boxes follow pixels


def clip_polygon(poly, w, h):
    """Sutherland-Hodgman: the part of a convex polygon [(x, y), ...] inside [0, w] x [0, h]."""
    for axis, bound, keep_below in ((0, 0.0, False), (0, w, True), (1, 0.0, False), (1, h, True)):

        def inside(p, axis=axis, bound=bound, keep_below=keep_below):
            return p[axis] <= bound if keep_below else p[axis] >= bound

        out = []
        for a, b in zip(poly, poly[1:] + poly[:1]):
            if inside(b):
                if not inside(a):
                    out.append(_cross(a, b, axis, bound))
                out.append(b)
            elif inside(a):
                out.append(_cross(a, b, axis, bound))
        poly = out
        if not poly:
            break
    return poly


def _cross(a, b, axis, bound):
    t = (bound - a[axis]) / (b[axis] - a[axis])
    return (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))


@pytest.mark.parametrize("cls", CLASSES)
def test_boxes_follow_the_pixels_at_every_severity(cls):
    """A filled box is drawn, stressed and thresholded at 0.5, for 8 samples (8 directions) and 3
    boxes at every severity. Its mask's bounding box equals, within 1.5 px, the bounding box of the
    box's 4 mapped corners clipped to the frame (the visible quadrilateral); the hull of the corners
    clipped to the frame (what detection keeps) holds the mask, and equals it when the moved box stays
    inside the frame."""
    h, w = 90, 120
    s = cls(fill="constant", fill_value=0.0)
    boxes = torch.tensor([[20.0, 15.0, 60.0, 45.0], [70.0, 50.0, 110.0, 85.0], [5.0, 60.0, 30.0, 88.0]])
    n = len(IDS)
    checked = 0
    for severity in s.severities:
        p = params(s, severity)
        b = boxes.expand(n, -1, -1).to(torch.float64)
        hulls = hull(s, b, p, (h, w))
        x1, y1, x2, y2 = b.unbind(-1)
        corners = torch.stack([torch.stack(c, dim=-1) for c in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))], dim=-2)
        quads = s.map_points(corners.reshape(n, -1, 2), p, (h, w)).reshape(n, -1, 4, 2)
        frame = torch.tensor([w, h], dtype=torch.float64)
        for k, (bx1, by1, bx2, by2) in enumerate(boxes.int().tolist()):
            x = torch.zeros(n, 1, h, w)
            x[..., by1:by2, bx1:bx2] = 1.0
            mask = s.apply(x, p)[:, 0] > 0.5
            for i in range(n):
                visible = clip_polygon([tuple(q) for q in quads[i, k].tolist()], w, h)
                ys, xs = torch.nonzero(mask[i], as_tuple=True)
                if len(visible) < 3 or xs.numel() == 0:
                    assert xs.numel() <= 2, (cls.name, severity, i, k)  # at most a sliver at a corner
                    continue
                got = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float64)
                v = torch.tensor(visible, dtype=torch.float64)
                exact = torch.cat([v.amin(dim=0), v.amax(dim=0)])
                assert (got - exact).abs().max() <= 1.5, (cls.name, severity, i, k, got.tolist(), exact.tolist())
                kept = torch.cat([hulls[i, k, :2].clamp(min=0), torch.minimum(hulls[i, k, 2:], frame)])
                assert (got[:2] >= kept[:2] - 1).all() and (got[2:] <= kept[2:] + 1).all()
                if (hulls[i, k, :2] >= 0).all() and (hulls[i, k, 2:] <= frame).all():
                    assert (got - kept).abs().max() <= 1.5
                    checked += 1
    assert checked >= 20  # most boxes stay inside the frame


def test_box_hull_is_exact_for_a_rotated_box():
    """A 90-degree rotation about the centre of a 10 x 10 frame maps box (1, 2, 4, 8) to (2, 6, 8, 9)."""
    s = Rotation()
    p = Params(severity=1, values={"angle_deg": torch.tensor([90.0], dtype=torch.float64)})
    out = hull(s, torch.tensor([[[1.0, 2.0, 4.0, 8.0]]], dtype=torch.float64), p, (10, 10))
    assert torch.allclose(out, torch.tensor([[[2.0, 6.0, 8.0, 9.0]]], dtype=torch.float64), atol=1e-9)


# ------------------------------------------------------------- determinism, batch invariance


@pytest.mark.parametrize("cls", CLASSES)
def test_a_sample_is_stressed_alike_alone_and_in_any_batch(cls):
    s = cls()
    x = photo_like(8, 40)[..., :30, :]  # 30 x 40
    for severity in (1, 4, 2.5):
        frac = not float(severity).is_integer()
        full = s.apply(x, s.sample_params(sample_keys(IDS), severity, seed=3, fractional=frac))
        alone = s.apply(x[5:6], s.sample_params(sample_keys(IDS[5:6]), severity, seed=3, fractional=frac))
        assert torch.equal(alone[0], full[5])
        again = s.apply(x, s.sample_params(sample_keys(IDS), severity, seed=3, fractional=frac))
        assert torch.equal(again, full)
        other = s.apply(x, s.sample_params(sample_keys(IDS), severity, seed=4, fractional=frac))
        assert not torch.equal(other, full)


@pytest.mark.parametrize("cls", CLASSES)
def test_directions_are_random_per_sample_and_magnitudes_are_the_stated_ones(cls):
    s = cls()
    p = s.sample_params(sample_keys([f"s{i}" for i in range(64)]), 3, seed=0)
    if cls is Rotation:
        assert set(p["angle_deg"].abs().tolist()) == {ROTATION_DEG[2]} and len(set(p["angle_deg"].tolist())) == 2
    elif cls is Translation:
        f = torch.hypot(p["shift_x"], p["shift_y"])
        assert torch.allclose(f, torch.full_like(f, TRANSLATION_FRACTION[2]))
        assert (p["shift_x"] > 0).any() and (p["shift_x"] < 0).any() and (p["shift_y"] < 0).any()
    elif cls is Zoom:
        assert set(p["scale"].tolist()) == {ZOOM_FACTOR[2], 1 / ZOOM_FACTOR[2]}
    else:
        assert set(p["angle_deg"].abs().tolist()) == {PERSPECTIVE_DEG[2]}
        assert set(p["axis"].tolist()) == {0, 1} and len(set(p["angle_deg"].tolist())) == 2


def test_zoom_direction_option():
    keys = sample_keys([f"s{i}" for i in range(16)])
    assert torch.all(Zoom(direction="in").sample_params(keys, 2, seed=0)["scale"] == ZOOM_FACTOR[1])
    assert torch.all(Zoom(direction="out").sample_params(keys, 2, seed=0)["scale"] == 1 / ZOOM_FACTOR[1])


# -------------------------------------------------------------------------------- fill


def test_constant_fill_shows_in_the_corners_after_rotation_and_reflect_has_none():
    x = torch.full((2, 3, 40, 60), 0.7)
    constant = Rotation(fill="constant", fill_value=0.3)
    p = params(constant, 4, n=2)
    out = constant.apply(x, p)
    for r, c in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        assert torch.allclose(out[:, :, r, c], torch.tensor(0.3), atol=1e-6)
    assert torch.allclose(out[:, :, 20, 30], torch.tensor(0.7), atol=1e-6)
    reflect = Rotation(fill="reflect")
    assert torch.allclose(reflect.apply(x, params(reflect, 4, n=2)), x, atol=1e-6)  # a mirror of flat grey is flat grey
    default = Rotation()
    assert default.options == {"fill": "constant", "fill_value": 0.0, "severities": [1, 2, 3, 4, 5]}
    assert torch.all(default.apply(x, p)[:, :, 0, 0] == 0.0)


def test_reflect_fill_mirrors_the_image_about_its_border():
    x = photo_like(1, 32)
    s = Translation(fill="reflect")
    p = Params(severity=1, values={"shift_x": torch.tensor([0.25]), "shift_y": torch.tensor([0.0])})
    out = s.apply(x, p)  # 8 px right: columns 0..7 show columns 7..0
    assert torch.allclose(out[..., :8], x[..., :8].flip(-1), atol=1e-5)


# ----------------------------------------------------------------------- difficulty, options


@pytest.mark.parametrize("cls", CLASSES)
def test_damage_grows_with_severity_on_a_photograph(cls):
    photo = load_image("sample:china")[::4, ::4]
    x = (torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1)[None].float() / 255).expand(8, -1, -1, -1)
    s = cls()
    damage = [float((s.apply(x, params(s, k)) - x).abs().mean()) for k in s.severities]
    assert all(b > a for a, b in zip(damage, damage[1:])), damage


@pytest.mark.parametrize(
    "options",
    [{}, {"fill": "reflect"}, {"fill": "constant", "fill_value": 0.3}, {"severities": [2, 5]}],
    ids=["default", "reflect", "grey", "subset"],
)
@pytest.mark.parametrize("cls", CLASSES)
def test_check_stressor_passes(cls, options):
    check_stressor(cls(**options))


@pytest.mark.parametrize("direction", ["in", "out"])
def test_check_stressor_passes_for_zoom_directions(direction):
    check_stressor(Zoom(direction=direction))


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"fill": "mirror"}, "fill"),
        ({"fill": "constant", "fill_value": 1.5}, "fill_value"),
        ({"fill_value": -0.1}, "fill_value"),
        ({"fill_value": "grey"}, "fill_value"),
        ({"fill_value": True}, "fill_value"),
        ({"fill_value": math.nan}, "fill_value"),
        ({"fill": "reflect", "fill_value": 0.5}, "fill_value"),
        ({"severities": [6]}, "severities"),
    ],
)
def test_bad_options_are_one_line_errors_naming_the_option(cls, options, option):
    with pytest.raises(StressorError) as info:
        cls(**options)
    message = str(info.value)
    assert message.startswith(f"{cls.name}: option '{option}'") and "\n" not in message


def test_bad_zoom_direction():
    with pytest.raises(StressorError, match=r"^zoom: option 'direction' must be one of \['both', 'in', 'out'\]"):
        Zoom(direction="sideways")


@pytest.mark.parametrize("cls", CLASSES)
def test_params_record_the_physical_quantities_and_severity_meanings_state_them(cls):
    s = cls()
    record = params(s, 5, n=1).record(0)
    assert record["severity"] == 5 and set(record) > {"severity"}
    assert set(s.severity_meaning) == {1, 2, 3, 4, 5}
    assert s.moves_pixels and s.fractional_severities


def test_stress_with_boxes_moves_clips_and_drops_the_boxes():
    """Translation by 30 % of the frame: a box at the edge it moves towards leaves the frame and is dropped."""
    s = Translation()
    keys = sample_keys(["edge"])
    p = s.sample_params(keys, 5, seed=0)
    heading = math.atan2(float(p["shift_y"][0]), float(p["shift_x"][0]))
    x = photo_like(1, 100)
    edges = [[1.0, 40.0, 12.0, 60.0], [88.0, 40.0, 99.0, 60.0], [40.0, 1.0, 60.0, 12.0], [40.0, 88.0, 60.0, 99.0]]
    boxes = [torch.tensor([[30.0, 30.0, 70.0, 70.0], *edges], dtype=torch.float64)]
    batch = stress_with_boxes(s, x, boxes, sample_ids=keys, severity=5, seed=0, min_visibility=0.3)
    assert torch.equal(batch.images, s.apply(x, p))
    dx, dy = 30 * math.cos(heading), 30 * math.sin(heading)
    moved = boxes[0] + torch.tensor([dx, dy, dx, dy], dtype=torch.float64)
    visible = moved.clamp(0, 100)
    area = lambda b: (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)  # noqa: E731
    expected_visibility = area(visible) / area(moved)
    assert torch.allclose(batch.visibility[0], expected_visibility, atol=1e-9)
    kept = expected_visibility >= 0.3
    assert torch.equal(batch.kept[0], kept) and kept[0] and not kept.all()
    assert torch.allclose(batch.boxes[0], visible[kept], atol=1e-9)


# ------------------------------------------------------------------ the registry, the CLI, an audit


def test_the_cli_preview_shows_the_camera_shifts(tmp_path):
    from click.testing import CliRunner

    from audit.cli.stressors import stressors_group

    out = tmp_path / "grid.png"
    names = [c.name for c in CLASSES]
    args = ["preview", "sample:china", "--out", str(out), "--size", "24", *[a for n in names for a in ("--name", n)]]
    result = CliRunner().invoke(stressors_group, args)
    assert result.exit_code == 0, result.output
    grid = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert grid.shape[0] == 22 + 4 * 24
    tile = 36  # 24 px high, 36 px wide (the photograph is 427 x 640)
    for row in range(4):
        top = 22 + row * 24
        clean = grid[top : top + 24, 120 : 120 + tile]
        worst = grid[top : top + 24, 120 + 5 * tile : 120 + 6 * tile]
        assert np.abs(worst - clean).mean() > 10, names[row]


def test_a_classifier_audit_runs_the_camera_shifts_the_same_at_any_batch_size(workspace):
    import json

    from click.testing import CliRunner
    from cvaudit_fixtures import write_config

    from audit.cli import main

    stressors_yaml = "".join(f"  - {{name: {c.name}, severities: [1, 5]}}\n" for c in CLASSES)
    cfg = write_config(workspace, stressors=stressors_yaml)
    results = []
    for out, args in (("a", []), ("b", ["--batch-size", "7"])):
        run = CliRunner().invoke(main, ["run", str(cfg), "--out", str(workspace / out), "--quiet", *args])
        assert run.exit_code in (0, 1), run.output
        results.append(json.loads((workspace / out / "results.json").read_text()))
    ids = [c["id"] for c in results[0]["conditions"]]
    assert {f"{c.name}@{k}" for c in CLASSES for k in (1, 5)} <= set(ids)
    metrics = [{c["id"]: c["metrics"]["accuracy"] for c in r["conditions"]} for r in results]
    assert metrics[0] == metrics[1]
