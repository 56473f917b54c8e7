"""Render the app icon's PNG sizes from assets/hyperinverter-studio.svg (run from the checkout root).

    QT_QPA_PLATFORM=offscreen python3 assets/make_icons.py

Writes hyperinverter_gui/_qt/icons/hyperinverter-studio.svg and hyperinverter-studio-<N>.png,
which the app loads (package data) and assets/install-desktop-entry.sh installs.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "assets" / "hyperinverter-studio.svg"
OUT = ROOT / "hyperinverter_gui" / "_qt" / "icons"


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv)  # noqa: F841 - needed by QPainter
    renderer = QSvgRenderer(str(SOURCE))
    if not renderer.isValid():
        print(f"error: {SOURCE} is not a valid SVG", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SOURCE, OUT / SOURCE.name)
    for n in SIZES:
        img = QImage(n, n, QImage.Format_ARGB32_Premultiplied)
        img.fill(Qt.transparent)
        qp = QPainter(img)
        qp.setRenderHint(QPainter.Antialiasing)
        renderer.render(qp, QRectF(0, 0, n, n))
        qp.end()
        path = OUT / f"hyperinverter-studio-{n}.png"
        img.save(str(path), "PNG")
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
