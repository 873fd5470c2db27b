"""The detector output contract: the validator's one-line errors, the ``boxes`` and ``yolo`` decoders."""

from __future__ import annotations

import pytest
import torch

from audit.contract.errors import AuditError
from audit.evaluation.detection.outputs import Detections, decode_boxes, decode_yolo, validate_detections


def reference_nms(boxes: list[list[float]], scores: list[float], groups: list[int], threshold: float) -> list[int]:
    """Greedy NMS, one box at a time (as in test_nms.py): highest score first, ties in input order."""

    def iou(a: list[float], b: list[float]) -> float:
        inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    kept: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda i: (-scores[i], i)):
        if all(groups[k] != groups[i] or iou(boxes[k], boxes[i]) <= threshold for k in kept):
            kept.append(i)
    return kept


def good() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.tensor([[0.0, 0, 10, 10], [5.0, 5, 6, 9]]), torch.tensor([0.9, 0.1]), torch.tensor([0, 2])


def test_valid_detections_pass_and_labels_become_int64() -> None:
    boxes, scores, _ = good()
    det = validate_detections(boxes, scores, torch.tensor([0.0, 2.0]), image="a.jpg", num_classes=3)
    assert det.labels.dtype == torch.int64 and det.labels.tolist() == [0, 2] and len(det) == 2
    empty = validate_detections(
        torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int32), image="e", num_classes=3
    )
    assert len(empty) == 0 and empty.labels.dtype == torch.int64


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda b, s, c: (b.numpy(), s, c), "boxes must be a tensor, got ndarray"),
        (lambda b, s, c: (b[:, :3], s, c), "boxes must have shape (N, 4), got (2, 3)"),
        (lambda b, s, c: (b, s[:1], c), "scores must have shape (2,) to match 2 boxes, got (1,)"),
        (lambda b, s, c: (b, s, c[None]), "labels must have shape (2,) to match 2 boxes, got (1, 2)"),
        (lambda b, s, c: (b.long(), s, c), "boxes must be a float tensor, got torch.int64"),
        (lambda b, s, c: (b, (s * 10).long(), c), "scores must be a float tensor"),
        (lambda b, s, c: (b, s, c.bool()), "labels must be an integer tensor, got torch.bool"),
        (lambda b, s, c: (b, s, c + 0.5), "labels must be whole class indices"),
        (
            lambda b, s, c: (b.index_put((torch.tensor(1), torch.tensor(2)), torch.tensor(float("nan"))), s, c),
            "box 1 has a NaN",
        ),
        (
            lambda b, s, c: (b.index_put((torch.tensor(1), torch.tensor(3)), torch.tensor(1.0)), s, c),
            "box 1 has a negative width or height",
        ),
        (lambda b, s, c: (b, torch.tensor([0.5, 1.5]), c), "score 1 is 1.5, not in [0, 1]"),
        (lambda b, s, c: (b, torch.tensor([-0.1, 0.5]), c), "score 0 is"),
        (lambda b, s, c: (b, torch.tensor([0.5, float("nan")]), c), "score 1 is nan"),
        (lambda b, s, c: (b, s, torch.tensor([0, 3])), "label 1 is 3, not a class index in [0, 3)"),
        (lambda b, s, c: (b, s, torch.tensor([-1, 0])), "label 0 is -1"),
    ],
)
def test_contract_violations_are_one_line_naming_the_image(change, problem: str) -> None:
    boxes, scores, labels = change(*good())
    with pytest.raises(AuditError) as err:
        validate_detections(boxes, scores, labels, image="cam1/0042.jpg", num_classes=3)
    message = str(err.value)
    assert message.startswith("detector output for image 'cam1/0042.jpg': ")
    assert problem in message and "\n" not in message


def test_decode_boxes_list_of_mappings() -> None:
    b, s, c = good()
    out = decode_boxes(
        [{"boxes": b, "scores": s, "labels": c}, {"boxes": b[:0], "scores": s[:0], "labels": c[:0]}],
        image_ids=["x", "y"],
        num_classes=3,
    )
    assert [len(d) for d in out] == [2, 0] and torch.equal(out[0].boxes, b)
    with pytest.raises(AuditError, match="image 'y': expected a mapping with keys"):
        decode_boxes([{"boxes": b, "scores": s, "labels": c}, {"boxes": b}], image_ids=["x", "y"], num_classes=3)
    with pytest.raises(AuditError, match="a list of 1 per-image results for 2 images"):
        decode_boxes([{"boxes": b, "scores": s, "labels": c}], image_ids=["x", "y"], num_classes=3)
    with pytest.raises(AuditError, match="image 'x': label 1 is 2, not a class index in"):
        decode_boxes([{"boxes": b, "scores": s, "labels": c}] * 2, image_ids=["x", "y"], num_classes=2)


