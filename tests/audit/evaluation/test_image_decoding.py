"""EXIF orientation and transparency (``data.exif``, ``data.alpha``): by default as the model's own pipeline.

For a Hugging Face model the reference is transformers itself: ``load_image`` (what its
image-classification pipeline and an image processor given a file path use) followed by the
folder's PIL processor, and the pipeline's top-1 class. Orientations are also checked against the
EXIF specification written out in numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hf_fixtures import save_tiny_vit
from PIL import Image

from audit.contract.config import DataConfig, ModelConfig, parse_config
from audit.contract.errors import AuditError
from audit.evaluation.breaking_points import RefineContext, _load
from audit.evaluation.data import AuditDataset, drop_alpha, make_loader, read_samples
from audit.evaluation.model import AuditModel, load_model, resolve_model_config

ORIENTATION = 0x0112
#: The stored pixels -> the upright image, for each EXIF Orientation value (EXIF 2.32, section 4.6.4 A).
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # mirrored along the main diagonal
    6: lambda a: np.rot90(a, -1),  # stored rotated 90 counter-clockwise: turn 90 clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # mirrored along the other diagonal
    8: lambda a: np.rot90(a, 1),  # turn 90 counter-clockwise
}
FACTORY = {"factory": "m:f", "resize_backend": "pil", "mean": (0.0,) * 3, "std": (1.0,) * 3}


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return exif.tobytes()


def _blocks(rng: np.random.Generator, h: int, w: int, c: int) -> np.ndarray:
    """Large flat blocks of saturated colours (a model tells their layout apart; JPEG keeps them)."""
    small = rng.integers(0, 2, (3, 6, c), dtype=np.uint8) * 255
    return np.asarray(Image.fromarray(small.squeeze(-1) if c == 1 else small).resize((w, h), Image.NEAREST))


def _manifest(folder, names) -> DataConfig:
    (folder / "m.csv").write_text("path,label\n" + "".join(f"{n},0\n" for n in names))
    return DataConfig(manifest=folder / "m.csv")


def _decoded(data: DataConfig, model: ModelConfig, **decoding) -> torch.Tensor:
    """The images as the audit's DataLoader yields them (one worker process), in manifest order."""
    table = read_samples(data, class_names=model.class_names)
    loader = make_loader(AuditDataset(table, model, **decoding), batch_size=len(table), num_workers=1)
    batch = next(iter(loader))
    assert not batch["bad"]
    return batch["images"]


# ----------------------------------------------------------------------- the config


def test_defaults_follow_the_model_and_given_values_win():
    data = DataConfig(manifest="m.csv")
    assert (data.exif, data.alpha) == (None, None)
    hf = ModelConfig(path="vit", format="huggingface")
    factory = ModelConfig(factory="m:f")
    assert (data.decoding_for(hf).exif, data.decoding_for(hf).alpha) == ("apply", "drop")
    assert (data.decoding_for(factory).exif, data.decoding_for(factory).alpha) == ("ignore", "composite_white")
    given = DataConfig(manifest="m.csv", exif="ignore", alpha="composite_white")
    assert (given.decoding_for(hf).exif, given.decoding_for(hf).alpha) == ("ignore", "composite_white")
    given = DataConfig(manifest="m.csv", exif="apply", alpha="drop")
    assert (given.decoding_for(factory).exif, given.decoding_for(factory).alpha) == ("apply", "drop")


@pytest.mark.parametrize("key, value", [("exif", "rotate"), ("alpha", "black")])
def test_a_bad_setting_is_one_line_naming_the_key(tmp_path, key, value):
    raw = {"model": {"factory": "m:f"}, "data": {"manifest": "m.csv", key: value}}
    with pytest.raises(AuditError, match=rf"^config.yaml: data\.{key}: Input should be "):
        parse_config(raw, source="config.yaml", base_dir=tmp_path)


