"""Bad files and numbers entering through the core API: a catalogue of cases (issue 19, core half).

Every case builds its bad input in a folder of its own, calls one core function, and asserts:
the exact ``HyperInverterError`` subclass (never ValueError/TypeError/AttributeError/...), a
one-line message naming the file and/or the field, and that no file in the folder changed
(hashed before and after). Cases whose input is a cache or memo of ours assert the opposite
promise: discarded with a notice and rebuilt, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import converter_formats as cf
import numpy as np
import official_formats as of
import pytest
import torch

from hyperinverter_gui.alignment import (
    AlignTransform,
    align_face,
    as_points5,
    load_photo,
)
from hyperinverter_gui.alignment.errors import LandmarkError, TransformFileError
from hyperinverter_gui.app.session import SESSION_FORMAT, EditSession
from hyperinverter_gui.catalog import discovery
from hyperinverter_gui.catalog.download import DownloadError
from hyperinverter_gui.editing import edits, library
from hyperinverter_gui.editing.edits import DirectionFileError, EditError
from hyperinverter_gui.errors import (
    HyperInverterError,
    ImageFileError,
    InversionFileError,
    ManifestError,
    ModelFileError,
    ModelStructureError,
    NonFiniteWeightsError,
    SessionFileError,
)
from hyperinverter_gui.formats.loading import load_generator, load_hyperinverter
from hyperinverter_gui.inversion.result import (
    INVERSION_FORMAT,
    InversionResult,
    WeightDeltas,
    load_inversion,
    save_inversion,
)

# --------------------------------------------------------------------------------------------
# Helpers


def folder_hash(root: Path) -> dict[str, str]:
    """Every entry under ``root`` -> digest of its content (FIFOs and folders by kind)."""
    out = {}
    for p in sorted(root.rglob("*")):
        mode = os.lstat(p).st_mode
        rel = str(p.relative_to(root))
        if stat.S_ISREG(mode):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "dir" if stat.S_ISDIR(mode) else "special"
    return out


class _Reduce:
    """Pickles as ``fn(*args)``: tensor-rebuild calls with arguments of our choosing."""

    def __init__(self, fn: Callable, args: tuple):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _tensor_reduce(t: torch.Tensor, **changes: Any) -> _Reduce:
    fn, args = t.__reduce_ex__(2)
    args = list(args)
    for i, key in enumerate(("storage", "offset", "size", "stride")):
        if key in changes:
            args[i] = changes[key]
    return _Reduce(fn, tuple(args))


def _tree(seed: int = 0) -> of.PersistentNode:
    return of.stylegan2_generator_tree(seed=seed)


def _node(tree: of.PersistentNode, dotted: str) -> of.PersistentNode:
    node = tree
    for part in dotted.split("."):
        node = node.modules[part]
    return node


def _write_tree(d: Path, tree: of.PersistentNode, name: str = "G.pkl") -> Path:
    return of.write_nvidia_pickle(d / name, tree)


def _gen_pickle(d: Path, edit: Callable[[of.PersistentNode], None], name: str = "G.pkl") -> Path:
    tree = _tree()
    edit(tree)
    return _write_tree(d, tree, name)


def _set_param(dotted: str, key: str, value: Any, buffer: bool = False) -> Callable[[of.PersistentNode], None]:
    def edit(tree: of.PersistentNode) -> None:
        node = _node(tree, dotted)
        if buffer:
            node.buffers[key] = value
        else:
            node.params[key] = value
    return edit


def _bad_buffer(dotted: str, key: str, value: Any) -> Callable[[of.PersistentNode], None]:
    """A buffer slot gets ``value`` as pickled (params are wrapped in Parameter by the writer)."""
    def edit(tree: of.PersistentNode) -> None:
        node = _node(tree, dotted)
        node.params.pop(key, None)
        node.buffers[key] = value
    return edit


def _with_nan(t: torch.Tensor, value: float = float("nan")) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[0] = value
    return t


def _memo_bomb(depth: int, shared: bool) -> of.PersistentNode:
    """Sub-modules 'a' and 'b' of every level are one object (memo references) when ``shared``."""
    real = _tree()
    node = of.PersistentNode("Leaf", params={"w": torch.zeros(1)})
    for _ in range(depth):
        node = of.PersistentNode("Block", modules={"a": node, "b": node if shared else of.PersistentNode("Leaf")})
    return of.PersistentNode("Generator", modules={"synthesis": node}, init_kwargs=real.init_kwargs)


def _rosinality(d: Path, edit: Callable[[dict], None], name: str = "g.pt") -> Path:
    nv = _tree().flat()
    path = cf.write_rosinality_pt(d / name, nv)
    ckpt = torch.load(path, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, path)
    return path


def _tf_pickle(d: Path, key: str, text: bool = False) -> Path:
    nv = _tree().flat()
    nv[key] = _with_nan(nv[key])
    gs = cf.tf_generator(nv, static_kwargs=cf.tf_static_kwargs(nv, 512, 32))
    if text:  # one variable holding strings instead of numbers
        variables = gs.state["components"]["mapping"].state["variables"]
        variables[0] = (variables[0][0], np.array(["a", "b"]))
    return cf.write_tf_pickle(d / "tf.pkl", (gs, cf.tf_discriminator(), gs))


def _tf_memo_bomb(d: Path, depth: int) -> Path:
    """Components 'a' and 'b' of every level are one pickled object (memo references)."""
    net = cf.Network("leaf", "f", {}, {"w": np.zeros(1)})
    for _ in range(depth):
        net = cf.Network("n", "f", {}, {}, components={"a": net, "b": net})
    gs = cf.Network("Gs", "G_main", {"resolution": 32}, {}, components={"mapping": net, "synthesis": net})
    return cf.write_tf_pickle(d / "tf.pkl", (gs, cf.tf_discriminator(), gs))


def _manifest(d: Path, text: str, name: str = "models.toml") -> Path:
    (d / name).write_text(text, encoding="utf-8")
    return d / name


MODEL_ENTRY = 'name = "g"\nrole = "generator"\nurl = "https://example.invalid/g.pkl"\n'


def _model_manifest(d: Path, extra: str) -> Callable[[], Any]:
    path = _manifest(d, "[[model]]\n" + MODEL_ENTRY + extra)
    return lambda: discovery.load_manifest(path)


SLIDER = 'name = "age"\nkind = "interfacegan"\nfile = "age.pt"\n'


def _slider_manifest(d: Path, body: str) -> Callable[[], Any]:
    torch.save(torch.randn(1, 512), d / "age.pt")
    _manifest(d, body, "manifest.toml")
    return lambda: library.load_library(d, num_ws=8)


def _slider(d: Path, extra: str) -> Callable[[], Any]:
    return _slider_manifest(d, "[[slider]]\n" + SLIDER + extra)


def _tiny_result(num_ws: int = 8, w_dim: int = 512, res: int = 32) -> InversionResult:
    g = torch.Generator().manual_seed(0)
    return InversionResult(
        torch.randn(num_ws, w_dim, generator=g), WeightDeltas({"b4.conv1.weight": torch.randn(4, 4, 3, 3, generator=g)}),
        torch.rand(3, res, res, generator=g) * 2 - 1, torch.rand(3, res, res, generator=g) * 2 - 1,
    )


def _inversion(d: Path, truncate: int = 0, **replace: torch.Tensor) -> Callable[[], Any]:
    from safetensors.torch import save_file

    r = _tiny_result()
    tensors = {"w": r.w, "phase1": r.phase1, "image": r.image, "delta.b4.conv1.weight": r.deltas["b4.conv1.weight"]}
    tensors.update(replace)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(d / "inv.safetensors"),
              metadata={"format": INVERSION_FORMAT})
    if truncate:
        data = (d / "inv.safetensors").read_bytes()
        (d / "inv.safetensors").write_bytes(data[:-truncate])
    return lambda: load_inversion(d / "inv.safetensors")


def _session(d: Path, info: Any, raw: str | None = None) -> Callable[[], Any]:
    meta = {"session_format": SESSION_FORMAT, "session": raw if raw is not None else json.dumps(info)}
    save_inversion(_tiny_result(), d / "s.hisession", metadata=meta)
    return lambda: EditSession.load(d / "s.hisession")


GOOD_SESSION = {"photo": None, "values": {"age": 1.0}, "points5": None, "transform": None, "models": {}}


def _transform_dict() -> dict:
    pts = np.array([[40.0, 50.0], [80.0, 50.0], [60.0, 70.0], [45.0, 90.0], [75.0, 90.0]])
    from hyperinverter_gui.alignment.geometry import ffhq_quad

    return AlignTransform(quad=ffhq_quad(pts), source_size=(128, 128), output_size=64, points5=pts).to_dict()


def _transform(d: Path, change: dict | None = None, text: str | None = None) -> Callable[[], Any]:
    t = _transform_dict()
    t.update(change or {})
    (d / "t.json").write_text(text if text is not None else json.dumps(t), encoding="utf-8")
    return lambda: AlignTransform.load(d / "t.json")


def _fifo(d: Path, name: str) -> Path:
    p = d / name
    os.mkfifo(p)
    return p


def _ganspace(d: Path, obj: Any) -> Callable[[], Any]:
    torch.save(obj, d / "pca.pt")
    return lambda: edits.load_ganspace(d / "pca.pt")


def _direction(d: Path, t: Any) -> Callable[[], Any]:
    torch.save(t, d / "dir.pt")
    return lambda: edits.load_interfacegan_direction(d / "dir.pt")


def _age() -> edits.Direction:
    return edits.Direction("age", torch.ones(1, 512) * 0.1)


def _hi_like(d: Path, w1: torch.Tensor) -> Path:
    """The smallest checkpoint ``describe_checkpoint`` calls a HyperInverter one."""
    sd = {"w_bar_encoder.styles.0.convs.0.weight": torch.zeros(1), "hypernet.weight_regressors.b4_conv1_weight.w1": w1}
    torch.save({"state_dict": sd}, d / "HI_small.pt")
    return d / "HI_small.pt"


def then(prepared: Any, call: Callable[[Any], Any]) -> Callable[[], Any]:
    """The case's call on what the build step prepared (files are made before the folder is hashed)."""
    return lambda: call(prepared)


