"""Inter-process locks for the files several processes share: downloads (``.part``), the model
cache, ``checksums.json`` and ``identified.json``.

The command line and the editor may run at once and share these files. Each read-modify-write
of a shared file, and each download to one destination, happens under a ``filelock`` lock. Lock
files live in the cache folder (``<cache>/locks/<hash>.lock``), not beside the target, so user
folders (``weights download --to DIR``) get nothing but the file they asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from hyperinverter_gui.host.paths import cache_dir

log = logging.getLogger(__name__)


class LockBusy(Exception):
    """Another process holds the lock (raised only when ``busy_ok`` is False)."""


def lock_path(target: Path) -> Path:
    """The lock file guarding ``target`` (same for every process: keyed by the resolved path)."""
    key = hashlib.sha1(str(Path(target).resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return cache_dir() / "locks" / f"{Path(target).name[:40]}-{key}.lock"


@contextlib.contextmanager
def locked(target: Path, timeout: float = 30.0, busy_ok: bool = True) -> Iterator[bool]:
    """Hold the lock of ``target`` for the block; yields True when held.

    When the lock folder cannot be written, the block runs unlocked (yields False): a read-only
    cache must not stop the app. When another process holds the lock past ``timeout``: with
    ``busy_ok`` the block runs unlocked too (for memos, where a lost update only costs speed),
    else :class:`LockBusy` is raised for the caller to turn into its own message.
    """
    path = lock_path(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path), timeout=timeout)
        lock.acquire()
    except Timeout:
        if not busy_ok:
            raise LockBusy(str(path)) from None
        log.warning("another process holds %s; going on without it", path)
        yield False
        return
    except OSError as e:
        log.debug("cannot lock %s (%s); going on without a lock", target, e)
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
