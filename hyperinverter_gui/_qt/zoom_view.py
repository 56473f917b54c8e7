"""Image views with zoom and pan, a swipe compare, and the photo view's draggable landmarks.

:class:`ImageView` shows one image scaled to fit, or zoomed: the wheel zooms around the pointer,
a drag pans (left button on the image when it is larger than the view; the middle button always),
a double-click toggles fit and 100 %. *100 %* means one image pixel per screen (device) pixel,
also at 200 % display scaling, so skin and hair can be judged at their real resolution; above
200 % pixels are drawn as squares instead of being smoothed.

With :meth:`ImageView.set_compare` the view becomes a **swipe compare**: the "before" image is
drawn left of a vertical divider and the main ("after") image right of it, both through the same
zoom and pan, so the two sides always show the same spot. The divider is dragged with the left
button (its knob or anywhere within a few pixels of it); arrow keys move it when the view has
focus.

:class:`PhotoView` adds face boxes (click one to choose that face) and the five alignment points,
which are dragged with the left button. Every mapping between the widget and the image goes
through :meth:`ImageView.image_rect`, so dragging a point works the same at any zoom.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget

from hyperinverter_gui.alignment import POINT_NAMES

CAPTION_HEIGHT = 18
WHEEL_STEP = 1.25  # zoom factor per wheel notch
MAX_ZOOM = 32.0  # device pixels per image pixel
PAN_THRESHOLD = 3  # px a press must move before it counts as a drag (a click stays a click)
DIVIDER_GRAB = 8  # px either side of the swipe divider that grab it

VIEW_HELP = ("Wheel: zoom around the pointer · drag: pan (middle button: always) · double-click: "
             "fit ↔ 100 % · Ctrl+0 fit, Ctrl+1 100 %, Ctrl+2 200 %, Ctrl++ / Ctrl+− zoom")


def to_qimage(rgb: np.ndarray) -> QImage:
    """HxWx3 uint8 -> QImage (a deep copy, safe after the array goes away)."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()


