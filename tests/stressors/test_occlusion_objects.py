"""Occlusion ``target: objects`` (occluders per ground-truth box) and the pinned ``target: image`` output."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch

import stressors
from stressors.base import StressorError, noise_like, sample_keys
from stressors.occlusion import occluder_mask

PIN_IDS = sample_keys([f"pin-{i}" for i in range(5)])
#: SHA-256 of the image-mode outputs and parameters below, taken before ``target`` existed.
IMAGE_MODE_DIGEST = "895cd6fea00665e6eed4ab9ed705ba31556a3b3c3e957e9d2224d3b13eaa1d64"


def pattern(n: int = 5, h: int = 48, w: int = 48) -> torch.Tensor:
    """Images built with integer arithmetic only (the same bytes on every machine)."""
    i = torch.arange(n * 3 * h * w, dtype=torch.int64).view(n, 3, h, w)
    return ((i * 37 + (i // w) * 11) % 251).float() / 250


def _record(params, i):
    """A sample's record with floats rounded to 12 significant digits (robust to last-ULP libm differences)."""

    def r(v):
        if isinstance(v, float):
            return float(f"{v:.12g}")
        return [r(u) for u in v] if isinstance(v, list) else v

    return {k: r(v) for k, v in params.record(i).items()}


def image_mode_digest(**options) -> str:
    x = pattern()
    h = hashlib.sha256()
    for fill in ("black", "mean"):
        s = stressors.get("occlusion", fill=fill, **options)
        for severity in (1, 2.5, 3, 5):
            p = s.sample_params(PIN_IDS, severity, seed=7, fractional=True)
            h.update(s.apply(x, p).numpy().tobytes())
            h.update(json.dumps([_record(p, i) for i in range(5)]).encode())
    return h.hexdigest()


def test_image_mode_output_is_pinned():
    """``target: image`` (the default) gives the bytes it gave before objects mode was added."""
    assert image_mode_digest() == IMAGE_MODE_DIGEST


def test_image_mode_noise_fill_is_the_formula():
    """The noise fill is Phi(standard normal field) inside the occluder, the image elsewhere (any machine)."""
    x = pattern()
    s = stressors.get("occlusion", fill="noise")
    p = s.sample_params(PIN_IDS, 4, seed=7)
    mask = occluder_mask(p, 48, 48, "cpu")
    expected = torch.where(mask, 0.5 * (1 + torch.erf(noise_like(x, p.seeds) / math.sqrt(2))), x)
    assert torch.equal(s.apply(x, p), expected.clamp(0, 1))


# ------------------------------------------------------------------------- target: objects

IDS = sample_keys([f"obj-{i}" for i in range(4)])
SIZE = (96, 128)  # H, W
#: Non-overlapping boxes of several sizes and aspects, some with fractional corners; sample 2 has none.
BOXES = [
    torch.tensor([[4.0, 4.0, 44.0, 36.0], [60.0, 10.0, 84.0, 90.0], [90.5, 50.25, 126.0, 80.75]]),
    torch.tensor([[0.0, 0.0, 128.0, 96.0]]),
    torch.zeros(0, 4),
    torch.tensor([[10.0, 60.0, 30.0, 80.0], [40.0, 60.0, 120.0, 70.0]]),
]
OBJECT_COVERAGE = (0.10, 0.25, 0.40, 0.60, 0.80)


def objects(**options):
    return stressors.get("occlusion", target="objects", **options)


def ones(n=4):
    return torch.ones(n, 3, *SIZE)


def hidden_pixels(s, boxes, severity, ids=IDS, **kw):
    """(N, H, W) bool: the pixels the black occluders set to 0 on white images, and the params."""
    p = s.sample_params(ids, severity, seed=3, boxes=boxes, **kw)
    return s.apply(ones(len(boxes)), p)[:, 0] == 0, p


