"""First-run panel: which models were found, what is missing, and a Download button."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from hyperinverter_gui.catalog.discovery import (
    ROLE_TITLES,
    describe_found,
    discover,
    download_dir,
    load_manifest,
    select,
    weights_dirs,
)
from hyperinverter_gui.errors import HyperInverterError

log = logging.getLogger(__name__)


class _Downloader(QObject):
    progress = Signal(str, int, int)  # name, done, total (0 = unknown)
    finished = Signal(str, str)  # name, error message ("" = ok)

    @Slot(object)
    def run(self, entries) -> None:
        from hyperinverter_gui.catalog.download import download, record_checksum, recorded_checksums

        for e in entries:
            try:
                dest = download_dir(e) / e.file
                if not dest.exists():
                    known = e.sha256 or recorded_checksums().get(e.file, {}).get("sha256")
                    r = download(e.url, dest, known, lambda d, t, n=e.name: self.progress.emit(n, d, t or 0))
                    if not r.verified:
                        record_checksum(e.file, r.sha256, r.size)
                self.finished.emit(e.name, "")
            except HyperInverterError as err:
                self.finished.emit(e.name, str(err))
            except Exception as err:  # noqa: BLE001
                log.exception("download failed")
                self.finished.emit(e.name, f"{type(err).__name__}: {err}")


class ModelsPanel(QWidget):
    """Shown when the generator or the inverter is missing; the window stays usable."""

    modelsChosen = Signal(dict)  # {"generator": Path, "inverter": Path | None}
    downloadRequested = Signal(object)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("modelsPanel")
        self.setStyleSheet("QWidget#modelsPanel { border: 1px solid #c9a227; border-radius: 4px; }")
        lay = QVBoxLayout(self)
        self.title = QLabel()
        self.title.setWordWrap(True)
        self.title.setTextFormat(Qt.RichText)
        self.title.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.title)
        row = QHBoxLayout()
        self.download_button = QPushButton("Download the default models")
        self.download_button.clicked.connect(self.start_download)
        self.rescan_button = QPushButton("Look again")
        self.rescan_button.clicked.connect(lambda: self.refresh())
        self.bar = QProgressBar()
        self.bar.hide()
        row.addWidget(self.download_button)
        row.addWidget(self.rescan_button)
        row.addWidget(self.bar, 1)
        lay.addLayout(row)
        self.chosen: dict | None = None
        self._missing_entries: list = []
        self._model_paths: dict | None = None
        self._weights_dirs: list[Path] | None = None
        self._thread: QThread | None = None

    def refresh(self, model_paths: dict | None = None, search_dirs: list[Path] | None = None) -> None:
        """Find the models; emit ``modelsChosen`` when a generator (and inverter) are there."""
        if model_paths is not None:
            self._model_paths = model_paths
        if search_dirs is not None:
            self._weights_dirs = search_dirs
        entries = load_manifest()
        if self._model_paths and self._model_paths.get("generator"):
            chosen = {role: Path(self._model_paths[role]) if self._model_paths.get(role) else None
                      for role in ("generator", "inverter", "hyperstyle", "hyperstyle_w_encoder")}
            missing_roles: list[str] = [] if chosen["inverter"] else ["inverter"]
            self._missing_entries = [e for e in entries if e.role == "inverter" and e.default and e.domain == "ffhq"] \
                if missing_roles else []
        else:
            disc = discover(self._weights_dirs, entries)
            sel = select(disc, entries=entries)
            chosen = {role: sel.chosen[role].path if role in sel.chosen else None
                      for role in ("generator", "inverter", "hyperstyle", "hyperstyle_w_encoder")}
            missing_roles = [r for r in ("generator", "inverter") if r in sel.missing]
            # The editor is for faces: offer the FFHQ defaults (church models stay a manual choice).
            self._missing_entries = [e for r in missing_roles for e in sel.missing[r]
                                     if e.default and e.domain in ("ffhq", "")]
            for role in ("generator", "inverter"):
                if role in sel.chosen:
                    log.info("%s: %s (%s)", role, sel.chosen[role].path, describe_found(sel.chosen[role]))
        if not missing_roles:
            self.hide()
        else:
            folders = " or ".join(f"<code>{d}</code>" for d in (self._weights_dirs or weights_dirs()))
            items = "".join(
                f"<li><b>{ROLE_TITLES[r]}</b>: missing</li>" for r in missing_roles)
            files = "".join(f"<li>{e.description} — <code>{e.file}</code> from {e.url}</li>"
                            for e in self._missing_entries)
            self.title.setText(
                f"<b>Some models are missing.</b> You can still open photos and look at the alignment."
                f"<ul>{items}</ul>Put the files in {folders} (any name), or download them:<ul>{files}</ul>")
            self.download_button.setEnabled(bool(self._missing_entries))
            self.show()
        if chosen.get("generator") is not None:
            if chosen != self.chosen:
                self.chosen = chosen
                self.modelsChosen.emit(chosen)

    def show_problem(self, message: str) -> None:
        self.title.setText(f"<b>The models could not be loaded.</b><br>{message}")
        self.show()

    def start_download(self) -> None:
        if not self._missing_entries or self._thread is not None:
            return
        self.download_button.setEnabled(False)
        self.bar.show()
        self.bar.setRange(0, 0)
        self._thread = QThread(self)
        self._worker = _Downloader()
        self._worker.moveToThread(self._thread)
        self.downloadRequested.connect(self._worker.run)
        self._worker.progress.connect(self._progress)
        self._worker.finished.connect(self._one_finished)
        self._pending = {e.name for e in self._missing_entries}
        self._errors: list[str] = []
        self._thread.start()
        self.downloadRequested.emit(list(self._missing_entries))

    def _progress(self, name: str, done: int, total: int) -> None:
        if total:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(1000 * done / total))
        self.bar.setFormat(f"{name}: {done / 2**20:.0f} MB")
        self.bar.setTextVisible(True)

    def _one_finished(self, name: str, error: str) -> None:
        self._pending.discard(name)
        if error:
            self._errors.append(f"{name}: {error}")
        if not self._pending:
            self._thread.quit()
            self._thread.wait()
            self._thread = None
            self.bar.hide()
            self.download_button.setEnabled(True)
            self.refresh()
            if self._errors:
                self.show_problem("<br>".join(self._errors))
