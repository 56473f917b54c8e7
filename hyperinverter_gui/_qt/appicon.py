"""The application's icon (drawn for this project: assets/hyperinverter-studio.svg).

The PNG sizes and the SVG ship inside the package (``_qt/icons``, package data) and are read with
importlib.resources, so a checkout, a wheel and pipx all find them. Sizes from 16 to 512 px let
Qt and the window manager pick a sharp one at any scaling (a 32 px title-bar icon at 200 % uses
the 64 px image). The SVG is for desktop installs (assets/install-desktop-entry.sh).
"""

from __future__ import annotations

from importlib import resources

from PySide6.QtGui import QIcon, QPixmap

ICON_NAME = "hyperinverter-studio"  # also the .desktop file's Icon= and desktop file name
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)

_icon: QIcon | None = None


def icon_files() -> dict[int | str, object]:
    """The packaged icon files: {size: Traversable} and "svg"."""
    folder = resources.files("hyperinverter_gui._qt") / "icons"
    files: dict[int | str, object] = {n: folder / f"{ICON_NAME}-{n}.png" for n in SIZES}
    files["svg"] = folder / f"{ICON_NAME}.svg"
    return {k: f for k, f in files.items() if f.is_file()}


def app_icon() -> QIcon:
    """The window and application icon (built once; needs a QGuiApplication)."""
    global _icon
    if _icon is None:
        icon = QIcon()
        for key, f in icon_files().items():
            pixmap = QPixmap()
            if key != "svg" and pixmap.loadFromData(f.read_bytes(), "PNG"):
                icon.addPixmap(pixmap)
        _icon = icon
    return _icon


__all__ = ["ICON_NAME", "app_icon", "icon_files"]
