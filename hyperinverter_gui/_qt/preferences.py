"""Preferences: device, theme, preview resolution (stored with QSettings)."""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QFormLayout, QWidget


class PreferencesDialog(QDialog):
    def __init__(self, settings: QSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self.settings = settings
        form = QFormLayout(self)
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.device.setCurrentText(str(settings.value("device", "auto")))
        self.theme = QComboBox()
        self.theme.addItems(["dark", "light"])
        self.theme.setCurrentText(str(settings.value("theme", "dark")))
        self.preview = QComboBox()
        self.preview.addItems(["128", "256", "512"])
        self.preview.setCurrentText(str(settings.value("preview_resolution", 256)))
        self.precision = QComboBox()
        self.precision.addItems(["auto", "float32", "bfloat16"])
        self.precision.setCurrentText(str(settings.value("precision", "auto")))
        self.precision.setToolTip("auto: inversion and released frames in float32 (exact); the previews while "
                                  "dragging in bfloat16 where the CPU/GPU runs it natively (about 2x faster).\n"
                                  "bfloat16: inversion and all frames in bfloat16, for slower machines "
                                  "(PSNR about 40 dB against float32).\n"
                                  "Exports are always rendered in float32.")
        form.addRow("Compute device", self.device)
        form.addRow("Precision (sliders, inversion)", self.precision)
        form.addRow("Theme", self.theme)
        form.addRow("Preview resolution while dragging", self.preview)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.device_changed = False

    def accept(self) -> None:
        self.device_changed = (self.device.currentText() != str(self.settings.value("device", "auto"))
                               or self.precision.currentText() != str(self.settings.value("precision", "auto")))
        self.settings.setValue("device", self.device.currentText())
        self.settings.setValue("precision", self.precision.currentText())
        self.settings.setValue("theme", self.theme.currentText())
        self.settings.setValue("preview_resolution", int(self.preview.currentText()))
        super().accept()
