"""HyperStyle backend: loading the official formats, inversion, additive deltas, bad inputs."""

from __future__ import annotations

import copy
import math

import hyperstyle_formats as hf
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hyperinverter_gui.engine.hyperstyle import invert_hyperstyle, resize_for_hyperstyle
from hyperinverter_gui.errors import ModelFileError, ModelMismatchError
from hyperinverter_gui.formats.hyperstyle_files import hyperstyle_config, load_hyperstyle
from hyperinverter_gui.networks import hyperstyle as hs


@pytest.fixture(scope="module")
def hs_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hyperstyle")
    hf.write_hyperstyle_checkpoint(d / "hyperstyle_ffhq.pt")
    hf.write_faces_w_encoder(d / "faces_w_encoder.pt")
    return d


@pytest.fixture(scope="module")
def hs_model(hs_dir):
    return load_hyperstyle(hs_dir / "hyperstyle_ffhq.pt", hs_dir / "faces_w_encoder.pt")


@pytest.fixture(scope="module")
def hs_photos():
    """Two smooth seeded photos [2,3,64,64] in [-1,1]."""
    g = torch.Generator().manual_seed(7)
    low = torch.rand(2, 3, 6, 6, generator=g) * 2 - 1
    return F.interpolate(low, size=(64, 64), mode="bicubic", align_corners=False).clamp(-1, 1)


@pytest.fixture(scope="module")
def hs_run(hs_model, hs_photos):
    """A 3-step inversion, the model's raw output for it (offsets D), and what on_step saw."""
    steps, captured = [], []
    forward = hs_model.forward

    def capture(*args, **kwargs):
        captured.append(forward(*args, **kwargs))
        return captured[-1]

    hs_model.forward = capture
    try:
        results = invert_hyperstyle(hs_model, hs_photos, iterations=3,
                                    on_step=lambda i, y: steps.append((i, y.clone())))
    finally:
        del hs_model.forward
    return results, captured[0], steps


# --------------------------------------------------------------------------
# numbering and configuration


def test_layer_numbering_matches_rosinality_order():
    assert [hs.num_hypernet_outputs(r) for r in (1024, 512, 256, 128)] == [26, 23, 20, 17]
    assert [i for i in range(26) if hs.is_torgb_index(i)] == [1, 4, 7, 10, 13, 16, 19, 22, 25]
    for i in range(26):
        name = hs.synthesis_name(i)
        assert name == hf.official_index_name(i)[1]
        assert hs.layer_index(name) == i
    # the official default tunes every convolution of a 1024 px generator and no toRGB
    assert [hs.synthesis_name(i) for i in hs.DEFAULT_LAYERS_TO_TUNE][-2:] == ["b1024.conv0.weight", "b1024.conv1.weight"]
    assert not any(hs.is_torgb_index(i) for i in hs.DEFAULT_LAYERS_TO_TUNE)
    with pytest.raises(ValueError):
        hs.layer_index("b4.conv0.weight")


def test_config_derived_from_checkpoint(hs_model):
    cfg = hs_model.cfg
    assert cfg.img_resolution == 128 and hs_model.generator.img_resolution == 128
    assert cfg.layers_to_tune == [0, 1, 5, 11, 14, 15, 16]
    kinds = {t.index: t.kind for t in cfg.layers}
    assert kinds == {0: "shared", 1: "torgb", 5: "shared", 11: "shared", 14: "per_channel", 15: "per_channel",
                     16: "torgb"}
    names = {t.index: (t.name, t.shape) for t in cfg.layers}
    assert names[14] == ("b128.conv0.weight", (8, 16, 3, 3))
    assert names[16] == ("b128.torgb.weight", (3, 8, 1, 1))
    assert (cfg.shared_z_dim, cfg.shared_in, cfg.shared_out, cfg.shared_kernel) == (512, 16, 16, 3)
    assert cfg.w_backbone == "ir_se" and cfg.hypernet_type == "SharedWeightsHyperNetResNet"
    # latent_avg from the HyperStyle checkpoint, one row per w
    assert hs_model.latent_avg.shape == (hs_model.generator.num_ws, 512)
    # the shared generator is held once, not once per block
    names = [n for n, _ in hs_model.hypernet.named_parameters()]
    assert sum(n.endswith(".w2") for n in names) == 1


