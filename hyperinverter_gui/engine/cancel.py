"""Cancellation: one token per job, set from any thread, checked by the engine between stages."""

from __future__ import annotations

import threading


class Cancelled(Exception):
    """The job was cancelled (not an error: nothing is reported to the user)."""


class CancelToken:
    """A flag one job's engine calls check between stages; any thread may set it.

    Each job has its own token, so cancelling one job never touches another's.
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()
