"""Apply a preset to a folder of photos, from the editor: progress, Cancel, a line per photo.

The work is ``app.batch_export.BatchExport`` on the window's engine thread (one job per photo),
so the editor stays usable while it runs; a photo that fails is listed with the reason and skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
)

from hyperinverter_gui import __version__
from hyperinverter_gui.app.batch_export import BatchExport, BatchReport, BatchSettings, ItemOutcome, folder_photos, plan
from hyperinverter_gui.app.presets import PresetError, PresetStore, describe
from hyperinverter_gui.errors import HyperInverterError

CURRENT = "Current sliders"


class BatchDialog(QDialog):
    finished_batch = Signal(object)  # BatchReport

    def __init__(self, window: Any, store: PresetStore, parent=None):
        super().__init__(parent)
        self.window = window
        self.store = store
        self.batch: BatchExport | None = None
        self.report: BatchReport | None = None
        self.setWindowTitle("Apply a preset to a folder of photos")
        self.setModal(False)
        lay = QVBoxLayout(self)
        grid = QGridLayout()
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("the folder of photos")
        self.folder_edit.textChanged.connect(self._folder_changed)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_folder)
        grid.addWidget(QLabel("Photos"), 0, 0)
        grid.addWidget(self.folder_edit, 0, 1)
        grid.addWidget(browse, 0, 2)
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("where the edited photos go")
        browse_out = QPushButton("Browse…")
        browse_out.clicked.connect(self._browse_out)
        grid.addWidget(QLabel("Save to"), 1, 0)
        grid.addWidget(self.out_edit, 1, 1)
        grid.addWidget(browse_out, 1, 2)
        self.preset_box = QComboBox()
        self.preset_box.currentIndexChanged.connect(lambda _: self._show_values())
        grid.addWidget(QLabel("Preset"), 2, 0)
        grid.addWidget(self.preset_box, 2, 1, 1, 2)
        self.values_label = QLabel()
        self.values_label.setWordWrap(True)
        grid.addWidget(self.values_label, 3, 1, 1, 2)
        lay.addLayout(grid)
        self.aligned_radio = QRadioButton("Edited face (aligned crop, PNG)")
        self.photo_radio = QRadioButton("Whole photo with the edited face pasted back")
        self.aligned_radio.setChecked(True)
        modes = QButtonGroup(self)
        modes.addButton(self.aligned_radio)
        modes.addButton(self.photo_radio)
        lay.addWidget(self.aligned_radio)
        lay.addWidget(self.photo_radio)
        self.overwrite_box = QCheckBox("Replace files that exist already")
        lay.addWidget(self.overwrite_box)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        self.bar.setFormat("")
        lay.addWidget(self.bar)
        self.results = QListWidget()
        self.results.setMinimumHeight(120)
        lay.addWidget(self.results, 1)
        row = QHBoxLayout()
        row.addStretch(1)
        self.start_button = QPushButton("Start")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.close)
        for b in (self.start_button, self.cancel_button, self.close_button):
            row.addWidget(b)
        lay.addLayout(row)
        self.resize(560, 480)

    # ------------------------------------------------------------------ set-up

    def prepare(self, folder: str | Path | None = None, preset: str = "") -> None:
        """Fill the form (the preset chosen in the editor; a folder when given)."""
        if self.running:
            return
        self.preset_box.blockSignals(True)
        self.preset_box.clear()
        self.preset_box.addItem(CURRENT)
        try:
            self.preset_box.addItems(self.store.names())
        except PresetError as e:
            self.status.setText(str(e))
        if preset and self.preset_box.findText(preset) >= 0:
            self.preset_box.setCurrentText(preset)
        self.preset_box.blockSignals(False)
        self._show_values()
        if folder is not None:
            self.folder_edit.setText(str(folder))

    def _folder_changed(self, text: str) -> None:
        if text.strip():
            self.out_edit.setText(str(Path(text.strip()) / "edited"))

    def _browse_folder(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Folder of photos", self.folder_edit.text() or str(Path.home()))
        if d:
            self.folder_edit.setText(d)

    def _browse_out(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Save the edited photos in", self.out_edit.text() or "")
        if d:
            self.out_edit.setText(d)

    def values(self) -> dict[str, float]:
        name = self.preset_box.currentText()
        if name == CURRENT or not name:
            return dict(self.window.session.values)
        return self.store.get(name)

    def _show_values(self) -> None:
        try:
            values = self.values()
        except PresetError as e:
            self.values_label.setText(str(e))
            return
        unknown = sorted(n for n in values if n not in self.window.directions)
        text = describe(values)
        if unknown:
            text += f"  (not available here, left out: {', '.join(unknown)})"
        self.values_label.setText(f"<small>{text}</small>")

    # ------------------------------------------------------------------ running

    @property
    def running(self) -> bool:
        return self.batch is not None and not self.batch.finished

    def start(self) -> BatchExport | None:
        if self.running:
            return None
        info = self.window.models_info
        if info is None or not info.checkpoint:
            self.status.setText("Load a HyperInverter model first (the panel at the top says what is missing).")
            return None
        folder, out = Path(self.folder_edit.text().strip()), Path(self.out_edit.text().strip())
        try:
            values = self.values()
            photos, ignored = folder_photos(folder)
        except HyperInverterError as e:
            self.status.setText(str(e))
            return None
        if not photos:
            self.status.setText(f"No photos in {folder}.")
            return None
        mode = "photo" if self.photo_radio.isChecked() else "aligned"
        backend = self.window.backend
        preset = self.preset_box.currentText()
        settings = BatchSettings(
            values=values, directions=dict(self.window.directions), out_dir=out, mode=mode, backend=backend,
            iterations=self.window.iterations_box.value(), overwrite=self.overwrite_box.isChecked(),
            preset="" if preset == CURRENT else preset,
            text={"Software": f"HyperInverter Studio {__version__}", "backend": backend,
                  "generator": self.window.session.model_names.get("generator", ""),
                  "checkpoint": self.window.session.model_names.get("checkpoint", "")})
        self.results.clear()
        self.report = None
        self.bar.setValue(0)
        self.bar.setFormat(f"0 of {len(photos)}")
        self.status.setText(f"{len(photos)} photo{'s' if len(photos) != 1 else ''} → {out}"
                            + (f" ({len(ignored)} other file{'s' if len(ignored) != 1 else ''} ignored)"
                               if ignored else ""))
        self._set_running(True)
        self.batch = BatchExport(lambda job: self.window.jobs.submit(job, supersede=False), plan(photos, out, mode),
                                 settings, ignored=ignored, on_item=self._item, on_progress=self._progress,
                                 on_finished=self._finished)
        try:
            self.batch.start()
        except OSError as e:
            self.batch = None
            self._set_running(False)
            self.status.setText(f"cannot use {out}: {e.strerror or e}")
            return None
        return self.batch

    def cancel(self) -> None:
        if self.running:
            self.batch.cancel()
            if self.running:
                self.status.setText("Cancelling: the photo being done stops at its next stage…")
                self.cancel_button.setEnabled(False)

    def _set_running(self, on: bool) -> None:
        self.start_button.setEnabled(not on)
        self.cancel_button.setEnabled(on)
        for w in (self.folder_edit, self.out_edit, self.preset_box, self.aligned_radio, self.photo_radio,
                  self.overwrite_box):
            w.setEnabled(not on)

    def _progress(self, index: int, total: int, stage: str, fraction: float) -> None:
        self.bar.setValue(int(1000 * fraction))
        self.bar.setFormat(f"{index + 1} of {total}: {stage}")

    def _item(self, outcome: ItemOutcome) -> None:
        if outcome.error is None:
            self.results.addItem(f"✓ {outcome.source.name} → {outcome.output.name}")
        else:
            self.results.addItem(f"✗ {outcome.source.name}: {outcome.error}")
            self.results.item(self.results.count() - 1).setForeground(Qt.red)
        self.results.scrollToBottom()

    def _finished(self, report: BatchReport) -> None:
        self.report = report
        self._set_running(False)
        self.bar.setValue(1000 if not report.cancelled else self.bar.value())
        self.bar.setFormat(report.summary())
        self.status.setText(("Cancelled: " if report.cancelled else "Done: ") + report.summary()
                            + f". Files are in {self.batch.settings.out_dir}.")
        self.finished_batch.emit(report)

    def closeEvent(self, ev) -> None:  # noqa: N802
        self.cancel()  # closing stops the batch (the photo being written is completed)
        super().closeEvent(ev)
