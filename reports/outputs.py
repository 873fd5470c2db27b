"""All-or-nothing output folders: checks, a lock, a staging folder swapped in as a whole, recovery.

A run (or ``cvaudit report``) never writes into ``--out`` file by file. It

0. checks ``--out`` before anything is evaluated (:meth:`OutputTransaction.begin`)
   and refuses, with one line (:class:`OutputError`, exit 2):

   - a symbolic link (the link would be replaced by a folder and the files of its
     target moved away), or anything that is not a folder;
   - a system folder (:data:`SYSTEM_FOLDERS`, the home folder itself, a mount
     point such as the root of the current directory's file system), the current
     directory or one of its ancestors, and a folder that holds the config or the
     data (unless it is cvaudit's own, like the demo's folder with its
     ``workspace/``);
   - a non-empty folder that cvaudit did not make: one without the marker file
     :data:`MARKER_FILE` that cvaudit writes into every output folder, unless
     every entry in it is a cvaudit output name (a folder written before the
     marker existed). ``--force`` accepts such a folder when none of its files
     bears the name of a cvaudit output: its entries are kept, moved into the new
     set like any file of the user's (step 5), never deleted or replaced;
   - a folder owned by another user, one this user cannot write, or one whose
     parent is not writable (the swap needs both);

1. takes an advisory lock (:func:`fcntl.flock`) on ``.<out>.cvaudit-lock``
   beside ``--out``, keyed on the resolved path (the parent's symbolic links
   resolved), so that two spellings of one folder contend for one lock. The lock
   file is opened with ``O_NOFOLLOW``: a symbolic link, a non-regular file, a
   file with other hard links or of another owner at that path is refused, never
   truncated. A second run into the same ``--out`` fails at once with
   :class:`OutputBusyError` naming the pid that holds it;
2. cleans up after runs that were killed: every ``.<out>.cvaudit-<pid>-*``
   folder beside ``--out`` is an unfinished run's work folder (the lock proves
   that its run is gone); files of the user's that it holds (see step 5) are
   moved back into ``--out``, the rest is removed, and each is reported;
3. writes every output into ``<work>/out`` (the staging folder, mode 0700 while
   it is written), the attestation last, each file with an atomic write, and
   the marker :data:`MARKER_FILE`;
4. sets the modes of the new set (the folder ``mode``, 0700 by default; its
   files the same bits without execute, 0600 by default), checks with ``lstat``
   that ``--out`` is still the folder it was at the start (or still absent), and
   swaps the staging folder and ``--out`` in one step: ``renameat2(...,
   RENAME_EXCHANGE)`` on Linux, so that ``--out`` holds the complete old set or
   the complete new set at every instant, never a mix (elsewhere, or on a file
   system without it: two renames, and a crash between them leaves ``--out``
   missing and the old set in the work folder, which the next run puts back).
   What was swapped out is checked again; if ``--out`` was replaced in the
   meantime (by a file, a link, another folder) the swap is undone, the run
   ends with :class:`OutputError` and whatever was put there is left in place;
5. moves whatever in the old folder is not a cvaudit output (a user's own
   files or folders kept in ``--out``, such as the demo's ``workspace/``) into
   the new one, and removes the old folder with the work folder.

Only names in :data:`OUTPUT_FILES`, the marker (and atomic-write temporaries) are
cvaudit's: adding an output file means adding its name there and writing it in
:func:`reports.write_outputs`, the one writer of ``cvaudit run`` and ``cvaudit report``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from audit.contract.errors import CvauditError
from audit.contract.files import check_path_name
from reports.attestation import ATTESTATION_FILE
from reports.keys import ATTESTATION_PUB

__all__ = [
    "ATTESTED_FILES",
    "DEFAULT_MODE",
    "MARKER_FILE",
    "OUTPUT_FILES",
    "SYSTEM_FOLDERS",
    "OutputBusyError",
    "OutputError",
    "OutputTransaction",
    "check_out_dir",
    "claim_output_folder",
    "is_output_name",
    "lock_path",
    "parse_mode",
    "recover_leftovers",
]

#: The outputs an attestation covers (those present), in the order it lists them.
ATTESTED_FILES = (
    "results.json",
    "predictions.csv",
    "image_properties.csv",
    "slices.csv",
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

#: The file cvaudit writes into every output folder it makes: a non-empty ``--out`` without it is not cvaudit's.
MARKER_FILE = ".cvaudit-output"

_MARKER_TEXT = (
    "This folder is a cvaudit output folder: `cvaudit run` and `cvaudit report` replace the files named like\n"
    "their outputs here as a whole. Files of your own are kept. Delete this file to make cvaudit refuse the folder.\n"
)

#: The folder mode of a new output set (``--out-mode``); its files get the same bits without execute (0600).
DEFAULT_MODE = 0o700

#: Folders ``--out`` may never be (besides the home folder, mount points, and the ancestors of the current directory).
SYSTEM_FOLDERS = (
    "/",
    "/Applications",
    "/Library",
    "/System",
    "/Users",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/media",
    "/mnt",
    "/opt",
    "/private",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/usr/bin",
    "/usr/lib",
    "/usr/local",
    "/usr/share",
    "/var",
    "/var/lib",
    "/var/tmp",
)

#: An atomic-write temporary of one of cvaudit's outputs (:func:`reports.atomic.atomic_write`):
#: ``.<output>.<random>.tmp``; any other ``*.tmp`` is a user's file.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]+\.tmp$")


class OutputError(CvauditError):
    """``--out`` cannot take the outputs (not a folder, not writable)."""


class OutputBusyError(OutputError):
    """Another cvaudit process holds the lock on the same ``--out``."""


def is_output_name(name: str) -> bool:
    """Whether a file name in an output folder is cvaudit's own (an output, the marker, an atomic-write temporary)."""
    if name in OUTPUT_FILES or name == MARKER_FILE:
        return True
    match = _TEMPORARY.match(name)
    return match is not None and match.group("name") in (*OUTPUT_FILES, MARKER_FILE)


