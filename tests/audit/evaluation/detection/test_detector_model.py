"""Detector loading: TorchScript, torch.export, ONNX and factory detectors decoded to the output contract.

Each format holds the same tiny nets (tiny_detector_nets.py), whose detections are worked out by
hand from the image content, the normalisation and the decoder's rules.
"""

from __future__ import annotations

import uuid

import pytest
import torch
from tiny_detector_nets import ContentBoxes, FixedYolo, RandomYolo

from audit.contract.config import ModelConfig
from audit.contract.digest import sha256_file
from audit.contract.errors import AuditError
from audit.evaluation.detection.model import DetectorModel, load_detector

CPU = torch.device("cpu")
SIZE = (12, 16)  # (H, W)
MEAN, STD = (0.2, 0.4, 0.6), (0.5, 0.25, 0.125)
FORMATS = ["torchscript", "torch.export", "onnx", "factory"]


def save(net: torch.nn.Module, fmt: str, folder, *, batch: int | None = None) -> dict:
    """Write ``net`` in ``fmt`` into ``folder``; the ModelConfig keys that load it.

    ``batch``: export with this fixed batch size (default: a dynamic batch dimension).
    """
    net = net.eval()
    example = (torch.rand(batch or 2, 3, *SIZE),)
    dynamic = None if batch else ({0: torch.export.Dim("b")},)
    if fmt == "torchscript":
        path = folder / "det.pt"
        torch.jit.save(torch.jit.script(net), str(path))
    elif fmt == "torch.export":
        path = folder / "det.pt2"
        torch.export.save(torch.export.export(net, example, dynamic_shapes=dynamic), str(path))
    elif fmt == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
        path = folder / "det.onnx"
        torch.onnx.export(net, example, str(path), dynamo=True, dynamic_shapes=dynamic)
    else:
        return {
            "factory": write_factory(folder, f"from tiny_detector_nets import {type(net).__name__} as Net", "Net()")
        }
    return {"path": path}


def write_factory(folder, imports: str, body: str) -> str:
    """A factory module in ``folder`` (a fresh module name, so no earlier import is reused)."""
    name = f"factory_{uuid.uuid4().hex}"
    (folder / f"{name}.py").write_text(f"{imports}\n\n\ndef make():\n    return {body}\n")
    return f"{name}:make"


def load(source: dict, folder, *, output: str, num_classes: int = 3, mean=MEAN, std=STD, **kwargs):
    cfg = ModelConfig(**source, input_size=SIZE, mean=mean, std=std)
    return load_detector(cfg, output=output, num_classes=num_classes, device=CPU, base_dir=folder, **kwargs)


def content_images() -> tuple[torch.Tensor, list[tuple[int, int, int, int]], list[float], list[float]]:
    """Three images: channel 0 is 0.9 inside a rectangle and 0.1 outside; channels 1 and 2 at (0, 0) vary."""
    rects = [(2, 3, 7, 9), (5, 1, 16, 4), (8, 6, 9, 7)]  # x1, y1, x2, y2 (pixel edges)
    ch1 = [0.5, 0.3, 0.9]  # normalised (v - 0.4) / 0.25: 0.4, -0.4 -> 0, 2 -> 1
    ch2 = [0.7, 0.5, 0.6]  # normalised (v - 0.6) / 0.125: 0.8 (> 0: label 1), -0.8, 0 (not > 0)
    images = torch.rand(3, 3, *SIZE, generator=torch.Generator().manual_seed(0))
    images[:, 0] = 0.1
    for i, (x1, y1, x2, y2) in enumerate(rects):
        images[i, 0, y1:y2, x1:x2] = 0.9
        images[i, 1, 0, 0], images[i, 2, 0, 0] = ch1[i], ch2[i]
    return images, rects, ch1, ch2


def expected_content(rect, v1: float, v2: float, mean=MEAN, std=STD):
    """ContentBoxes' detections by hand (see its docstring)."""
    score = min(max((v1 - mean[1]) / std[1], 0.0), 1.0)
    label = int((v2 - mean[2]) / std[2] > 1e-9)
    return [list(map(float, rect)), [1.0, 2.0, 3.0, 4.0]], [score, 0.5], [label, 2]


def yolo_images(s_values=(1.0, 0.5, 0.0)) -> torch.Tensor:
    """Images whose normalised channel 0 at pixel (0, 0) is ``s`` (FixedYolo's class-0 factor)."""
    images = torch.rand(len(s_values), 3, *SIZE, generator=torch.Generator().manual_seed(1))
    for i, s in enumerate(s_values):
        images[i, 0, 0, 0] = MEAN[0] + STD[0] * s
    return images