def test_config_rejects_inconsistent_options(hs_dir, hs_model):
    from hyperinverter_gui.formats import checkpoints

    obj = checkpoints.load_torch_file(hs_dir / "hyperstyle_ffhq.pt")
    sd = checkpoints.subdict(checkpoints.state_dict_of(obj), "hypernet")
    opts = dict(obj["opts"])
    gen = hs_model.generator
    assert hyperstyle_config(sd, opts, gen).layers_to_tune == [0, 1, 5, 11, 14, 15, 16]
    with pytest.raises(ModelMismatchError, match="1024 px"):
        hyperstyle_config(sd, dict(opts, output_size=1024), gen)
    with pytest.raises(ModelMismatchError, match="tune layers"):
        hyperstyle_config(sd, dict(opts, layers_to_tune="0,1,5"), gen)
    with pytest.raises(ModelFileError, match="cars"):
        hyperstyle_config(sd, dict(opts, dataset_type="cars_encode"), gen)
    with pytest.raises(ModelFileError, match="unsupported"):
        hyperstyle_config(sd, dict(opts, encoder_type="HyperNetwork"), gen)
    bad = dict(sd)
    bad["refinement_blocks.20.convs.0.weight"] = torch.zeros(1, 512, 3, 3)
    with pytest.raises(ModelMismatchError, match="only layers 0-16"):
        hyperstyle_config(bad, None, gen)
    bad = dict(sd)
    bad["refinement_blocks.14.output.1.weight"] = torch.zeros(7, 512, 1, 1)
    with pytest.raises(ModelMismatchError, match="one per out/in"):
        hyperstyle_config(bad, None, gen)
    # every copy of the shared generator must be the same tensor
    from hyperinverter_gui.formats.hyperstyle_files import _drop_shared_copies

    cfg = hyperstyle_config(sd, opts, gen)
    assert not any(".hypernet." in k for k in _drop_shared_copies(sd, cfg, "x"))
    bad = dict(sd)
    bad["refinement_blocks.5.hypernet.w1"] = sd["shared_weight_hypernet.w1"] + 1
    with pytest.raises(ModelMismatchError, match="differs"):
        _drop_shared_copies(bad, cfg, "x")


# --------------------------------------------------------------------------
# inversion


def test_invert_steps_and_results(hs_model, hs_run):
    results, _, steps = hs_run
    assert [i for i, _ in steps] == [1, 2, 3]
    assert all(y.shape == (2, 3, 128, 128) for _, y in steps)
    assert len(results) == 2
    num_ws = hs_model.generator.num_ws
    for n, r in enumerate(results):
        assert r.w.shape == (num_ws, 512)
        assert r.phase1.shape == r.image.shape == (3, 128, 128)
        assert torch.equal(r.image, steps[-1][1][n])
        assert r.metadata == {"backend": "hyperstyle", "iterations": "3"}
        shapes = hs_model.generator.synthesis.weight_shapes()
        assert sorted(r.deltas) == sorted(t.name for t in hs_model.cfg.layers)
        for k, v in r.deltas.items():
            assert v.shape == shapes[k]
        assert torch.isfinite(r.image).all()
        # the refinement changed the picture
        assert (r.image - r.phase1).abs().max() > 0.05
    # rows of w: encoder output + latent_avg (whose rows are equal here)
    assert torch.allclose(results[0].w, results[0].w[:1].expand(num_ws, -1))
    assert not torch.allclose(results[0].w, results[1].w)


