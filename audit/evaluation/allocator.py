"""The C allocator of the run: memory freed by one batch is kept for the next.

Every batch allocates and frees the same tensors again: the decoded images, their stressed
copies, the model's activations and the bootstrap sums (1-2 MB each with a 32x32 model and
1,000 replicates). glibc's ``malloc`` serves a block above its *mmap threshold* with a mapping
of its own, unmapped when it is freed, and gives free memory at the top of a heap above its
*trim threshold* back to the kernel; both thresholds start low (128 KiB) and move with what was
freed last. The next batch then faults the same pages in again, and the kernel zero-fills every
one of them: on the 2-core machine of ``benchmarks/README.md`` that was 5 s of system time in a
28 s run of 30,000 images, and with the evaluation's bookkeeping thread beside the model it
slowed the run by a sixth (the bare loop of the benchmark gains about as much when given the
same settings; both are measured there).

``allocator: retain`` fixes the two thresholds while the audit evaluates, judges and writes
its outputs: blocks up to :data:`MMAP_THRESHOLD` come from the heap, and up to
:data:`TRIM_THRESHOLD` of free heap is kept for reuse instead of being returned. What is kept was in use at a peak of the run, so the
peak memory does not grow; the process just does not shrink between batches. DataLoader workers
forked meanwhile inherit the settings. ``allocator: system`` leaves the allocator as it is.

The setting belongs to the whole process, so a library does not make it on its own: the config
key is unset by default, and then :func:`audit.runner.run` and the pytest plugin leave ``mallopt``
alone; ``cvaudit run`` and ``cvaudit demo`` own their process and ask for ``retain`` when the
config says nothing. :func:`allocator_setting` applies it for a block and restores it on exit.

**What "restore" means.** glibc has no getter for these two parameters, and setting either one
switches off its *dynamic* thresholds for good (``mallopt(3)``: "dynamic adjustment of the mmap
threshold is disabled if any of M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, or M_MMAP_MAX is
set"; nothing turns it back on). On exit both thresholds are set back to the values the process
started with: the ones its environment gave glibc (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, or ``glibc.malloc.mmap_threshold`` / ``glibc.malloc.trim_threshold``
in ``GLIBC_TUNABLES``), else glibc's documented defaults, :data:`GLIBC_DEFAULT_THRESHOLD`
(128 KiB) each. They then stay at those values instead of moving with what is freed, as if the
process had been started with ``MALLOC_MMAP_THRESHOLD_=131072``. A ``mallopt`` the process made
itself before the block cannot be read back and is not restored.

Only glibc (Linux) has these settings; elsewhere (musl, macOS, Windows) nothing is changed and
the run records ``system``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

__all__ = [
    "GLIBC_DEFAULT_THRESHOLD",
    "MMAP_THRESHOLD",
    "TRIM_THRESHOLD",
    "allocator_setting",
    "apply_allocator",
    "start_thresholds",
]

#: Blocks up to this size come from the heap (glibc's largest accepted mmap threshold on 64-bit).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free heap memory up to this size is kept for reuse.
TRIM_THRESHOLD = 256 * 1024 * 1024

#: glibc's documented start value of both thresholds (``mallopt(3)``), what :func:`allocator_setting` restores.
GLIBC_DEFAULT_THRESHOLD = 128 * 1024

# mallopt(3) parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt``, when this process runs on glibc (``os.confstr`` names its version), else None."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
    except (AttributeError, ValueError, OSError):  # not Linux, or a libc without that name (musl)
        return None
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


def apply_allocator(mode: Literal["retain", "system"]) -> Literal["retain", "system"]:
    """Set the allocator for the rest of the process, never restored (for a script that owns its process).

    The audit itself uses :func:`allocator_setting`, which restores the thresholds on exit.

    Args:
        mode: ``retain`` fixes the thresholds; ``system`` changes nothing.

    Returns:
        What the process now uses: ``retain`` when both thresholds were set, else ``system``
        (``mode`` was ``system``, the C library is not glibc, or glibc refused a value).
    """
    if mode != "retain":
        return "system"
    mallopt = _mallopt()
    if mallopt is None:
        return "system"
    # The mmap threshold first (a refused value leaves everything as it was); setting either
    # threshold stops glibc moving both.
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 or mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return "system"
    return "retain"


def _environment_threshold(variable: str, tunable: str) -> int | None:
    """The threshold glibc read from this process's environment at start, if any (see the module docstring)."""
    values = {variable: os.environ.get(variable)}
    for item in os.environ.get("GLIBC_TUNABLES", "").split(":"):  # glibc.malloc.x=v:glibc.malloc.y=w
        name, _, value = item.partition("=")
        if name == tunable:
            values[tunable] = value
    for value in (values.get(tunable), values[variable]):  # a tunable wins over the older variable
        if value is not None and value.strip().isdigit():
            return int(value)
    return None


def start_thresholds() -> tuple[int, int]:
    """(mmap threshold, trim threshold) as this process started: its environment's, else glibc's defaults."""
    mmap = _environment_threshold("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold")
    trim = _environment_threshold("MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold")
    return (
        GLIBC_DEFAULT_THRESHOLD if mmap is None else mmap,
        GLIBC_DEFAULT_THRESHOLD if trim is None else trim,
    )


_depth = [0]  # allocator_setting blocks open with ``retain`` applied (only the outermost restores)


@contextmanager
def allocator_setting(mode: Literal["retain", "system"] | None) -> Iterator[Literal["retain", "system"]]:
    """Apply ``mode`` for the block and restore the thresholds on exit (see the module docstring).

    Args:
        mode: ``retain`` fixes the thresholds for the block; ``system`` or None changes nothing
            (``mallopt`` is not called at all).

    Yields:
        What the block runs with: ``retain`` when both thresholds were set, else ``system``.

    A block inside another that applied ``retain`` runs with the outer setting and restores
    nothing; the outermost restores on exit, whether the block raised or not.
    """
    if mode != "retain":
        yield "system"
        return
    if _depth[0]:
        _depth[0] += 1
        try:
            yield "retain"
        finally:
            _depth[0] -= 1
        return
    mallopt = _mallopt()
    if mallopt is None:
        yield "system"
        return
    changed = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1  # as apply_allocator, remembering what was set
    applied: Literal["retain", "system"] = (
        "retain" if changed and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 else "system"
    )
    _depth[0] += applied == "retain"
    try:
        yield applied
    finally:
        _depth[0] -= applied == "retain"
        if changed:  # a refused first value set nothing, and nothing is touched
            mmap, trim = start_thresholds()
            mallopt(_M_MMAP_THRESHOLD, mmap)
            mallopt(_M_TRIM_THRESHOLD, trim)
