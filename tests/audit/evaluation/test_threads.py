"""Thread and worker defaults: never more busy threads than cores; config and OMP_NUM_THREADS win."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from audit.evaluation import threads as th


@pytest.fixture
def cores(monkeypatch):
    def set_cores(n: int, *, ranks: int | None = None, torch_threads: int = 64):
        monkeypatch.setattr(th.os, "sched_getaffinity", lambda pid: set(range(n)))
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        if ranks is None:
            monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
        else:
            monkeypatch.setenv("LOCAL_WORLD_SIZE", str(ranks))
        monkeypatch.setattr(th.torch, "get_num_threads", lambda: torch_threads)

    return set_cores


@pytest.mark.parametrize(
    ("n_cores", "pixels", "workers"),
    [
        (1, 224 * 224, 0),  # one core: decoding in the main process
        (2, 32 * 32, 1),
        (2, 1024 * 1024, 1),  # never more than the cores but one
        (8, 32 * 32, 1),  # small images: one worker keeps ahead
        (8, 224 * 224, 4),
        (16, 224 * 224, 4),
        (16, 512 * 512, 8),
        (64, 4000 * 3000, 8),
    ],
)
def test_default_workers_follow_cores_and_image_size(n_cores, pixels, workers):
    assert th.default_num_workers(n_cores, pixels) == workers


def _plan(**kwargs):
    args = {
        "threads": None,
        "num_workers": None,
        "device": torch.device("cpu"),
        "input_size": (32, 32),
        "first_image": None,
    }
    return th.plan_threads(**{**args, **kwargs})


@pytest.mark.parametrize(("n_cores", "expected"), [(1, (1, 0)), (2, (1, 1)), (8, (7, 1)), (16, (15, 1))])
def test_default_threads_are_the_cores_the_workers_leave(cores, n_cores, expected):
    cores(n_cores)
    plan = _plan()
    assert (plan.threads, plan.num_workers) == expected
    assert plan.threads + plan.num_workers <= max(n_cores, 1)
    assert (plan.threads_from, plan.workers_from) == ("default", "default")


def test_threads_never_exceed_torchs_default(cores):
    cores(32, torch_threads=4)
    assert _plan(num_workers=2).threads == 4


def test_the_first_images_own_size_counts(cores, tmp_path):
    cores(16)
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((600, 800, 3), np.uint8)).save(big)
    assert _plan(first_image=big).num_workers == 8  # 800x600 source images, though the model sees 32x32
    assert _plan(first_image=tmp_path / "missing.png").num_workers == 1


def test_a_decompression_bomb_as_the_first_image_is_left_to_the_decoder(cores, tmp_path):
    """Regression: Pillow's DecompressionBombError from the header read crashed the run as an internal error."""
    from cvaudit_fixtures import write_png_bomb

    cores(16)
    bomb = write_png_bomb(tmp_path / "bomb.png", 20_000, 20_000)
    assert _plan(first_image=bomb).num_workers == 1  # sized by the model's 32x32 input


def test_config_and_environment_win(cores, monkeypatch):
    cores(8)
    plan = _plan(threads=3, num_workers=5)
    assert (plan.threads, plan.num_workers, plan.threads_from, plan.workers_from) == (3, 5, "config", "config")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    plan = _plan()
    assert plan.threads_from == "OMP_NUM_THREADS" and plan.threads == 64  # torch's value, whatever it is


def test_gpu_leaves_threads_alone(cores):
    cores(8)
    plan = _plan(device=torch.device("cuda"))
    assert (plan.threads, plan.threads_from) == (64, "torch")


def test_ranks_share_the_cores(cores):
    cores(8, ranks=4)
    plan = _plan()
    assert (plan.cores, plan.num_workers, plan.threads) == (2, 1, 1)


def test_using_threads_restores_torchs_setting():
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    plan = th.ThreadPlan(target, 0, 2, "config", "config")
    with th.using_threads(plan):
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before
