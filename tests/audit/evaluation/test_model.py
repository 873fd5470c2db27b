"""Model loading: TorchScript, torch.export, factory + weights, ONNX; output checks."""

import random
import re

import pytest
import torch
from torch import nn

from audit.contract.config import ModelConfig
from audit.contract.errors import AuditError
from audit.evaluation.model import check_probabilities, load_model

CPU = torch.device("cpu")


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def tiny_factory():
    torch.manual_seed(0)
    return Tiny()


def _cfg(**kw):
    base = dict(input_size=(8, 8), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    base.update(kw)
    return ModelConfig(**base)


@pytest.fixture()
def net():
    return tiny_factory().eval()


def _expected(net, x):
    with torch.no_grad():
        return net((x - 0.5) / 0.25)


def test_torchscript_and_normalisation(tmp_path, net):
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    model, info = load_model(_cfg(path=path), CPU)
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), _expected(net, x), atol=1e-6)
    assert info["format"] == "torchscript" and len(info["sha256"]) == 64


def test_torch_export_program_keeps_gradients(tmp_path, net):
    path = tmp_path / "m.pt2"
    torch.export.save(
        torch.export.export(net, (torch.rand(2, 3, 8, 8),), dynamic_shapes=({0: torch.export.Dim("b")},)), str(path)
    )
    model, info = load_model(_cfg(path=path), CPU)
    x = torch.rand(3, 3, 8, 8, requires_grad=True)
    model(x).sum().backward()
    assert info["format"] == "torch.export" and x.grad is not None and x.grad.abs().sum() > 0


def test_factory_with_weights(tmp_path, net):
    torch.save(net.state_dict(), tmp_path / "w.pt")
    model, info = load_model(
        _cfg(factory="tests.audit.evaluation.test_model:tiny_factory", weights=tmp_path / "w.pt"), CPU
    )
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), _expected(net, x), atol=1e-6)
    assert info["format"] == "factory"


def test_onnx_fixed_batch_is_padded(tmp_path, net):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = tmp_path / "m.onnx"
    torch.onnx.export(net, (torch.rand(4, 3, 8, 8),), str(path), dynamo=True)
    model, info = load_model(_cfg(path=path), CPU)
    x = torch.rand(6, 3, 8, 8)  # not a multiple of the fixed batch of 4
    assert torch.allclose(model(x), _expected(net, x), atol=1e-5)
    assert model.has_gradients is False and info["format"] == "onnx"


def test_probability_models_are_checked():
    check_probabilities(torch.tensor([[0.2, 0.8]]))
    with pytest.raises(AuditError, match="do not sum to 1"):
        check_probabilities(torch.tensor([[0.2, 0.7]]))
    with pytest.raises(AuditError, match="NaN or inf"):
        check_probabilities(torch.tensor([[float("nan"), 1.0]]))


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"path": "missing.pt"}, "model file not found"),
        ({"path": "garbage.pt"}, "unreadable model file"),
        ({"factory": "no.such.module:f"}, "cannot import"),
        (
            {"factory": "tests.audit.evaluation.test_model:tiny_factory", "weights": "bad.pt"},
            "does not match the factory",
        ),
    ],
)
def test_bad_models(tmp_path, kwargs, expected):
    (tmp_path / "garbage.pt").write_bytes(b"\x00garbage")
    torch.save({"other": torch.zeros(1)}, tmp_path / "bad.pt")
    kwargs = {k: (tmp_path / v if k in ("path", "weights") else v) for k, v in kwargs.items()}
    with pytest.raises(AuditError, match=expected):
        load_model(_cfg(**kwargs), CPU)


class FactoryFailure(Exception):
    """A user's own exception type, unknown to cvaudit."""


def failing_factory():
    raise FactoryFailure("no weights for this backbone")


def _damaged(data: bytes, seed: int) -> bytes:
    """``data`` truncated (even seeds) or with a few bytes overwritten (odd seeds), reproducibly."""
    rng = random.Random(seed)
    if seed % 2 == 0:
        return data[: rng.randrange(len(data))]
    out = bytearray(data)
    for _ in range(rng.randrange(1, 20)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def test_a_factory_raising_its_own_exception_becomes_one_line(tmp_path):
    cfg = _cfg(factory="tests.audit.evaluation.test_model:failing_factory")
    with pytest.raises(AuditError, match=r"raised FactoryFailure: no weights for this backbone$"):
        load_model(cfg, CPU)


@pytest.mark.parametrize("seed", range(12))
def test_damaged_model_files_are_unreadable_not_a_traceback(tmp_path, net, seed):
    """TorchScript, torch.export and state_dict files, truncated or overwritten: loaded, or one AuditError."""
    torch.jit.save(torch.jit.script(net), tmp_path / "ts.pt")
    torch.export.save(torch.export.export(net, (torch.rand(1, 3, 8, 8),)), tmp_path / "ep.pt2")
    torch.save(net.state_dict(), tmp_path / "w.pt")
    cases = [
        ({"path": "ts.pt"}, "unreadable model file"),
        ({"path": "ep.pt2"}, "unreadable torch.export program"),
        ({"path": "ep.pt"}, "unreadable model file"),  # a torch.export program without its suffix
        (
            {"factory": "tests.audit.evaluation.test_model:tiny_factory", "weights": "w.pt"},
            "unreadable state_dict|does not match",
        ),
    ]
    (tmp_path / "ep.pt").write_bytes((tmp_path / "ep.pt2").read_bytes())
    for kwargs, expected in cases:
        name = kwargs.get("weights") or kwargs["path"]
        (tmp_path / name).write_bytes(_damaged((tmp_path / name).read_bytes(), seed))
        kwargs = {k: (tmp_path / v if k in ("path", "weights") else v) for k, v in kwargs.items()}
        try:
            load_model(_cfg(**kwargs), CPU)
        except AuditError as err:
            assert "\n" not in str(err)
            assert re.search(expected, str(err)), (name, str(err))


def test_a_damaged_onnx_file_is_unreadable(tmp_path):
    pytest.importorskip("onnxruntime")
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07garbage, not a protobuf")
    with pytest.raises(AuditError, match=r"m.onnx: unreadable ONNX model \(\w+\)$"):
        load_model(_cfg(path=tmp_path / "m.onnx"), CPU)
