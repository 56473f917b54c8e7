"""The slider library: the packaged manifest of published directions plus any direction files users drop in.

Direction files are looked up in the drop folders (a checkout's ``directions/``, then the per-user
``directions`` folder; see ``host.paths``). A folder given explicitly (``--directions DIR``) is the
only one searched, and its own ``manifest.toml``, if it has one, replaces the packaged manifest.

The packaged manifest also lists, under ``[[download]]``, where each published direction file comes
from and its checksum (:func:`direction_downloads`; the front ends fetch them with the model
downloader). GANSpace computed for a generator without published directions is cached in the
per-user ``directions/computed`` folder (:func:`save_computed_ganspace`) with a generated manifest,
and appears as sliders whenever that generator is used (``load_library(generator_key=...)``).
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from hyperinverter_gui.editing.edits import (
    MAX_COMPONENT,
    MAX_EDIT_VALUE,
    MAX_LAYER,
    Direction,
    EditError,
    GanspacePCA,
    ensure_known,
    ganspace_direction,
    load_ganspace,
    load_interfacegan_direction,
)
from hyperinverter_gui.errors import HyperInverterError, ManifestError
from hyperinverter_gui.formats.guard import (
    check_file_name,
    file_kind_problem,
    finite_number,
    whole_number,
)
from hyperinverter_gui.host.paths import checkout_directions_dir, user_directions_dir

log = logging.getLogger(__name__)
MANIFEST_NAME = "manifest.toml"
# Generator families the manifest's directions were found for, by resolution.
FAMILY_RESOLUTION = {"ffhq": 1024, "church": 256}


def directions_dirs() -> list[Path]:
    """Folders searched for direction files, in priority order."""
    drop = checkout_directions_dir()
    return ([drop] if drop is not None else []) + [user_directions_dir()]


def default_directions_dir() -> Path:
    """Where direction files go: the first drop folder (a checkout's ``directions/``) or the per-user one."""
    return directions_dirs()[0]


def packaged_manifest() -> Traversable:
    """The manifest of the directions the upstream projects publish, shipped inside the package."""
    return resources.files("hyperinverter_gui.editing") / "directions.toml"


def _read_toml(path: Path | Traversable) -> dict[str, Any]:
    if isinstance(path, Path):
        problem = file_kind_problem(path)
        if problem is not None:
            raise ManifestError(f"directions manifest {path} {problem}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: not valid TOML ({e})") from None
    except OSError as e:
        raise ManifestError(f"cannot read {path}: {e.strerror or e}") from None


def _tables(data: dict[str, Any], key: str, path: Path | Traversable) -> list[dict[str, Any]]:
    """The ``[[key]]`` tables of a manifest; anything else there is a ManifestError naming the entry."""
    items = data.get(key, [])
    if not isinstance(items, list):
        raise ManifestError(f"{path}: '{key}' must be a list of [[{key}]] tables, not a {type(items).__name__}")
    for i, d in enumerate(items):
        if not isinstance(d, dict):
            raise ManifestError(f"{path}: {key} entry {i + 1} is a {type(d).__name__}, not a [[{key}]] table")
    return items


def _text(d: dict[str, Any], key: str, where: str, default: str = "") -> str:
    value = d.get(key, default)
    if not isinstance(value, str):
        raise ManifestError(f"{where}: '{key}' must be a string, not {type(value).__name__} {value!r:.40}")
    return value


@dataclass
class DirectionDownload:
    """A published direction file: where it comes from, its checksum, and the generator family it fits."""

    name: str
    file: str
    url: str
    sha256: str = ""
    size: int | None = None
    generator: str = ""
    description: str = ""
    default: bool = False


def direction_downloads(manifest: Path | Traversable | None = None) -> list[DirectionDownload]:
    """The ``[[download]]`` entries of the packaged manifest (or of ``manifest``)."""
    path = manifest if manifest is not None else packaged_manifest()
    if not path.is_file():
        return []
    out = []
    for d in _tables(_read_toml(path), "download", path):
        where = f"{path}: download entry '{d.get('name', '?')}'"
        for key in ("name", "file", "url", "sha256", "generator", "description"):
            _text(d, key, where)
        check_file_name(str(d.get("file", "")), f"{where}: 'file'")
        size = d.get("size")
        if size is not None and (type(size) is not int or size < 0):
            raise ManifestError(f"{where}: 'size' must be a whole number of bytes")
        if not isinstance(d.get("default", False), bool):
            raise ManifestError(f"{where}: 'default' must be true or false")
        try:
            out.append(DirectionDownload(**{k: v for k, v in d.items() if k in DirectionDownload.__dataclass_fields__}))
        except TypeError as e:
            raise ManifestError(f"{path}: bad download entry {d.get('name', '?')}: {e}") from None
    return out


@dataclass
class SliderSpec:
    """One manifest entry."""

    name: str
    kind: str
    file: str
    label: str = ""
    group: str = ""
    url: str = ""
    generator: str = ""
    component: int | None = None
    layer_start: int = 0
    layer_stop: int | None = None
    value_range: tuple[float, float] = (-3.0, 3.0)
    step: float = 0.1

    @classmethod
    def from_toml(cls, d: Any, where: str) -> "SliderSpec":
        """One ``[[slider]]`` table, every value checked: a ManifestError names the slider and the field.

        Bounds: ``range`` within +-``MAX_EDIT_VALUE``, ``step`` in (0, high - low], ``component``
        in [0, ``MAX_COMPONENT``], ``layer_start``/``layer_stop`` in [0, ``MAX_LAYER``].
        """
        if not isinstance(d, dict):
            raise ManifestError(f"{where}: a slider entry is a {type(d).__name__}, not a [[slider]] table")
        for key in ("name", "kind", "file"):
            if key not in d:
                raise ManifestError(f"{where}: a slider lacks the required key {key!r}")
        name = _text(d, "name", f"{where}: a slider")
        at = f"{where}: slider '{name}'"
        kind, file = _text(d, "kind", at), _text(d, "file", at)
        check_file_name(file, f"{at}: 'file'")
        if kind not in ("interfacegan", "ganspace"):
            raise ManifestError(f"{at} has unknown kind {kind!r} (interfacegan or ganspace)")
        if kind == "ganspace" and "component" not in d:
            raise ManifestError(f"{at}: a GANSpace slider needs a component")
        rng = d.get("range", [-3.0, 3.0])
        if not (isinstance(rng, list) and len(rng) == 2):
            raise ManifestError(f"{at}: 'range' must be [low, high], not {rng!r:.40}")
        low = finite_number(rng[0], "range low", at, -MAX_EDIT_VALUE, MAX_EDIT_VALUE, ManifestError)
        high = finite_number(rng[1], "range high", at, -MAX_EDIT_VALUE, MAX_EDIT_VALUE, ManifestError)
        if not low < high:
            raise ManifestError(f"{at}: 'range' must be [low, high] with low < high, not [{low:g}, {high:g}]")
        step = finite_number(d.get("step", 0.1), "step", at, 0.0, high - low, ManifestError)
        if step <= 0:
            raise ManifestError(f"{at}: 'step' must be greater than 0")
        component = whole_number(d["component"], "component", at, 0, MAX_COMPONENT, ManifestError) \
            if "component" in d else None
        layer_start = whole_number(d.get("layer_start", 0), "layer_start", at, 0, MAX_LAYER, ManifestError)
        layer_stop = whole_number(d["layer_stop"], "layer_stop", at, 1, MAX_LAYER, ManifestError) \
            if "layer_stop" in d else None
        return cls(
            name=name, kind=kind, file=file, label=_text(d, "label", at, name), group=_text(d, "group", at),
            url=_text(d, "url", at), generator=_text(d, "generator", at),
            component=component, layer_start=layer_start, layer_stop=layer_stop,
            value_range=(low, high), step=step,
        )


@dataclass
class DirectionLibrary:
    """Sliders that can be used now, and those whose files are missing."""

    directions: dict[str, Direction] = field(default_factory=dict)
    missing: list[SliderSpec] = field(default_factory=list)  # files not present
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason) present but unusable here
    specs: list[SliderSpec] = field(default_factory=list)

    def pick(self, values: Sequence[tuple[str, float]]) -> list[tuple[Direction, float]]:
        """``(Direction, value)`` for ``NAME=VALUE`` pairs; an ``EditError`` says why a name cannot be used
        (given twice, its file missing and where to get it, unusable with this generator, unknown)."""
        names = [n for n, _ in values]
        if len(set(names)) != len(names):
            raise EditError("each direction may be given once")
        missing = {s.name: s for s in self.missing}
        for n in names:
            if n in missing and n not in self.directions:
                raise EditError(f"direction '{n}' needs {missing[n].file}, which is not in the directions folder; "
                                f"download it from {missing[n].url or 'its upstream project'}")
            for skipped, why in self.skipped:
                if skipped == n:
                    raise EditError(f"direction '{n}' cannot be used with this generator: {why}")
        ensure_known(names, self.directions)
        return [(self.directions[n], float(v)) for n, v in values]


