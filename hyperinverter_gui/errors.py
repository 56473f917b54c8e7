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


class ModelStructureError(ModelFileError):
    """A model file's structure goes beyond what any real model needs (too deep, too many
    objects, a cycle, a tensor larger than its storage); refused before the work can explode."""


class NonFiniteWeightsError(ModelFileError):
    """A model file holds NaN or infinite weights; it would render garbage (a flat black image)."""


class InversionFileError(ModelFileError):
    """A saved inversion (``.safetensors``) is missing, truncated, malformed or holds bad numbers."""


class SessionFileError(HyperInverterError):
    """An editing session file is damaged or malformed; the message names the file and the field."""


class ManifestError(HyperInverterError):
    """A manifest (``models.toml``, a directions ``manifest.toml``) holds a malformed entry or value."""
