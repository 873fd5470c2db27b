"""All-or-nothing output folders: a lock, a staging folder swapped in as a whole, recovery.

A run (or ``cvaudit report``) never writes into ``--out`` file by file. It

1. takes an advisory lock (:func:`fcntl.flock`) on ``.<out>.cvaudit-lock``
   beside ``--out``; a second run into the same ``--out`` fails at once with
   :class:`OutputBusyError` naming the pid that holds it;
2. cleans up after runs that were killed: every ``.<out>.cvaudit-<pid>-*``
   folder beside ``--out`` is an unfinished run's work folder (the lock proves
   that its run is gone); files of the user's that it holds (see step 5) are
   moved back into ``--out``, the rest is removed, and each is reported;
3. writes every output into ``<work>/out`` (the staging folder), the
   attestation last, each file with an atomic write;
4. swaps the staging folder and ``--out`` in one step: ``renameat2(...,
   RENAME_EXCHANGE)`` on Linux, so that ``--out`` holds the complete old set or
   the complete new set at every instant, never a mix (elsewhere, or on a file
   system without it: two renames, and a crash between them leaves ``--out``
   missing and the old set in the work folder, which the next run puts back);
5. moves whatever in the old folder is not a cvaudit output (a user's own
   files or folders kept in ``--out``, such as the demo's ``workspace/``) into
   the new one, and removes the old folder with the work folder.

Only names in :data:`OUTPUT_FILES` (and atomic-write temporaries) are cvaudit's:
adding an output file means adding its name there and writing it in
:func:`reports.write_outputs`, the one writer of ``cvaudit run`` and ``cvaudit report``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from audit.contract.errors import CvauditError
from reports.attestation import ATTESTATION_FILE
from reports.keys import ATTESTATION_PUB

__all__ = [
    "ATTESTED_FILES",
    "OUTPUT_FILES",
    "OutputBusyError",
    "OutputError",
    "OutputTransaction",
    "is_output_name",
    "lock_path",
    "recover_leftovers",
]

#: The outputs an attestation covers (those present), in the order it lists them.
ATTESTED_FILES = (
    "results.json",
    "predictions.csv",
    "detections.json",
    "detections.csv",
    "objects.csv",
    "governance.csv",
    "breaking_points.csv",
    "object_breaking_points.csv",
    "groups.csv",
    "skipped.csv",
    "junit.xml",
    "report.html",
    "report.pdf",
)

#: Every file cvaudit writes into an output folder. The attestation files come last.
OUTPUT_FILES = (*ATTESTED_FILES, ATTESTATION_PUB, ATTESTATION_FILE)

_TEMPORARY = re.compile(r"^\..+\.tmp$|^.+\.tmp$")


class OutputError(CvauditError):
    """``--out`` cannot take the outputs (not a folder, not writable)."""


class OutputBusyError(OutputError):
    """Another cvaudit process holds the lock on the same ``--out``."""


def is_output_name(name: str) -> bool:
    """Whether a file name in an output folder is cvaudit's own (an output or an atomic-write temporary)."""
    return name in OUTPUT_FILES or bool(_TEMPORARY.match(name))


def lock_path(out_dir: Path) -> Path:
    """The lock file of an output folder: ``.<name>.cvaudit-lock`` beside it (the folder itself is swapped)."""
    return out_dir.parent / f".{out_dir.name}.cvaudit-lock"


def _work_prefix(out_dir: Path) -> str:
    return f".{out_dir.name}.cvaudit-"


def _after(step: str) -> None:
    """A point between two steps of :meth:`OutputTransaction.commit` (tests kill the process here)."""


