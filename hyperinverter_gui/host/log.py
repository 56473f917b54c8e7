"""The log file: where unexpected errors go with their traceback, so the user sees one line naming it.

Both front ends write to the same per-user file (``host.paths.log_file``). The command line turns
file logging on only when something unexpected happens (a quiet command leaves no file behind);
the editor turns it on at start. When the cache folder cannot be written, the traceback goes to
standard error instead and the message says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hyperinverter_gui.host.paths import log_file

LOGGER_NAME = "hyperinverter_gui"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_added: logging.Handler | None = None  # the handler enable_file_log added


def _file_handler(path: Path) -> logging.Handler | None:
    logger = logging.getLogger(LOGGER_NAME)
    for h in logger.handlers + logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path:
            return h
    return None


def enable_file_log() -> Path | None:
    """Send the package's log records (INFO and up) to the log file. Returns its path, or None when
    it cannot be written (a read-only or full cache folder)."""
    try:
        path = log_file().absolute()
    except (OSError, RuntimeError):  # no home folder at all
        return None
    if _file_handler(path) is not None:
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8", delay=False)
    except OSError:
        return None
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger(LOGGER_NAME)
    global _added
    if _added is not None:  # the cache folder moved (HYPERINVERTER_CACHE): one log file at a time
        logger.removeHandler(_added)
        _added.close()
    _added = handler
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    return path


def log_unexpected(exc: BaseException, doing: str) -> Path | None:
    """Write ``exc`` with its traceback to the log file; returns the file (None: it could not be written)."""
    path = enable_file_log()
    logger = logging.getLogger(LOGGER_NAME)
    try:
        logger.error("unexpected error while %s", doing, exc_info=(type(exc), exc, exc.__traceback__))
    except Exception:  # noqa: BLE001 - logging must never become the failure
        path = None
    if path is not None:
        handler = _file_handler(path)
        if handler is not None:
            try:
                handler.flush()
            except Exception:  # noqa: BLE001
                path = None
    return path


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line, shortened: messages shown to users never span lines or screens."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def is_out_of_memory(exc: BaseException) -> bool:
    """Host memory (MemoryError) or an accelerator's (torch's OutOfMemoryError, "out of memory")."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def unexpected_message(exc: BaseException, doing: str) -> str:
    """Log ``exc`` and say so in one line: what failed, the exception, and where the details are."""
    if is_out_of_memory(exc):
        log_unexpected(exc, doing)
        return (f"out of memory while {doing}: close other programs, or use a smaller photo or batch size, "
                "or a lower precision, and try again")
    path = log_unexpected(exc, doing)
    what = one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, 200)
    if path is None:
        return f"unexpected error while {doing} ({what}); the log file could not be written"
    return f"unexpected error while {doing} ({what}); details are in the log file {path}"

