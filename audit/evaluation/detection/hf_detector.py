"""Hugging Face object detectors from a local folder (``model: {format: huggingface, path: DIR}``).

The folder is what ``save_pretrained`` writes for an ``AutoModelForObjectDetection`` (DETR,
Conditional/Deformable DETR, YOLOS, RT-DETR, ...): ``config.json``, safetensors weights and the
image processor's ``preprocessor_config.json`` (required: its ``post_process_object_detection``
decodes the boxes). The folder rules are the classifier's (:mod:`audit.evaluation.hf_model`):
nothing is downloaded, no code from the folder runs, pickled weights are refused, and weights that
lack a parameter of the model are refused. Needs the ``cvaudit[hf]`` extra (transformers).

**What runs, per batch.** The images arrive as cvaudit prepares every detector's input: already
resized or letterboxed to ``model.input_size`` and stressed, floats in [0, 1]. The processor's
own resize and padding are **not** used (DETR-family models take any input size); its
normalisation is (:func:`hf_normalisation`: ``image_mean`` / ``image_std``, with its rescale
factor folded in). The model runs on the normalised batch, and the processor's
``post_process_object_detection(outputs, threshold=score_threshold, target_sizes=[(H, W)] * B)``
turns its output into boxes in **input pixels** (xyxy), scores and labels — the library's own
decoding, whatever the architecture (softmax with a no-object class for DETR, sigmoid and top-k for
RT-DETR, ...). The ``max_detections`` best of each image are kept (score descending, ties in the
processor's order). cvaudit applies no NMS of its own here.

**Labels.** The model's label ``k`` is cvaudit's class index ``k``: ``id2label`` must number its
classes ``0..K-1`` with no gap, and K must equal the number of classes of the annotations, so the
k-th entry of ``id2label`` names the k-th annotation class (for COCO ground truth: the k-th
category by ascending category id). A folder whose ``id2label`` has gaps or a different number of
classes is refused with one line; relabel the model (``config.id2label``) to the annotation classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from audit.contract.config import ModelConfig
from audit.contract.digest import sha256_file
from audit.contract.errors import AuditError
from audit.evaluation.hf_model import (
    _class_names,
    _first_line,
    _load_processor,
    _quiet,
    _read_config,
    _transformers,
    _weights,
)

__all__ = ["HFDetector", "hf_normalisation", "load_hf_detector"]

#: The processor file every detector folder needs (its post-processing decodes the boxes).
PROCESSOR_FILES = ("preprocessor_config.json", "image_processor_config.json")


def _check_object_detector(folder: Path, raw: dict[str, Any]) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES

    model_type = raw["model_type"]
    if model_type not in MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES:
        raise AuditError(
            f"{folder / 'config.json'}: model_type {model_type!r} is not an object detector "
            "(AutoModelForObjectDetection has no class for it)"
        )
    architectures = raw.get("architectures") or []
    if architectures and not any("ForObjectDetection" in str(a) for a in architectures):
        raise AuditError(
            f"{folder / 'config.json'}: architectures {architectures} has no object-detection head "
            "(its detection head would be random weights)"
        )


def _load_detector_config(transformers: Any, folder: Path) -> Any:
    raw = _read_config(folder)
    _check_object_detector(folder, raw)
    try:
        with _quiet(transformers):
            return transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as err:  # transformers raises what the problem gives (hf_model's _TRANSFORMERS_ERRORS)
        raise AuditError(f"{folder / 'config.json'}: unreadable model config ({_first_line(err)})") from None


def hf_normalisation(processor: Any, *, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) on [0, 1] pixels equivalent to a transformers processor's rescale + normalize.

    The processor computes ``(p * r - image_mean) / image_std`` on pixels ``p`` in [0, 255]
    (``r``: ``rescale_factor``, 1 without ``do_rescale``; mean 0 and std 1 without
    ``do_normalize``). On cvaudit's pixels ``x = p / 255`` that is ``(x - m) / s`` with
    ``m = image_mean / (255 r)`` and ``s = image_std / (255 r)``.

    Args:
        processor: A transformers image processor.
        channels: The model's input channels (a scalar mean/std is repeated).

    Returns:
        ``(mean, std)``, one value per channel.

    >>> from types import SimpleNamespace as P
    >>> hf_normalisation(P(do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
    ...                    image_mean=[0.5, 0.5, 0.5], image_std=0.25), channels=3)
    ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    """
    scale = 255.0 * float(processor.rescale_factor) if getattr(processor, "do_rescale", False) else 255.0
    if abs(scale - 1.0) < 1e-9:
        scale = 1.0
    if getattr(processor, "do_normalize", False):
        mean, std = _per_channel(processor.image_mean, channels), _per_channel(processor.image_std, channels)
    else:
        mean, std = (0.0,) * channels, (1.0,) * channels
    return tuple(m / scale for m in mean), tuple(s / scale for s in std)


def _per_channel(value: Any, channels: int) -> tuple[float, ...]:
    values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]
    return tuple(values * channels) if len(values) == 1 else tuple(values)


