"""Exceptions with messages meant to be shown to a user as they are."""

from __future__ import annotations


class HyperInverterError(Exception):
    """Base class: anything the CLI or GUI reports as a plain message, not a traceback."""


class ModelFileError(HyperInverterError):
    """A model file is missing, unreadable, corrupt, of the wrong kind, or unsafe."""


class UnsafeModelFileError(ModelFileError):
    """A pickle asked for code outside the allow-list; nothing from it was executed."""


class ModelMismatchError(ModelFileError):
    """Two model files that must work together do not fit (shapes, resolution)."""


class ImageFileError(HyperInverterError):
    """An input image is missing, unreadable or not an image."""
