"""The one way cvaudit reads a file a user named: opened once, checked on the open descriptor, read with a bound.

Every reader of a user's file (config, policy, results.json, trust files, key
files, COCO annotations, a manifest) goes through :func:`read_bounded` (the
whole file) or :func:`open_bounded` (a stream, for readers that go line by
line). Both

1. open the path once (``O_NONBLOCK`` so that opening a FIFO never waits for a
   writer; ``O_NOCTTY`` so that a terminal never becomes ours);
2. ``fstat`` the open descriptor, not the name (no race between the check and
   the read), and refuse anything but a regular file: a folder, a character
   device such as ``/dev/zero``, a FIFO, a socket;
3. refuse a file whose size is over the limit before reading a byte;
4. read at most ``min(size, limit) + 1`` bytes (``size`` from ``fstat``), so a
   file that grows while it is read is refused too, and memory is bounded by
   the file's size and the limit, never by the limit alone (``read(n)`` allocates
   ``n`` bytes up front: a generous limit must not cost its size on every read).

A limit is enforced by these checks, never by running out of memory. Every
refusal is one line naming the file (the caller's error class, exit code 2).
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

from audit.contract.errors import CvauditError, echo

__all__ = [
    "KIND_NAMES",
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "check_path_name",
    "open_bounded",
    "read_bounded",
    "require_regular",
]

#: The longest file name component (bytes) and whole path (bytes) cvaudit passes to the system (Linux's
#: NAME_MAX and PATH_MAX): a longer name is refused with one line before any call that would fail on it.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096

#: What a non-regular file is called in messages, by its ``stat.S_IFMT`` type.
KIND_NAMES = {
    stat.S_IFDIR: "a folder",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
}


def _size_text(n: int) -> str:
    return f"{n} bytes" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def check_path_name(path: str | os.PathLike[str], *, what: str, error: type[CvauditError]) -> Path:
    """``path`` as a :class:`~pathlib.Path` if the system can take its name, else one line.

    A name with a NUL byte or a lone surrogate (which no file name can hold), a component longer than
    :data:`MAX_NAME_BYTES` or a path longer than :data:`MAX_PATH_BYTES` makes ``is_dir()``, ``exists()``
    and ``stat()`` raise (``ValueError``, ``UnicodeEncodeError``, ``OSError`` ENAMETOOLONG) instead of
    answering; readers call this first, so such a name is bad input, never an internal error.

    Raises:
        error: the name cannot name a file.

    >>> check_path_name("a/b.yaml", what="policy file", error=CvauditError)
    PosixPath('a/b.yaml')
    """
    text = os.fspath(path)
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:
        raise error(f"{echo(str(text))}: not a usable {what} name (it holds a lone surrogate)") from None
    if b"\0" in raw:
        raise error(f"{echo(str(text))}: not a usable {what} name (it holds a NUL byte)")
    if len(raw) > MAX_PATH_BYTES or any(len(part) > MAX_NAME_BYTES for part in raw.split(b"/")):
        raise error(
            f"{echo(str(text))}: {what} name too long ({len(raw)} bytes; at most {MAX_NAME_BYTES} per "
            f"component and {MAX_PATH_BYTES} in all)"
        )
    return Path(text)


def require_regular(path: str | os.PathLike[str], *, what: str, error: type[CvauditError]) -> Path:
    """``path`` if it names a regular file (after symbolic links), else one line saying what it is.

    For files a library opens itself (a model file for torch or onnxruntime): a FIFO would make it
    wait forever for a writer and ``/dev/zero`` read forever, so they are refused by name first.

    Raises:
        error: missing, or a folder, device, FIFO or socket.
    """
    path = check_path_name(path, what=what, error=error)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    kind = stat.S_IFMT(info.st_mode)
    if kind != stat.S_IFREG:
        raise error(f"{path}: is {KIND_NAMES.get(kind, 'not a regular file')}; expected {what} (a regular file)")
    return path


def _kind_of(path: Path) -> str | None:
    """What ``path`` is when it is not a regular file (``None`` for a regular file or when it cannot be told)."""
    try:
        kind = stat.S_IFMT(os.stat(path).st_mode)
    except OSError:
        return None
    return None if kind == stat.S_IFREG else KIND_NAMES.get(kind, "not a regular file")


def _open_regular(path: Path, what: str, limit: int, error: type[CvauditError]) -> tuple[int, int]:
    """Open ``path`` and check it on the descriptor; returns ``(fd, size)``. The caller closes ``fd``."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder; expected {what}") from None
    except ValueError:  # a NUL, or a lone surrogate (UnicodeEncodeError) that no file name can hold
        raise error(f"{echo(str(path))}: cannot read {what}: the name holds a NUL byte or a lone surrogate") from None
    except OSError as exc:
        kind = _kind_of(path)
        if kind is not None:  # a socket cannot be opened at all (ENXIO): name what it is
            raise error(f"{path}: is {kind}; expected {what} (a regular file)") from None
        raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        kind = stat.S_IFMT(info.st_mode)
        if kind != stat.S_IFREG:
            name = KIND_NAMES.get(kind, "not a regular file")
            raise error(f"{path}: is {name}; expected {what} (a regular file)")
        if info.st_size > limit:
            raise error(f"{path}: {what} is {_size_text(info.st_size)}; at most {_size_text(limit)} are read")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def read_bounded(path: str | os.PathLike[str], *, limit: int, what: str, error: type[CvauditError]) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (see the module docstring).

    Args:
        path: the file a user named.
        limit: the most bytes accepted.
        what: what the file is, for messages ("config file", "trust file").
        error: the :class:`CvauditError` subclass to raise (the caller's stage).

    Raises:
        error: missing, unreadable, not a regular file, or larger than ``limit``
            (also when it grew past the limit while being read).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"; _ = p.write_bytes(b"abc")
    >>> read_bounded(p, limit=10, what="text file", error=CvauditError)
    b'abc'
    """
    path = Path(path)
    fd, size = _open_regular(path, what, limit, error)
    with os.fdopen(fd, "rb") as handle:
        try:
            # one byte past the size fstat gave tells a file that grew; read(n) allocates n bytes up front,
            # so n is the file's size (at most the limit), never the limit itself
            data = handle.read(min(size, limit) + 1)
            if size < len(data) <= limit:  # it grew while we read: the rest, still bounded by the limit
                data += handle.read(limit + 1 - len(data))
        except OSError as exc:
            raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise error(f"{path}: {what} grew past {_size_text(limit)} while it was read; at most that is read")
    return data


def open_bounded(
    path: str | os.PathLike[str], *, limit: int, what: str, error: type[CvauditError]
) -> io.BufferedReader:
    """A binary stream over a regular file of at most ``limit`` bytes, checked as :func:`read_bounded` checks.

    For readers that go line by line (manifests, CSVs): they still bound each
    line themselves (``readline(max_line + 1)``). The caller closes the stream
    (use it as a context manager).

    Raises:
        error: missing, unreadable, not a regular file, or larger than ``limit``.
    """
    path = Path(path)
    fd, _ = _open_regular(path, what, limit, error)
    return os.fdopen(fd, "rb")
