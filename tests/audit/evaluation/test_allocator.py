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
from audit.evaluation.allocator import apply_allocator
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


def test_config_key_defaults_to_retain_and_takes_only_its_two_values():
    base = {"model": {"path": "model.pt"}, "data": {"manifest": "manifest.csv"}}
    assert AuditConfig.model_validate(base).allocator == "retain"
    assert AuditConfig.model_validate({**base, "allocator": "system"}).allocator == "system"
    with pytest.raises(ValueError, match="allocator"):
        AuditConfig.model_validate({**base, "allocator": "jemalloc"})
