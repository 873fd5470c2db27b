"""The detector output contract, its validator, and decoders of the heads users export.

**The contract, per image** (:class:`Detections`):

- ``boxes``: float tensor (N, 4), ``x1, y1, x2, y2`` in the pixels of the **model's input**
  (after cvaudit's resize or letterbox, :mod:`audit.evaluation.detection.letterbox`, which
  maps them back to the original image), with ``x1 <= x2`` and ``y1 <= y2``, finite;
- ``scores``: float tensor (N,), each in [0, 1];
- ``labels``: int64 tensor (N,), class indices in ``[0, num_classes)``.

N may be 0. :func:`validate_detections` turns anything else into an :class:`AuditError`
naming the image and the problem.

**Decoders** (the config's ``model.output``):

- ``boxes`` (:func:`decode_boxes`): the model already returns detections, as either
  a list with one ``{"boxes", "scores", "labels"}`` mapping per image (torchvision's
  convention), or a tuple ``(boxes (B, N, 4), scores (B, N), labels (B, N))`` in which every
  row is a detection, or a tuple ``(num_detections (B,) or (B, 1), boxes, scores, labels)``
  (TensorRT's ``EfficientNMS`` layout) in which only the first ``num_detections[b]`` rows of
  image ``b`` are. Labels may be any integer or integral float dtype.
- ``yolo`` (:func:`decode_yolo`): Ultralytics' ONNX / TorchScript export of a YOLOv8-style
  head, one tensor (B, 4 + C, A): rows ``cx, cy, w, h`` (input pixels) then the C class
  scores of each of A anchors, already in [0, 1]. (B, A, 4 + C) is accepted too when the
  layout is unambiguous; if both middle and last dimension equal 4 + C, the Ultralytics
  layout (B, 4 + C, A) is assumed. Each anchor becomes its best class (ties: the lowest class
  index), or with ``multi_label=True`` one candidate per class whose score passes; then
  scores ``> score_threshold`` (Ultralytics' rule) are kept, the ``max_candidates`` best per
  image go to cvaudit's batched class-aware NMS (:func:`~audit.evaluation.detection.nms.batched_nms`),
  and the ``max_detections`` best survivors per image are returned, by score descending;
  equal scores keep anchor order (anchor-major, then class, for ``multi_label``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from audit.contract.errors import AuditError, echo
from audit.evaluation.detection.nms import batched_nms, top_k_per_group

__all__ = ["OUTPUT_KINDS", "Detections", "decode_boxes", "decode_yolo", "validate_detections"]

#: The values of ``model.output`` for detectors.
OUTPUT_KINDS = ("boxes", "yolo")


@dataclass(frozen=True)
class Detections:
    """One image's detections under the output contract (see the module docstring).

    Shape:
        boxes: (N, 4) float xyxy input pixels; scores: (N,) float in [0, 1]; labels: (N,) int64.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def validate_detections(boxes: object, scores: object, labels: object, *, image: str, num_classes: int) -> Detections:
    """Check one image's raw detections against the contract and return them as :class:`Detections`.

    Integral labels of any integer dtype, or of a float dtype with whole values, become int64;
    nothing else is converted.

    Args:
        boxes: Expected a float tensor (N, 4), xyxy, finite, ``x2 >= x1`` and ``y2 >= y1``.
        scores: Expected a float tensor (N,), finite, in [0, 1].
        labels: Expected an integer tensor (N,) with values in ``[0, num_classes)``.
        image: The image's name or id, quoted in every message.
        num_classes: The number of classes the model predicts.

    Returns:
        The validated detections (the same tensors, labels as int64).

    Raises:
        AuditError: One line: "detector output for image <image>: <problem>".
    """

    def fail(problem: str) -> AuditError:
        return AuditError(f"detector output for image {echo(image)}: {problem}")

    for name, value in (("boxes", boxes), ("scores", scores), ("labels", labels)):
        if not isinstance(value, torch.Tensor):
            raise fail(f"{name} must be a tensor, got {type(value).__name__}")
    assert isinstance(boxes, torch.Tensor) and isinstance(scores, torch.Tensor) and isinstance(labels, torch.Tensor)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise fail(f"boxes must have shape (N, 4), got {tuple(boxes.shape)}")
    n = boxes.shape[0]
    if scores.shape != (n,):
        raise fail(f"scores must have shape ({n},) to match {n} boxes, got {tuple(scores.shape)}")
    if labels.shape != (n,):
        raise fail(f"labels must have shape ({n},) to match {n} boxes, got {tuple(labels.shape)}")
    if not boxes.is_floating_point():
        raise fail(f"boxes must be a float tensor, got {boxes.dtype}")
    if not scores.is_floating_point():
        raise fail(f"scores must be a float tensor, got {scores.dtype}")
    if labels.is_floating_point():
        if not bool(torch.isfinite(labels).all()) or bool((labels != labels.round()).any()):
            raise fail("labels must be whole class indices, got a non-integral float")
        labels = labels.to(torch.int64)
    elif labels.dtype == torch.bool or labels.is_complex():
        raise fail(f"labels must be an integer tensor, got {labels.dtype}")
    else:
        labels = labels.to(torch.int64)
    if n == 0:
        return Detections(boxes, scores, labels)
    bad = ~torch.isfinite(boxes).all(dim=1)
    if bool(bad.any()):
        raise fail(f"box {_first(bad)} has a NaN or infinite coordinate")
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bool(bad.any()):
        i = _first(bad)
        raise fail(f"box {i} has a negative width or height (x1, y1, x2, y2 = {_coords(boxes[i])})")
    bad = ~torch.isfinite(scores) | (scores < 0) | (scores > 1)
    if bool(bad.any()):
        i = _first(bad)
        raise fail(f"score {i} is {float(scores[i])!r}, not in [0, 1]")
    bad = (labels < 0) | (labels >= num_classes)
    if bool(bad.any()):
        i = _first(bad)
        raise fail(f"label {i} is {int(labels[i])}, not a class index in [0, {num_classes})")
    return Detections(boxes, scores, labels)


