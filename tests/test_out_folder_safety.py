"""Issue 31, points 1 and 2: the lock and --out never eat a user's files.

The probes: a symbolic link planted at the lock path, two runs into one folder through
a link alias, a non-empty folder cvaudit did not make, --out as a symbolic link, --out /
and other system folders, --out swapped for a file (or a link, or a new folder) while
the run works, and the modes of the outputs (personal data in predictions.csv).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cvaudit_fixtures import write_config

import reports.outputs as outputs
from audit.cli import main
from reports.outputs import (
    MARKER_FILE,
    OutputBusyError,
    OutputError,
    OutputTransaction,
    check_out_dir,
    claim_output_folder,
    lock_path,
    parse_mode,
)


def _run(*args: str):
    return CliRunner().invoke(main, [*args], catch_exceptions=False)


def _one_line_error(result) -> str:
    # a run that got as far as loading a model first names the code it executed (docs/security.md)
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("code executed: ")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cvaudit: error: --out"), lines[0]
    return lines[0]


@pytest.fixture()
def no_image_read(monkeypatch):
    """Any image decoded makes the test fail: the refusals come before the data are read."""
    import PIL.Image

    def refuse(*args, **kwargs):
        raise AssertionError("an image was read before --out was refused")

    monkeypatch.setattr(PIL.Image, "open", refuse)


def _tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------- the lock


def test_a_symlink_at_the_lock_path_is_refused_and_its_target_is_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    lock_path(out).symlink_to(victim)
    with pytest.raises(OutputError, match="symbolic link") as err:
        OutputTransaction(out).begin()
    assert "\n" not in str(err.value)
    assert victim.read_text() == "precious\n"
    assert lock_path(out).is_symlink() and not out.exists()


def test_a_symlink_at_the_lock_path_through_the_cli(workspace, no_image_read):
    victim = workspace / "victim.txt"
    victim.write_text("precious\n")
    out = workspace / "out"
    lock_path(out).symlink_to(victim)
    result = _run("run", str(write_config(workspace)), "--out", str(out), "--quiet")
    assert result.exit_code == 2
    assert "symbolic link" in _one_line_error(result)
    assert victim.read_text() == "precious\n" and not out.exists()


@pytest.mark.parametrize("kind", ["hard link", "fifo", "folder"])
def test_a_lock_path_that_is_not_a_plain_file_of_ours_is_refused(tmp_path, kind):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    if kind == "hard link":
        os.link(victim, lock_path(out))
    elif kind == "fifo":
        os.mkfifo(lock_path(out))
    else:
        lock_path(out).mkdir()
    with pytest.raises(OutputError, match="lock"):
        OutputTransaction(out).begin()
    assert victim.read_text() == "precious\n"


def test_the_lock_file_is_private(tmp_path):
    with OutputTransaction(tmp_path / "out") as tx:
        assert stat.S_IMODE(lock_path(tx.out_dir).stat().st_mode) == 0o600
        assert lock_path(tx.out_dir).read_text() == f"{os.getpid()}\n"


def _hold_lock(out: Path) -> subprocess.Popen:
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
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_two_runs_through_a_symlink_alias_share_one_lock(workspace, no_image_read):
    real = workspace / "real"
    real.mkdir()
    alias = workspace / "alias"
    alias.symlink_to(real, target_is_directory=True)
    holder = _hold_lock(real / "out")
    try:
        with pytest.raises(OutputBusyError, match=f"pid {holder.pid}"):
            OutputTransaction(alias / "out").begin()
        result = _run("run", str(write_config(workspace)), "--out", str(alias / "out"), "--quiet")
        assert result.exit_code == 2
        assert f"another cvaudit process (pid {holder.pid})" in _one_line_error(result)
    finally:
        holder.kill()
        holder.wait()
    assert lock_path(alias / "out") == lock_path(real / "out")


# ---------------------------------------------------------------- the output folder


def test_a_foreign_non_empty_folder_is_refused_and_kept(workspace, no_image_read):
    out = workspace / "mine"
    out.mkdir(mode=0o750)
    (out / "thesis.tex").write_text("years of work\n")
    (out / "data").mkdir()
    (out / "data" / "x.csv").write_text("1,2\n")
    before = _tree(out)
    result = _run("run", str(write_config(workspace)), "--out", str(out), "--quiet")
    assert result.exit_code == 2
    line = _one_line_error(result)
    assert "did not make" in line and "--force" in line
    assert _tree(out) == before and stat.S_IMODE(out.stat().st_mode) == 0o750
    assert not (out / "predictions.csv").exists()


def test_force_writes_into_a_foreign_folder_and_keeps_every_file(workspace):
    out = workspace / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work\n")
    (out / "data").mkdir()
    (out / "data" / "x.csv").write_text("1,2\n")
    before = _tree(out)
    result = _run("run", str(write_config(workspace)), "--out", str(out), "--quiet", "--force")
    assert result.exit_code in (0, 1), result.output
    assert (out / "results.json").is_file() and (out / MARKER_FILE).is_file()
    assert {k: v for k, v in _tree(out).items() if k in before} == before
    # the folder is cvaudit's now: the next run needs no --force
    again = _run("run", str(write_config(workspace)), "--out", str(out), "--quiet")
    assert again.exit_code in (0, 1), again.output
    assert (out / "thesis.tex").read_text() == "years of work\n"


def test_force_refuses_a_foreign_file_named_like_an_output(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "results.json").write_text("my own results\n")
    (out / "notes.txt").write_text("mine\n")
    with pytest.raises(OutputError, match="results.json"):
        OutputTransaction(out, force=True).begin()
    assert (out / "results.json").read_text() == "my own results\n"


def test_a_folder_of_outputs_from_before_the_marker_is_accepted(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("old")
    (out / "report.html").write_text("old")
    with OutputTransaction(out) as tx:
        (tx.stage / "results.json").write_text("new")
        tx.commit()
    assert (out / "results.json").read_text() == "new" and (out / MARKER_FILE).is_file()
    assert not (out / "report.html").exists()


def test_out_as_a_symlink_is_refused_and_the_target_kept(workspace, no_image_read):
    target = workspace / "target"
    target.mkdir()
    (target / "notes.txt").write_text("mine\n")
    out = workspace / "link"
    out.symlink_to(target, target_is_directory=True)
    result = _run("run", str(write_config(workspace)), "--out", str(out), "--quiet")
    assert result.exit_code == 2
    assert "symbolic link" in _one_line_error(result)
    assert out.is_symlink() and os.readlink(out) == str(target)
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]


def test_a_symlink_to_an_empty_folder_is_refused_too(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    with pytest.raises(OutputError, match="symbolic link"):
        check_out_dir(tmp_path / "link")


@pytest.mark.parametrize("folder", ["/", "/etc", "/usr", "/tmp", "home", "cwd-parent", "cwd", "config"])
def test_system_folders_and_ancestors_are_refused_before_any_image(workspace, monkeypatch, no_image_read, folder):
    home = workspace / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    here = workspace / "a" / "b"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    out = {
        "home": str(home),
        "cwd-parent": str(workspace / "a"),
        "cwd": ".",
        "config": str(workspace),  # the folder of the config, the model and the images
    }.get(folder, folder)
    result = _run("run", str(write_config(workspace)), "--out", out, "--quiet", "--force")
    assert result.exit_code == 2
    line = _one_line_error(result)
    assert any(word in line for word in ("system folder", "home folder", "current directory", "input of this run"))
    assert not (workspace / "predictions.csv").exists() and not (home / "predictions.csv").exists()


def test_report_refuses_root_and_a_foreign_folder_and_accepts_force(workspace):
    run_out = workspace / "run"
    assert _run("run", str(write_config(workspace)), "--out", str(run_out), "--quiet").exit_code in (0, 1)
    results = str(run_out / "results.json")
    result = _run("report", results, "--out", "/", "--format", "html")
    assert result.exit_code == 2
    assert "system folder" in _one_line_error(result)
    mine = workspace / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    result = _run("report", results, "--out", str(mine), "--format", "html")
    assert result.exit_code == 2 and "did not make" in _one_line_error(result)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    result = _run("report", results, "--out", str(mine), "--format", "html", "--force")
    assert result.exit_code == 0, result.output
    assert (mine / "report.html").is_file() and (mine / "notes.txt").read_text() == "mine\n"
    assert stat.S_IMODE((mine / "report.html").stat().st_mode) == 0o600


def test_a_folder_owned_by_the_user_but_not_writable_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER_FILE).write_text("")
    out.chmod(0o500)
    try:
        if os.access(out, os.W_OK):
            pytest.skip("running as root: every folder is writable")
        with pytest.raises(OutputError, match="not writable"):
            OutputTransaction(out).begin()
    finally:
        out.chmod(0o700)


# ------------------------------------------------------------- changed during the run


def _swap_for(kind: str, out: Path, aside: Path):
    def swap(step):
        if step != "staged":
            return
        if out.exists():
            os.rename(out, aside)
        if kind == "file":
            out.write_text("a file put there during the run\n")
        elif kind == "symlink":
            out.symlink_to(aside, target_is_directory=True)
        else:
            out.mkdir()
            (out / "other.txt").write_text("another folder\n")

    return swap


@pytest.mark.parametrize("kind", ["file", "symlink", "folder"])
def test_out_replaced_during_the_run_aborts_and_deletes_nothing(tmp_path, monkeypatch, kind):
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER_FILE).write_text("")
    (out / "results.json").write_text("old")
    (out / "notes.txt").write_text("mine")
    aside = tmp_path / "aside"
    monkeypatch.setattr(outputs, "_after", _swap_for(kind, out, aside))
    with pytest.raises(OutputError, match="changed during the run"), OutputTransaction(out) as tx:
        (tx.stage / "results.json").write_text("new")
        tx.commit()
    assert sorted(p.name for p in aside.iterdir()) == sorted([MARKER_FILE, "notes.txt", "results.json"])
    assert (aside / "results.json").read_text() == "old"
    if kind == "file":
        assert out.read_text() == "a file put there during the run\n"
    elif kind == "symlink":
        assert out.is_symlink()
    else:
        assert sorted(p.name for p in out.iterdir()) == ["other.txt"]
    assert not [p for p in tmp_path.iterdir() if ".cvaudit-" in p.name]  # work folder and lock gone


def test_a_new_out_that_appears_during_the_run_is_left_alone(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(outputs, "_after", _swap_for("file", out, tmp_path / "aside"))
    with pytest.raises(OutputError, match="appeared during the run"), OutputTransaction(out) as tx:
        (tx.stage / "results.json").write_text("new")
        tx.commit()
    assert out.read_text() == "a file put there during the run\n"


def test_out_replaced_between_the_check_and_the_swap_is_put_back(tmp_path, monkeypatch):
    """The race the lstat cannot close: the swap itself is checked and undone."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("old")
    (out / MARKER_FILE).write_text("")
    real_exchange = outputs._exchange
    calls = []

    def racing_exchange(a, b, dir_fd):
        if not calls:
            os.rename(out, tmp_path / "aside")
            out.write_text("swapped in at the last moment\n")
        calls.append((a, b))
        return real_exchange(a, b, dir_fd)

    monkeypatch.setattr(outputs, "_exchange", racing_exchange)
    with pytest.raises(OutputError, match="replaced by a file"), OutputTransaction(out) as tx:
        (tx.stage / "results.json").write_text("new")
        tx.commit()
    assert len(calls) == 2  # swapped, then swapped back
    assert out.read_text() == "swapped in at the last moment\n"
    assert (tmp_path / "aside" / "results.json").read_text() == "old"


