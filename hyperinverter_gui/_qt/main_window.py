"""The main window: views of the editing session, and the menus that act on it.

State lives in the Qt-free application layer: the evented :class:`EditSession` (views follow its
events), the :class:`JobManager` (every piece of model work is a job on the engine thread, with
its own cancel token; stale answers are dropped) and the undo commands of ``app.undo``. This
window builds widgets, turns user actions into session changes and jobs, and shows answers.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence, QUndoCommand, QUndoStack
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from hyperinverter_gui import __version__
from hyperinverter_gui._qt.appicon import app_icon
from hyperinverter_gui._qt.engine_thread import QtExecutor
from hyperinverter_gui._qt.ganspace_panel import GanspaceBox
from hyperinverter_gui._qt.interpolation import InterpolationPanel
from hyperinverter_gui._qt.models_panel import ModelsPanel
from hyperinverter_gui._qt.presets_panel import PresetsBar
from hyperinverter_gui._qt.shortcuts import ShortcutsDialog, add_shortcut_tooltips, name_unnamed_widgets
from hyperinverter_gui._qt.widgets import ImageView, PhotoView, SliderPanel
from hyperinverter_gui.app.export import EditExport, export_edit
from hyperinverter_gui.app.jobs import Job, JobManager
from hyperinverter_gui.app.photos import AlignOutcome, align_photo, default_points, landmark_caption
from hyperinverter_gui.app.scheduler import RenderScheduler
from hyperinverter_gui.app.session import SESSION_SUFFIX, EditSession
from hyperinverter_gui.app.undo import ResetValues, SetValue
from hyperinverter_gui.editing.library import generator_key, load_library
from hyperinverter_gui.engine import Engine, EngineInfo, ModelFiles
from hyperinverter_gui.errors import HyperInverterError
from hyperinverter_gui.media.images import IMAGE_SUFFIXES, check_image_header, tensor_to_uint8

log = logging.getLogger(__name__)


def guarded(doing: str) -> Callable:
    """An editor action that never escapes as a traceback: a user-facing error becomes the error
    banner; anything else is logged with its traceback and the banner names the log file. The
    window stays as it was (the action is dropped, nothing else changes)."""
    import functools

    def wrap(action: Callable) -> Callable:
        @functools.wraps(action)
        def run(self, *args, **kwargs):
            try:
                return action(self, *args, **kwargs)
            except HyperInverterError as e:
                self.show_error(str(e))
            except Exception as e:  # noqa: BLE001 - the editor's boundary
                from hyperinverter_gui.app.jobs import failure_message

                self.show_error(failure_message(e, doing))
            return None

        return run

    return wrap


VIEW_MODES = ("Edited", "Phase I", "Aligned photo", "Swipe: photo | edited", "Side by side: HyperInverter | HyperStyle")
BACKENDS = ("hyperinverter", "hyperstyle")


class UndoCommand(QUndoCommand):
    """A Qt undo-stack entry around a Qt-free command of ``app.undo``."""

    def __init__(self, command: Any):
        super().__init__(command.text)
        self.command = command

    def redo(self) -> None:
        self.command.redo()

    def undo(self) -> None:
        self.command.undo()


def _engine_resolution(engine: Engine) -> int:
    return engine.resolution if engine.has_generator else 1024


class MainWindow(QMainWindow):
    # Announcements, for anything that wants to wait on the window (tests, scripts).
    modelsLoaded = Signal(object)  # EngineInfo
    sessionOpened = Signal(object)  # Path of a .hisession now shown
    inverted = Signal(object)  # InversionResult of the photo being edited
    frameShown = Signal()  # a rendered frame reached the result view
    exported = Signal(object)  # Path written
    stageImage = Signal(str)  # an image shown while inverting: "phase1", "step k/n"
    stageChanged = Signal(str, float)  # the photo job's stage and how far along it is
    rendered = Signal(object, float)  # (generation, values, preview resolution or None), milliseconds

    def __init__(
        self,
        settings: QSettings | None = None,
        model_paths: dict[str, Path] | None = None,
        directions_dir: Path | None = None,
        weights_dirs: list[Path] | None = None,
    ):
        super().__init__()
        self.settings = settings or QSettings("HyperInverterStudio", "HyperInverterStudio")
        self.setWindowTitle(f"HyperInverter Studio {__version__}")
        self.setAcceptDrops(True)
        self.session = EditSession()
        self.scheduler = RenderScheduler()
        self.undo_stack = QUndoStack(self)
        self.directions: dict = {}
        self.directions_dir = directions_dir
        self.models_info: EngineInfo | None = None
        self.render_count = 0
        self._drag_old: dict[str, float] = {}
        self._dragging: str | None = None
        self._space_held = False
        self._displayed_edit: np.ndarray | None = None
        self._edit_caption = ""
        self.backend = "hyperinverter"
        self.results_by_backend: dict[str, Any] = {}  # backend -> inversion of the current photo

        self._build_ui()
        self._start_engine()
        self._bind_session(self.session)
        self.models_panel.refresh(model_paths=model_paths, search_dirs=weights_dirs)
        geo = self.settings.value("window/geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        else:
            self.resize(1360, 860)

    # ------------------------------------------------------------------ UI

    def _build_ui(self) -> None:
        self.setWindowIcon(app_icon())
        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(6, 6, 6, 6)

        self.error_banner = QLabel()
        self.error_banner.setObjectName("errorBanner")
        self.error_banner.setWordWrap(True)
        self.error_banner.setStyleSheet("QLabel#errorBanner { background: #7a2323; color: white; padding: 6px; "
                                        "border-radius: 4px; }")
        self.error_banner.hide()
        self.error_banner.mousePressEvent = lambda ev: self.error_banner.hide()  # click to dismiss
        self.notice_banner = QLabel()
        self.notice_banner.setObjectName("noticeBanner")
        self.notice_banner.setWordWrap(True)
        self.notice_banner.setStyleSheet("QLabel#noticeBanner { background: #6b5416; color: white; padding: 6px; "
                                         "border-radius: 4px; }")
        self.notice_banner.hide()
        self.notice_banner.mousePressEvent = lambda ev: self.notice_banner.hide()
        self.models_panel = ModelsPanel(self, directions_dir=self.directions_dir)
        self.models_panel.directionsArrived.connect(lambda _path: self.reload_directions())
        self.models_panel.modelsChosen.connect(self._load_models)
        outer.addWidget(self.models_panel)
        outer.addWidget(self.error_banner)
        outer.addWidget(self.notice_banner)

        self.tabs = QTabWidget()
        outer.addWidget(self.tabs, 1)

        # --- Edit tab
        edit = QWidget()
        lay = QHBoxLayout(edit)
        lay.setContentsMargins(0, 0, 0, 0)
        split = QSplitter(Qt.Horizontal)
        lay.addWidget(split)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        self.photo_view = PhotoView()
        self.photo_view.pointsEdited.connect(self._points_edited)
        self.photo_view.faceClicked.connect(self._face_clicked)
        self.photo_view.setAccessibleName("Photo with alignment points")
        ll.addWidget(QLabel("Photo"))
        ll.addWidget(self.photo_view, 1)
        split.addWidget(left)

        mid = QWidget()
        ml = QVBoxLayout(mid)
        ml.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(QLabel("Show"))
        self.view_mode = QComboBox()
        self.view_mode.addItems(VIEW_MODES)
        self.view_mode.currentIndexChanged.connect(lambda _: self._refresh_result_view())
        self.view_mode.setAccessibleName("Show")
        # As wide as a short item, not the longest: the result pane may narrow and the photo pane keep its width.
        self.view_mode.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.view_mode.setMinimumContentsLength(16)
        self.view_mode.setToolTip("What the result view shows. Swipe (Ctrl+\\): drag the divider across the "
                                  "face, photo on the left, edited on the right, at the same zoom.")
        top.addWidget(self.view_mode)
        top.addWidget(QLabel("Space: before"))
        top.addStretch(1)
        top.addWidget(QLabel("Backend"))
        self.backend_box = QComboBox()
        self.backend_box.addItems(["HyperInverter", "HyperStyle"])
        self.backend_box.setToolTip("Inversion method. HyperStyle needs its own model files (see `weights list`).")
        self.backend_box.model().item(1).setEnabled(False)
        self.backend_box.currentIndexChanged.connect(self._backend_changed)
        self.backend_box.setAccessibleName("Backend")
        top.addWidget(self.backend_box)
        self.iterations_box = QSpinBox()
        self.iterations_box.setRange(1, 5)
        self.iterations_box.setValue(5)
        self.iterations_box.setPrefix("steps ")
        self.iterations_box.setToolTip("HyperStyle refinement steps")
        self.iterations_box.setEnabled(False)
        self.iterations_box.setAccessibleName("HyperStyle steps")
        top.addWidget(self.iterations_box)
        ml.addLayout(top)
        self.result_view = ImageView("The inverted and edited face appears here")
        self.result_view.setAccessibleName("Result")
        self._zoom_view = self.result_view  # the view the zoom keys act on: the last one pointed at
        for view in (self.photo_view, self.result_view):
            view.activated.connect(lambda v=view: setattr(self, "_zoom_view", v))
        ml.addWidget(self.result_view, 1)
        prog = QHBoxLayout()
        self.stage_label = QLabel("")
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        prog.addWidget(self.stage_label)
        prog.addWidget(self.progress, 1)
        prog.addWidget(self.cancel_button)
        ml.addLayout(prog)
        split.addWidget(mid)

        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        head.addWidget(QLabel("Edits"))
        head.addStretch(1)
        self.reset_all_button = QPushButton("Reset all")
        self.reset_all_button.clicked.connect(self.reset_all)
        self.reset_all_button.setToolTip("Reset every slider to 0 (Ctrl+R)")
        head.addWidget(self.reset_all_button)
        rl.addLayout(head)
        self.slider_panel = SliderPanel()
        self.slider_panel.valueChanged.connect(self._slider_moved)
        self.slider_panel.dragStarted.connect(self._drag_started)
        self.slider_panel.dragFinished.connect(self._drag_finished)
        self.slider_panel.resetRequested.connect(self._reset_one)
        self.slider_panel.set_enabled(False)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.slider_panel)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # sliders take the panel's width
        scroll.setMinimumWidth(self.slider_panel.minimumWidth() + scroll.verticalScrollBar().sizeHint().width())
        rl.addWidget(scroll, 1)
        self.ganspace_box = GanspaceBox(self)  # offered while no GANSpace slider fits the generator
        self.ganspace_box.computed.connect(lambda _manifest: self.reload_directions())
        rl.addWidget(self.ganspace_box)
        self.presets_bar = PresetsBar(self)
        rl.addWidget(self.presets_bar)
        split.addWidget(right)
        split.setCollapsible(2, False)
        for i, stretch in enumerate((3, 4, 2)):  # a larger or smaller window: every pane takes its share
            split.setStretchFactor(i, stretch)
        split.setSizes([420, 560, 360])
        self.tabs.addTab(edit, "Edit")

        # --- Interpolation tab
        self.interp = InterpolationPanel(self)
        self.interp.alpha.setAccessibleName("Interpolation position, from A to B")
        self.interp.steps.setAccessibleName("Frames in the sequence")
        self.tabs.addTab(self.interp, "Interpolate")
        from hyperinverter_gui._qt.video_tab import VideoPanel  # the Video tab: a face edited through a clip

        self.video = VideoPanel(self)
        self.tabs.addTab(self.video, "Video")
        self.setCentralWidget(central)

        # --- menus and actions
        fm = self.menuBar().addMenu("&File")
        self.open_action = self._action(fm, "&Open photo…", QKeySequence.Open, self.open_dialog)
        self.recent_menu = fm.addMenu("Open &recent")
        self._rebuild_recent()
        self._action(fm, "Open &session…", "Ctrl+Shift+O", self.open_session_dialog)
        self._action(fm, "&Save session…", QKeySequence.Save, self.save_session_dialog)
        fm.addSeparator()
        self._action(fm, "&Export edited face…", "Ctrl+E", lambda: self.export_dialog("aligned"))
        self._action(fm, "Export edited &photo (pasted back)…", "Ctrl+Shift+E", lambda: self.export_dialog("photo"))
        fm.addSeparator()
        self._action(fm, "&Preferences…", QKeySequence.Preferences, self.preferences)
        self._action(fm, "&Quit", QKeySequence.Quit, self.close)
        em = self.menuBar().addMenu("&Edit")
        undo = self.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcut(QKeySequence("Ctrl+Z"))
        redo = self.undo_stack.createRedoAction(self, "&Redo")
        redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        em.addAction(undo)
        em.addAction(redo)
        self._action(em, "Reset all sliders", "Ctrl+R", self.reset_all)
        self._action(em, "Re-run inversion", "Ctrl+I", self.reinvert)
        self.presets_bar.add_menu(self.menuBar())
        vm = self.menuBar().addMenu("&View")
        self._action(vm, "&Fit to view", "Ctrl+0", lambda: self._zoom_view.fit())
        self._action(vm, "&Actual pixels (100 %)", "Ctrl+1", lambda: self._zoom_view.set_zoom(1.0))
        self._action(vm, "&200 %", "Ctrl+2", lambda: self._zoom_view.set_zoom(2.0))
        zoom_in = self._action(vm, "Zoom &in", QKeySequence.ZoomIn, lambda: self._zoom_view.zoom_by(1.25))
        zoom_in.setShortcuts([QKeySequence(QKeySequence.ZoomIn), QKeySequence("Ctrl+=")])
        self._action(vm, "Zoom &out", QKeySequence.ZoomOut, lambda: self._zoom_view.zoom_by(0.8))
        vm.addSeparator()
        self._action(vm, "&Swipe compare", "Ctrl+\\", lambda: self.view_mode.setCurrentIndex(
            0 if self.view_mode.currentIndex() == VIEW_MODES.index("Swipe: photo | edited")
            else VIEW_MODES.index("Swipe: photo | edited")))
        hm = self.menuBar().addMenu("&Help")
        self._action(hm, "&Keyboard shortcuts…", "F1", self.show_shortcuts)
        self._action(hm, "&About HyperInverter Studio", None, self.show_about)
        tb = self.addToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.addAction(self.open_action)
        tb.addAction(undo)
        tb.addAction(redo)

        self.device_label = QLabel("device: –")
        self.render_label = QLabel("")
        self.statusBar().addPermanentWidget(self.render_label)
        self.statusBar().addPermanentWidget(self.device_label)
        add_shortcut_tooltips(self.findChildren(QAction))
        name_unnamed_widgets(self)

    def show_shortcuts(self) -> None:
        ShortcutsDialog(self).exec()

    def show_about(self) -> None:
        QMessageBox.about(self, "About HyperInverter Studio",
                          f"HyperInverter Studio {__version__}\nEdits real face photos with StyleGAN2 and "
                          "HyperInverter (Dinh et al., CVPR 2022).\n"
                          "Keyboard shortcuts: Help ▸ Keyboard shortcuts (F1).")

    def _action(self, menu, text: str, shortcut, slot: Callable) -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            a.setShortcut(QKeySequence(shortcut))
        a.triggered.connect(slot)
        menu.addAction(a)
        return a

    # ------------------------------------------------------------------ engine and jobs

    def _start_engine(self) -> None:
        # Constructed here, used only on the engine thread from now on (see engine.Engine).
        self.engine = Engine(str(self.settings.value("device", "auto")), str(self.settings.value("precision", "auto")))
        self.jobs = JobManager()
        self.executor = QtExecutor(self.engine, self.jobs, self)
        self.executor.notice.connect(self.show_notice)
        self.executor.error.connect(self.show_error)

    def submit(self, purpose: str, run: Callable[[Engine, Any], Any], *, supersede: bool = True, **answers) -> Job:
        """Queue model work for the engine thread; ``answers`` are Job callbacks (run on this thread)."""
        return self.jobs.submit(Job(purpose, run, **answers), supersede=supersede)

    def shutdown(self) -> None:
        """Cancel every job and stop the engine thread (waits for the running stage to end)."""
        self.executor.shutdown()

    def closeEvent(self, ev) -> None:  # noqa: N802
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.shutdown()
        super().closeEvent(ev)

    def _load_models(self, paths: dict) -> None:
        device = str(self.settings.value("device", "auto"))
        precision = str(self.settings.value("precision", "auto"))
        files = ModelFiles(paths["generator"], paths.get("inverter"), None, paths.get("hyperstyle"),
                           paths.get("hyperstyle_w_encoder"))
        self.device_label.setText("device: loading models…")

        def run(engine: Engine, ctx) -> EngineInfo:
            engine.set_device(device)
            engine.set_precision(precision)
            return engine.load(files)

        self.submit("models", run, on_done=self._models_loaded, on_failed=self._models_failed)

    def _models_loaded(self, info: EngineInfo) -> None:
        self.models_info = info
        self.session.model_names = {"generator": info.generator, "checkpoint": info.checkpoint or ""}
        short = {"bfloat16": "bf16", "float32": "fp32"}
        frames, previews = short.get(info.plan.frames, "fp32"), short.get(info.plan.previews, "fp32")
        mode = f"{frames} frames" if frames == previews else f"{frames} frames, {previews} previews"
        self.device_label.setText(f"device: {info.device}  ·  {info.resolution} px  ·  {mode}")
        self.backend_box.model().item(1).setEnabled(info.hyperstyle)
        self.statusBar().showMessage(f"models loaded in {info.seconds:.1f} s", 5000)
        self.reload_directions()
        self.modelsLoaded.emit(info)
        s = self.session
        if s.photo_rgb is not None and s.inversion is None and s.points5 is not None:
            self._align(points5=s.points5)

    def reload_directions(self) -> None:
        """(Re)build the sliders for the loaded generator: after loading, and when direction files arrive."""
        info = self.models_info
        if info is None:
            return
        gen = (self.models_panel.chosen or {}).get("generator")
        gen = Path(gen) if gen is not None and Path(gen).is_file() else None
        try:
            lib = load_library(self.directions_dir, num_ws=info.num_ws, img_resolution=info.resolution,
                               generator_key=generator_key(gen) if gen is not None else None)
        except Exception as e:  # noqa: BLE001 - a direction file that turned bad: say so, keep the sliders
            from hyperinverter_gui.app.jobs import failure_message

            message = str(e) if isinstance(e, HyperInverterError) else failure_message(e, "reading the directions")
            if self.directions:
                message += " (the sliders loaded before are kept)"
            self.show_error(message)
            if self.directions:
                return
            lib = None
        if lib is not None and self.directions:
            # A file behind a slider in use turned bad (damaged, NaN, replaced): say why, and keep
            # the direction loaded before, which is intact in memory.
            broken = {name: why for name, why in lib.skipped if name in self.directions and name not in lib.directions}
            for name, why in broken.items():
                lib.directions[name] = self.directions[name]
            if broken:
                self.show_error(f"{'; '.join(f'{n}: {why}' for n, why in broken.items())} "
                                "(the sliders loaded before are kept)")
        self.directions = lib.directions if lib else {}
        self.slider_panel.set_directions(self.directions, num_ws=info.num_ws)
        for name in self.slider_panel.sliders:
            self.slider_panel.show_value(name, self.session.value(name))
        self.slider_panel.set_enabled(self.session.inversion is not None)
        self.models_panel.set_resolution(info.resolution)
        self.ganspace_box.update_for(gen, any(d.kind == "ganspace" for d in self.directions.values()),
                                     downloading=self.models_panel.downloading)
        if not self.directions:
            self.slider_panel.empty.setText(
                "No edit directions yet.\nDownload them above, or compute GANSpace below."
                if self.models_panel.missing_directions else
                "No published directions fit this generator.\nCompute GANSpace for it below.")
        if lib and lib.missing:
            missing = sorted({s.file for s in lib.missing})
            self.statusBar().showMessage(
                f"direction files missing: {', '.join(missing)} (see `hyperinverter directions list`)", 8000)

    def set_precision(self, setting: Any) -> Job:
        """The Precision setting ("auto", "float32", "bfloat16", or a PrecisionPlan), applied on the engine thread."""

        def done(plan) -> None:
            if self.models_info is not None:
                from dataclasses import replace

                self.models_info = replace(self.models_info, plan=plan)
            self.scheduler.reset()

        return self.submit("precision", lambda engine, ctx: engine.set_precision(setting), on_done=done,
                           on_failed=self.show_error)

    def _models_failed(self, message: str) -> None:
        self.device_label.setText("device: no models")
        self.show_error(message)
        self.models_panel.show_problem(message)

    # ------------------------------------------------------------------ session -> views

    def _bind_session(self, s: EditSession) -> None:
        s.events.photo.connect(self._on_photo)
        s.events.faces.connect(self._on_overlay)
        s.events.alignment.connect(self._on_alignment)
        s.events.inversion.connect(self._on_inversion)
        s.events.value.connect(self._on_value)
        s.events.values.connect(self._on_values)

    def _unbind_session(self, s: EditSession) -> None:
        for signal, slot in ((s.events.photo, self._on_photo), (s.events.faces, self._on_overlay),
                             (s.events.alignment, self._on_alignment), (s.events.inversion, self._on_inversion),
                             (s.events.value, self._on_value), (s.events.values, self._on_values)):
            signal.disconnect(slot)

    def _on_photo(self) -> None:
        s = self.session
        self.photo_view.set_image(s.photo_rgb, s.photo_path.name if s.photo_path else "")
        self._on_overlay()
        self._on_values()
        self._refresh_result_view()

    def _on_overlay(self) -> None:
        s = self.session
        self.photo_view.set_overlay([f.box for f in s.faces], s.face_index, s.points5,
                                    s.detector == "haar" or (s.points5 is not None and not s.faces))
        # which landmark source placed the points (dlib, FAN, Haar, by hand), after the file name
        source = landmark_caption(s.detector, s.faces, s.face_index, s.points5)
        # The caption stays short enough for a narrow photo pane; the full description is the tooltip.
        short = source.split(" (")[0] + (" (approximate)" if "approximate" in source else "")
        parts = (s.photo_path.name if s.photo_path else "", short)
        self.photo_view.caption = " · ".join(p for p in parts if p)
        if not hasattr(self, "_photo_help"):
            self._photo_help = self.photo_view.base_tooltip
        self.photo_view.base_tooltip = (source[:1].upper() + source[1:] + "\n" if source else "") + self._photo_help
        self.photo_view.setToolTip(self.photo_view.base_tooltip)
        self.photo_view.update()

    def _on_alignment(self) -> None:
        self._on_overlay()
        self._refresh_result_view()

    def _on_inversion(self) -> None:
        s = self.session
        self.scheduler.reset()
        self.slider_panel.set_enabled(s.inversion is not None)
        if s.inversion is not None:
            self._displayed_edit = None
            self.request_render()
        else:
            self._refresh_result_view()

    def _on_value(self, name: str, value: float) -> None:
        self.slider_panel.show_value(name, value)
        if self._dragging != name:
            self.request_render()

    def _on_values(self) -> None:
        for name in self.slider_panel.sliders:
            self.slider_panel.show_value(name, self.session.value(name))
        self.request_render()

    # ------------------------------------------------------------------ opening photos

    @guarded("opening a photo")
    def open_dialog(self) -> None:
        start = str(self.settings.value("last_folder", str(Path.home())))
        pattern = "Images (" + " ".join(f"*{s} *{s.upper()}" for s in sorted(IMAGE_SUFFIXES)) + ")"
        path, _ = QFileDialog.getOpenFileName(self, "Open photo", start, pattern + ";;All files (*)")
        if path:
            self.open_photo(Path(path))

    def open_photo(self, path: Path) -> None:
        """Open a photo (cancelling whatever runs for the previous one): align, then invert.

        The file's header is checked first: a file that is no photo (a folder, a pipe, a text file,
        a decompression bomb) is refused with the error banner and the photo being edited stays."""
        path = Path(path)
        if path.suffix == SESSION_SUFFIX:
            self.open_session(path)
            return
        try:
            check_image_header(path)
        except HyperInverterError as e:
            self.show_error(str(e))
            return
        self.settings.setValue("last_folder", str(path.parent))
        self._remember_recent(path)
        self.error_banner.hide()
        self.notice_banner.hide()
        self.jobs.cancel("compare")
        # The photo being edited is replaced only once the new one has been read (see _aligned):
        # a file that turns out truncated or corrupt leaves the session as it was.
        self._align(path=path)

    def _start_new_photo(self, path: Path) -> None:
        """The new photo was read: drop everything derived from the previous one."""
        self.undo_stack.clear()
        self.results_by_backend = {}
        self._displayed_edit = None
        self.session.reset_photo(path, None)
        self.result_view.set_image(None)
        self.setWindowTitle(f"{path.name} — HyperInverter Studio")

    def _align(self, *, path: Path | None = None, points5: np.ndarray | None = None, face_index: int = 0) -> Job:
        rgb = None if path is not None else self.session.photo_rgb

        def run(engine: Engine, ctx) -> AlignOutcome:
            return align_photo(_engine_resolution(engine), path=path, rgb=rgb, points5=points5,
                               face_index=face_index, token=ctx.token, progress=ctx.progress)

        self.cancel_button.setEnabled(True)
        self._progress("Aligning", 0.01)
        return self.submit("photo", run, on_done=lambda out: self._aligned(out, new_photo=path),
                           on_failed=self._photo_failed, on_progress=self._progress)

    def _aligned(self, out: AlignOutcome, new_photo: Path | None = None) -> None:
        if new_photo is not None:
            self._start_new_photo(new_photo)
        s = self.session
        if out.rgb is not None:
            s.set_photo_rgb(out.rgb)
        if out.detected:
            s.set_faces(out.faces, out.face_index, out.detector, out.message)
            if out.notice:  # approximate (Haar) points, or a photo that had to be turned
                self.show_notice(out.notice)
        if out.no_face is not None:
            h, w = s.photo_rgb.shape[:2]
            s.set_alignment(default_points(w, h), None, None)
            self.show_error(out.no_face + " Drag the five points onto the eyes, nose tip and mouth corners.")
            self._finish_job("No face found: place the points by hand")
            self.progress.setValue(0)
            return
        s.set_alignment(out.points5, out.aligned, out.transform)
        if self.models_info is not None and self.models_info.checkpoint:
            self.results_by_backend = {}
            self._invert(out.aligned)
        else:
            self._finish_job("Aligned (no inverter loaded)")

    def _invert(self, aligned: np.ndarray) -> Job:
        backend, iterations = self.backend, self.iterations_box.value()

        def run(engine: Engine, ctx):
            return engine.invert(aligned, backend, iterations=iterations, on_stage=ctx.progress,
                                 on_image=ctx.partial, cancel=ctx.token)[0]

        self.cancel_button.setEnabled(True)
        return self.submit("photo", run, on_done=self._inverted, on_failed=self._photo_failed,
                           on_progress=self._progress, on_partial=self._partial_image)

    def _partial_image(self, kind: str, image) -> None:
        caption = "Phase I (Phase II running…)" if kind == "phase1" else f"HyperStyle refinement {kind}"
        self.result_view.set_image(tensor_to_uint8(image), caption)
        self.stageImage.emit(kind)

    def _inverted(self, result) -> None:
        self.results_by_backend[self.backend] = result
        self._finish_job("Inverted" + (" (HyperStyle)" if self.backend == "hyperstyle" else ""))
        self.session.set_inversion(result)
        self.inverted.emit(result)

    def _photo_failed(self, message: str) -> None:
        self.cancel_button.setEnabled(False)
        self.stage_label.setText("Failed")
        self.progress.setValue(0)
        self.show_error(message)

    def _backend_changed(self, index: int) -> None:
        self.backend = BACKENDS[index]
        self.iterations_box.setEnabled(self.backend == "hyperstyle")
        self.settings.setValue("backend", self.backend)
        if self.session.aligned_rgb is not None:
            done = self.results_by_backend.get(self.backend)
            if done is not None:
                self.session.set_inversion(done)
            else:
                self.reinvert()

    def _finish_job(self, text: str) -> None:
        self.cancel_button.setEnabled(False)
        self.stage_label.setText(text)
        self.progress.setValue(100)

    def _progress(self, stage: str, fraction: float) -> None:
        self.stage_label.setText(stage)
        self.progress.setValue(int(round(100 * fraction)))
        self.stageChanged.emit(stage, fraction)

    def cancel(self) -> None:
        """Stop the photo's alignment or inversion (between stages); nothing of it is shown any more."""
        self.jobs.cancel("photo")
        self.cancel_button.setEnabled(False)
        self.stage_label.setText("Cancelled")
        self.progress.setValue(0)

    def reinvert(self) -> None:
        if self.session.aligned_rgb is not None:
            self.session.set_inversion(None)
            self._invert(self.session.aligned_rgb)

    def _points_edited(self, points: np.ndarray) -> None:
        if self.session.photo_rgb is None:
            return
        self.session.set_points(points)
        self._align(points5=np.asarray(points))

    def _face_clicked(self, index: int) -> None:
        s = self.session
        if 0 <= index < len(s.faces):
            s.set_faces(s.faces, index, s.detector, s.detector_message)
            s.set_points(np.asarray(s.faces[index].points5))
            self._align(points5=s.points5)

    # ------------------------------------------------------------------ sliders and rendering

    def _slider_moved(self, name: str, value: float) -> None:
        if self._dragging == name:
            self.session.set_value(name, value)
            self.request_render(preview=True)
        else:  # keyboard / click on the groove: one undo step each
            old = self.session.value(name)
            if old != value:
                self.undo_stack.push(UndoCommand(SetValue(self.session, name, old, value)))

    def _drag_started(self, name: str) -> None:
        self._dragging = name
        self._drag_old[name] = self.session.value(name)

    def _drag_finished(self, name: str, value: float) -> None:
        self._dragging = None
        old = self._drag_old.pop(name, self.session.value(name))
        if old != value:
            # The value is set already; the command's redo() re-sets it (no change, no event): render here.
            self.undo_stack.push(UndoCommand(SetValue(self.session, name, old, value)))
        self.request_render()

    def _reset_one(self, name: str) -> None:
        old = self.session.value(name)
        if old != 0:
            self.undo_stack.push(UndoCommand(SetValue(self.session, name, old, 0.0)))

    def reset_all(self) -> None:
        if self.session.values:
            self.undo_stack.push(UndoCommand(ResetValues(self.session)))

    def apply_value(self, name: str, value: float) -> None:
        """Set a slider value as one undoable step (the session tells the views)."""
        old = self.session.value(name)
        if old != value:
            self.undo_stack.push(UndoCommand(SetValue(self.session, name, old, value)))

    def _render_state(self, preview: bool) -> tuple:
        res = int(self.settings.value("preview_resolution", 256)) if preview else None
        if res is not None and self.models_info and res >= self.models_info.resolution:
            res = None
        return (self.session.generation, tuple(sorted(self.session.values.items())), res)

    def request_render(self, preview: bool = False) -> None:
        inv = self.session.inversion
        if inv is None:
            return
        state = self._render_state(preview)
        if not state[1] and state[2] is None and not self.scheduler.busy:
            # No edit: the exact inversion, nothing to compute.
            self._show_edit(tensor_to_uint8(inv.image), "inversion (no edits)")
            return
        start = self.scheduler.request(state)
        if start is not None:
            self._send_render(start)

    def _send_render(self, state: tuple) -> None:
        result = self.session.inversion
        edits = [(self.directions[n], v) for n, v in state[1] if n in self.directions]
        res = state[2]
        self.render_count += 1

        def run(engine: Engine, ctx):
            t = time.perf_counter()
            img = engine.render(result, edits, resolution=res, kind="preview" if res else "frame")
            return tensor_to_uint8(img), (time.perf_counter() - t) * 1000

        self.submit("render", run, supersede=False, on_done=lambda out: self._rendered(state, *out),
                    on_failed=lambda message: self._render_failed(state, message))

    def _rendered(self, state: tuple, image: np.ndarray, ms: float) -> None:
        if state[0] == self.session.generation:
            res = state[2]
            if res is None and self.models_info is not None and self.models_info.plan.frames == "float32":
                self._last_exact = (state[:2], image)  # what an export of this state writes
            label = f"preview {res} px" if res else "edited"
            self._show_edit(image, f"{label}: {self.session.edit_summary()}")
            self.render_label.setText(f"render {ms:.0f} ms" + (f" (preview {res} px)" if res else ""))
        self.rendered.emit(state, ms)
        self._next_render(state)

    def _render_failed(self, state: tuple, message: str) -> None:
        self.show_error(f"could not render: {message}")
        self._next_render(state)

    def _next_render(self, state: tuple) -> None:
        nxt = self.scheduler.finished(state)
        if nxt is not None:
            if nxt[0] != self.session.generation:
                self.scheduler.reset()
                return
            self._send_render(nxt)
        elif not self.session.values and state[2] is None and self.session.inversion is not None:
            self._show_edit(tensor_to_uint8(self.session.inversion.image), "inversion (no edits)")

    def _show_edit(self, image: np.ndarray, caption: str) -> None:
        self._displayed_edit = image
        self._edit_caption = caption
        self._refresh_result_view()
        self.frameShown.emit()

    def _refresh_result_view(self) -> None:
        s = self.session
        mode = VIEW_MODES[self.view_mode.currentIndex()]
        self.result_view.set_compare(None)
        if self._space_held or mode == "Aligned photo":
            self.result_view.set_image(s.aligned_rgb, "aligned photo (before)")
        elif mode.startswith("Side by side"):
            self._show_comparison()
        elif mode == "Phase I":
            img = tensor_to_uint8(s.inversion.phase1) if s.inversion is not None else None
            self.result_view.set_image(img, "Phase I: G(w; θ)")
        elif self._displayed_edit is not None and s.inversion is not None:
            self.result_view.set_image(self._displayed_edit, self._edit_caption)
            if mode.startswith("Swipe"):
                self.result_view.set_compare(s.aligned_rgb, ("photo", "edited"))
        elif s.aligned_rgb is not None and s.inversion is None:
            self.result_view.set_image(s.aligned_rgb, "aligned photo")

    def _show_comparison(self) -> None:
        hi, hs = self.results_by_backend.get("hyperinverter"), self.results_by_backend.get("hyperstyle")
        if hi is not None and hs is not None:
            both = np.concatenate([tensor_to_uint8(hi.image), tensor_to_uint8(hs.image)], axis=1)
            self.result_view.set_image(both, "reconstructions: HyperInverter (left) | HyperStyle (right)")
            return
        if not (self.models_info and self.models_info.hyperstyle):
            self.result_view.set_image(None)
            self.result_view.placeholder = "HyperStyle is not loaded: see `hyperinverter weights list`"
            self.result_view.update()
            return
        aligned = self.session.aligned_rgb
        if aligned is None:
            return
        missing = "hyperstyle" if hi is not None else "hyperinverter"
        if not self.jobs.busy("compare"):
            iterations = self.iterations_box.value()

            def run(engine: Engine, ctx):
                return engine.invert(aligned, missing, iterations=iterations, cancel=ctx.token)[0]

            def done(result) -> None:
                self.results_by_backend[result.metadata.get("backend", "hyperinverter")] = result
                self.stage_label.setText("comparison ready")
                self._refresh_result_view()

            self.submit("compare", run, on_done=done, on_failed=self.show_error,
                        on_progress=lambda stage, f: self.stage_label.setText(f"comparison: {stage}"))
        self.result_view.set_image(aligned, f"computing the {missing} reconstruction…")

    def keyPressEvent(self, ev) -> None:  # noqa: N802
        if ev.key() == Qt.Key_Space and not ev.isAutoRepeat():
            self._space_held = True
            self._refresh_result_view()
            return
        super().keyPressEvent(ev)

    def keyReleaseEvent(self, ev) -> None:  # noqa: N802
        if ev.key() == Qt.Key_Space and not ev.isAutoRepeat():
            self._space_held = False
            self._refresh_result_view()
            return
        super().keyReleaseEvent(ev)

    # ------------------------------------------------------------------ export and sessions

    def export_metadata(self) -> dict[str, str]:
        return {
            "Software": f"HyperInverter Studio {__version__}",
            "edits": self.session.edit_summary(),
            "generator": self.session.model_names.get("generator", ""),
            "checkpoint": self.session.model_names.get("checkpoint", ""),
            "source": self.session.photo_path.name if self.session.photo_path else "",
            "backend": (self.session.inversion.metadata.get("backend", "hyperinverter")
                        if self.session.inversion is not None else ""),
        }

    def export_to(self, path: Path, mode: str = "aligned", overwrite: bool = False) -> Job:
        """Start writing the edited face ("aligned") or the photo with it pasted back ("photo").

        The frame is rendered (float32, full resolution) and written on the engine thread, with
        progress; ``exported`` is emitted with the path when the file is complete.
        """
        s = self.session
        if s.inversion is None:
            raise HyperInverterError("nothing to export yet: open and invert a photo first")
        path = Path(path)
        if path.exists() and not overwrite:
            raise HyperInverterError(f"{path} exists; choose another name or confirm replacing it")
        if mode == "photo" and (s.transform is None or s.photo_rgb is None):
            raise HyperInverterError("the original photo is not available for paste-back")
        req = EditExport(s.inversion, s.edits(self.directions), path, mode, self.export_metadata(), s.photo_rgb,
                         s.transform, s.photo_path, overwrite=overwrite,
                         edited=self._exact_frame())

        def done(written: Path) -> None:
            self.statusBar().showMessage(f"exported {written}", 6000)
            self.stage_label.setText(f"exported {written.name}")
            self.exported.emit(written)

        def failed(message: str) -> None:
            self.progress.setValue(0)
            self.stage_label.setText("export failed")
            self.show_error(message)

        self.stage_label.setText("exporting…")
        return self.submit("export", lambda engine, ctx: export_edit(engine, req, ctx.progress), on_done=done,
                           on_failed=failed, on_progress=self._progress)

    def _exact_frame(self) -> np.ndarray | None:
        """The exact full-resolution frame of the current sliders, when it is on screen already."""
        key = (self.session.generation, tuple(sorted(self.session.values.items())))
        last = getattr(self, "_last_exact", None)
        return last[1] if last is not None and last[0] == key else None

    @guarded("exporting")
    def export_dialog(self, mode: str) -> None:
        if self.session.inversion is None:
            self.show_error("Nothing to export yet: open and invert a photo first.")
            return
        stem = self.session.photo_path.stem if self.session.photo_path else "edited"
        suggestion = Path(str(self.settings.value("last_folder", str(Path.home())))) / f"{stem}_edited.png"
        path, _ = QFileDialog.getSaveFileName(self, "Export", str(suggestion), "PNG (*.png);;JPEG (*.jpg)")
        if not path:
            return
        try:
            # The save dialog has already asked before replacing an existing file.
            self.export_to(Path(path), mode, overwrite=True)
        except HyperInverterError as e:
            self.show_error(str(e))

    @guarded("saving the session")
    def save_session_dialog(self) -> None:
        if self.session.inversion is None:
            self.show_error("Nothing to save yet: open and invert a photo first.")
            return
        stem = self.session.photo_path.stem if self.session.photo_path else "session"
        path, _ = QFileDialog.getSaveFileName(self, "Save session", f"{stem}{SESSION_SUFFIX}",
                                              f"Editing session (*{SESSION_SUFFIX})")
        if path:
            self.save_session(Path(path))

    @guarded("saving the session")
    def save_session(self, path: Path) -> None:
        """Write the session (inversion and slider values); a failure is a banner, the session stays open."""
        self.session.save(Path(path))
        self.statusBar().showMessage(f"session saved to {path}", 6000)

    @guarded("opening a session")
    def open_session_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", "", f"Editing session (*{SESSION_SUFFIX})")
        if path:
            self.open_session(Path(path))

    def open_session(self, path: Path) -> Job:
        """Read a saved session on the engine thread (a large file, maybe on a slow disk), then show it."""
        path = Path(path)
        self.stage_label.setText(f"opening {path.name}…")
        return self.submit("photo", lambda engine, ctx: EditSession.load(path),
                           on_done=lambda s: self._use_session(s, path), on_failed=self.show_error)

    def _use_session(self, s: EditSession, path: Path) -> None:
        self.jobs.cancel("photo")
        self.jobs.cancel("compare")
        self._unbind_session(self.session)
        s.generation = self.session.generation + 1
        self.session = s
        self._bind_session(s)
        self.undo_stack.clear()
        self.scheduler.reset()
        self.results_by_backend = {}
        self._displayed_edit = None
        self.stage_label.setText(f"session {path.name}")
        self._on_photo()
        self._on_inversion()
        self.sessionOpened.emit(path)

    # ------------------------------------------------------------------ misc

    def show_error(self, message: str) -> None:
        log.warning("error shown to the user: %s", message)
        self.error_banner.setText(f"⚠ {message}   (click to dismiss)")
        self.error_banner.show()
        self.statusBar().showMessage(message.splitlines()[0][:160], 10000)

    def show_notice(self, message: str) -> None:
        self.notice_banner.setText(f"ℹ {message}   (click to dismiss)")
        self.notice_banner.show()

    def _remember_recent(self, path: Path) -> None:
        recent = [p for p in (self.settings.value("recent", []) or []) if p != str(path)]
        recent.insert(0, str(path))
        self.settings.setValue("recent", recent[:10])
        self._rebuild_recent()

    def _rebuild_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.value("recent", []) or []
        if isinstance(recent, str):
            recent = [recent]
        for p in recent:
            a = self.recent_menu.addAction(p)
            a.triggered.connect(lambda _=False, p=p: self.open_photo(Path(p)))
        self.recent_menu.setEnabled(bool(recent))

    def preferences(self) -> None:
        from hyperinverter_gui._qt.preferences import PreferencesDialog

        dlg = PreferencesDialog(self.settings, self)
        if dlg.exec():
            from hyperinverter_gui._qt.app import apply_theme

            apply_theme(str(self.settings.value("theme", "dark")))
            if dlg.device_changed and self.models_panel.chosen:
                self._load_models(self.models_panel.chosen)

    def dragEnterEvent(self, ev) -> None:  # noqa: N802
        if ev.mimeData().hasUrls():
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:  # noqa: N802
        self._dropped([u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()],
                      len(ev.mimeData().urls()))

    @guarded("opening the dropped file")
    def _dropped(self, paths: list[str], count: int) -> None:
        if not paths:
            self.show_error("Only files on this computer can be opened: drop a photo or a session file.")
            return
        if len(paths) > 1 or count > 1:
            self.show_notice(f"{count} files were dropped; opening the first, {Path(paths[0]).name}")
        self.open_photo(Path(paths[0]))


def confirm(parent: QWidget, title: str, text: str) -> bool:
    return QMessageBox.question(parent, title, text) == QMessageBox.Yes


__all__ = ["MainWindow"]
