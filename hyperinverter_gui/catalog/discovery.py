"""Where model files live, what each file is, and which one serves each role.

Files are found in a checkout's ``weights/`` drop folder and in the per-user
weights folder (``host.paths``), and identified by their *content* (any file
name works); the manifest (``catalog/models.toml``, package data) names the
files the authors publish and where to download them.
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from hyperinverter_gui.catalog.locks import locked
from hyperinverter_gui.errors import HyperInverterError, ManifestError, ModelFileError
from hyperinverter_gui.formats import checkpoints, guard, sniff
from hyperinverter_gui.formats.guard import check_file_name
from hyperinverter_gui.host.paths import (
    cache_dir,
    checkout_directions_dir,
    checkout_weights_dir,
    user_directions_dir,
    user_weights_dir,
)

ROLES = ("generator", "inverter", "w_encoder", "landmarks", "hyperstyle", "hyperstyle_w_encoder")
ROLE_TITLES = {
    "generator": "StyleGAN2 generator",
    "inverter": "HyperInverter checkpoint",
    "w_encoder": "W encoder (optional)",
    "landmarks": "face landmarks (face-alignment)",
    "hyperstyle": "HyperStyle checkpoint (optional backend)",
    "hyperstyle_w_encoder": "HyperStyle W encoder (optional backend)",
}
OPTIONAL_ROLES = ("w_encoder", "hyperstyle", "hyperstyle_w_encoder")
# Domain of a generator / checkpoint by image resolution.
DOMAIN_BY_RESOLUTION = {1024: "ffhq", 256: "church"}
MODEL_SUFFIXES = {".pkl", ".pt", ".pth", ".tar", ".ckpt"}
log = logging.getLogger(__name__)


def torch_hub_checkpoints_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_dirs() -> list[Path]:
    """Folders searched for model files, in priority order."""
    drop = checkout_weights_dir()
    return ([drop] if drop is not None else []) + [user_weights_dir()]


def is_writable_dir(path: Path) -> bool:
    """True if files can really be created in ``path`` (creating it if needed)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def direction_folders() -> list[Path]:
    """The direction drop folders, in priority order (the same as the slider library searches)."""
    drop = checkout_directions_dir()
    return ([drop] if drop is not None else []) + [user_directions_dir()]


def download_dir(entry: "ModelEntry | None" = None) -> Path:
    """Where a download goes: torch hub for face-alignment files, the first writable directions folder
    for direction files (``install = "directions"``), else the first writable weights folder."""
    if entry is not None and entry.install == "torch_hub":
        return torch_hub_checkpoints_dir()
    if entry is not None and entry.install == "directions":
        for d in direction_folders():
            if is_writable_dir(d):
                return d
        raise HyperInverterError(
            "no writable directions folder: " + ", ".join(str(d) for d in direction_folders())
            + " (set HYPERINVERTER_USER_DIRECTIONS to a writable folder)"
        )
    for d in weights_dirs():
        if is_writable_dir(d):
            return d
    raise HyperInverterError(
        "no writable weights folder: " + ", ".join(str(d) for d in weights_dirs())
        + " (set HYPERINVERTER_USER_WEIGHTS to a writable folder)"
    )


# ----------------------------------------------------------------------------
# Manifest


@dataclass
class ModelEntry:
    """A model the authors publish: file name, upstream URL and role."""

    name: str
    role: str
    file: str
    url: str
    format: str = ""
    domain: str = ""
    description: str = ""
    default: bool = False
    install: str = "weights"  # "weights", "torch_hub" or "directions" (slider direction files)
    size: int | None = None
    sha256: str = ""

    def __post_init__(self) -> None:
        where = f"model entry '{self.name}'"
        for key in ("name", "role", "file", "url", "format", "domain", "description", "install", "sha256"):
            if not isinstance(getattr(self, key), str):
                raise ManifestError(f"{where}: '{key}' must be a string, not {type(getattr(self, key)).__name__}")
        if not isinstance(self.default, bool):
            raise ManifestError(f"{where}: 'default' must be true or false")
        if self.size is not None and (isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0):
            raise ManifestError(f"{where}: 'size' must be a whole number of bytes")
        check_file_name(self.file, f"{where}: 'file'")


def manifest_path() -> Traversable:
    """The manifest of published models, shipped inside the package (works from a wheel too)."""
    return resources.files("hyperinverter_gui.catalog") / "models.toml"


