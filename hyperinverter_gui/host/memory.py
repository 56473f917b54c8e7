"""Handing the resident pages of memory-mapped model weights back to the OS between uses.

Models loaded from the cache (``model_cache``) are memory-mapped safetensors files: their
tensors are clean, file-backed pages. An inversion reads the encoders and the hypernetwork
once (about 1.4 GB at FFHQ size) and then, while the user edits, only the generator is used.
:func:`release_pages` drops the encoders' pages from the process (``madvise(MADV_DONTNEED)``):
the data stays in the file and in the OS's page cache, so the next inversion maps it back with
minor page faults (no measurable cost here), or re-reads it from disk if the OS needed the
memory meanwhile. The process's resident memory, and so its peak, no longer holds every
network at once.

Only ranges that lie entirely inside a file mapping are released; anything else (tensors in
ordinary memory, where ``MADV_DONTNEED`` would zero them, or on a GPU) is left alone. The
contract: weights are never modified in place after loading (a modified private page would
revert to the file's content, which is the loaded weight).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
import sys
import weakref
from collections.abc import Iterable

import torch

log = logging.getLogger(__name__)
_MADV_DONTNEED = 4
_libc = None


def _madvise():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        _libc.madvise.restype = ctypes.c_int
    return _libc.madvise


def file_mappings() -> list[tuple[int, int, str]]:
    """(start, end, path) of this process's file-backed mappings (Linux)."""
    out = []
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) < 6 or parts[4] == "0":  # inode 0: anonymous memory
                continue
            path = parts[5].strip()
            if not path or path.startswith("["):
                continue
            start, end = (int(x, 16) for x in parts[0].split("-"))
            out.append((start, end, path))
    return out


def _ranges(tensors: Iterable[torch.Tensor]) -> list[tuple[int, int]]:
    """Page-aligned, merged address ranges of CPU tensors' storages."""
    page = mmap.PAGESIZE
    spans = []
    for t in tensors:
        if t.device.type != "cpu" or t.numel() == 0:
            continue
        s = t.untyped_storage()
        lo, hi = s.data_ptr(), s.data_ptr() + s.nbytes()
        spans.append((lo - lo % page, hi + (-hi) % page))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


# Per module: (address of its first tensor, its file-mapped ranges). Reading /proc/self/maps costs
# about 1 ms, and an inversion releases about a hundred parts; a module's tensors do not move.
_MAPPED_RANGES: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[int, list[tuple[int, int]]]]" = \
    weakref.WeakKeyDictionary()


def _file_mapped_ranges(tensors: list[torch.Tensor]) -> list[tuple[int, int]]:
    try:
        maps = file_mappings()
    except OSError:
        return []
    # Only ranges entirely inside a file mapping: never madvise anything else.
    return [(lo, hi) for lo, hi in _ranges(tensors) if any(start <= lo and hi <= end for start, end, _ in maps)]


def release_pages(module: torch.nn.Module | Iterable[torch.Tensor]) -> int:
    """Drop the resident pages of these weights where they are file mappings; returns the bytes released.

    A no-op (0) off Linux, for GPU tensors and for tensors in ordinary memory.
    """
    if not sys.platform.startswith("linux"):
        return 0
    if isinstance(module, torch.nn.Module):
        tensors = list(module.state_dict(keep_vars=True).values())
        first = tensors[0].data_ptr() if tensors else 0
        cached = _MAPPED_RANGES.get(module)
        if cached is None or cached[0] != first:
            cached = _MAPPED_RANGES[module] = (first, _file_mapped_ranges(tensors))
        ranges = cached[1]
    else:
        ranges = _file_mapped_ranges(list(module))
    released = 0
    for lo, hi in ranges:
        if _madvise()(lo, hi - lo, _MADV_DONTNEED) == 0:
            released += hi - lo
        else:
            log.debug("madvise failed for %#x+%d: errno %d", lo, hi - lo, ctypes.get_errno())
    return released