def test_initial_code_and_reconstruction(hs_model, hs_run, hs_photos):
    results, _, _ = hs_run
    with torch.no_grad():
        x256 = resize_for_hyperstyle(hs_photos)
        w = hs_model.w_encoder(x256)[:, None, :] + hs_model.latent_avg[None]
        y0 = hs_model.generator.synthesis(w)
    assert torch.allclose(torch.stack([r.w for r in results]), w, atol=1e-6)
    assert torch.allclose(torch.stack([r.phase1 for r in results]), y0, atol=1e-5)


def test_additive_deltas_equal_multiplicative_weights(hs_model, hs_run):
    """G(w; theta + theta*D) == G(w; theta*(1+D)) with a weight-modified generator."""
    results, raw, _ = hs_run
    params = dict(hs_model.generator.synthesis.named_parameters())
    for name, d in raw.offsets.items():
        kind = next(t.kind for t in hs_model.cfg.layers if t.name == name)
        # one offset per (out, in) pair broadcast over the kernel; full kernels for shared blocks
        assert d.shape[3:] == ((3, 3) if kind == "shared" else (1, 1))
        assert torch.allclose(results[0].deltas[name], params[name] * d[0], atol=1e-6)
    for n in range(2):
        g = copy.deepcopy(hs_model.generator)
        with torch.no_grad():
            for name, p in g.synthesis.named_parameters():
                if name in raw.offsets:
                    p.copy_(p * (1 + raw.offsets[name][n]))
            y = g.synthesis(results[n].w[None])[0]
        assert (y - results[n].image).abs().max() < 1e-4
        # and the stored residuals reproduce the image through the usual synthesis path
        with torch.no_grad():
            y2 = hs_model.generator.synthesis(results[n].w[None], results[n].deltas.batched())[0]
        assert (y2 - results[n].image).abs().max() < 1e-5


def test_offsets_accumulate_over_steps(hs_model, hs_run, hs_photos):
    """D_T = sum_t H([x, pool256(y_{t-1})]) with y_0 = G(w; theta) and y_t the step images (not clamped)."""
    results, raw, steps = hs_run
    x256 = resize_for_hyperstyle(hs_photos)
    prev = [torch.stack([r.phase1 for r in results])] + [y for _, y in steps[:-1]]
    assert torch.equal(raw.images[-1], steps[-1][1])
    total: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for y in prev:
            pooled = F.adaptive_avg_pool2d(y, (256, 256))
            for i, d in hs_model.hypernet(torch.cat([x256, pooled], 1)).items():
                total[i] = d if i not in total else total[i] + d
    for t in hs_model.cfg.layers:
        assert torch.allclose(raw.offsets[t.name], total[t.index], atol=1e-6)