def test_out_swapped_for_a_file_mid_run_through_the_cli(workspace, monkeypatch):
    out = workspace / "out"
    assert _run("run", str(write_config(workspace)), "--out", str(out), "--quiet").exit_code in (0, 1)
    aside = workspace / "aside"
    monkeypatch.setattr(outputs, "_after", _swap_for("file", out, aside))
    result = _run("run", str(write_config(workspace)), "--out", str(out), "--quiet")
    assert result.exit_code == 2
    assert "changed during the run" in _one_line_error(result)
    assert out.read_text() == "a file put there during the run\n"
    assert (aside / "results.json").is_file()


# ------------------------------------------------------------------------- modes


def test_outputs_are_private_by_default(workspace, monkeypatch):
    os.umask(0o022)
    out = workspace / "out"
    result = _run("run", str(write_config(workspace)), "--out", str(out), "--quiet")
    assert result.exit_code in (0, 1), result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    files = [p for p in out.iterdir() if p.is_file()]
    assert {p.name for p in files} >= {"predictions.csv", "results.json", MARKER_FILE}
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: 0o600 for p in files}


def test_out_mode_shares_with_the_group(workspace):
    out = workspace / "out"
    result = _run("run", str(write_config(workspace)), "--out", str(out), "--quiet", "--out-mode", "750")
    assert result.exit_code in (0, 1), result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    assert stat.S_IMODE((out / "predictions.csv").stat().st_mode) == 0o640


