"""Interpolation view: two inverted photos, a slider alpha from A to B (latent codes and weights)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from hyperinverter_gui._qt.widgets import ImageView
from hyperinverter_gui.app.export import export_interpolation
from hyperinverter_gui.app.photos import align_photo
from hyperinverter_gui.app.scheduler import RenderScheduler
from hyperinverter_gui.app.session import SESSION_SUFFIX
from hyperinverter_gui.errors import HyperInverterError
from hyperinverter_gui.media.images import IMAGE_SUFFIXES, tensor_to_uint8

if TYPE_CHECKING:
    from hyperinverter_gui._qt.main_window import MainWindow


class InterpolationPanel(QWidget):
    ALPHA_STEPS = 100

    def __init__(self, window: "MainWindow"):
        super().__init__(window)
        self.window = window
        self.results: dict[str, object] = {"A": None, "B": None}
        self.scheduler = RenderScheduler()
        self.generation = 0
        self._sequence: dict | None = None
        lay = QVBoxLayout(self)
        grid = QGridLayout()
        self.views = {k: ImageView(f"Photo {k}: open a photo or a saved session") for k in "AB"}
        self.status = {k: QLabel("") for k in "AB"}
        self.frame_view = ImageView("The interpolated face appears here")
        for col, k in ((0, "A"), (2, "B")):
            box = QVBoxLayout()
            box.addWidget(self.views[k], 1)
            box.addWidget(self.status[k])
            row = QHBoxLayout()
            b = QPushButton(f"Open {k}…")
            b.clicked.connect(lambda _=False, k=k: self.open_dialog(k))
            cur = QPushButton("Use the Edit tab's photo")
            cur.clicked.connect(lambda _=False, k=k: self.use_current(k))
            row.addWidget(b)
            row.addWidget(cur)
            box.addLayout(row)
            grid.addLayout(box, 0, col)
        grid.addWidget(self.frame_view, 0, 1)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 2)
        grid.setColumnStretch(2, 1)
        lay.addLayout(grid, 1)
        ctl = QHBoxLayout()
        ctl.addWidget(QLabel("A"))
        self.alpha = QSlider(Qt.Horizontal)
        self.alpha.setObjectName("alphaSlider")
        self.alpha.setRange(0, self.ALPHA_STEPS)
        self.alpha.valueChanged.connect(lambda _: self.request_frame(preview=self.alpha.isSliderDown()))
        self.alpha.sliderReleased.connect(lambda: self.request_frame())
        ctl.addWidget(self.alpha, 1)
        ctl.addWidget(QLabel("B"))
        self.alpha_label = QLabel("α = 0.00")
        ctl.addWidget(self.alpha_label)
        self.latent_only = QCheckBox("latent codes only")
        self.latent_only.setToolTip("Interpolate w alone with the plain generator (the usual pipeline), for comparison")
        self.latent_only.toggled.connect(lambda _: self.request_frame())
        ctl.addWidget(self.latent_only)
        lay.addLayout(ctl)
        exp = QHBoxLayout()
        self.frame_button = QPushButton("Export frame…")
        self.frame_button.clicked.connect(self.export_frame_dialog)
        self.steps = QSpinBox()
        self.steps.setRange(2, 120)
        self.steps.setValue(16)
        self.gif_button = QPushButton("Export GIF…")
        self.gif_button.clicked.connect(lambda: self.export_sequence_dialog("gif"))
        self.mp4_button = QPushButton("Export MP4…")
        self.mp4_button.clicked.connect(lambda: self.export_sequence_dialog("mp4"))
        exp.addWidget(self.frame_button)
        exp.addStretch(1)
        exp.addWidget(QLabel("frames"))
        exp.addWidget(self.steps)
        exp.addWidget(self.gif_button)
        exp.addWidget(self.mp4_button)
        lay.addLayout(exp)
        self.frame: np.ndarray | None = None
        self._enable()

    # --- inputs -----------------------------------------------------------------

    def open_dialog(self, which: str) -> None:
        pattern = "Photos or sessions (" + " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES)) + f" *{SESSION_SUFFIX})"
        path, _ = QFileDialog.getOpenFileName(self, f"Photo {which}", "", pattern)
        if path:
            self.open(which, Path(path))

    def open(self, which: str, path: Path) -> None:
        """Use a saved inversion or session at once; a photo is aligned and inverted as a job."""
        self.results[which] = None
        self.generation += 1
        self._enable()
        if path.suffix in (SESSION_SUFFIX, ".safetensors"):
            from hyperinverter_gui.inversion.result import load_inversion

            self.status[which].setText("reading…")
            self.window.submit(which, lambda engine, ctx: load_inversion(path),
                               on_done=lambda r: self.inverted(which, r), on_failed=lambda m: self.failed(which, m))
            return
        self.status[which].setText("aligning…")
        backend = self.window.backend
        iterations = self.window.iterations_box.value()
        views = self.views

        def run(engine, ctx):
            out = align_photo(engine.resolution, path=path, token=ctx.token, progress=ctx.progress)
            if out.aligned is None:
                raise HyperInverterError(f"{path.name}: {out.no_face}")
            ctx.partial("aligned", out)
            return engine.invert(out.aligned, backend, iterations=iterations, on_stage=ctx.progress,
                                 cancel=ctx.token)[0]

        def partial(kind: str, out) -> None:
            views[which].set_image(out.aligned, "aligned")
            if out.message:
                self.window.show_notice(out.message)
            self.status[which].setText("inverting…")

        self.window.submit(which, run, on_done=lambda r: self.inverted(which, r),
                           on_failed=lambda m: self.failed(which, m), on_partial=partial,
                           on_progress=lambda stage, f: self.progress(which, stage, f))

    def use_current(self, which: str) -> None:
        s = self.window.session
        if s.inversion is None:
            self.window.show_error("The Edit tab has no inverted photo yet.")
            return
        self.views[which].set_image(s.aligned_rgb)
        self.inverted(which, s.inversion)

    def set_result(self, which: str, result) -> None:
        """Use an inversion directly (tests, sessions)."""
        self.inverted(which, result)

    # --- answers ------------------------------------------------------------------

    def progress(self, which: str, stage: str, fraction: float) -> None:
        if which in self.status:
            self.status[which].setText(f"{stage} ({int(round(100 * fraction))}%)")

    def inverted(self, which: str, result) -> None:
        self.results[which] = result
        self.generation += 1
        self.scheduler.reset()
        self.status[which].setText("ready")
        if self.views[which]._pixmap is None:
            self.views[which].set_image(tensor_to_uint8(result.image), "inversion")
        self._enable()
        self.request_frame()

    def failed(self, which: str, message: str) -> None:
        self.status[which].setText("failed")
        self.window.show_error(message)

    def _enable(self) -> None:
        ready = all(r is not None for r in self.results.values())
        for w in (self.alpha, self.latent_only, self.frame_button, self.gif_button, self.mp4_button):
            w.setEnabled(ready)

    # --- frames -----------------------------------------------------------------

    @property
    def alpha_value(self) -> float:
        return self.alpha.value() / self.ALPHA_STEPS

    def request_frame(self, preview: bool = False) -> None:
        self.alpha_label.setText(f"α = {self.alpha_value:.2f}")
        a, b = self.results["A"], self.results["B"]
        if a is None or b is None:
            return
        alpha, latent = self.alpha_value, self.latent_only.isChecked()
        res = None
        info = self.window.models_info
        if preview and info is not None and info.resolution > 256:
            res = 256
        if not latent and alpha in (0.0, 1.0) and res is None and not self.scheduler.busy:
            r = a if alpha == 0.0 else b  # the exact reconstructions at the ends
            self._show(tensor_to_uint8(r.image), alpha, latent)
            return
        state = (self.generation, alpha, latent, res)
        start = self.scheduler.request(state)
        if start is not None:
            self._send(start)

    def _send(self, state: tuple) -> None:
        a, b = self.results["A"], self.results["B"]
        _, alpha, latent, res = state

        def run(engine, ctx):
            kind = "preview" if res else "frame"
            return tensor_to_uint8(engine.interpolate(a, b, alpha, latent_only=latent, resolution=res, kind=kind))

        self.window.submit("interpolation frame", run, supersede=False,
                           on_done=lambda image: self._rendered(state, image),
                           on_failed=lambda message: self._render_failed(state, message))

    def _show(self, image: np.ndarray, alpha: float, latent: bool) -> None:
        self.frame = image
        mode = "latent codes only" if latent else "latent codes + weights"
        self.frame_view.set_image(image, f"α = {alpha:.2f}, {mode}")

    def _rendered(self, state: tuple, image: np.ndarray) -> None:
        if state[0] == self.generation:
            self._show(image, state[1], state[2])
        self._next(state)

    def _render_failed(self, state: tuple, message: str) -> None:
        self.window.show_error(f"could not render the interpolation: {message}")
        self._next(state)

    def _next(self, state: tuple) -> None:
        nxt = self.scheduler.finished(state)
        if nxt is not None and nxt[0] == self.generation:
            self._send(nxt)
        elif nxt is not None:
            self.scheduler.reset()

    # --- export -----------------------------------------------------------------

    def export_frame_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export frame", f"interpolation_{self.alpha_value:.2f}.png",
                                              "PNG (*.png)")
        if path:
            try:
                self.export_frame(Path(path), overwrite=True)
            except HyperInverterError as e:
                self.window.show_error(str(e))

    def export_frame(self, path: Path, overwrite: bool = False) -> Path:
        """The frame on screen (already rendered), as a PNG."""
        from hyperinverter_gui.media.animation import write_png

        if self.frame is None:
            raise HyperInverterError("no interpolation frame to export yet")
        text = {"alpha": f"{self.alpha_value:.4f}",
                "mode": "latent-only" if self.latent_only.isChecked() else "latent+weights"}
        return write_png(path, self.frame, text, overwrite=overwrite)

    def export_sequence_dialog(self, kind: str) -> None:
        path, _ = QFileDialog.getSaveFileName(self, f"Export {kind.upper()}", f"interpolation.{kind}",
                                              f"{kind.upper()} (*.{kind})")
        if path:
            self.export_sequence(Path(path), kind, self.steps.value())

    def export_sequence(self, path: Path, kind: str, steps: int):
        """Render ``steps`` exact frames and write a GIF or MP4, as one job on the engine thread."""
        if self.window.jobs.busy("sequence"):
            self.window.show_error("an export is already running")
            return None
        a, b, latent = self.results["A"], self.results["B"], self.latent_only.isChecked()
        if a is None or b is None:
            self.window.show_error("open photos A and B first")
            return None
        target = {"gif": path} if kind == "gif" else {"mp4": path}

        def run(engine, ctx):
            return export_interpolation(engine, a, b, steps, latent_only=latent, progress=ctx.progress,
                                        token=ctx.token, **target)

        def done(written) -> None:
            self.window.statusBar().showMessage(f"exported {path}", 6000)
            self.window.stage_label.setText(f"exported {path.name}")
            self.window.exported.emit(path)

        self.window.stage_label.setText(f"rendering {steps} frames…")
        return self.window.submit("sequence", run, on_done=done, on_failed=self.window.show_error,
                                  on_progress=lambda stage, f: self.window.stage_label.setText(f"export: {stage}"))