class ImageView(QWidget):
    """Shows an image scaled to fit or zoomed and panned, with a caption and an optional swipe compare."""

    zoomChanged = Signal()  # zoom or pan changed (``zoom()`` is None when fitting)
    dividerMoved = Signal(float)  # the swipe divider's position, 0..1 across the view
    activated = Signal()  # the pointer entered, or the view was clicked or focused (the zoom keys' target)

    def __init__(self, placeholder: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumSize(160, 160)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setFocusPolicy(Qt.StrongFocus)
        self._pixmap: QPixmap | None = None
        self._image_size = (0, 0)
        self.placeholder = placeholder
        self.caption = ""
        self.compare_with: QPixmap | None = None  # swipe compare: this left of the divider
        self.compare_labels = ("photo", "edited")
        self._compare_cache: tuple[np.ndarray | None, QPixmap | None] = (None, None)
        self.divider = 0.5  # the divider's x as a fraction of the view's width
        self._fit = True
        self._scale = 1.0  # widget (logical) px per image px, when not fitting
        self._center = QPointF()  # image point at the view's centre, when not fitting
        self._press: QPointF | None = None
        self._last: QPointF | None = None
        self._gesture: str | None = None  # "pan", "divider", or a subclass's
        self._moved = False
        self.base_tooltip = VIEW_HELP
        self.setToolTip(VIEW_HELP)
        self.setAccessibleName(placeholder or "Image")
        self.setAccessibleDescription(VIEW_HELP)
        self.setMouseTracking(True)

    # ---------------------------------------------------------------- content

    def set_image(self, rgb: np.ndarray | None, caption: str = "") -> None:
        """Show ``rgb``. The zoom and pan stay when the new image has the old one's shape of frame
        (a 256 px preview replacing a 1024 px frame keeps the same spot at the same size); a new
        aspect ratio, or no image, goes back to fit."""
        if rgb is None:
            self._pixmap, self._image_size = None, (0, 0)
            self._fit = True
        else:
            old_w, old_h = self._image_size
            w, h = int(rgb.shape[1]), int(rgb.shape[0])
            if not self._fit and old_w and old_h and abs(w / h - old_w / old_h) < 1e-3:
                k = w / old_w
                self._center = QPointF(self._center.x() * k, self._center.y() * k)
                self._scale /= k
            elif (w, h) != (old_w, old_h):
                self._fit = True
            self._pixmap = QPixmap.fromImage(to_qimage(rgb))
            self._image_size = (w, h)
        self.caption = caption
        self.update()

    def set_compare(self, rgb: np.ndarray | None, labels: tuple[str, str] = ("photo", "edited")) -> None:
        """Swipe compare: ``rgb`` left of the divider, the main image right of it (None: off)."""
        if rgb is None:
            self.compare_with = None
        else:
            source, pixmap = self._compare_cache
            if rgb is not source:  # the same photo again (each new frame): no new copy
                pixmap = QPixmap.fromImage(to_qimage(rgb))
                self._compare_cache = (rgb, pixmap)
            self.compare_with = pixmap
        self.compare_labels = labels
        self.update()

    set_split = set_compare  # the older name

    @property
    def comparing(self) -> bool:
        return self.compare_with is not None and self._pixmap is not None

    # ---------------------------------------------------------------- geometry

    def view_rect(self) -> QRectF:
        """Where images are drawn: the widget less the caption line."""
        return QRectF(0, 0, self.width(), max(1, self.height() - CAPTION_HEIGHT))

    def device_ratio(self) -> float:
        return max(1.0, float(self.devicePixelRatioF()))

    def fit_scale(self) -> float:
        w, h = self._image_size
        if not w or not h:
            return 1.0
        v = self.view_rect()
        return min(v.width() / w, v.height() / h)

    def scale(self) -> float:
        """Widget (logical) pixels per image pixel, as shown now."""
        return self.fit_scale() if self._fit else self._scale

    def zoom(self) -> float | None:
        """Device pixels per image pixel (1.0 = 100 %), or None when the image is fitted to the view."""
        return None if self._fit else self._scale * self.device_ratio()

    def shown_zoom(self) -> float:
        return self.scale() * self.device_ratio()

    def image_rect(self) -> QRectF:
        """The whole image's rectangle in widget coordinates (larger than the view when zoomed in)."""
        w, h = self._image_size
        if not w or not h:
            return QRectF()
        v = self.view_rect()
        s = self.scale()
        if self._fit:
            return QRectF((v.width() - w * s) / 2, (v.height() - h * s) / 2, w * s, h * s)
        return QRectF(v.width() / 2 - self._center.x() * s, v.height() / 2 - self._center.y() * s, w * s, h * s)

    def to_widget(self, x: float, y: float) -> QPointF:
        r = self.image_rect()
        return QPointF(r.x() + x * r.width() / self._image_size[0], r.y() + y * r.height() / self._image_size[1])

    def to_image(self, p: QPointF) -> tuple[float, float]:
        r = self.image_rect()
        return ((p.x() - r.x()) * self._image_size[0] / r.width(), (p.y() - r.y()) * self._image_size[1] / r.height())

    # ---------------------------------------------------------------- zoom and pan

    def fit(self) -> None:
        self._fit = True
        self.update()
        self.zoomChanged.emit()

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Zoom to ``zoom`` device pixels per image pixel, keeping the image point under ``anchor``
        (a widget position; default the view's centre) where it is."""
        w, h = self._image_size
        if not w or not h:
            return
        v = self.view_rect()
        anchor = QPointF(anchor) if anchor is not None else v.center()
        ix, iy = self.to_image(anchor)
        s = min(max(zoom, 0.01), MAX_ZOOM) / self.device_ratio()
        self._scale = s
        self._fit = False
        self._center = QPointF(ix - (anchor.x() - v.width() / 2) / s, iy - (anchor.y() - v.height() / 2) / s)
        self._clamp()
        self.update()
        self.zoomChanged.emit()

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        """Zoom in (factor > 1) or out; zooming out past the fitted size fits the image."""
        new = self.shown_zoom() * factor
        fit = self.fit_scale() * self.device_ratio()
        if factor < 1 and new <= fit * 1.0001:
            self.fit()
        else:
            self.set_zoom(new, anchor)

    def pan_by(self, dx: float, dy: float) -> None:
        """Move the image by (dx, dy) widget pixels (nothing to do while it fits the view)."""
        if self._fit:
            return
        s = self._scale
        self._center = QPointF(self._center.x() - dx / s, self._center.y() - dy / s)
        self._clamp()
        self.update()
        self.zoomChanged.emit()

    def set_view(self, zoom: float | None, center: tuple[float, float] | None = None) -> None:
        """Restore a zoom (None: fit) and the image point at the view's centre (see :meth:`view_state`)."""
        if zoom is None:
            self.fit()
            return
        self._fit = False
        self._scale = min(max(zoom, 0.01), MAX_ZOOM) / self.device_ratio()
        if center is not None:
            self._center = QPointF(*center)
        self._clamp()
        self.update()
        self.zoomChanged.emit()

    def view_state(self) -> tuple[float | None, tuple[float, float]]:
        return self.zoom(), (self._center.x(), self._center.y())

    def _clamp(self) -> None:
        """Keep the image covering the view where it is larger than it, centred where it is smaller."""
        w, h = self._image_size
        v = self.view_rect()
        s = self._scale
        cx, cy = self._center.x(), self._center.y()
        half_w, half_h = v.width() / (2 * s), v.height() / (2 * s)
        cx = w / 2 if w <= 2 * half_w else min(max(cx, half_w), w - half_w)
        cy = h / 2 if h <= 2 * half_h else min(max(cy, half_h), h - half_h)
        self._center = QPointF(cx, cy)

    def resizeEvent(self, ev) -> None:  # noqa: N802
        if not self._fit:
            self._clamp()
        super().resizeEvent(ev)

    # ---------------------------------------------------------------- swipe divider

    def divider_x(self) -> float:
        """The divider's x in widget coordinates, kept over the visible part of the image."""
        vis = self.image_rect().intersected(self.view_rect())
        x = self.divider * self.width()
        if vis.isEmpty():
            return x
        return min(max(x, vis.left()), vis.right())

    def set_divider(self, fraction: float) -> None:
        self.divider = min(max(float(fraction), 0.0), 1.0)
        self.update()
        self.dividerMoved.emit(self.divider)

    def _near_divider(self, pos: QPointF) -> bool:
        if not self.comparing:
            return False
        vis = self.image_rect().intersected(self.view_rect())
        return abs(pos.x() - self.divider_x()) <= DIVIDER_GRAB and vis.top() <= pos.y() <= vis.bottom()

    # ---------------------------------------------------------------- painting

    def _draw(self, qp: QPainter, pixmap: QPixmap, r: QRectF, area: QRectF) -> None:
        """Draw the part of ``pixmap`` (stretched over ``r``) that falls inside ``area``."""
        vis = r.intersected(area)
        if vis.isEmpty() or r.width() <= 0 or r.height() <= 0:
            return
        sx, sy = pixmap.width() / r.width(), pixmap.height() / r.height()
        src = QRectF((vis.left() - r.left()) * sx, (vis.top() - r.top()) * sy, vis.width() * sx, vis.height() * sy)
        qp.drawPixmap(vis, pixmap, src)

    def paintEvent(self, event) -> None:  # noqa: N802
        qp = QPainter(self)
        fg = self.palette().color(self.foregroundRole())
        if self._pixmap is None:
            qp.setPen(fg)
            qp.drawText(self.rect(), Qt.AlignCenter | Qt.TextWordWrap, self.placeholder)
            return
        v = self.view_rect()
        r = self.image_rect()
        # Smooth when shrinking or mildly enlarging; whole pixels as squares when inspecting detail.
        qp.setRenderHint(QPainter.SmoothPixmapTransform, self.shown_zoom() < 2.0)
        qp.save()
        qp.setClipRect(v)
        self._draw(qp, self._pixmap, r, v)
        if self.comparing:
            self._paint_compare(qp, r, v)
        self.paint_overlay(qp)
        qp.restore()
        if not self._fit:
            self._paint_badge(qp, f"{self.shown_zoom() * 100:.0f} %", v, Qt.AlignRight, bottom=True)
        if self.caption:
            qp.setPen(fg)
            text = qp.fontMetrics().elidedText(self.caption, Qt.ElideMiddle, max(10, self.width() - 8))
            qp.drawText(QRectF(0, self.height() - CAPTION_HEIGHT, self.width(), CAPTION_HEIGHT), Qt.AlignCenter, text)
        if self.hasFocus():
            qp.setPen(QPen(self.palette().color(self.palette().ColorRole.Highlight), 1, Qt.DotLine))
            qp.setBrush(Qt.NoBrush)
            qp.drawRect(QRectF(v).adjusted(0.5, 0.5, -0.5, -0.5))

    def _paint_compare(self, qp: QPainter, r: QRectF, v: QRectF) -> None:
        x = self.divider_x()
        left = QRectF(v.left(), v.top(), max(0.0, x - v.left()), v.height())
        self._draw(qp, self.compare_with, r, left)
        vis = r.intersected(v)
        top, bottom = vis.top(), vis.bottom()
        qp.setRenderHint(QPainter.Antialiasing, True)
        qp.setPen(QPen(QColor(0, 0, 0, 120), 4))
        qp.drawLine(QPointF(x, top), QPointF(x, bottom))
        qp.setPen(QPen(QColor(255, 255, 255), 2))
        qp.drawLine(QPointF(x, top), QPointF(x, bottom))
        # The knob: a white disc with arrows left and right, in the middle of the visible image.
        c = QPointF(x, (top + bottom) / 2)
        qp.setPen(QPen(QColor(0, 0, 0, 140), 1))
        qp.setBrush(QColor(255, 255, 255))
        qp.drawEllipse(c, 12, 12)
        arrows = QPainterPath()
        for sign in (-1, 1):
            tip = QPointF(c.x() + sign * 8, c.y())
            arrows.moveTo(tip)
            arrows.lineTo(c.x() + sign * 2, c.y() - 5)
            arrows.lineTo(c.x() + sign * 2, c.y() + 5)
            arrows.closeSubpath()
        qp.setPen(Qt.NoPen)
        qp.setBrush(QColor(60, 60, 70))
        qp.drawPath(arrows)
        before, after = self.compare_labels
        self._paint_badge(qp, before, QRectF(vis.left(), vis.top(), max(0.0, x - vis.left()), vis.height()),
                          Qt.AlignLeft)
        self._paint_badge(qp, after, QRectF(x, vis.top(), max(0.0, vis.right() - x), vis.height()), Qt.AlignRight)

    def _paint_badge(self, qp: QPainter, text: str, within: QRectF, align=Qt.AlignRight,
                     bottom: bool = False) -> None:
        fm = qp.fontMetrics()
        w, h = fm.horizontalAdvance(text) + 12, fm.height() + 4
        if within.width() < w + 8:
            return
        x = within.left() + 6 if align == Qt.AlignLeft else within.right() - w - 6
        box = QRectF(x, within.bottom() - h - 6 if bottom else within.top() + 6, w, h)
        qp.setPen(Qt.NoPen)
        qp.setBrush(QColor(0, 0, 0, 150))
        qp.drawRoundedRect(box, 4, 4)
        qp.setPen(QColor(255, 255, 255))
        qp.drawText(box, Qt.AlignCenter, text)

    def paint_overlay(self, qp: QPainter) -> None:
        pass

    # ---------------------------------------------------------------- input

    def wheelEvent(self, ev) -> None:  # noqa: N802
        if self._pixmap is None:
            ev.ignore()
            return
        delta = ev.angleDelta().y() or ev.angleDelta().x()
        if not delta:
            ev.ignore()
            return
        self.zoom_by(WHEEL_STEP ** (delta / 120.0), QPointF(ev.position()))
        ev.accept()

    def _begin(self, pos: QPointF, gesture: str) -> None:
        self._press, self._last, self._gesture, self._moved = QPointF(pos), QPointF(pos), gesture, False

    def mousePressEvent(self, ev) -> None:  # noqa: N802
        self.activated.emit()
        pos = QPointF(ev.position())
        if ev.button() == Qt.MiddleButton:
            self._begin(pos, "pan")
        elif ev.button() == Qt.LeftButton:
            self._begin(pos, "divider" if self._near_divider(pos) else self.press_gesture(pos))
        else:
            super().mousePressEvent(ev)
            return
        self._update_cursor(pos)
        ev.accept()

    def press_gesture(self, pos: QPointF) -> str:
        """What a left press at ``pos`` starts (subclasses add their own gestures)."""
        return "pan"

    def mouseMoveEvent(self, ev) -> None:  # noqa: N802
        pos = QPointF(ev.position())
        if self._gesture is None:
            self.hover(pos)
            return
        if not self._moved and (pos - self._press).manhattanLength() >= PAN_THRESHOLD:
            self._moved = True
        if self._moved:
            self.drag_to(self._gesture, pos, pos - self._last)
        self._last = pos

    def drag_to(self, gesture: str, pos: QPointF, delta: QPointF) -> None:
        if gesture == "pan":
            self.pan_by(delta.x(), delta.y())
        elif gesture == "divider":
            self.set_divider(pos.x() / max(1, self.width()))

    def mouseReleaseEvent(self, ev) -> None:  # noqa: N802
        gesture, moved = self._gesture, self._moved
        self._gesture = None
        if gesture is not None:
            self.release(gesture, QPointF(ev.position()), moved)
        self._update_cursor(QPointF(ev.position()))

    def release(self, gesture: str, pos: QPointF, moved: bool) -> None:
        pass

    def mouseDoubleClickEvent(self, ev) -> None:  # noqa: N802
        if ev.button() != Qt.LeftButton or self._pixmap is None or self._near_divider(QPointF(ev.position())):
            return
        if self._fit:
            self.set_zoom(1.0, QPointF(ev.position()))
        else:
            self.fit()

    def keyPressEvent(self, ev) -> None:  # noqa: N802
        if self.comparing and ev.key() in (Qt.Key_Left, Qt.Key_Right) and not ev.modifiers():
            step = 0.02 if ev.key() == Qt.Key_Right else -0.02
            self.set_divider(self.divider_x() / max(1, self.width()) + step)
            return
        super().keyPressEvent(ev)

    def hover(self, pos: QPointF) -> None:
        self._update_cursor(pos)

    def _update_cursor(self, pos: QPointF) -> None:
        if self._gesture == "pan":
            self.setCursor(Qt.ClosedHandCursor)
        elif self._gesture == "divider" or self._near_divider(pos):
            self.setCursor(Qt.SplitHCursor)
        elif not self._fit:
            self.setCursor(Qt.OpenHandCursor)
        else:
            self.unsetCursor()

    def enterEvent(self, ev) -> None:  # noqa: N802
        self.activated.emit()
        super().enterEvent(ev)

    def focusInEvent(self, ev) -> None:  # noqa: N802
        self.activated.emit()
        self.update()
        super().focusInEvent(ev)

    def focusOutEvent(self, ev) -> None:  # noqa: N802
        self.update()
        super().focusOutEvent(ev)


class PhotoView(ImageView):
    """The original photo with face boxes and the five alignment points, which can be dragged."""

    pointsEdited = Signal(object)  # np.ndarray [5,2] after a drag
    faceClicked = Signal(int)

    COLORS = [QColor(80, 200, 255), QColor(80, 200, 255), QColor(255, 220, 80), QColor(255, 120, 120),
              QColor(255, 120, 120)]
    HIT_RADIUS = 14  # px around a point that grab it

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Open a photo (Ctrl+O) or drop one here", parent)
        self.setAccessibleName("Photo")
        self.base_tooltip = ("Drag a point onto the eyes, nose tip or mouth corners to correct the alignment; "
                             "click a face box to edit that face.\n" + VIEW_HELP)
        self.setToolTip(self.base_tooltip)
        self.boxes: list[tuple[float, float, float, float]] = []
        self.active_face = 0
        self.points: np.ndarray | None = None
        self.approximate = False
        self._drag: int | None = None
        self._grab = (0.0, 0.0)  # image offset between the pointer and the dragged point
        self._face: int | None = None  # a face box pressed, chosen when released without a drag
        self._shown: np.ndarray | None = None

    def set_image(self, rgb: np.ndarray | None, caption: str = "") -> None:
        """Show a photo; another photo (even one of the same size) starts fitted to the view."""
        if rgb is not self._shown:
            self._fit = True
            self._image_size = (0, 0)
        self._shown = rgb
        super().set_image(rgb, caption)

    def set_overlay(self, boxes, active: int, points: np.ndarray | None, approximate: bool) -> None:
        self.boxes = [tuple(map(float, b)) for b in boxes]
        self.active_face = active
        self.points = None if points is None else np.array(points, dtype=np.float64)
        self.approximate = approximate
        self.update()

    def paint_overlay(self, qp: QPainter) -> None:
        qp.setRenderHint(QPainter.Antialiasing, True)
        for i, (x0, y0, x1, y1) in enumerate(self.boxes):
            a, b = self.to_widget(x0, y0), self.to_widget(x1, y1)
            pen = QPen(QColor(120, 255, 120) if i == self.active_face else QColor(200, 200, 200), 2)
            pen.setStyle(Qt.SolidLine if i == self.active_face else Qt.DashLine)
            qp.setPen(pen)
            qp.setBrush(Qt.NoBrush)
            qp.drawRect(QRectF(a, b))
        if self.points is None:
            return
        for i, (x, y) in enumerate(self.points):
            if not np.isfinite(x):
                continue
            p = self.to_widget(x, y)
            qp.setPen(QPen(QColor(0, 0, 0), 3 if i != self._drag else 2))
            qp.setBrush(self.COLORS[i])
            qp.drawEllipse(p, 5, 5)
            if i == self._drag:  # a cross-hair shows exactly where the point goes
                qp.setPen(QPen(QColor(255, 255, 255), 1))
                qp.drawLine(QPointF(p.x() - 10, p.y()), QPointF(p.x() + 10, p.y()))
                qp.drawLine(QPointF(p.x(), p.y() - 10), QPointF(p.x(), p.y() + 10))
        if self.approximate:
            text = "approximate points: drag them into place"
            r = self.image_rect().intersected(self.view_rect())
            box = qp.fontMetrics().boundingRect(text).adjusted(-6, -3, 6, 3)
            box.moveTopLeft(r.topLeft().toPoint() + QPointF(4, 4).toPoint())
            qp.fillRect(box, QColor(0, 0, 0, 170))
            qp.setPen(QColor(255, 200, 80))
            qp.drawText(box, Qt.AlignCenter, text)

    def _hit(self, pos: QPointF) -> int | None:
        if self.points is None or self._pixmap is None:
            return None
        best, best_d = None, float(self.HIT_RADIUS)
        for i, (x, y) in enumerate(self.points):
            if np.isfinite(x):
                d = math.dist((pos.x(), pos.y()), (self.to_widget(x, y).x(), self.to_widget(x, y).y()))
                if d < best_d:
                    best, best_d = i, d
        return best

    def _face_at(self, pos: QPointF) -> int | None:
        if len(self.boxes) < 2 or self._pixmap is None:
            return None
        x, y = self.to_image(pos)
        for i, (x0, y0, x1, y1) in enumerate(self.boxes):
            if x0 <= x <= x1 and y0 <= y <= y1 and i != self.active_face:
                return i
        return None

    def press_gesture(self, pos: QPointF) -> str:
        hit = self._hit(pos)
        if hit is not None:
            self._drag = hit
            x, y = self.to_image(pos)
            self._grab = (x - self.points[hit][0], y - self.points[hit][1])
            return "point"
        self._face = self._face_at(pos)
        return "pan"

    def drag_to(self, gesture: str, pos: QPointF, delta: QPointF) -> None:
        if gesture == "point" and self._drag is not None and self.points is not None:
            x, y = self.to_image(pos)
            self.points[self._drag] = (x - self._grab[0], y - self._grab[1])
            self.update()
        else:
            super().drag_to(gesture, pos, delta)

    def release(self, gesture: str, pos: QPointF, moved: bool) -> None:
        drag, face = self._drag, self._face
        self._drag, self._face = None, None
        if gesture == "point" and drag is not None and self.points is not None:
            self.update()
            if moved:  # a click on a point without moving it changes nothing
                self.pointsEdited.emit(self.points.copy())
        elif gesture == "pan" and not moved and face is not None:
            self.faceClicked.emit(face)

    def hover(self, pos: QPointF) -> None:
        hit = self._hit(pos)
        self.setToolTip(POINT_NAMES[hit] if hit is not None else self.base_tooltip)
        if hit is not None:
            self.setCursor(Qt.SizeAllCursor)
        elif self._face_at(pos) is not None:
            self.setCursor(Qt.PointingHandCursor)
        else:
            self._update_cursor(pos)

    def mouseDoubleClickEvent(self, ev) -> None:  # noqa: N802
        if self._hit(QPointF(ev.position())) is None:
            super().mouseDoubleClickEvent(ev)


__all__ = ["VIEW_HELP", "ImageView", "PhotoView", "to_qimage"]
