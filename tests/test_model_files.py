"""Loading the official file formats, and refusing bad or unsafe files with clear messages."""

from __future__ import annotations

import os
import pickle
import shutil

import official_formats as of
import pytest
import torch

from hyperinverter_gui.errors import ModelFileError, ModelMismatchError, UnsafeModelFileError
from hyperinverter_gui.formats.loading import load_generator, load_hyperinverter


def test_nvidia_pickle_round_trip(model_dir, generator):
    tree = of.stylegan2_generator_tree(seed=0)
    expected = tree.flat()
    got = generator.state_dict()
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert torch.equal(got[k], v.float()), k


def test_generator_config_is_read_from_the_file(generator):
    cfg = generator.cfg
    assert (cfg.img_resolution, cfg.z_dim, cfg.w_dim, cfg.mapping_layers) == (32, 64, 512, 2)
    assert cfg.channels == {4: 32, 8: 32, 16: 32, 32: 16}
    assert generator.num_ws == 8


def test_other_configuration_loads(tmp_path):
    tree = of.stylegan2_generator_tree(seed=5, z_dim=32, img_resolution=64, channel_base=1024, channel_max=16,
                                       mapping_layers=3, conv_clamp=0.5)
    of.write_nvidia_pickle(tmp_path / "g64.pkl", tree, protocol=2)
    g = load_generator(tmp_path / "g64.pkl")
    assert g.num_ws == 10 and g.cfg.conv_clamp == 0.5 and g.cfg.channels[64] == 16
    img = g(torch.randn(1, 32))
    assert img.shape == (1, 3, 64, 64) and torch.isfinite(img).all()


def test_embedded_module_source_is_never_executed(model_dir, generator):
    assert not (model_dir / "SOURCE_WAS_EXECUTED").exists()


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_asking_for_os_system_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"G_ema": _RunsShell(marker)}, f)
    with pytest.raises(UnsafeModelFileError, match="os.system|posix.system"):
        load_generator(path)
    assert not marker.exists()


def test_pickle_with_builtins_eval_is_refused(tmp_path):
    path = tmp_path / "evil2.pkl"

    class Eval:
        def __reduce__(self):
            return (eval, ("__import__('os').getcwd()",))

    with open(path, "wb") as f:
        pickle.dump([Eval()], f)
    with pytest.raises(UnsafeModelFileError, match="builtins.eval"):
        load_generator(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"<!DOCTYPE html><html><body>Google Drive - virus scan warning</body></html>", "HTML page"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "not a network pickle"),
    ],
)
def test_bad_generator_files(tmp_path, content, message):
    path = tmp_path / "G.pkl"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        load_generator(path)


def test_truncated_generator_pickle(model_dir, tmp_path):
    data = (model_dir / "G.pkl").read_bytes()
    path = tmp_path / "G.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_generator(path)


def test_missing_files(tmp_path, generator):
    with pytest.raises(ModelFileError, match="not found"):
        load_generator(tmp_path / "nope.pkl")
    with pytest.raises(ModelFileError, match="not found"):
        load_hyperinverter(tmp_path / "nope.pt", generator)


def test_checkpoint_given_as_generator(model_dir):
    with pytest.raises(ModelFileError, match="HyperInverter checkpoint, not a StyleGAN2 generator"):
        load_generator(model_dir / "HI.pt")


def test_generator_given_as_checkpoint(model_dir, generator):
    with pytest.raises(ModelFileError, match="pass it as the generator"):
        load_hyperinverter(model_dir / "G.pkl", generator)


def test_w_encoder_given_as_checkpoint(model_dir, generator):
    with pytest.raises(ModelFileError, match="W-encoder checkpoint, not a HyperInverter checkpoint"):
        load_hyperinverter(model_dir / "w_encoder.pt", generator)


