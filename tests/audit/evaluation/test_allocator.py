"""``allocator: retain``: memory a batch frees is kept for the next batch instead of faulted in again.

Each case runs in a child process (the setting is for the whole process, and a fresh process
starts from glibc's defaults). The child allocates, touches and frees the same blocks many times,
the way every batch of an evaluation does, and counts the page faults of the later rounds
(``ru_minflt``): a page given back to the kernel and touched again is a fault.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audit.contract.config import AuditConfig
from audit.evaluation import allocator

ROOT = Path(__file__).resolve().parents[3]

CHURN = r"""
import ctypes, json, resource, sys
from audit.evaluation.allocator import allocator_setting, apply_allocator
if sys.argv[1] == "restored":  # retained for a block, then restored
    with allocator_setting("retain") as applied:
        pass
else:
    applied = apply_allocator(sys.argv[1])
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
BLOCK, BLOCKS, ROUNDS = 3 << 20, 3, 40

def one_round():  # three 3 MiB blocks, touched, then freed (a batch's temporaries)
    blocks = [libc.malloc(BLOCK) for _ in range(BLOCKS)]
    for b in blocks:
        ctypes.memset(b, 1, BLOCK)
    for b in blocks:
        libc.free(b)

for _ in range(5):  # glibc's thresholds settle
    one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(ROUNDS):
    one_round()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"applied": applied, "faults_per_round": faults / ROUNDS, "round_pages": BLOCKS * BLOCK / 4096}))
"""

glibc_only = pytest.mark.skipif(allocator._mallopt() is None, reason="the allocator setting exists on glibc only")


def _churn(mode: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in list(env):
        if name.startswith("MALLOC_") or name.startswith("GLIBC_TUNABLES"):
            del env[name]  # glibc's defaults, whatever the caller's environment says
    out = subprocess.run(
        [sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True, env=env, cwd=ROOT
    )
    return json.loads(out.stdout)


@glibc_only
def test_retain_keeps_freed_memory_for_the_next_round():
    retained, system = _churn("retain"), _churn("system")
    assert retained["applied"] == "retain" and system["applied"] == "system"
    # glibc's own thresholds give the freed blocks back, and every round faults them in again
    assert system["faults_per_round"] > 0.5 * system["round_pages"], system
    # retained, the same memory serves every round: no page is faulted in again
    assert retained["faults_per_round"] < 0.02 * retained["round_pages"], retained


def test_system_changes_nothing(monkeypatch):
    monkeypatch.setattr(allocator, "_mallopt", lambda: pytest.fail("system must not touch the C library"))
    assert allocator.apply_allocator("system") == "system"


def test_without_glibc_the_run_records_system(monkeypatch):
    monkeypatch.setattr(allocator, "_mallopt", lambda: None)
    assert allocator.apply_allocator("retain") == "system"


def test_a_refused_value_records_system(monkeypatch):
    calls = []

    def refusing(parameter, value):
        calls.append((parameter, value))
        return 0

    monkeypatch.setattr(allocator, "_mallopt", lambda: refusing)
    assert allocator.apply_allocator("retain") == "system"
    assert calls == [(-3, allocator.MMAP_THRESHOLD)]  # nothing set after a refusal


def test_config_key_is_unset_by_default_and_takes_only_its_two_values():
    base = {"model": {"path": "model.pt"}, "data": {"manifest": "manifest.csv"}}
    assert AuditConfig.model_validate(base).allocator is None  # the library leaves the allocator alone
    assert AuditConfig.model_validate({**base, "allocator": "retain"}).allocator == "retain"
    assert AuditConfig.model_validate({**base, "allocator": "system"}).allocator == "system"
    with pytest.raises(ValueError, match="allocator"):
        AuditConfig.model_validate({**base, "allocator": "jemalloc"})


class _Recorder:
    """A stand-in for glibc's ``mallopt`` that records its calls (and accepts or refuses them)."""

    def __init__(self, answer: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def __call__(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return self.answer


@pytest.fixture()
def mallopt(monkeypatch) -> _Recorder:
    recorder = _Recorder()
    monkeypatch.setattr(allocator, "_mallopt", lambda: recorder)
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    return recorder


APPLIED = [(-3, allocator.MMAP_THRESHOLD), (-1, allocator.TRIM_THRESHOLD)]
RESTORED = [(-3, 128 * 1024), (-1, 128 * 1024)]  # glibc's documented start values (mallopt(3))


@pytest.mark.parametrize("mode", [None, "system"])
def test_unset_or_system_never_calls_mallopt(mallopt, mode):
    with allocator.allocator_setting(mode) as applied:
        assert applied == "system"
    assert mallopt.calls == []


def test_retain_is_applied_in_the_block_and_restored_after(mallopt):
    with allocator.allocator_setting("retain") as applied:
        assert applied == "retain" and mallopt.calls == APPLIED
    assert mallopt.calls == APPLIED + RESTORED


def test_retain_is_restored_when_the_block_raises(mallopt):
    with pytest.raises(RuntimeError), allocator.allocator_setting("retain"):
        raise RuntimeError("the evaluation failed")
    assert mallopt.calls == APPLIED + RESTORED


def test_restore_goes_back_to_the_thresholds_the_environment_gave(mallopt, monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2:glibc.malloc.trim_threshold=1048576")
    with allocator.allocator_setting("retain"):
        pass
    assert mallopt.calls == APPLIED + [(-3, 65536), (-1, 1048576)]


def test_a_nested_block_leaves_the_restore_to_the_outer_one(mallopt):
    with allocator.allocator_setting("retain"):
        with allocator.allocator_setting("retain") as inner:
            assert inner == "retain"
        assert mallopt.calls == APPLIED  # still retained
    assert mallopt.calls == APPLIED + RESTORED


def test_a_refused_first_value_touches_nothing_on_exit(mallopt):
    mallopt.answer = 0
    with allocator.allocator_setting("retain") as applied:
        assert applied == "system"
    assert mallopt.calls == [APPLIED[0]]


def test_without_glibc_the_block_runs_with_system(monkeypatch):
    monkeypatch.setattr(allocator, "_mallopt", lambda: None)
    with allocator.allocator_setting("retain") as applied:
        assert applied == "system"


@glibc_only
def test_after_the_block_freed_memory_is_given_back_again():
    """Restored, glibc's start thresholds hold again: a 3 MiB block is mapped and unmapped each round."""
    restored = _churn("restored")
    assert restored["applied"] == "retain"
    assert restored["faults_per_round"] > 0.5 * restored["round_pages"], restored
