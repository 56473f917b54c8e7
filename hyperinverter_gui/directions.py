"""The slider library: ``directions/manifest.toml`` plus any direction files users drop in."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .editing import Direction, EditError, GanspacePCA, ganspace_direction, load_ganspace, load_interfacegan_direction
from .errors import HyperInverterError

MANIFEST_NAME = "manifest.toml"
# Generator families the manifest's directions were found for, by resolution.
FAMILY_RESOLUTION = {"ffhq": 1024, "church": 256}


def default_directions_dir() -> Path:
    """``directions/`` at the repository root (next to the package)."""
    return Path(__file__).resolve().parent.parent / "directions"


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


def read_manifest(folder: Path) -> list[SliderSpec]:
    path = folder / MANIFEST_NAME
    if not path.exists():
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


def load_library(
    folder: str | Path | None = None, num_ws: int | None = None, img_resolution: int | None = None
) -> DirectionLibrary:
    """Read the manifest and the direction files in ``folder``.

    With ``num_ws``/``img_resolution`` given, sliders made for another generator
    (other resolution, layer ranges beyond num_ws) are skipped with a reason.
    Unlisted ``*.pt`` tensors become InterFaceGAN sliders named after the file.
    """
    folder = Path(folder) if folder is not None else default_directions_dir()
    lib = DirectionLibrary()
    lib.specs = read_manifest(folder)
    pca_cache: dict[str, GanspacePCA] = {}
    listed_files = set()
    for spec in lib.specs:
        listed_files.add(spec.file)
        path = folder / spec.file
        if not path.exists():
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
    for path in sorted(folder.glob("*.pt")) if folder.exists() else []:
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
