"""Presets in the editor: a row under the sliders and a Presets menu.

Save the current slider values under a name, apply one to the open photo (one undo step), delete
one, or apply one to a folder of photos (``batch_dialog``). The presets themselves are the
Qt-free ``app.presets.PresetStore``.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMenu,
    QMessageBox,
    QPushButton,
    QWidget,
)

from hyperinverter_gui.app.presets import (
    PresetError,
    PresetStore,
    describe,
    split_known,
)
from hyperinverter_gui.app.undo import ApplyPreset


def preset_values(window: Any, store: PresetStore, name: str) -> dict[str, float] | None:
    """The values of preset ``name`` that have a slider with the window's models (None: it cannot be
    read; the banner says why). Values without a slider are left out, and a notice says which."""
    try:
        values = store.get(name)
    except PresetError as e:
        window.show_error(str(e))
        return None
    known, unknown = split_known(values, window.directions)
    if unknown:
        window.show_notice(f"Preset {name!r}: {', '.join(unknown)} "
                           f"{'is' if len(unknown) == 1 else 'are'} not available with this generator "
                           "and was left out.")
    return known


class PresetsBar(QWidget):
    """``Preset [name ▾] Apply  Save…  Folder…`` — and the Presets menu, kept in step."""

    def __init__(self, window: Any, store: PresetStore | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.window = window
        self.store = store or PresetStore()
        self.menu: QMenu | None = None
        self.batch_dialog = None
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.addWidget(QLabel("Preset"))
        self.combo = QComboBox()
        self.combo.setMinimumContentsLength(10)
        self.combo.setAccessibleName("Preset")
        lay.addWidget(self.combo, 1)
        self.apply_button = QPushButton("Apply")
        self.apply_button.setToolTip("Set the sliders to this preset (one undo step)")
        self.apply_button.clicked.connect(lambda: self.apply(self.combo.currentText()))
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip("Save the current slider values as a preset")
        self.save_button.clicked.connect(self.save_dialog)
        self.folder_button = QPushButton("Folder…")
        self.folder_button.setToolTip("Apply a preset to a folder of photos: each is aligned, inverted, edited "
                                      "and exported")
        self.folder_button.clicked.connect(lambda: self.batch_dialog_open())
        for b in (self.apply_button, self.save_button, self.folder_button):
            lay.addWidget(b)
        self.reload()

    # ------------------------------------------------------------------ the list

    def names(self) -> list[str]:
        try:
            return self.store.names()
        except PresetError as e:
            self.window.show_error(str(e))
            return []

    def reload(self, select: str | None = None) -> None:
        names = self.names()
        current = select or self.combo.currentText()
        self.combo.clear()
        self.combo.addItems(names)
        if current in names:
            self.combo.setCurrentText(current)
        self.apply_button.setEnabled(bool(names))
        self._rebuild_menu()

    def add_menu(self, menubar) -> QMenu:
        """The Presets menu of the window (its entries follow the saved presets)."""
        self.menu = menubar.addMenu("&Presets")
        self.menu.aboutToShow.connect(self._rebuild_menu)
        self._rebuild_menu()
        return self.menu

    def _rebuild_menu(self) -> None:
        if self.menu is None:
            return
        self.menu.clear()
        self.menu.addAction("&Save sliders as preset…", self.save_dialog)
        names = self.names()
        apply_menu = self.menu.addMenu("&Apply preset")
        delete_menu = self.menu.addMenu("&Delete preset")
        for n in names:
            apply_menu.addAction(n, lambda n=n: self.apply(n))
            delete_menu.addAction(n, lambda n=n: self.delete_dialog(n))
        apply_menu.setEnabled(bool(names))
        delete_menu.setEnabled(bool(names))
        self.menu.addSeparator()
        self.menu.addAction("Apply preset to &folder…", lambda: self.batch_dialog_open())

    # ------------------------------------------------------------------ actions

    def save_as(self, name: str) -> dict[str, float] | None:
        """Save the session's slider values as ``name`` (replacing one of that name)."""
        try:
            values = self.store.save(name, self.window.session.values)
        except PresetError as e:
            self.window.show_error(str(e))
            return None
        self.reload(select=name.strip())
        self.window.statusBar().showMessage(f"preset {name.strip()!r} saved: {describe(values)}", 6000)
        return values

    def save_dialog(self) -> None:
        if not self.window.session.values:
            self.window.show_error("Every slider is at 0: move some sliders first, then save them as a preset.")
            return
        names = self.names()
        suggestion = self.combo.currentText() or f"Preset {len(names) + 1}"
        name, ok = QInputDialog.getText(self, "Save preset",
                                        f"Name for {describe(self.window.session.values)}:", text=suggestion)
        if not ok or not name.strip():
            return
        if name.strip() in names and QMessageBox.question(
                self, "Save preset", f"Replace the preset {name.strip()!r}?") != QMessageBox.Yes:
            return
        self.save_as(name)

    def apply(self, name: str) -> bool:
        """Set every slider to preset ``name`` as one undoable step. False if nothing changed."""
        from hyperinverter_gui._qt.main_window import UndoCommand

        if not name:
            return False
        known = preset_values(self.window, self.store, name)
        if known is None or known == self.window.session.values:
            return False
        self.window.undo_stack.push(UndoCommand(ApplyPreset(self.window.session, name, known)))
        self.window.statusBar().showMessage(f"preset {name!r}: {describe(known)}", 6000)
        return True

    def delete_dialog(self, name: str) -> None:
        if QMessageBox.question(self, "Delete preset", f"Delete the preset {name!r}?") != QMessageBox.Yes:
            return
        try:
            self.store.delete(name)
        except PresetError as e:
            self.window.show_error(str(e))
        self.reload()

    def batch_dialog_open(self, folder=None):
        """The "Apply preset to folder" dialog (one at a time; it stays open while it works)."""
        from hyperinverter_gui._qt.batch_dialog import BatchDialog

        if self.batch_dialog is None:
            self.batch_dialog = BatchDialog(self.window, self.store, self.window)
        self.batch_dialog.prepare(folder, self.combo.currentText())
        self.batch_dialog.show()
        self.batch_dialog.raise_()
        return self.batch_dialog