class OutputTransaction:
    """One all-or-nothing update of an output folder (see the module docstring).

    Use as a context manager::

        with OutputTransaction(out_dir) as tx:
            write_everything_into(tx.stage)
            files = tx.commit()

    Leaving the block without :meth:`commit` (an error, a ``KeyboardInterrupt``)
    leaves ``--out`` exactly as it was and removes the work folder.

    Attributes:
        out_dir: The output folder (``--out``).
        work: The run's private work folder beside ``out_dir`` (on the same
            file system, so renames are atomic); also the place for scratch
            files such as the per-rank prediction parts.
        stage: ``work / "out"``, the staging folder the outputs are written to.
        notes: One line per leftover of an interrupted run that was cleaned up
            or left in place.
    """

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)
        self.work = Path()
        self.stage = Path()
        self.notes: list[str] = []
        self._lock_fd: int | None = None
        self._committed = False

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> OutputTransaction:
        self.begin()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def begin(self) -> None:
        """Check ``--out``, take the lock, clean up leftovers, create the work and staging folders.

        Raises:
            OutputError: ``--out`` exists and is not a folder, or its parent is
                not writable.
            OutputBusyError: Another process holds the lock.
        """
        out = self.out_dir
        if out.exists() and not out.is_dir():
            raise OutputError(f"--out {out}: exists and is not a folder")
        parent = out.absolute().parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"--out {out}: cannot create {parent} ({exc.strerror})") from None
        if not os.access(parent, os.W_OK):
            raise OutputError(f"--out {out}: {parent} is not writable (the outputs are staged beside --out)")
        self._lock_fd = _acquire_lock(out)
        try:
            self.notes += recover_leftovers(out)
            self.work = Path(tempfile.mkdtemp(prefix=f"{_work_prefix(out)}{os.getpid()}-", dir=parent))
            self.stage = self.work / "out"
            self.stage.mkdir()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Remove the work folder (an uncommitted stage with it) and release the lock."""
        if self.work != Path() and self.work.exists():
            shutil.rmtree(self.work, ignore_errors=True)
        if self._lock_fd is not None:
            _release_lock(self.out_dir, self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------- writing

    def keep(self, names: Iterable[str]) -> list[str]:
        """Carry existing output files of ``--out`` into the new set unchanged (hard links, or copies).

        For commands that update part of a folder (``cvaudit report`` keeps the
        run's ``predictions.csv``). Files are never changed in place, so a hard
        link is as good as a copy.

        Args:
            names: Output file names to keep when they exist in ``--out``.

        Returns:
            The names kept.
        """
        kept = []
        for name in names:
            source = self.out_dir / name
            if not source.is_file() or (self.stage / name).exists():
                continue
            try:
                os.link(source, self.stage / name)
            except OSError:
                shutil.copy2(source, self.stage / name)
            kept.append(name)
        return kept

    def commit(self) -> list[Path]:
        """Swap the staging folder in as the new ``--out`` (see the module docstring).

        Returns:
            The output files now in ``--out``, sorted by name.
        """
        out, stage = self.out_dir, self.stage
        _fsync(stage)
        if not out.exists():
            os.rename(stage, out)
            _after("swapped")
            old = None
        elif _exchange(stage, out):
            _after("swapped")
            old = stage
        else:  # no atomic exchange here: two renames (the next run repairs a crash between them)
            old = self.work / "old"
            os.rename(out, old)
            _after("moved-old")
            os.rename(stage, out)
            _after("swapped")
        _fsync(out.absolute().parent)
        if old is not None:
            self.notes += _carry_foreign(old, out)
            _after("carried")
        self._committed = True
        return sorted((p for p in out.iterdir() if p.is_file() and p.name in OUTPUT_FILES), key=lambda p: p.name)


# -------------------------------------------------------------------- the lock


def _acquire_lock(out_dir: Path) -> int:
    """Take the advisory lock of ``out_dir``; the file holds the owner's pid."""
    import fcntl

    path = lock_path(out_dir.absolute())
    for _ in range(10):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise OutputBusyError(
                f"--out {out_dir}: another cvaudit process (pid {_lock_owner(path)}) is writing into it "
                f"(lock {path}); wait for it to finish or choose another --out"
            ) from None
        # the holder before us may have removed the file after we opened it: lock the file that is there now
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)
    raise OutputBusyError(f"--out {out_dir}: cannot take the lock {path} (it keeps being replaced)")


def _lock_owner(path: Path) -> str:
    try:
        text = path.read_text("ascii", errors="replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


def _release_lock(out_dir: Path, fd: int) -> None:
    try:
        os.unlink(lock_path(out_dir.absolute()))
    except OSError:
        pass
    os.close(fd)


# --------------------------------------------------------------------- recovery


def recover_leftovers(out_dir: Path) -> list[str]:
    """Clean up the work folders of interrupted runs into ``out_dir`` (call with the lock held).

    Args:
        out_dir: The output folder.

    Returns:
        One line per work folder removed (or left in place because it still
        holds a file of the user's that could not be put back).
    """
    out = out_dir.absolute()
    notes = []
    prefix = _work_prefix(out)
    pid = re.compile(re.escape(prefix) + r"(\d+)-")
    for work in sorted(out.parent.glob(prefix + "*")):
        if not work.is_dir() or work.is_symlink():
            continue
        owner = pid.match(work.name)
        who = f"pid {owner.group(1)}" if owner else "unknown pid"
        old = work / "old"
        if not out.exists() and old.is_dir():  # killed between the two renames of the fallback swap
            os.rename(old, out)
            notes.append(f"{out}: put the previous outputs back from {work} (a run, {who}, was killed mid-swap)")
        stranded = []
        for folder in (work / "out", old):
            if folder.is_dir() and out.is_dir():
                stranded += [line for line in _carry_foreign(folder, out) if "left in" in line]
        if stranded:
            notes.append(f"{work}: left in place, it holds files that are not cvaudit's: " + "; ".join(stranded))
            continue
        shutil.rmtree(work, ignore_errors=True)
        notes.append(f"removed {work}, the staging folder of an interrupted run ({who}); {out} was not changed by it")
    return notes


def _carry_foreign(old: Path, out: Path) -> list[str]:
    """Move entries of ``old`` that are not cvaudit outputs into ``out`` (a user's own files)."""
    notes = []
    for entry in sorted(old.iterdir()):
        if is_output_name(entry.name):
            continue
        target = out / entry.name
        if target.exists() or target.is_symlink():
            notes.append(f"{entry} left in {old}: {target} exists")
            continue
        os.rename(entry, target)
    return notes


# ---------------------------------------------------------------- file system


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths with Linux ``renameat2(RENAME_EXCHANGE)``; False where unsupported."""
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
