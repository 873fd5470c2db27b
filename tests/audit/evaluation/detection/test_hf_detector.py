"""Hugging Face object detectors: boxes, scores and labels equal to the library's own post-processing
and pipeline on the same images; the folder checks; normalisation from the image processor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from audit.contract.config import ModelConfig
from audit.contract.digest import sha256_file
from audit.contract.errors import AuditError
from audit.evaluation.detection.hf_detector import hf_normalisation
from audit.evaluation.detection.model import load_detector

transformers = pytest.importorskip("transformers")

CPU = torch.device("cpu")
SIZE = (32, 48)  # (H, W): the input size, and the processor's resize target (so it resizes nothing)
CLASSES = ["cat", "dog", "car"]
PROCESSOR_MEAN, PROCESSOR_STD = [0.3, 0.5, 0.7], [0.2, 0.25, 0.3]


def _labels() -> dict:
    return {
        "num_labels": len(CLASSES),
        "id2label": dict(enumerate(CLASSES)),
        "label2id": {c: i for i, c in enumerate(CLASSES)},
    }


def _spread(model: torch.nn.Module, seed: int, scale: float) -> None:
    """Perturb a random-initialised model so that queries differ (small init gives near-equal outputs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(
                torch.randn(p.shape, generator=g)
                * (0.3 if "class_labels" in name or "bbox" in name or "query" in name else scale)
            )


def save_tiny_detr(folder, *, seed: int = 0, **labels):
    """A 1-layer DETR (tiny ResNet backbone, 12 queries, 3 classes) and its PIL processor."""
    from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig
    from transformers.models.detr.image_processing_pil_detr import DetrImageProcessorPil

    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1], out_features=["stage4"])
    config = DetrConfig(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone_config=backbone,
        d_model=16,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=12,
        **(labels or _labels()),
    )
    torch.manual_seed(seed)
    model = DetrForObjectDetection(config).eval()
    _spread(model, seed, 0.3)
    model.save_pretrained(folder)
    processor = DetrImageProcessorPil(
        size={"height": SIZE[0], "width": SIZE[1]}, image_mean=PROCESSOR_MEAN, image_std=PROCESSOR_STD
    )
    processor.save_pretrained(folder)
    return folder


def save_tiny_yolos(folder, *, seed: int = 0, **labels):
    """A 2-layer YOLOS (8 detection tokens, 3 classes) and its PIL processor."""
    from transformers import YolosConfig, YolosForObjectDetection
    from transformers.models.yolos.image_processing_pil_yolos import YolosImageProcessorPil

    config = YolosConfig(
        image_size=list(SIZE),
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_detection_tokens=8,
        **(labels or _labels()),
    )
    torch.manual_seed(seed)
    model = YolosForObjectDetection(config).eval()
    _spread(model, seed, 0.05)
    model.save_pretrained(folder)
    processor = YolosImageProcessorPil(
        size={"height": SIZE[0], "width": SIZE[1]}, image_mean=PROCESSOR_MEAN, image_std=PROCESSOR_STD
    )
    processor.save_pretrained(folder)
    return folder


SAVERS = {"detr": save_tiny_detr, "yolos": save_tiny_yolos}


def images_8bit(n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)) for _ in range(n)]


def as_batch(images: list[Image.Image]) -> torch.Tensor:
    """cvaudit's input: the same 8-bit images as floats in [0, 1]."""
    return torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255 for im in images])


