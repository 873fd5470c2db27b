"""Atomic file writes: a reader sees the old file or the new one, never half.

Every file cvaudit's reports write goes through :func:`atomic_write_bytes`:
the data goes to a temporary file in the destination folder (same file
system, so the rename is atomic), is flushed and fsync'ed, and then replaces
the destination with :func:`os.replace`. An interrupted run leaves either the
previous file or no file, plus at worst a stray ``.*.tmp`` file that is
removed on the next error path.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text"]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically.

    Args:
        path: Destination file. Its folder must exist.
        data: The complete new content.
        mode: Permission bits for the new file (for example ``0o600`` for a
            private key). ``None`` keeps the mode of an existing destination,
            or ``0o644`` minus the umask for a new one.

    Returns:
        The destination path.

    Raises:
        OSError: The folder does not exist or is not writable. The
            destination is then left untouched.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> atomic_write_bytes(d / "a.txt", b"hi").read_bytes()
        b'hi'
    """
    dest = Path(path)
    if mode is None:
        try:
            mode = dest.stat().st_mode & 0o777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o644 & ~umask
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, dest)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(dest.parent)
    return dest


def atomic_write_text(
    path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", mode: int | None = None
) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`).

    Args:
        path: Destination file.
        text: The complete new content.
        encoding: Text encoding, UTF-8 by default.
        mode: Permission bits, as for :func:`atomic_write_bytes`.

    Returns:
        The destination path.
    """
    return atomic_write_bytes(path, text.encode(encoding), mode=mode)


def _fsync_dir(folder: Path) -> None:
    """Persist a rename on file systems that need the folder fsync'ed."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