# ----------------------------------------------------------------------- orientation


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_every_orientation_is_turned_upright_as_the_exif_specification_says(tmp_path, suffix):
    rng = np.random.default_rng(0)
    stored = _blocks(rng, 24, 48, 3)
    names = [f"o{orientation}{suffix}" for orientation in UPRIGHT]
    for orientation, name in zip(UPRIGHT, names):
        Image.fromarray(stored).save(tmp_path / name, exif=_exif(orientation), quality=100)
    table = read_samples(_manifest(tmp_path, names), class_names=None)
    with Image.open(tmp_path / names[0]) as img:  # the decoded pixels (JPEG is lossy), before any turn
        pixels = np.asarray(img.convert("RGB"))
    for k, orientation in enumerate(UPRIGHT):
        upright = UPRIGHT[orientation](pixels)
        model = ModelConfig(**FACTORY, input_size=upright.shape[:2])  # no resize: the pixels themselves
        got = AuditDataset(table, model, exif="apply")[k]["image"]
        expected = torch.from_numpy(np.ascontiguousarray(upright).transpose(2, 0, 1) / np.float32(255))
        assert torch.equal(got, expected), orientation
    as_stored = _decoded(_manifest(tmp_path, names), ModelConfig(**FACTORY, input_size=(24, 48)), exif="ignore")
    expected = torch.from_numpy(pixels.transpose(2, 0, 1) / np.float32(255))
    assert all(torch.equal(image, expected) for image in as_stored)


def test_the_pixel_limit_holds_for_a_turned_image(tmp_path):
    """The header's width x height is checked before decoding; a turn swaps the two, not their product."""
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "big.jpg", exif=_exif(6))
    table = read_samples(_manifest(tmp_path, ["big.jpg"]), class_names=None)
    model = ModelConfig(**FACTORY, input_size=(60, 40))
    item = AuditDataset(table, model, max_pixels=2399, exif="apply")[0]
    assert item["error"].startswith("image is 60x40 = 2400 pixels, more than data.max_image_pixels (2399)")
    assert AuditDataset(table, model, max_pixels=2400, exif="apply")[0]["image"].shape == (3, 60, 40)


# ----------------------------------------------------------------------- transparency


def test_drop_alpha_keeps_every_colour_as_pillow_convert_does(tmp_path):
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (9, 7, 4), dtype=np.uint8)
    la = rng.integers(0, 256, (9, 7, 2), dtype=np.uint8)
    assert np.array_equal(np.asarray(drop_alpha(Image.fromarray(rgba, "RGBA"))), rgba[..., :3])
    assert np.array_equal(np.asarray(drop_alpha(Image.fromarray(la, "LA"))), la[..., 0])
    grey = Image.fromarray(la[..., 0])
    grey.save(tmp_path / "trns.png", transparency=int(la[0, 0, 0]))  # one grey level marked transparent
    with Image.open(tmp_path / "trns.png") as img:
        out = drop_alpha(img)
        assert out.mode == "L" and "transparency" not in out.info and np.array_equal(np.asarray(out), la[..., 0])
    plain = Image.fromarray(rgba[..., :3])
    assert drop_alpha(plain) is plain