A0 = [8.0, 8.0, 12.0, 12.0]  # anchors a0 and a2 as xyxy
A1 = [8.5, 8.0, 12.5, 12.0]
# FixedYolo decoded at score > 0.001, IoU 0.7, by hand: a1 loses to a0 (IoU 0.78, same class),
# a3 is below the threshold; with s = 0 every anchor's best class is 1 and a2 (0.7) suppresses a0, a1.
YOLO_EXPECTED = [
    ([A0, A0], [0.9, 0.7], [0, 1]),  # s = 1
    ([A0, A0], [0.7, 0.45], [1, 0]),  # s = 0.5
    ([A0], [0.7], [1]),  # s = 0
]


def assert_detections(det, boxes, scores, labels) -> None:
    assert det.boxes.shape == (len(boxes), 4) and det.labels.dtype == torch.int64
    torch.testing.assert_close(det.boxes, torch.tensor(boxes, dtype=det.boxes.dtype).reshape(-1, 4), atol=1e-6, rtol=0)
    torch.testing.assert_close(det.scores, torch.tensor(scores, dtype=det.scores.dtype), atol=1e-6, rtol=0)
    assert det.labels.tolist() == labels


@pytest.mark.parametrize("fmt", FORMATS)
def test_decoded_boxes_equal_the_hand_computed_ones_in_every_format(tmp_path, fmt):
    model, info = load(save(ContentBoxes(), fmt, tmp_path), tmp_path, output="boxes")
    images, rects, ch1, ch2 = content_images()
    dets = model(images, image_ids=["a.jpg", "b.jpg", "c.jpg"])
    assert len(dets) == 3
    for det, rect, v1, v2 in zip(dets, rects, ch1, ch2):
        assert_detections(det, *expected_content(rect, v1, v2))
    assert info["format"] == fmt and isinstance(model, DetectorModel)
    assert model.has_gradients is (fmt != "onnx")
    if fmt == "factory":
        assert info["path"] == info["factory"] and info["sha256"] is None
    else:
        assert info["sha256"] == sha256_file(tmp_path / info["path"]) and info["factory"] is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_yolo_heads_are_thresholded_and_nms_ed_as_worked_out_by_hand(tmp_path, fmt):
    model, _ = load(save(FixedYolo(), fmt, tmp_path), tmp_path, output="yolo", num_classes=2)
    dets = model(yolo_images(), image_ids=["s1", "s05", "s0"])
    for det, expected in zip(dets, YOLO_EXPECTED):
        assert_detections(det, *expected)


def test_yolo_thresholds_and_the_cap_reach_the_decoder(tmp_path):
    source = save(FixedYolo(), "factory", tmp_path)
    image = yolo_images((1.0,))
    (det,) = load(source, tmp_path, output="yolo", num_classes=2, iou_threshold=0.8)[0](image, image_ids=["x"])
    assert_detections(det, [A0, A1, A0], [0.9, 0.8, 0.7], [0, 0, 1])  # IoU(a0, a1) = 0.78 <= 0.8: a1 kept
    (det,) = load(source, tmp_path, output="yolo", num_classes=2, iou_threshold=0.8, max_detections=2)[0](
        image, image_ids=["x"]
    )
    assert_detections(det, [A0, A1], [0.9, 0.8], [0, 0])
    (det,) = load(source, tmp_path, output="yolo", num_classes=2, score_threshold=0.75)[0](image, image_ids=["x"])
    assert_detections(det, [A0], [0.9], [0])
    # multi_label: the class-1 scores of a0 (0.1) and a1 (0.05) are candidates of their own; at IoU 0.99
    # a2 (0.7, IoU 1 with a0) suppresses a0's, not a1's (IoU 0.78). One label per anchor keeps three.
    multi = load(source, tmp_path, output="yolo", num_classes=2, multi_label=True, iou_threshold=0.99)[0]
    assert_detections(multi(image, image_ids=["x"])[0], [A0, A1, A0, A1], [0.9, 0.8, 0.7, 0.05], [0, 0, 1, 1])
    single = load(source, tmp_path, output="yolo", num_classes=2, iou_threshold=0.99)[0]
    assert_detections(single(image, image_ids=["x"])[0], [A0, A1, A0], [0.9, 0.8, 0.7], [0, 0, 1])


