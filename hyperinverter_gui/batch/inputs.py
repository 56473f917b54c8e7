"""What a batch works on: the input photos, one numbered item each, and where each item's outputs go.

An input is a folder (searched recursively), a glob pattern (``photos/**/*.jpg``), a list file
(``.txt``/``.lst``: one path per line; ``.csv``: a column named ``path``; ``.jsonl``: objects
with a ``"path"``), or one photo. Relative paths in a list file are relative to the list file.

Items keep the input's order (folders and globs: sorted by relative path), so the numbering,
the output names and the groups the engine inverts together are the same in every run, on
every executor and in every shard.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from hyperinverter_gui.errors import HyperInverterError
from hyperinverter_gui.media.images import IMAGE_SUFFIXES

LIST_SUFFIXES = (".txt", ".lst", ".list", ".csv", ".jsonl")
PATH_COLUMNS = ("path", "file", "filename", "image", "photo")  # accepted names of the path column
MAX_LIST_BYTES = 1 << 30  # a list file larger than this is refused (a mistake, not a data set)


class BatchInputError(HyperInverterError):
    """The batch input cannot be read: missing, empty, or a list file that is malformed."""


@dataclass(frozen=True)
class BatchItem:
    """One photo of a batch."""

    index: int  # position in the whole (unsharded) input
    key: str  # unique, case-insensitively: the output's path under the output folder, without suffix
    source: Path  # the photo

    def group(self, batch_size: int) -> int:
        """The fixed group this item is inverted in: items of one group share one engine call."""
        return self.index // batch_size


@dataclass
class InputSet:
    paths: list[Path]
    root: Path  # output keys are paths relative to this folder
    described: str  # "folder photos/ (recursive)", for messages
    left_out: int = 0  # files under a folder that are not photos by their name


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _scan_folder(folder: Path, exclude: Path | None) -> tuple[list[Path], int]:
    photos, other = [], 0
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        # Outputs of an earlier run inside the input folder are not inputs (nor is anything hidden).
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and (exclude is None or not _same(here / d, exclude)))
        for name in filenames:
            if name.startswith("."):
                continue
            p = here / name
            if p.suffix.lower() in IMAGE_SUFFIXES:
                photos.append(p)
            else:
                other += 1
    photos.sort(key=lambda p: p.relative_to(folder).as_posix().casefold())
    return photos, other


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _read_list(path: Path) -> list[Path]:
    if path.stat().st_size > MAX_LIST_BYTES:
        raise BatchInputError(f"{path} is larger than {MAX_LIST_BYTES >> 20} MB: not a list of photos")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise BatchInputError(f"{path} is not a UTF-8 text file; a list file holds one photo path per line") from None
    base = path.parent
    entries: list[str] = []
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        fields = {(f or "").strip().casefold(): f for f in (reader.fieldnames or [])}
        column = next((fields[c] for c in PATH_COLUMNS if c in fields), None)
        if column is None:
            raise BatchInputError(f"{path}: no column named {' or '.join(PATH_COLUMNS)} in the first row")
        for n, row in enumerate(reader, start=2):
            value = (row.get(column) or "").strip()
            if not value:
                raise BatchInputError(f"{path}, line {n}: the {column} column is empty")
            entries.append(value)
    elif suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise BatchInputError(f"{path}, line {n}: not JSON ({e.msg})") from None
            value = obj.get("path") if isinstance(obj, dict) else None
            if not isinstance(value, str) or not value.strip():
                raise BatchInputError(f'{path}, line {n}: each line must be an object with a "path" string')
            entries.append(value.strip())
    else:
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                entries.append(line)
    return [p if p.is_absolute() else base / p for p in (Path(e).expanduser() for e in entries)]


def collect_inputs(source: str | Path, exclude: Path | None = None) -> InputSet:
    """The photos ``source`` names (see the module note). ``exclude``: a folder left out of a scan
    (the output folder when it lies inside the input folder)."""
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        photos, other = _scan_folder(path, exclude)
        if not photos:
            raise BatchInputError(f"no photos ({', '.join(sorted(IMAGE_SUFFIXES))}) in {path} or its subfolders")
        return InputSet(photos, path, f"folder {path} (with subfolders)", other)
    if path.is_file():
        if path.suffix.lower() in LIST_SUFFIXES:
            paths = _read_list(path)
            if not paths:
                raise BatchInputError(f"{path} lists no photos")
            return InputSet(paths, path.parent, f"list {path}")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return InputSet([path], path.parent, f"photo {path}")
        raise BatchInputError(f"{path} is neither a photo nor a list file ({', '.join(LIST_SUFFIXES)})")
    if any(c in text for c in "*?["):
        matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
        photos = [m for m in matches if m.is_file() and m.suffix.lower() in IMAGE_SUFFIXES
                  and (exclude is None or not _inside(m, exclude))]
        if not photos:
            raise BatchInputError(f"the pattern {text} matches no photos")
        fixed = []
        for part in Path(text).parts:  # the leading folders of the pattern, before any wildcard
            if any(c in part for c in "*?["):
                break
            fixed.append(part)
        root = Path(*fixed) if fixed else Path(".")
        photos.sort(key=lambda p: _relative(p, root).as_posix().casefold())
        return InputSet(photos, root, f"pattern {text}")
    raise BatchInputError(f"input not found: {path} (give a folder, a glob pattern, a list file or a photo)")


def _inside(p: Path, folder: Path) -> bool:
    try:
        p.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def _relative(p: Path, root: Path) -> Path:
    try:
        return p.relative_to(root)
    except ValueError:
        try:
            return p.resolve().relative_to(root.resolve())
        except (ValueError, OSError):
            return Path(p.name)


def plan_items(inputs: InputSet) -> list[BatchItem]:
    """Number the photos and give each a unique key (its path under the output folder, no suffix).

    The key is the photo's path relative to the input root without its suffix. Photos whose keys
    clash case-insensitively (``face.png`` and ``face.jpg``; two list entries outside the root with
    one name) all get a distinguishing ending: the suffix (``face_png``), and where that is not
    enough, a short hash of the full path. Listed twice, a photo is one item (the first place).
    """
    seen: set[str] = set()
    unique: list[Path] = []
    for p in inputs.paths:
        ident = os.path.normcase(os.path.abspath(p))
        if ident not in seen:
            seen.add(ident)
            unique.append(p)
    rels = [_relative(p, inputs.root) for p in unique]
    base = [r.with_suffix("").as_posix() for r in rels]
    counts: dict[str, int] = {}
    for b in base:
        counts[b.casefold()] = counts.get(b.casefold(), 0) + 1
    keys = [b if counts[b.casefold()] == 1 else f"{b}_{r.suffix.lstrip('.').lower()}" for b, r in zip(base, rels)]
    counts = {}
    for k in keys:
        counts[k.casefold()] = counts.get(k.casefold(), 0) + 1
    keys = [k if counts[k.casefold()] == 1 else
            f"{k}_{hashlib.sha1(os.path.abspath(p).encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"
            for k, p in zip(keys, unique)]
    return [BatchItem(i, k, p) for i, (k, p) in enumerate(zip(keys, unique))]


def parse_shard(text: str) -> tuple[int, int]:
    """``"3/16"`` -> (3, 16): the third of sixteen shards (1-based)."""
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise BatchInputError(f"--shard must look like I/N (e.g. 3/16), got {text!r}") from None
    if not (n >= 1 and 1 <= i <= n):
        raise BatchInputError(f"--shard {text}: I must be between 1 and N, and N at least 1")
    return i, n


def shard_items(items: list[BatchItem], shard: tuple[int, int], batch_size: int) -> list[BatchItem]:
    """The items of shard ``(i, n)``: whole groups, group g going to shard ``g % n + 1``.

    Splitting by group (not by item) keeps each group's composition, so a shard writes the same
    bytes for its items as the unsharded run; the shards together are exactly the whole.
    """
    i, n = shard
    return [it for it in items if it.group(batch_size) % n == i - 1]


__all__ = ["BatchInputError", "BatchItem", "InputSet", "collect_inputs", "parse_shard", "plan_items", "shard_items"]