def test_truncated_checkpoint(model_dir, tmp_path, generator):
    data = (model_dir / "HI.pt").read_bytes()
    for cut in (len(data) // 2, len(data) - 10):
        path = tmp_path / f"HI_{cut}.pt"
        path.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match="truncated or corrupt"):
            load_hyperinverter(path, generator)


def test_checkpoint_with_code_is_refused(tmp_path, generator):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w_bar_encoder.x": torch.zeros(1)}, "opts": _RunsShell(marker)}, path)
    with pytest.raises(UnsafeModelFileError, match="Nothing from the file was executed"):
        load_hyperinverter(path, generator)
    assert not marker.exists()


def test_checkpoint_for_other_channel_counts_is_a_mismatch(tmp_path, generator):
    path = of.write_hyperinverter_checkpoint(tmp_path / "HI16.pt", channel_max=16, hidden_dim=4)
    with pytest.raises(ModelMismatchError, match="b4.conv1.weight"):
        load_hyperinverter(path, generator)


def test_checkpoint_for_other_resolution_is_a_mismatch(tmp_path, generator):
    path = of.write_hyperinverter_checkpoint(tmp_path / "HI64.pt", img_resolution=64, hidden_dim=4)
    with pytest.raises(ModelMismatchError, match="64 px generator"):
        load_hyperinverter(path, generator)


def test_predicted_layers_and_hidden_dim_come_from_the_checkpoint(tmp_path, generator):
    path = tmp_path / "HI_noRGB.pt"
    sd = {}
    sd.update({"w_encoder." + k: v for k, v in of.w_encoder_state_dict(1).items()})
    sd.update({"w_bar_encoder." + k: v for k, v in of.layerwise_encoder_state_dict(8, 2).items()})
    layers = of.official_target_layers(32, 512, 32, include_torgb=False)
    sd.update({"hypernet." + k: v for k, v in of.hypernet_state_dict(layers, 4).items()})
    torch.save({"state_dict": sd, "opts": {}}, path)
    m = load_hyperinverter(path, generator)
    assert m.cfg.hidden_dim == 4
    assert [t.name for t in m.cfg.targets] == [n for n, _ in layers]
    assert not any("torgb" in t.name for t in m.cfg.targets)


def test_checkpoint_without_w_encoder_needs_the_separate_file(tmp_path, model_dir, generator, photos):
    path = of.write_hyperinverter_checkpoint(tmp_path / "HI_noE1.pt", include_w_encoder=False)
    with pytest.raises(ModelFileError, match="w_encoder"):
        load_hyperinverter(path, generator)
    m = load_hyperinverter(path, generator, w_encoder=model_dir / "w_encoder.pt")
    full = load_hyperinverter(model_dir / "HI.pt", generator)
    x = photos[:1]
    from hyperinverter_gui.networks.hyperinverter import resize_for_encoder

    x256 = resize_for_encoder(x)
    # Same seed for both files: the separate W encoder equals the embedded one.
    assert torch.equal(m.encode_w(x256), full.encode_w(x256))


def test_legacy_torch_format_checkpoint_loads(tmp_path, model_dir, generator):
    obj = torch.load(model_dir / "HI.pt", weights_only=True)
    path = tmp_path / "legacy.pt"
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    m = load_hyperinverter(path, generator)
    assert len(m.cfg.targets) == 11


def test_tensorflow_pickle_is_not_read_as_an_ada_pickle(tmp_path):
    from hyperinverter_gui.formats.nvidia_pickle import read_network_pickle

    path = tmp_path / "tf.pkl"
    # The global an old dnnlib.tflib Network pickle starts with.
    path.write_bytes(b"\x80\x03cdnnlib.tflib.network\nNetwork\nq\x00)\x81q\x01}q\x02b.")
    with pytest.raises(ModelFileError, match="TensorFlow"):
        read_network_pickle(path)


def test_directory_instead_of_file(tmp_path):
    d = tmp_path / "weights"
    d.mkdir()
    with pytest.raises(ModelFileError, match="folder"):
        load_generator(d)
    shutil.rmtree(d)
