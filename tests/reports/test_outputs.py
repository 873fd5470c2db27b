"""reports.outputs: the staging folder swapped in as a whole, the lock, and recovery after a crash."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import reports.outputs as outputs
from reports.outputs import (
    MARKER_FILE,
    OutputBusyError,
    OutputError,
    OutputTransaction,
    lock_path,
    recover_leftovers,
)


def _write(folder, **files):
    for name, text in files.items():
        (folder / name).write_text(text)


def test_commit_into_a_new_folder(tmp_path):
    out = tmp_path / "out"
    with OutputTransaction(out) as tx:
        _write(tx.stage, **{"results.json": "{}", "report.html": "<p>"})
        assert not out.exists()
        files = tx.commit()
    assert [p.name for p in files] == ["report.html", "results.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no work folder, no lock file left


def test_commit_replaces_the_whole_set_and_keeps_the_users_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _write(out, **{"results.json": "old", "report.pdf": "old pdf", "notes.txt": "mine", MARKER_FILE: ""})
    (out / "workspace").mkdir()
    with OutputTransaction(out) as tx:
        _write(tx.stage, **{"results.json": "new"})
        tx.commit()
    assert (out / "results.json").read_text() == "new"
    assert not (out / "report.pdf").exists()  # an output of the old set does not outlive it
    assert (out / "notes.txt").read_text() == "mine" and (out / "workspace").is_dir()


def test_keep_carries_unchanged_outputs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _write(out, **{"predictions.csv": "rows", "results.json": "old"})
    with OutputTransaction(out) as tx:
        assert tx.keep(["predictions.csv", "junit.xml"]) == ["predictions.csv"]
        _write(tx.stage, **{"results.json": "new"})
        tx.commit()
    assert (out / "predictions.csv").read_text() == "rows" and (out / "results.json").read_text() == "new"


def test_an_error_before_commit_changes_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _write(out, **{"results.json": "old", MARKER_FILE: ""})
    with pytest.raises(RuntimeError), OutputTransaction(out) as tx:
        _write(tx.stage, **{"results.json": "new"})
        raise RuntimeError("boom")
    assert (out / "results.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_out_that_is_a_file(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        OutputTransaction(tmp_path / "out").begin()


def test_fallback_without_atomic_exchange(tmp_path, monkeypatch):
    """Where renameat2 is missing: two renames, and a crash between them is repaired by the next run."""
    monkeypatch.setattr(outputs, "_exchange", lambda a, b, dir_fd: False)
    out = tmp_path / "out"
    out.mkdir()
    _write(out, **{"results.json": "old", "notes.txt": "mine", MARKER_FILE: ""})
    with OutputTransaction(out) as tx:
        _write(tx.stage, **{"results.json": "new"})
        tx.commit()
    assert (out / "results.json").read_text() == "new" and (out / "notes.txt").read_text() == "mine"

    class Killed(BaseException):
        pass

    def crash(step):
        if step == "moved-old":
            raise Killed

    monkeypatch.setattr(outputs, "_after", crash)
    tx = OutputTransaction(out)
    tx.begin()
    _write(tx.stage, **{"results.json": "newer"})
    with pytest.raises(Killed):
        tx.commit()
    os.close(tx._lock_fd)  # the process "died": its lock goes, its work folder stays
    os.unlink(lock_path(out))
    assert not out.exists()
    notes = recover_leftovers(out)
    assert (out / "results.json").read_text() == "new" and (out / "notes.txt").read_text() == "mine"
    assert any("put the previous outputs back" in n for n in notes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_leftover_with_user_files_that_cannot_go_back_is_reported(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _write(out, **{"notes.txt": "new copy"})
    work = tmp_path / ".out.cvaudit-4242-abc"
    (work / "out").mkdir(parents=True)
    _write(work / "out", **{"results.json": "old", "notes.txt": "old copy"})
    notes = recover_leftovers(out)
    assert len(notes) == 1 and "left in place" in notes[0] and "notes.txt" in notes[0]
    assert work.is_dir() and (out / "notes.txt").read_text() == "new copy"


def test_lock_held_by_another_process(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom reports.outputs import OutputTransaction\n"
            "t = OutputTransaction(sys.argv[1]); t.begin(); print('locked', flush=True); time.sleep(60)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputBusyError, match=f"pid {holder.pid}"):
            OutputTransaction(out).begin()
    finally:
        holder.kill()
        holder.wait()
    with OutputTransaction(out) as tx:  # the lock died with its holder; its work folder is cleaned up
        assert any(f"pid {holder.pid}" in note for note in tx.notes)
        tx.commit()
