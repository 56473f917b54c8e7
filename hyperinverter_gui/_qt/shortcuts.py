"""Keyboard shortcuts in the Help menu and in tooltips, and accessible names for every control.

- :func:`shortcut_rows` lists every menu action that has a shortcut (read from the menus, so a
  new action appears by itself) plus the keys and mouse gestures of the sliders and image views;
  :class:`ShortcutsDialog` shows them (Help ▸ Keyboard shortcuts, F1).
- :func:`add_shortcut_tooltips` puts each action's shortcut into its tooltip ("Open photo…
  (Ctrl+O)"), which toolbar buttons show.
- :func:`name_unnamed_widgets` gives each interactive widget that has no accessible name one
  taken from its label, text, placeholder or tooltip; :func:`unnamed_widgets` lists those that
  still have none (the tests keep it empty).
"""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSlider,
    QAbstractSpinBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPlainTextEdit,
    QScrollBar,
    QTabBar,
    QTableWidget,
    QTableWidgetItem,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from hyperinverter_gui._qt.zoom_view import ImageView

#: keys and gestures that are not menu actions: (where, keys, what they do)
GESTURES: list[tuple[str, str, str]] = [
    ("Photo and result", "Wheel", "zoom in or out around the pointer"),
    ("Photo and result", "Drag, or middle-button drag", "pan a zoomed image"),
    ("Photo and result", "Double-click", "fit ↔ 100 %"),
    ("Photo", "Drag a point", "move an alignment point (the face is aligned and inverted again)"),
    ("Photo", "Click a dashed box", "edit that face"),
    ("Result", "Space (hold)", "show the photo (before)"),
    ("Result, swipe compare", "Drag the divider, or ← / → with the view focused", "move the divider"),
    ("Sliders", "Drag anywhere on the track", "change the value (a click without moving keeps it)"),
    ("Sliders", "Shift+drag", "10× finer"),
    ("Sliders", "Wheel, ← / →", "one step (Shift: a tenth of a step; Ctrl+wheel: a big step)"),
    ("Sliders", "Page Up / Page Down", "a big step (10 steps)"),
    ("Sliders", "Double-click, Delete, ↺", "reset to 0"),
    ("Sliders", "Type in the value box, Enter", "set an exact value"),
]


def shortcut_text(action: QAction) -> str:
    """The action's shortcuts as the user types them ('Ctrl+Shift+Z, Ctrl+Y')."""
    return ", ".join(s.toString(QKeySequence.NativeText) for s in action.shortcuts() if not s.isEmpty())


def _plain(text: str) -> str:
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&").replace("…", "").strip()


def _walk(menu: QMenu, path: str):
    for a in menu.actions():
        if a.isSeparator():
            continue
        if a.menu() is not None:
            yield from _walk(a.menu(), f"{path} ▸ {_plain(a.text())}")
        else:
            yield path, a


def menu_actions(window) -> list[tuple[str, QAction]]:
    """(menu path, action) for every action in the window's menu bar."""
    out = []
    for top in window.menuBar().actions():
        if top.menu() is not None:
            out.extend(_walk(top.menu(), _plain(top.text())))
    return out


def shortcut_rows(window) -> list[tuple[str, str, str]]:
    """(where, keys, what) for every menu shortcut, then the gestures of the views and sliders."""
    rows = [(path, shortcut_text(a), _what(a)) for path, a in menu_actions(window) if shortcut_text(a)]
    return rows + GESTURES


def _what(action: QAction) -> str:
    text = _plain(action.text())
    for word in ("Undo", "Redo"):  # the undo stack's actions name the next step: "Undo smile +0.00 → 1.20"
        if text.startswith(word + " ") or text == word:
            return f"{word} the last {'undone ' if word == 'Redo' else ''}edit"
    return text


def add_shortcut_tooltips(actions) -> None:
    """Tooltips that name the shortcut: 'Open photo (Ctrl+O)'."""
    for a in actions:
        keys = shortcut_text(a)
        if keys:
            a.setToolTip(f"{_plain(a.text())} ({keys})")


