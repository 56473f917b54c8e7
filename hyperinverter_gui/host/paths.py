"""Where the app keeps things on this machine: per-user folders, and a source checkout's drop folders.

User data (downloaded models and direction files, checksums) goes to the platform's per-user
data folder, caches and logs to its cache folder. When the package runs from a source checkout
(``pip install -e .`` or ``python main.py``), the checkout's ``weights/`` and ``directions/``
folders are searched first, as drop folders. Nothing here depends on the package being a
checkout: an installed wheel works with the per-user folders alone.

Environment overrides: ``HYPERINVERTER_WEIGHTS`` (replaces the checkout's weights folder),
``HYPERINVERTER_USER_WEIGHTS``, ``HYPERINVERTER_DIRECTIONS``, ``HYPERINVERTER_USER_DIRECTIONS``,
``HYPERINVERTER_CACHE`` (a folder, or ``off``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "hyperinverter-studio"
_CACHE_OFF = ("off", "0", "none")


def _platform_dir(kind: str) -> Path:
    """The per-user folder of ``kind`` ("data" or "cache") for this app, by platform convention."""
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", home / "AppData" / "Local"))
        return base / APP_NAME / ("Cache" if kind == "cache" else "")
    if sys.platform == "darwin":
        return home / "Library" / ("Caches" if kind == "cache" else "Application Support") / APP_NAME
    env = "XDG_CACHE_HOME" if kind == "cache" else "XDG_DATA_HOME"
    default = home / (".cache" if kind == "cache" else ".local/share")
    return Path(os.environ.get(env) or default) / APP_NAME


def checkout_root() -> Path | None:
    """The source checkout the package runs from, or None for an installed package.

    A checkout is recognised by the project's ``pyproject.toml`` beside the package folder
    (site-packages never has one there).
    """
    root = Path(__file__).resolve().parent.parent.parent
    marker = root / "pyproject.toml"
    try:
        if marker.is_file() and 'name = "hyperinverter-gui"' in marker.read_text(encoding="utf-8"):
            return root
    except OSError:
        pass
    return None


def user_data_dir() -> Path:
    return _platform_dir("data")


def user_weights_dir() -> Path:
    """Per-user folder for model files (downloads go here when no writable drop folder comes first)."""
    override = os.environ.get("HYPERINVERTER_USER_WEIGHTS")
    return Path(override) if override else user_data_dir() / "weights"


def user_directions_dir() -> Path:
    """Per-user folder for edit direction files."""
    override = os.environ.get("HYPERINVERTER_USER_DIRECTIONS")
    return Path(override) if override else user_data_dir() / "directions"


def checkout_weights_dir() -> Path | None:
    """The drop folder for model files: ``HYPERINVERTER_WEIGHTS``, else a checkout's ``weights/``."""
    override = os.environ.get("HYPERINVERTER_WEIGHTS")
    if override:
        return Path(override)
    root = checkout_root()
    return root / "weights" if root is not None else None


def checkout_directions_dir() -> Path | None:
    """The drop folder for direction files: ``HYPERINVERTER_DIRECTIONS``, else a checkout's ``directions/``."""
    override = os.environ.get("HYPERINVERTER_DIRECTIONS")
    if override:
        return Path(override)
    root = checkout_root()
    return root / "directions" if root is not None else None


def cache_dir() -> Path:
    """Per-user cache (converted models, the identified-files memo, logs)."""
    override = os.environ.get("HYPERINVERTER_CACHE")
    if override and override.lower() not in _CACHE_OFF:
        return Path(override)
    return _platform_dir("cache")


def model_cache_dir() -> Path | None:
    """The converted-model cache, or None when ``HYPERINVERTER_CACHE=off``."""
    if os.environ.get("HYPERINVERTER_CACHE", "").lower() in _CACHE_OFF:
        return None
    return cache_dir()


def log_file() -> Path:
    return cache_dir() / "logs" / "hyperinverter-studio.log"
