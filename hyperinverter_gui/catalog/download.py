"""Downloading model files: resumable, verified, never half-written under the final name."""

from __future__ import annotations

import errno
import hashlib
import http.client
import inspect
import json
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hyperinverter_gui.catalog.locks import LockBusy, locked
from hyperinverter_gui.errors import HyperInverterError, ModelFileError
from hyperinverter_gui.formats import sniff

CHUNK = 1 << 20
LOCK_WAIT_S = 2.0  # a second process downloading the same file is told so, not left waiting
log = logging.getLogger(__name__)
USER_AGENT = "hyperinverter-studio/0.1 (model downloader)"
DRIVE_HOSTS = ("drive.google.com", "drive.usercontent.google.com", "docs.google.com")


class DownloadError(HyperInverterError):
    """A download failed; the message says why and what to do."""


@dataclass
class Downloaded:
    path: Path
    size: int
    sha256: str
    verified: bool  # matched a known checksum


def _by_hand(url: str, dest: Path) -> str:
    return f"Download {url} in a browser and save it as {dest}"


QUOTA_WORDS = ("quota", "too many users", "too many requests", "rate limit")


def _mentions_quota(text: str) -> bool:
    low = text.lower()
    return any(w in low for w in QUOTA_WORDS)


def _drive_refused(url: str, dest: Path, page: str, reason: str = "") -> DownloadError:
    """The error for a Google Drive page received instead of the file: quota, or not public/changed.

    ``page`` is the page (or gdown's account of it), searched for Drive's quota wording;
    ``reason`` is a short account of what went wrong, added to the message when given.
    """
    if _mentions_quota(page):
        return DownloadError(
            "Google Drive refused the download: the download quota of this file is exceeded (too many people "
            "downloaded it in the last 24 hours). Try again later, or download it by hand: open "
            f"{url} in a browser (signed in to a Google account), download the file and save it as {dest}"
        )
    why = f": {reason}" if reason else ""
    return DownloadError(
        "Google Drive sent a page instead of the file (the file is not public any more, or Drive changed its "
        f"download pages){why}. Try again later, or download it by hand. {_by_hand(url, dest)}"
    )


