"""Reusable widgets: image views (zoom, pan, swipe compare, landmark overlay) and the slider panel.

The views live in ``zoom_view.py`` and the sliders in ``sliders.py``; this module keeps the names
the windows import.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QHBoxLayout, QWidget

from hyperinverter_gui._qt.sliders import FineSlider, SliderPanel
from hyperinverter_gui._qt.zoom_view import VIEW_HELP, ImageView, PhotoView, to_qimage


def hbox(*widgets, stretch_last: bool = False) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    for x in widgets:
        lay.addWidget(x)
    if stretch_last:
        lay.addStretch(1)
    return w


__all__ = ["VIEW_HELP", "FineSlider", "ImageView", "PhotoView", "QEvent", "SliderPanel", "hbox", "to_qimage"]
