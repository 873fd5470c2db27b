"""Detector loading names the code it executes and refuses pickled detectors (issue 31 point 7)."""

from __future__ import annotations

import hashlib
import uuid

import pytest
import torch
from tiny_detector_nets import ContentBoxes

from audit.contract.config import ModelConfig
from audit.contract.errors import AuditError
from audit.evaluation.detection.model import load_detector

CPU = torch.device("cpu")
SIZE = (12, 16)


def _load(tmp_path, **source):
    cfg = ModelConfig(**source, input_size=SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return load_detector(cfg, output="boxes", num_classes=3, device=CPU, base_dir=tmp_path)


def test_factory_detector_names_module_function_and_digest(tmp_path):
    name = f"detfactory_{uuid.uuid4().hex}"
    module = tmp_path / f"{name}.py"
    module.write_text("from tiny_detector_nets import ContentBoxes\n\n\ndef make():\n    return ContentBoxes()\n")
    _, info = _load(tmp_path, factory=f"{name}:make")
    assert info["code_executed"] == {
        "kind": "factory",
        "name": f"{name}:make",
        "path": module.name,
        "sha256": hashlib.sha256(module.read_bytes()).hexdigest(),
    }


def test_torchscript_detector_names_its_program(tmp_path):
    path = tmp_path / "det.pt"
    torch.jit.save(torch.jit.script(ContentBoxes()), str(path))
    _, info = _load(tmp_path, path=path)
    assert info["code_executed"] == {
        "kind": "torchscript",
        "name": "det.pt",
        "path": str(path),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def test_pickled_detector_is_refused_in_one_line(tmp_path):
    path = tmp_path / "det.pt"
    torch.save(ContentBoxes(), path)
    with pytest.raises(AuditError) as err:
        _load(tmp_path, path=path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "pickled model" in message and ".pt2" in message
