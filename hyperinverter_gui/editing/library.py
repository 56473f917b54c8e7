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

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from hyperinverter_gui.editing.edits import (
    Direction,
    EditError,
    GanspacePCA,
    ganspace_direction,
    load_ganspace,
    load_interfacegan_direction,
)
from hyperinverter_gui.errors import HyperInverterError
from hyperinverter_gui.host.paths import checkout_directions_dir, user_directions_dir

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
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise HyperInverterError(f"{path}: not valid TOML ({e})") from None


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
    for d in _read_toml(path).get("download", []):
        try:
            out.append(DirectionDownload(**{k: v for k, v in d.items() if k in DirectionDownload.__dataclass_fields__}))
        except TypeError as e:
            raise HyperInverterError(f"{path}: bad download entry {d.get('name', '?')}: {e}") from None
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
    def from_toml(cls, d: dict[str, Any], where: str) -> "SliderSpec":
        try:
            name, kind, file = str(d["name"]), str(d["kind"]), str(d["file"])
        except KeyError as e:
            raise HyperInverterError(f"{where}: a slider lacks the required key {e.args[0]!r}") from None
        if kind not in ("interfacegan", "ganspace"):
            raise HyperInverterError(f"{where}: slider '{name}' has unknown kind {kind!r} (interfacegan or ganspace)")
        if kind == "ganspace" and "component" not in d:
            raise HyperInverterError(f"{where}: GANSpace slider '{name}' needs a component")
        rng = d.get("range", [-3.0, 3.0])
        if not (isinstance(rng, list) and len(rng) == 2 and float(rng[0]) < float(rng[1])):
            raise HyperInverterError(f"{where}: slider '{name}' range must be [low, high]")
        return cls(
            name=name, kind=kind, file=file, label=str(d.get("label", name)), group=str(d.get("group", "")),
            url=str(d.get("url", "")), generator=str(d.get("generator", "")),
            component=int(d["component"]) if "component" in d else None,
            layer_start=int(d.get("layer_start", 0)),
            layer_stop=int(d["layer_stop"]) if "layer_stop" in d else None,
            value_range=(float(rng[0]), float(rng[1])), step=float(d.get("step", 0.1)),
        )


@dataclass
class DirectionLibrary:
    """Sliders that can be used now, and those whose files are missing."""

    directions: dict[str, Direction] = field(default_factory=dict)
    missing: list[SliderSpec] = field(default_factory=list)  # files not present
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason) present but unusable here
    specs: list[SliderSpec] = field(default_factory=list)


def read_manifest(folder: Path | None = None) -> list[SliderSpec]:
    """The sliders of ``folder``'s own manifest.toml when it has one, else of the packaged manifest."""
    path: Path | Traversable = packaged_manifest()
    if folder is not None and (Path(folder) / MANIFEST_NAME).is_file():
        path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return []
    data = _read_toml(path)
    specs = [SliderSpec.from_toml(d, str(path)) for d in data.get("slider", [])]
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
    return [SliderSpec.from_toml(d, str(toml)) for d in _read_toml(toml).get("slider", [])]


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
