"""Presets: named slider settings ({direction name: value}), kept in the per-user data folder.

The file is JSON (``presets.json`` in ``host.paths.user_data_dir()``), written atomically, and read
again before each change so two editors open at once do not undo each other's presets. Applying a
preset replaces every slider value (a slider the preset does not name goes back to 0); names the
loaded directions do not know are left out and reported.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

from hyperinverter_gui.errors import HyperInverterError

PRESETS_FORMAT = "hyperinverter-gui/presets/1"
PRESETS_FILE = "presets.json"


class PresetError(HyperInverterError):
    """A preset cannot be saved, read or applied; the message says why."""


def presets_path() -> Path:
    from hyperinverter_gui.host.paths import user_data_dir

    return user_data_dir() / PRESETS_FILE


def _clean(values: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for name, v in values.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise PresetError(f"slider {name}: {v!r} is not a number") from None
        if not math.isfinite(f):
            raise PresetError(f"slider {name}: {v} is not a number")
        if f != 0:
            out[str(name)] = f
    return dict(sorted(out.items()))


class PresetStore:
    """The saved presets (a JSON file; ``path`` defaults to the per-user one)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else presets_path()

    def _read(self) -> dict[str, dict[str, float]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise PresetError(f"cannot read the presets in {self.path}: {e.strerror or e}") from None
        try:
            data = json.loads(text)
            if data.get("format") != PRESETS_FORMAT:
                raise ValueError(f"unknown format {data.get('format')!r}")
            return {str(n): _clean(v) for n, v in data["presets"].items()}
        except (ValueError, KeyError, AttributeError, TypeError, PresetError) as e:
            raise PresetError(
                f"the presets file {self.path} is damaged ({e}); move it away to start afresh"
            ) from None

    def _write(self, presets: dict[str, dict[str, float]]) -> None:
        from hyperinverter_gui.media.atomic import atomic_write

        text = json.dumps({"format": PRESETS_FORMAT, "presets": dict(sorted(presets.items()))}, indent=2)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), ".json")
        except OSError as e:
            raise PresetError(f"cannot save the presets in {self.path}: {e.strerror or e}") from None

    def all(self) -> dict[str, dict[str, float]]:
        return self._read()

    def names(self) -> list[str]:
        return sorted(self._read(), key=str.casefold)

    def get(self, name: str) -> dict[str, float]:
        presets = self._read()
        if name not in presets:
            raise PresetError(f"there is no preset named {name!r}")
        return dict(presets[name])

    def save(self, name: str, values: Mapping[str, float]) -> dict[str, float]:
        """Save (or replace) preset ``name``; returns the values stored (zeros dropped)."""
        name = name.strip()
        if not name:
            raise PresetError("a preset needs a name")
        clean = _clean(values)
        if not clean:
            raise PresetError("every slider is at 0: there is nothing to save as a preset")
        presets = self._read()
        presets[name] = clean
        self._write(presets)
        return clean

    def delete(self, name: str) -> None:
        presets = self._read()
        if presets.pop(name, None) is None:
            raise PresetError(f"there is no preset named {name!r}")
        self._write(presets)


def split_known(values: Mapping[str, float], available: Mapping[str, object]) -> tuple[dict[str, float],
                                                                                         list[str]]:
    """(the values of sliders that exist here, the names that do not)."""
    known = {n: float(v) for n, v in values.items() if n in available}
    return known, sorted(n for n in values if n not in available)


def describe(values: Mapping[str, float]) -> str:
    return ", ".join(f"{n}={v:+g}" for n, v in sorted(values.items())) or "no edits"