class ShortcutsDialog(QDialog):
    """Help ▸ Keyboard shortcuts: a table of every shortcut and gesture."""

    def __init__(self, window, parent: QWidget | None = None):
        super().__init__(parent or window)
        self.setWindowTitle("Keyboard shortcuts")
        self.setAccessibleName("Keyboard shortcuts")
        rows = shortcut_rows(window)
        lay = QVBoxLayout(self)
        self.table = QTableWidget(len(rows), 3)
        self.table.setAccessibleName("Shortcuts")
        self.table.setHorizontalHeaderLabels(["Where", "Keys", "Does"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setWordWrap(False)
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(text))
        head = self.table.horizontalHeader()
        head.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        head.setSectionResizeMode(1, QHeaderView.ResizeToContents)
        head.setSectionResizeMode(2, QHeaderView.Stretch)
        lay.addWidget(self.table)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.Close).setAccessibleName("Close")
        lay.addWidget(buttons)
        self.resize(760, 520)


# ---------------------------------------------------------------------- accessible names

INTERACTIVE = (QAbstractButton, QComboBox, QAbstractSpinBox, QAbstractSlider, QLineEdit, QTabBar, QTextEdit,
               QPlainTextEdit, QAbstractItemView, ImageView)


def interactive_widgets(root: QWidget) -> list[QWidget]:
    """The controls under ``root`` a user can operate (not Qt's own parts of other controls)."""
    out = []
    for w in root.findChildren(QWidget):
        if not isinstance(w, INTERACTIVE) or isinstance(w, QScrollBar):
            continue
        if w.objectName().startswith("qt_"):
            continue  # Qt's internals: tab scrollers, toolbar extension, spin-box editors
        if _inside(w, (QAbstractSpinBox, QComboBox, QTabBar, QAbstractItemView, QHeaderView)):
            continue  # a part of another control (a combo box's list, a spin box's editor)
        out.append(w)
    return out


def _inside(w: QWidget, kinds: tuple) -> bool:
    p = w.parentWidget()
    while p is not None:
        if isinstance(p, kinds):
            return True
        p = p.parentWidget()
    return False


def _label_before(w: QWidget) -> str:
    """The text of the label just before ``w`` in its layout ("frames [16]"), as a sighted user reads it."""
    parent = w.parentWidget()
    if parent is None or parent.layout() is None:
        return ""
    stack = [parent.layout()]
    while stack:
        lay = stack.pop()
        for i in range(lay.count()):
            item = lay.itemAt(i)
            if item.layout() is not None:
                stack.append(item.layout())
            elif item.widget() is w and i > 0:
                before = lay.itemAt(i - 1).widget()
                if isinstance(before, QLabel) and _has_words(before.text()):
                    return _plain(before.text())
                return ""
    return ""


def _has_words(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def _buddy_texts(root: QWidget) -> dict[int, str]:
    return {id(lab.buddy()): _plain(lab.text()) for lab in root.findChildren(QLabel)
            if lab.buddy() is not None and _has_words(lab.text())}


def accessible_name(w: QWidget, buddies: dict[int, str] | None = None) -> str:
    """The name a screen reader says: the accessible name, a button's words, or its label's text."""
    if w.accessibleName().strip():
        return w.accessibleName().strip()
    if isinstance(w, QAbstractButton) and _has_words(w.text()):
        return _plain(w.text())
    if buddies is not None and buddies.get(id(w)):
        return buddies[id(w)]
    return ""


def name_unnamed_widgets(root: QWidget) -> int:
    """Give each nameless control a name from its label, placeholder, tooltip or object name."""
    buddies = _buddy_texts(root)
    named = 0
    for w in interactive_widgets(root):
        if accessible_name(w, buddies):
            continue
        text = buddies.get(id(w), "")
        if not text and isinstance(w, QLineEdit):
            text = w.placeholderText()
        if not text and isinstance(w, QAbstractButton) and w.defaultAction() is not None:
            text = _plain(w.defaultAction().text())
        if not text:
            text = _label_before(w)
        if not text and w.toolTip():
            text = w.toolTip().splitlines()[0][:80]
        if not text and w.objectName():
            text = w.objectName().replace("_", " ")
        if text:
            w.setAccessibleName(_plain(text))
            named += 1
    return named


def unnamed_widgets(root: QWidget) -> list[QWidget]:
    buddies = _buddy_texts(root)
    return [w for w in interactive_widgets(root) if not accessible_name(w, buddies)]


__all__ = ["GESTURES", "ShortcutsDialog", "accessible_name", "add_shortcut_tooltips", "interactive_widgets",
           "menu_actions", "name_unnamed_widgets", "shortcut_rows", "shortcut_text", "unnamed_widgets"]