def test_refinement_blocks_from_raw_tensors(hs_dir, hs_model, hs_photos):
    """Recompute the offsets of each block kind from the checkpoint's tensors with plain functional ops."""
    from hyperinverter_gui.formats import checkpoints

    sd = checkpoints.subdict(checkpoints.state_dict_of(checkpoints.load_torch_file(hs_dir / "hyperstyle_ffhq.pt")),
                             "hypernet")
    x = torch.cat([resize_for_hyperstyle(hs_photos)] * 2, 1)
    with torch.no_grad():
        feats = hs_model.hypernet.features(x)
        shared = hs_model.hypernet.shared_weight_hypernet
        got = {i: hs_model.hypernet.refinement_blocks[str(i)](feats, shared) for i in (5, 14, 16)}

        def stack(p, first_stride):
            y, j = feats, 0
            while f"{p}.convs.{2 * j}.weight" in sd:
                y = F.leaky_relu(F.conv2d(y, sd[f"{p}.convs.{2 * j}.weight"], sd[f"{p}.convs.{2 * j}.bias"],
                                          stride=first_stride if j == 0 else 2, padding=1), 0.01)
                j += 1
            return y

        # shared block 5 (b16.conv0): code -> shared generator, full 3x3 kernels
        code = stack("refinement_blocks.5", 1).flatten(1)
        code = F.linear(code, sd["refinement_blocks.5.linear.weight"] / math.sqrt(512), sd["refinement_blocks.5.linear.bias"])
        h = (code @ sd["shared_weight_hypernet.w2"] + sd["shared_weight_hypernet.b2"]).view(2, 16, 512)
        kern = (h @ sd["shared_weight_hypernet.w1"] + sd["shared_weight_hypernet.b1"]).view(2, 16, 16, 3, 3)
        assert torch.allclose(got[5], kern, atol=1e-5)
        # per-channel block 14 (b128.conv0, 8 x 16): pooled, one offset per pair, repeated over the taps
        y = stack("refinement_blocks.14", 2).mean(dim=(2, 3), keepdim=True)
        y = F.conv2d(y, sd["refinement_blocks.14.output.1.weight"], sd["refinement_blocks.14.output.1.bias"])
        rep = y.view(2, 8, 16).unsqueeze(3).repeat(1, 1, 1, 3).unsqueeze(4).repeat(1, 1, 1, 1, 3)
        assert torch.allclose(got[14].expand(2, 8, 16, 3, 3), rep, atol=1e-6)
        # toRGB block 16: [3, in, 1, 1]
        y = F.conv2d(stack("refinement_blocks.16", 2), sd["refinement_blocks.16.output.0.weight"],
                     sd["refinement_blocks.16.output.0.bias"])
        assert torch.allclose(got[16], y.view(2, 3, 8, 1, 1), atol=1e-6)


def test_results_save_and_edit_like_hyperinverter(hs_model, hs_run, tmp_path):
    from hyperinverter_gui.inversion.result import load_inversion, save_inversion

    r = hs_run[0][1]
    back = load_inversion(save_inversion(r, tmp_path / "face.safetensors"))
    assert back.metadata["backend"] == "hyperstyle" and back.metadata["iterations"] == "3"
    assert set(back.deltas) == set(r.deltas)
    with torch.no_grad():
        w = back.w[None] + 0.1  # an edit moves w; the deltas stay
        y = hs_model.generator.synthesis(w, back.deltas.batched())
    assert y.shape == (1, 3, 128, 128) and torch.isfinite(y).all()


def test_input_resize(hs_model, hs_photos):
    x256 = resize_for_hyperstyle(hs_photos)
    assert x256.shape == (2, 3, 256, 256)
    # like the official data transform (PIL bilinear resize): antialiased
    ref = F.interpolate(hs_photos, size=(256, 256), mode="bilinear", align_corners=False, antialias=True)
    assert torch.equal(x256, ref)
    assert resize_for_hyperstyle(x256) is x256
    assert invert_hyperstyle(hs_model, hs_photos[:0]) == []


@pytest.mark.parametrize("bad", [0, 6, 2.0, True, "5", None])
def test_iterations_validated(hs_model, hs_photos, bad):
    with pytest.raises(ValueError, match="1 to 5"):
        invert_hyperstyle(hs_model, hs_photos, iterations=bad)


def test_bad_images(hs_model):
    with pytest.raises(ValueError, match=r"\[N,3,H,W\]"):
        invert_hyperstyle(hs_model, torch.zeros(3, 64, 64))
    with pytest.raises(ValueError, match=r"\[N,3,H,W\]"):
        invert_hyperstyle(hs_model, torch.zeros(1, 1, 64, 64))


# --------------------------------------------------------------------------
# bad files


def test_hyperinverter_checkpoint_given_as_hyperstyle(hs_dir, tmp_path):
    p = tmp_path / "hyperinverter_ffhq.pt"
    torch.save({"state_dict": {"w_bar_encoder.input_layer.0.weight": torch.zeros(1),
                               "hypernet.weight_regressors.b4_conv1_weight.w1": torch.zeros(1)},
                "opts": {"encoder_type": "LayerWiseEncoder"}}, p)
    with pytest.raises(ModelFileError, match="HyperInverter checkpoint, not HyperStyle"):
        load_hyperstyle(p, hs_dir / "faces_w_encoder.pt")