def load_manifest(path: Path | Traversable | None = None) -> list[ModelEntry]:
    path = path or manifest_path()
    if isinstance(path, Path) and path.exists() and not path.is_file():
        raise ManifestError(f"{path} is not a file (a folder?), not a models manifest")
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: not valid TOML ({e})") from None
    except OSError as e:
        raise ManifestError(f"cannot read {path}: {e.strerror or e}") from None
    models = data.get("model", [])
    if not isinstance(models, list):
        raise ManifestError(f"{path}: 'model' must be a list of [[model]] tables")
    entries = []
    for i, d in enumerate(models):
        if not isinstance(d, dict):
            raise ManifestError(f"{path}: model entry {i + 1} is not a table")
        try:
            entries.append(ModelEntry(**{k: v for k, v in d.items() if k in ModelEntry.__dataclass_fields__}))
        except TypeError as e:
            raise ManifestError(f"{path}: bad model entry {d.get('name', '?')}: {e}") from None
        except ManifestError as e:
            raise ManifestError(f"{path}: {e}") from None
    return entries


def find_entry(name: str, entries: list[ModelEntry] | None = None) -> ModelEntry:
    entries = load_manifest() if entries is None else entries
    for e in entries:
        if e.name == name or e.file == name:
            return e
    raise HyperInverterError(
        f"unknown model '{name}'; known: {', '.join(e.name for e in entries)}"
    )


# ----------------------------------------------------------------------------
# Identification by content


@dataclass
class FoundModel:
    """A model file on disk and what it is."""

    path: Path
    role: str  # one of ROLES
    kind: str  # stylegan2-ada-pickle, stylegan2-tf-pickle, hyperinverter, w_encoder, rosinality, face-alignment
    domain: str = ""  # ffhq / church / "" when unknown
    details: dict[str, Any] = field(default_factory=dict)
    entry: ModelEntry | None = None

    @property
    def resolution(self) -> int | None:
        return self.details.get("resolution")


def identify(path: Path, entries: list[ModelEntry] | None = None) -> FoundModel | None:
    """What a file is, from its content; None when it is not a model this app uses.

    Cheap: pickles are recognised from their first bytes, ``.pt`` archives by
    reading only their key/shape index (tensors are memory-mapped, not read).
    Raises ModelFileError for damaged files so callers can report them.
    """
    with guard.reading(path, "model file"):
        return _identify(path, entries)


def _identify(path: Path, entries: list[ModelEntry] | None = None) -> FoundModel | None:
    entries = load_manifest() if entries is None else entries
    entry = next((e for e in entries if e.file == path.name), None)
    if entry is not None and entry.role == "landmarks":
        return FoundModel(path, "landmarks", "face-alignment", entry=entry)
    kind = sniff.sniff_file(path)
    if kind == "pickle":
        with open(path, "rb") as f:
            head = f.read(1 << 20)
        if b"torch_utils.persistence" in head:
            from hyperinverter_gui.formats.nvidia_pickle import peek_generator_kwargs

            kwargs = peek_generator_kwargs(path)
            res_value = kwargs.get("img_resolution", 0)
            if isinstance(res_value, bool) or not isinstance(res_value, int) or not 0 <= res_value <= 1 << 16:
                raise ModelFileError(f"{path.name}: the generator's img_resolution {res_value!r} is not a resolution")
            res = res_value or None
            found = FoundModel(path, "generator", "stylegan2-ada-pickle", DOMAIN_BY_RESOLUTION.get(res or 0, ""),
                               {"resolution": res}, entry)
            return found
        elif b"dnnlib.tflib" in head:
            found = FoundModel(path, "generator", "stylegan2-tf-pickle", entry=entry)
        else:
            raise ModelFileError(f"{path.name} is a Python pickle but not a StyleGAN2 network")
        found.domain = entry.domain if entry else ""
        return found
    if kind in ("zip", "torch-legacy"):
        obj = checkpoints.load_torch_file(path)
        what = checkpoints.describe_checkpoint(obj)
        if what == "hyperinverter":
            sd = checkpoints.state_dict_of(obj)
            n_styles = len({k.split(".")[2] for k in sd if k.startswith("w_bar_encoder.styles.")})
            res = 2 ** ((n_styles + 2) // 2)
            w1 = next((v for k, v in sd.items() if k.startswith("hypernet.") and k.endswith(".w1")), None)
            if w1 is not None and w1.ndim != 2:
                raise ModelFileError(f"{path.name}: tensor hypernet...w1 has shape {list(w1.shape)}, expected 2 dimensions")
            details = {"resolution": res, "hidden_dim": int(w1.shape[0]) if w1 is not None else None,
                       "layers": sum(1 for k in sd if k.startswith("hypernet.") and k.endswith(".w1"))}
            return FoundModel(path, "inverter", "hyperinverter", DOMAIN_BY_RESOLUTION.get(res, ""), details, entry)
        if what == "w_encoder":
            return FoundModel(path, "w_encoder", "w_encoder", entry.domain if entry else "", {}, entry)
        if what == "rosinality_generator":
            return FoundModel(path, "generator", "rosinality", entry.domain if entry else "", {}, entry)
        if what == "hyperstyle":
            return FoundModel(path, "hyperstyle", "hyperstyle", entry.domain if entry else "", {}, entry)
        if what == "e4e":
            # HyperStyle's faces_w_encoder.pt: a pSp W encoder saved with its decoder.
            sd = checkpoints.state_dict_of(obj)
            if any(k.startswith("encoder.styles.") for k in sd):
                return None  # an e4e/pSp per-style encoder: not used by this app
            return FoundModel(path, "hyperstyle_w_encoder", "w_encoder+decoder", entry.domain if entry else "", {},
                              entry)
        raise ModelFileError(f"{path.name} is {checkpoints.KIND_NAMES[what]}, not a model this app uses")
    raise ModelFileError(f"{path.name} is not a model file (unrecognised contents)")


@dataclass
class Discovery:
    found: list[FoundModel] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)  # damaged or unreadable files

    def by_role(self, role: str) -> list[FoundModel]:
        return [f for f in self.found if f.role == role]