def parse_mode(text: str | int) -> int:
    """The folder mode of ``--out-mode``: octal digits such as ``700``, ``0750`` or ``755``.

    The owner must keep read, write and search (``7`` in the owner's place); the mode may give
    no write permission to others than the owner.

    Raises:
        OutputError: Not an octal mode, or one of the above.
    """
    if isinstance(text, int):
        mode = text
    else:
        try:
            mode = int(str(text).strip(), 8)
        except ValueError:
            raise OutputError(f"--out-mode {text!r}: not an octal mode such as 700, 750 or 755") from None
    if not 0 <= mode <= 0o777 or mode & 0o700 != 0o700:
        raise OutputError(f"--out-mode {text!r}: the owner needs rwx (7xx), e.g. 700, 750 or 755")
    if mode & 0o022:
        raise OutputError(f"--out-mode {text!r}: an output folder writable by others could be changed under a run")
    return mode


def _resolve_out(out_dir: Path) -> Path:
    """``out_dir`` with its parent's symbolic links resolved (``out_dir`` itself need not exist, nor is followed)."""
    absolute = Path(os.path.abspath(out_dir))
    if absolute.name == "":
        return absolute  # the file system root
    return absolute.parent.resolve() / absolute.name


def lock_path(out_dir: Path) -> Path:
    """The lock file of an output folder: ``.<name>.cvaudit-lock`` beside it (the folder itself is swapped).

    Keyed on the resolved folder (:func:`_resolve_out`), so every spelling of one folder has one lock.
    """
    out = _resolve_out(out_dir)
    return out.parent / f".{out.name}.cvaudit-lock"


def _work_prefix(out_dir: Path) -> str:
    return f".{out_dir.name}.cvaudit-"


