"""The loaded detector as a gradient attack sees it: differentiable candidates before NMS.

:func:`attack_target` wraps a :class:`~audit.evaluation.detection.model.DetectorModel` into the
:class:`~stressors.attacks.detection.DetectionTarget` protocol of the detection attacks:
``candidates(images in [0, 1]) -> (boxes (B, A, 4) xyxy input pixels, scores (B, A, C))``,
with gradients, the model's normalisation applied.

- ``output: yolo``: the raw head (B, 4 + C, A) or (B, A, 4 + C) (the layout rule of
  :func:`~audit.evaluation.detection.outputs.decode_yolo`): every anchor is a candidate, boxes
  from ``cx, cy, w, h``, all C class scores (``class_scores = True``: both objectives).
- ``output: boxes``: the network's own detections (post-NMS, any of the layouts of
  :func:`~audit.evaluation.detection.outputs.decode_boxes`), padded to the batch's largest count;
  a detection's score sits in the column of its label, the other columns are 0
  (``class_scores = False``: vanishing only).
- Hugging Face (``model.format: huggingface``): the model's own output before its processor's
  post-processing, every query a candidate: ``pred_boxes`` (normalised ``cx, cy, w, h``) scaled to
  input pixels, and the class scores as the processor computes them from ``logits`` — a softmax
  without the last ("no object") column for the DETR-style heads (:data:`HF_SOFTMAX`), a sigmoid for
  the focal-loss heads (:data:`HF_SIGMOID`; the processor's top-k is not applied, so the candidates
  are a superset of what it keeps). Both objectives. Any other ``model_type`` is refused with one line.
- ONNX models have ``has_gradients = False`` (onnxruntime gives no gradient): a gradient attack is
  refused with one line naming the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from audit.contract.errors import AuditError

__all__ = ["HF_SIGMOID", "HF_SOFTMAX", "DetectorTarget", "attack_target"]

#: Hugging Face ``model_type`` values whose processor scores a query by a softmax over its logits
#: minus the last ("no object") class.
HF_SOFTMAX = ("detr", "yolos", "table-transformer")
#: ``model_type`` values whose processor scores by a sigmoid of every logit (focal-loss heads).
HF_SIGMOID = ("conditional_detr", "deformable_detr", "rt_detr", "rt_detr_v2")


def _output_kind(model: object) -> str:
    decode = getattr(model, "decode", None)
    func = getattr(decode, "func", decode)
    return "yolo" if getattr(func, "__name__", "") == "_decode_yolo" else "boxes"


class DetectorTarget:
    """A :class:`~audit.evaluation.detection.model.DetectorModel` as a differentiable candidate source.

    Attributes:
        has_gradients: the network is a torch module with input gradients (not ONNX or Hugging Face).
        class_scores: every class's score per candidate is available (``output: yolo``).
        no_gradient_reason: why there are no gradients, for the refusal line (None when there are).
        output: ``yolo`` or ``boxes``.
    """

    def __init__(self, model: torch.nn.Module, *, output: str | None = None) -> None:
        self.model = model
        self.output = output or _output_kind(model)
        self.num_classes = int(getattr(model, "num_classes", 0))
        self.has_gradients = bool(getattr(model, "has_gradients", False))
        self.class_scores = self.output == "yolo"
        self.hf_scores: str | None = None
        if type(getattr(model, "net", None)).__name__ == "HFDetector":
            model_type = str(getattr(model.net.model.config, "model_type", ""))
            self.hf_scores = "softmax" if model_type in HF_SOFTMAX else "sigmoid" if model_type in HF_SIGMOID else None
            self.has_gradients = self.hf_scores is not None
            self.class_scores = self.has_gradients
            self.output = "huggingface"
        if self.has_gradients:
            self.no_gradient_reason = None
        elif self.output == "huggingface":
            self.no_gradient_reason = (
                f"a Hugging Face {model_type!r} detector, whose class scores cvaudit does not know how its processor "
                f"computes; supported: {', '.join(HF_SOFTMAX + HF_SIGMOID)}"
            )
        elif type(getattr(model, "net", None)).__name__ == "_OnnxOutputs":
            self.no_gradient_reason = "an ONNX model runs in onnxruntime, which gives no gradient"
        else:
            self.no_gradient_reason = "has_gradients=False"

    def candidates(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C, H, W) in [0, 1] -> boxes (B, A, 4) xyxy input pixels, scores (B, A, K); differentiable."""
        model = self.model
        x = (images - model.mean) / model.std
        if self.hf_scores is not None:
            return _hf_candidates(model.net.model, x, self.hf_scores)
        raw = model.net(x)
        if self.output == "yolo":
            return _yolo_candidates(raw, self.num_classes)
        return _box_candidates(raw, images.shape[0], self.num_classes, images)