@dataclass
class Case:
    id: str
    build: Callable[[Path, dict], Callable[[], Any]]  # (case folder, shared models) -> the call
    error: type[HyperInverterError]
    needles: tuple[str, ...]


def C(id: str, build, error, *needles: str) -> Case:
    return Case(id, build, error, needles)


G = "G.pkl"
CASES = [
    # --- formats: network pickles --------------------------------------------------------
    C("pickle-nan-weight", lambda d, m: then(_gen_pickle(d, _set_param(
        "synthesis.b4.conv1", "weight", _with_nan(_node(_tree(), "synthesis.b4.conv1").params["weight"]))), lambda p:
        load_generator(p)), NonFiniteWeightsError, G, "b4.conv1.weight", "NaN"),
    C("pickle-inf-buffer", lambda d, m: then(_gen_pickle(d, _set_param(
        "mapping", "w_avg", _with_nan(torch.zeros(512), float("inf")), buffer=True)), lambda p:
        load_generator(p)), NonFiniteWeightsError, G, "w_avg"),
    C("pickle-memo-bomb-depth-24", lambda d, m: then(_write_tree(d, _memo_bomb(24, shared=True)), lambda p:
        load_generator(p)), ModelStructureError, G, "same object"),
    C("pickle-memo-bomb-depth-40", lambda d, m: then(_write_tree(d, _memo_bomb(40, shared=True)), lambda p:
        load_generator(p)), ModelStructureError, G, "malformed network pickle"),
    C("pickle-nested-40-levels", lambda d, m: then(_write_tree(d, _memo_bomb(40, shared=False)), lambda p:
        load_generator(p)), ModelStructureError, G, "nested more than"),
    C("pickle-rebuild-offset-is-text", lambda d, m: then(_gen_pickle(d, _bad_buffer(
        "synthesis.b4.conv1", "bias", _tensor_reduce(torch.zeros(32), offset="0"))), lambda p:
        load_generator(p)), ModelFileError, G, "storage offset"),
    C("pickle-rebuild-size-is-text", lambda d, m: then(_gen_pickle(d, _bad_buffer(
        "synthesis.b4.conv1", "bias", _tensor_reduce(torch.zeros(32), size="32"))), lambda p:
        load_generator(p)), ModelFileError, G, "size"),
    C("pickle-rebuild-stride-floats", lambda d, m: then(_gen_pickle(d, _bad_buffer(
        "synthesis.b4.conv1", "bias", _tensor_reduce(torch.zeros(32), stride=(1.5,)))), lambda p:
        load_generator(p)), ModelFileError, G, "stride"),
    C("pickle-rebuild-storage-is-int", lambda d, m: then(_gen_pickle(d, _bad_buffer(
        "synthesis.b4.conv1", "bias", _tensor_reduce(torch.zeros(32), storage=7))), lambda p:
        load_generator(p)), ModelFileError, G, "storage is a int"),
    C("pickle-rebuild-beyond-storage", lambda d, m: then(_gen_pickle(d, _bad_buffer(
        "synthesis.b4.conv1", "bias", _tensor_reduce(torch.zeros(4), size=(1000, 1000), stride=(0, 0)))), lambda p:
        load_generator(p)), ModelStructureError, G, "does not fit"),
    C("pickle-rebuild-parameter-data-text", lambda d, m: then(_gen_pickle(d, _bad_buffer(
        "synthesis.b4.conv1", "bias", _Reduce(torch._utils._rebuild_parameter, ("abc", False, OrderedDict())))), lambda p:
        load_generator(p)), ModelFileError, G, "parameter"),
    C("pickle-size-of-text", lambda d, m: then(_gen_pickle(d, _bad_buffer(
        "synthesis.b4.conv1", "bias", _Reduce(torch.Size, ("ab",)))), lambda p:
        load_generator(p)), ModelFileError, G, "size"),
    C("pickle-parameter-is-text", lambda d, m: then(_gen_pickle(d, _bad_buffer(
        "synthesis.b4.conv1", "bias", "not a tensor")), lambda p:
        load_generator(p)), ModelFileError, G, "synthesis.b4.conv1.bias", "not a tensor"),
    C("pickle-conv-weight-rank-2", lambda d, m: then(_gen_pickle(d, _set_param(
        "synthesis.b4.conv1", "weight", torch.randn(32, 32))), lambda p:
        load_generator(p)), ModelFileError, G, "synthesis.b4.conv1.weight", "4 dimensions"),
    C("pickle-mapping-weight-rank-3", lambda d, m: then(_gen_pickle(d, _set_param(
        "mapping.fc0", "weight", torch.randn(2, 512, 64))), lambda p:
        load_generator(p)), ModelFileError, G, "mapping.fc0.weight", "2 dimensions"),
    C("pickle-init-kwargs-text", lambda d, m: then(_gen_pickle(d, lambda t: t.extra.update(_init_kwargs="x")), lambda p:
        load_generator(p)), ModelFileError, G, "init_kwargs"),
    C("pickle-resolution-text", lambda d, m: then(_gen_pickle(d, lambda t: t.init_kwargs.update(
        img_resolution="big")), lambda p: load_generator(p)), ModelFileError, G, "configuration"),
    C("pickle-mapping-kwargs-list", lambda d, m: then(_gen_pickle(d, lambda t: t.init_kwargs.update(
        mapping_kwargs=[1, 2])), lambda p: load_generator(p)), ModelFileError, G, "configuration"),
    C("pickle-truncated", lambda d, m: then((d / G).write_bytes((m["dir"] / G).read_bytes()[:150_000]) and d / G, lambda p:
        load_generator(p)), ModelFileError, G, "truncated or corrupt"),
    C("pickle-of-a-list", lambda d, m: then((d / G).write_bytes(pickle.dumps([1, 2])) and d / G, lambda p:
        load_generator(p)), ModelFileError, G, "expected a dict"),
    C("pickle-no-G_ema", lambda d, m: then((d / G).write_bytes(pickle.dumps({"G": 1})) and d / G, lambda p:
        load_generator(p)), ModelFileError, G, "G_ema"),
    C("generator-is-fifo", lambda d, m: then(_fifo(d, G), lambda p: load_generator(p)), ModelFileError, G,
      "not a regular file"),
    C("generator-is-folder", lambda d, m: then((d / "G.pkl").mkdir() or d / "G.pkl", lambda p: load_generator(p)),
      ModelFileError, G, "folder"),
    C("generator-empty", lambda d, m: then((d / G).write_bytes(b"") or d / G, lambda p: load_generator(p)),
      ModelFileError, G, "empty"),
    C("identify-pickle-fifo", lambda d, m: then(_fifo(d, G), lambda p: discovery.identify(p, [])), ModelFileError, G,
      "not a regular file"),
    C("identify-resolution-text", lambda d, m: then(_gen_pickle(d, lambda t: t.init_kwargs.update(
        img_resolution="abc")), lambda p: discovery.identify(p, [])), ModelFileError, G, "img_resolution"),
    C("identify-checkpoint-w1-rank-0", lambda d, m: then(_hi_like(d, torch.tensor(3.0)), lambda p:
        discovery.identify(p, [])), ModelFileError, "HI_small.pt", "w1", "2 dimensions"),
    C("hyperinverter-small-fake", lambda d, m: then(_hi_like(d, torch.zeros(2, 2)), lambda p:
        load_hyperinverter(p, m["generator"])), ModelFileError, "HI_small.pt"),
    C("tf-pickle-nan", lambda d, m: then(_tf_pickle(d, "mapping.fc0.weight"), lambda p: load_generator(p)),
      NonFiniteWeightsError, "tf.pkl", "mapping.fc0.weight"),
    C("tf-pickle-memo-bomb-depth-12", lambda d, m: then(_tf_memo_bomb(d, 12), lambda p: load_generator(p)),
      ModelStructureError, "tf.pkl", "same object"),
    C("tf-pickle-memo-bomb-depth-40", lambda d, m: then(_tf_memo_bomb(d, 40), lambda p: load_generator(p)),
      ModelStructureError, "tf.pkl", "nested too deeply"),
    C("tf-pickle-variable-text", lambda d, m: then(_tf_pickle(d, "mapping.fc0.weight", text=True), lambda p:
        load_generator(p)), ModelFileError, "tf.pkl", "not a numeric array"),
    # --- formats: rosinality .pt -----------------------------------------------------------
    C("rosinality-nan", lambda d, m: then(_rosinality(d, lambda c: c["g_ema"].update(
        {"conv1.conv.weight": _with_nan(c["g_ema"]["conv1.conv.weight"])})), lambda p: load_generator(p)),
      NonFiniteWeightsError, "g.pt", "b4.conv1.weight"),
    C("rosinality-conv-rank-4", lambda d, m: then(_rosinality(d, lambda c: c["g_ema"].update(
        {"conv1.conv.weight": c["g_ema"]["conv1.conv.weight"][0]})), lambda p: load_generator(p)),
      ModelFileError, "g.pt", "conv1.conv.weight", "5 dimensions"),
    C("rosinality-latent-avg-text", lambda d, m: then(_rosinality(d, lambda c: c.update(latent_avg="x")), lambda p:
        load_generator(p)), ModelFileError, "g.pt", "latent_avg"),
    # --- catalog: models manifest ------------------------------------------------------------
    C("manifest-file-dotdot", lambda d, m: _model_manifest(d, 'file = "../escape.pkl"\n'), ManifestError,
      "'file'", "../escape.pkl", "models.toml"),
    C("manifest-file-absolute", lambda d, m: _model_manifest(d, 'file = "/tmp/escape.pkl"\n'), ManifestError,
      "'file'", "/tmp/escape.pkl"),
    C("manifest-file-subfolder", lambda d, m: _model_manifest(d, 'file = "sub/g.pkl"\n'), ManifestError, "'file'"),
    C("manifest-file-backslash", lambda d, m: _model_manifest(d, 'file = "..\\\\g.pkl"\n'), ManifestError, "'file'"),
    C("manifest-file-empty", lambda d, m: _model_manifest(d, 'file = ""\n'), ManifestError, "'file'"),
    C("manifest-file-number", lambda d, m: _model_manifest(d, "file = 5\n"), ManifestError, "'file'", "string"),
    C("manifest-size-text", lambda d, m: _model_manifest(d, 'file = "g.pkl"\nsize = "big"\n'), ManifestError,
      "'size'"),
    C("manifest-default-text", lambda d, m: _model_manifest(d, 'file = "g.pkl"\ndefault = "yes"\n'), ManifestError,
      "'default'"),
    C("manifest-install-number", lambda d, m: _model_manifest(d, 'file = "g.pkl"\ninstall = 3\n'), ManifestError,
      "'install'"),
    C("manifest-model-not-list", lambda d, m: then(_manifest(d, 'model = "x"\n'), lambda p: discovery.load_manifest(p)),
      ManifestError, "models.toml", "'model'"),
    C("manifest-model-entry-not-table", lambda d, m: then(_manifest(d, "model = [1, 2]\n"), lambda p:
        discovery.load_manifest(p)), ManifestError, "models.toml", "entry 1"),
    C("manifest-not-toml", lambda d, m: then(_manifest(d, "[[model]\n"), lambda p: discovery.load_manifest(p)),
      ManifestError, "models.toml", "TOML"),
    C("manifest-is-folder", lambda d, m: then((d / "models.toml").mkdir() or d / "models.toml", lambda p:
        discovery.load_manifest(p)), ManifestError, "models.toml", "not a file"),
    C("model-entry-dotdot", lambda d, m: (lambda: discovery.ModelEntry("g", "generator", "../../x.pkl", "u")),
      ManifestError, "'file'", "../../x.pkl"),
    C("directions-download-dotdot", lambda d, m: then(_manifest(
        d, '[[download]]\nname = "a"\nfile = "../a.pt"\nurl = "https://example.invalid/a.pt"\n'), lambda p:
        library.direction_downloads(p)), ManifestError, "models.toml", "'file'", "../a.pt"),
    C("directions-download-size-float", lambda d, m: then(_manifest(
        d, '[[download]]\nname = "a"\nfile = "a.pt"\nurl = "u"\nsize = 1.5\n'), lambda p: library.direction_downloads(p)),
      ManifestError, "'size'"),
    # --- editing: directions manifest ----------------------------------------------------------
    C("slider-range-of-strings", lambda d, m: _slider(d, 'range = ["a", "b"]\n'), ManifestError,
      "manifest.toml", "'age'", "range low"),
    C("slider-range-reversed", lambda d, m: _slider(d, "range = [5.0, -5.0]\n"), ManifestError, "'age'", "range"),
    C("slider-range-one-value", lambda d, m: _slider(d, "range = [5.0]\n"), ManifestError, "'age'", "range"),
    C("slider-range-infinite", lambda d, m: _slider(d, "range = [-inf, inf]\n"), ManifestError, "'age'", "finite"),
    C("slider-range-absurd", lambda d, m: _slider(d, "range = [-1e308, 1e308]\n"), ManifestError, "'age'",
      "outside the allowed range"),
    C("slider-step-zero", lambda d, m: _slider(d, "step = 0.0\n"), ManifestError, "'age'", "step"),
    C("slider-step-text", lambda d, m: _slider(d, 'step = "fine"\n'), ManifestError, "'age'", "step"),
    C("slider-component-text", lambda d, m: _slider_manifest(
        d, '[[slider]]\nname = "pc1"\nkind = "ganspace"\nfile = "age.pt"\ncomponent = "first"\n'),
      ManifestError, "'pc1'", "component"),
    C("slider-component-fraction", lambda d, m: _slider_manifest(
        d, '[[slider]]\nname = "pc1"\nkind = "ganspace"\nfile = "age.pt"\ncomponent = 1.5\n'),
      ManifestError, "'pc1'", "component", "whole"),
    C("slider-layer-start-negative", lambda d, m: _slider(d, "layer_start = -1\n"), ManifestError, "layer_start"),
    C("slider-layer-stop-text", lambda d, m: _slider(d, 'layer_stop = "end"\n'), ManifestError, "layer_stop"),
    C("slider-not-a-table", lambda d, m: _slider_manifest(d, 'slider = ["age"]\n'), ManifestError,
      "manifest.toml", "not a [[slider]] table"),
    C("slider-key-not-list", lambda d, m: _slider_manifest(d, 'slider = "age"\n'), ManifestError, "'slider'"),
    C("slider-name-number", lambda d, m: _slider_manifest(d, '[[slider]]\nname = 5\nkind = "interfacegan"\n'
                                                           'file = "age.pt"\n'), ManifestError, "'name'"),
    C("slider-label-list", lambda d, m: _slider(d, "label = [1]\n"), ManifestError, "'age'", "'label'"),
    C("slider-file-dotdot", lambda d, m: _slider_manifest(
        d, '[[slider]]\nname = "age"\nkind = "interfacegan"\nfile = "../age.pt"\n'), ManifestError, "'file'"),
    C("slider-lacks-kind", lambda d, m: _slider_manifest(d, '[[slider]]\nname = "age"\nfile = "age.pt"\n'),
      ManifestError, "'kind'"),
    C("directions-manifest-is-folder", lambda d, m: then((d / "manifest.toml").mkdir(), lambda _:
                                                     library.load_library(d)), ManifestError, "manifest.toml",
      "folder"),
    C("directions-manifest-is-fifo", lambda d, m: then(_fifo(d, "manifest.toml"), lambda _: library.load_library(d)),
      ManifestError, "manifest.toml", "named pipe"),
    C("directions-folder-is-a-file", lambda d, m: then((d / "x.toml").write_text(""), lambda _:
                                                   library.load_library(d / "x.toml")), ManifestError, "x.toml"),
    # --- editing: direction files and values ----------------------------------------------------
    C("ganspace-holds-strings", lambda d, m: _ganspace(d, {"mean": "m", "comp": "c", "std": "s"}),
      DirectionFileError, "pca.pt", "'mean'"),
    C("ganspace-std-nan", lambda d, m: _ganspace(d, {"mean": torch.zeros(1, 8), "comp": torch.ones(2, 1, 8),
                                                     "std": torch.tensor([1.0, float("nan")])}),
      DirectionFileError, "pca.pt", "'std'", "NaN"),
    C("ganspace-mean-scalar", lambda d, m: _ganspace(d, {"mean": torch.tensor(1.0), "comp": torch.ones(2, 1, 8),
                                                         "std": torch.ones(2)}), DirectionFileError, "'mean'"),
    C("direction-nan", lambda d, m: _direction(d, _with_nan(torch.randn(1, 512))), DirectionFileError,
      "dir.pt", "NaN"),
    C("direction-huge", lambda d, m: _direction(d, torch.full((1, 512), 1e30)), DirectionFileError, "dir.pt",
      "beyond"),
    C("direction-scalar", lambda d, m: _direction(d, torch.tensor(1.0)), DirectionFileError, "dir.pt", "shape"),
    C("direction-is-fifo", lambda d, m: then(_fifo(d, "dir.pt"), lambda p: edits.load_interfacegan_direction(p)),
      ModelFileError, "dir.pt", "not a regular file"),
    C("edit-value-1e308", lambda d, m: (lambda: edits.apply_edits(torch.zeros(8, 512), [(_age(), 1e308)])),
      EditError, "'age'", "outside the allowed range"),
    C("edit-value-nan", lambda d, m: (lambda: edits.apply_edits(torch.zeros(8, 512), [(_age(), float("nan"))])),
      EditError, "'age'", "finite"),
    C("edit-value-text", lambda d, m: (lambda: edits.apply_edits(torch.zeros(8, 512), [(_age(), "2")])),
      EditError, "'age'", "must be a number"),
    C("edit-overflows-w", lambda d, m: (lambda: edits.apply_edits(
        torch.zeros(8, 512), [(edits.Direction("big", torch.full((1, 512), 3e37)), 100.0)])), EditError, "big",
      "non-finite"),
    C("parse-edit-1e308", lambda d, m: (lambda: edits.parse_edit("age=1e308")), EditError, "age=1e308"),
    C("session-slider-inf", lambda d, m: (lambda: EditSession().set_value("age", float("inf"))), EditError, "'age'"),
    # --- alignment: transforms, landmarks, photos -------------------------------------------------
    C("transform-version-text", lambda d, m: _transform(d, {"version": "one"}), TransformFileError, "t.json",
      "'version'"),
    C("transform-version-null", lambda d, m: _transform(d, {"version": None}), TransformFileError, "'version'"),
    C("transform-size-1e400", lambda d, m: _transform(d, text=json.dumps(_transform_dict()).replace(
        '"source_size": [\n  128', '"source_size": [1e400').replace('"source_size": [128', '"source_size": [1e400')),
      TransformFileError, "t.json", "source_size"),
    C("transform-output-1e400", lambda d, m: _transform(d, text=json.dumps(_transform_dict()).replace(
        '"output_size": 64', '"output_size": 1e400')), TransformFileError, "t.json", "output_size"),
    C("transform-size-huge", lambda d, m: _transform(d, {"source_size": [10**12, 10]}), TransformFileError,
      "source_size"),
    C("transform-quad-1e308", lambda d, m: _transform(d, {"quad": [[1e308, 0], [0, 1e308], [1e308, 1e308],
                                                                    [0, 0]]}), TransformFileError, "'quad'"),
    C("transform-quad-strings", lambda d, m: _transform(d, {"quad": [["1", "2"]] * 4}), TransformFileError,
      "'quad'"),
    C("transform-points-shape", lambda d, m: _transform(d, {"points5": [[1, 2]]}), TransformFileError,
      "'points5'"),
    C("transform-extra-list", lambda d, m: _transform(d, {"extra": [1, 2]}), TransformFileError, "'extra'"),
    C("transform-deep-json", lambda d, m: _transform(d, text="[" * 200_000 + "]" * 200_000), TransformFileError,
      "t.json", "JSON"),
    C("transform-is-fifo", lambda d, m: then(_fifo(d, "t.json"), lambda p: AlignTransform.load(p)), TransformFileError,
      "t.json", "regular file"),
    C("transform-json-not-text", lambda d, m: (lambda: AlignTransform.from_json({"format": 1})),
      TransformFileError, "not JSON text"),
    C("landmarks-1e308", lambda d, m: (lambda: as_points5([1e308, 0, 0, 0, 0, 1e308, 1, 1])), LandmarkError,
      "landmarks"),
    C("landmarks-nan", lambda d, m: (lambda: as_points5([float("nan")] * 8)), LandmarkError, "finite"),
    C("align-landmarks-1e308", lambda d, m: (lambda: align_face(np.zeros((64, 64, 3), np.uint8),
                                                                 [1e308, 1, 2, 1, 1, 2, 2, 2], 32)),
      LandmarkError, "landmarks"),
    C("photo-is-fifo", lambda d, m: then(_fifo(d, "p.png"), lambda p: load_photo(p)), ImageFileError, "p.png",
      "named pipe"),
    # --- inversion files ------------------------------------------------------------------------------
    C("inversion-truncated", lambda d, m: _inversion(d, truncate=100), InversionFileError, "inv.safetensors",
      "truncated"),
    C("inversion-w-nan", lambda d, m: _inversion(d, w=_with_nan(torch.zeros(8, 512))), InversionFileError,
      "inv.safetensors", "'w'", "NaN"),
    C("inversion-delta-inf", lambda d, m: _inversion(d, **{"delta.b4.conv1.weight": _with_nan(
        torch.zeros(4, 4, 3, 3), float("inf"))}), InversionFileError, "delta.b4.conv1.weight"),
    C("inversion-w-rank-3", lambda d, m: _inversion(d, w=torch.zeros(1, 8, 512)), InversionFileError, "w must be"),
    C("inversion-image-int", lambda d, m: _inversion(d, image=torch.zeros(3, 32, 32, dtype=torch.int32)),
      InversionFileError, "'image'", "int32"),
    C("inversion-image-shape", lambda d, m: _inversion(d, image=torch.zeros(32, 32)), InversionFileError,
      "'image'", "[3, R, R]"),
    C("inversion-is-fifo", lambda d, m: then(_fifo(d, "inv.safetensors"), lambda p: load_inversion(p)),
      InversionFileError, "inv.safetensors", "not a regular file"),
    C("inversion-is-folder", lambda d, m: then((d / "inv.safetensors").mkdir(), lambda _:
                                           load_inversion(d / "inv.safetensors")),
      InversionFileError, "inv.safetensors", "folder"),
    # --- editing sessions -------------------------------------------------------------------------
    C("session-not-json", lambda d, m: _session(d, None, raw="{not json"), SessionFileError, "s.hisession", "JSON"),
    C("session-a-list", lambda d, m: _session(d, [1, 2]), SessionFileError, "s.hisession", "list"),
    C("session-values-list", lambda d, m: _session(d, {**GOOD_SESSION, "values": [1]}), SessionFileError,
      "s.hisession", "'values'"),
    C("session-value-text", lambda d, m: _session(d, {**GOOD_SESSION, "values": {"age": "old"}}),
      SessionFileError, "s.hisession", "'values'", "'age'"),
    C("session-value-1e308", lambda d, m: _session(d, {**GOOD_SESSION, "values": {"age": 1e308}}),
      SessionFileError, "'values'", "outside the allowed range"),
    C("session-points-shape", lambda d, m: _session(d, {**GOOD_SESSION, "points5": [[1, 2]]}), SessionFileError,
      "'points5'"),
    C("session-points-text", lambda d, m: _session(d, {**GOOD_SESSION, "points5": "here"}), SessionFileError,
      "'points5'"),
    C("session-photo-number", lambda d, m: _session(d, {**GOOD_SESSION, "photo": 5}), SessionFileError, "'photo'"),
    C("session-models-list", lambda d, m: _session(d, {**GOOD_SESSION, "models": [1]}), SessionFileError,
      "'models'"),
    C("session-plain-inversion", lambda d, m: then(save_inversion(_tiny_result(), d / "s.hisession"), lambda p:
                                               EditSession.load(p)), SessionFileError, "not an editing session"),
    C("session-file-is-fifo", lambda d, m: then(_fifo(d, "s.hisession"), lambda p: EditSession.load(p)),
      InversionFileError, "s.hisession", "not a regular file"),
]


