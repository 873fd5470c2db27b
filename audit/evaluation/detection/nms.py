"""cvaudit's own batched, class-aware non-maximum suppression (greedy, exact, deterministic).

The rule, for the boxes of one (image, class) group, is classic greedy NMS:

1. order the boxes by score, highest first; **equal scores keep their input order** (the box
   that comes first in the input wins a tie — a stable sort, on every device);
2. walk that order; a box is kept unless a box kept before it has IoU **strictly greater**
   than ``iou_threshold`` with it (torchvision's ``batched_nms`` rule, without its
   unspecified tie order).

Boxes of different images or different classes never suppress each other. The IoU of two
boxes is ``intersection / (area_a + area_b - intersection)``; where that union is 0 (two
zero-area boxes) the IoU is defined as 0, so a zero-area box never suppresses and is never
suppressed by another zero-area box.

The computation is vectorised in torch and runs on the boxes' device: overlapping pairs of
the same group are found in row blocks (memory bounded by ``block * N``, never ``N * N``),
then the greedy result is reached as the fixed point of "a box is kept iff no kept box
before it overlaps it" — iterated from "all kept", the first ``t`` boxes are final after
``t`` rounds, and the fixed point is unique, so the answer is exactly the greedy one
(usually in a handful of rounds).
"""

from __future__ import annotations

import torch

__all__ = ["batched_nms", "box_iou", "top_k_per_group"]

#: Rows of the pairwise IoU computed at once (memory: ``BLOCK * N`` values).
BLOCK = 2048


def box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes; 0 where the union is 0.

    Shape:
        boxes_a: (N, 4), boxes_b: (M, 4) -> (N, M), in the boxes' dtype.

    >>> box_iou(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 0, 3, 2], [0.0, 0, 0, 0]]))
    tensor([[0.3333, 0.0000]])
    """
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]) * (boxes_a[:, 3] - boxes_a[:, 1])
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]) * (boxes_b[:, 3] - boxes_b[:, 1])
    top_left = torch.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = torch.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.where(union > 0, torch.ones_like(union)), torch.zeros_like(inter))


def batched_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    groups: torch.Tensor,
    *,
    iou_threshold: float,
) -> torch.Tensor:
    """Indices of the boxes greedy NMS keeps, each group (e.g. image × class) on its own.

    Args:
        boxes: Valid xyxy boxes (``x1 <= x2``, ``y1 <= y2``, finite).
        scores: One score per box.
        groups: One integer per box; only boxes of the same group suppress each other
            (for class-aware NMS over a batch: ``image_index * num_classes + label``).
        iou_threshold: A box is suppressed by a kept box of its group with IoU **>** this.

    Returns:
        int64 indices into the input, ordered by score descending, equal scores in input
        order (the order the greedy walk visits them), on the boxes' device.

    Shape:
        boxes: (N, 4), scores: (N,), groups: (N,) -> (K,), K <= N.

    >>> b = torch.tensor([[0.0, 0, 10, 10], [1.0, 1, 10, 10], [0.0, 0, 10, 10]])
    >>> batched_nms(b, torch.tensor([0.5, 0.9, 0.5]), torch.tensor([0, 0, 1]), iou_threshold=0.5)
    tensor([1, 2])
    """
    n = boxes.shape[0]
    device = boxes.device
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=device)
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes, sorted_groups = boxes[order], groups[order]
    # Overlapping pairs (i, j), i before j in the walk, same group, IoU > threshold.
    earlier: list[torch.Tensor] = []
    later: list[torch.Tensor] = []
    positions = torch.arange(n, device=device)
    for start in range(0, n, BLOCK):
        rows = slice(start, min(start + BLOCK, n))
        over = box_iou(sorted_boxes[rows], sorted_boxes) > iou_threshold
        over &= sorted_groups[rows, None] == sorted_groups[None, :]
        over &= positions[rows, None] < positions[None, :]
        i, j = over.nonzero(as_tuple=True)
        earlier.append(i + start)
        later.append(j)
    first, second = torch.cat(earlier), torch.cat(later)
    keep = torch.ones(n, dtype=torch.bool, device=device)
    for _ in range(n):  # converges in at most n rounds (see the module docstring)
        suppressed = torch.zeros(n, dtype=torch.bool, device=device)
        suppressed[second[keep[first]]] = True
        new_keep = ~suppressed
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep]


def top_k_per_group(indices: torch.Tensor, groups: torch.Tensor, *, k: int) -> torch.Tensor:
    """The first ``k`` of ``indices`` in each group, keeping their order.

    Args:
        indices: Indices in priority order (e.g. :func:`batched_nms`'s answer).
        groups: The group of each index (e.g. its image), aligned with ``indices``.
        k: The most kept per group (``k >= 0``).

    Returns:
        The kept entries of ``indices``, in their original order.

    Shape:
        indices: (K,), groups: (K,) -> (<= K,).

    >>> top_k_per_group(torch.tensor([5, 3, 4, 1]), torch.tensor([0, 0, 1, 0]), k=2)
    tensor([5, 3, 4])
    """
    if indices.numel() == 0:
        return indices
    by_group = torch.sort(groups, stable=True).indices
    sorted_groups = groups[by_group]
    starts = torch.searchsorted(sorted_groups, sorted_groups, right=False)
    rank = torch.empty_like(by_group)
    rank[by_group] = torch.arange(groups.numel(), device=groups.device) - starts
    return indices[rank < k]
