"""All-or-nothing outputs of `cvaudit run`: real processes killed with SIGKILL at every step, and the lock.

A signed run first fills --out (the old set) next to a user's own files. Then a
second run with another policy threshold (so its results differ) is started in
a subprocess that kills itself with SIGKILL right after one step: after each
output file lands in the staging folder, after the swap, after the user's files
are carried over. Whatever the step, --out must hold the complete old set or
the complete new set (checked with `cvaudit verify --key`), never a mix; and
the next run must clean up the leftover and report it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cvaudit_fixtures import write_config

from audit.cli import main

KILLER = """
import os, signal, sys
from pathlib import Path
import reports.outputs as outputs

step = sys.argv.pop(1)
real_replace = os.replace


def replace(src, dst, *args, **kwargs):
    real_replace(src, dst, *args, **kwargs)
    dst = Path(dst)
    if dst.name == step and dst.parent.name == "out" and ".cvaudit-" in dst.parent.parent.name:
        os.kill(os.getpid(), signal.SIGKILL)


def after(name):
    if name == step:
        os.kill(os.getpid(), signal.SIGKILL)


os.replace = replace
outputs._after = after
from audit.cli import main
sys.exit(main())
"""

STAGED = ["predictions.csv", "results.json", "junit.xml", "report.html", "report.pdf", "attestation.dsse.json"]
AFTER_SWAP = ["swapped", "carried"]


def _config(workspace: Path, threshold: float) -> Path:
    cfg = write_config(
        workspace, threshold=threshold, stressors="  - {name: night, severities: [3]}\n", extra="  sign_key: keys\n"
    )
    cfg.write_text(cfg.read_text().replace("formats: [html]", "formats: [html, pdf]"))
    return cfg


def _children_cpu_seconds() -> float:
    """CPU seconds used by the child processes this process has waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cli(*args: str, env: dict | None = None, killer_step: str | None = None) -> subprocess.CompletedProcess:
    if killer_step is None:
        command = [sys.executable, "-m", "audit", *args]
    else:
        command = [sys.executable, "-c", KILLER, killer_step, *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "CVAUDIT_TRUST": "", **(env or {})}
    )


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def old_run(tmp_path_factory):
    """A workspace whose out/ holds a signed run (verdict pass) and the user's notes.txt and workspace/."""
    from cvaudit_fixtures import ColourNet, make_dataset, save_model

    root = tmp_path_factory.mktemp("crash")
    make_dataset(root)
    save_model(root / "model.pt", ColourNet())
    assert CliRunner().invoke(main, ["keygen", "--out", str(root / "keys")]).exit_code == 0
    out = root / "out"
    result = _cli("run", str(_config(root, 0.5)), "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    (out / "notes.txt").write_text("the user's own notes\n")
    (out / "workspace").mkdir()
    (out / "workspace" / "data.txt").write_text("kept\n")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("step", STAGED + AFTER_SWAP)
def test_sigkill_at_each_step_leaves_old_or_new_set(old_run, tmp_path, step):
    root = tmp_path / "ws"
    shutil.copytree(old_run, root, symlinks=True)
    out = root / "out"
    old = _snapshot(out)
    cfg = _config(root, 1.01)  # the new run fails its policy: results.json differs from the old one
    killed = _cli("run", str(cfg), "--out", str(out), "--quiet", killer_step=step)
    assert killed.returncode == -9, (step, killed.returncode, killed.stderr[-2000:])
    leftovers = [p for p in root.iterdir() if p.name.startswith(".out.cvaudit-") and p.is_dir()]
    assert len(leftovers) == 1  # the killed run's work folder

    now = _snapshot(out)
    verify = _cli("verify", str(out), "--key", str(root / "keys"))
    assert verify.returncode == 0, (step, verify.stdout, verify.stderr)  # a complete, consistent, signed set
    verdict = json.loads(now["results.json"])["policy"]["verdict"]
    if step in STAGED:
        assert now == old, step  # byte for byte the old set, the user's files included
        assert (out / "workspace" / "data.txt").is_file()
    else:
        assert verdict == "fail" and now["results.json"] != old["results.json"], step
        assert set(now) - {"notes.txt"} == set(old) - {"notes.txt"}
    if step == "carried":
        assert (out / "notes.txt").is_file() and (out / "workspace" / "data.txt").is_file()

    # the next run into the same place cleans up (and puts the user's files back after a swap)
    again = _cli("run", str(cfg), "--out", str(out), "--quiet")
    assert again.returncode == 1, again.stderr  # the new policy fails: a verdict, not an error
    assert "interrupted run" in again.stderr and "cvaudit: warning:" in again.stderr
    assert not [p for p in root.iterdir() if p.name.startswith(".out.cvaudit-")]
    assert (out / "notes.txt").read_text() == "the user's own notes\n"
    assert (out / "workspace" / "data.txt").is_file()
    assert _cli("verify", str(out), "--key", str(root / "keys")).returncode == 0


HOLDER = """
import sys, time
from reports.outputs import OutputTransaction
t = OutputTransaction(sys.argv[1])
t.begin()
print("locked", flush=True)
time.sleep(120)
"""


@pytest.mark.slow
def test_a_second_run_into_the_same_out_exits_2_naming_the_pid(old_run, tmp_path):
    root = tmp_path / "ws"
    shutil.copytree(old_run, root, symlinks=True)
    out = root / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = _snapshot(out)
        cpu_before = _children_cpu_seconds()
        second = _cli("run", str(_config(root, 0.5)), "--out", str(out), "--quiet")
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {holder.pid}" in lines[0] and "another cvaudit process" in lines[0]
        # it fails at once, before evaluating anything: a CPU budget far below one evaluation, not a wall clock
        assert _children_cpu_seconds() - cpu_before < 60
        assert _snapshot(out) == before
    finally:
        holder.kill()
        holder.wait()
    # the holder died with its work folder: the next run removes it and runs
    third = _cli("run", str(_config(root, 0.5)), "--out", str(out), "--quiet")
    assert third.returncode == 0, third.stderr
    assert f"pid {holder.pid}" in third.stderr and "interrupted run" in third.stderr
    assert not [p for p in root.iterdir() if p.name.startswith(".out.cvaudit-")]