def test_missing_w_encoder(hs_dir, tmp_path):
    with pytest.raises(ModelFileError, match="W encoder was not found"):
        load_hyperstyle(hs_dir / "hyperstyle_ffhq.pt", tmp_path / "faces_w_encoder.pt")
    with pytest.raises(ModelFileError, match="needs its W encoder"):
        load_hyperstyle(hs_dir / "hyperstyle_ffhq.pt", None)


def test_missing_checkpoint(hs_dir, tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_hyperstyle(tmp_path / "hyperstyle_ffhq.pt", hs_dir / "faces_w_encoder.pt")


def test_swapped_files(hs_dir):
    with pytest.raises(ModelFileError, match="wrong way round"):
        load_hyperstyle(hs_dir / "faces_w_encoder.pt", hs_dir / "hyperstyle_ffhq.pt")


def test_wrong_kind_of_w_encoder(hs_dir, tmp_path):
    e4e = tmp_path / "e4e_ffhq_encode.pt"
    torch.save({"state_dict": {"encoder.styles.0.convs.0.weight": torch.zeros(1),
                               "encoder.input_layer.0.weight": torch.zeros(1),
                               "decoder.style.1.weight": torch.zeros(1)}}, e4e)
    with pytest.raises(ModelFileError, match="one output per style"):
        load_hyperstyle(hs_dir / "hyperstyle_ffhq.pt", e4e)
    gen = tmp_path / "stylegan2-ffhq-config-f.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(1)}}, gen)
    with pytest.raises(ModelFileError, match="rosinality stylegan2-pytorch generator, not a W-encoder"):
        load_hyperstyle(hs_dir / "hyperstyle_ffhq.pt", gen)
    with pytest.raises(ModelFileError, match="not a HyperStyle checkpoint"):
        load_hyperstyle(gen, hs_dir / "faces_w_encoder.pt")


def test_encoder_only_w_encoder_file_is_accepted(hs_dir, hs_model, tmp_path):
    p = hf.write_faces_w_encoder(tmp_path / "w.pt", with_decoder=False)
    m = load_hyperstyle(hs_dir / "hyperstyle_ffhq.pt", p)
    theirs = m.w_encoder.state_dict()
    for k, v in hs_model.w_encoder.state_dict().items():
        assert torch.equal(theirs[k], v), k


def test_truncated_files(hs_dir, tmp_path):
    for name in ("hyperstyle_ffhq.pt", "faces_w_encoder.pt"):
        data = (hs_dir / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_hyperstyle(tmp_path / "hyperstyle_ffhq.pt", hs_dir / "faces_w_encoder.pt")
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_hyperstyle(hs_dir / "hyperstyle_ffhq.pt", tmp_path / "faces_w_encoder.pt")


def test_missing_latent_avg(hs_dir, tmp_path):
    p = tmp_path / "no_latent_avg.pt"
    torch.save({"state_dict": {"hypernet.conv1.weight": torch.zeros(64, 6, 7, 7),
                               "decoder.style.1.weight": torch.zeros(512, 512)}, "opts": {}}, p)
    with pytest.raises(ModelFileError, match="latent_avg"):
        load_hyperstyle(p, hs_dir / "faces_w_encoder.pt")


# --------------------------------------------------------------------------
# the separable variant


def test_separable_variant(hs_dir, hs_photos, tmp_path):
    p = hf.write_hyperstyle_checkpoint(tmp_path / "sep.pt", layers="0,14,16", separable=True, seed=60)
    m = load_hyperstyle(p, hs_dir / "faces_w_encoder.pt")
    assert m.cfg.hypernet_type == "SharedWeightsHyperNetResNetSeparable"
    assert {t.index: t.kind for t in m.cfg.layers} == {0: "shared", 14: "separable", 16: "torgb"}
    from hyperinverter_gui.formats import checkpoints

    sd = checkpoints.subdict(checkpoints.state_dict_of(checkpoints.load_torch_file(p)), "hypernet.refinement_blocks.14")
    x = torch.cat([resize_for_hyperstyle(hs_photos)] * 2, 1)
    with torch.no_grad():
        feats = y = m.hypernet.features(x)
        for j in range(4):
            y = F.leaky_relu(F.conv2d(y, sd[f"convs.{2 * j}.weight"], sd[f"convs.{2 * j}.bias"], stride=2, padding=1), 0.01)
        f = y.flatten(1)
        k_in = F.linear(f, sd["output.0.make_kernel_in.weight"], sd["output.0.make_kernel_in.bias"]).view(2, 3, 3, 1, 16)
        k_out = F.linear(f, sd["output.0.make_kernel_out.weight"], sd["output.0.make_kernel_out.bias"]).view(2, 3, 3, 8, 1)
        k = F.linear(k_out @ k_in, sd["output.0.kernel_linear_in.weight"], sd["output.0.kernel_linear_in.bias"])
        k = F.linear(k.permute(0, 1, 2, 4, 3), sd["output.0.kernel_linear_out.weight"], sd["output.0.kernel_linear_out.bias"])
        ref = k.permute(0, 4, 3, 1, 2)
        got = m.hypernet.refinement_blocks["14"](feats, m.hypernet.shared_weight_hypernet)
        assert torch.allclose(got, ref, atol=1e-6)
        r = invert_hyperstyle(m, hs_photos[:1], iterations=1)[0]
    assert r.deltas["b128.conv0.weight"].shape == (8, 16, 3, 3)
    assert torch.isfinite(r.image).all()


def test_cli_invert_and_edit_with_the_hyperstyle_backend(hs_dir, hs_photos, tmp_path, capsys, monkeypatch):
    from PIL import Image

    from hyperinverter_gui.cli.main import main
    from hyperinverter_gui.inversion.result import load_inversion
    from hyperinverter_gui.media.images import tensor_to_uint8

    ckpt = next(p for p in hs_dir.iterdir() if p.name.startswith("hyperstyle") and p.suffix == ".pt")
    wenc = next(p for p in hs_dir.iterdir() if "w_encoder" in p.name)
    src = tmp_path / "face.png"
    Image.fromarray(tensor_to_uint8(hs_photos[0])).save(src)
    out, inv = tmp_path / "recon.png", tmp_path / "face.safetensors"
    rc = main(["invert", str(src), "--backend", "hyperstyle", "--iterations", "2", "-c", str(ckpt),
               "--w-encoder", str(wenc), "--no-align", "-o", str(out), "--save-inversion", str(inv),
               "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    r = load_inversion(inv)
    assert r.metadata["backend"] == "hyperstyle" and r.metadata["iterations"] == "2"
    assert np.array_equal(np.asarray(Image.open(out)), tensor_to_uint8(r.image))
    # Editing the saved HyperStyle result uses the generator inside the HyperStyle checkpoint.
    edited = tmp_path / "same.png"
    monkeypatch.setenv("HYPERINVERTER_WEIGHTS", str(hs_dir))
    monkeypatch.setenv("HYPERINVERTER_USER_WEIGHTS", str(tmp_path / "user"))
    monkeypatch.setenv("HYPERINVERTER_CACHE", str(tmp_path / "cache"))
    assert main(["edit", str(inv), "-o", str(edited), "--device", "cpu", "--directions",
                 str(tmp_path / "no_directions")]) == 0
    assert np.array_equal(np.asarray(Image.open(edited)), tensor_to_uint8(r.image))
    with pytest.raises(SystemExit) as exit_info:  # argparse: "invalid choice: 7 (choose from 1, 2, 3, 4, 5)"
        main(["invert", str(src), "--backend", "hyperstyle", "--iterations", "7", "-o", str(out)])
    assert exit_info.value.code == 2