def read_manifest(folder: Path | None = None) -> list[SliderSpec]:
    """The sliders of ``folder``'s own manifest.toml when it has one, else of the packaged manifest."""
    path: Path | Traversable = packaged_manifest()
    if folder is not None and Path(folder).is_file():
        raise ManifestError(f"{folder} is a file; give the folder that holds the direction files")
    if folder is not None and (Path(folder) / MANIFEST_NAME).exists():
        path = Path(folder) / MANIFEST_NAME  # a folder or FIFO under that name is reported by _read_toml
    if not path.is_file() and not isinstance(path, Path):
        return []
    data = _read_toml(path)
    specs = [SliderSpec.from_toml(d, str(path)) for d in _tables(data, "slider", path)]
    urls = {d.get("file"): d.get("url", "") for d in data.get("download", []) if isinstance(d, dict)}
    for spec in specs:
        spec.url = spec.url or str(urls.get(spec.file, ""))
    names = [s.name for s in specs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise HyperInverterError(f"{path}: slider names must be unique; repeated: {', '.join(sorted(dup))}")
    return specs


def _find(name: str, folders: list[Path]) -> Path | None:
    for f in folders:
        if (f / name).is_file():
            return f / name
    return None


# ----------------------------------------------------------------------------
# GANSpace computed for a generator

COMPUTED_SLIDERS = 10  # the first components of a computed PCA offered as sliders


def computed_dir() -> Path:
    """Where GANSpace computed for a generator is cached (per user: it depends on the generator only)."""
    return user_directions_dir() / "computed"


def generator_key(path: str | Path) -> str:
    """A name for a generator file's computed directions: its name and size (cheap; survives a copy)."""
    p = Path(path)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", p.stem).strip("._") or "generator"
    return f"{stem}-{p.stat().st_size}"


def computed_files(key: str, folder: Path | None = None) -> tuple[Path, Path]:
    """(PCA file, its generated manifest) of generator ``key``."""
    d = Path(folder) if folder is not None else computed_dir()
    return d / f"{key}_pca.pt", d / f"{key}_pca.toml"


def save_computed_ganspace(pca: GanspacePCA, key: str, *, generator_name: str = "", samples: int = 0,
                           seed: int = 0, sliders: int = COMPUTED_SLIDERS, folder: Path | None = None) -> Path:
    """Cache ``pca`` for generator ``key`` with a manifest of its first ``sliders`` components (over all ws).

    Both files are written atomically, the manifest last: a half-finished save is never picked up.
    Returns the manifest's path.
    """
    from hyperinverter_gui.editing.edits import save_ganspace
    from hyperinverter_gui.media.atomic import atomic_write

    pt, toml = computed_files(key, folder)
    pt.parent.mkdir(parents=True, exist_ok=True)
    save_ganspace(pca, pt)
    lines = [
        "# GANSpace computed by HyperInverter Studio for one generator; delete this file and the .pt",
        "# beside it to compute it again. Values are in standard deviations along each component.",
        "[ganspace]",
        f"generator = {_toml_str(generator_name)}",
        f"key = {_toml_str(key)}",
        f"samples = {int(samples)}",
        f"seed = {int(seed)}",
        f"components = {pca.num_components}",
        "",
    ]
    for c in range(min(sliders, pca.num_components)):
        lines += [
            "[[slider]]",
            f'name = "pc{c + 1}"',
            f'label = "Component {c + 1}"',
            'group = "GANSpace (computed for this generator)"',
            'kind = "ganspace"',
            f"file = {_toml_str(pt.name)}",
            f"component = {c}",
            "layer_start = 0",
            "range = [-5.0, 5.0]",
            "step = 0.1",
            "",
        ]
    text = "\n".join(lines)
    return atomic_write(toml, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), ".toml")


