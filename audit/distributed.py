"""Distributed execution on torch.distributed (``torchrun … -m audit run config.yaml``).

Each rank takes the deterministic shard ``range(rank, N, world_size)`` of the
samples. Statistics are torchmetrics states with ``dist_reduce_fx="sum"``, so
``compute()`` all-reduces them; because every random quantity (stressor
parameters, attack starts, bootstrap weights) is keyed by sample id, the
merged result equals the single-process one. Each rank writes its own
predictions part; rank 0 merges the parts in dataset order and writes every
output. The backend is NCCL when the ranks run on CUDA devices, gloo otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist


def _env_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank_and_world() -> tuple[int, int]:
    """Initialise the process group when launched by torchrun; return (rank, world size)."""
    world = _env_world()
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("CVAUDIT_DIST_BACKEND") != "gloo" else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def local_device(requested: str) -> str:
    """The device of this rank: ``cuda:LOCAL_RANK`` when CUDA is used, else cpu."""
    if requested == "cpu" or not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"


def shard_indices(n: int, rank: int, world: int) -> list[int]:
    """The sample indices this rank evaluates (deterministic, disjoint, covering)."""
    return list(range(rank, n, world))


def shared_work_dir(path: Path) -> Path:
    """Rank 0's work folder, known to every rank (one shared file system is assumed)."""
    if not is_distributed():
        return path
    obj = [str(path)]
    dist.broadcast_object_list(obj, src=0)
    return Path(obj[0])


def part_path(work: Path, rank: int) -> Path:
    return work / f"predictions.part-{rank:05d}.csv"


def gather_lists(items: list[Any]) -> list[Any]:
    """Concatenate a small per-rank list (skipped images, attack failures) on every rank."""
    if not is_distributed():
        return items
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, items)
    return [x for part in out for x in part]


def barrier() -> None:
    if is_distributed():
        dist.barrier()
