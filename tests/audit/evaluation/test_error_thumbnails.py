"""stressed_thumbnails: a sample is stressed alike whatever it is batched with; nothing without images; unknown ids refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from audit.contract.config import ModelConfig
from audit.evaluation.conditions import Condition
from audit.evaluation.error_thumbnails import stressed_thumbnails
from audit.evaluation.table import SampleTable
from stressors import get

MODEL = ModelConfig(path="m.pt", input_size=(16, 16))


@pytest.fixture
def table(tmp_path) -> SampleTable:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return SampleTable(tmp_path / "manifest.csv", [f"s{i}" for i in range(6)], [i % 3 for i in range(6)], {}, paths)


def _thumbnails(table, wanted, mode="raw"):
    night = get("night", severities=[3])
    return stressed_thumbnails(
        model=torch.nn.Identity(),
        table=table,
        model_cfg=MODEL,
        conditions=[Condition("clean"), Condition("night@3", night, 3, "night")],
        wanted=wanted,
        keys=torch.from_numpy(table.keys),
        seed=7,
        device=torch.device("cpu"),
        mode=mode,
    )


def test_a_sample_is_stressed_alike_alone_or_with_others(table):
    together = _thumbnails(table, {"night@3": ["s4", "s1", "s0"], "clean": ["s1"]})
    assert set(together) == {("night@3", "s4"), ("night@3", "s1"), ("night@3", "s0"), ("clean", "s1")}
    for sid in ("s4", "s1", "s0"):
        assert _thumbnails(table, {"night@3": [sid]})[("night@3", sid)] == together[("night@3", sid)]
    assert together[("night@3", "s1")] != together[("clean", "s1")]


def test_no_images_no_thumbnails_and_unknown_ids_are_refused(table):
    assert _thumbnails(table, {"night@3": ["s1"]}, mode="none") == {}
    with pytest.raises(KeyError):
        _thumbnails(table, {"night@3": ["nope"]})