def test_decode_boxes_tuple_of_tensors_and_efficient_nms_counts() -> None:
    b, s, c = good()
    boxes, scores, labels = torch.stack((b, b)), torch.stack((s, s)), torch.stack((c, c))
    out = decode_boxes((boxes, scores, labels), image_ids=["x", "y"], num_classes=3)
    assert [len(d) for d in out] == [2, 2]
    # num_detections: image x has 1, image y 0; the padding rows (here invalid: label 7) are ignored.
    labels[:, 1] = 7
    out = decode_boxes((torch.tensor([[1], [0]]), boxes, scores, labels.float()), image_ids=["x", "y"], num_classes=3)
    assert [len(d) for d in out] == [1, 0] and out[0].labels.tolist() == [0]
    with pytest.raises(AuditError, match="image 'x': label 1 is 7"):
        decode_boxes((boxes, scores, labels), image_ids=["x", "y"], num_classes=3)
    with pytest.raises(AuditError, match="image 'y': num_detections is 3, not in"):
        decode_boxes((torch.tensor([1, 3]), boxes, scores, labels), image_ids=["x", "y"], num_classes=3)
    with pytest.raises(AuditError, match="scores must have 2 dimensions with 2 images first"):
        decode_boxes((boxes, scores[0], labels), image_ids=["x", "y"], num_classes=3)
    with pytest.raises(
        AuditError,
        match="expected a list of per-image mappings or a tuple of 3 or 4 tensors, got a torch.float32 tensor of shape",
    ):
        decode_boxes(boxes, image_ids=["x", "y"], num_classes=3)


def yolo_head(rows: list[list[float]]) -> torch.Tensor:
    """One image's anchors as (cx, cy, w, h, class scores...) rows -> the export layout (1, 4 + C, A)."""
    return torch.tensor(rows).T[None]


def test_decode_yolo_hand_worked() -> None:
    head = yolo_head(
        [
            [50, 50, 20, 10, 0.9, 0.1],  # xyxy 40,45,60,55 class 0 score 0.9: kept
            [51, 50, 20, 10, 0.8, 0.3],  # near-copy, class 0: IoU 0.9 -> suppressed
            [51, 50, 20, 10, 0.2, 0.85],  # same box, class 1: another class, kept
            [10, 10, 4, 4, 0.2, 0.24],  # best 0.24 <= 0.25: below the threshold
            [80, 20, 10, 10, 0.6, 0.6],  # tie between classes: the lower class (0) wins
        ]
    )
    (det,) = decode_yolo(head, image_ids=["img"], num_classes=2, score_threshold=0.25, iou_threshold=0.5)
    assert det.boxes.tolist() == [[40, 45, 60, 55], [41, 45, 61, 55], [75, 15, 85, 25]]
    assert det.scores.tolist() == pytest.approx([0.9, 0.85, 0.6])
    assert det.labels.tolist() == [0, 1, 0]
    # multi-label: every (anchor, class) above 0.25, then NMS per class; the 0.6 tie keeps both classes.
    (multi,) = decode_yolo(
        head, image_ids=["img"], num_classes=2, score_threshold=0.25, iou_threshold=0.5, multi_label=True
    )
    assert multi.labels.tolist() == [0, 1, 0, 1] and multi.scores.tolist() == pytest.approx([0.9, 0.85, 0.6, 0.6])
    assert multi.boxes[2:].tolist() == [[75, 15, 85, 25]] * 2
    # max_detections keeps the best.
    (top,) = decode_yolo(
        head, image_ids=["img"], num_classes=2, score_threshold=0.25, iou_threshold=0.5, max_detections=2
    )
    assert top.scores.tolist() == pytest.approx([0.9, 0.85])