@pytest.mark.parametrize("bad", ["777", "600", "abc", "1755"])
def test_unsafe_or_malformed_out_modes_are_refused(workspace, bad, no_image_read):
    with pytest.raises(OutputError):
        parse_mode(bad)
    result = _run("run", str(write_config(workspace)), "--out", str(workspace / "out"), "--out-mode", bad)
    assert result.exit_code == 2 and "--out-mode" in result.stderr


def test_the_users_files_keep_their_modes(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER_FILE).write_text("")
    (out / "shared.txt").write_text("x")
    (out / "shared.txt").chmod(0o644)
    with OutputTransaction(out) as tx:
        (tx.stage / "results.json").write_text("new")
        tx.commit()
    assert stat.S_IMODE((out / "shared.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((out / "results.json").stat().st_mode) == 0o600


# ------------------------------------------------------------------------- the demo


def test_the_demo_claims_its_folder_and_a_pre_marker_demo_folder(tmp_path):
    fresh = tmp_path / "demo"
    claim_output_folder(fresh, own=("workspace",))
    assert (fresh / MARKER_FILE).is_file() and stat.S_IMODE(fresh.stat().st_mode) == 0o700
    legacy = tmp_path / "old-demo"
    (legacy / "workspace").mkdir(parents=True)
    (legacy / "results.json").write_text("{}")
    (legacy / "predictions.csv").write_text("")
    claim_output_folder(legacy, own=("workspace",))
    assert (legacy / MARKER_FILE).is_file()
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "cv.pdf").write_text("mine")
    with pytest.raises(OutputError, match="did not make"):
        claim_output_folder(foreign, own=("workspace",))
    assert sorted(p.name for p in foreign.iterdir()) == ["cv.pdf"]


def test_recovery_never_deletes_a_file_left_in_a_work_folder(tmp_path):
    """A swap that could not be undone leaves the swapped-in file in the work folder: kept, reported."""
    out = tmp_path / "out"
    out.mkdir()
    work = tmp_path / ".out.cvaudit-4242-abc"
    work.mkdir()
    (work / "out").write_text("the user's file\n")
    with OutputTransaction(out) as tx:
        assert any("left in place" in note for note in tx.notes)
    assert (work / "out").read_text() == "the user's file\n"


@pytest.mark.parametrize("out", ["/", "/etc"])
def test_a_system_out_is_refused_before_torch_loads(workspace, out):
    """The real command: --out / costs the config check, not an audit (nor the import of torch)."""
    code = (
        "import sys\nfrom audit.cli import main\ntry:\n    main(sys.argv[1:])\n"
        "except SystemExit as exc:\n    print('torch loaded:', 'torch' in sys.modules, 'exit:', exc.code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "run", str(write_config(workspace)), "--out", out, "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.stdout.strip() == "torch loaded: False exit: 2", (result.stdout, result.stderr)
    assert result.stderr.strip() == (
        f"cvaudit: error: --out {out}: refusing to write into {out}, a system folder; choose a new folder for the outputs"
    )


@pytest.mark.parametrize(
    "names",
    [
        ["junit.xml"],  # pytest's report in a CI folder: a generic name is not cvaudit's
        ["report.html", "groups.csv"],  # outputs' names without results
        ["thesis-draft.tmp"],  # any *.tmp is a user's; only .<output>.<random>.tmp is cvaudit's
        ["results.json", ".results.json.tmp"],
    ],
)
def test_a_folder_is_not_cvaudits_by_a_few_names(tmp_path, names):
    out = tmp_path / "test-results"
    out.mkdir()
    for name in names:
        (out / name).write_text(f"the user's {name}\n")
    with pytest.raises(OutputError, match="did not make"):
        OutputTransaction(out).begin()
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    assert all((out / name).read_text() == f"the user's {name}\n" for name in names)


def test_an_atomic_write_temporary_of_an_output_is_cvaudits(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("results.json", "predictions.csv", ".report.pdf.k3x_9a.tmp"):
        (out / name).write_text("old")
    with OutputTransaction(out) as tx:
        (tx.stage / "results.json").write_text("new")
        tx.commit()
    assert sorted(p.name for p in out.iterdir()) == [MARKER_FILE, "results.json"]


def test_recovery_ignores_a_staging_folder_someone_else_could_write(tmp_path):
    """A folder named like a staging folder, planted in a shared parent, is never moved into --out."""
    out = tmp_path / "audit"
    planted = tmp_path / ".audit.cvaudit-1-evil"
    (planted / "old").mkdir(parents=True)
    (planted / "old" / "planted.txt").write_text("from someone else\n")
    planted.chmod(0o777)  # writable by others: not a folder mkdtemp made for this user
    with OutputTransaction(out) as tx:
        assert any("not a staging folder of yours" in note for note in tx.notes)
        (tx.stage / "results.json").write_text("{}")
        tx.commit()
    assert not (out / "planted.txt").exists()
    assert (planted / "old" / "planted.txt").is_file()


@pytest.mark.parametrize("name", ["out\x00x", "x" * 300, "bad\ud800"])
def test_an_out_name_the_system_cannot_take_is_one_line(tmp_path, name):
    with pytest.raises(OutputError, match="--out folder name|not a usable --out folder name"):
        OutputTransaction(tmp_path / name).begin()