def reference(folder, images: list[Image.Image], threshold: float) -> list[dict]:
    """The documented way: processor -> model -> processor.post_process_object_detection."""
    processor = transformers.AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
    model = transformers.AutoModelForObjectDetection.from_pretrained(str(folder), local_files_only=True).eval()
    inputs = processor(images=images, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    return processor.post_process_object_detection(outputs, threshold=threshold, target_sizes=[SIZE] * len(images))


def load(folder, *, num_classes: int = 3, **kwargs):
    keys = {k: kwargs.pop(k) for k in ("mean", "std", "class_names") if k in kwargs}
    cfg = ModelConfig(path=folder, format="huggingface", input_size=SIZE, **keys)
    return load_detector(
        cfg, output=kwargs.pop("output", "boxes"), num_classes=num_classes, device=CPU, base_dir=None, **kwargs
    )


#: Thresholds that keep some detections and drop others on these random models' scores.
THRESHOLDS = {"detr": 0.072, "yolos": 0.4}


@pytest.fixture(scope="module", params=list(SAVERS))
def saved(request, tmp_path_factory) -> tuple[str, object]:
    arch = request.param
    return arch, SAVERS[arch](tmp_path_factory.mktemp(arch))


@pytest.mark.parametrize("threshold", ["all", "some"])
def test_detections_equal_the_library_own_post_processing(saved, threshold):
    """Tolerance: 1e-4 pixels for boxes, 1e-5 for scores; labels exactly (the processor's 8-bit input
    and cvaudit's float input differ by float32 rounding only)."""
    arch, folder = saved
    value = 0.0 if threshold == "all" else THRESHOLDS[arch]
    images = images_8bit()
    model, _ = load(folder, score_threshold=value)
    ours = model(as_batch(images), image_ids=["a.png", "b.png", "c.png"])
    theirs = reference(folder, images, value)
    counts = [len(d) for d in ours]
    assert counts == [len(r["scores"]) for r in theirs]
    if threshold == "all":
        assert counts == [12 if arch == "detr" else 8] * 3
    else:
        assert 0 < sum(counts) < 3 * (12 if arch == "detr" else 8)  # the threshold keeps some, drops some
    for det, ref in zip(ours, theirs):
        torch.testing.assert_close(det.boxes, ref["boxes"], atol=1e-4, rtol=0)
        torch.testing.assert_close(det.scores, ref["scores"], atol=1e-5, rtol=0)
        assert det.labels.tolist() == ref["labels"].tolist() and det.labels.dtype == torch.int64


def test_detections_equal_the_object_detection_pipeline(saved):
    """transformers' pipeline on the same 8-bit images: same labels (by name), scores to 1e-5, and
    boxes within 1 pixel (the pipeline truncates its boxes to whole pixels)."""
    arch, folder = saved
    images = images_8bit()
    model, _ = load(folder, score_threshold=THRESHOLDS[arch])
    ours = model(as_batch(images), image_ids=["a.png", "b.png", "c.png"])
    pipe = transformers.pipeline("object-detection", model=str(folder), threshold=THRESHOLDS[arch])
    for det, image in zip(ours, images):
        found = pipe(image)
        assert [model.class_names[k] for k in det.labels.tolist()] == [f["label"] for f in found]
        np.testing.assert_allclose(det.scores.numpy(), [f["score"] for f in found], atol=1e-5, rtol=0)
        boxes = [[f["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for f in found]
        np.testing.assert_array_equal(np.trunc(det.boxes.numpy()).reshape(-1, 4), np.array(boxes).reshape(-1, 4))


def test_max_detections_keeps_the_best_scores(saved):
    _, folder = saved
    images = images_8bit(2)
    model, _ = load(folder, score_threshold=0.0, max_detections=3)
    for det, ref in zip(model(as_batch(images), image_ids=["a", "b"]), reference(folder, images, 0.0)):
        best = torch.sort(ref["scores"], descending=True, stable=True).indices[:3]
        torch.testing.assert_close(det.scores, ref["scores"][best], atol=1e-5, rtol=0)
        torch.testing.assert_close(det.boxes, ref["boxes"][best], atol=1e-4, rtol=0)
        assert det.labels.tolist() == ref["labels"][best].tolist()


def test_normalisation_is_the_processor_s_and_the_identity_names_every_file(saved):
    _, folder = saved
    model, info = load(folder)
    torch.testing.assert_close(model.mean.flatten(), torch.tensor(PROCESSOR_MEAN))
    torch.testing.assert_close(model.std.flatten(), torch.tensor(PROCESSOR_STD))
    assert model.class_names == CLASSES and model.has_gradients is False
    assert info["format"] == "huggingface" and info["factory"] is None
    assert info["path"] == str(folder / "model.safetensors")
    assert info["sha256"] == sha256_file(folder / "model.safetensors")
    assert set(info["files"]) == {"config.json", "preprocessor_config.json", "model.safetensors"}
    # A config that states the processor's own values is accepted; another value is refused.
    load(folder, mean=PROCESSOR_MEAN, std=PROCESSOR_STD)
    with pytest.raises(AuditError, match=r"^model\.mean \[0\.485, 0\.456, 0\.406\] differs from the image processor's"):
        load(folder, mean=(0.485, 0.456, 0.406), std=PROCESSOR_STD)


def test_the_processor_rescale_factor_is_folded_into_mean_and_std():
    """The processor's (p * r - m) / s on p in [0, 255] equals (x - mean) / std on x = p / 255."""
    from transformers.models.detr.image_processing_pil_detr import DetrImageProcessorPil

    processor = DetrImageProcessorPil(rescale_factor=1 / 127.5, image_mean=[1.0, 1.0, 1.0], image_std=[1.0, 1.0, 1.0])
    mean, std = hf_normalisation(processor, channels=3)
    p = torch.tensor([0.0, 51.0, 255.0])
    torch.testing.assert_close((p / 255 - mean[0]) / std[0], (p / 127.5 - 1.0) / 1.0)
    processor = DetrImageProcessorPil(do_normalize=False, do_rescale=False)
    assert hf_normalisation(processor, channels=3) == ((0.0,) * 3, (1 / 255,) * 3)


def test_labels_must_number_the_annotation_classes(tmp_path):
    folder = save_tiny_yolos(tmp_path / "m")
    with pytest.raises(AuditError, match=r"id2label has 3 classes but the annotations have 4; label k must be"):
        load(folder, num_classes=4)
    with pytest.raises(AuditError, match=r"^model\.class_names do not match id2label"):
        load(folder, class_names=["dog", "cat", "car"])
    gaps = {"num_labels": 3, "id2label": {0: "cat", 1: "dog", 5: "car"}, "label2id": {"cat": 0, "dog": 1, "car": 5}}
    with pytest.raises(AuditError, match=r"id2label must number the classes 0\.\.K-1 \(got \[0, 1, 5\]\)"):
        load(save_tiny_yolos(tmp_path / "gaps", **gaps))


def test_folders_that_cannot_be_used_are_one_line(tmp_path):
    from hf_fixtures import save_tiny_vit

    folder = save_tiny_yolos(tmp_path / "m")
    cases = [
        (lambda: load(tmp_path / "none"), r"none: model folder not found$"),
        (lambda: load(folder, output="yolo"), r"^model\.output: 'yolo' does not apply to a Hugging Face folder"),
        (lambda: load(save_tiny_vit(tmp_path / "vit")), r"model_type 'vit' is not an object detector"),
    ]
    no_processor = save_tiny_yolos(tmp_path / "bare")
    (no_processor / "preprocessor_config.json").unlink()
    cases.append((lambda: load(no_processor), r"bare: no preprocessor_config\.json \(the image processor's"))
    no_weights = save_tiny_yolos(tmp_path / "noweights")
    (no_weights / "model.safetensors").unlink()
    cases.append((lambda: load(no_weights), r"noweights: no model\.safetensors"))
    for call, message in cases:
        with pytest.raises(AuditError, match=message) as err:
            call()
        assert "\n" not in str(err.value)


def test_boxes_in_original_pixels_equal_the_pipeline_on_the_original_images(tmp_path):
    """Images of 64 x 96 through cvaudit's resize (to 32 x 48), the detector and ``boxes_to_original``
    against the pipeline on the same 64 x 96 images with a nearest-neighbour processor.

    Every 2 x 2 block of these images is one colour, so cvaudit's bilinear half-size resize and
    Pillow's nearest one give the same pixels: the comparison isolates the box geometry. Boxes are
    compared unclipped (the pipeline does not clip), within 1 pixel (it truncates to whole pixels).
    """
    from transformers.models.yolos.image_processing_pil_yolos import YolosImageProcessorPil

    from audit.evaluation.detection.letterbox import apply_resize, boxes_to_original, plan_resize

    folder = save_tiny_yolos(tmp_path / "m")
    YolosImageProcessorPil(
        size={"height": SIZE[0], "width": SIZE[1]}, resample=0, image_mean=PROCESSOR_MEAN, image_std=PROCESSOR_STD
    ).save_pretrained(folder)
    originals = [Image.fromarray(np.asarray(im).repeat(2, axis=0).repeat(2, axis=1)) for im in images_8bit()]
    tensors = [torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255 for im in originals]
    params = plan_resize([(64, 96)] * 3, input_size=SIZE, mode="resize")
    model, _ = load(folder, score_threshold=THRESHOLDS["yolos"])
    dets = model(apply_resize(tensors, params), image_ids=["a", "b", "c"])
    pipe = transformers.pipeline("object-detection", model=str(folder), threshold=THRESHOLDS["yolos"])
    compared = 0
    for i, (det, image) in enumerate(zip(dets, originals)):
        found = pipe(image)
        boxes = boxes_to_original(det.boxes, params[i], clip=False)
        assert [model.class_names[k] for k in det.labels.tolist()] == [f["label"] for f in found]
        np.testing.assert_allclose(det.scores.numpy(), [f["score"] for f in found], atol=1e-5, rtol=0)
        theirs = np.array([[f["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for f in found]).reshape(-1, 4)
        np.testing.assert_array_equal(np.trunc(boxes.numpy()).reshape(-1, 4), theirs)
        compared += len(found)
    assert compared > 0
