"""cvaudit queue --out gets the guarantees of cvaudit run --out (docs/security.md, "Output folders").

A reviewer's reproducer: ``--out`` a project folder holding ``images/precious.jpg`` and a ``queue.csv``
that is a symbolic link to another file. The queue used to delete ``images/``, write through the link
and leave its files (sample images, attribute values) readable by everyone.
"""

from __future__ import annotations

import json
import os
import stat

import pytest
from click.testing import CliRunner
from loop_helpers import one_line_error

from audit.cli import main
from audit.loop.queue import QUEUE_NAMES, claim_queue_folder
from reports import MARKER_FILE, OutputError

PRECIOUS = b"\xff\xd8 a photo of the user's, not cvaudit's"
VICTIM = "the victim's file\n"


def queue(run_dir, out, *args):
    return CliRunner().invoke(main, ["queue", str(run_dir), "--out", str(out), *map(str, args)])


def _project(tmp_path):
    """The reproducer: project/images/precious.jpg, project/queue.csv -> ../victim.txt."""
    project = tmp_path / "project"
    (project / "images").mkdir(parents=True)
    (project / "images" / "precious.jpg").write_bytes(PRECIOUS)
    victim = tmp_path / "victim.txt"
    victim.write_text(VICTIM)
    (project / "queue.csv").symlink_to(victim)
    return project, victim


def _untouched(project, victim):
    assert (project / "images" / "precious.jpg").read_bytes() == PRECIOUS
    assert victim.read_text() == VICTIM
    assert (project / "queue.csv").is_symlink()
    assert sorted(os.listdir(project)) == ["images", "queue.csv"]  # no marker, no temporaries
    assert os.listdir(project / "images") == ["precious.jpg"]


def _mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def _modes(out):
    """Every entry of the queue folder (recursively) -> its mode, the folder itself under "."."""
    modes = {".": _mode(out)}
    for root, dirs, files in os.walk(out):
        for name in dirs + files:
            path = os.path.join(root, name)
            modes[os.path.relpath(path, out)] = _mode(path)
    return modes


def test_the_reviewers_reproducer_is_refused_before_anything_is_written(run_dir, tmp_path):
    project, victim = _project(tmp_path)
    result = queue(run_dir, project, "--budget", 5)
    one_line_error(result, "non-empty folder that cvaudit did not make")
    _untouched(project, victim)


def test_the_reproducer_is_refused_for_a_detection_run_too(det_run, tmp_path):
    project, victim = _project(tmp_path)
    one_line_error(queue(det_run, project, "--budget", 5), "non-empty folder that cvaudit did not make")
    _untouched(project, victim)
    # --force does not lift it: images/ and queue.csv are the queue's names
    one_line_error(queue(det_run, project, "--budget", 5, "--force"), "--force, but images, queue.csv")
    _untouched(project, victim)


def test_force_never_replaces_a_file_of_the_users_with_a_queue_name(run_dir, tmp_path):
    """Decision: under --force, a user's images/ (or queue.csv, ...) clashes with the queue's: refused, as run does."""
    project, victim = _project(tmp_path)
    one_line_error(queue(run_dir, project, "--budget", 5, "--force"), "--force, but images, queue.csv")
    _untouched(project, victim)
    (project / "queue.csv").unlink()
    one_line_error(queue(run_dir, project, "--budget", 5, "--force"), "--force, but images in it")
    assert (project / "images" / "precious.jpg").read_bytes() == PRECIOUS and victim.read_text() == VICTIM


def test_force_writes_beside_the_users_files_and_keeps_them(run_dir, tmp_path):
    project = tmp_path / "project"
    (project / "photos").mkdir(parents=True)
    (project / "photos" / "precious.jpg").write_bytes(PRECIOUS)
    (project / "notes.txt").write_text("mine\n")
    one_line_error(queue(run_dir, project, "--budget", 5), "cvaudit did not make")
    result = queue(run_dir, project, "--budget", 5, "--force")
    assert result.exit_code == 0, result.output
    assert (project / "photos" / "precious.jpg").read_bytes() == PRECIOUS
    assert (project / "notes.txt").read_text() == "mine\n"
    assert (project / MARKER_FILE).is_file() and (project / "queue.csv").is_file()
    assert sorted(os.listdir(project)) == sorted(
        [MARKER_FILE, "images", "labeling_config.xml", "notes.txt", "photos", "queue.csv", "summary.json", "tasks.json"]
    )


