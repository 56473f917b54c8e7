"""The edit sliders: one full-width slider per direction, made for hands.

Each direction gets a row: its name, a box where a value can be typed and a ↺ reset button on
one line, and the slider below them across the whole width of the panel. :class:`FineSlider`
replaces QSlider's mouse handling:

- a drag moves the value by as much as the pointer moves along the track (the handle follows the
  pointer), wherever on the track it starts; a click that does not move changes nothing (no jump
  to the clicked spot); Shift while dragging is 10× finer, and pressing or letting go of Shift
  mid-drag continues from where the handle is;
- the wheel steps by the direction's step (Shift: a tenth of it, Ctrl: a big step), arrow keys
  step, Page Up/Down take big steps, Delete resets; a double-click resets.

Signals are QSlider's: ``sliderPressed`` when a drag starts (after the pointer has moved a few
pixels), ``valueChanged`` on each move, ``sliderReleased`` at its end; keys, the wheel and the
value box change the value without pressing the slider, which the window records as one undo
step each.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, QRect, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QLabel,
    QSizePolicy,
    QSlider,
    QStyle,
    QStyleOptionSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

FINE = 0.1  # Shift: ten times finer
DEAD_ZONE = 3  # px the pointer moves before a press becomes a drag
PAGE_STEPS = 10  # Page Up/Down = this many steps
MIN_PANEL_WIDTH = 250  # px: each track stays wider than 200 px

SLIDER_HELP = ("Drag anywhere on the track (Shift+drag: 10× finer) · wheel or ←/→: one step "
               "(Shift+wheel: a tenth) · Page Up/Down: {page} · double-click, Delete or ↺: reset to 0")


class FineSlider(QSlider):
    """A horizontal slider dragged relative to where the press was, with fine control (see the module)."""

    doubleClicked = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(Qt.Horizontal, parent)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setTracking(True)
        self.setMinimumWidth(120)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self._anchor_x: float | None = None  # pointer x the current drag is measured from
        self._last_x = 0.0  # the pointer's x at the previous event of the drag
        self._anchor_value = 0.0
        self._exact = 0.0  # the drag's value before rounding to the slider's integer steps
        self._fine = False
        self._dragging = False
        self._wheel_rest = 0

    # ------------------------------------------------------------ geometry

    def _option(self) -> QStyleOptionSlider:
        opt = QStyleOptionSlider()
        self.initStyleOption(opt)
        return opt

    def groove_rect(self) -> QRect:
        return self.style().subControlRect(QStyle.CC_Slider, self._option(), QStyle.SC_SliderGroove, self)

    def handle_rect(self) -> QRect:
        return self.style().subControlRect(QStyle.CC_Slider, self._option(), QStyle.SC_SliderHandle, self)

    def handle_center(self) -> QPoint:
        """Where the handle is drawn now, in widget coordinates."""
        return self.handle_rect().center()

    def track_length(self) -> int:
        """Pixels the handle's centre travels from the minimum to the maximum."""
        return max(1, self.groove_rect().width() - self.handle_rect().width())

    def units_per_pixel(self) -> float:
        return (self.maximum() - self.minimum()) / self.track_length()

    def _x_of(self, value: int) -> float:
        g, h = self.groove_rect(), self.handle_rect()
        pos = QStyle.sliderPositionFromValue(self.minimum(), self.maximum(), value, self.track_length())
        return g.left() + h.width() / 2 + pos

    # ------------------------------------------------------------ mouse

    def mousePressEvent(self, ev) -> None:  # noqa: N802
        if ev.button() != Qt.LeftButton:
            ev.ignore()
            return
        self.setFocus(Qt.MouseFocusReason)
        self._anchor_x = self._last_x = ev.position().x()
        self._anchor_value = self._exact = float(self.value())
        self._fine = bool(ev.modifiers() & Qt.ShiftModifier)
        self._dragging = False
        ev.accept()

    def mouseMoveEvent(self, ev) -> None:  # noqa: N802
        if self._anchor_x is None:
            ev.ignore()
            return
        x = ev.position().x()
        fine = bool(ev.modifiers() & Qt.ShiftModifier)
        if fine != self._fine:  # Shift pressed or let go mid-drag: go on from here, no jump
            self._anchor_x, self._anchor_value, self._fine = self._last_x, self._exact, fine
        self._last_x = x
        dx = x - self._anchor_x
        if not self._dragging:
            if abs(dx) < DEAD_ZONE:
                return
            self._dragging = True
            self.setSliderDown(True)  # emits sliderPressed
        value = self._anchor_value + dx * self.units_per_pixel() * (FINE if fine else 1.0)
        self._exact = min(max(value, float(self.minimum())), float(self.maximum()))
        self.setValue(int(round(self._exact)))
        ev.accept()

    def mouseReleaseEvent(self, ev) -> None:  # noqa: N802
        if self._anchor_x is None:
            ev.ignore()
            return
        dragging = self._dragging
        self._anchor_x, self._dragging = None, False
        if dragging:
            self.setSliderDown(False)  # emits sliderReleased
        ev.accept()

    def mouseDoubleClickEvent(self, ev) -> None:  # noqa: N802
        if ev.button() == Qt.LeftButton:
            self.doubleClicked.emit()
        ev.accept()

    # ------------------------------------------------------------ wheel and keys

    def fine_step(self) -> int:
        return max(1, int(round(self.singleStep() * FINE)))

    def wheelEvent(self, ev) -> None:  # noqa: N802
        if self._anchor_x is not None:
            ev.accept()
            return
        delta = ev.angleDelta().y() or ev.angleDelta().x()
        self._wheel_rest += delta
        notches = int(self._wheel_rest / 120)  # trackpads send small deltas: add them up
        if notches:
            self._wheel_rest -= notches * 120
            mods = ev.modifiers()
            if mods & Qt.ControlModifier:
                step = self.pageStep()
            elif mods & Qt.ShiftModifier:
                step = self.fine_step()
            else:
                step = self.singleStep()
            self.setValue(self.value() + notches * step)
        ev.accept()

    def keyPressEvent(self, ev) -> None:  # noqa: N802
        key, mods = ev.key(), ev.modifiers()
        if key in (Qt.Key_Delete, Qt.Key_Backspace):
            self.doubleClicked.emit()
            return
        if key in (Qt.Key_Left, Qt.Key_Right, Qt.Key_Down, Qt.Key_Up) and mods & Qt.ShiftModifier:
            sign = 1 if key in (Qt.Key_Right, Qt.Key_Up) else -1
            self.setValue(self.value() + sign * self.fine_step())
            return
        super().keyPressEvent(ev)

    # ------------------------------------------------------------ painting

    def paintEvent(self, ev) -> None:  # noqa: N802
        super().paintEvent(ev)
        if self.minimum() < 0 < self.maximum() and self.value() != 0:  # a mark on the track where 0 is
            qp = QPainter(self)
            color = QColor(self.palette().color(self.foregroundRole()))
            color.setAlpha(170 if self.isEnabled() else 70)
            qp.setPen(QPen(color, 2))
            x = round(self._x_of(0))
            mid = self.handle_rect().center().y()
            qp.drawLine(QPointF(x, mid - 5), QPointF(x, mid + 5))