def _toml_str(s: str) -> str:
    import json

    return json.dumps(s)  # a JSON string is a valid TOML basic string


def _computed_specs(key: str | None) -> list[SliderSpec]:
    if key is None:
        return []
    _, toml = computed_files(key)
    if not toml.is_file():
        return []
    try:
        data = _read_toml(toml)
        return [SliderSpec.from_toml(d, str(toml)) for d in _tables(data, "slider", toml)]
    except ManifestError as e:  # a cache of ours: a damaged one is recomputed, never fatal
        log.warning("ignoring the damaged computed-directions manifest %s: %s", toml, e)
        return []


def load_library(
    folder: str | Path | None = None, num_ws: int | None = None, img_resolution: int | None = None,
    generator_key: str | None = None,
) -> DirectionLibrary:
    """Read the manifest and the direction files in ``folder``.

    With ``num_ws``/``img_resolution`` given, sliders made for another generator
    (other resolution, layer ranges beyond num_ws) are skipped with a reason.
    Unlisted ``*.pt`` tensors become InterFaceGAN sliders named after the file.
    With ``generator_key``, GANSpace computed for that generator adds its sliders.
    """
    folders = [Path(folder)] if folder is not None else directions_dirs()
    lib = DirectionLibrary()
    lib.specs = read_manifest(Path(folder) if folder is not None else None)
    computed = [s for s in _computed_specs(generator_key) if s.name not in {m.name for m in lib.specs}]
    pca_cache: dict[str, GanspacePCA] = {}
    listed_files = set()
    computed_ids = {id(s) for s in computed}
    for spec in lib.specs + computed:
        listed_files.add(spec.file)
        path = _find(spec.file, [computed_dir()] if id(spec) in computed_ids else folders)
        if path is None:
            lib.missing.append(spec)
            continue
        family_res = FAMILY_RESOLUTION.get(spec.generator)
        if img_resolution is not None and family_res is not None and family_res != img_resolution:
            lib.skipped.append((spec.name, f"made for {spec.generator} ({family_res} px) generators"))
            continue
        try:
            kwargs = dict(label=spec.label, group=spec.group, value_range=spec.value_range, step=spec.step)
            if spec.kind == "interfacegan":
                vec = load_interfacegan_direction(path)
                d = Direction(spec.name, vec, "interfacegan", layer_start=spec.layer_start,
                              layer_stop=spec.layer_stop, **kwargs)
            else:
                if str(path) not in pca_cache:
                    pca_cache[str(path)] = load_ganspace(path)
                assert spec.component is not None
                d = ganspace_direction(pca_cache[str(path)], spec.component, spec.layer_start, spec.layer_stop,
                                       spec.name, **kwargs)
            if num_ws is not None:
                d.delta(num_ws, 0.0)  # validates the layer range and per-layer count
        except HyperInverterError as e:
            lib.skipped.append((spec.name, str(e)))
            continue
        lib.directions[spec.name] = d
    dropped = [p for f in folders if f.is_dir() for p in sorted(f.glob("*.pt"))]
    for path in dropped:
        if path.name in listed_files or path.stem in lib.directions:
            continue
        try:
            vec = load_interfacegan_direction(path)
            d = Direction(path.stem, vec, "interfacegan", label=path.stem.replace("_", " ").capitalize(),
                          group="Your directions")
            if num_ws is not None:
                d.delta(num_ws, 0.0)
        except (EditError, HyperInverterError) as e:
            lib.skipped.append((path.stem, str(e)))
            continue
        lib.directions[path.stem] = d
    return lib