def test_normalisation_uses_model_mean_and_std(tmp_path):
    """The same images under another mean/std give the detections that mean/std imply, by hand."""
    images, rects, ch1, ch2 = content_images()
    mean, std = (0.5,), (0.25,)  # one value for every channel: channel 0 of 0.1 is -1.6, of 0.9 is 1.6
    model, _ = load(save(ContentBoxes(), "factory", tmp_path), tmp_path, output="boxes", mean=mean, std=std)
    dets = model(images, image_ids=["a", "b", "c"])
    for det, rect, v1, v2 in zip(dets, rects, ch1, ch2):
        assert_detections(det, *expected_content(rect, v1, v2, mean=mean * 3, std=std * 3))
    assert [d.labels[0].item() for d in dets] == [1, 0, 1]  # 0.7, 0.5, 0.6 against mean 0.5
    # Without normalisation (mean 0, std 1) every pixel of channel 0 is > 0: the whole image is the box.
    model, _ = load(save(ContentBoxes(), "factory", tmp_path), tmp_path, output="boxes", mean=(0.0,), std=(1.0,))
    assert model(images, image_ids=["a", "b", "c"])[0].boxes[0].tolist() == [0.0, 0.0, 16.0, 12.0]


def test_onnx_and_torchscript_of_one_net_agree(tmp_path):
    net = RandomYolo(num_classes=3, seed=3).eval()
    (tmp_path / "ts").mkdir()
    (tmp_path / "ox").mkdir()
    scripted, _ = load(save(net, "torchscript", tmp_path / "ts"), tmp_path, output="yolo", score_threshold=0.3)
    onnx, _ = load(save(net, "onnx", tmp_path / "ox"), tmp_path, output="yolo", score_threshold=0.3)
    images = torch.rand(4, 3, *SIZE, generator=torch.Generator().manual_seed(5))
    ids = [f"img{i}" for i in range(4)]
    raw_ts = scripted.net((images - scripted.mean) / scripted.std)
    raw_onnx = onnx.net((images - onnx.mean) / onnx.std)
    torch.testing.assert_close(raw_onnx, raw_ts, atol=1e-5, rtol=0)
    total = 0
    for a, b in zip(scripted(images, image_ids=ids), onnx(images, image_ids=ids)):
        assert a.labels.tolist() == b.labels.tolist()
        torch.testing.assert_close(b.boxes, a.boxes, atol=1e-5, rtol=0)
        torch.testing.assert_close(b.scores, a.scores, atol=1e-5, rtol=0)
        total += len(a)
    assert total > 4  # the comparison covers real detections


def test_onnx_with_a_fixed_batch_pads_and_keeps_every_output(tmp_path):
    """A graph exported for batch 2 runs a batch of 3; its three outputs keep their dtypes (int64 labels)."""
    model, info = load(save(ContentBoxes(), "onnx", tmp_path, batch=2), tmp_path, output="boxes")
    images, rects, ch1, ch2 = content_images()
    raw = model.net((images - model.mean) / model.std)
    assert [tuple(t.shape) for t in raw] == [(3, 2, 4), (3, 2), (3, 2)] and raw[2].dtype == torch.int64
    for det, rect, v1, v2 in zip(model(images, image_ids=["a", "b", "c"]), rects, ch1, ch2):
        assert_detections(det, *expected_content(rect, v1, v2))
    assert info["format"] == "onnx"


def test_factory_weights_are_loaded_and_identify_the_model(tmp_path):
    net = FixedYolo()
    net.cls1.zero_()  # a2 no longer scores: only a0 remains (class 0, 0.9 * s)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    source = {**save(FixedYolo(), "factory", tmp_path), "weights": tmp_path / "w.pt"}
    model, info = load(source, tmp_path, output="yolo", num_classes=2)
    dets = model(yolo_images(), image_ids=["s1", "s05", "s0"])
    assert_detections(dets[0], [A0], [0.9], [0])
    assert_detections(dets[1], [A0], [0.45], [0])
    assert len(dets[2]) == 0
    assert info == {
        "path": str(tmp_path / "w.pt"),
        "sha256": sha256_file(tmp_path / "w.pt"),
        "format": "factory",
        "factory": source["factory"],
        "code_executed": {
            "kind": "factory",
            "name": source["factory"],
            "path": source["factory"].split(":")[0] + ".py",
            "sha256": sha256_file(tmp_path / (source["factory"].split(":")[0] + ".py")),
        },
    }


def test_runs_without_gradients_and_in_eval_mode(tmp_path):
    model, _ = load(save(RandomYolo(), "factory", tmp_path), tmp_path, output="yolo", score_threshold=0.0)
    dets = model(torch.rand(2, 3, *SIZE, requires_grad=True), image_ids=["a", "b"])
    assert not model.training and model.has_gradients
    assert all(not d.boxes.requires_grad and not d.scores.requires_grad for d in dets)


