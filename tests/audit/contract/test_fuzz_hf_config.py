"""Property-based fuzzing of what cvaudit reads itself from a Hugging Face model folder.

``model.format: huggingface`` points at a folder; before transformers sees it, cvaudit reads
``config.json`` (:func:`audit.evaluation.hf_model._read_config`: model_type, no ``auto_map``) and
``model.safetensors.index.json`` (:func:`audit.evaluation.hf_model._weights`: the shard list).
Both are private steps of :func:`resolve_hf_config` / :func:`load_hf_model`, fuzzed directly so
that the test runs without transformers installed; with transformers,
:func:`resolve_hf_config` is fuzzed end to end too. Every input either passes or raises one
well-formed :class:`CvauditError` within the bounds of :func:`fuzz_kit.check`.
``CVAUDIT_FUZZ=smoke|ci|long`` sets the number of examples.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from fuzz_kit import check, duplicate_keys, fuzz_settings, inputs
from hypothesis import given

from audit.contract.config import ModelConfig
from audit.contract.errors import CvauditError
from audit.evaluation.hf_model import _read_config, _weights, resolve_hf_config

CONFIG = {
    "model_type": "vit",
    "architectures": ["ViTForImageClassification"],
    "id2label": {"0": "cat", "1": "dog"},
    "label2id": {"cat": 0, "dog": 1},
    "num_channels": 3,
    "image_size": 8,
}
VALID_CONFIG = json.dumps(CONFIG).encode()
INDEX = {"metadata": {"total_size": 8}, "weight_map": {"a.weight": "model-1.safetensors", "b": "model-2.safetensors"}}
VALID_INDEX = json.dumps(INDEX).encode()
KEYS = ["model_type", "architectures", "id2label", "label2id", "auto_map", "num_channels", "weight_map", "metadata"]


# Crashes these tests found (integer digits, nesting, long shard names, architectures: true) are fixed;
# each has a regression below or in test_fuzz_shapes.py.
KNOWN: list = []


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hf")
    (path / "model-1.safetensors").write_bytes(b"")
    return path


@fuzz_settings(0.1)
@given(data=inputs(KEYS, VALID_CONFIG, CONFIG) | duplicate_keys(VALID_CONFIG))
def test_config_json(folder, data):
    (folder / "config.json").write_bytes(data)
    check(lambda: _read_config(folder), known=KNOWN)


@fuzz_settings(0.05)
@given(data=inputs(KEYS, VALID_INDEX, INDEX) | duplicate_keys(VALID_INDEX))
def test_safetensors_index(folder, data):
    (folder / "model.safetensors.index.json").write_bytes(data)
    check(lambda: _weights(folder), known=KNOWN)


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="needs the hf extra (transformers)")
@fuzz_settings(0.01)  # transformers' AutoConfig costs ~0.3 s an example
@given(data=inputs(KEYS, VALID_CONFIG, CONFIG))
def test_resolve_hf_config(folder, data):
    (folder / "config.json").write_bytes(data)
    cfg = ModelConfig.model_validate({"path": str(folder), "format": "huggingface"})
    check(lambda: resolve_hf_config(cfg), known=KNOWN)


def test_templates_pass(folder):
    """The valid templates pass, so mutations start from files the readers accept."""
    (folder / "config.json").write_bytes(VALID_CONFIG)
    assert _read_config(folder)["model_type"] == "vit"
    (folder / "model.safetensors.index.json").write_bytes(VALID_INDEX)
    with pytest.raises(Exception, match="model-2.safetensors is missing"):
        _weights(folder)


def test_long_shard_name_regression(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_bytes(b'{"weight_map": {"a": "' + b"1" * 5000 + b'"}}')
    check(lambda: _weights(tmp_path))


def test_a_shard_outside_the_model_folder_is_refused(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_bytes(b'{"weight_map": {"a": "../../elsewhere.safetensors"}}')
    with pytest.raises(CvauditError, match="is not a file name in the model folder"):
        _weights(tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="needs the hf extra (transformers)")
def test_architectures_not_a_list_regression(tmp_path):
    (tmp_path / "config.json").write_bytes(b'{"model_type": "vit", "architectures": true}')
    cfg = ModelConfig.model_validate({"path": str(tmp_path), "format": "huggingface"})
    check(lambda: resolve_hf_config(cfg))
