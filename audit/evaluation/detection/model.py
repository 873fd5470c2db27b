"""Loading the detector under audit and wrapping it with its normalisation and its decoder.

Supported artifacts (the classifier's loaders, :mod:`audit.evaluation.model`, read the files):

- TorchScript files (``torch.jit.save``), any suffix;
- ``torch.export`` programs (``.pt2``, ``torch.export.save``);
- ONNX files (``.onnx``) through onnxruntime (the ``cvaudit[onnx]`` extra); every graph
  output is passed on, in the graph's order, with its own dtype;
- a factory ``package.module:function`` returning an ``nn.Module``, with an optional
  ``state_dict`` file (``model.weights``);
- a Hugging Face ``AutoModelForObjectDetection`` folder (``model.format: huggingface``, the
  ``cvaudit[hf]`` extra): see :mod:`audit.evaluation.detection.hf_detector`.

:class:`DetectorModel` takes a batch of images in [0, 1] that cvaudit has already resized or
letterboxed to ``model.input_size`` (:mod:`audit.evaluation.detection.letterbox`) and stressed,
subtracts ``model.mean`` and divides by ``model.std`` (for Hugging Face: the image processor's),
runs the network under ``torch.no_grad()`` and decodes its raw output with the decoder that
``model.output`` names (:data:`~audit.evaluation.detection.outputs.OUTPUT_KINDS`):

- ``boxes``: the network already returns detections
  (:func:`~audit.evaluation.detection.outputs.decode_boxes`; no threshold, NMS or cap is applied);
- ``yolo``: an Ultralytics-layout head (:func:`~audit.evaluation.detection.outputs.decode_yolo`),
  thresholded at ``score_threshold``, NMS-ed at ``iou_threshold`` and cut to ``max_detections``.

The result is one :class:`~audit.evaluation.detection.outputs.Detections` per image under the
output contract of :mod:`audit.evaluation.detection.outputs` (boxes xyxy in **input** pixels,
scores in [0, 1], labels in ``[0, num_classes)``); the caller maps the boxes back to the original
image with :func:`~audit.evaluation.detection.letterbox.boxes_to_original`. Label ``k`` is the
k-th class of the annotations (for COCO, ordered by category id). An output that breaks the
contract is one :class:`~audit.contract.errors.AuditError` line naming the image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from audit.contract.config import ModelConfig
from audit.contract.digest import sha256_file
from audit.contract.errors import AuditError
from audit.evaluation.detection.outputs import OUTPUT_KINDS, Detections, decode_boxes, decode_yolo
from audit.evaluation.model import OnnxModule, _load_factory, _load_file, code_record

__all__ = ["DetectorModel", "load_detector"]

#: A decoder: (raw network output, image ids) -> one Detections per image.
Decoder = Callable[[object, Sequence[str]], list[Detections]]


class _OnnxOutputs(nn.Module):
    """An ONNX detector: every graph output as a tensor on the input's device, dtype kept.

    One output is returned as a tensor, several as a tuple in the graph's order (the
    ``(boxes, scores, labels)`` or ``(num_detections, boxes, scores, labels)`` layouts of
    ``output: boxes``).
    """

    has_gradients = False

    def __init__(self, session: OnnxModule):
        super().__init__()
        self.session = session

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        outs = tuple(torch.from_numpy(np.ascontiguousarray(a)).to(x.device) for a in self.session.run_arrays(x))
        return outs[0] if len(outs) == 1 else outs


class DetectorModel(nn.Module):
    """The detector under audit with its normalisation and decoder: [0, 1] images -> detections.

    Attributes:
        has_gradients: True where the network is a differentiable torch module (TorchScript,
            ``torch.export``, factory); False for ONNX and Hugging Face (whose boxes come from the
            library's post-processing).
        input_size: ``(H, W)``, the size every batch must have.
        num_classes: K; labels are in ``[0, K)``.
        class_names: The model's own class names where its files define them (Hugging Face
            ``id2label``), else None.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        input_size: tuple[int, int],
        num_classes: int,
        decode: Decoder,
        has_gradients: bool,
        class_names: list[str] | None = None,
    ):
        super().__init__()
        self.net = net
        self.decode = decode
        self.has_gradients = has_gradients
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.num_classes = num_classes
        self.class_names = class_names
        c = len(mean)
        self.register_buffer("mean", torch.tensor(tuple(mean), dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(tuple(std), dtype=torch.float32).view(1, c, 1, 1))

    def forward(self, images: Tensor, *, image_ids: Sequence[str]) -> list[Detections]:
        """Detect in a prepared batch.

        Args:
            images: Float images in [0, 1], already at :attr:`input_size` and stressed.
            image_ids: The B images' names or ids, in batch order (quoted in error messages).

        Returns:
            B :class:`~audit.evaluation.detection.outputs.Detections`, boxes xyxy in input pixels.

        Raises:
            AuditError: One line naming the image (or the batch's first image) when the network's
                output breaks the output contract.
            ValueError: ``images`` not a (B, C, H, W) float batch at :attr:`input_size` with
                ``len(image_ids) == B`` and C channels for the mean/std (the caller's mistake, not
                the user's).

        Shape:
            images: (B, C, H, W) with (H, W) = input_size -> B detections.
        """
        if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
            raise ValueError(f"expected a float batch (B, C, H, W), got {_shape(images)}")
        if images.shape[0] != len(image_ids):
            raise ValueError(f"{images.shape[0]} images but {len(image_ids)} image ids")
        if tuple(images.shape[2:]) != self.input_size:
            raise ValueError(f"images are {tuple(images.shape[2:])} but the model's input_size is {self.input_size}")
        if self.mean.shape[1] not in (1, images.shape[1]):
            raise ValueError(f"images have {images.shape[1]} channels but mean/std have {self.mean.shape[1]} values")
        with torch.no_grad():
            raw = self.net((images - self.mean) / self.std)
            return self.decode(raw, list(image_ids))


def _shape(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def load_detector(
    model_cfg: ModelConfig,
    *,
    output: str,
    num_classes: int,
    device: torch.device,
    base_dir: Path | None,
    score_threshold: float = 0.001,
    iou_threshold: float = 0.7,
    max_detections: int = 100,
    multi_label: bool = False,
) -> tuple[DetectorModel, dict]:
    """Load the configured detector onto ``device``, in eval mode, with its decoder.

    Args:
        model_cfg: The ``model`` section (``path`` or ``factory`` + ``weights``, ``format``,
            ``input_size``, ``mean``, ``std``).
        output: ``boxes`` or ``yolo`` (see the module docstring); a Hugging Face folder takes
            ``boxes`` only (its processor decodes).
        num_classes: K, the number of annotation classes; labels must be in ``[0, K)``.
        device: Where the network runs (ONNX runs on the CPU; its outputs come to ``device``).
        base_dir: The config's folder, searched first for a factory module.
        score_threshold: ``yolo``: candidates need a score above this before NMS; Hugging
            Face: the ``threshold`` of ``post_process_object_detection``; ``boxes``: unused.
        iou_threshold: ``yolo``: the NMS IoU (a box is suppressed above it); otherwise unused.
        max_detections: ``yolo`` and Hugging Face: the most detections kept per image (the best
            scores); ``boxes``: unused.
        multi_label: ``yolo``: one candidate per (anchor, class) above the threshold, not per anchor.

    Returns:
        The wrapped model and its identity ``{path, sha256, format, factory, code_executed}`` for
        results.json, as :func:`audit.evaluation.model.load_model` gives it (plus ``files``, name ->
        sha256, for a Hugging Face folder); ``format`` is ``torchscript``, ``torch.export``, ``onnx``,
        ``factory`` or ``huggingface``; ``code_executed`` names the factory's module or the TorchScript /
        ``torch.export`` program the run executes (None for ONNX and Hugging Face).

    Raises:
        AuditError: One line: an unknown ``output``, a missing or unreadable file, a pickled model
            (never unpickled), a bad factory
            or weights, a Hugging Face folder that cannot be used (see
            :func:`~audit.evaluation.detection.hf_detector.load_hf_detector`).
    """
    if output not in OUTPUT_KINDS:
        raise AuditError(f"model.output: {output!r} is not one of {', '.join(OUTPUT_KINDS)}")
    mean, std = tuple(model_cfg.mean), tuple(model_cfg.std)
    class_names = None
    files, code = None, None
    if model_cfg.format == "huggingface":
        if output != "boxes":
            raise AuditError(
                f"model.output: {output!r} does not apply to a Hugging Face folder "
                "(its image processor decodes the boxes); leave model.output at 'boxes'"
            )
        from audit.evaluation.detection.hf_detector import load_hf_detector

        net, mean, std, class_names, ident_path, files = load_hf_detector(
            model_cfg, num_classes=num_classes, score_threshold=score_threshold, max_detections=max_detections
        )
        fmt, has_gradients = "huggingface", False
    elif model_cfg.factory is not None:
        (net, code), fmt, has_gradients = _load_factory(model_cfg, base_dir), "factory", True
        ident_path = model_cfg.weights
    else:
        net, fmt = _load_file(model_cfg.path)
        if isinstance(net, OnnxModule):
            net = _OnnxOutputs(net)
        has_gradients = fmt != "onnx"
        ident_path = model_cfg.path
    if output == "yolo":
        decode: Decoder = partial(
            _decode_yolo,
            num_classes=num_classes,
            score_threshold=score_threshold,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
            multi_label=multi_label,
        )
    else:
        decode = partial(_decode_boxes, num_classes=num_classes)
    model = DetectorModel(
        net,
        mean=mean,
        std=std,
        input_size=model_cfg.input_size,
        num_classes=num_classes,
        decode=decode,
        has_gradients=has_gradients,
        class_names=class_names,
    )
    if fmt != "onnx":
        model = model.to(device)
    else:
        model.mean, model.std = model.mean.to(device), model.std.to(device)
    if fmt != "torch.export":  # a torch.export module cannot switch modes; it is exported in eval mode
        model.eval()
    digest = sha256_file(ident_path) if ident_path is not None else None
    info: dict = {
        "path": str(ident_path) if ident_path is not None else model_cfg.factory,
        "sha256": digest,
        "format": fmt,
        "factory": model_cfg.factory,
        "code_executed": code if code is not None else code_record(fmt, model_cfg.path, digest),
    }
    if files is not None:
        info["files"] = files
    return model, info


def _decode_boxes(raw: object, image_ids: Sequence[str], *, num_classes: int) -> list[Detections]:
    return decode_boxes(raw, image_ids=image_ids, num_classes=num_classes)


def _decode_yolo(
    raw: object,
    image_ids: Sequence[str],
    *,
    num_classes: int,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
    multi_label: bool,
) -> list[Detections]:
    return decode_yolo(
        raw,
        image_ids=image_ids,
        num_classes=num_classes,
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        max_detections=max_detections,
        multi_label=multi_label,
    )