class HFDetector(nn.Module):
    """A transformers object detector and its processor's post-processing as one module.

    ``forward`` takes the normalised batch and returns one ``{"boxes", "scores", "labels"}``
    mapping per image (the processor's ``post_process_object_detection``, boxes in input pixels),
    each cut to the ``max_detections`` best scores — the list form that
    :func:`~audit.evaluation.detection.outputs.decode_boxes` validates.

    Shape:
        pixel_values (B, C, H, W) -> B mappings: boxes (N, 4), scores (N,), labels (N,).
    """

    def __init__(self, model: nn.Module, processor: Any, *, score_threshold: float, max_detections: int):
        super().__init__()
        self.model = model
        self.processor = processor
        self.score_threshold = score_threshold
        self.max_detections = max_detections

    def forward(self, pixel_values: Tensor) -> list[dict[str, Tensor]]:
        outputs = self.model(pixel_values=pixel_values, return_dict=True)
        b, _, h, w = pixel_values.shape
        sizes = torch.tensor([[h, w]] * b, device=pixel_values.device)
        results = self.processor.post_process_object_detection(
            outputs, threshold=self.score_threshold, target_sizes=sizes
        )
        return [self._best(r) for r in results]

    def _best(self, result: dict[str, Tensor]) -> dict[str, Tensor]:
        scores = result["scores"]
        if scores.shape[0] <= self.max_detections:
            return result
        keep = torch.sort(scores, descending=True, stable=True).indices[: self.max_detections]
        return {k: result[k][keep] for k in ("boxes", "scores", "labels")}


def load_hf_detector(
    cfg: ModelConfig, *, num_classes: int, score_threshold: float, max_detections: int
) -> tuple[HFDetector, tuple[float, ...], tuple[float, ...], list[str], Path, dict[str, str]]:
    """Load the folder's ``AutoModelForObjectDetection`` (float32, eval mode, on the CPU) and processor.

    Args:
        cfg: The ``model`` section (``path``: the folder; ``channels``; ``mean``/``std`` if the
            config sets them, which must then equal the processor's).
        num_classes: The number of annotation classes; ``id2label`` must have exactly as many.
        score_threshold: The ``threshold`` of ``post_process_object_detection``.
        max_detections: The most detections kept per image (the best scores).

    Returns:
        The module (see :class:`HFDetector`), the (mean, std) that normalise its [0, 1] input
        (:func:`hf_normalisation`), the class names (``id2label`` in order), the weights file that
        identifies the model (``model.safetensors`` or its index) and ``{file name: sha256}`` of
        every file that defines the model (config, processor config, weights).

    Raises:
        AuditError: One line: no folder or no config.json, not an object detector, no processor
            config, ``id2label`` not numbered 0..K-1 or K different from ``num_classes``, a config
            mean/std different from the processor's, no safetensors weights, weights lacking a
            parameter of the model.
    """
    transformers = _transformers()
    folder = Path(cfg.path)
    config = _load_detector_config(transformers, folder)
    names = _class_names(config, folder)
    if len(names) != num_classes:
        raise AuditError(
            f"{folder / 'config.json'}: id2label has {len(names)} classes but the annotations have {num_classes}; "
            "label k must be the k-th annotation class (relabel the model's id2label)"
        )
    if cfg.class_names is not None and list(cfg.class_names) != names:
        raise AuditError(f"model.class_names do not match id2label in {folder / 'config.json'} ({', '.join(names)})")
    processor = _load_processor(transformers, folder)
    if processor is None:
        raise AuditError(
            f"{folder}: no preprocessor_config.json (the image processor's post_process_object_detection "
            "decodes the boxes); save the processor with save_pretrained beside the model"
        )
    if not callable(getattr(processor, "post_process_object_detection", None)):
        raise AuditError(f"{folder}: {type(processor).__name__} has no post_process_object_detection")
    mean, std = hf_normalisation(processor, channels=cfg.channels)
    for key, ours in (("mean", mean), ("std", std)):
        if key in cfg.model_fields_set:
            given = _per_channel(getattr(cfg, key), cfg.channels)
            if any(abs(a - b) > 1e-6 for a, b in zip(given, ours)):
                raise AuditError(
                    f"model.{key} {list(given)} differs from the image processor's in {folder} "
                    f"({[round(v, 6) for v in ours]} on [0, 1] pixels); leave model.{key} out"
                )
    ident, weight_files = _weights(folder)
    try:
        with _quiet(transformers):
            model, info = transformers.AutoModelForObjectDetection.from_pretrained(
                str(folder),
                config=config,
                local_files_only=True,
                use_safetensors=True,
                trust_remote_code=False,
                dtype=torch.float32,
                output_loading_info=True,
            )
    except Exception as err:  # transformers raises what the problem gives (hf_model's _TRANSFORMERS_ERRORS)
        raise AuditError(f"{folder}: cannot load the model ({type(err).__name__}: {_first_line(err)})") from None
    missing = sorted(info.get("missing_keys") or []) + sorted(str(k) for k in info.get("mismatched_keys") or [])
    if missing:
        raise AuditError(
            f"{ident}: the weights lack {len(missing)} parameter(s) of {type(model).__name__} (first: {missing[0]}); "
            "they would be random"
        )
    model.eval()
    files = [folder / "config.json"] + [folder / n for n in PROCESSOR_FILES if (folder / n).is_file()]
    files += [ident] if ident not in weight_files else []
    digests = {p.relative_to(folder).as_posix(): sha256_file(p) for p in files + weight_files}
    net = HFDetector(model, processor, score_threshold=score_threshold, max_detections=max_detections)
    return net, mean, std, names, ident, dict(sorted(digests.items()))
