"""TensorFlow StyleGAN2 pickles and rosinality .pt generators, converted without their frameworks.

Each test builds ONE set of random generator numbers (the NVIDIA-named tree of
official_formats), writes it in the NVIDIA stylegan2-ada format and in the
foreign format (layouts spelled out in converter_formats), loads both, and
compares the images.
"""

from __future__ import annotations

import argparse
import os
import pickle

import converter_formats as cf
import official_formats as of
import pytest
import torch

from hyperinverter_gui.errors import ModelFileError, ModelMismatchError, UnsafeModelFileError
from hyperinverter_gui.formats.loading import generator_from_state_dict, load_generator
from hyperinverter_gui.formats.rosinality import load_rosinality_generator
from hyperinverter_gui.formats.tf_stylegan2 import is_tf_network_pickle, load_tf_generator

TOL = 1e-3
CHANNEL_BASE, CHANNEL_MAX = 512, 32  # official_formats defaults


def _images(g, seed=0, psi=0.7):
    z = torch.randn(3, g.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return g(z, truncation_psi=psi)


def _assert_same_generator(ours, reference):
    sd, ref = ours.state_dict(), reference.state_dict()
    assert set(sd) == set(ref)
    for psi in (1.0, 0.7):
        a, b = _images(ours, psi=psi), _images(reference, psi=psi)
        assert a.shape == b.shape and torch.isfinite(a).all()
        assert (a - b).abs().max().item() <= TOL
    assert a.std() > 0.01  # not a degenerate image


def _tf_networks(tree, marker=None, **kw):
    source = of.EVIL_SOURCE.format(marker=str(marker)) if marker else "# src\n"
    nv = tree.flat()
    skw = cf.tf_static_kwargs(nv, CHANNEL_BASE, CHANNEL_MAX, **kw.pop("static", {}))
    gs = cf.tf_generator(nv, "Gs", skw, source=source, **kw)
    # The training generator G holds different numbers: the converter must take Gs.
    g_train = cf.tf_generator(of.stylegan2_generator_tree(seed=99).flat(), "G", skw, source=source, **kw)
    return g_train, cf.tf_discriminator(source=source), gs


@pytest.fixture(scope="module")
def tree():
    return of.stylegan2_generator_tree(seed=7)


@pytest.fixture(scope="module")
def nvidia_reference(tree, tmp_path_factory):
    path = tmp_path_factory.mktemp("nv") / "G.pkl"
    of.write_nvidia_pickle(path, tree)
    return load_generator(path)


# --------------------------------------------------------------------------
# TensorFlow pickles


@pytest.mark.parametrize("protocol", [4, 2])
def test_tf_pickle_gives_the_same_images_as_the_nvidia_pickle(tmp_path, tree, nvidia_reference, protocol):
    marker = tmp_path / "SOURCE_WAS_EXECUTED"
    path = cf.write_tf_pickle(tmp_path / "stylegan2-ffhq-config-f.pkl", _tf_networks(tree, marker), protocol)
    if protocol == 2:  # numpy as named by the numpy 1.x of the TF era
        data = path.read_bytes()
        assert b"cnumpy._core.multiarray\n" in data or b"cnumpy.core.multiarray\n" in data
        path.write_bytes(data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))
    cfg, sd = load_tf_generator(path)
    g = generator_from_state_dict(cfg, sd, path.name)
    _assert_same_generator(g, nvidia_reference)
    for k, v in nvidia_reference.state_dict().items():
        assert torch.equal(g.state_dict()[k], v), k  # a pure relayout: bit-exact
    assert not marker.exists()


def test_tf_config_comes_from_static_kwargs(tmp_path, tree):
    path = cf.write_tf_pickle(tmp_path / "g.pkl", _tf_networks(tree, static={"mapping_lrmul": 0.01}))
    cfg, _ = load_tf_generator(path)
    assert (cfg.img_resolution, cfg.z_dim, cfg.w_dim, cfg.mapping_layers) == (32, 64, 512, 2)
    assert cfg.channels == {4: 32, 8: 32, 16: 32, 32: 16}
    assert cfg.mapping_lr_multiplier == 0.01 and cfg.architecture == "skip"
    # Settings that disagree with the weights are caught when building the generator.
    path = cf.write_tf_pickle(tmp_path / "bad.pkl", _tf_networks(tree, static={"fmap_base": 1024}))
    cfg, sd = load_tf_generator(path)
    with pytest.raises(ModelMismatchError, match="channels"):
        generator_from_state_dict(cfg, sd, path.name)


