"""Jobs: model work submitted from the front end, run on the engine's thread, answered back.

A :class:`Job` is a function of the engine and a :class:`JobContext` (progress, partial
results, its own :class:`~hyperinverter_gui.engine.cancel.CancelToken`). The
:class:`JobManager` gives each job an id and a *purpose* ("photo", "A", "render", "export",
...); a new job of a purpose supersedes the previous one (which is cancelled), and answers of
superseded or cancelled jobs are dropped, so a stale result is never shown. Executors run jobs:
:class:`InlineExecutor` on the calling thread (tests, the command line); the editor's Qt adapter
on a QThread. Executors hand answers back through :meth:`JobManager.deliver`, on the thread that
owns the manager (the GUI thread).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hyperinverter_gui.engine.cancel import Cancelled, CancelToken
from hyperinverter_gui.errors import HyperInverterError
from hyperinverter_gui.host.log import log_unexpected, one_line, unexpected_message

log = logging.getLogger(__name__)

# Kinds of answers a job sends back.
PROGRESS, PARTIAL, DONE, FAILED, CANCELLED = "progress", "partial", "done", "failed", "cancelled"


class JobContext:
    """What a running job may do besides computing: report progress and partial results, check cancel."""

    def __init__(self, job: "Job", send: Callable[["Job", str, Any], None]):
        self.job = job
        self._send = send

    @property
    def token(self) -> CancelToken:
        return self.job.token

    def progress(self, stage: str, fraction: float) -> None:
        self._send(self.job, PROGRESS, (stage, float(fraction)))

    def partial(self, kind: str, value: Any) -> None:
        self._send(self.job, PARTIAL, (kind, value))


@dataclass(eq=False)
class Job:
    """One unit of model work and where its answers go (callbacks run on the manager's thread)."""

    purpose: str
    run: Callable[[Any, JobContext], Any]  # (engine, context) -> result
    on_done: Callable[[Any], None] | None = None
    on_failed: Callable[[str], None] | None = None
    on_progress: Callable[[str, float], None] | None = None
    on_partial: Callable[[str, Any], None] | None = None
    on_cancelled: Callable[[], None] | None = None
    id: int = 0
    token: CancelToken = field(default_factory=CancelToken)


class Executor(Protocol):
    def submit(self, job: Job) -> None: ...


def run_job(engine: Any, job: Job, send: Callable[[Job, str, Any], None]) -> None:
    """Run one job and send its answer (every executor runs jobs this way)."""
    ctx = JobContext(job, send)
    try:
        job.token.raise_if_cancelled()
        result = job.run(engine, ctx)
    except Cancelled:
        send(job, CANCELLED, None)
    except HyperInverterError as e:
        send(job, FAILED, one_line(e, 500))
    except Exception as e:  # noqa: BLE001 - the boundary: logged with the traceback, one line for the view
        send(job, FAILED, failure_message(e, job.purpose))
    else:
        send(job, DONE, result)


#: what each purpose of job was doing, for messages ("unexpected error while exporting ...")
_DOING = {"photo": "opening the photo", "models": "loading the models", "render": "rendering the edit",
          "export": "exporting", "compare": "preparing the comparison", "precision": "changing the precision",
          "A": "opening photo A", "B": "opening photo B"}


def failure_message(e: BaseException, purpose: str) -> str:
    """One line for a job that raised something other than a user-facing error: out of memory says
    so (and how to go on); anything else is logged with its traceback and the line names the log."""
    doing = _DOING.get(purpose, f"running '{purpose}'")
    if isinstance(e, OSError) and e.filename is not None:
        from hyperinverter_gui.media.atomic import shown

        path = log_unexpected(e, doing)
        where = f"; details in the log file {path}" if path is not None else ""
        return one_line(f"{e.strerror or type(e).__name__} while {doing}: {shown(e.filename)}{where}", 500)
    return unexpected_message(e, doing)


class JobManager:
    """Ids, purposes, per-job cancellation and stale-answer rejection; Qt-free."""

    def __init__(self, executor: Executor | None = None):
        self.executor = executor
        self._ids = itertools.count(1)
        self.current: dict[str, Job] = {}  # purpose -> newest job
        self.running: dict[int, Job] = {}  # id -> job not answered yet

    def submit(self, job: Job, *, supersede: bool = True) -> Job:
        """Queue ``job``. With ``supersede``, the previous job of its purpose is cancelled and its
        answers are dropped from now on."""
        if self.executor is None:
            raise RuntimeError("no executor")
        job.id = next(self._ids)
        if supersede:
            old = self.current.get(job.purpose)
            if old is not None:
                old.token.cancel()
        self.current[job.purpose] = job
        self.running[job.id] = job
        self.executor.submit(job)
        return job

    def cancel(self, purpose: str) -> bool:
        """Cancel the current job of ``purpose`` (its answers are dropped). True if one was running."""
        job = self.current.pop(purpose, None)
        if job is None:
            return False
        job.token.cancel()
        return job.id in self.running

    def cancel_all(self) -> None:
        for purpose in list(self.current):
            self.cancel(purpose)

    def is_current(self, job: Job) -> bool:
        return self.current.get(job.purpose) is job and not job.token.cancelled

    def busy(self, purpose: str) -> bool:
        job = self.current.get(purpose)
        return job is not None and job.id in self.running

    def deliver(self, job: Job, kind: str, payload: Any) -> None:
        """An answer from the executor (call on the manager's thread). Stale answers are dropped."""
        if kind in (DONE, FAILED, CANCELLED):
            self.running.pop(job.id, None)
        if not self.is_current(job):
            return
        if kind == PROGRESS and job.on_progress is not None:
            job.on_progress(*payload)
        elif kind == PARTIAL and job.on_partial is not None:
            job.on_partial(*payload)
        elif kind == DONE:
            if self.current.get(job.purpose) is job:
                del self.current[job.purpose]
            if job.on_done is not None:
                job.on_done(payload)
        elif kind == FAILED:
            if self.current.get(job.purpose) is job:
                del self.current[job.purpose]
            if job.on_failed is not None:
                job.on_failed(payload)
        elif kind == CANCELLED and job.on_cancelled is not None:
            job.on_cancelled()


class InlineExecutor:
    """Runs each job at once on the calling thread (tests and the command line)."""

    def __init__(self, engine: Any, manager: JobManager | None = None):
        self.engine = engine
        self.manager = manager

    def submit(self, job: Job) -> None:
        assert self.manager is not None
        run_job(self.engine, job, self.manager.deliver)


class ThreadExecutor:
    """Runs jobs in submission order on one worker thread (the engine's thread); without Qt.

    Answers wait in a queue until the owner thread calls :meth:`pump`, which hands them to the
    manager there (so the manager and the callbacks only ever run on the owner's thread).
    """

    def __init__(self, engine: Any, manager: JobManager):
        import queue
        import threading

        self.engine = engine
        self.manager = manager
        manager.executor = self
        self._jobs: "queue.Queue[Job | None]" = queue.Queue()
        self.answers: "queue.Queue[tuple[Job, str, Any]]" = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="engine", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            run_job(self.engine, job, lambda j, kind, payload: self.answers.put((j, kind, payload)))

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def pump(self, timeout: float | None = None) -> bool:
        """Deliver the answers that arrived (waiting up to ``timeout`` for the first). True if any."""
        import queue

        got = False
        try:
            item = self.answers.get(timeout=timeout) if timeout else self.answers.get_nowait()
            while True:
                self.manager.deliver(*item)
                got = True
                item = self.answers.get_nowait()
        except queue.Empty:
            return got

    def shutdown(self) -> None:
        self.manager.cancel_all()
        self._jobs.put(None)
        self.thread.join()
