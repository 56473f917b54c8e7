"""The Edits panel's "Compute GANSpace for this generator": sliders for a generator without published directions.

Shown while no GANSpace slider fits the loaded generator (its published PCA file has not arrived,
or there is none for it). The PCA runs as an engine job in the background, with progress and
Cancel; the result is cached per generator in the per-user ``directions/computed`` folder
(``editing.library.save_computed_ganspace``) and its first components appear as sliders.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from hyperinverter_gui.app.ganspace import UI_COMPONENTS, UI_SAMPLES, UI_SEED, ganspace_job
from hyperinverter_gui.editing.library import COMPUTED_SLIDERS

log = logging.getLogger(__name__)


class GanspaceBox(QWidget):
    """A short note, the button, and while it runs a progress bar with Cancel."""

    computed = Signal(object)  # the generated manifest (Path): reload the sliders

    def __init__(self, window: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.window = window  # the MainWindow: submit(), show_error()
        self.samples, self.components, self.seed = UI_SAMPLES, UI_COMPONENTS, UI_SEED
        self.generator: Path | None = None
        self.job = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 6, 0, 0)
        self.note = QLabel()
        self.note.setWordWrap(True)
        lay.addWidget(self.note)
        self.button = QPushButton("Compute GANSpace for this generator")
        self.button.setToolTip("Principal directions of the generator's W space (GANSpace), computed here and "
                               f"cached: its first {COMPUTED_SLIDERS} components become sliders")
        self.button.clicked.connect(self.start)
        lay.addWidget(self.button)
        row = QHBoxLayout()
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_button)
        lay.addLayout(row)
        self._running(False)
        self.hide()

    @property
    def running(self) -> bool:
        return self.job is not None

    def _running(self, on: bool) -> None:
        self.button.setEnabled(not on and self.generator is not None)
        self.bar.setVisible(on)
        self.cancel_button.setVisible(on)

    def update_for(self, generator: Path | None, has_ganspace: bool, downloading: bool = False) -> None:
        """After the sliders were (re)loaded: offer the computation when no GANSpace slider fits."""
        self.generator = Path(generator) if generator is not None else None
        if self.running:
            return
        if has_ganspace or self.generator is None:
            self.hide()
            return
        wait = " The published directions are downloading; or compute" if downloading else " Compute"
        self.note.setText(
            f"<small>No GANSpace sliders fit this generator yet.{wait} its principal directions here "
            f"({self.samples:,} samples, some seconds; cached for next time).</small>")
        self._running(False)
        self.show()

    def start(self) -> None:
        if self.running or self.generator is None:
            return
        run = ganspace_job(self.generator, self.samples, self.components, self.seed)
        self._running(True)
        self.bar.setValue(0)
        self.bar.setFormat("GANSpace: starting…")
        self.bar.setTextVisible(True)
        self.show()
        self.job = self.window.submit("ganspace", run, on_done=self._done, on_failed=self._failed,
                                      on_progress=self._progress)

    def cancel(self) -> None:
        if self.job is not None:
            self.window.jobs.cancel("ganspace")
            self.job = None
        self._running(False)

    def _progress(self, stage: str, fraction: float) -> None:
        self.bar.setValue(int(1000 * fraction))
        self.bar.setFormat(stage)

    def _done(self, manifest: Path) -> None:
        self.job = None
        self._running(False)
        log.info("GANSpace computed: %s", manifest)
        self.computed.emit(manifest)

    def _failed(self, message: str) -> None:
        self.job = None
        self._running(False)
        self.window.show_error(f"GANSpace could not be computed: {message}")
