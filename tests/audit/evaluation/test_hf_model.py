"""Hugging Face folders: class names and preprocessing from the folder, equal to the library's own
PIL processor; logits from the output object; bad folders."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from hf_fixtures import CLASSES, save_tiny_vit
from PIL import Image

from audit.contract.config import DataConfig, ModelConfig
from audit.contract.errors import AuditError
from audit.evaluation.data import AuditDataset, read_samples
from audit.evaluation.model import AuditModel, load_model, resolve_model_config

transformers = pytest.importorskip("transformers")
from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil  # noqa: E402
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil  # noqa: E402
from transformers.models.convnext.image_processing_pil_convnext import ConvNextImageProcessorPil  # noqa: E402
from transformers.models.deit.image_processing_pil_deit import DeiTImageProcessorPil  # noqa: E402
from transformers.models.mobilenet_v1.image_processing_pil_mobilenet_v1 import (  # noqa: E402
    MobileNetV1ImageProcessorPil,
)
from transformers.models.pvt.image_processing_pil_pvt import PvtImageProcessorPil  # noqa: E402
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil  # noqa: E402
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil  # noqa: E402

CPU = torch.device("cpu")
SIZES = [(37, 50), (16, 16), (20, 64), (90, 41), (32, 32)]  # (H, W): smaller, larger, both aspect ratios

# Each processor's PIL implementation, saved beside the model; all produce 32x32 inputs.
PROCESSORS = {
    "vit-bilinear": lambda: ViTImageProcessorPil(size={"height": 32, "width": 32}),
    "vit-bicubic-own-mean": lambda: ViTImageProcessorPil(
        size={"height": 32, "width": 32}, resample=3, image_mean=[0.2, 0.4, 0.6], image_std=[0.3, 0.2, 0.1]
    ),
    "deit-resize-crop": lambda: DeiTImageProcessorPil(
        size={"height": 40, "width": 36}, crop_size={"height": 32, "width": 32}
    ),
    "deit-crop-pads": lambda: DeiTImageProcessorPil(
        size={"height": 28, "width": 31}, crop_size={"height": 32, "width": 32}
    ),
    "clip-shortest-edge": lambda: CLIPImageProcessorPil(
        size={"shortest_edge": 35}, crop_size={"height": 32, "width": 32}
    ),
    "bit-lanczos": lambda: BitImageProcessorPil(
        size={"shortest_edge": 33}, crop_size={"height": 32, "width": 32}, resample=1
    ),
    "convnext-crop-pct": lambda: ConvNextImageProcessorPil(size={"shortest_edge": 32}, crop_pct=0.875),
    "mobilenet-v1-shortest-edge": lambda: MobileNetV1ImageProcessorPil(
        size={"shortest_edge": 37}, crop_size={"height": 32, "width": 32}
    ),
    "pvt-bicubic": lambda: PvtImageProcessorPil(size={"height": 32, "width": 32}),
    "siglip-bicubic": lambda: SiglipImageProcessorPil(size={"height": 32, "width": 32}),
    "vit-no-rescale-no-normalize": lambda: ViTImageProcessorPil(
        size={"height": 32, "width": 32}, do_rescale=False, do_normalize=False
    ),
}


def _images(folder, sizes=SIZES):
    rng = np.random.default_rng(1)
    (folder / "img").mkdir()
    rows = ["path,label"]
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / "img" / f"{i}.png")
        rows.append(f"img/{i}.png,{CLASSES[i % 3]}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv"


def _cvaudit_inputs(cfg: ModelConfig, manifest):
    """cvaudit's preprocessing: the data loader's [0, 1] images, normalised as the model wrapper does."""
    table = read_samples(DataConfig(manifest=manifest), class_names=cfg.class_names)
    ds = AuditDataset(table, cfg)
    wrapper = AuditModel(torch.nn.Identity(), cfg)
    images = torch.stack([ds[i]["image"] for i in range(len(ds))])
    return (images - wrapper.mean) / wrapper.std, table


@pytest.mark.parametrize("name", sorted(PROCESSORS))
def test_preprocessing_equals_the_library_processor(tmp_path, name):
    folder = save_tiny_vit(tmp_path / "model", processor=PROCESSORS[name]())
    manifest = _images(tmp_path)
    cfg = resolve_model_config(ModelConfig(path=folder, format="huggingface"))
    assert cfg.input_size == (32, 32) and cfg.resize_backend == "pil"
    ours, table = _cvaudit_inputs(cfg, manifest)
    processor = transformers.AutoImageProcessor.from_pretrained(str(folder), backend="pil")
    with_pil = [Image.open(p).convert("RGB") for p in table.paths]
    theirs = processor(images=with_pil, return_tensors="np")["pixel_values"]
    assert ours.shape == theirs.shape == (len(SIZES), 3, 32, 32)
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=1e-6 * max(1.0, float(np.abs(theirs).max())))


def test_grey_and_transparent_images_match_a_converting_processor(tmp_path):
    """CLIP given PIL images converts them to RGB (transparency over white), as cvaudit's data.alpha: composite_white."""
    folder = save_tiny_vit(tmp_path / "model", processor=PROCESSORS["clip-shortest-edge"]())
    (tmp_path / "img").mkdir()
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (40, 33), dtype=np.uint8)).save(tmp_path / "img" / "grey.png")
    Image.fromarray(rng.integers(0, 256, (36, 48, 4), dtype=np.uint8)).save(tmp_path / "img" / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (50, 38, 3), dtype=np.uint8)).convert("P").save(tmp_path / "img" / "pal.png")
    (tmp_path / "m.csv").write_text("path,label\nimg/grey.png,red\nimg/rgba.png,green\nimg/pal.png,blue\n")
    cfg = resolve_model_config(ModelConfig(path=folder, format="huggingface"))
    ours, table = _cvaudit_inputs(cfg, tmp_path / "m.csv")
    processor = transformers.AutoImageProcessor.from_pretrained(str(folder), backend="pil")
    theirs = processor(images=[Image.open(p) for p in table.paths], return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=1e-5)


