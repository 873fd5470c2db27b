"""Distributed execution on torch.distributed (``torchrun … -m audit run config.yaml``).

Each rank takes the deterministic shard ``range(rank, N, world_size)`` of the
samples. Statistics are torchmetrics states with ``dist_reduce_fx="sum"``, so
``compute()`` all-reduces them; because every random quantity (stressor
parameters, attack starts, bootstrap weights) is keyed by sample id, the
merged result equals the single-process one. Each rank writes its own
predictions part; rank 0 merges the parts in dataset order and writes every
output. The statistics live on the CPU, so they are reduced with gloo; CUDA ranks
add NCCL for CUDA tensors (``cpu:gloo,cuda:nccl``), each bound to its own GPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

#: cvaudit initialised the default process group (and so destroys it in :func:`shutdown`); a group the caller
#: initialised is the caller's to destroy.
_owned = False


def _env_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank_and_world(requested_device: str = "auto") -> tuple[int, int]:
    """Initialise the process group when launched by torchrun; return (rank, world size)."""
    global _owned
    world = _env_world()
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group(backend=backend_for(requested_device))
        _owned = True
    return dist.get_rank(), dist.get_world_size()


def shutdown() -> None:
    """Destroy the process group :func:`rank_and_world` initialised, on this rank, while Python is fully alive.

    Left to the interpreter's exit, gloo's worker threads may still hold work objects whose tensors reference
    Python objects; destroying them during finalization aborts the process (SIGABRT, exit -6; pytorch/pytorch
    PR 179291 describes it). A rank that finishes first (every rank but 0 returns once its shard is evaluated)
    then killed the run: torchrun stopped rank 0 before it wrote the outputs. Idempotent; a group the caller
    initialised is left alone.
    """
    global _owned
    if _owned and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _owned = False


def backend_for(requested_device: str) -> str:
    """gloo for CPU ranks; for CUDA ranks NCCL for CUDA tensors and gloo for the CPU-side
    statistics and object collectives (``cpu:gloo,cuda:nccl``). Each CUDA rank first
    binds to its own GPU (``LOCAL_RANK``). ``CVAUDIT_DIST_BACKEND=gloo`` forces gloo."""
    if os.environ.get("CVAUDIT_DIST_BACKEND") == "gloo" or local_device(requested_device) == "cpu":
        return "gloo"
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return "cpu:gloo,cuda:nccl"


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def local_device(requested: str) -> str:
    """The device of this rank: ``cuda:LOCAL_RANK`` when CUDA is used, else cpu."""
    if requested == "cpu" or not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"


def shard_indices(n: int, rank: int, world: int) -> range:
    """The sample indices this rank evaluates (deterministic, disjoint, covering), as a range (no list)."""
    return range(rank, n, world)


def shared_work_dir(path: Path) -> Path:
    """Rank 0's work folder, known to every rank (one shared file system is assumed)."""
    if not is_distributed():
        return path
    obj = [str(path)]
    dist.broadcast_object_list(obj, src=0)
    return Path(obj[0])


def part_path(work: Path, rank: int) -> Path:
    return work / f"predictions.part-{rank:05d}.csv"


def sum_counts(counts: dict[str, int]) -> dict[str, int]:
    """Add small per-rank counters (e.g. attack failed starts) across ranks."""
    if not is_distributed():
        return counts
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, counts)
    total: dict[str, int] = {}
    for part in out:
        for key, value in part.items():
            total[key] = total.get(key, 0) + value
    return total


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
