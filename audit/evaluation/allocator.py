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

``allocator: retain`` (the default) fixes the two thresholds for the rest of the process before
the evaluation starts: blocks up to :data:`MMAP_THRESHOLD` come from the heap, and up to
:data:`TRIM_THRESHOLD` of free heap is kept for reuse instead of being returned. What is kept
was in use at a peak of the run, so the peak memory does not grow; the process just does not
shrink between batches. DataLoader workers forked afterwards inherit the settings.
``allocator: system`` leaves the allocator as it is. Only glibc (Linux) has these settings;
elsewhere (musl, macOS, Windows) nothing is changed and the run records ``system``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable
from typing import Literal

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "apply_allocator"]

#: Blocks up to this size come from the heap (glibc's largest accepted mmap threshold on 64-bit).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free heap memory up to this size is kept for reuse.
TRIM_THRESHOLD = 256 * 1024 * 1024

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
    """Set the allocator for the rest of the process (see the module docstring).

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
