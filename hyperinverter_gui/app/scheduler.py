"""Render coalescing: while one frame renders, only the newest wanted state waits."""

from __future__ import annotations

from typing import Any


class RenderScheduler:
    """Coalesces slider changes into renders: at most one in flight, the newest state always last.

    ``request(state)`` records the wanted state and returns it if a render should
    start now (nothing in flight), else None. ``finished(state)`` is called when a
    render ends and returns the next state to render (the newest one requested
    meanwhile), or None when the last finished render already shows the newest
    state. Nothing requested is ever lost.
    """

    def __init__(self) -> None:
        self.in_flight: Any = None
        self.pending: Any = None
        self._has_pending = False

    def request(self, state: Any) -> Any:
        if self.in_flight is None:
            self.in_flight = state
            return state
        self.pending, self._has_pending = state, True
        return None

    def finished(self, state: Any) -> Any:
        self.in_flight = None
        if self._has_pending:
            nxt, self.pending, self._has_pending = self.pending, None, False
            if nxt == state:
                return None
            self.in_flight = nxt
            return nxt
        return None

    def reset(self) -> None:
        self.in_flight, self.pending, self._has_pending = None, None, False

    @property
    def busy(self) -> bool:
        return self.in_flight is not None
