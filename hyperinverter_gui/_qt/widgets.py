"""Reusable widgets: image views (with landmark overlay) and the slider panel."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from hyperinverter_gui.alignment import POINT_NAMES


def to_qimage(rgb: np.ndarray) -> QImage:
    """HxWx3 uint8 -> QImage (a deep copy, safe after the array goes away)."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()


class ImageView(QWidget):
    """Shows an image scaled to fit, keeping its aspect ratio, with an optional caption."""

    def __init__(self, placeholder: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumSize(160, 160)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self._pixmap: QPixmap | None = None
        self._image_size = (0, 0)
        self.placeholder = placeholder
        self.caption = ""
        self.split_with: QPixmap | None = None  # when set: left half this, right half the main image

    def set_image(self, rgb: np.ndarray | None, caption: str = "") -> None:
        if rgb is None:
            self._pixmap, self._image_size = None, (0, 0)
        else:
            self._pixmap = QPixmap.fromImage(to_qimage(rgb))
            self._image_size = (rgb.shape[1], rgb.shape[0])
        self.caption = caption
        self.update()

    def set_split(self, rgb: np.ndarray | None) -> None:
        self.split_with = None if rgb is None else QPixmap.fromImage(to_qimage(rgb))
        self.update()

    def image_rect(self) -> QRectF:
        w, h = self._image_size
        if not w or not h:
            return QRectF()
        s = min(self.width() / w, (self.height() - 18) / h)
        dw, dh = w * s, h * s
        return QRectF((self.width() - dw) / 2, (self.height() - 18 - dh) / 2, dw, dh)

    def to_widget(self, x: float, y: float) -> QPointF:
        r = self.image_rect()
        return QPointF(r.x() + x * r.width() / self._image_size[0], r.y() + y * r.height() / self._image_size[1])

    def to_image(self, p: QPointF) -> tuple[float, float]:
        r = self.image_rect()
        return ((p.x() - r.x()) * self._image_size[0] / r.width(), (p.y() - r.y()) * self._image_size[1] / r.height())

    def paintEvent(self, event) -> None:  # noqa: N802
        qp = QPainter(self)
        qp.setRenderHint(QPainter.SmoothPixmapTransform)
        if self._pixmap is None:
            qp.setPen(self.palette().color(self.foregroundRole()))
            qp.drawText(self.rect(), Qt.AlignCenter | Qt.TextWordWrap, self.placeholder)
            return
        r = self.image_rect()
        qp.drawPixmap(r, self._pixmap, QRectF(self._pixmap.rect()))
        if self.split_with is not None:
            half = QRectF(r.x(), r.y(), r.width() / 2, r.height())
            src = QRectF(0, 0, self.split_with.width() / 2, self.split_with.height())
            qp.drawPixmap(half, self.split_with, src)
            qp.setPen(QPen(QColor(255, 255, 255), 2))
            qp.drawLine(QPointF(r.center().x(), r.top()), QPointF(r.center().x(), r.bottom()))
        self.paint_overlay(qp)
        if self.caption:
            qp.setPen(self.palette().color(self.foregroundRole()))
            qp.drawText(QRectF(0, self.height() - 18, self.width(), 18), Qt.AlignCenter, self.caption)

    def paint_overlay(self, qp: QPainter) -> None:
        pass


class PhotoView(ImageView):
    """The original photo with face boxes and the five alignment points, which can be dragged."""

    pointsEdited = Signal(object)  # np.ndarray [5,2] after a drag
    faceClicked = Signal(int)

    COLORS = [QColor(80, 200, 255), QColor(80, 200, 255), QColor(255, 220, 80), QColor(255, 120, 120),
              QColor(255, 120, 120)]

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Open a photo (Ctrl+O) or drop one here", parent)
        self.boxes: list[tuple[float, float, float, float]] = []
        self.active_face = 0
        self.points: np.ndarray | None = None
        self.approximate = False
        self._drag: int | None = None
        self.setMouseTracking(True)

    def set_overlay(self, boxes, active: int, points: np.ndarray | None, approximate: bool) -> None:
        self.boxes = [tuple(map(float, b)) for b in boxes]
        self.active_face = active
        self.points = None if points is None else np.array(points, dtype=np.float64)
        self.approximate = approximate
        self.update()

    def paint_overlay(self, qp: QPainter) -> None:
        for i, (x0, y0, x1, y1) in enumerate(self.boxes):
            a, b = self.to_widget(x0, y0), self.to_widget(x1, y1)
            pen = QPen(QColor(120, 255, 120) if i == self.active_face else QColor(200, 200, 200), 2)
            pen.setStyle(Qt.SolidLine if i == self.active_face else Qt.DashLine)
            qp.setPen(pen)
            qp.drawRect(QRectF(a, b))
        if self.points is None:
            return
        for i, (x, y) in enumerate(self.points):
            if not np.isfinite(x):
                continue
            p = self.to_widget(x, y)
            qp.setPen(QPen(QColor(0, 0, 0), 3))
            qp.setBrush(self.COLORS[i])
            qp.drawEllipse(p, 5, 5)
        if self.approximate:
            text = "approximate points: drag them into place"
            r = self.image_rect()
            box = qp.fontMetrics().boundingRect(text).adjusted(-6, -3, 6, 3)
            box.moveTopLeft(r.topLeft().toPoint() + QPointF(4, 4).toPoint())
            qp.fillRect(box, QColor(0, 0, 0, 170))
            qp.setPen(QColor(255, 200, 80))
            qp.drawText(box, Qt.AlignCenter, text)

    def _hit(self, pos: QPointF) -> int | None:
        if self.points is None:
            return None
        for i, (x, y) in enumerate(self.points):
            if np.isfinite(x):
                p = self.to_widget(x, y)
                if (p - pos).manhattanLength() < 14:
                    return i
        return None

    def mousePressEvent(self, ev) -> None:  # noqa: N802
        pos = QPointF(ev.position())
        self._drag = self._hit(pos)
        if self._drag is None and len(self.boxes) > 1:
            x, y = self.to_image(pos)
            for i, (x0, y0, x1, y1) in enumerate(self.boxes):
                if x0 <= x <= x1 and y0 <= y <= y1 and i != self.active_face:
                    self.faceClicked.emit(i)
                    return

    def mouseMoveEvent(self, ev) -> None:  # noqa: N802
        pos = QPointF(ev.position())
        if self._drag is not None and self.points is not None:
            x, y = self.to_image(pos)
            self.points[self._drag] = (x, y)
            self.update()
        hit = self._hit(pos)
        self.setToolTip(POINT_NAMES[hit] if hit is not None else "")
        self.setCursor(Qt.OpenHandCursor if hit is not None else Qt.ArrowCursor)

    def mouseReleaseEvent(self, ev) -> None:  # noqa: N802
        if self._drag is not None and self.points is not None:
            self._drag = None
            self.pointsEdited.emit(self.points.copy())


class _ResettableSlider(QSlider):
    """A slider that resets to 0 on double-click."""

    doubleClicked = Signal()

    def mouseDoubleClickEvent(self, ev) -> None:  # noqa: N802
        self.doubleClicked.emit()


class SliderPanel(QWidget):
    """One slider per direction, grouped; emits value changes and drag start/end."""

    valueChanged = Signal(str, float)  # name, value (every move)
    dragStarted = Signal(str)
    dragFinished = Signal(str, float)
    resetRequested = Signal(str)

    STEPS_PER_UNIT = 100

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.layout_ = QVBoxLayout(self)
        self.layout_.setContentsMargins(4, 4, 4, 4)
        self.sliders: dict[str, QSlider] = {}
        self.value_labels: dict[str, QLabel] = {}
        self.empty = QLabel("No edit directions yet.\nPut direction files in directions/ (see directions/README.md).")
        self.empty.setWordWrap(True)
        self.layout_.addWidget(self.empty)
        self.layout_.addStretch(1)
        self._updating = False

    def set_directions(self, directions: dict) -> None:
        while self.layout_.count():
            item = self.layout_.takeAt(0)
            if item.widget() is not None and item.widget() is not self.empty:
                item.widget().deleteLater()
        self.sliders.clear()
        self.value_labels.clear()
        groups: dict[str, list] = {}
        for d in directions.values():
            groups.setdefault(d.group or "Directions", []).append(d)
        self.empty.setVisible(not directions)
        self.layout_.addWidget(self.empty)
        for group, items in groups.items():
            box = QGroupBox(group)
            grid = QGridLayout(box)
            grid.setContentsMargins(6, 4, 6, 4)
            for row, d in enumerate(items):
                lo, hi = d.value_range
                s = _ResettableSlider(Qt.Horizontal)
                s.setObjectName(f"slider_{d.name}")
                s.setRange(int(round(lo * self.STEPS_PER_UNIT)), int(round(hi * self.STEPS_PER_UNIT)))
                s.setSingleStep(max(1, int(round(d.step * self.STEPS_PER_UNIT))))
                s.setValue(0)
                s.setToolTip(f"{d.label or d.name}: double-click to reset")
                val = QLabel("0")
                val.setMinimumWidth(44)
                reset = QToolButton()
                reset.setText("↺")
                reset.setToolTip("reset to 0")
                name = d.name
                s.valueChanged.connect(lambda v, n=name: self._moved(n, v))
                s.sliderPressed.connect(lambda n=name: self.dragStarted.emit(n))
                s.sliderReleased.connect(lambda n=name: self.dragFinished.emit(n, self.value(n)))
                s.doubleClicked.connect(lambda n=name: self.resetRequested.emit(n))
                reset.clicked.connect(lambda _=False, n=name: self.resetRequested.emit(n))
                grid.addWidget(QLabel(d.label or d.name), row, 0)
                grid.addWidget(s, row, 1)
                grid.addWidget(val, row, 2)
                grid.addWidget(reset, row, 3)
                self.sliders[name] = s
                self.value_labels[name] = val
            self.layout_.addWidget(box)
        self.layout_.addStretch(1)

    def value(self, name: str) -> float:
        return self.sliders[name].value() / self.STEPS_PER_UNIT

    def _moved(self, name: str, v: int) -> None:
        value = v / self.STEPS_PER_UNIT
        self.value_labels[name].setText(f"{value:+.2f}" if value else "0")
        if not self._updating:
            self.valueChanged.emit(name, value)

    def show_value(self, name: str, value: float) -> None:
        """Set a slider from the model without emitting valueChanged."""
        if name not in self.sliders:
            return
        self._updating = True
        try:
            self.sliders[name].setValue(int(round(value * self.STEPS_PER_UNIT)))
            self.value_labels[name].setText(f"{value:+.2f}" if value else "0")
        finally:
            self._updating = False

    def set_enabled(self, enabled: bool) -> None:
        for s in self.sliders.values():
            s.setEnabled(enabled)


def hbox(*widgets, stretch_last: bool = False) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    for x in widgets:
        lay.addWidget(x)
    if stretch_last:
        lay.addStretch(1)
    return w


__all__ = ["ImageView", "PhotoView", "SliderPanel", "hbox", "to_qimage", "QEvent"]
