"""What can be downloaded, and the one way it is downloaded: model files and direction files alike.

The model manifest (``catalog/models.toml``) and the ``[[download]]`` entries of the directions
manifest (``editing/directions.toml``) become one list of :class:`~hyperinverter_gui.catalog.discovery.ModelEntry`
(direction files have role ``"direction"`` and install into the directions folder). :func:`fetch`
is the download path of ``hyperinverter weights download`` and of the editor's Download button:
skip what is there, verify against the manifest's checksum or the one recorded by an earlier
download, record the checksum of a first download.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hyperinverter_gui.catalog.discovery import ModelEntry, direction_folders, download_dir, load_manifest
from hyperinverter_gui.catalog.download import download, record_checksum, recorded_checksums
from hyperinverter_gui.editing.library import FAMILY_RESOLUTION, direction_downloads

DIRECTION = "direction"


def direction_entries() -> list[ModelEntry]:
    """The published direction files, as downloadable entries (role "direction")."""
    return [
        ModelEntry(name=d.name, role=DIRECTION, file=d.file, url=d.url, format="direction", domain=d.generator,
                   description=d.description, default=d.default, install="directions", size=d.size,
                   sha256=d.sha256)
        for d in direction_downloads()
    ]


def all_entries() -> list[ModelEntry]:
    """Every model and direction file the manifests know."""
    return load_manifest() + direction_entries()


def directions_for(resolution: int | None, entries: list[ModelEntry] | None = None) -> list[ModelEntry]:
    """Default direction files that fit a generator of ``resolution`` (None: the FFHQ ones, for faces)."""
    entries = direction_entries() if entries is None else entries
    if resolution is None:
        return [e for e in entries if e.role == DIRECTION and e.default and e.domain in ("ffhq", "")]
    return [e for e in entries if e.role == DIRECTION and e.default
            and FAMILY_RESOLUTION.get(e.domain, resolution) == resolution]


def destination(entry: ModelEntry, folder: Path | None = None) -> Path:
    """Where ``entry`` is saved: ``folder`` when given, else its download folder."""
    return Path(folder if folder is not None else download_dir(entry)) / entry.file


def present(entry: ModelEntry, folder: Path | None = None) -> Path | None:
    """The file of ``entry`` if it is there already (direction files: in any directions folder)."""
    if folder is not None:
        candidates = [Path(folder)]
    elif entry.install == "directions":
        candidates = direction_folders()
    else:
        candidates = [download_dir(entry)]
    for d in candidates:
        if (d / entry.file).is_file():
            return d / entry.file
    return None


@dataclass
class Fetched:
    entry: ModelEntry
    path: Path
    size: int
    sha256: str
    state: str  # "present" (nothing done), "verified" (matched a known checksum), "recorded" (first download)


def fetch(entry: ModelEntry, folder: Path | None = None,
          progress: Callable[[int, int | None], None] | None = None, timeout: float = 30.0) -> Fetched:
    """Download ``entry`` unless it is there; verified, resumable; raises ``DownloadError`` with a message."""
    there = present(entry, folder)
    if there is not None:
        return Fetched(entry, there, there.stat().st_size, "", "present")
    dest = destination(entry, folder)
    expected = entry.sha256 or recorded_checksums().get(entry.file, {}).get("sha256")
    result = download(entry.url, dest, expected, progress, timeout=timeout)
    if not result.verified:
        record_checksum(entry.file, result.sha256, result.size)
    return Fetched(entry, result.path, result.size, result.sha256, "verified" if result.verified else "recorded")