def centres_in(box, h, w):
    """(H, W) bool: pixels whose centre lies in the closed box (a hand reference, loops only)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    out = torch.zeros(h, w, dtype=torch.bool)
    for r in range(h):
        for c in range(w):
            out[r, c] = x1 <= c + 0.5 <= x2 and y1 <= r + 0.5 <= y2
    return out


def test_objects_mode_traits_and_meaning():
    s = objects()
    assert s.needs_boxes is True and stressors.get("occlusion").needs_boxes is False
    assert s.moves_pixels is False
    assert s.options["target"] == "objects"
    assert s.severity_meaning[1].startswith("10% of each object's box hidden")
    assert s.severity_meaning[5].startswith("80% of each object's box hidden")


def test_measured_fraction_is_the_stated_one_up_to_pixel_rounding():
    """Isolated boxes: |measured - stated| <= (occluder w + h + 1 px) / box area, at every (half-)level."""
    s = objects()
    for severity in (1, 1.5, 2, 3, 3.25, 4, 5):
        stated = interpolate(severity)
        p = s.sample_params(IDS, severity, seed=3, boxes=BOXES, fractional=True)
        measured = s.object_measures(BOXES, p, SIZE)["occluded_fraction"]
        for i, b in enumerate(BOXES):
            assert measured[i].dtype == torch.float64 and measured[i].shape == (b.shape[0],)
            for k in range(b.shape[0]):
                occ = p["occluders"][i, k]
                ow, oh = float(occ[2] - occ[0]), float(occ[3] - occ[1])
                bw, bh = float(b[k, 2] - b[k, 0]), float(b[k, 3] - b[k, 1])
                assert ow * oh / (bw * bh) == pytest.approx(stated, rel=1e-9)  # the occluder's own area
                assert abs(float(measured[i][k]) - stated) <= (ow + oh + 1) / (bw * bh), (severity, i, k)


def interpolate(severity):
    k = math.ceil(severity)
    if k == severity:
        return OBJECT_COVERAGE[k - 1]
    return OBJECT_COVERAGE[k - 2] + (severity - k + 1) * (OBJECT_COVERAGE[k - 1] - OBJECT_COVERAGE[k - 2])


def test_measure_counts_the_hidden_pixels_of_the_output():
    """Pixel-aligned boxes: the measure equals the black pixels of the output inside the box, counted by hand."""
    s = objects()
    for severity in (2, 5):
        hidden, p = hidden_pixels(s, BOXES, severity)
        measured = s.object_measures(BOXES, p, SIZE)["occluded_fraction"]
        for i, k in [(0, 0), (0, 1), (1, 0), (3, 0), (3, 1)]:
            inside = centres_in(BOXES[i][k], *SIZE)
            assert float(measured[i][k]) == pytest.approx(float(hidden[i][inside].double().mean()), abs=1e-12)


def test_measure_weighs_partial_pixels_by_area_and_counts_neighbours():
    """Hand-computed: occluders given directly; a fractional box gets each pixel's shared area."""
    from stressors.occlusion import ObjectParams

    boxes = [torch.tensor([[0.5, 0.5, 2.5, 1.5], [2.0, 0.0, 4.0, 2.0], [1.0, 3.0, 1.0, 4.0]])]
    occluders = torch.tensor([[[0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 3.0, 2.0], [1.0, 3.0, 1.0, 4.0]]], dtype=torch.float64)
    p = ObjectParams(
        severity=1, values={"occluders": occluders, "valid": torch.ones(1, 3, dtype=torch.bool)}, seeds=(1,)
    )
    (got,) = objects().object_measures(boxes, p, (5, 5))["occluded_fraction"]
    # box 0 (area 2) shares 0.5 x 0.5 with pixel (row 0, col 0), hidden by its own occluder, and with
    # pixels (0, 2) and (1, 2), hidden by box 1's occluder: 0.75 / 2. Box 1: column 2 of rows 0-1 of
    # its 2 x 2 pixels hidden: 2 / 4. Box 2 has zero width: measured on pixel (3, 1), which nothing hides.
    assert got.tolist() == pytest.approx([0.375, 0.5, 0.0], abs=1e-12)


def test_each_occluder_lies_inside_its_box():
    s = objects()
    for severity in (1, 3, 5):
        hidden, p = hidden_pixels(s, BOXES, severity)
        for i, b in enumerate(BOXES):
            union = torch.zeros(SIZE, dtype=torch.bool)
            for k in range(b.shape[0]):
                occ = p["occluders"][i, k]
                assert b[k, 0] <= occ[0] <= occ[2] <= b[k, 2] and b[k, 1] <= occ[1] <= occ[3] <= b[k, 3]
                union |= centres_in(b[k], *SIZE)
            assert not (hidden[i] & ~union).any(), (severity, i)
            assert hidden[i].any() == (b.shape[0] > 0)


def test_deterministic_and_seed_dependent():
    s = objects()
    a = s.sample_params(IDS, 4, seed=3, boxes=BOXES)
    b = s.sample_params(IDS, 4, seed=3, boxes=BOXES)
    c = s.sample_params(IDS, 4, seed=4, boxes=BOXES)
    assert torch.equal(a["occluders"], b["occluders"]) and torch.equal(s.apply(ones(), a), s.apply(ones(), b))
    assert not torch.equal(a["occluders"], c["occluders"])