@pytest.mark.parametrize("revised", [False, True], ids=["orig", "revised-configs-b-d"])
def test_tf_orig_architecture(tmp_path, revised):
    tree = of.stylegan2_generator_tree(seed=3)
    blocks = tree.modules["synthesis"].modules
    for name in list(blocks)[:-1]:
        del blocks[name].modules["torgb"]
    tree.init_kwargs["synthesis_kwargs"]["architecture"] = "orig"
    ref = load_generator(of.write_nvidia_pickle(tmp_path / "orig.pkl", tree))
    static = {} if revised else {"architecture": "orig"}
    nets = _tf_networks(tree, static=static, architecture="orig", revised=revised)
    cfg, sd = load_tf_generator(cf.write_tf_pickle(tmp_path / "tf.pkl", nets))
    assert cfg.architecture == "orig"
    _assert_same_generator(generator_from_state_dict(cfg, sd), ref)


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_tf_pickle_asking_for_os_system_is_refused(tmp_path, tree):
    marker = tmp_path / "pwned"
    g, d, gs = _tf_networks(tree)
    gs.state["static_kwargs"]["resolution"] = _RunsShell(marker)
    path = cf.write_tf_pickle(tmp_path / "evil.pkl", (g, d, gs))
    assert is_tf_network_pickle(path)
    with pytest.raises(UnsafeModelFileError, match="os.system|posix.system"):
        load_tf_generator(path)
    assert not marker.exists()


def test_tf_truncated_pickle(tmp_path, tree):
    path = cf.write_tf_pickle(tmp_path / "g.pkl", _tf_networks(tree))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_tf_generator(path)


def test_tf_wrong_kinds(tmp_path, tree):
    nv_pkl = of.write_nvidia_pickle(tmp_path / "ada.pkl", tree)
    with pytest.raises(ModelFileError, match="stylegan2-ada-pytorch"):
        load_tf_generator(nv_pkl)
    pt = cf.write_rosinality_pt(tmp_path / "r.pt", tree.flat())
    with pytest.raises(ModelFileError, match="PyTorch checkpoint"):
        load_tf_generator(pt)
    g, d, gs = _tf_networks(tree)
    with pytest.raises(ModelFileError, match="no generator 'Gs'"):
        load_tf_generator(cf.write_tf_pickle(tmp_path / "gd.pkl", (g, d)))
    with pytest.raises(ModelFileError, match="not a generator"):
        load_tf_generator(cf.write_tf_pickle(tmp_path / "d.pkl", d))
    (tmp_path / "page.pkl").write_text("<!DOCTYPE html><html>quota exceeded</html>")
    with pytest.raises(ModelFileError, match="HTML"):
        load_tf_generator(tmp_path / "page.pkl")
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty"):
        load_tf_generator(tmp_path / "empty.pkl")
    gs.state["variables"] = [(k, v) for k, v in gs.state["variables"] if k != "dlatent_avg"]
    del gs.state["components"]["synthesis"].state["variables"][3]
    with pytest.raises(ModelFileError, match="variable .* is missing"):
        load_tf_generator(cf.write_tf_pickle(tmp_path / "partial.pkl", (g, d, gs)))


def test_is_tf_network_pickle(tmp_path, tree):
    assert is_tf_network_pickle(cf.write_tf_pickle(tmp_path / "tf.pkl", _tf_networks(tree)))
    assert not is_tf_network_pickle(of.write_nvidia_pickle(tmp_path / "ada.pkl", tree))
    assert not is_tf_network_pickle(cf.write_rosinality_pt(tmp_path / "r.pt", tree.flat()))
    assert not is_tf_network_pickle(tmp_path / "missing.pkl")
    (tmp_path / "empty.pkl").write_bytes(b"")
    assert not is_tf_network_pickle(tmp_path / "empty.pkl")


# --------------------------------------------------------------------------
# rosinality .pt generators


@pytest.fixture(scope="module")
def square_tree():
    # rosinality's mapping keeps z_dim == w_dim.
    return of.stylegan2_generator_tree(seed=11, z_dim=64, w_dim=64, mapping_layers=3)


@pytest.fixture(scope="module")
def square_reference(square_tree, tmp_path_factory):
    path = tmp_path_factory.mktemp("nv") / "G.pkl"
    return load_generator(of.write_nvidia_pickle(path, square_tree))