@pytest.fixture(scope="module")
def shared(model_dir, generator) -> dict:
    return {"dir": model_dir, "generator": generator}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_a_specific_one_line_error(case: Case, tmp_path: Path, shared: dict):
    d = tmp_path / "case"
    d.mkdir()
    call = case.build(d, shared)
    before = folder_hash(d)
    with pytest.raises(HyperInverterError) as info:
        call()
    err = info.value
    assert type(err) is case.error, f"{type(err).__name__}: {err}"
    message = str(err)
    assert message and "\n" not in message and "Traceback" not in message, message
    for needle in case.needles:
        assert needle in message, (needle, message)
    assert folder_hash(d) == before, "the failed call changed files"


def test_catalogue_size():
    assert len(CASES) >= 60


# --------------------------------------------------------------------------------------------
# Slow-to-build cases: a real HyperInverter checkpoint with one NaN (424 MB, written once)


def test_nan_in_a_hyperinverter_checkpoint_is_refused_naming_the_tensor(model_dir, generator, tmp_path):
    ckpt = torch.load(model_dir / "HI.pt", map_location="cpu", weights_only=True, mmap=True)
    key = "hypernet.weight_regressors.b8_conv0_weight.w2"
    ckpt["state_dict"][key] = _with_nan(ckpt["state_dict"][key])
    bad = tmp_path / "HI_nan.pt"
    torch.save(ckpt, bad)
    del ckpt
    try:
        with pytest.raises(NonFiniteWeightsError) as info:
            load_hyperinverter(bad, generator)
        assert type(info.value) is NonFiniteWeightsError
        assert "HI_nan.pt" in str(info.value) and "weight_regressors.b8_conv0_weight.w2" in str(info.value)
    finally:
        bad.unlink()