IDENTIFIED_VERSION = 1


def _identified_path() -> Path | None:
    """The memo of identified files (``identified.json`` in the cache folder); None when the cache is off."""
    if os.environ.get("HYPERINVERTER_CACHE", "").lower() in ("off", "0", "none"):
        return None
    return cache_dir() / "identified.json"


_STAMP_KEYS = ("size", "mtime_ns", "inode")


def _valid_hit(hit: Any) -> bool:
    """One memo record as written by :func:`_identify_memoized`; anything else is discarded."""
    if not isinstance(hit, dict) or not isinstance(hit.get("stamp"), dict):
        return False
    if sorted(hit["stamp"]) != sorted(_STAMP_KEYS) or not all(type(v) is int for v in hit["stamp"].values()):
        return False
    if "problem" in hit:
        return isinstance(hit["problem"], str)
    found = hit.get("found", "absent")
    if found is None:
        return True
    return (isinstance(found, dict) and all(isinstance(found.get(k), str) for k in ("role", "kind", "domain"))
            and found["role"] in ROLES and isinstance(found.get("details"), dict))


def _read_identified(path: Path | None) -> dict[str, Any]:
    """The memo's records; a damaged memo (or damaged records) is discarded with a notice and rebuilt."""
    if path is None:
        return {}
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        log.warning("cannot read the identified-files memo %s (%s); files are identified again", path, e)
        return {}
    try:
        memo = json.loads(text.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        memo = None
    if not isinstance(memo, dict) or not isinstance(memo.get("files", {}), dict):
        log.warning("the identified-files memo %s is damaged; it is discarded and rebuilt", path)
        return {}
    if memo.get("version") != IDENTIFIED_VERSION:
        return {}
    files = {k: v for k, v in memo.get("files", {}).items() if _valid_hit(v)}
    if len(files) != len(memo.get("files", {})):
        log.warning("discarded %d damaged record(s) of the identified-files memo %s",
                    len(memo["files"]) - len(files), path)
    return files


def _write_identified(path: Path | None, files: dict[str, Any], before: dict[str, Any] | None = None) -> None:
    """Write the memo atomically, under its lock, merged with what another process wrote meanwhile
    (records this process changed win; ``before`` is what it read at the start)."""
    if path is None:
        return
    from hyperinverter_gui.media.atomic import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked(path):
            current = _read_identified(path)
            before = before or {}
            merged = {**current, **{k: v for k, v in files.items() if before.get(k) != v}}
            text = json.dumps({"version": IDENTIFIED_VERSION, "files": merged}, indent=1)
            atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), ".json")
    except (OSError, HyperInverterError):
        pass  # an unwritable cache only costs speed


def _identify_memoized(p: Path, entries: list[ModelEntry], memo: dict[str, Any]) -> FoundModel | None:
    """``identify`` through the memo: a file whose size and mtime are unchanged is not read again.

    Identifying reads a checkpoint's whole key index and a pickle's structure (about a second
    for the FFHQ files, on every start of the editor); the memo makes it a ``stat``.
    """
    st = p.stat()
    key = str(p.resolve())
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}
    hit = memo.get(key)
    if not (isinstance(hit, dict) and hit.get("stamp") == stamp):
        try:
            f = identify(p, entries)
            hit = {"stamp": stamp, "found": None if f is None else
                   {"role": f.role, "kind": f.kind, "domain": f.domain, "details": f.details}}
        except ModelFileError as e:
            hit = {"stamp": stamp, "problem": str(e)}
        memo[key] = hit
    if "problem" in hit:
        raise ModelFileError(hit["problem"])
    found = hit.get("found")
    if found is None:
        return None
    entry = next((e for e in entries if e.file == p.name), None)
    return FoundModel(p, found["role"], found["kind"], found["domain"], dict(found["details"]), entry)


