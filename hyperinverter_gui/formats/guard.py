"""Guards shared by every reader of user files: file kind, finite numbers, and a last-resort net.

Readers check what they expect field by field and raise specific errors; :func:`reading` is the
net under them, so that a file damaged in a way no check foresaw still ends in one plain
``ModelFileError`` naming the file, never in a ``ValueError``/``IndexError``/``RecursionError``
escaping to the front ends.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import pickle
import stat
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

import torch

from hyperinverter_gui.errors import (
    HyperInverterError,
    ManifestError,
    ModelFileError,
    ModelStructureError,
    NonFiniteWeightsError,
)

# Errors that parsing damaged data raises; anything else is a bug and must stay visible.
DATA_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError, OverflowError, EOFError,
    pickle.UnpicklingError, zipfile.BadZipFile, struct.error, AssertionError,
)


def first_line(e: BaseException, limit: int = 200) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:limit]


def file_kind_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file (missing, a folder, a FIFO/device...), or None when it can.

    ``os.stat`` only: opening a FIFO would block until a writer appears, and on the GUI thread
    that is a frozen window.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "not found"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(st.st_mode):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        return f"is {kind}, not a regular file"
    return None


def require_regular_file(path: Path, error: type[HyperInverterError], what: str = "file") -> None:
    """Raise ``error`` naming ``path`` unless it is an existing regular file."""
    problem = file_kind_problem(path)
    if problem is not None:
        raise error(f"{what} {path} {problem}" if problem == "not found" else f"{path}: {problem}")


def check_finite(tensor: torch.Tensor, name: str, source: str) -> None:
    """Refuse NaN/Inf in a floating-point tensor, naming the tensor and the file."""
    if not (tensor.is_floating_point() or tensor.is_complex()) or not tensor.numel():
        return
    # Fast path: any NaN/Inf makes the sum non-finite, and a sum is 20x cheaper than an elementwise
    # test. A non-finite sum can also be an overflow of finite values: then the exact test decides.
    if bool(torch.isfinite(tensor.sum())):
        return
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise NonFiniteWeightsError(
            f"{source}: tensor '{name}' holds {bad} NaN or infinite value(s); the file is damaged "
            "(download or export it again)"
        )


def finite_number(value: object, field: str, source: str, low: float = -math.inf, high: float = math.inf,
                  error: type[HyperInverterError] = HyperInverterError) -> float:
    """``value`` as a finite float within [low, high], else ``error`` naming the field."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(f"{source}: {field} must be a number, not {type(value).__name__} {_short(value)}")
    try:
        v = float(value)
    except OverflowError:
        v = math.inf
    if not math.isfinite(v):
        raise error(f"{source}: {field} must be a finite number, not {_short(value)}")
    if not low <= v <= high:
        raise error(f"{source}: {field} = {v:g} is outside the allowed range [{low:g}, {high:g}]")
    return v


def whole_number(value: object, field: str, source: str, low: int, high: int,
                 error: type[HyperInverterError] = HyperInverterError) -> int:
    """``value`` as an int within [low, high] (floats with no fraction accepted), else ``error``."""
    v = finite_number(value, field, source, low, high, error)
    if v != int(v):
        raise error(f"{source}: {field} must be a whole number, not {v:g}")
    return int(v)


def check_file_name(name: str, where: str, error: type[HyperInverterError] = ManifestError) -> str:
    """Refuse a manifest file name that is not one plain name: a download saved as ``DIR / name``
    must land in DIR, never above it (``../x``) or elsewhere (``/etc/x``, ``C:\\x``)."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name or ":" in name
            or Path(name).is_absolute() or name != name.strip()):
        raise error(
            f"{where} = {name!r} is not a plain file name (no folders, '..' or absolute paths allowed)"
        )
    return name


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@contextlib.contextmanager
def reading(path: str | Path, what: str = "model file") -> Iterator[None]:
    """Turn any data error raised while reading ``path`` into one ``ModelFileError`` naming it."""
    name = Path(path).name
    try:
        yield
    except HyperInverterError:
        raise
    except RecursionError:
        raise ModelStructureError(
            f"{name}: its objects are nested too deeply to be a {what}; the file is damaged or crafted"
        ) from None
    except MemoryError:
        raise ModelStructureError(
            f"{name}: reading it needs more memory than any {what} does; the file is damaged or crafted"
        ) from None
    except OSError as e:
        raise ModelFileError(f"cannot read {name}: {e.strerror or first_line(e)}") from None
    except DATA_ERRORS as e:
        raise ModelFileError(
            f"{name} is truncated or corrupt, or not a supported {what} ({type(e).__name__}: {first_line(e)})"
        ) from None
