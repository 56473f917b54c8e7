"""The one adapter between Qt and the engine: runs engine jobs on a QThread, answers on the GUI thread.

The :class:`~hyperinverter_gui.engine.Engine` lives on the engine thread (only that thread calls
it); the GUI submits :class:`~hyperinverter_gui.app.jobs.Job` objects through a queued signal and
receives every answer (progress, partial images, result, failure, cancellation) as a queued
signal, which this adapter hands to the Qt-free :class:`~hyperinverter_gui.app.jobs.JobManager`.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from hyperinverter_gui.app.jobs import Job, JobManager, failure_message, run_job


class _EngineSide(QObject):
    """Lives on the engine thread: runs one job at a time, in submission order."""

    answer = Signal(object, str, object)  # job, kind, payload
    notice = Signal(str)

    def __init__(self, engine: Any):
        super().__init__()
        self.engine = engine

    @Slot(object)
    def run(self, job: Job) -> None:
        run_job(self.engine, job, lambda j, kind, payload: self.answer.emit(j, kind, payload))


class QtExecutor(QObject):
    """Executor for a :class:`JobManager`: jobs run on a QThread named "engine"."""

    _submit = Signal(object)
    notice = Signal(str)  # something the engine wants the user to know (on the GUI thread)
    error = Signal(str)  # a view failed while taking a job's answer (one line; logged with the traceback)

    def __init__(self, engine: Any, manager: JobManager, parent: QObject | None = None):
        super().__init__(parent)
        self.manager = manager
        manager.executor = self
        self.thread = QThread(self)
        self.thread.setObjectName("engine")
        self._side = _EngineSide(engine)
        self._side.moveToThread(self.thread)
        self._submit.connect(self._side.run)
        self._side.answer.connect(self._deliver)
        self._side.notice.connect(self.notice)
        engine.on_notice = self._side.notice.emit  # called on the engine thread; queued to the GUI
        self.thread.start()

    def submit(self, job: Job) -> None:
        self._submit.emit(job)

    @Slot(object, str, object)
    def _deliver(self, job: Job, kind: str, payload: Any) -> None:
        try:
            self.manager.deliver(job, kind, payload)
        except Exception as e:  # noqa: BLE001 - the boundary for the views' callbacks
            self.error.emit(failure_message(e, job.purpose))

    def shutdown(self) -> None:
        """Cancel what is queued or running, then stop the thread (waits for the running stage)."""
        self.manager.cancel_all()
        if self.thread.isRunning():
            self.thread.quit()
            self.thread.wait()