def discover(dirs: list[Path] | None = None, entries: list[ModelEntry] | None = None) -> Discovery:
    """Identify every model file in the weights folders (and face-alignment's files in torch hub)."""
    entries = load_manifest() if entries is None else entries
    out = Discovery()
    memo_path = _identified_path()
    memo = _read_identified(memo_path)
    read = dict(memo)
    before = json.dumps(memo, sort_keys=True)
    seen: set[Path] = set()
    search = list(dirs) if dirs is not None else weights_dirs()
    for d in search:
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if not p.is_file() or p.name.startswith(".") or p.suffix.lower() not in MODEL_SUFFIXES:
                continue
            rp = p.resolve()
            if rp in seen:
                continue
            seen.add(rp)
            try:
                f = _identify_memoized(p, entries, memo)
            except (ModelFileError, OSError) as e:
                out.problems.append((p, str(e)))
                continue
            if f is not None:
                out.found.append(f)
    if json.dumps(memo, sort_keys=True) != before:
        _write_identified(memo_path, memo, read)
    if dirs is None:
        hub = torch_hub_checkpoints_dir()
        for e in entries:
            if e.role == "landmarks" and (hub / e.file).is_file():
                out.found.append(FoundModel(hub / e.file, "landmarks", "face-alignment", entry=e))
    return out


# ----------------------------------------------------------------------------
# Choosing a file per role


@dataclass
class Selection:
    """Which file serves each role, why, and what is missing."""

    chosen: dict[str, FoundModel] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    alternatives: dict[str, list[FoundModel]] = field(default_factory=dict)
    missing: dict[str, list[ModelEntry]] = field(default_factory=dict)


def _rank(f: FoundModel) -> tuple:
    # Manifest default first, then any manifest file, then the newest file.
    is_default = bool(f.entry and f.entry.default)
    mtime = f.path.stat().st_mtime if f.path.exists() else 0
    return (not is_default, f.entry is None, -mtime, f.path.name)


def select(
    discovery: Discovery,
    overrides: dict[str, Path | None] | None = None,
    entries: list[ModelEntry] | None = None,
) -> Selection:
    """Pick one file per role.

    Rule: an explicit path (flag or setting) wins; otherwise the inverter is the
    manifest's default among those present, else the newest; the generator is
    one whose domain/resolution matches the inverter when that is known, ranked
    the same way. Every other candidate is listed as an alternative.
    """
    entries = load_manifest() if entries is None else entries
    overrides = overrides or {}
    sel = Selection()
    for role in ("inverter", "generator", "w_encoder", "landmarks", "hyperstyle", "hyperstyle_w_encoder"):
        explicit = overrides.get(role)
        candidates = sorted(discovery.by_role(role), key=_rank)
        if explicit is not None:
            explicit = Path(explicit)
            f = next((c for c in candidates if c.path.resolve() == explicit.resolve()), None)
            sel.chosen[role] = f or FoundModel(explicit, role, "explicit")
            sel.reasons[role] = "given explicitly"
        elif candidates:
            pick = candidates[0]
            reason = "manifest default" if pick.entry and pick.entry.default else (
                "only candidate" if len(candidates) == 1 else "newest file")
            inv = sel.chosen.get("inverter")
            if role == "generator" and inv is not None and (inv.domain or inv.resolution):
                matching = [c for c in candidates if (c.resolution and c.resolution == inv.resolution) or
                            (not c.resolution and c.domain and c.domain == inv.domain)]
                if matching:
                    pick, reason = matching[0], f"matches the {inv.domain or inv.resolution} inverter"
            sel.chosen[role] = pick
            sel.reasons[role] = reason
        if role in sel.chosen:
            sel.alternatives[role] = [c for c in candidates if c.path != sel.chosen[role].path]
        else:
            sel.missing[role] = [e for e in entries if e.role == role]
    return sel


def describe_found(f: FoundModel) -> str:
    bits = [f.kind]
    if f.domain:
        bits.append(f.domain)
    if f.resolution:
        bits.append(f"{f.resolution} px")
    if f.details.get("hidden_dim"):
        bits.append(f"D={f.details['hidden_dim']}")
    if f.entry is not None:
        bits.append(f"= {f.entry.name}")
    return ", ".join(bits)
