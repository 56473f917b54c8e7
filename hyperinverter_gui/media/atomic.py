"""Writing files so that a reader never sees half of one: a temporary file in the same folder, then a rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hyperinverter_gui.errors import HyperInverterError


def atomic_write(path: str | Path, write, suffix: str = "") -> Path:
    """Call ``write(tmp_path)`` then rename over ``path``; a failure leaves no partial file."""
    path = Path(path)
    if path.is_dir():
        raise HyperInverterError(f"{path} is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise HyperInverterError(f"folder does not exist: {parent}")
    # The temporary name keeps the real extension last: some writers (OpenCV) pick the format by it.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates 0600 files; give the result the permissions a normal new file gets.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
