"""CPU threads and DataLoader workers that do not oversubscribe the cores, on a shared machine too.

Decoding runs in DataLoader worker processes (one thread each: PyTorch sets it); the model and the
stressors run in the main process on torch's intra-op threads. torch's own default is one thread per
physical core, whatever else runs: with workers decoding beside it that asks for more threads than
there are cores, and on a machine shared with other jobs every elementwise operation then waits for
a descheduled thread (measured in ``benchmarks/README.md``, "Threads and workers").

Defaults (each can be set in the config; docs/running.md):

- the **cores** are the CPUs this process may run on (``os.sched_getaffinity``), divided by the
  processes ``torchrun`` starts on this machine (``LOCAL_WORLD_SIZE``);
- ``data.num_workers`` (null = automatic): 0 on one core (a worker would only add the hand-over);
  else 1 for images of at most 64x64 pixels (decoding is cheaper than a forward pass, one worker
  keeps ahead), at most 4 up to 256x256 pixels and at most 8 above, never more than the cores but
  one. The image size is the larger of ``model.input_size`` and the first image's own size (its
  header is read, not decoded);
- ``threads`` (null = automatic, on the CPU only): the cores not given to workers, at least 1 and
  at most torch's default. When ``OMP_NUM_THREADS`` is set (torchrun sets it to 1 per process),
  that value is kept. On a GPU the threads are left as torch sets them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["ThreadPlan", "available_cores", "default_num_workers", "plan_threads", "using_threads"]

SMALL_IMAGE = 64 * 64
MEDIUM_IMAGE = 256 * 256


def available_cores() -> int:
    """CPUs this process may use, shared among the ranks ``torchrun`` started on this machine."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, cores // max(1, ranks))


def default_num_workers(cores: int, pixels: int) -> int:
    """DataLoader workers for ``cores`` cores and images of ``pixels`` pixels (see the module docstring).

    >>> default_num_workers(1, 224 * 224), default_num_workers(2, 32 * 32), default_num_workers(16, 224 * 224)
    (0, 1, 4)
    """
    if cores <= 1:
        return 0
    cap = 1 if pixels <= SMALL_IMAGE else 4 if pixels <= MEDIUM_IMAGE else 8
    return max(1, min(cores - 1, cap))


def _first_image_pixels(path: Path | None) -> int:
    """The first image's pixel count from its header, or 0 when it cannot be read (the decoder reports that).

    An image Pillow refuses as a decompression bomb counts as 0 here too: it is refused, as a bad
    image, when it is decoded.
    """
    if path is None:
        return 0
    from PIL import Image

    from audit.contract.config import DEFAULT_IMAGE_FORMATS

    try:  # only the default formats' plugins: never one that starts a program (EPS runs Ghostscript)
        with Image.open(path, formats=list(DEFAULT_IMAGE_FORMATS)) as img:  # reads the header only
            return int(img.size[0] * img.size[1])
    except Exception:  # any decoder error (a plugin's own type included): the decoder reports it
        return 0


@dataclass(frozen=True)
class ThreadPlan:
    """What the run uses (written to results.json ``provenance``).

    Attributes:
        threads: torch intra-op threads of the main process.
        num_workers: DataLoader worker processes.
        cores: the cores the defaults were computed from.
        threads_from: ``config``, ``OMP_NUM_THREADS``, ``default`` or ``torch`` (left as torch set it: GPU).
        workers_from: ``config`` or ``default``.
    """

    threads: int
    num_workers: int
    cores: int
    threads_from: str
    workers_from: str


def plan_threads(
    *,
    threads: int | None,
    num_workers: int | None,
    device: torch.device,
    input_size: tuple[int, int],
    first_image: Path | None,
) -> ThreadPlan:
    """Decide the threads and workers of a run (see the module docstring).

    Args:
        threads: the config's ``threads`` (None: automatic).
        num_workers: the config's ``data.num_workers`` (None: automatic).
        device: where the model runs.
        input_size: the model's (H, W).
        first_image: the first sample's image file, or None (npz data).
    """
    cores = available_cores()
    if num_workers is None:
        pixels = max(input_size[0] * input_size[1], _first_image_pixels(first_image))
        workers, workers_from = default_num_workers(cores, pixels), "default"
    else:
        workers, workers_from = num_workers, "config"
    if threads is not None:
        return ThreadPlan(threads, workers, cores, "config", workers_from)
    if device.type != "cpu":
        return ThreadPlan(torch.get_num_threads(), workers, cores, "torch", workers_from)
    if os.environ.get("OMP_NUM_THREADS"):
        return ThreadPlan(torch.get_num_threads(), workers, cores, "OMP_NUM_THREADS", workers_from)
    chosen = max(1, min(torch.get_num_threads(), cores - workers))
    return ThreadPlan(chosen, workers, cores, "default", workers_from)


@contextmanager
def using_threads(plan: ThreadPlan) -> Iterator[None]:
    """Run the block with ``plan.threads`` intra-op threads; torch's setting is restored afterwards."""
    before = torch.get_num_threads()
    if plan.threads != before:
        torch.set_num_threads(plan.threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