def reference_yolo(head: torch.Tensor, *, threshold: float, iou: float, max_det: int, max_cand: int, multi: bool):
    """Python loops over anchors of one image's (4 + C, A) head, the rules of the module docstring."""
    rows = head.T.tolist()
    cands = []  # (score, box, label) in anchor order
    for cx, cy, w, h, *cls in rows:
        box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        if multi:
            cands += [(s, box, c) for c, s in enumerate(cls) if s > threshold]
        else:
            best = max(cls)
            if best > threshold:
                cands.append((best, box, cls.index(best)))
    best_first = sorted(range(len(cands)), key=lambda i: (-cands[i][0], i))[:max_cand]
    cands = [cands[i] for i in sorted(best_first)]
    kept = reference_nms([c[1] for c in cands], [c[0] for c in cands], [c[2] for c in cands], iou)[:max_det]
    return [cands[i] for i in kept]


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_decode_yolo_matches_reference_on_random_heads(seed: int, multi: bool) -> None:
    gen = torch.Generator().manual_seed(seed)
    batch, classes, anchors = 3, 5, 200
    centres = torch.rand(batch, 2, anchors, generator=gen, dtype=torch.float64) * 64
    sizes = torch.rand(batch, 2, anchors, generator=gen, dtype=torch.float64) * 24
    scores = (torch.randint(0, 20, (batch, classes, anchors), generator=gen) / 20).double()  # many ties
    head = torch.cat((centres, sizes, scores), dim=1)
    kwargs = {"score_threshold": 0.5, "iou_threshold": 0.45, "max_detections": 25, "max_candidates": 60}
    out = decode_yolo(head, image_ids=["a", "b", "c"], num_classes=classes, multi_label=multi, **kwargs)
    for b in range(batch):
        want = reference_yolo(head[b], threshold=0.5, iou=0.45, max_det=25, max_cand=60, multi=multi)
        assert out[b].scores.tolist() == [w[0] for w in want]
        assert out[b].boxes.tolist() == [w[1] for w in want]
        assert out[b].labels.tolist() == [w[2] for w in want]
        # The same image alone gives the same answer (batch invariance).
        (alone,) = decode_yolo(head[b : b + 1], image_ids=["a"], num_classes=classes, multi_label=multi, **kwargs)
        assert torch.equal(alone.boxes, out[b].boxes) and torch.equal(alone.labels, out[b].labels)
    # The (B, A, 4 + C) layout decodes the same.
    transposed = decode_yolo(
        head.transpose(1, 2), image_ids=["a", "b", "c"], num_classes=classes, multi_label=multi, **kwargs
    )
    assert all(torch.equal(t.boxes, o.boxes) and torch.equal(t.scores, o.scores) for t, o in zip(transposed, out))


def test_decode_yolo_square_head_is_read_in_the_ultralytics_layout() -> None:
    # A = 4 + C = 6: ambiguous, read as (B, 4 + C, A) — anchor 0 is the first column.
    head = torch.zeros(1, 6, 6)
    head[0, :, 0] = torch.tensor([10.0, 10, 4, 4, 0.9, 0.0])
    (det,) = decode_yolo(head, image_ids=["sq"], num_classes=2, score_threshold=0.5, iou_threshold=0.5)
    assert det.boxes.tolist() == [[8, 8, 12, 12]] and det.labels.tolist() == [0]


def test_decode_yolo_empty_results_and_tuple_output() -> None:
    head = torch.zeros(2, 7, 10)
    out = decode_yolo(
        (head, torch.zeros(1)), image_ids=["a", "b"], num_classes=3, score_threshold=0.25, iou_threshold=0.5
    )
    assert [len(d) for d in out] == [0, 0] and all(isinstance(d, Detections) for d in out)
    assert out[0].boxes.shape == (0, 4) and out[0].labels.dtype == torch.int64


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda h: h[:, :5], "expected shape (2, 7, A) or (2, A, 7) for 3 classes, got (2, 5, 10)"),
        (lambda h: h[:1], "expected shape (2, 7, A)"),
        (lambda h: h.long(), "expected a float tensor"),
        (
            lambda h: h.index_put((torch.tensor(1), torch.tensor(0), torch.tensor(4)), torch.tensor(float("nan"))),
            "image 'b': anchor 4 has a NaN",
        ),
        (
            lambda h: h.index_put((torch.tensor(1), torch.tensor(3), torch.tensor(2)), torch.tensor(-1.0)),
            "image 'b': anchor 2 has a negative width",
        ),
        (
            lambda h: h.index_put((torch.tensor(0), torch.tensor(5), torch.tensor(9)), torch.tensor(3.0)),
            "image 'a': anchor 9 class 1 score is 3.0, not in [0, 1]",
        ),
    ],
)
def test_decode_yolo_bad_heads_are_one_line(make, problem: str) -> None:
    head = torch.rand(2, 7, 10, generator=torch.Generator().manual_seed(0))
    with pytest.raises(AuditError) as err:
        decode_yolo(make(head), image_ids=["a", "b"], num_classes=3, score_threshold=0.25, iou_threshold=0.5)
    assert problem in str(err.value) and "\n" not in str(err.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_decode_yolo_on_cuda_equals_cpu() -> None:
    gen = torch.Generator().manual_seed(11)
    head = torch.cat((torch.rand(2, 4, 500, generator=gen) * 64, torch.rand(2, 6, 500, generator=gen)), dim=1)
    kwargs = {"image_ids": ["a", "b"], "num_classes": 6, "score_threshold": 0.3, "iou_threshold": 0.5}
    for cpu, gpu in zip(decode_yolo(head, **kwargs), decode_yolo(head.cuda(), **kwargs)):
        assert gpu.boxes.is_cuda
        assert torch.equal(cpu.labels, gpu.labels.cpu()) and torch.allclose(cpu.boxes, gpu.boxes.cpu())
