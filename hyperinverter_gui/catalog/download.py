"""Downloading model files: resumable, verified, never half-written under the final name."""

from __future__ import annotations

import errno
import hashlib
import html
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hyperinverter_gui.errors import HyperInverterError, ModelFileError
from hyperinverter_gui.formats import sniff

CHUNK = 1 << 20
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


def _drive_confirm_url(page: str, base_url: str) -> str | None:
    """The real download address behind Google Drive's 'file too large to scan' page."""
    form = re.search(r'<form[^>]*id="download-form"[^>]*action="([^"]+)"', page) or re.search(
        r'<form[^>]*action="([^"]+)"[^>]*id="download-form"', page)
    if form:
        action = html.unescape(form.group(1))
        fields = dict(re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page))
        return urllib.parse.urljoin(base_url, action) + "?" + urllib.parse.urlencode(fields)
    link = re.search(r'href="([^"]*confirm=[^"]+)"', page)
    if link:
        return urllib.parse.urljoin(base_url, html.unescape(link.group(1)))
    token = re.search(r"confirm=([0-9A-Za-z_-]+)", page)
    if token:
        sep = "&" if "?" in base_url else "?"
        return f"{base_url}{sep}confirm={token.group(1)}"
    return None


def _open(url: str, start: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if start > 0:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _is_drive(url: str) -> bool:
    return (urllib.parse.urlparse(url).hostname or "") in DRIVE_HOSTS


def download(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 30.0,
    drive_hosts: tuple[str, ...] = DRIVE_HOSTS,
) -> Downloaded:
    """Fetch ``url`` into ``dest`` via ``dest.part``, resuming a previous partial download.

    ``progress(done_bytes, total_bytes_or_None)`` is called as data arrives.
    A Google Drive confirmation page is followed to the file. The file is
    checked (not an HTML page, complete, checksum when given) before it is
    renamed to ``dest``.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.exists() else 0
    current = url
    try:
        for _ in range(3):  # at most two confirmation hops
            resp = _open(current, start, timeout)
            ctype = resp.headers.get("Content-Type", "")
            if ctype.startswith("text/html"):
                page = resp.read(2_000_000).decode("utf-8", "replace")
                resp.close()
                host = urllib.parse.urlparse(resp.geturl()).hostname or ""
                nxt = _drive_confirm_url(page, resp.geturl()) if (host in drive_hosts or _is_drive(url)) else None
                if nxt is None or nxt == current:
                    if host in drive_hosts or _is_drive(url):
                        raise DownloadError(
                            f"Google Drive sent a page instead of the file (download quota exceeded, or the file is "
                            f"not public). Try again later. {_by_hand(url, dest)}"
                        )
                    raise DownloadError(f"{url} answered with an HTML page, not a model file. {_by_hand(url, dest)}")
                current = nxt
                continue
            break
        else:
            raise DownloadError(f"too many confirmation pages from {url}. {_by_hand(url, dest)}")

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
            with resp, open(part, mode) as out:
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    h.update(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise DownloadError(
                    f"the disk is full while writing {part} ({done} bytes so far). Free some space and run the "
                    f"command again to resume, or delete {part}."
                ) from None
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
    try:
        sniff.sniff_file(part)  # raises for an empty file or an HTML page saved as the model
    except ModelFileError as e:
        part.unlink(missing_ok=True)
        raise DownloadError(f"downloaded data is not a model file: {e}") from None
    digest = h.hexdigest()
    if sha256 and digest.lower() != sha256.lower():
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"checksum mismatch for {dest.name}: expected {sha256}, got {digest}; the download was deleted"
        )
    os.replace(part, dest)
    return Downloaded(dest, done, digest, bool(sha256))


# ----------------------------------------------------------------------------
# Recorded checksums


def checksums_path() -> Path:
    from hyperinverter_gui.catalog.discovery import user_weights_dir

    return user_weights_dir().parent / "checksums.json"


def recorded_checksums() -> dict[str, dict]:
    p = checksums_path()
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def record_checksum(name: str, sha256: str, size: int) -> None:
    from hyperinverter_gui.media.atomic import atomic_write

    data = recorded_checksums()
    data[name] = {"sha256": sha256, "size": size}
    p = checksums_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(p, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, sort_keys=True)), ".json")
