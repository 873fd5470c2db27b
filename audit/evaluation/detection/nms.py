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
the same group are found in row blocks over the boxes sorted by group (memory bounded by
``BLOCK * (BLOCK + largest group)``, never ``N * N`` over a batch),
then the greedy result is reached as the fixed point of "a box is kept iff no kept box
before it overlaps it" — iterated from "all kept", the first ``t`` boxes are final after
``t`` rounds, and the fixed point is unique, so the answer is exactly the greedy one
(usually in a handful of rounds).
"""

from __future__ import annotations

import torch

__all__ = ["batched_nms", "box_iou", "top_k_per_group"]

#: Rows of the pairwise IoU computed at once (memory: ``BLOCK * (BLOCK + largest group)`` values).
BLOCK = 512


def box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes; 0 where the union is 0.

    Shape:
        boxes_a: (N, 4), boxes_b: (M, 4) -> (N, M), in the boxes' dtype.

    >>> box_iou(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 0, 3, 2], [0.0, 0, 0, 0]]))
    tensor([[0.3333, 0.0000]])
    """
    ax1, ay1, ax2, ay2 = (c[:, None] for c in boxes_a.unbind(1))  # columns as (N, 1)
    bx1, by1, bx2, by2 = (c[None, :] for c in boxes_b.unbind(1))  # rows as (1, M)
    width = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp_(min=0)
    height = (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp_(min=0)
    inter = width.mul_(height)
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return torch.where(union > 0, inter / union, torch.zeros_like(inter))


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
    by_score = torch.sort(scores, descending=True, stable=True).indices
    # Group-major, by score inside a group (ties in input order): a group's boxes are contiguous.
    order = by_score[torch.sort(groups[by_score], stable=True).indices]
    sorted_boxes, sorted_groups = boxes[order], groups[order]
    group_end = torch.searchsorted(sorted_groups, sorted_groups, right=True)
    # Overlapping pairs (i, j), i before j in the walk, same group, IoU > threshold. The columns
    # a block of rows needs run from the block's first row to the end of its last row's group.
    earlier: list[torch.Tensor] = []
    later: list[torch.Tensor] = []
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        end = int(group_end[stop - 1])
        over = box_iou(sorted_boxes[start:stop], sorted_boxes[start:end]) > iou_threshold
        over &= sorted_groups[start:stop, None] == sorted_groups[None, start:end]
        over.triu_(diagonal=1)  # column j (offset by start) after row i
        i, j = over.nonzero(as_tuple=True)
        earlier.append(i + start)
        later.append(j + start)
    first, second = torch.cat(earlier), torch.cat(later)
    keep = torch.ones(n, dtype=torch.bool, device=device)
    for _ in range(n):  # converges in at most n rounds (see the module docstring)
        suppressed = torch.zeros(n, dtype=torch.bool, device=device)
        suppressed[second[keep[first]]] = True
        new_keep = ~suppressed
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    kept = order[keep]
    # Back to the global walk order: score descending, ties in input order.
    rank = torch.empty_like(by_score)
    rank[by_score] = torch.arange(n, device=device)
    return kept[torch.sort(rank[kept]).indices]


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