# --------------------------------------------------------------------------------------------
# Hangs: a FIFO where a session's photo should be must not block EditSession.load


def test_session_whose_photo_is_a_fifo_loads_without_blocking(tmp_path):
    fifo = _fifo(tmp_path, "photo.png")
    load = _session(tmp_path, {**GOOD_SESSION, "photo": str(fifo)})
    loaded: list = []
    worker = threading.Thread(target=lambda: loaded.append(load()), daemon=True)
    worker.start()
    worker.join(60)
    unblocked = False
    if worker.is_alive():  # blocked opening the FIFO: feed it so the thread ends, then fail
        with open(fifo, "wb") as f:
            f.write(b"x")
        unblocked = True
        worker.join(10)
    assert not unblocked, "EditSession.load blocked on a FIFO photo path"
    s = loaded[0]
    assert s.photo_path == fifo and s.photo_rgb is None and s.values == {"age": 1.0}


def test_session_with_a_damaged_transform_still_loads(tmp_path):
    s = _session(tmp_path, {**GOOD_SESSION, "transform": '{"format": 3}'})()
    assert s.transform is None and s.inversion is not None


# --------------------------------------------------------------------------------------------
# Caches and memos of ours: a damaged one is discarded with a notice and rebuilt, never fatal


MEMO_DAMAGE = {
    "garbage": b"\x00\xffnot json",
    "a-list": b"[1, 2, 3]",
    "files-a-list": json.dumps({"version": 1, "files": [1]}).encode(),
    "record-missing-role": None,  # filled in below: a valid memo with one record damaged
    "version-text": json.dumps({"version": "1", "files": {}}).encode(),
}


