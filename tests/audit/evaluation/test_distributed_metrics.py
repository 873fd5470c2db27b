"""Two gloo processes, each with a shard, give exactly the single-process AuditStats result."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from audit.evaluation.metrics import AuditStats

N, K, SLOTS, BOOT = 300, 5, 4, 60


def _data():
    g = torch.Generator().manual_seed(42)
    probs = torch.softmax(torch.randn(N, K, generator=g) * 2, dim=1)
    labels = torch.randint(0, K, (N,), generator=g)
    slots = torch.stack([torch.zeros(N, dtype=torch.long), 1 + torch.randint(0, SLOTS - 1, (N,), generator=g)], 1)
    keys = torch.randint(0, 2**62, (N,), generator=g)
    return probs, labels, slots, keys


def _settings():
    return {"num_classes": K, "num_slots": SLOTS, "n_bootstrap": BOOT, "top_k": 2, "seed": 3}


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        probs, labels, slots, keys = _data()
        metric = AuditStats(**_settings())
        shard = torch.arange(rank, N, world)
        for chunk in torch.split(shard, 37):  # batch boundaries differ from the single-process run
            metric.update(probs[chunk], labels[chunk], slots[chunk], keys[chunk])
        result = metric.compute()  # all-reduces the states
        (Path(out_dir) / f"rank{rank}.pkl").write_bytes(pickle.dumps(result))
    finally:
        dist.destroy_process_group()


def _compare(a, b, path="result"):
    """Integers (counts, accuracies, their intervals, bootstrap counts) exactly; float sums to 1e-12."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _compare(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _compare(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and path.split(".")[-1].split("[")[0] in {
        "ece",
        "ece_ci",
        "mce",
        "adaptive_ece",
        "brier",
        "brier_ci",
        "nll",
        "nll_ci",
        "debiased_l2_ce",
        "debiased_l2_ce_ci",
        "confidence",
    }:
        assert abs(a - b) <= 1e-12 * max(1.0, abs(a)), f"{path}: {a} vs {b}"
    else:
        assert a == b, f"{path}: {a} vs {b}"


def test_two_process_gloo_equals_single_process(tmp_path):
    probs, labels, slots, keys = _data()
    single = AuditStats(**_settings())
    single.update(probs, labels, slots, keys)
    expected = single.compute()
    # fork lets the children inherit the imported modules (seconds saved); it is unsafe once CUDA is initialised
    method = "spawn" if torch.cuda.is_initialized() else "fork"
    mp.start_processes(
        _worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True, start_method=method
    )
    for rank in range(2):
        _compare(pickle.loads((tmp_path / f"rank{rank}.pkl").read_bytes()), expected)
    assert expected[0]["accuracy_ci"] is not None


def test_shutdown_destroys_only_the_group_cvaudit_initialised(monkeypatch, tmp_path):
    """A group rank_and_world initialised is destroyed by shutdown() (before the interpreter's exit, where gloo's
    threads may abort the process); a group the caller initialised is the caller's."""
    from audit.evaluation import distributed

    real_init = dist.init_process_group
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'caller'}", rank=0, world_size=1)
    try:
        distributed.shutdown()
        assert dist.is_initialized()  # the caller's group stays
    finally:
        dist.destroy_process_group()

    def one_process_group(backend: str) -> None:  # torchrun's env:// rendezvous, here of one process
        real_init(backend, init_method=f"file://{tmp_path / 'ours'}", rank=0, world_size=1)

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "init_process_group", one_process_group)
    assert distributed.rank_and_world("cpu") == (0, 1)
    assert dist.is_initialized()
    distributed.shutdown()
    assert not dist.is_initialized()
    distributed.shutdown()  # idempotent