BAD_NETS = {
    "score above 1": (
        "import torch\n\n\nclass Net(torch.nn.Module):\n    def forward(self, x):\n"
        "        s = torch.tensor([[0.5], [1.5]])\n"
        "        return torch.zeros(2, 1, 4), s, torch.zeros(2, 1, dtype=torch.int64)",
        "boxes",
        r"^detector output for image 'b\.jpg': score 0 is 1\.5, not in \[0, 1\]$",
    ),
    "label out of range": (
        "import torch\n\n\nclass Net(torch.nn.Module):\n    def forward(self, x):\n"
        "        return torch.zeros(2, 1, 4), torch.ones(2, 1), torch.tensor([[0], [3]])",
        "boxes",
        r"^detector output for image 'b\.jpg': label 0 is 3, not a class index in \[0, 3\)$",
    ),
    "yolo NaN": (
        "import torch\n\n\nclass Net(torch.nn.Module):\n    def forward(self, x):\n"
        "        out = torch.zeros(2, 7, 5)\n        out[1, 2, 4] = float('nan')\n        return out",
        "yolo",
        r"^detector output \(yolo\) for image 'b\.jpg': anchor 4 has a NaN or infinite value$",
    ),
    "yolo wrong rows": (
        "import torch\n\n\nclass Net(torch.nn.Module):\n    def forward(self, x):\n        return torch.zeros(2, 9, 5)",
        "yolo",
        r"^detector output \(yolo\) for the batch starting at image 'a\.jpg': expected shape",
    ),
    "not detections": (
        "import torch\n\n\nclass Net(torch.nn.Module):\n    def forward(self, x):\n        return x.mean()",
        "boxes",
        r"^detector output \(boxes\) for the batch starting at image 'a\.jpg': expected a list",
    ),
}


@pytest.mark.parametrize("case", BAD_NETS)
def test_outputs_that_break_the_contract_are_one_line_naming_the_image(tmp_path, case):
    source, output, message = BAD_NETS[case]
    name = f"bad_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(source + "\n\n\ndef make():\n    return Net()\n")
    model, _ = load({"factory": f"{name}:make"}, tmp_path, output=output)
    with pytest.raises(AuditError, match=message) as err:
        model(torch.rand(2, 3, *SIZE), image_ids=["a.jpg", "b.jpg"])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("source", "output", "message"),
    [
        ({"path": "missing.pt"}, "boxes", r"missing\.pt: model file not found$"),
        ({"path": "folder"}, "boxes", r"folder: is a folder, not a model file$"),
        ({"path": "junk.onnx"}, "boxes", r"junk\.onnx: unreadable ONNX model"),
        ({"path": "junk.pt"}, "boxes", r"junk\.pt: unreadable model file"),
        ({"factory": "no_such_module_i25:make"}, "boxes", r"^model\.factory: cannot import 'no_such_module_i25:make'"),
        ({"factory": "RAISES"}, "boxes", r"^model\.factory: '.*' raised ValueError: broken$"),
        ({"factory": "NOT_A_MODULE"}, "boxes", r"^model\.factory: '.*' returned int, not a torch\.nn\.Module$"),
        ({"factory": "tiny_detector_nets:make_boxes"}, "ssd", r"^model\.output: 'ssd' is not one of boxes, yolo$"),
    ],
)
def test_missing_files_bad_factories_and_unknown_outputs_are_one_line(tmp_path, source, output, message):
    (tmp_path / "folder").mkdir()
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    if source.get("factory") == "RAISES":
        source = {"factory": write_factory(tmp_path, "", "(_ for _ in ()).throw(ValueError('broken'))")}
    elif source.get("factory") == "NOT_A_MODULE":
        source = {"factory": write_factory(tmp_path, "", "3")}
    elif "path" in source:
        source = {"path": tmp_path / source["path"]}
    if "junk.onnx" in str(source.get("path")):
        pytest.importorskip("onnxruntime")
    with pytest.raises(AuditError, match=message) as err:
        load(source, tmp_path, output=output)
    assert "\n" not in str(err.value)


def test_a_batch_not_at_the_input_size_is_the_callers_mistake(tmp_path):
    model, _ = load(save(ContentBoxes(), "factory", tmp_path), tmp_path, output="boxes")
    with pytest.raises(ValueError, match=r"images are \(16, 12\) but the model's input_size is \(12, 16\)"):
        model(torch.rand(1, 3, 16, 12), image_ids=["a"])
    with pytest.raises(ValueError, match="2 images but 1 image ids"):
        model(torch.rand(2, 3, *SIZE), image_ids=["a"])
    with pytest.raises(ValueError, match="images have 1 channels but mean/std have 3 values"):
        model(torch.rand(1, 1, *SIZE), image_ids=["a"])
    with pytest.raises(ValueError, match="expected a float batch"):
        model(torch.zeros(1, 3, *SIZE, dtype=torch.uint8), image_ids=["a"])