def _after(step: str) -> None:
    """A point between two steps of :meth:`OutputTransaction.commit` (tests kill the process here)."""


# ----------------------------------------------------------------- the checks


def _kind(st: os.stat_result | None) -> str:
    if st is None:
        return "gone"
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if stat.S_ISDIR(st.st_mode):
        return "another folder"
    if stat.S_ISREG(st.st_mode):
        return "a file"
    return "a special file"


def _lstat(path: str | Path, *, dir_fd: int | None = None) -> os.stat_result | None:
    try:
        return os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _is_system_folder(target: Path) -> str | None:
    """Why ``target`` (resolved) can never be an output folder, or None."""
    named = set()
    for folder in SYSTEM_FOLDERS:
        named.add(Path(folder))
        with contextlib.suppress(OSError, RuntimeError):
            named.add(Path(folder).resolve())
    if target in named:
        return "a system folder"
    with contextlib.suppress(OSError, RuntimeError, KeyError):
        home = Path.home()
        if target in (home, home.resolve()):
            return "the home folder itself"
    if target.is_dir() and not target.is_symlink() and os.path.ismount(target):
        return "a mount point (the root of a file system)"
    with contextlib.suppress(OSError):
        cwd = Path.cwd().resolve()
        if target == cwd or target in cwd.parents:
            return "the current directory or one of its ancestors (it would be moved away under the running command)"
    return None


def _entries(folder: Path) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError as exc:
        raise OutputError(f"--out {folder}: cannot list it ({exc.strerror})") from None


def _is_cvaudit_folder(folder: Path, entries: list[str], own: Sequence[str] = ()) -> bool:
    """Whether a folder is cvaudit's: empty, holding the marker, or (from before the marker) a complete set
    of outputs: ``results.json`` with predictions, an attestation or a report, and nothing but outputs.

    Names alone are weak evidence (``junit.xml`` or ``report.html`` may be anyone's): a folder holding
    a few generic names and no results is a user's, refused without ``--force``.
    """
    if not entries:
        return True
    marker = _lstat(folder / MARKER_FILE)
    if marker is not None and stat.S_ISREG(marker.st_mode):
        return True
    names = set(entries)
    evidence = {"predictions.csv", "detections.json", ATTESTATION_FILE, "report.html", "report.pdf"}
    complete = "results.json" in names and bool(names & evidence)
    return complete and all(is_output_name(name) or name in own for name in entries)


def check_out_dir(
    out_dir: str | os.PathLike[str],
    *,
    force: bool = False,
    protect: Iterable[str | os.PathLike[str]] = (),
    own: Sequence[str] = (),
) -> Path:
    """Refuse an ``--out`` that cvaudit must not replace (see step 0 of the module docstring).

    Args:
        out_dir: ``--out`` as given.
        force: ``--force``: accept a non-empty folder without the marker whose files are not named
            like cvaudit outputs (they are kept).
        protect: Files or folders (the config, the data) that ``--out`` may not hold, unless it is
            cvaudit's own folder (the demo keeps its workspace in its output folder).
        own: Entry names that make no folder foreign (the demo's ``workspace``).

    Returns:
        The resolved ``--out`` (:func:`_resolve_out`).

    Raises:
        OutputError: One line naming ``--out`` and the reason.
    """
    out = check_path_name(out_dir, what="--out folder", error=OutputError)  # a NUL or an overlong name: one line
    target = _resolve_out(out)
    why = _is_system_folder(target)
    if why:
        raise OutputError(f"--out {out}: refusing to write into {target}, {why}; choose a new folder for the outputs")
    st = _lstat(target)
    if st is None:
        return target
    if stat.S_ISLNK(st.st_mode):
        raise OutputError(
            f"--out {out}: is a symbolic link (to {os.readlink(target)}); cvaudit replaces --out as a whole, "
            "so give the real folder, or a new one"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"--out {out}: exists and is not a folder")
    if hasattr(os, "geteuid") and os.geteuid() != 0 and st.st_uid != os.geteuid():
        raise OutputError(f"--out {out}: belongs to another user (uid {st.st_uid}); choose a folder of your own")
    if not os.access(target, os.W_OK | os.X_OK):
        raise OutputError(f"--out {out}: is not writable (the files of your own in it are moved into the new set)")
    entries = _entries(target)
    ours = _is_cvaudit_folder(target, entries, own)
    if not ours:
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        if not force:
            raise OutputError(
                f"--out {out}: is a non-empty folder that cvaudit did not make (no {MARKER_FILE}; it holds {shown}); "
                "choose a new or empty folder, or pass --force to write into it (its files are kept)"
            )
        clash = [name for name in entries if is_output_name(name)]
        if clash:
            raise OutputError(
                f"--out {out}: --force, but {', '.join(clash[:3])} in it would be replaced by cvaudit's file(s) of "
                "the same name and it is not known to be cvaudit's; move it away first"
            )
    for path in protect:
        inside = Path(os.path.abspath(path)).resolve()
        if (inside == target or target in inside.parents) and not (ours and entries):
            raise OutputError(
                f"--out {out}: holds {path}, an input of this run; choose a folder outside the config and the data"
            )
    return target


