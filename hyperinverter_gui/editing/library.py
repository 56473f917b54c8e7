"""The slider library: the packaged manifest of published directions plus any direction files users drop in.

Direction files are looked up in the drop folders (a checkout's ``directions/``, then the per-user
``directions`` folder; see ``host.paths``). A folder given explicitly (``--directions DIR``) is the
only one searched, and its own ``manifest.toml``, if it has one, replaces the packaged manifest.
"""

from __future__ import annotations

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
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise HyperInverterError(f"{path}: not valid TOML ({e})") from None
    specs = [SliderSpec.from_toml(d, str(path)) for d in data.get("slider", [])]
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


def load_library(
    folder: str | Path | None = None, num_ws: int | None = None, img_resolution: int | None = None
) -> DirectionLibrary:
    """Read the manifest and the direction files in ``folder``.

    With ``num_ws``/``img_resolution`` given, sliders made for another generator
    (other resolution, layer ranges beyond num_ws) are skipped with a reason.
    Unlisted ``*.pt`` tensors become InterFaceGAN sliders named after the file.
    """
    folders = [Path(folder)] if folder is not None else directions_dirs()
    lib = DirectionLibrary()
    lib.specs = read_manifest(Path(folder) if folder is not None else None)
    pca_cache: dict[str, GanspacePCA] = {}
    listed_files = set()
    for spec in lib.specs:
        listed_files.add(spec.file)
        path = _find(spec.file, folders)
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
                if spec.file not in pca_cache:
                    pca_cache[spec.file] = load_ganspace(path)
                assert spec.component is not None
                d = ganspace_direction(pca_cache[spec.file], spec.component, spec.layer_start, spec.layer_stop,
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
