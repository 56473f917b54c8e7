"""Convert each model file once into a safetensors cache, then start from the cache.

A cache entry is ``<name>-<key>.safetensors`` (tensors) plus ``<name>-<key>.json``
(architecture and the source file's size, mtime and sha256). An entry is used
only while the source file's size and mtime are unchanged; otherwise the model
is converted again. A cache folder that cannot be written only costs speed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from hyperinverter_gui.catalog.locks import locked
from hyperinverter_gui.errors import ModelFileError
from hyperinverter_gui.formats import loading
from hyperinverter_gui.formats.guard import DATA_ERRORS
from hyperinverter_gui.media.atomic import atomic_write
from hyperinverter_gui.networks.hyperinverter import HyperInverter, HyperInverterConfig
from hyperinverter_gui.networks.hypernetwork import TargetLayer
from hyperinverter_gui.networks.stylegan2 import Generator, GeneratorConfig

# 2: entries are only written from models whose weights were checked finite (version 1 entries may
# hold NaN from a damaged file, so they are converted again).
CACHE_VERSION = 2
log = logging.getLogger(__name__)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _source_info(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _entry_paths(cache: Path, kind: str, path: Path) -> tuple[Path, Path]:
    key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    base = cache / kind / f"{path.stem}-{key}"
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def _valid_meta(json_path: Path, tensors_path: Path, source: dict[str, Any]) -> dict[str, Any] | None:
    if not (json_path.exists() and tensors_path.exists()):
        return None
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("discarding a damaged model cache entry %s (not valid JSON); it is rebuilt", json_path.name)
        return None
    src = meta.get("source", {}) if isinstance(meta, dict) else None
    if not isinstance(src, dict):
        log.warning("discarding a damaged model cache entry %s (malformed); it is rebuilt", json_path.name)
        return None
    if meta.get("version") != CACHE_VERSION or src.get("size") != source["size"] or \
            src.get("mtime_ns") != source["mtime_ns"]:
        return None
    return meta


def _write_entry(tensors_path: Path, json_path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                 source_path: Path) -> bool:
    from safetensors.torch import save_file

    try:
        tensors_path.parent.mkdir(parents=True, exist_ok=True)
        meta = {**meta, "version": CACHE_VERSION}
        meta["source"] = {**_source_info(source_path), "sha256": file_sha256(source_path)}
        flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        atomic_write(tensors_path, lambda tmp: save_file(flat, tmp), ".safetensors")
        atomic_write(json_path, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1)), ".json")
        return True
    except OSError as e:
        log.warning("could not write the model cache in %s: %s", tensors_path.parent, e)
        return False


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"cache file {path} is unreadable ({e})") from None


def _cached_generator(path: Path, tensors_path: Path, json_path: Path) -> Generator | None:
    meta = _valid_meta(json_path, tensors_path, _source_info(path))
    if meta is None:
        return None
    try:
        cfg = GeneratorConfig.from_json(meta["config"])
        # Entries are written only from checked models: skip re-reading every weight for NaN.
        return loading.generator_from_state_dict(cfg, _read_tensors(tensors_path), path.name, check_finite=False)
    except (ModelFileError, *DATA_ERRORS) as e:
        log.warning("ignoring a damaged cache entry for %s: %s", path.name, e)
        return None


def load_generator_cached(path: str | Path, cache: Path | None) -> Generator:
    """Like :func:`loading.load_generator`, through the cache when ``cache`` is a folder.

    Right after converting, too, the model is served from the cache file: memory-mapped tensors,
    whose pages the editor hands back to the OS between uses (``memory.release_pages``).
    """
    path = Path(path)
    if cache is None:
        return loading.load_generator(path)
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    tensors_path, json_path = _entry_paths(cache, "generators", path)
    g = _cached_generator(path, tensors_path, json_path)
    if g is not None:
        return g
    # One process converts; another starting meanwhile waits, then finds the entry written.
    with locked(tensors_path, timeout=900):
        g = _cached_generator(path, tensors_path, json_path)
        if g is not None:
            return g
        g = loading.load_generator(path)
        if _write_entry(tensors_path, json_path, g.state_dict(), {"kind": "generator", "config": g.cfg.to_json()},
                        path):
            return _cached_generator(path, tensors_path, json_path) or g
        return g


def _hi_config_json(cfg: HyperInverterConfig) -> dict[str, Any]:
    return {
        "backbone": cfg.backbone, "w_encoder_backbone": cfg.w_encoder_backbone, "n_styles": cfg.n_styles,
        "hidden_dim": cfg.hidden_dim,
        "targets": [[t.name, list(t.shape), t.feature_index] for t in cfg.targets],
    }


def _hi_config_from_json(d: dict[str, Any]) -> HyperInverterConfig:
    targets = [TargetLayer(n, tuple(s), int(i)) for n, s, i in d["targets"]]
    return HyperInverterConfig(d["backbone"], d["w_encoder_backbone"], int(d["n_styles"]), int(d["hidden_dim"]),
                               targets)


def _cached_hyperinverter(checkpoint: Path, generator: Generator, tensors_path: Path,
                          json_path: Path) -> HyperInverter | None:
    meta = _valid_meta(json_path, tensors_path, _source_info(checkpoint))
    if meta is None:
        return None
    try:
        cfg = _hi_config_from_json(meta["config"])
        shapes = generator.synthesis.weight_shapes()
        if not (all(t.name in shapes and tuple(shapes[t.name]) == t.shape for t in cfg.targets)
                and cfg.n_styles == meta["config"]["n_styles"] and meta.get("resolution") == generator.img_resolution):
            return None
        sd = _read_tensors(tensors_path)
        parts = {p: {k[len(p) + 1:]: v for k, v in sd.items() if k.startswith(p + ".")}
                 for p in ("w_encoder", "w_bar_encoder", "hypernet")}
        return loading.build_hyperinverter(generator, cfg, parts["w_encoder"], parts["w_bar_encoder"],
                                           parts["hypernet"], checkpoint.name, check_finite=False)
    except (ModelFileError, *DATA_ERRORS) as e:
        log.warning("ignoring a damaged cache entry for %s: %s", checkpoint.name, e)
        return None


def load_hyperinverter_cached(
    checkpoint: str | Path, generator: Generator, w_encoder: str | Path | None, cache: Path | None
) -> HyperInverter:
    """Like :func:`loading.load_hyperinverter`, through the cache (only E1, E2 and the hypernetwork are kept).

    As for the generator, a freshly converted model is served from its (memory-mapped) cache file.
    """
    checkpoint = Path(checkpoint)
    if cache is None or w_encoder is not None:
        return loading.load_hyperinverter(checkpoint, generator, w_encoder)
    if not checkpoint.exists():
        raise ModelFileError(f"model file not found: {checkpoint}")
    tensors_path, json_path = _entry_paths(cache, "inverters", checkpoint)
    model = _cached_hyperinverter(checkpoint, generator, tensors_path, json_path)
    if model is not None:
        return model
    with locked(tensors_path, timeout=900):
        model = _cached_hyperinverter(checkpoint, generator, tensors_path, json_path)
        if model is not None:
            return model
        model = loading.load_hyperinverter(checkpoint, generator)
        tensors = {f"{p}.{k}": v for p in ("w_encoder", "w_bar_encoder", "hypernet")
                   for k, v in getattr(model, p).state_dict().items()}
        if _write_entry(tensors_path, json_path, tensors,
                        {"kind": "hyperinverter", "config": _hi_config_json(model.cfg),
                         "resolution": generator.img_resolution}, checkpoint):
            return _cached_hyperinverter(checkpoint, generator, tensors_path, json_path) or model
        return model
