"""Seeded, bounded mutation fuzzing of the files the core API reads (issue 19, core half).

Valid small files in every format (NVIDIA network pickle, TensorFlow pickle, rosinality ``.pt``,
a HyperInverter-like checkpoint, a saved inversion, an editing session, a directions manifest,
an alignment transform) are mutated: truncated, bytes flipped, chunks dropped or repeated, and
values of the wrong type or out of range put into their structure. For every mutant the reader
must either succeed with finite numbers, or raise a ``HyperInverterError`` with a one-line
message. Anything else (ValueError, IndexError, RecursionError, ...) fails the test, naming the
seed and the mutation so it can be replayed. Inputs are small (tens of KB), so no case can run
long; the iteration counts are fixed, the seeds too.
"""

from __future__ import annotations

import json
import math
import random
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import converter_formats as cf
import numpy as np
import official_formats as of
import pytest
import torch

from hyperinverter_gui.alignment import AlignTransform
from hyperinverter_gui.alignment.geometry import ffhq_quad
from hyperinverter_gui.app.session import SESSION_FORMAT, EditSession
from hyperinverter_gui.catalog import discovery
from hyperinverter_gui.editing import library
from hyperinverter_gui.errors import HyperInverterError
from hyperinverter_gui.formats.loading import load_generator
from hyperinverter_gui.inversion.result import (
    InversionResult,
    WeightDeltas,
    load_inversion,
    save_inversion,
)

# A generator small enough that a mutation often lands in the structure, not in tensor data.
SMALL = {"z_dim": 8, "w_dim": 16, "img_resolution": 8, "channel_base": 64, "channel_max": 8, "mapping_layers": 2}

WEIRD_VALUES: list[Any] = [None, "x", "", -1, 0, 2**40, 1e308, -1e308, 1.5, True, [], [1, "a"], {}, {"a": 1},
                           "../../etc/passwd", [[1e308, 1e308]] * 5]
WEIRD_TENSORS: list[Callable[[torch.Tensor], Any]] = [
    lambda t: t.reshape(-1),  # wrong rank
    lambda t: t[None],
    lambda t: torch.full_like(t, float("nan")),
    lambda t: torch.full_like(t, float("inf")),
    lambda t: t.to(torch.int64),
    lambda t: t.to(torch.float64),
    lambda t: torch.zeros(0),
    lambda t: torch.tensor(1.0),
    lambda t: "a string",
    lambda t: [1, 2, 3],
]


# --------------------------------------------------------------------------------------------
# Byte-level mutations


def mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    op = rng.choice(["truncate", "flip", "flip", "drop", "repeat", "zero"])
    n = len(data)
    if op == "truncate":
        cut = rng.randrange(0, n)
        return data[:cut], f"truncate at {cut}"
    if op == "flip":
        out = bytearray(data)
        where = [rng.randrange(n) for _ in range(rng.randint(1, 8))]
        for i in where:
            out[i] ^= 1 << rng.randrange(8)
        return bytes(out), f"flip bits at {where}"
    a = rng.randrange(n)
    b = min(n, a + rng.randint(1, 64))
    if op == "drop":
        return data[:a] + data[b:], f"drop [{a}:{b}]"
    if op == "repeat":
        return data[:b] + data[a:b] + data[b:], f"repeat [{a}:{b}]"
    return data[:a] + bytes(b - a) + data[b:], f"zero [{a}:{b}]"


# --------------------------------------------------------------------------------------------
# Structure-level mutations ("change types")


def mutate_json(obj: Any, rng: random.Random) -> tuple[Any, str]:
    """Replace one value somewhere in a JSON-like tree by a weird one (or delete a key)."""
    paths: list[tuple] = []

    def walk(o: Any, path: tuple) -> None:
        paths.append(path)
        if isinstance(o, dict):
            for k, v in o.items():
                walk(v, path + (k,))
        elif isinstance(o, list):
            for i, v in enumerate(o):
                walk(v, path + (i,))

    walk(obj, ())
    path = rng.choice(paths[1:] or paths)
    obj = json.loads(json.dumps(obj))
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    if isinstance(parent, dict) and rng.random() < 0.2:
        del parent[path[-1]]
        return obj, f"delete {path}"
    value = rng.choice(WEIRD_VALUES)
    if not path:
        return value, f"replace root by {value!r:.30}"
    parent[path[-1]] = value
    return obj, f"set {path} = {value!r:.30}"