@pytest.mark.parametrize("backend", ["pil", "torch"])
def test_alpha_drop_and_composite_white(tmp_path, backend):
    rng = np.random.default_rng(2)
    rgba = rng.integers(0, 256, (12, 10, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    data = _manifest(tmp_path, ["a.png"])
    model = ModelConfig(factory="m:f", input_size=(12, 10), resize_backend=backend)
    dropped = _decoded(data, model, alpha="drop")[0]
    np.testing.assert_allclose(dropped.numpy(), rgba[..., :3].transpose(2, 0, 1) / 255.0, rtol=0, atol=1e-7)
    white = _decoded(data, model, alpha="composite_white")[0]
    a = rgba[..., 3:].astype(np.float64) / 255
    over_white = (rgba[..., :3] * a + 255 * (1 - a)).transpose(2, 0, 1) / 255  # Pillow rounds to 8 bits
    np.testing.assert_allclose(white.numpy(), over_white, rtol=0, atol=1 / 255)
    assert not torch.equal(dropped, white)


# ----------------------------------------------------------------------- against transformers


def _phone_and_transparent_images(folder) -> DataConfig:
    """Ten JPEGs stored sideways (Orientation 6) and ten RGBA PNGs, as in issue 30."""
    rng = np.random.default_rng(0)
    (folder / "img").mkdir()
    names = []
    for i in range(10):
        Image.fromarray(_blocks(rng, 24, 48, 3)).save(folder / "img" / f"o6_{i}.jpg", exif=_exif(6), quality=95)
        names.append(f"img/o6_{i}.jpg")
    for i in range(10):
        Image.fromarray(_blocks(rng, 40, 40, 4), "RGBA").save(folder / "img" / f"rgba_{i}.png")
        names.append(f"img/rgba_{i}.png")
    return _manifest(folder, names)


@pytest.fixture(scope="module")
def vit_and_images(tmp_path_factory):
    pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("hf")
    save_tiny_vit(folder / "vit", seed=2)  # a random ViT whose top-1 class varies over these images
    data = _phone_and_transparent_images(folder)
    cfg = resolve_model_config(ModelConfig(path=folder / "vit", format="huggingface"))
    return cfg, data, list(read_samples(data, class_names=cfg.class_names).paths)


def _normalised(cfg: ModelConfig, images: torch.Tensor) -> np.ndarray:
    wrapper = AuditModel(torch.nn.Identity(), cfg)
    return ((images - wrapper.mean) / wrapper.std).numpy()


def _top1(cfg: ModelConfig, images: torch.Tensor) -> list[int]:
    model, _ = load_model(cfg, torch.device("cpu"))
    with torch.no_grad():
        return model(images).argmax(dim=1).tolist()


def test_hugging_face_defaults_decode_as_transformers_does(vit_and_images):
    import transformers

    cfg, data, paths = vit_and_images
    decided = data.decoding_for(cfg)
    ours = _decoded(data, cfg, exif=decided.exif, alpha=decided.alpha)
    processor = transformers.AutoImageProcessor.from_pretrained(str(cfg.path), backend="pil")
    loaded = [transformers.image_utils.load_image(str(p)) for p in paths]  # EXIF applied, alpha dropped
    theirs = processor(images=loaded, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(_normalised(cfg, ours), theirs, rtol=0, atol=1e-6)
    pipe = transformers.pipeline("image-classification", model=str(cfg.path), device="cpu")
    pipeline_top1 = [cfg.class_names.index(pipe(str(p), top_k=1)[0]["label"]) for p in paths]
    assert _top1(cfg, ours) == pipeline_top1  # 20/20 (before: 6/10 sideways JPEGs, 6/10 RGBA PNGs)
    assert len(set(pipeline_top1)) > 1


def test_ignore_and_composite_white_decode_as_before(vit_and_images):
    """exif: ignore is the file as stored (Image.open(path).convert("RGB") before the processor), and
    the old decoding disagrees with the pipeline on these images (the test above is not vacuous)."""
    import transformers

    cfg, data, paths = vit_and_images
    ours = _decoded(data, cfg, exif="ignore", alpha="composite_white")
    processor = transformers.AutoImageProcessor.from_pretrained(str(cfg.path), backend="pil")
    stored = [Image.open(p).convert("RGB") for p in paths[:10]]
    theirs = processor(images=stored, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(_normalised(cfg, ours[:10]), theirs, rtol=0, atol=1e-6)
    pipe = transformers.pipeline("image-classification", model=str(cfg.path), device="cpu")
    pipeline_top1 = [cfg.class_names.index(pipe(str(p), top_k=1)[0]["label"]) for p in paths]
    old_top1 = _top1(cfg, ours)
    assert sum(a == b for a, b in zip(old_top1[:10], pipeline_top1[:10])) == 6  # the numbers in docs/running.md
    assert sum(a == b for a, b in zip(old_top1[10:], pipeline_top1[10:])) == 6


def test_breaking_points_decode_as_the_evaluation(vit_and_images):
    cfg, data, _ = vit_and_images
    table = read_samples(data, class_names=cfg.class_names)
    decoding = {"exif": "apply", "alpha": "drop"}
    ctx = RefineContext(None, table, cfg, None, 0, 4, torch.device("cpu"), decoding=decoding)
    images, good = _load(ctx, [0, 10])
    assert good == [0, 10]
    evaluated = AuditDataset(table, cfg, **decoding)
    assert torch.equal(images[0], evaluated[0]["image"]) and torch.equal(images[1], evaluated[10]["image"])
    assert not torch.equal(images[0], AuditDataset(table, cfg)[0]["image"])
