"""Undo commands: each changes the session (the model), never a widget; views follow its events."""

from __future__ import annotations

from hyperinverter_gui.app.session import EditSession


class SetValue:
    """One slider change (a whole drag is one command)."""

    def __init__(self, session: EditSession, name: str, old: float, new: float):
        self.session, self.name, self.old, self.new = session, name, float(old), float(new)
        self.text = f"{name} {self.old:+.2f} → {self.new:+.2f}"

    def redo(self) -> None:
        self.session.set_value(self.name, self.new)

    def undo(self) -> None:
        self.session.set_value(self.name, self.old)


class ResetValues:
    """Every slider back to 0."""

    def __init__(self, session: EditSession):
        self.session = session
        self.old = dict(session.values)
        self.text = "reset all sliders"

    def redo(self) -> None:
        self.session.set_values({})

    def undo(self) -> None:
        self.session.set_values(self.old)


class ApplyPreset:
    """Every slider set to a preset's values at once (sliders it does not name go back to 0)."""

    def __init__(self, session: EditSession, name: str, values: dict[str, float]):
        self.session = session
        self.old = dict(session.values)
        self.new = {n: float(v) for n, v in values.items() if v != 0}
        self.text = f"apply preset {name}"

    def redo(self) -> None:
        self.session.set_values(self.new)

    def undo(self) -> None:
        self.session.set_values(self.old)
