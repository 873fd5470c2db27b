"""cvaudit's batched NMS against a brute-force greedy NMS written out with Python loops."""

from __future__ import annotations

import pytest
import torch

from audit.evaluation.detection import nms
from audit.evaluation.detection.nms import batched_nms, box_iou, top_k_per_group


def reference_iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_nms(boxes: list[list[float]], scores: list[float], groups: list[int], threshold: float) -> list[int]:
    """Greedy NMS, one box at a time: highest score first, equal scores in input order."""
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        if all(groups[k] != groups[i] or reference_iou(boxes[k], boxes[i]) <= threshold for k in kept):
            kept.append(i)
    return kept


def random_boxes(gen: torch.Generator, n: int, *, scale: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * scale
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * scale / 3
    return torch.cat((xy, xy + wh), dim=1)


def check(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float) -> None:
    got = batched_nms(boxes, scores, groups, iou_threshold=threshold).tolist()
    want = reference_nms(boxes.tolist(), scores.tolist(), groups.tolist(), threshold)
    assert got == want


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7])
def test_random_boxes_match_reference(seed: int, threshold: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 120, (1,), generator=gen))
    boxes = random_boxes(gen, n)
    scores = torch.rand(n, generator=gen, dtype=torch.float64)
    groups = torch.randint(0, 3, (n,), generator=gen)
    check(boxes, scores, groups, threshold)


@pytest.mark.parametrize("seed", range(6))
def test_ties_identical_and_zero_area_boxes_match_reference(seed: int) -> None:
    gen = torch.Generator().manual_seed(100 + seed)
    n = 80
    boxes = random_boxes(gen, n, scale=20.0)
    boxes[10:20] = boxes[0]  # identical boxes
    boxes[20:30, 2:] = boxes[20:30, :2]  # zero-area points
    boxes[30:35, 2] = boxes[30:35, 0]  # zero-width lines
    boxes[35:40] = boxes[20]  # identical zero-area boxes
    scores = (torch.randint(0, 4, (n,), generator=gen) / 4).double()  # many equal scores
    groups = torch.randint(0, 2, (n,), generator=gen)
    check(boxes, scores, groups, 0.5)


@pytest.mark.parametrize("block", [7, 64, nms.BLOCK])
def test_many_classes_match_reference(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nms, "BLOCK", block)
    gen = torch.Generator().manual_seed(7)
    n = 600
    boxes = random_boxes(gen, n, scale=50.0)
    scores = torch.rand(n, generator=gen, dtype=torch.float64)
    groups = torch.randint(0, 80, (n,), generator=gen)
    check(boxes, scores, groups, 0.45)


def test_blocks_smaller_than_input_give_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(3)
    boxes = random_boxes(gen, 300, scale=40.0)
    scores = (torch.randint(0, 10, (300,), generator=gen) / 10).double()
    groups = torch.randint(0, 2, (300,), generator=gen)
    whole = batched_nms(boxes, scores, groups, iou_threshold=0.4)
    monkeypatch.setattr(nms, "BLOCK", 7)
    assert torch.equal(batched_nms(boxes, scores, groups, iou_threshold=0.4), whole)
    check(boxes, scores, groups, 0.4)


def test_long_suppression_chain_is_exact_greedy() -> None:
    # Each box overlaps its neighbours (IoU 0.67), not the next but one (0.43): greedy keeps 0, 2, 4, ... (a naive one-pass
    # "suppressed by any higher box" would keep only box 0).
    boxes = torch.tensor([[i * 2.0, 0.0, i * 2.0 + 10.0, 10.0] for i in range(9)])
    scores = torch.linspace(0.9, 0.1, 9)
    got = batched_nms(boxes, scores, torch.zeros(9, dtype=torch.int64), iou_threshold=0.5)
    assert got.tolist() == [0, 2, 4, 6, 8]


def test_hand_worked_example() -> None:
    # A: [0,0,10,10] 0.9; B: [1,1,11,11] 0.8, IoU(A,B) = 81/119 = 0.68 -> suppressed at 0.5;
    # C: [5,0,15,10] 0.7, IoU(A,C) = 50/150 = 0.33 -> kept; D = A exactly, score 0.9, class 1 -> kept
    # (another class); E: [0,0,10,10] 0.9 class 0 ties A and comes later -> suppressed (IoU 1).
    boxes = torch.tensor([[0.0, 0, 10, 10], [1.0, 1, 11, 11], [5.0, 0, 15, 10], [0.0, 0, 10, 10], [0.0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.9, 0.9])
    labels = torch.tensor([0, 0, 0, 1, 0])
    assert batched_nms(boxes, scores, labels, iou_threshold=0.5).tolist() == [0, 3, 2]
    # At 0.7, B survives (0.68 <= 0.7); at 0.3, C goes too (0.33 > 0.3).
    assert batched_nms(boxes, scores, labels, iou_threshold=0.7).tolist() == [0, 3, 1, 2]
    assert batched_nms(boxes, scores, labels, iou_threshold=0.3).tolist() == [0, 3]
    assert box_iou(boxes[:1], boxes[1:3])[0].tolist() == pytest.approx([81 / 119, 50 / 150])


def test_equal_iou_is_not_suppressed() -> None:
    # IoU exactly 0.5 (both in float32 and float64): kept, the threshold suppresses only above it.
    boxes = torch.tensor([[0.0, 0, 2, 1], [0.0, 0, 1, 1]])
    assert box_iou(boxes[:1], boxes[1:]).item() == 0.5
    assert batched_nms(
        boxes, torch.tensor([0.9, 0.8]), torch.zeros(2, dtype=torch.int64), iou_threshold=0.5
    ).tolist() == [0, 1]


def test_empty_input() -> None:
    got = batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), iou_threshold=0.5)
    assert got.dtype == torch.int64 and got.shape == (0,)


def test_top_k_per_group_keeps_order_and_counts() -> None:
    gen = torch.Generator().manual_seed(1)
    indices = torch.randperm(50, generator=gen)
    groups = torch.randint(0, 4, (50,), generator=gen)
    got = top_k_per_group(indices, groups, k=3).tolist()
    want, seen = [], {}
    for i, g in zip(indices.tolist(), groups.tolist()):
        seen[g] = seen.get(g, 0) + 1
        if seen[g] <= 3:
            want.append(i)
    assert got == want
    assert top_k_per_group(indices, groups, k=0).tolist() == []
