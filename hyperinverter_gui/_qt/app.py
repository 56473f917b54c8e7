"""Starting the desktop editor."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def log_file() -> Path:
    from hyperinverter_gui.host.paths import log_file as path

    return path()


def setup_logging() -> Path | None:
    path = log_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        logging.basicConfig(
            filename=str(path), level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        return path
    except OSError:
        logging.basicConfig(level=logging.WARNING)
        return None


def apply_theme(theme: str) -> None:
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        return
    if theme == "dark":
        try:
            import qdarkstyle

            app.setStyleSheet(qdarkstyle.load_stylesheet(qt_api="pyside6"))
            return
        except Exception:  # noqa: BLE001 - the app works without the theme
            logging.getLogger(__name__).warning("qdarkstyle unavailable; using the default theme")
    app.setStyleSheet("")


def _splash():
    """A plain 'starting' window, shown before torch is imported (the window follows in seconds)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QColor, QPixmap
    from PySide6.QtWidgets import QApplication, QSplashScreen

    pixmap = QPixmap(460, 120)
    pixmap.fill(QColor("#19232d"))
    splash = QSplashScreen(pixmap)
    splash.showMessage("HyperInverter Studio\nstarting…", Qt.AlignCenter, QColor("#e0e1e3"))
    splash.show()
    QApplication.processEvents()
    return splash


def main(argv: list[str] | None = None, photo: str | None = None) -> int:
    """Open the editor (optionally with a photo)."""
    from hyperinverter_gui.host.allocator import keep_freed_memory

    keep_freed_memory()  # before any thread starts: frames reuse freed memory (no page faults)
    try:
        from PySide6.QtWidgets import QApplication
    except ImportError:
        print("error: the desktop editor needs PySide6: pip install PySide6-Essentials qdarkstyle", file=sys.stderr)
        return 2
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv)
    from hyperinverter_gui._qt.appicon import ICON_NAME, app_icon

    app.setWindowIcon(app_icon())  # the taskbar, the window switcher and every window's title bar
    app.setDesktopFileName(ICON_NAME)  # Wayland: pairs the windows with assets/hyperinverter-studio.desktop
    splash = _splash()  # torch and the models take seconds to load: say so at once
    path = setup_logging()
    logging.getLogger(__name__).info("starting; log file %s", path)

    def excepthook(exc_type, exc, tb):
        # Never a traceback dialog or a silent death: log it and tell the user in the error banner.
        from hyperinverter_gui.host.log import unexpected_message

        if exc is not None and exc.__traceback__ is None:
            exc = exc.with_traceback(tb)
        message = unexpected_message(exc, "handling that action")
        win = getattr(app, "main_window", None)
        if win is not None:
            win.show_error(message)
        else:
            print(f"error: {message}", file=sys.stderr)

    sys.excepthook = excepthook
    app.setApplicationName("HyperInverter Studio")
    app.setOrganizationName("HyperInverterStudio")
    from PySide6.QtCore import QSettings

    from hyperinverter_gui._qt.main_window import MainWindow

    settings = QSettings("HyperInverterStudio", "HyperInverterStudio")
    apply_theme(str(settings.value("theme", "dark")))
    win = MainWindow(settings)
    app.main_window = win
    win.show()
    splash.finish(win)
    if photo:
        win.open_photo(Path(photo))
    code = app.exec()
    win.shutdown()
    os.environ.pop("QT_QPA_PLATFORM", None)
    return code