def test_rosinality_pt_gives_the_same_images_as_the_nvidia_pickle(tmp_path, square_tree, square_reference):
    path = cf.write_rosinality_pt(tmp_path / "stylegan2-ffhq-config-f.pt", square_tree.flat())
    cfg, sd = load_rosinality_generator(path)
    assert (cfg.img_resolution, cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.num_ws) == (32, 64, 64, 3, 8)
    assert cfg.mapping_lr_multiplier == 0.01
    g = generator_from_state_dict(cfg, sd, path.name)
    _assert_same_generator(g, square_reference)
    for k, v in square_reference.state_dict().items():
        assert torch.equal(g.state_dict()[k], v), k


def test_rosinality_other_containers(tmp_path, square_tree, square_reference):
    nv = square_tree.flat()
    g_ema = cf.rosinality_state_dict(nv)
    # A training checkpoint: g, d, g_ema, optimiser states and the argparse options.
    args = argparse.Namespace(size=32, latent=64, n_mlp=3, channel_multiplier=2)
    path = tmp_path / "010000.pt"
    torch.save({"g": g_ema, "d": {"convs.0.0.weight": torch.zeros(1)}, "g_ema": g_ema, "args": args,
                "ada_aug_p": 0.0, "latent_avg": nv["mapping.w_avg"]}, path)
    if hasattr(torch.serialization, "safe_globals"):  # torch >= 2.5 can allow the options object
        _assert_same_generator(generator_from_state_dict(*load_rosinality_generator(path)), square_reference)
    # An already loaded pSp/e4e/HyperStyle checkpoint: the decoder is a rosinality generator.
    psp = {"state_dict": {**{"decoder." + k: v for k, v in g_ema.items()}, "encoder.x": torch.zeros(1)},
           "latent_avg": nv["mapping.w_avg"].repeat(8, 1)}
    _assert_same_generator(generator_from_state_dict(*load_rosinality_generator(psp)), square_reference)


def test_rosinality_without_latent_avg_estimates_it(tmp_path, square_tree, square_reference):
    path = cf.write_rosinality_pt(tmp_path / "g.pt", square_tree.flat(), latent_avg=False)
    cfg, sd = load_rosinality_generator(path)
    _, again = load_rosinality_generator(path)
    assert torch.equal(sd["mapping.w_avg"], again["mapping.w_avg"])  # deterministic
    g = generator_from_state_dict(cfg, sd)
    z = torch.randn(4096, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        mean_w = g.mapping(z)[:, 0].mean(0)
    spread = g.mapping(z)[:, 0].std(0).mean()
    assert (sd["mapping.w_avg"] - mean_w).abs().mean() < 0.1 * spread
    a, b = _images(g, psi=1.0), _images(square_reference, psi=1.0)
    assert (a - b).abs().max().item() <= TOL


def test_rosinality_bad_files(tmp_path, square_tree, model_dir):
    nv = square_tree.flat()
    path = cf.write_rosinality_pt(tmp_path / "g.pt", nv)
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_rosinality_generator(tmp_path / "cut.pt")
    with pytest.raises(ModelFileError, match="HyperInverter checkpoint"):
        load_rosinality_generator(model_dir / "HI.pt")
    with pytest.raises(ModelFileError, match="plain Python pickle"):
        load_rosinality_generator(model_dir / "G.pkl")
    torch.save({"g": cf.rosinality_state_dict(nv)}, tmp_path / "g_only.pt")
    with pytest.raises(ModelFileError, match="no averaged generator 'g_ema'"):
        load_rosinality_generator(tmp_path / "g_only.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="no rosinality generator 'g_ema'"):
        load_rosinality_generator(tmp_path / "other.pt")
    g_ema = cf.rosinality_state_dict(nv)
    del g_ema["convs.1.noise.weight"]
    with pytest.raises(ModelFileError, match="lacks 'convs.1.noise.weight'"):
        load_rosinality_generator({"g_ema": g_ema})


def test_rosinality_pt_asking_for_os_system_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2)}, "x": _RunsShell(marker)}, path)
    with pytest.raises(UnsafeModelFileError):
        load_rosinality_generator(path)
    assert not marker.exists()


def test_tf_stand_in_never_gets_code(tmp_path, tree):
    # A pickle that calls the Network stand-in with arguments instead of building it.
    path = tmp_path / "weird.pkl"
    g, d, gs = _tf_networks(tree)
    with cf._fake_tflib_module():
        class _CallsNetwork:
            def __reduce__(self):
                return (cf.Network, ("x", "os.system", {}, {}))
        data = pickle.dumps((g, d, _CallsNetwork()), protocol=4)
    path.write_bytes(data)
    with pytest.raises(UnsafeModelFileError, match="with arguments"):
        load_tf_generator(path)