def test_batch_size_and_order_invariance_with_ragged_boxes():
    s = objects(fill="noise")
    x = pattern(4, *SIZE)
    full_p = s.sample_params(IDS, 3, seed=3, boxes=BOXES)
    full = s.apply(x, full_p)
    full_m = s.object_measures(BOXES, full_p, SIZE)["occluded_fraction"]
    for order in ([2, 0], [3], [1, 3, 0, 2]):
        sub_boxes = [BOXES[i] for i in order]
        p = s.sample_params(IDS[order], 3, seed=3, boxes=sub_boxes)
        assert torch.equal(s.apply(x[order], p), full[order])
        m = s.object_measures(sub_boxes, p, SIZE)["occluded_fraction"]
        for j, i in enumerate(order):
            assert torch.equal(m[j], full_m[i])
            assert p.record(j) == full_p.record(i)
            json.dumps(p.record(j))


def test_an_objects_occluder_is_keyed_by_its_index_not_by_the_other_objects():
    s = objects()
    more = [torch.cat([BOXES[0], torch.tensor([[100.0, 5.0, 120.0, 25.0]])])]
    a = s.sample_params(IDS[:1], 2, seed=3, boxes=BOXES[:1])
    b = s.sample_params(IDS[:1], 2, seed=3, boxes=more)
    assert torch.equal(a["occluders"][0], b["occluders"][0, :3])


def test_empty_box_lists_leave_the_images_unchanged():
    s = objects()
    x = pattern(3, *SIZE)
    empty = [torch.zeros(0, 4)] * 3
    p = s.sample_params(IDS[:3], 5, seed=3, boxes=empty)
    assert p["occluders"].shape == (3, 0, 4)
    assert torch.equal(s.apply(x, p), x)
    assert [m.shape for m in s.object_measures(empty, p, SIZE)["occluded_fraction"]] == [(0,)] * 3
    assert p.record(0) == {"severity": 5, "occluders": []}


def test_tiny_boxes():
    """1-2 px boxes (aligned, fractional, zero-width): a measure in [0, 1] that matches the output."""
    s = objects()
    tiny = [
        torch.tensor([[5.0, 5.0, 6.0, 6.0], [10.0, 10.0, 12.0, 12.0], [20.0, 20.0, 21.0, 22.0]]),
        torch.tensor([[30.3, 30.6, 31.4, 31.9], [40.0, 40.0, 40.0, 42.0], [0.0, 0.0, 2.0, 1.0]]),
    ]
    seen = set()
    for severity in (1, 2, 3, 4, 5):
        for seed in range(6):
            p = s.sample_params(IDS[:2], severity, seed=seed, boxes=tiny)
            hidden = s.apply(torch.ones(2, 1, *SIZE), p)[:, 0] == 0
            m = s.object_measures(tiny, p, SIZE)["occluded_fraction"]
            for i, b in enumerate(tiny):
                assert ((m[i] >= 0) & (m[i] <= 1)).all()
                union = torch.zeros(SIZE, dtype=torch.bool)
                for k in range(b.shape[0]):
                    union |= centres_in(b[k], *SIZE)
                assert not (hidden[i] & ~union).any()
            # the 1 px aligned box is either hidden or not: its measure is 0 or 1 and says which
            assert float(m[0][0]) == float(hidden[0, 5, 5])
            seen.add(float(m[0][0]))
    assert seen == {0.0, 1.0}


def test_boxes_on_the_frame_edge():
    """Boxes touching the right and bottom edges (zero width on the edge, a sliver within check_boxes' tolerance)."""
    s = objects()
    edge = [torch.tensor([[128.0, 10.0, 128.0, 30.0], [100.0, 90.0, 128.0, 96.0], [127.9995, 0.0, 128.0005, 5.0]])]
    p = s.sample_params(IDS[:1], 5, seed=3, boxes=edge)
    (m,) = s.object_measures(edge, p, SIZE)["occluded_fraction"]
    hidden = s.apply(torch.ones(1, 1, *SIZE), p)[0, 0] == 0
    assert float(m[1]) == pytest.approx(float(hidden[90:96, 100:128].double().mean()), abs=1e-12)
    assert ((m >= 0) & (m <= 1)).all()


def test_monotone_in_severity():
    """Every isolated box of at least 20 px loses strictly more of its area at each half-level."""
    s = objects()
    levels = [1 + 0.5 * i for i in range(9)]
    rows = []
    for severity in levels:
        p = s.sample_params(IDS, severity, seed=3, boxes=BOXES, fractional=True)
        rows.append(torch.cat(s.object_measures(BOXES, p, SIZE)["occluded_fraction"]))
    table = torch.stack(rows)
    assert (table[1:] > table[:-1]).all(), table