def attack_target(model: torch.nn.Module, *, output: str | None = None) -> DetectorTarget:
    """Wrap a loaded detector for the detection attacks (see the module docstring); ``output`` defaults
    to the decoder the model was loaded with."""
    return DetectorTarget(model, output=output)


def _yolo_candidates(raw: object, num_classes: int) -> tuple[Tensor, Tensor]:
    if isinstance(raw, (tuple, list)) and raw and isinstance(raw[0], Tensor):
        raw = raw[0]
    rows = 4 + num_classes
    if not isinstance(raw, Tensor) or raw.dim() != 3 or rows not in raw.shape[1:]:
        got = tuple(raw.shape) if isinstance(raw, Tensor) else type(raw).__name__
        raise AuditError(f"detector output (yolo): expected (B, {rows}, A) or (B, A, {rows}) for the attack, got {got}")
    per_anchor = raw.transpose(1, 2) if raw.shape[1] == rows else raw
    cx, cy, w, h = per_anchor[..., 0], per_anchor[..., 1], per_anchor[..., 2], per_anchor[..., 3]
    boxes = torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)
    return boxes, per_anchor[..., 4:]


def _hf_candidates(net: torch.nn.Module, x: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    out = net(pixel_values=x, return_dict=True)
    logits, boxes = out.logits, out.pred_boxes  # (B, Q, K [+ 1]), (B, Q, 4) normalised cx, cy, w, h
    scores = torch.softmax(logits, dim=-1)[..., :-1] if kind == "softmax" else torch.sigmoid(logits)
    h, w = x.shape[2:]
    cx, cy, bw, bh = boxes.unbind(-1)
    xyxy = torch.stack((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), dim=-1)
    return xyxy * torch.tensor([w, h, w, h], dtype=xyxy.dtype, device=xyxy.device), scores


def _box_candidates(raw: object, batch: int, num_classes: int, like: Tensor) -> tuple[Tensor, Tensor]:
    per_image: list[tuple[Tensor, Tensor, Tensor]] = []
    if isinstance(raw, Sequence) and not isinstance(raw, (str, bytes, tuple)):
        for item in raw:
            if not isinstance(item, Mapping):
                raise AuditError("detector output (boxes): expected one mapping per image for the attack")
            per_image.append((item["boxes"], item["scores"], item["labels"]))
    elif isinstance(raw, tuple) and len(raw) in (3, 4):
        counts = None
        if len(raw) == 4:
            counts, boxes, scores, labels = raw
            counts = counts.reshape(-1)
        else:
            boxes, scores, labels = raw
        for b in range(batch):
            k = int(counts[b]) if counts is not None else boxes.shape[1]
            per_image.append((boxes[b, :k], scores[b, :k], labels[b, :k]))
    else:
        raise AuditError("detector output (boxes): expected a list of mappings or a tuple of 3 or 4 tensors")
    if len(per_image) != batch:
        raise AuditError(f"detector output (boxes): {len(per_image)} results for {batch} images")
    most = max((int(s.shape[0]) for _, s, _ in per_image), default=0)
    out_boxes = like.new_zeros((batch, most, 4))
    rows = []
    for b, (boxes, scores, labels) in enumerate(per_image):
        k = int(scores.shape[0])
        out_boxes[b, :k] = boxes.detach().to(like.dtype)
        dense = torch.zeros(most, num_classes, dtype=scores.dtype, device=scores.device)
        if k:
            onehot = torch.nn.functional.one_hot(labels.long(), num_classes).to(scores.dtype)
            dense = torch.cat((onehot * scores[:, None], dense[k:]), dim=0)
        rows.append(dense)
    return out_boxes, torch.stack(rows) if rows else like.new_zeros((0, most, num_classes))
