"""First-run panel: which models and direction files were found, what is missing, and a Download button.

Models and the edit directions (the sliders' files) download the same way (``app.downloads.fetch``:
progress, resume, checksum, our error messages), one file after the other on a thread of the panel;
each direction file that arrives is announced (``directionsArrived``) so the sliders appear at once.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from hyperinverter_gui.app.downloads import directions_for, fetch, present
from hyperinverter_gui.catalog.discovery import (
    ROLE_TITLES,
    describe_found,
    direction_folders,
    discover,
    load_manifest,
    select,
    weights_dirs,
)
from hyperinverter_gui.editing.library import read_manifest
from hyperinverter_gui.errors import HyperInverterError

log = logging.getLogger(__name__)


def _size(n: int | None) -> str:
    if not n:
        return ""
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{max(1, round(n / 1024))} KB"


class _Downloader(QObject):
    progress = Signal(str, int, int)  # name, done, total (0 = unknown)
    finished = Signal(str, str, object)  # name, error message ("" = ok), path written or found (None on error)

    @Slot(object)
    def run(self, jobs) -> None:
        for e, folder in jobs:
            try:
                r = fetch(e, folder, lambda d, t, n=e.name: self.progress.emit(n, d, t or 0))
                self.finished.emit(e.name, "", r.path)
            except HyperInverterError as err:
                self.finished.emit(e.name, str(err), None)
            except Exception as err:  # noqa: BLE001
                log.exception("download failed")
                self.finished.emit(e.name, f"{type(err).__name__}: {err}", None)


class ModelsPanel(QWidget):
    """Shown when the generator, the inverter or the edit directions are missing; the window stays usable."""

    modelsChosen = Signal(dict)  # {"generator": Path, "inverter": Path | None}
    downloadRequested = Signal(object)
    directionsArrived = Signal(object)  # Path of a direction file that just arrived

    def __init__(self, parent: QWidget | None = None, directions_dir: Path | None = None):
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
        self.rescan_button.clicked.connect(self.rescan)
        self.bar = QProgressBar()
        self.bar.hide()
        row.addWidget(self.download_button)
        row.addWidget(self.rescan_button)
        row.addWidget(self.bar, 1)
        lay.addLayout(row)
        self.chosen: dict | None = None
        self.directions_dir = directions_dir
        self.resolution: int | None = None  # of the loaded generator: which direction files fit
        self._missing_entries: list = []
        self._missing_directions: list = []
        self._missing_roles: list[str] = []
        self._model_paths: dict | None = None
        self._weights_dirs: list[Path] | None = None
        self._thread: QThread | None = None
        self._states: dict[str, str] = {}  # entry name -> what happens to it now (shown in the list)
        self._errors: list[str] = []

    @property
    def downloading(self) -> bool:
        return self._thread is not None

    @property
    def missing_directions(self) -> list:
        """The direction files offered for download (entries), empty when none fit or all are there."""
        return list(self._missing_directions)

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
        self._missing_roles = missing_roles
        if not self.downloading:  # while files arrive, the list stays as it was when the download started
            self._missing_directions = self._find_missing_directions()
            self._states = {}
        self._render()
        if chosen.get("generator") is not None:
            if chosen != self.chosen:
                self.chosen = chosen
                self.modelsChosen.emit(chosen)

    def rescan(self) -> None:
        """"Look again": forget the last download errors and look for the files anew."""
        if not self.downloading:
            self._errors = []
        self.refresh()

    def set_resolution(self, resolution: int | None) -> None:
        """The generator in use (its resolution decides which published directions fit it)."""
        self.resolution = resolution
        if not self.downloading:
            self._missing_directions = self._find_missing_directions()
        self._render()

    def _find_missing_directions(self) -> list:
        """Default direction files for this generator that the sliders' manifest needs and that are not there."""
        try:
            needed = {s.file for s in read_manifest(self.directions_dir)}
            offered = directions_for(self.resolution)
            return [e for e in offered if e.file in needed and present(e, self.directions_dir) is None]
        except HyperInverterError as e:
            log.warning("cannot tell which direction files are missing: %s", e)
            return []

    def _item(self, e, text: str) -> str:
        state = self._states.get(e.name)
        return f"<li>{text}" + (f" — <b>{html.escape(state)}</b>" if state else "") + "</li>"

    def _render(self) -> None:
        if not self._missing_roles and not self._missing_directions and not self.downloading and not self._errors:
            self.hide()
            return
        parts = []
        dirs_folder = self.directions_dir or direction_folders()[0]
        if self._missing_roles:
            folders = " or ".join(f"<code>{d}</code>" for d in (self._weights_dirs or weights_dirs()))
            items = "".join(f"<li><b>{ROLE_TITLES[r]}</b>: missing</li>" for r in self._missing_roles)
            files = "".join(self._item(e, f"{e.description} — <code>{e.file}</code> from {e.url}")
                            for e in self._missing_entries)
            parts.append(f"<b>Some models are missing.</b> You can still open photos and look at the alignment."
                         f"<ul>{items}</ul>Put the files in {folders} (any name), or download them:<ul>{files}</ul>")
        if self._missing_directions:
            total = sum(e.size or 0 for e in self._missing_directions)
            files = "".join(self._item(e, f"{html.escape(e.description)} — <code>{e.file}</code>"
                                          + (f" ({_size(e.size)})" if e.size else ""))
                            for e in self._missing_directions)
            lead = "<b>Edit directions</b> (the sliders)" if self._missing_roles else \
                "<b>The edit sliders need their direction files.</b>"
            parts.append(f"{lead}: {len(self._missing_directions)} small file"
                         f"{'s' if len(self._missing_directions) != 1 else ''}"
                         + (f", {_size(total)} in all" if total else "")
                         + f", from the HyperInverter project, saved in <code>{dirs_folder}</code>:<ul>{files}</ul>")
        if self._errors:
            errs = "".join(f"<li>{html.escape(m)}</li>" for m in self._errors)
            parts.append(f"<b>Some downloads failed:</b><ul>{errs}</ul>")
        self.title.setText("".join(parts))
        if self._missing_roles:
            self.download_button.setText("Download the default models"
                                         + (" and edit directions" if self._missing_directions else ""))
        else:
            total = sum(e.size or 0 for e in self._missing_directions)
            self.download_button.setText("Download the edit directions" + (f" ({_size(total)})" if total else ""))
        self.download_button.setEnabled(not self.downloading and bool(self._missing_entries or
                                                                      self._missing_directions))
        self.show()

    def show_problem(self, message: str) -> None:
        self.title.setText(f"<b>The models could not be loaded.</b><br>{message}")
        self.show()

    def start_download(self) -> None:
        if self.downloading:
            return
        jobs = [(e, None) for e in self._missing_entries] + [(e, self.directions_dir) for e in self._missing_directions]
        if not jobs:
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
        self._pending = [e.name for e, _ in jobs]
        self._count = len(jobs)
        self._roles = {e.name: e.role for e, _ in jobs}
        self._files = {e.name: e.file for e, _ in jobs}
        self._errors = []
        self._states = {name: "waiting" for name in self._pending}
        self._thread.start()
        self._render()
        self.downloadRequested.emit(jobs)

    def _progress(self, name: str, done: int, total: int) -> None:
        if total:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(1000 * done / total))
        k = self._count - len(self._pending) + 1
        self.bar.setFormat(f"{self._files.get(name, name)} ({k} of {self._count}): {_size(done) or '0 KB'}"
                           + (f" of {_size(total)}" if total else ""))
        self.bar.setTextVisible(True)
        state = f"downloading, {100 * done // total}%" if total else f"downloading, {_size(done)}"
        if self._states.get(name) != state:
            self._states[name] = state
            self._render()

    def _one_finished(self, name: str, error: str, path) -> None:
        if name in self._pending:
            self._pending.remove(name)
        if error:
            self._errors.append(f"{name}: {error}")
            self._states[name] = "failed"
        else:
            self._states[name] = "done"
            if self._roles.get(name) == "direction" and path is not None:
                self.directionsArrived.emit(Path(path))
        self._render()
        if not self._pending:
            self._thread.quit()
            self._thread.wait()
            self._thread = None
            self.downloadRequested.disconnect(self._worker.run)
            self.bar.hide()
            errors = self._errors
            self.refresh()
            self._errors = errors
            self._render()