def test_fractional_integer_written_as_float_is_the_integer_level():
    s = objects()
    a = s.sample_params(IDS, 3, seed=3, boxes=BOXES)
    b = s.sample_params(IDS, 3.0, seed=3, boxes=BOXES, fractional=True)
    assert torch.equal(a["occluders"], b["occluders"])
    with pytest.raises(StressorError, match="severity 2.5"):
        s.sample_params(IDS, 2.5, seed=3, boxes=BOXES)


@pytest.mark.parametrize("fill", ["black", "noise", "mean"])
def test_every_fill_changes_only_the_hidden_pixels(fill):
    s = objects(fill=fill)
    x = pattern(4, *SIZE)
    p = s.sample_params(IDS, 4, seed=3, boxes=BOXES)
    y = s.apply(x, p)
    black = objects()
    hidden = black.apply(ones(), p)[:, :1] == 0
    assert torch.equal(y[~hidden.expand_as(y)], x[~hidden.expand_as(x)])
    assert not torch.equal(y, x)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s: s.sample_params(IDS, 1, seed=0), "target 'objects' needs the ground-truth boxes"),
        (lambda s: s.sample_params(IDS, 1, seed=0, boxes=BOXES[:3]), "boxes hold 3 images, the batch holds 4"),
        (lambda s: s.sample_params(IDS, 1, seed=0, boxes=torch.zeros(4, 0, 4)), "must be a list"),
        (
            lambda s: s.sample_params(IDS[:1], 1, seed=0, boxes=[torch.zeros(2, 5)]),
            r"boxes of sample 0 must be a \(K, 4\) xyxy tensor",
        ),
        (
            lambda s: s.sample_params(IDS[:1], 1, seed=0, boxes=[torch.tensor([[5.0, 0, 4, 3]])]),
            "boxes of sample 0 must be xyxy",
        ),
        (
            lambda s: s.sample_params(IDS[:1], 1, seed=0, boxes=[torch.tensor([[0.0, 0, math.nan, 3]])]),
            "boxes of sample 0 hold a non-finite",
        ),
        (
            lambda s: s.apply(torch.ones(1, 3, 20, 20), s.sample_params(IDS[:1], 5, seed=0, boxes=[BOXES[1]])),
            "box 0 of sample 0 lies outside the 20x20 image",
        ),
        (
            lambda s: s.apply(ones(), stressors.get("occlusion").sample_params(IDS, 1, seed=0)),
            "needs parameters drawn with boxes",
        ),
        (
            lambda s: s.object_measures(BOXES[:3] + [BOXES[0]], s.sample_params(IDS, 1, seed=0, boxes=BOXES), SIZE),
            "sample 3 has 3 boxes, its parameters were drawn for 2",
        ),
        (lambda s: stressors.get("occlusion", target="boxes"), "option 'target' must be one of"),
    ],
)
def test_bad_input_is_one_line_naming_the_stressor(call, match):
    with pytest.raises(StressorError, match=match) as info:
        call(objects())
    assert str(info.value).startswith("occlusion: ") and "\n" not in str(info.value)


def test_image_mode_ignores_boxes_and_measures_nothing():
    s = stressors.get("occlusion")
    a = s.sample_params(IDS, 2, seed=3)
    b = s.sample_params(IDS, 2, seed=3, boxes=BOXES)
    assert [a.record(i) for i in range(4)] == [b.record(i) for i in range(4)]
    assert s.object_measures(BOXES, a, SIZE) == {}


def test_objects_mode_passes_the_conformance_checks():
    """``check_stressor`` with boxes (the box conformance lands with ``stressors.boxes``)."""
    from stressors import testing

    if not hasattr(testing, "check_box_conformance"):
        pytest.skip("stressors.testing has no box conformance yet")
    testing.check_stressor(objects())


def test_a_classification_audit_with_occlusion_of_objects_exits_2_before_any_image(tmp_path):
    import subprocess
    import sys

    from cvaudit_fixtures import ColourNet, make_dataset, save_model, write_config

    make_dataset(tmp_path)
    save_model(tmp_path / "model.pt", ColourNet())
    cfg = write_config(tmp_path, stressors="  - {name: occlusion, target: objects, severities: [1]}\n")
    done = subprocess.run(
        [sys.executable, "-m", "audit", "run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2
    line = done.stderr.strip()
    assert "\n" not in line and "stressor condition 'occlusion@1' needs object boxes (target: objects)" in line
    assert not (tmp_path / "out").exists()
