"""Keep freed memory in the process, so each frame's large activations cost no page faults.

A 1024 px frame allocates about a gigabyte of activations, a few tensors of 30-140 MB each.
glibc's malloc serves every request above 32 MB with a fresh ``mmap`` and returns it with
``munmap`` on free, so every frame pays the kernel again to map and zero those pages: about
200,000 page faults per frame. On this project's 2-core VM that was 0.5-4.6 s of *system* time
on top of about 1.1 s of arithmetic, and the part that varied most from frame to frame.
(Transparent huge pages, tried first, trade the many faults for synchronous compaction of
memory, which was as slow once the OS's memory was fragmented.)

:func:`keep_freed_memory` tells glibc to take every block from its one main heap (also for other
threads) and not to give the top of the heap back: a freed activation is reused by the next
frame as it is. The peak of the
process is unchanged (it is reached anyway); what changes is that memory, once used, stays with
the process until it exits, as with any allocator that caches. Model weights are unaffected:
they are memory-mapped files (see ``memory.release_pages``).

Called by the entry points (editor, command line, benchmarks), not on import, so a program that
merely imports the package keeps its own allocator settings. ``HYPERINVERTER_MALLOC=system``
turns it off. Does nothing where the C library is not glibc (macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

# mallopt() parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
# Keep up to this much free memory at the top of the heap instead of returning it (mallopt takes
# an int: 2 GB, more than a frame's or an inversion's worth of activations).
TRIM_THRESHOLD = 2**31 - 1

_applied: bool | None = None


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        version = libc.gnu_get_libc_version
    except (OSError, AttributeError):  # not glibc (musl has no gnu_get_libc_version)
        return None
    version.restype = ctypes.c_char_p
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed large blocks instead of unmapping them. True if applied.

    Idempotent; the first call decides. See the module docstring for why and for the opt-out.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("HYPERINVERTER_MALLOC", "").lower() in ("system", "default", "off", "0"):
        return False
    libc = _glibc()
    if libc is None:
        return False
    # One heap for all threads: a thread's own arena (the engine runs in a QThread) is made of
    # 64 MB heaps, so its large blocks would still be mmap-ed and unmapped each time.
    ok = [libc.mallopt(M_ARENA_MAX, 1) == 1, libc.mallopt(M_MMAP_MAX, 0) == 1,
          libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1]
    _applied = all(ok)
    if not _applied:
        log.debug("mallopt refused (arena_max, mmap_max, trim_threshold: %s)", ok)
    return _applied


__all__ = ["keep_freed_memory"]