def _open(url: str, start: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if start > 0:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _is_drive(url: str, drive_hosts: tuple[str, ...] = DRIVE_HOSTS) -> bool:
    return (urllib.parse.urlparse(url).hostname or "") in drive_hosts


def _disk_full(e: OSError, where: Path, done: int) -> DownloadError | None:
    if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return DownloadError(
            f"the disk is full while writing {where} ({done} bytes so far). Free some space and run the "
            f"command again to resume, or delete {where}."
        )
    return None


def download(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 30.0,
    drive_hosts: tuple[str, ...] = DRIVE_HOSTS,
) -> Downloaded:
    """Fetch ``url`` into ``dest``, resuming a previous partial download; verified before it gets its name.

    ``progress(done_bytes, total_bytes_or_None)`` is called as data arrives. Google Drive
    addresses (``drive_hosts``) go through ``gdown``, which follows Drive's confirmation pages;
    everything else is fetched here via ``dest.part``. Either way the file is checked (not an
    HTML page, not empty, complete, the checksum when one is given) before it is renamed to
    ``dest``, and a failure names the address and where to save the file by hand.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # One download per destination at a time: two processes appending to one .part corrupt it.
    try:
        with locked(dest, timeout=LOCK_WAIT_S, busy_ok=False):
            return _download_locked(url, dest, sha256, progress, timeout, drive_hosts)
    except LockBusy:
        raise DownloadError(
            f"another HyperInverter process is downloading {dest.name} right now; wait for it to finish "
            "(then the file is there), or close it and try again"
        ) from None


def _download_locked(url: str, dest: Path, sha256: str | None, progress, timeout: float,
                     drive_hosts: tuple[str, ...]) -> Downloaded:
    if sha256 and dest.is_file():  # finished by another process while this one waited
        digest = _file_sha256(dest)
        if digest.lower() == sha256.lower():
            return Downloaded(dest, dest.stat().st_size, digest, True)
    drive = _is_drive(url, drive_hosts)
    if drive:
        staged, size, digest = _fetch_with_gdown(url, dest, progress, timeout)
    else:
        staged, size, digest = _fetch_direct(url, dest, progress, timeout)
    try:
        sniff.sniff_file(staged)  # raises for an empty file or an HTML page saved as the model
    except ModelFileError as e:
        page = ""
        if "HTML" in str(e):
            with open(staged, "rb") as f:
                page = f.read(2_000_000).decode("utf-8", "replace")
        staged.unlink(missing_ok=True)
        if page and drive:
            raise _drive_refused(url, dest, page) from None
        if page:
            raise DownloadError(f"{url} answered with an HTML page, not a model file. {_by_hand(url, dest)}") from None
        raise DownloadError(f"downloaded data is not a model file: {e}") from None
    if sha256 and digest.lower() != sha256.lower():
        staged.unlink(missing_ok=True)
        raise DownloadError(
            f"checksum mismatch for {dest.name}: expected {sha256}, got {digest}; the download was deleted"
        )
    os.replace(staged, dest)
    return Downloaded(dest, size, digest, bool(sha256))


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _fetch_direct(url: str, dest: Path, progress, timeout: float) -> tuple[Path, int, str]:
    """HTTP(S) download into ``dest.part`` (resumed with a Range request). Returns (part, size, sha256)."""
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, start, timeout)
        if resp.headers.get("Content-Type", "").startswith("text/html"):
            page = resp.read(2_000_000).decode("utf-8", "replace")
            resp.close()
            if _is_drive(resp.geturl()):  # redirected to Google Drive
                raise _drive_refused(url, dest, page)
            raise DownloadError(f"{url} answered with an HTML page, not a model file. {_by_hand(url, dest)}")

        status = getattr(resp, "status", 200)
        total = None
        if status == 206:
            m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != start:
                resp.close()
                raise DownloadError(f"{url}: the server resumed at the wrong place; delete {part} and retry")
            total = int(m.group(2)) if m.group(2) != "*" else None
            mode = "ab"
        else:
            start, mode = 0, "wb"  # server ignored the Range header: start over
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None

        h = hashlib.sha256()
        if mode == "ab":
            with open(part, "rb") as f:
                for block in iter(lambda: f.read(CHUNK), b""):
                    h.update(block)
        done = start
        try:
            read = getattr(resp, "read1", resp.read)  # what has arrived: progress moves on a slow line too
            with resp, open(part, mode) as out:
                while True:
                    block = read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    h.update(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
        except http.client.HTTPException:  # e.g. a broken chunked transfer
            raise DownloadError(
                f"the connection broke after {done} bytes; run the command again to resume ({part} is kept)"
            ) from None
        except OSError as e:
            full = _disk_full(e, part, done)
            if full is not None:
                raise full from None
            if isinstance(e, (urllib.error.URLError, TimeoutError, ConnectionError)) or e.errno is None:
                raise DownloadError(
                    f"the connection broke after {done} bytes; run the command again to resume ({part} is kept)"
                ) from None
            raise
    except urllib.error.HTTPError as e:
        if e.code == 416 and start > 0:
            raise DownloadError(f"{part} is larger than the file on the server; delete it and retry") from None
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}. {_by_hand(url, dest)}") from None
    except urllib.error.URLError as e:
        raise DownloadError(
            f"cannot reach {urllib.parse.urlparse(url).hostname} ({e.reason}); no network? {_by_hand(url, dest)}"
        ) from None
    except (TimeoutError, ConnectionError) as e:
        raise DownloadError(
            f"the connection to {urllib.parse.urlparse(url).hostname} failed ({e}); run the command again to "
            f"resume. {_by_hand(url, dest)}"
        ) from None

    if total is not None and done < total:
        raise DownloadError(
            f"the download stopped after {done} of {total} bytes; run the command again to resume ({part} is kept)"
        )
    return part, done, h.hexdigest()


def _fetch_with_gdown(url: str, dest: Path, progress, timeout: float) -> tuple[Path, int, str]:
    """A Google Drive file through gdown (it follows Drive's confirmation pages, which change over time).

    gdown writes ``<dest>.gdown`` (its partial file beside it, resumed on the next call); the
    checks and the final rename are ours. gdown's errors become our messages: a quota page says
    so and names the manual route.
    """
    host = urllib.parse.urlparse(url).hostname
    try:
        import gdown
        import requests
        from gdown.exceptions import DownloadError as GdownDownloadError
        from gdown.exceptions import FileURLRetrievalError
    except ImportError:
        raise DownloadError(
            "Google Drive downloads need the gdown package (python3 -m pip install gdown). "
            + _by_hand(url, dest)
        ) from None
    staged = dest.with_name(dest.name + ".gdown")
    params = inspect.signature(gdown.download).parameters
    kwargs: dict = {"quiet": True, "resume": True, "use_cookies": False}
    if "progress" in params and progress is not None:
        kwargs["progress"] = progress
    if "timeout" in params:
        kwargs["timeout"] = timeout
    try:
        gdown.download(url, str(staged), **kwargs)
    except FileURLRetrievalError as e:
        reason = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        raise _drive_refused(url, dest, str(e), reason[:300]) from None
    except GdownDownloadError as e:
        raise DownloadError(
            f"the download from Google Drive stopped before the end ({str(e).splitlines()[0]}); run the command "
            f"again to resume (the partial file {staged.name}…part beside {dest} is kept; delete it to start over)"
        ) from None
    except requests.exceptions.HTTPError as e:
        code = e.response.status_code if e.response is not None else "?"
        reason = e.response.reason if e.response is not None else str(e)
        if e.response is not None and code in (403, 429) and _mentions_quota(e.response.text[:200_000]):
            raise _drive_refused(url, dest, e.response.text[:200_000]) from None
        raise DownloadError(f"{url}: HTTP {code} {reason}. {_by_hand(url, dest)}") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
        raise DownloadError(
            f"cannot reach {host} ({type(e).__name__}); no network? Run the command again to resume. "
            f"{_by_hand(url, dest)}"
        ) from None
    except requests.exceptions.RequestException as e:
        raise DownloadError(f"{url}: {e}. {_by_hand(url, dest)}") from None
    except OSError as e:
        full = _disk_full(e, dest.parent, 0)
        if full is not None:
            raise full from None
        raise
    h = hashlib.sha256()
    size = 0
    with open(staged, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
            size += len(block)
    return staged, size, h.hexdigest()


# ----------------------------------------------------------------------------
# Recorded checksums


def checksums_path() -> Path:
    from hyperinverter_gui.catalog.discovery import user_weights_dir

    return user_weights_dir().parent / "checksums.json"


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _valid_record(v: object) -> bool:
    return (isinstance(v, dict) and isinstance(v.get("sha256"), str) and bool(_SHA256.fullmatch(v["sha256"]))
            and type(v.get("size", 0)) is int and v.get("size", 0) >= 0)


def recorded_checksums() -> dict[str, dict]:
    """``{file name: {"sha256", "size"}}`` recorded by earlier downloads.

    A damaged ``checksums.json`` (not JSON, not a dict, malformed records) is discarded with a
    notice: the next download records again; it is never fatal.
    """
    p = checksums_path()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        log.warning("cannot read %s (%s); recorded checksums are ignored", p, e)
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        log.warning("%s is damaged; it is discarded and rebuilt by the next download", p)
        return {}
    good = {str(k): v for k, v in data.items() if _valid_record(v)}
    if len(good) != len(data):
        log.warning("discarded %d damaged record(s) of %s", len(data) - len(good), p)
    return good


def record_checksum(name: str, sha256: str, size: int) -> None:
    """Add one record to ``checksums.json``: under its lock, read-modify-write, written atomically."""
    from hyperinverter_gui.media.atomic import atomic_write

    p = checksums_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    with locked(p):
        data = recorded_checksums()
        data[name] = {"sha256": sha256, "size": size}
        atomic_write(p, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, sort_keys=True)), ".json")