def decode_boxes(output: object, *, image_ids: Sequence[str], num_classes: int) -> list[Detections]:
    """Already-decoded detector output -> one validated :class:`Detections` per image.

    Args:
        output: A list of per-image mappings with keys ``boxes``, ``scores``, ``labels``;
            or a tuple ``(boxes, scores, labels)`` shaped (B, N, 4), (B, N), (B, N); or a tuple
            ``(num_detections, boxes, scores, labels)`` (only the first ``num_detections[b]``
            rows of image ``b`` count).
        image_ids: The B images of the batch, in order (quoted in messages).
        num_classes: The number of classes the model predicts.

    Returns:
        B detections, in the batch's order.

    Raises:
        AuditError: One line naming the image (or the batch) and the problem.
    """
    batch = len(image_ids)
    first = echo(image_ids[0]) if batch else "(empty batch)"
    if isinstance(output, Sequence) and not isinstance(output, (str, bytes, tuple)):
        if len(output) != batch:
            raise AuditError(
                f"detector output (boxes) for the batch starting at image {first}: "
                f"a list of {len(output)} per-image results for {batch} images"
            )
        decoded = []
        for image, item in zip(image_ids, output):
            if not isinstance(item, Mapping) or not {"boxes", "scores", "labels"} <= set(item):
                raise AuditError(
                    f"detector output for image {echo(image)}: expected a mapping with keys "
                    f"'boxes', 'scores', 'labels', got {_describe(item)}"
                )
            decoded.append(
                validate_detections(item["boxes"], item["scores"], item["labels"], image=image, num_classes=num_classes)
            )
        return decoded
    if isinstance(output, tuple) and len(output) in (3, 4) and all(isinstance(t, torch.Tensor) for t in output):
        counts = None
        if len(output) == 4:
            counts, boxes, scores, labels = output
            counts = counts.reshape(-1) if counts.dim() == 2 and counts.shape[1] == 1 else counts
            if counts.shape != (batch,) or counts.is_floating_point():
                raise AuditError(
                    f"detector output (boxes) for the batch starting at image {first}: num_detections "
                    f"must be an integer tensor of shape ({batch},) or ({batch}, 1), got "
                    f"{tuple(output[0].shape)} {output[0].dtype}"
                )
        else:
            boxes, scores, labels = output
        for name, tensor, dims in (("boxes", boxes, 3), ("scores", scores, 2), ("labels", labels, 2)):
            if tensor.dim() != dims or tensor.shape[0] != batch:
                raise AuditError(
                    f"detector output (boxes) for the batch starting at image {first}: {name} must have "
                    f"{dims} dimensions with {batch} images first, got {tuple(tensor.shape)}"
                )
        decoded = []
        for b, image in enumerate(image_ids):
            rows = slice(None)
            if counts is not None:
                count = int(counts[b])
                if not 0 <= count <= boxes.shape[1]:
                    raise AuditError(
                        f"detector output for image {echo(image)}: num_detections is {count}, "
                        f"not in [0, {boxes.shape[1]}]"
                    )
                rows = slice(0, count)
            decoded.append(
                validate_detections(
                    boxes[b, rows], scores[b, rows], labels[b, rows], image=image, num_classes=num_classes
                )
            )
        return decoded
    raise AuditError(
        f"detector output (boxes) for the batch starting at image {first}: expected a list of per-image "
        f"mappings or a tuple of 3 or 4 tensors, got {_describe(output)}"
    )