def toml_text(data: dict) -> str:
    """A tiny TOML writer for the manifest's shapes (tables of scalars and lists)."""
    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, float):
            return "inf" if v == math.inf else "-inf" if v == -math.inf else repr(v)
        if isinstance(v, int):
            return str(v)
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {scalar(x)}" for k, x in v.items()) + "}"
        return '"None"'

    lines = []
    for key, items in data.items():
        if isinstance(items, list) and all(isinstance(i, dict) for i in items):
            for item in items:
                lines.append(f"[[{key}]]")
                lines += [f"{json.dumps(k)} = {scalar(v)}" for k, v in item.items() if v is not None]
        elif items is not None:
            lines.insert(0, f"{json.dumps(key)} = {scalar(items)}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Valid seed files


def small_tree(seed: int = 0) -> of.PersistentNode:
    return of.stylegan2_generator_tree(seed=seed, **SMALL)


def mutate_tree(tree: of.PersistentNode, rng: random.Random) -> str:
    """Put a weird value where one parameter, buffer or init kwarg of the network pickle was."""
    nodes = []

    def walk(n: of.PersistentNode, path: str) -> None:
        nodes.append((n, path))
        for k, m in n.modules.items():
            walk(m, f"{path}.{k}")

    walk(tree, "G")
    node, path = rng.choice(nodes)
    slots = [("params", k) for k in node.params] + [("buffers", k) for k in node.buffers]
    if not slots or rng.random() < 0.15:
        key = rng.choice(list(tree.init_kwargs) or ["img_resolution"])
        value = rng.choice(WEIRD_VALUES)
        tree.init_kwargs[key] = value
        return f"init_kwargs[{key}] = {value!r:.30}"
    kind, key = rng.choice(slots)
    old = getattr(node, kind)[key]
    new = rng.choice(WEIRD_TENSORS)(old)
    node.params.pop(key, None)
    node.buffers[key] = new  # buffers are pickled as given (params would be wrapped in Parameter)
    return f"{path}.{key} -> {type(new).__name__} {list(new.shape) if isinstance(new, torch.Tensor) else ''}"


def seed_transform() -> dict:
    pts = np.array([[40.0, 50.0], [80.0, 50.0], [60.0, 70.0], [45.0, 90.0], [75.0, 90.0]])
    return AlignTransform(quad=ffhq_quad(pts), source_size=(128, 128), output_size=64, points5=pts).to_dict()


def seed_result() -> InversionResult:
    g = torch.Generator().manual_seed(0)
    return InversionResult(torch.randn(8, 16, generator=g),
                           WeightDeltas({"b4.conv1.weight": torch.randn(8, 8, 3, 3, generator=g) * 0.01}),
                           torch.rand(3, 8, 8, generator=g), torch.rand(3, 8, 8, generator=g))


SEED_SESSION = {"photo": "face.png", "values": {"age": 1.5, "smile": -2.0},
                "points5": [[40.0, 50.0], [80.0, 50.0], [60.0, 70.0], [45.0, 90.0], [75.0, 90.0]],
                "transform": None, "models": {"generator": "G.pkl"}}

SEED_MANIFEST = {
    "slider": [
        {"name": "age", "label": "Age", "group": "InterFaceGAN", "kind": "interfacegan", "file": "age.pt",
         "range": [-5.0, 5.0], "step": 0.1, "layer_start": 0, "layer_stop": 8},
        {"name": "pc1", "kind": "ganspace", "file": "pca.pt", "component": 1, "range": [-3.0, 3.0]},
    ],
    "download": [{"name": "age", "file": "age.pt", "url": "https://example.invalid/age.pt", "size": 10}],
}


# --------------------------------------------------------------------------------------------
# Readers under test, and what "success" must mean for each


def _finite_module(m: torch.nn.Module) -> None:
    for k, v in m.state_dict().items():
        if v.is_floating_point():
            assert torch.isfinite(v).all(), f"loaded with non-finite {k}"


def read_generator(path: Path) -> None:
    _finite_module(load_generator(path))


def read_identify(path: Path) -> None:
    discovery.identify(path, [])


def read_inversion(path: Path) -> None:
    r = load_inversion(path)
    for t in (r.w, r.phase1, r.image, *r.deltas.values()):
        assert torch.isfinite(t).all()


def read_session(path: Path) -> None:
    s = EditSession.load(path)
    assert all(math.isfinite(v) for v in s.values.values())


def read_manifest(path: Path) -> None:
    lib = library.load_library(path.parent, num_ws=8)
    library.direction_downloads(path)
    for d in lib.directions.values():
        assert torch.isfinite(d.vector).all()
        lo, hi = d.value_range
        assert math.isfinite(lo) and math.isfinite(hi) and lo < hi


def read_transform(path: Path) -> None:
    t = AlignTransform.load(path)
    assert np.isfinite(t.quad).all() and t.output_size >= 1


def check(reader: Callable[[Path], None], path: Path, label: str) -> str:
    """Run the reader; only success or a one-line HyperInverterError may come out."""
    try:
        reader(path)
    except HyperInverterError as e:
        assert str(e) and "\n" not in str(e), f"{label}: a multi-line message: {e!r}"
        return type(e).__name__
    except Exception as e:  # noqa: BLE001 - this is what the test is looking for
        pytest.fail(f"{label}: {type(e).__name__} escaped: {e!s:.300}")
    return "ok"


# --------------------------------------------------------------------------------------------
# The fuzz targets


def _bytes_target(tmp_path: Path, name: str, valid: bytes, reader: Callable[[Path], None], seed: int,
                  iterations: int) -> dict[str, int]:
    rng = random.Random(seed)
    outcomes: dict[str, int] = {}
    for i in range(iterations):
        data, how = mutate_bytes(valid, rng)
        path = tmp_path / f"{i:03d}" / name
        path.parent.mkdir()
        path.write_bytes(data)
        kind = check(reader, path, f"{name} seed={seed} iteration={i} ({how})")
        outcomes[kind] = outcomes.get(kind, 0) + 1
    return outcomes


def test_fuzz_network_pickle_bytes(tmp_path):
    valid = of.write_nvidia_pickle(tmp_path / "valid.pkl", small_tree()).read_bytes()
    read_generator(tmp_path / "valid.pkl")  # the seed file itself is fine
    out = _bytes_target(tmp_path, "G.pkl", valid, read_generator, seed=1901, iterations=60)
    assert sum(out.values()) == 60 and len(out) > 1, out


def test_fuzz_network_pickle_types(tmp_path):
    rng = random.Random(1902)
    outcomes = {}
    for i in range(40):
        tree = small_tree()
        how = mutate_tree(tree, rng)
        path = of.write_nvidia_pickle(tmp_path / f"G{i:03d}.pkl", tree)
        for reader in (read_generator, read_identify):
            kind = check(reader, path, f"G.pkl seed=1902 iteration={i} ({how}) {reader.__name__}")
            outcomes[kind] = outcomes.get(kind, 0) + 1
    assert outcomes.get("ok", 0) < 80, outcomes  # most type changes must be refused


def test_fuzz_tf_pickle_bytes(tmp_path):
    nv = small_tree().flat()
    gs = cf.tf_generator(nv, static_kwargs=cf.tf_static_kwargs(nv, SMALL["channel_base"], SMALL["channel_max"]))
    valid = cf.write_tf_pickle(tmp_path / "valid.pkl", (gs, cf.tf_discriminator(), gs)).read_bytes()
    out = _bytes_target(tmp_path, "tf.pkl", valid, read_generator, seed=1903, iterations=25)
    assert sum(out.values()) == 25


def test_fuzz_rosinality_checkpoint_bytes(tmp_path):
    valid = cf.write_rosinality_pt(tmp_path / "valid.pt", small_tree().flat()).read_bytes()
    read_generator(tmp_path / "valid.pt")
    out = _bytes_target(tmp_path, "g.pt", valid, read_generator, seed=1904, iterations=30)
    assert sum(out.values()) == 30


def test_fuzz_rosinality_checkpoint_types(tmp_path):
    rng = random.Random(1905)
    base = cf.rosinality_state_dict(small_tree().flat())
    for i in range(20):
        g = OrderedDict((k, v.clone()) for k, v in base.items())
        key = rng.choice(list(g))
        g[key] = rng.choice(WEIRD_TENSORS)(g[key])
        path = tmp_path / f"g{i:03d}.pt"
        try:
            torch.save({"g_ema": g, "latent_avg": torch.zeros(SMALL["w_dim"])}, path)
        except Exception:  # noqa: BLE001, S112 - torch.save refuses some weird objects: nothing to read then
            continue
        check(read_generator, path, f"g.pt seed=1905 iteration={i} ({key} -> {type(g[key]).__name__})")


def test_fuzz_checkpoint_index_bytes(tmp_path):
    """A HyperInverter-like checkpoint (its key index, as ``weights list`` reads it); the real
    424 MB test checkpoint is too large to mutate by the hundred."""
    sd = {"w_bar_encoder.styles.0.convs.0.weight": torch.randn(4, 4, 3, 3),
          "hypernet.weight_regressors.b4_conv1_weight.w1": torch.randn(8, 32),
          "hypernet.weight_regressors.b4_conv1_weight.w2": torch.randn(8, 72)}
    torch.save({"state_dict": sd, "opts": {"output_size": 32}}, tmp_path / "valid.pt")
    valid = (tmp_path / "valid.pt").read_bytes()
    out = _bytes_target(tmp_path, "HI.pt", valid, read_identify, seed=1906, iterations=25)
    assert sum(out.values()) == 25


def test_fuzz_inversion_bytes(tmp_path):
    valid = save_inversion(seed_result(), tmp_path / "valid.safetensors").read_bytes()
    out = _bytes_target(tmp_path, "inv.safetensors", valid, read_inversion, seed=1907, iterations=30)
    assert sum(out.values()) == 30 and out.get("InversionFileError", 0) > 0, out


def test_fuzz_session_fields(tmp_path):
    rng = random.Random(1908)
    for i in range(30):
        info, how = mutate_json(SEED_SESSION, rng)
        path = tmp_path / f"{i:03d}.hisession"
        save_inversion(seed_result(), path, metadata={"session_format": SESSION_FORMAT, "session": json.dumps(info)})
        check(read_session, path, f"session seed=1908 iteration={i} ({how})")


def test_fuzz_session_bytes(tmp_path):
    meta = {"session_format": SESSION_FORMAT, "session": json.dumps(SEED_SESSION)}
    valid = save_inversion(seed_result(), tmp_path / "valid.hisession", metadata=meta).read_bytes()
    _bytes_target(tmp_path, "s.hisession", valid, read_session, seed=1909, iterations=15)


def _directions_folder(d: Path) -> None:
    g = torch.Generator().manual_seed(3)
    torch.save(torch.randn(1, 512, generator=g), d / "age.pt")
    torch.save({"mean": torch.randn(1, 512, generator=g), "comp": torch.randn(4, 1, 512, generator=g),
                "std": torch.rand(4, generator=g)}, d / "pca.pt")


def test_fuzz_directions_manifest_fields(tmp_path):
    rng = random.Random(1910)
    for i in range(30):
        data, how = mutate_json(SEED_MANIFEST, rng)
        d = tmp_path / f"{i:03d}"
        d.mkdir()
        _directions_folder(d)
        if not isinstance(data, dict):
            data = {"slider": data}
        (d / "manifest.toml").write_text(toml_text(data), encoding="utf-8")
        check(read_manifest, d / "manifest.toml", f"manifest seed=1910 iteration={i} ({how})")


def test_fuzz_directions_manifest_bytes(tmp_path):
    valid = toml_text(SEED_MANIFEST).encode()
    rng = random.Random(1911)
    for i in range(15):
        data, how = mutate_bytes(valid, rng)
        d = tmp_path / f"{i:03d}"
        d.mkdir()
        _directions_folder(d)
        (d / "manifest.toml").write_bytes(data)
        check(read_manifest, d / "manifest.toml", f"manifest seed=1911 iteration={i} ({how})")


def test_fuzz_direction_files(tmp_path):
    """The direction files themselves: InterFaceGAN tensors and GANSpace PCAs of odd types."""
    rng = random.Random(1912)
    for i in range(15):
        d = tmp_path / f"{i:03d}"
        d.mkdir()
        _directions_folder(d)
        if rng.random() < 0.5:
            torch.save(rng.choice(WEIRD_TENSORS)(torch.randn(1, 512)), d / "age.pt")
        else:
            pca = torch.load(d / "pca.pt", weights_only=True)
            key = rng.choice(["mean", "comp", "std"])
            pca[key] = rng.choice(WEIRD_TENSORS)(pca[key])
            torch.save(pca, d / "pca.pt")
        (d / "manifest.toml").write_text(toml_text(SEED_MANIFEST), encoding="utf-8")
        lib = library.load_library(d, num_ws=8)  # bad files are skipped with a reason, never raised
        for direction in lib.directions.values():
            assert torch.isfinite(direction.vector).all()


def test_fuzz_direction_file_bytes(tmp_path):
    """Damaged direction files are skipped with a reason by the library, never raised."""
    d0 = tmp_path / "valid"
    d0.mkdir()
    _directions_folder(d0)
    rng = random.Random(1915)
    for i in range(20):
        d = tmp_path / f"{i:03d}"
        d.mkdir()
        _directions_folder(d)
        name = rng.choice(["age.pt", "pca.pt"])
        data, how = mutate_bytes((d0 / name).read_bytes(), rng)
        (d / name).write_bytes(data)
        (d / "manifest.toml").write_text(toml_text(SEED_MANIFEST), encoding="utf-8")
        check(read_manifest, d / "manifest.toml", f"{name} seed=1915 iteration={i} ({how})")


def test_fuzz_alignment_transform(tmp_path):
    rng = random.Random(1913)
    valid = seed_transform()
    for i in range(30):
        data, how = mutate_json(valid, rng)
        path = tmp_path / f"{i:03d}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        check(read_transform, path, f"transform seed=1913 iteration={i} ({how})")
    (tmp_path / "bytes").mkdir()
    out = _bytes_target(tmp_path / "bytes", "t.json", json.dumps(valid).encode(), read_transform, seed=1914,
                        iterations=15)
    assert sum(out.values()) == 15