class ValueBox(QDoubleSpinBox):
    """The number beside a slider: shows the sign ("+1.50"), takes a typed value on Enter (numbers
    outside the slider's range cannot be typed)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setDecimals(2)
        self.setKeyboardTracking(False)  # a typed number counts on Enter (or leaving the box)
        self.setCorrectionMode(QAbstractSpinBox.CorrectToNearestValue)  # "-" alone + Enter: the nearest value
        self.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
        # As wide as its longest value in the current style (a style sheet's padding included).
        self.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Fixed)

    def textFromValue(self, value: float) -> str:  # noqa: N802
        return f"{value:+.2f}" if round(value, 2) else "0.00"


def direction_description(d) -> str:
    """What a direction does, from its manifest (``description``) or from its kind."""
    text = getattr(d, "description", "") or (d.meta or {}).get("description", "")
    if text:
        return str(text)
    label = (d.label or d.name).lower()
    if d.kind == "ganspace":
        comp = (d.meta or {}).get("component")
        which = f"principal component {comp}" if comp is not None else "a principal component"
        return f"Changes {label}: GANSpace {which} of the generator's W space, in standard deviations."
    if d.kind == "interfacegan":
        return f"Changes {label}: an InterFaceGAN direction (a linear attribute boundary in W space)."
    return f"Changes {label} ({d.kind} direction)."


def ws_text(d, num_ws: int | None) -> str:
    """Which ws (StyleGAN's per-layer codes) the direction moves, e.g. 'ws 0–17 (all 18)'."""
    stop = d.layer_stop if d.layer_stop is not None else num_ws
    if stop is None:
        return f"ws {d.layer_start}–last" if d.layer_start else "all ws"
    text = f"ws {d.layer_start}–{stop - 1}"
    if num_ws is not None:
        text += f" (all {num_ws})" if d.layer_start == 0 and stop == num_ws else f" of 0–{num_ws - 1}"
    hint = _ws_hint(d.layer_start, stop, num_ws)
    return f"{text}{hint}"


def _ws_hint(start: int, stop: int, num_ws: int | None) -> str:
    if num_ws is None or (start == 0 and stop == num_ws):
        return ""
    if stop <= num_ws * 4 // 18 + 1:
        return ": coarse layers (pose, face shape)"
    if start >= num_ws * 8 // 18:
        return ": fine layers (colour, texture)"
    return ": middle layers (features, expression)"


def slider_tooltip(d, num_ws: int | None, page: float) -> str:
    label = d.label or d.name
    keys = SLIDER_HELP.format(page=f"±{page:g}")
    return f"{label}\n{direction_description(d)}\nTouches {ws_text(d, num_ws)}.\n{keys}"


class SliderPanel(QWidget):
    """One slider per direction, grouped; emits value changes and drag start/end."""

    valueChanged = Signal(str, float)  # name, value (every move)
    dragStarted = Signal(str)
    dragFinished = Signal(str, float)
    resetRequested = Signal(str)

    STEPS_PER_UNIT = 100

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumWidth(MIN_PANEL_WIDTH)
        self.layout_ = QVBoxLayout(self)
        self.layout_.setContentsMargins(4, 4, 4, 4)
        self.sliders: dict[str, FineSlider] = {}
        self.value_boxes: dict[str, ValueBox] = {}
        self.value_labels = self.value_boxes  # the older name
        self.reset_buttons: dict[str, QToolButton] = {}
        self.name_labels: dict[str, QLabel] = {}
        self.empty = QLabel("No edit directions yet.\nPut direction files in directions/ (see directions/README.md).")
        self.empty.setWordWrap(True)
        self.layout_.addWidget(self.empty)
        self.layout_.addStretch(1)
        self._updating = False
        self._enabled = True

    def set_directions(self, directions: dict, num_ws: int | None = None) -> None:
        """Build one row per direction (``num_ws``: the generator's, for the tooltips)."""
        while self.layout_.count():
            item = self.layout_.takeAt(0)
            if item.widget() is not None and item.widget() is not self.empty:
                item.widget().deleteLater()
        for d in (self.sliders, self.value_boxes, self.reset_buttons, self.name_labels):
            d.clear()
        groups: dict[str, list] = {}
        for d in directions.values():
            groups.setdefault(d.group or "Directions", []).append(d)
        self.empty.setVisible(not directions)
        self.layout_.addWidget(self.empty)
        for group, items in groups.items():
            box = QGroupBox(group)
            grid = QGridLayout(box)
            grid.setContentsMargins(6, 6, 6, 6)
            grid.setHorizontalSpacing(4)
            grid.setVerticalSpacing(0)
            grid.setColumnStretch(0, 1)
            for i, d in enumerate(items):
                self._add_row(grid, 2 * i, d, num_ws)
            self.layout_.addWidget(box)
        self.layout_.addStretch(1)
        self.set_enabled(self._enabled)

    def _add_row(self, grid: QGridLayout, row: int, d, num_ws: int | None) -> None:
        name, label = d.name, d.label or d.name
        lo, hi = d.value_range
        step = max(1, int(round(d.step * self.STEPS_PER_UNIT)))
        s = FineSlider()
        s.setObjectName(f"slider_{name}")
        s.setRange(int(round(lo * self.STEPS_PER_UNIT)), int(round(hi * self.STEPS_PER_UNIT)))
        s.setSingleStep(step)
        s.setPageStep(step * PAGE_STEPS)
        s.setValue(0)
        tip = slider_tooltip(d, num_ws, step * PAGE_STEPS / self.STEPS_PER_UNIT)
        s.setToolTip(tip)
        s.setAccessibleName(f"{label} slider")
        s.setAccessibleDescription(tip)

        title = QLabel(label)
        title.setToolTip(tip)
        title.setBuddy(s)
        title.setMinimumWidth(40)
        title.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # elided rather than widening the panel

        box = ValueBox()
        box.setObjectName(f"value_{name}")
        box.setRange(lo, hi)
        box.setSingleStep(d.step)
        box.setValue(0.0)
        box.setToolTip(f"{label}: type a value from {lo:g} to {hi:g} and press Enter")
        box.setAccessibleName(f"{label} value")

        reset = QToolButton()
        reset.setObjectName(f"reset_{name}")
        reset.setText("↺")
        reset.setAutoRaise(True)
        reset.setToolTip(f"Reset {label} to 0 (or double-click the slider, or Delete)")
        reset.setAccessibleName(f"Reset {label}")

        s.valueChanged.connect(lambda v, n=name: self._moved(n, v))
        s.sliderPressed.connect(lambda n=name: self.dragStarted.emit(n))
        s.sliderReleased.connect(lambda n=name: self.dragFinished.emit(n, self.value(n)))
        s.doubleClicked.connect(lambda n=name: self.resetRequested.emit(n))
        reset.clicked.connect(lambda _=False, n=name: self.resetRequested.emit(n))
        box.valueChanged.connect(lambda v, n=name: self._typed(n, v))

        grid.addWidget(title, row, 0)
        grid.addWidget(box, row, 1)
        grid.addWidget(reset, row, 2)
        grid.addWidget(s, row + 1, 0, 1, 3)
        if row:
            grid.setRowMinimumHeight(row, title.sizeHint().height() + 8)
        self.sliders[name] = s
        self.value_boxes[name] = box
        self.reset_buttons[name] = reset
        self.name_labels[name] = title

    def value(self, name: str) -> float:
        return self.sliders[name].value() / self.STEPS_PER_UNIT

    def _show_number(self, name: str, value: float) -> None:
        box = self.value_boxes[name]
        box.blockSignals(True)
        try:
            box.setValue(value)
        finally:
            box.blockSignals(False)

    def _moved(self, name: str, v: int) -> None:
        value = v / self.STEPS_PER_UNIT
        self._show_number(name, value)
        if not self._updating:
            self.valueChanged.emit(name, value)

    def _typed(self, name: str, value: float) -> None:
        if not self._updating:
            self.sliders[name].setValue(int(round(value * self.STEPS_PER_UNIT)))

    def show_value(self, name: str, value: float) -> None:
        """Set a slider from the model without emitting valueChanged."""
        if name not in self.sliders:
            return
        self._updating = True
        try:
            self.sliders[name].setValue(int(round(value * self.STEPS_PER_UNIT)))
            self._show_number(name, value)
        finally:
            self._updating = False

    def set_enabled(self, enabled: bool) -> None:
        self._enabled = enabled
        for group in (self.sliders, self.value_boxes, self.reset_buttons):
            for w in group.values():
                w.setEnabled(enabled)


__all__ = ["FineSlider", "SliderPanel", "ValueBox", "direction_description", "slider_tooltip", "ws_text"]
