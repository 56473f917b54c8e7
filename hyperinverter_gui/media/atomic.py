"""Writing files so that a reader never sees half of one: a temporary file in the same folder, then a rename.

Every file the app writes for the user goes through :func:`atomic_write`: an interrupted or
failed write leaves nothing under the final name, and the errors the operating system gives
(disk full, read-only folder, a path through an existing file) become one plain message naming
the path. With ``overwrite=False`` the final name is claimed with a hard link, which the
operating system refuses when the name exists: of two processes writing one new output at the
same time, the second is told so instead of silently replacing the first one's result.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

from hyperinverter_gui.errors import HyperInverterError


class OutputWriteError(HyperInverterError):
    """The operating system refused a write: disk full, no permission, a path through a file."""


class OutputExistsError(HyperInverterError):
    """The output appeared while it was being made (another process wrote it): not replaced."""


# Filesystems without hard links (FAT, some network shares) answer os.link with one of these.
_NO_LINKS = {errno.EPERM, errno.EXDEV, errno.EMLINK, getattr(errno, "ENOTSUP", 95), getattr(errno, "EOPNOTSUPP", 95),
             getattr(errno, "ENOSYS", 38)}


def shown(path: str | Path) -> str:
    """A path as text that can always be printed (file names that are not valid UTF-8 included)."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def write_error(e: OSError, path: str | Path) -> OutputWriteError:
    """The one-line message for an operating-system error while writing ``path``."""
    p = Path(path)
    where = shown(p)
    folder = shown(p.parent if str(p.parent) else Path("."))
    code = e.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        text = f"not enough disk space to write {where}: free some space or choose another folder"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        text = f"no permission to write {where}: the folder {folder} is read-only or not yours; choose another folder"
    elif code == errno.ENOTDIR:
        text = f"cannot write {where}: a part of that path is a file, not a folder"
    elif code == errno.EISDIR:
        text = f"cannot write {where}: it is a folder; give a file name"
    elif code == errno.ENAMETOOLONG:
        text = f"cannot write {where}: the name is too long for this file system"
    elif code == errno.ENOENT:
        text = f"cannot write {where}: the folder {folder} does not exist"
    else:
        text = f"could not write {where}: {e.strerror or e}"
    return OutputWriteError(text)


_OS_ERROR = re.compile(r"os error (\d+)|\[Errno (\d+)\]")
LOW_SPACE_BYTES = 1 << 20  # less than this left after a failed write: the disk filled up


def _disk_full_error(e: Exception, path: Path, parent: Path) -> OutputWriteError | None:
    m = _OS_ERROR.search(str(e))
    if m is not None:
        return write_error(OSError(int(m.group(1) or m.group(2)), str(e)), path)
    try:
        free = shutil.disk_usage(parent).free
    except OSError:
        return None
    return write_error(OSError(errno.ENOSPC, "disk full"), path) if free < LOW_SPACE_BYTES else None


def check_writable_path(path: str | Path) -> Path:
    """Refuse, before any work, an output that can never be written: a folder, or a path whose folder
    is missing or runs through an existing file."""
    path = Path(path)
    if path.is_dir():
        raise OutputWriteError(f"{shown(path)} is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OutputWriteError(f"cannot write {shown(path)}: {shown(probe)} is a file, not a folder")
    if not parent.exists():
        raise OutputWriteError(f"folder does not exist: {shown(parent)}")
    return path


def _claim(tmp: str, path: Path) -> None:
    """Give ``tmp`` the final name only if that name is still free (atomically where links work)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExistsError(f"{shown(path)} appeared while it was being written (another program or run "
                                "made it); it was not replaced: choose another name or use --overwrite") from None
    except OSError as e:
        if e.errno not in _NO_LINKS:
            raise
        # No hard links here: reserve the name exclusively, then move the finished file onto it.
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            raise OutputExistsError(f"{shown(path)} appeared while it was being written; it was not "
                                    "replaced: choose another name or use --overwrite") from None
        os.close(fd)
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def atomic_write(path: str | Path, write, suffix: str = "", overwrite: bool = True) -> Path:
    """Call ``write(tmp_path)`` then give the file its final name; a failure leaves no partial file.

    ``overwrite=False``: the final name must still be free when the file is complete (see the module
    note); ``OutputExistsError`` otherwise. Operating-system errors become ``OutputWriteError``.
    """
    path = check_writable_path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not overwrite and os.path.lexists(path):
        raise OutputExistsError(f"{shown(path)} exists; choose another name or use --overwrite")
    # The temporary name keeps the real extension last: some writers (OpenCV) pick the format by it.
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=parent)
    except OSError as e:
        raise write_error(e, path) from None
    os.close(fd)
    try:
        try:
            write(tmp)
            # mkstemp creates 0600 files; give the result the permissions a normal new file gets.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            if overwrite:
                os.replace(tmp, path)
            else:
                _claim(tmp, path)
        except OSError as e:
            raise write_error(e, path) from None
        except OutputWriteError as e:
            # A writer that is itself atomic (nested) names its own temporary file: name ours.
            raise OutputWriteError(str(e).replace(shown(tmp), shown(path))) from None
        except HyperInverterError:
            raise
        except Exception as e:
            # Writers in other languages (safetensors, torch's zip writer) report a full disk in
            # their own words: recognise it by the OS error number or by the space left.
            full = _disk_full_error(e, path, parent)
            if full is not None:
                raise full from None
            raise
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