def test_a_second_queue_into_its_folder_replaces_its_images_and_never_follows_a_link(run_dir, tmp_path):
    out = tmp_path / "q"
    first = queue(run_dir, out, "--budget", 5)
    assert first.exit_code == 0, first.output
    assert (out / MARKER_FILE).is_file()
    assert len(os.listdir(out / "images")) == 5
    (out / "images" / "stale.png").write_bytes(b"from the previous queue")
    victim = tmp_path / "victim.txt"
    victim.write_text(VICTIM)
    (out / "queue.csv").unlink()
    (out / "queue.csv").symlink_to(victim)  # planted in cvaudit's folder: replaced, never written through
    (out / "tasks.json").unlink()
    (out / "tasks.json").symlink_to(victim)
    second = queue(run_dir, out, "--budget", 3)
    assert second.exit_code == 0, second.output
    assert victim.read_text() == VICTIM
    assert not (out / "queue.csv").is_symlink() and (out / "queue.csv").read_text().startswith("rank,")
    assert not (out / "tasks.json").is_symlink()
    again = os.listdir(out / "images")
    assert len(again) == 3 and "stale.png" not in again  # the previous queue's images/ replaced as a whole
    assert json.loads((out / "summary.json").read_text())["selected"] == 3
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


def test_the_queue_is_private_whatever_the_umask(run_dir, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "q"
        result = queue(run_dir, out, "--budget", 5, "--variants")
        assert result.exit_code == 0, result.output
        shared = tmp_path / "shared"
        result = queue(run_dir, shared, "--budget", 5, "--variants", "--out-mode", "750")
        assert result.exit_code == 0, result.output
    finally:
        os.umask(old)
    modes = _modes(out)
    assert {"images", "variants", "queue.csv", "tasks.json", "summary.json", MARKER_FILE} <= set(modes)
    assert len([p for p in modes if p.startswith("images" + os.sep)]) == 5
    assert any(p.startswith("variants" + os.sep) for p in modes)
    for path, mode in modes.items():
        assert mode == (0o700 if os.path.isdir(out / path) else 0o600), (path, oct(mode))
    for path, mode in _modes(shared).items():
        assert mode == (0o750 if os.path.isdir(shared / path) else 0o640), (path, oct(mode))


def test_bad_out_mode_is_one_line(run_dir, tmp_path):
    one_line_error(queue(run_dir, tmp_path / "q", "--out-mode", "777"), "--out-mode")
    assert not (tmp_path / "q").exists()


def test_a_symbolic_link_as_out_is_refused(run_dir, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    for extra in ((), ("--force",)):
        one_line_error(queue(run_dir, link, "--budget", 5, *extra), "is a symbolic link")
    assert link.is_symlink() and os.listdir(real) == []


def test_a_system_folder_is_refused_even_with_force(run_dir):
    one_line_error(queue(run_dir, "/etc", "--budget", 5, "--force"), "a system folder")


def test_a_folder_of_the_queues_names_without_the_marker_is_not_cvaudits(tmp_path):
    """A queue folder written before the marker (or faked) is refused; the marker not a plain file is no marker."""
    out = tmp_path / "old"
    out.mkdir()
    for name in QUEUE_NAMES:
        (out / name).mkdir() if name in ("images", "variants") else (out / name).write_text("")
    with pytest.raises(OutputError, match="cvaudit did not make"):
        claim_queue_folder(out)
    (out / MARKER_FILE).symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputError, match=r"--force, but \.cvaudit-output"):
        claim_queue_folder(out, force=True)


def test_the_inputs_are_never_inside_a_folder_the_queue_replaces(tmp_path):
    out = tmp_path / "q"
    (out / "images").mkdir(parents=True)
    (out / MARKER_FILE).write_text("")
    data = out / "images" / "0.png"
    data.write_bytes(b"data")
    with pytest.raises(OutputError, match="an input of the queue"):
        claim_queue_folder(out, protect=[tmp_path / "manifest.csv", out / "images"])
    assert data.read_bytes() == b"data"