def decode_yolo(
    output: object,
    *,
    image_ids: Sequence[str],
    num_classes: int,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int = 300,
    max_candidates: int = 30000,
    multi_label: bool = False,
) -> list[Detections]:
    """An Ultralytics-layout YOLO head -> thresholded, NMS-ed, validated detections per image.

    Args:
        output: A float tensor (B, 4 + C, A) (or (B, A, 4 + C), see the module docstring), or a
            tuple/list whose first element is that tensor (TorchScript exports may return one).
        image_ids: The B images of the batch, in order (quoted in messages).
        num_classes: C.
        score_threshold: Candidates with score ``> score_threshold`` are kept.
        iou_threshold: NMS suppresses a box with IoU ``>`` this with a kept box of its class.
        max_detections: The most detections returned per image.
        max_candidates: The most candidates per image that enter NMS (the best scores).
        multi_label: One candidate per (anchor, class) passing the threshold, not per anchor.

    Returns:
        B detections, each by score descending (ties in anchor order), on the output's device.

    Raises:
        AuditError: One line naming the batch or image and the problem (wrong shape, a NaN,
            a negative width, a score outside [0, 1]).
    """
    batch = len(image_ids)
    first = echo(image_ids[0]) if batch else "(empty batch)"
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        output = output[0]
    rows = 4 + num_classes
    if not isinstance(output, torch.Tensor) or output.dim() != 3 or not output.is_floating_point():
        raise AuditError(
            f"detector output (yolo) for the batch starting at image {first}: expected a float tensor "
            f"(B, 4 + C, A) = ({batch}, {rows}, A), got {_describe(output)}"
        )
    if output.shape[0] != batch or rows not in output.shape[1:]:
        raise AuditError(
            f"detector output (yolo) for the batch starting at image {first}: expected shape "
            f"({batch}, {rows}, A) or ({batch}, A, {rows}) for {num_classes} classes, got {tuple(output.shape)}"
        )
    per_anchor = output.transpose(1, 2) if output.shape[1] == rows else output  # (B, A, 4 + C)
    bad = ~torch.isfinite(per_anchor).all(dim=2)
    if bool(bad.any()):
        b, a = (int(v) for v in bad.nonzero()[0])
        raise AuditError(
            f"detector output (yolo) for image {echo(image_ids[b])}: anchor {a} has a NaN or infinite value"
        )
    cx, cy, w, h = per_anchor[..., 0], per_anchor[..., 1], per_anchor[..., 2], per_anchor[..., 3]
    bad = (w < 0) | (h < 0)
    if bool(bad.any()):
        b, a = (int(v) for v in bad.nonzero()[0])
        raise AuditError(
            f"detector output (yolo) for image {echo(image_ids[b])}: anchor {a} has a negative width or height"
        )
    class_scores = per_anchor[..., 4:]
    bad = (class_scores < 0) | (class_scores > 1)
    if bool(bad.any()):
        b, a, c = (int(v) for v in bad.nonzero()[0])
        raise AuditError(
            f"detector output (yolo) for image {echo(image_ids[b])}: anchor {a} class {c} score is "
            f"{float(class_scores[b, a, c])!r}, not in [0, 1] (export the model with its sigmoid)"
        )
    boxes = torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)  # (B, A, 4)
    if num_classes == 0:
        return [_empty(output) for _ in image_ids]
    if multi_label:
        passing = class_scores > score_threshold
        image_idx, anchor_idx, label = passing.nonzero(as_tuple=True)  # row-major: image, anchor, class
        score = class_scores[image_idx, anchor_idx, label]
    else:
        best_score = class_scores.amax(dim=2)
        # max() does not promise the lowest index on ties; argmax returns the first maximum.
        best_label = (class_scores == best_score[..., None]).int().argmax(dim=2)
        passing = best_score > score_threshold
        image_idx, anchor_idx = passing.nonzero(as_tuple=True)
        label, score = best_label[image_idx, anchor_idx], best_score[image_idx, anchor_idx]
    # Candidate order = anchor order per image; keep the max_candidates best per image.
    order = torch.sort(score, descending=True, stable=True).indices
    order = order[torch.sort(image_idx[order], stable=True).indices]  # image-major, score desc inside
    order = top_k_per_group(order, image_idx[order], k=max_candidates)
    order = torch.sort(order).values  # back to (image, anchor, class) order: ties resolve by anchor
    image_idx, anchor_idx, label, score = image_idx[order], anchor_idx[order], label[order], score[order]
    cand_boxes = boxes[image_idx, anchor_idx]
    kept = batched_nms(cand_boxes, score, image_idx * max(num_classes, 1) + label, iou_threshold=iou_threshold)
    kept = top_k_per_group(kept, image_idx[kept], k=max_detections)
    kept_image = image_idx[kept]
    result = []
    for b, image in enumerate(image_ids):
        mine = kept[kept_image == b]
        result.append(
            validate_detections(cand_boxes[mine], score[mine], label[mine], image=image, num_classes=num_classes)
        )
    return result


def _empty(like: torch.Tensor) -> Detections:
    return Detections(
        like.new_zeros((0, 4)), like.new_zeros((0,)), torch.zeros(0, dtype=torch.int64, device=like.device)
    )


def _first(mask: torch.Tensor) -> int:
    return int(mask.nonzero()[0, 0])


def _coords(box: torch.Tensor) -> str:
    return ", ".join(f"{float(v):g}" for v in box)


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} ({', '.join(type(v).__name__ for v in value[:4])})"
    return f"a {type(value).__name__}"