def claim_output_folder(out_dir: str | os.PathLike[str], *, own: Sequence[str] = (), mode: int = DEFAULT_MODE) -> Path:
    """Make ``out_dir`` a cvaudit output folder before writing into it outside a transaction (the demo).

    A missing folder is created with ``mode`` and the marker; a folder that passes
    :func:`check_out_dir` (with ``own`` entries allowed) gets the marker if it lacks it.

    Raises:
        OutputError: As :func:`check_out_dir`.
    """
    target = check_out_dir(out_dir, own=own)
    try:
        target.mkdir(mode=mode, parents=True, exist_ok=True)
        marker = target / MARKER_FILE
        if _lstat(marker) is None:
            _write_marker(target)
    except OSError as exc:
        raise OutputError(f"--out {out_dir}: cannot create it ({exc.strerror})") from None
    return target


def _write_marker(folder: Path, mode: int = 0o600) -> None:
    fd = os.open(folder / MARKER_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(_MARKER_TEXT)


# -------------------------------------------------------------- the transaction


class OutputTransaction:
    """One all-or-nothing update of an output folder (see the module docstring).

    Use as a context manager::

        with OutputTransaction(out_dir) as tx:
            write_everything_into(tx.stage)
            files = tx.commit()

    Leaving the block without :meth:`commit` (an error, a ``KeyboardInterrupt``)
    leaves ``--out`` exactly as it was and removes the work folder.

    Attributes:
        out_dir: The output folder (``--out``) as given.
        target: ``out_dir`` resolved (its parent's links resolved); every step works on it.
        work: The run's private work folder beside ``out_dir`` (on the same
            file system, so renames are atomic); also the place for scratch
            files such as the per-rank prediction parts.
        stage: ``work / "out"``, the staging folder the outputs are written to.
        notes: One line per leftover of an interrupted run that was cleaned up
            or left in place.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        *,
        force: bool = False,
        mode: int = DEFAULT_MODE,
        protect: Iterable[str | os.PathLike[str]] = (),
    ) -> None:
        """Args: ``force`` (``--force``), ``mode`` (``--out-mode``, :func:`parse_mode`) and ``protect``
        (the config and data files ``--out`` may not hold) as in :func:`check_out_dir`."""
        self.out_dir = Path(out_dir)
        self.target = _resolve_out(self.out_dir)
        self.force = force
        self.mode = parse_mode(mode)
        self.protect = tuple(protect)
        self.work = Path()
        self.stage = Path()
        self.notes: list[str] = []
        self._lock_fd: int | None = None
        self._parent_fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._keep_work = False
        self._committed = False

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> OutputTransaction:
        self.begin()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def begin(self) -> None:
        """Check ``--out``, take the lock, clean up leftovers, create the work and staging folders.

        Runs before anything is evaluated, so every refusal costs nothing.

        Raises:
            OutputError: ``--out`` is refused (:func:`check_out_dir`), its parent is
                not writable, or the lock path is not a plain file of this user's.
            OutputBusyError: Another process holds the lock.
        """
        out = self.out_dir
        check_out_dir(out, force=self.force, protect=self.protect)
        parent = self.target.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"--out {out}: cannot create {parent} ({exc.strerror})") from None
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"--out {out}: {parent} is not writable (the outputs are staged beside --out)")
        self._parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._lock_fd = _acquire_lock(self._parent_fd, self.target, out)
            # under the lock: the folder may have changed since the first look
            check_out_dir(out, force=self.force, protect=self.protect)
            self.notes += recover_leftovers(out)
            st = _lstat(self.target)
            self._identity = None if st is None else (st.st_dev, st.st_ino)
            self.work = Path(tempfile.mkdtemp(prefix=f"{_work_prefix(self.target)}{os.getpid()}-", dir=parent))
            self.stage = self.work / "out"
            self.stage.mkdir(mode=0o700)
            _write_marker(self.stage)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Remove the work folder (an uncommitted stage with it) and release the lock."""
        if self.work != Path() and self.work.exists() and not self._keep_work:
            shutil.rmtree(self.work, ignore_errors=True)
        if self._lock_fd is not None:
            _release_lock(self._parent_fd, self.target, self._lock_fd)
            self._lock_fd = None
        if self._parent_fd is not None:
            os.close(self._parent_fd)
            self._parent_fd = None

    # ------------------------------------------------------------------- writing

    def keep(self, names: Iterable[str]) -> list[str]:
        """Carry existing output files of ``--out`` into the new set unchanged (hard links, or copies).

        For commands that update part of a folder (``cvaudit report`` keeps the
        run's ``predictions.csv``). Files are never changed in place, so a hard
        link is as good as a copy. Symbolic links are not followed.

        Args:
            names: Output file names to keep when they exist in ``--out``.

        Returns:
            The names kept.
        """
        kept = []
        for name in names:
            source = self.target / name
            st = _lstat(source)
            if st is None or not stat.S_ISREG(st.st_mode) or (self.stage / name).exists():
                continue
            try:
                os.link(source, self.stage / name, follow_symlinks=False)
            except OSError:
                shutil.copy2(source, self.stage / name, follow_symlinks=False)
            kept.append(name)
        return kept

    def commit(self) -> list[Path]:
        """Swap the staging folder in as the new ``--out`` (see the module docstring).

        Returns:
            The output files now in ``--out``, sorted by name.

        Raises:
            OutputError: ``--out`` changed during the run (it became a file, a link, another
                folder, or appeared): nothing of it is changed or deleted, the new set is discarded.
        """
        out, stage, pfd = self.out_dir, self.stage, self._parent_fd
        assert pfd is not None, "commit() before begin()"
        name = self.target.name
        staged = f"{self.work.name}/out"
        _set_modes(stage, self.mode)
        _fsync(stage)
        _after("staged")
        now = _lstat(name, dir_fd=pfd)
        if self._identity is None:
            if now is not None:
                raise self._changed(f"it appeared during the run as {_kind(now).replace('another ', 'a ')}")
            try:
                _rename_new(staged, name, pfd)
            except OutputError:
                raise self._changed("it appeared during the run") from None
            _after("swapped")
            old = None
        else:
            if now is None or not stat.S_ISDIR(now.st_mode) or (now.st_dev, now.st_ino) != self._identity:
                raise self._changed(f"it is now {_kind(now)}")
            if _exchange(staged, name, pfd):
                _after("swapped")
                back = _lstat(staged, dir_fd=pfd)
                if back is None or not stat.S_ISDIR(back.st_mode) or (back.st_dev, back.st_ino) != self._identity:
                    # replaced between the check and the swap: put back whatever is there now, discard ours
                    try:
                        _exchange(staged, name, pfd)
                    except OSError:
                        self._keep_work = True
                        raise self._changed(f"it was replaced by {_kind(back)}; that is now in {stage}") from None
                    raise self._changed(f"it was replaced by {_kind(back)} during the swap")
                old = stage
            else:  # no atomic exchange here: two renames (the next run repairs a crash between them)
                old = self.work / "old"
                os.rename(name, f"{self.work.name}/old", src_dir_fd=pfd, dst_dir_fd=pfd)
                moved = _lstat(old)
                if moved is None or not stat.S_ISDIR(moved.st_mode) or (moved.st_dev, moved.st_ino) != self._identity:
                    os.rename(f"{self.work.name}/old", name, src_dir_fd=pfd, dst_dir_fd=pfd)
                    raise self._changed(f"it was replaced by {_kind(moved)} during the swap")
                _after("moved-old")
                os.rename(staged, name, src_dir_fd=pfd, dst_dir_fd=pfd)
                _after("swapped")
        _fsync(self.target.parent)
        if old is not None:
            self.notes += _carry_foreign(old, self.target)
            _after("carried")
        self._committed = True
        return sorted(
            (out / p.name for p in self.target.iterdir() if p.is_file() and p.name in OUTPUT_FILES),
            key=lambda p: p.name,
        )

    def _changed(self, what: str) -> OutputError:
        return OutputError(
            f"--out {self.out_dir}: changed during the run ({what}); it was left as it is and the new outputs "
            "were not written"
        )


def _set_modes(stage: Path, mode: int) -> None:
    """The new set's modes: the folder ``mode``, its plain files the same bits without execute."""
    for entry in os.scandir(stage):
        if entry.is_file(follow_symlinks=False):
            os.chmod(entry.path, mode & 0o666)
    os.chmod(stage, mode)


# -------------------------------------------------------------------- the lock


def _acquire_lock(parent_fd: int, target: Path, shown: Path) -> int:
    """Take the advisory lock of ``target`` (resolved) in the folder ``parent_fd``; the file holds the owner's pid.

    The lock file is opened with ``O_NOFOLLOW`` relative to the parent's descriptor and checked on
    its descriptor before it is truncated: a symbolic link, a non-regular file, a file with other
    hard links or of another owner is refused with :class:`OutputError`.
    """
    import fcntl

    path = lock_path(target)
    name = path.name
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    for _ in range(10):
        try:
            fd = os.open(name, flags, 0o600, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OutputError(
                    f"--out {shown}: the lock {path} is a symbolic link; cvaudit does not follow it "
                    "(remove it if you did not make it)"
                ) from None
            raise OutputError(f"--out {shown}: cannot open the lock {path} ({exc.strerror})") from None
        st = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(st.st_mode):
            problem = "is not a regular file"
        elif st.st_nlink != 1:
            problem = f"has {st.st_nlink} hard links (another name of some file)"
        elif hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            problem = f"belongs to another user (uid {st.st_uid})"
        if problem:
            os.close(fd)
            raise OutputError(f"--out {shown}: the lock {path} {problem}; remove it if you did not make it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            owner = _lock_owner(fd)
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise OutputBusyError(
                f"--out {shown}: another cvaudit process (pid {owner}) is writing into it "
                f"(lock {path}); wait for it to finish or choose another --out"
            ) from None
        # the holder before us may have removed the file after we opened it: lock the file that is there now
        now = _lstat(name, dir_fd=parent_fd)
        if now is not None and (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)
    raise OutputBusyError(f"--out {shown}: cannot take the lock {path} (it keeps being replaced)")


def _lock_owner(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


def _release_lock(parent_fd: int | None, target: Path, fd: int) -> None:
    """Remove the lock file (only the one this process holds) and close it."""
    with contextlib.suppress(OSError):
        name = lock_path(target).name
        st, now = os.fstat(fd), _lstat(name, dir_fd=parent_fd)
        if now is not None and (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
            os.unlink(name, dir_fd=parent_fd)
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
    out = _resolve_out(Path(out_dir))
    notes = []
    prefix = _work_prefix(out)
    pid = re.compile(re.escape(prefix) + r"(\d+)-")
    for work in sorted(out.parent.glob(prefix + "*")):
        if not work.is_dir() or work.is_symlink():
            continue
        if not _made_by_us(work):  # someone else's folder beside --out (a shared parent): never take from it
            notes.append(
                f"{work}: left in place, not a staging folder of yours (owned by another user or writable by others)"
            )
            continue
        owner = pid.match(work.name)
        who = f"pid {owner.group(1)}" if owner else "unknown pid"
        old = work / "old"
        if (
            _lstat(out) is None and old.is_dir() and not old.is_symlink()
        ):  # killed between the two renames of the fallback swap
            os.rename(old, out)
            notes.append(f"{out}: put the previous outputs back from {work} (a run, {who}, was killed mid-swap)")
        odd = [p.name for p in (work / "out", old) if _lstat(p) is not None and (p.is_symlink() or not p.is_dir())]
        if odd:  # a swap undone half-way left something that is not cvaudit's folder here: never delete it
            notes.append(f"{work}: left in place, {' and '.join(odd)} in it is not a folder cvaudit made; look at it")
            continue
        stranded = []
        for folder in (work / "out", old):
            if folder.is_dir() and not folder.is_symlink() and out.is_dir() and not out.is_symlink():
                stranded += [line for line in _carry_foreign(folder, out) if "left in" in line]
        if stranded:
            notes.append(f"{work}: left in place, it holds files that are not cvaudit's: " + "; ".join(stranded))
            continue
        shutil.rmtree(work, ignore_errors=True)
        notes.append(f"removed {work}, the staging folder of an interrupted run ({who}); {out} was not changed by it")
    return notes


def _made_by_us(work: Path) -> bool:
    """Whether a staging folder (and its ``out``/``old``) is ours: owned by this user, writable by nobody else.

    ``tempfile.mkdtemp`` makes it 0700; a folder of that name that another user planted beside
    ``--out`` in a shared parent must not be renamed into ``--out`` or have its files carried there.
    """
    for path in (work, work / "out", work / "old"):
        info = _lstat(path)
        if info is None:
            continue
        if info.st_uid != os.geteuid() or info.st_mode & 0o022:
            return False
    return True


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


def _renameat2(src: str, dst: str, dir_fd: int, flags: int) -> bool:
    """Linux ``renameat2`` of two names in the folder ``dir_fd``; False where it or ``flags`` is unsupported."""
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(dir_fd, os.fsencode(src), dir_fd, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), dst)


def _exchange(a: str, b: str, dir_fd: int) -> bool:
    """Atomically exchange two names in the folder ``dir_fd`` (``RENAME_EXCHANGE``); False where unsupported."""
    return _renameat2(a, b, dir_fd, 2)


def _rename_new(src: str, dst: str, dir_fd: int) -> None:
    """Rename ``src`` to ``dst``, which must not exist (``RENAME_NOREPLACE`` where the kernel has it).

    Raises:
        OutputError: ``dst`` exists (it appeared after the check).
    """
    try:
        if _renameat2(src, dst, dir_fd, 1):
            return
        if _lstat(dst, dir_fd=dir_fd) is not None:
            raise FileExistsError(errno.EEXIST, "exists", dst)
        os.rename(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except FileExistsError:
        raise OutputError(f"--out {dst}: appeared during the run; it was left as it is") from None


def _fsync(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