def test_npz_uint8_images_take_the_same_path_as_files(tmp_path):
    folder = save_tiny_vit(tmp_path / "model", processor=PROCESSORS["deit-resize-crop"]())
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (4, 45, 29, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=np.array([0, 1, 2, 0]))
    (tmp_path / "img").mkdir()
    for i, arr in enumerate(images):
        Image.fromarray(arr).save(tmp_path / "img" / f"{i}.png")
    (tmp_path / "m.csv").write_text("path,label\n" + "".join(f"img/{i}.png,0\n" for i in range(4)))
    cfg = resolve_model_config(ModelConfig(path=folder, format="huggingface"))
    from_files = AuditDataset(read_samples(DataConfig(manifest=tmp_path / "m.csv"), class_names=None), cfg)
    from_npz = AuditDataset(read_samples(DataConfig(npz=tmp_path / "d.npz"), class_names=None), cfg)
    for i in range(4):
        assert torch.equal(from_files[i]["image"], from_npz[i]["image"])


def test_class_names_channels_and_overrides(tmp_path):
    folder = save_tiny_vit(tmp_path / "model", processor=PROCESSORS["deit-resize-crop"]())
    cfg = resolve_model_config(ModelConfig(path=folder, format="huggingface"))
    assert cfg.class_names == CLASSES and cfg.channels == 3
    assert (cfg.resize, cfg.input_size, cfg.interpolation) == ((40, 36), (32, 32), "bicubic")
    assert cfg.mean == cfg.std == (0.5, 0.5, 0.5)
    given = ModelConfig(path=folder, format="huggingface", mean=(0.1, 0.2, 0.3), interpolation="nearest")
    cfg = resolve_model_config(given)
    assert cfg.mean == (0.1, 0.2, 0.3) and cfg.interpolation == "nearest"
    assert cfg.std == (0.5, 0.5, 0.5) and cfg.resize == (40, 36)
    same = resolve_model_config(ModelConfig(path=folder, format="huggingface", class_names=CLASSES))
    assert same.class_names == CLASSES


def test_logits_come_from_the_output_object(tmp_path):
    folder = save_tiny_vit(tmp_path / "model")
    cfg = resolve_model_config(ModelConfig(path=folder, format="huggingface"))
    model, info = load_model(cfg, CPU)
    reference = transformers.AutoModelForImageClassification.from_pretrained(str(folder)).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ours = model(x)
        theirs = reference(pixel_values=(x - 0.5) / 0.5).logits
    assert ours.shape == (2, 3)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert info["format"] == "huggingface" and info["path"].endswith("model.safetensors")
    assert set(info["files"]) == {"config.json", "preprocessor_config.json", "model.safetensors"}
    assert info["sha256"] == info["files"]["model.safetensors"]
    x.requires_grad_(True)
    model(x).sum().backward()  # gradients reach the input: attacks work
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_sharded_safetensors_are_named_and_hashed(tmp_path):
    folder = save_tiny_vit(tmp_path / "model")
    model = transformers.AutoModelForImageClassification.from_pretrained(str(folder))
    sharded = tmp_path / "sharded"
    model.save_pretrained(sharded, max_shard_size="20KB")
    (sharded / "preprocessor_config.json").write_bytes((folder / "preprocessor_config.json").read_bytes())
    assert (sharded / "model.safetensors.index.json").is_file()
    _, info = load_model(resolve_model_config(ModelConfig(path=sharded, format="huggingface")), CPU)
    assert info["path"].endswith("model.safetensors.index.json")
    assert sum(name.startswith("model-") for name in info["files"]) >= 2


# ---------------------------------------------------------------------- bad input


def _fails(cfg: ModelConfig, match: str, *, load: bool = False) -> str:
    with pytest.raises(AuditError, match=match) as err:
        resolved = resolve_model_config(cfg)
        if load:
            load_model(resolved, CPU)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_folder(tmp_path):
    _fails(ModelConfig(path=tmp_path / "nope", format="huggingface"), "model folder not found")