@pytest.mark.parametrize("damage", sorted(MEMO_DAMAGE))
def test_damaged_identified_memo_is_rebuilt(damage, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    weights = tmp_path / "weights"
    weights.mkdir()
    cache.mkdir()
    monkeypatch.setenv("HYPERINVERTER_CACHE", str(cache))
    of.write_nvidia_pickle(weights / "G.pkl", _tree())
    memo = cache / "identified.json"
    if damage == "record-missing-role":
        discovery.discover([weights], entries=[])
        data = json.loads(memo.read_text())
        next(iter(data["files"].values()))["found"].pop("role")
        memo.write_text(json.dumps(data))
    else:
        memo.write_bytes(MEMO_DAMAGE[damage])
    with caplog.at_level(logging.WARNING, logger="hyperinverter_gui"):
        found = discovery.discover([weights], entries=[])
    assert [f.path.name for f in found.found] == ["G.pkl"] and not found.problems
    if damage != "version-text":  # an older/newer version is replaced silently, as before
        assert any("identified" in r.getMessage() for r in caplog.records), caplog.text
    rebuilt = json.loads(memo.read_text())
    assert rebuilt["version"] == 1 and len(rebuilt["files"]) == 1


CHECKSUM_DAMAGE = {
    "garbage": (b"{{{", 0),
    "a-list": (b"[1]", 0),
    "record-bad-sha": (json.dumps({"a.pkl": {"sha256": "xyz", "size": 1},
                                   "b.pkl": {"sha256": "ab" * 32, "size": 2}}).encode(), 1),
    "record-size-text": (json.dumps({"a.pkl": {"sha256": "ab" * 32, "size": "2"}}).encode(), 0),
}


@pytest.mark.parametrize("damage", sorted(CHECKSUM_DAMAGE))
def test_damaged_checksums_file_is_discarded_and_rebuilt(damage, tmp_path, monkeypatch, caplog):
    from hyperinverter_gui.catalog import download

    path = tmp_path / "checksums.json"
    monkeypatch.setattr(download, "checksums_path", lambda: path)
    monkeypatch.setenv("HYPERINVERTER_CACHE", str(tmp_path / "cache"))
    text, kept = CHECKSUM_DAMAGE[damage]
    path.write_bytes(text)
    with caplog.at_level(logging.WARNING, logger="hyperinverter_gui"):
        assert len(download.recorded_checksums()) == kept
    assert "checksums.json" in caplog.text
    download.record_checksum("new.pkl", "cd" * 32, 5)
    data = json.loads(path.read_text())
    assert data["new.pkl"] == {"sha256": "cd" * 32, "size": 5} and len(data) == kept + 1


@pytest.mark.parametrize("damage", ["json-garbage", "json-a-list", "tensors-truncated"])
def test_damaged_model_cache_entry_is_rebuilt(damage, tmp_path, model_dir, caplog):
    from hyperinverter_gui.catalog.cache import load_generator_cached

    cache = tmp_path / "cache"
    g = load_generator_cached(model_dir / "G.pkl", cache)
    reference = {k: v.clone() for k, v in g.state_dict().items()}
    del g  # its tensors map the cache file, which is replaced below
    (json_path,) = (cache / "generators").glob("*.json")
    (tensors,) = (cache / "generators").glob("*.safetensors")
    damaged = tmp_path / "damaged"
    if damage == "json-garbage":
        json_path.write_bytes(b"\x00garbage")
    elif damage == "json-a-list":
        json_path.write_text("[]")
    else:  # a new, truncated file under the name (never truncate a mapped file in place)
        damaged.write_bytes(tensors.read_bytes()[:1000])
        os.replace(damaged, tensors)
    with caplog.at_level(logging.WARNING, logger="hyperinverter_gui"):
        again = load_generator_cached(model_dir / "G.pkl", cache)
    assert "damaged" in caplog.text
    for k, v in reference.items():
        assert torch.equal(v, again.state_dict()[k]), k
    assert isinstance(json.loads(json_path.read_text()), dict)  # rewritten


# --------------------------------------------------------------------------------------------
# Concurrency and writes outside the target


def test_a_second_download_to_one_destination_is_refused_while_the_first_runs(tmp_path, monkeypatch):
    from filelock import FileLock

    from hyperinverter_gui.catalog import download, locks

    monkeypatch.setenv("HYPERINVERTER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(download, "LOCK_WAIT_S", 0.2)
    target = tmp_path / "out" / "g.pkl"
    target.parent.mkdir()
    path = locks.lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)

    def no_network(*args, **kwargs):
        raise AssertionError("the network must not be touched while another process downloads")

    monkeypatch.setattr(download, "_open", no_network)
    held = threading.Event()
    release = threading.Event()

    def other_process() -> None:  # a second FileLock object: a separate lock, as another process holds it
        with FileLock(str(path)):
            held.set()
            release.wait(30)

    t = threading.Thread(target=other_process, daemon=True)
    t.start()
    held.wait(30)
    try:
        with pytest.raises(DownloadError) as info:
            download.download("https://example.invalid/g.pkl", target)
        assert type(info.value) is DownloadError and "another HyperInverter process" in str(info.value)
        assert "g.pkl" in str(info.value)
    finally:
        release.set()
        t.join(30)
    assert sorted(p.name for p in target.parent.iterdir()) == []  # no .part, no lock file in the user's folder


def test_manifest_entry_with_dotdot_never_writes_outside_the_folder(tmp_path, monkeypatch):
    """`weights download --to DIR`: a manifest naming '../x' is refused before any download starts."""
    from hyperinverter_gui.app import downloads

    monkeypatch.setenv("HYPERINVERTER_CACHE", str(tmp_path / "cache"))
    dest = tmp_path / "DIR"
    dest.mkdir()
    manifest = _manifest(tmp_path, "[[model]]\n" + MODEL_ENTRY + 'file = "../escaped.pkl"\n')
    before = folder_hash(tmp_path)
    with pytest.raises(ManifestError):
        entries = discovery.load_manifest(manifest)
        downloads.fetch(entries[0], dest)
    assert folder_hash(tmp_path) == before
    assert not (tmp_path / "escaped.pkl").exists()


def test_identified_memo_keeps_records_another_process_wrote_meanwhile(tmp_path):
    """Read-modify-write under the lock: a record written by another process after this one read
    the memo survives this one's write."""
    memo = tmp_path / "identified.json"
    stamp = {"size": 1, "mtime_ns": 2, "inode": 3}
    ours = {"/a/G.pkl": {"stamp": stamp, "found": None}}
    theirs = {"/b/HI.pt": {"stamp": stamp, "problem": "damaged"}}
    memo.write_text(json.dumps({"version": 1, "files": theirs}))  # written after we read an empty memo
    discovery._write_identified(memo, ours, before={})
    assert json.loads(memo.read_text())["files"] == {**theirs, **ours}


def test_finite_weights_whose_sum_overflows_are_not_mistaken_for_nan():
    """The NaN check sums first (fast); a sum that overflows falls back to the exact test."""
    from hyperinverter_gui.formats.guard import check_finite

    big = torch.full((1000,), 3e38)
    assert not torch.isfinite(big.sum())
    check_finite(big, "w", "G.pkl")  # finite values: accepted
    big[7] = float("-inf")
    with pytest.raises(NonFiniteWeightsError, match=r"G.pkl: tensor 'w' holds 1 NaN or infinite"):
        check_finite(big, "w", "G.pkl")