def test_folder_without_config(tmp_path):
    (tmp_path / "m").mkdir()
    _fails(ModelConfig(path=tmp_path / "m", format="huggingface"), r"no config\.json")


def test_config_that_is_not_json(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{model_type: vit")
    _fails(ModelConfig(path=tmp_path / "m", format="huggingface"), "not valid JSON")


def test_config_over_the_limit_is_refused_before_reading(tmp_path):
    """A 1 GiB config.json (sparse: no disk) is refused from its size, not read (issue 31, limits)."""
    import resource

    (tmp_path / "m").mkdir()
    with open(tmp_path / "m" / "config.json", "wb") as fh:
        fh.truncate(1 << 30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _fails(ModelConfig(path=tmp_path / "m", format="huggingface"), r"config\.json is 1024\.0 MiB; at most 16\.0 MiB")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB


def test_model_that_is_not_an_image_classifier(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    _fails(ModelConfig(path=tmp_path / "m", format="huggingface"), "'bert' is not an image classifier")


def test_backbone_without_a_classification_head(tmp_path):
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    ViTModel(config).save_pretrained(tmp_path / "m")
    _fails(ModelConfig(path=tmp_path / "m", format="huggingface"), "no image-classification head")


def test_weights_without_the_head_are_refused(tmp_path):
    """A classifier config over backbone weights would load a random head: refused."""
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    ViTModel(config).save_pretrained(tmp_path / "m")
    raw = json.loads((tmp_path / "m" / "config.json").read_text())
    raw["architectures"] = ["ViTForImageClassification"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(raw))
    cfg = ModelConfig(path=tmp_path / "m", format="huggingface", input_size=(32, 32), mean=(0.5,), std=(0.5,))
    _fails(cfg, "weights lack 2 parameter", load=True)


def test_class_names_that_do_not_match_id2label(tmp_path):
    folder = save_tiny_vit(tmp_path / "m")
    message = _fails(
        ModelConfig(path=folder, format="huggingface", class_names=["red", "blue", "green"]),
        "do not match id2label",
    )
    assert "[red, blue, green]" in message and "[red, green, blue]" in message


def test_pickled_weights_are_refused(tmp_path):
    folder = save_tiny_vit(tmp_path / "m")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    _fails(ModelConfig(path=folder, format="huggingface"), "only pickled weights", load=True)


def test_custom_code_is_refused(tmp_path):
    folder = save_tiny_vit(tmp_path / "m")
    raw = json.loads((folder / "config.json").read_text())
    raw["auto_map"] = {"AutoModelForImageClassification": "modeling.Net"}
    (folder / "config.json").write_text(json.dumps(raw))
    _fails(ModelConfig(path=folder, format="huggingface"), "custom code")


def test_no_processor_config_needs_the_keys(tmp_path):
    folder = save_tiny_vit(tmp_path / "m", processor=False)
    _fails(ModelConfig(path=folder, format="huggingface"), "set model.input_size, model.mean, model.std")
    cfg = resolve_model_config(
        ModelConfig(path=folder, format="huggingface", input_size=(32, 32), mean=(0.5,), std=(0.5,))
    )
    assert cfg.input_size == (32, 32) and cfg.resize_backend == "torch" and cfg.class_names == CLASSES


def test_processor_cvaudit_cannot_express(tmp_path):
    processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, do_center_crop=False)
    folder = save_tiny_vit(tmp_path / "m", processor=processor)
    _fails(ModelConfig(path=folder, format="huggingface"), "shortest_edge resize without a center crop")


def test_without_transformers_the_extra_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    _fails(ModelConfig(path=tmp_path, format="huggingface"), r"pip install 'cvaudit\[hf\]'")


def test_a_folder_without_format_names_the_key(tmp_path):
    folder = save_tiny_vit(tmp_path / "m")
    with pytest.raises(AuditError, match="set model.format: huggingface"):
        load_model(ModelConfig(path=folder), CPU)


def _edit_json(path, **changes):
    raw = json.loads(path.read_text())
    raw.update(changes)
    path.write_text(json.dumps(raw))


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        # transformers raises a validation error here and an AttributeError there: any of them is one line
        (lambda f: _edit_json(f / "config.json", hidden_size="big"), r"config\.json: unreadable model config \(.+\)$"),
        (lambda f: _edit_json(f / "config.json", id2label="x"), r"config\.json: unreadable model config \(.+\)$"),
        (
            lambda f: (f / "preprocessor_config.json").write_text("{not json"),
            r"preprocessor_config\.json: unreadable image processor \(.+\)$",
        ),
        (
            lambda f: _edit_json(f / "preprocessor_config.json", image_processor_type="NoSuchProcessor"),
            r"preprocessor_config\.json: unreadable image processor \(.+\)$",
        ),
        (
            lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:300]),
            r"cannot load the model \(SafetensorError: .+\)$",
        ),
    ],
)
def test_what_transformers_cannot_read_becomes_one_line(tmp_path, damage, match):
    folder = save_tiny_vit(tmp_path / "m")
    damage(folder)
    _fails(ModelConfig(path=folder, format="huggingface"), match, load=True)
