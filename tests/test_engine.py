"""The generator with weight deltas, the hypernetwork wiring, and two-phase inversion."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from hyperinverter_gui.engine.reference import invert, synthesize
from hyperinverter_gui.inversion.result import WeightDeltas, load_inversion, save_inversion
from hyperinverter_gui.networks import ops
from hyperinverter_gui.networks.hypernetwork import feature_index


def _ws(generator, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return generator.mapping(torch.randn(n, generator.z_dim, generator=g))


def test_upsampling_conv_matches_filter_then_conv():
    # Reference ordering of the same operation: upsample by zero insertion,
    # pad, low-pass filter (gain 4), then a 3x3 *convolution* (flipped kernel:
    # upstream runs its upsampling layers with flip_weight=False).
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 6, 6, generator=g)
    w = torch.randn(7, 5, 3, 3, generator=g)
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = torch.outer(f, f) / 64
    n, c, h, wd = x.shape
    z = torch.zeros(n, c, 2 * h, 2 * wd)
    z[:, :, ::2, ::2] = x
    z = F.pad(z, [3, 2, 3, 2])
    z = F.conv2d(z, (f * 4).flip([0, 1])[None, None].repeat(c, 1, 1, 1), groups=c)
    ref = F.conv2d(z, w.flip([2, 3]))
    out = ops.conv2d_up2(x, w, f)
    assert out.shape == (2, 7, 12, 12)
    assert torch.allclose(out, ref, atol=1e-5)


def test_shared_and_per_sample_modulation_agree():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 8, 8, generator=g)
    w = torch.randn(6, 4, 3, 3, generator=g)
    s = torch.randn(3, 4, generator=g)
    a = ops.modulated_conv2d(x, w, s)  # activations path (shared weight, batch > 1)
    b = ops.modulated_conv2d(x, w.unsqueeze(0).repeat(3, 1, 1, 1, 1), s)  # grouped per-sample path
    assert torch.allclose(a, b, atol=1e-5)


def test_delta_is_added_to_the_raw_weight(generator):
    """G(w; theta + delta) equals a generator whose stored weights were changed by delta."""
    ws = _ws(generator, n=1)
    g = torch.Generator().manual_seed(2)
    names = ["b8.conv0.weight", "b16.torgb.weight", "b4.conv1.affine.weight"]
    shapes = generator.synthesis.weight_shapes()
    deltas = {k: 0.3 * torch.randn(1, *shapes[k], generator=g) for k in names}
    edited = copy.deepcopy(generator)
    params = dict(edited.synthesis.named_parameters())
    with torch.no_grad():
        for k in names:
            params[k] += deltas[k][0]
    with torch.no_grad():
        a = generator.synthesis(ws, deltas)
        b = edited.synthesis(ws)
        c = generator.synthesis(ws)
    assert torch.allclose(a, b, atol=1e-5)
    assert (a - c).abs().max() > 1e-2  # the deltas do change the image


def test_zero_deltas_equal_no_deltas(generator):
    ws = _ws(generator, n=2)
    zero = {k: torch.zeros(2, *s) for k, s in generator.synthesis.weight_shapes().items() if k.endswith("weight")}
    with torch.no_grad():
        assert torch.allclose(generator.synthesis(ws, zero), generator.synthesis(ws), atol=1e-5)


def test_delta_validation(generator):
    ws = _ws(generator, n=1)
    with pytest.raises(KeyError, match="b999"):
        generator.synthesis(ws, {"b999.conv1.weight": torch.zeros(1, 1)})
    with pytest.raises(ValueError, match=r"b4.conv1.weight"):
        generator.synthesis(ws, {"b4.conv1.weight": torch.zeros(1, 3, 3)})
    with pytest.raises(ValueError, match="ws must be"):
        generator.synthesis(torch.zeros(1, 3, 512))


def test_truncation_and_preview(generator):
    z = torch.randn(2, generator.z_dim)
    ws = generator.mapping(z, truncation_psi=0.0)
    assert torch.allclose(ws, generator.w_avg.expand_as(ws))
    with torch.no_grad():
        small = generator.synthesis(ws, max_resolution=16)
    assert small.shape == (2, 3, 16, 16)


def test_feature_index_follows_the_official_table():
    # Facts from the official weight_shapes table (FFHQ, 1024 px).
    table = {
        "b4.conv1.weight": 0, "b4.torgb.weight": 1, "b8.conv0.weight": 2, "b8.conv1.weight": 3,
        "b8.torgb.weight": 3, "b64.conv0.weight": 8, "b128.conv1.weight": 11, "b512.torgb.weight": 15,
        "b1024.conv0.weight": 16, "b1024.conv1.weight": 17, "b1024.torgb.weight": 17,
        "b16.conv1.affine.weight": 5,
    }
    for name, idx in table.items():
        assert feature_index(name) == idx, name


def test_inversion_result(inverted, generator, model):
    r = inverted[0]
    assert r.w.shape == (generator.num_ws, 512)
    assert torch.equal(r.w, r.w[:1].expand_as(r.w))  # one code repeated over all ws
    assert r.phase1.shape == r.image.shape == (3, 32, 32)
    assert set(r.deltas) == {t.name for t in model.cfg.targets}
    assert r.deltas["b8.conv0.weight"].shape == (32, 32, 3, 3)
    assert (r.image - r.phase1).abs().max() > 1e-3  # Phase II changes the image
    # Phase I image is G(w; theta); the final image is G(w; theta + delta).
    with torch.no_grad():
        assert torch.allclose(synthesize(model, r.w[None], None)[0], r.phase1, atol=1e-5)
        assert torch.allclose(synthesize(model, r.w[None], r.deltas.batched())[0], r.image, atol=1e-5)


def test_batch_inversion_equals_single_inversions(model, photos, inverted):
    single = invert(model, photos[1:2])[0]
    batched = inverted[1]
    assert torch.allclose(single.w, batched.w, atol=1e-4)
    assert torch.allclose(single.image, batched.image, atol=1e-4)
    for k in single.deltas:
        assert torch.allclose(single.deltas[k], batched.deltas[k], atol=1e-5), k
    # And the two images of the batch really got different weights.
    a, b = inverted
    assert not torch.allclose(a.deltas["b4.conv1.weight"], b.deltas["b4.conv1.weight"])


def test_stacked_deltas_render_both_images(model, inverted):
    ws = torch.stack([r.w for r in inverted])
    deltas = WeightDeltas.stack(r.deltas for r in inverted)
    imgs = synthesize(model, ws, deltas)
    for i, r in enumerate(inverted):
        assert torch.allclose(imgs[i], r.image, atol=1e-5)


def test_save_and_load_inversion(tmp_path, inverted, model):
    r = inverted[0]
    path = save_inversion(r, tmp_path / "inv.safetensors", metadata={"checkpoint": "HI.pt"})
    from safetensors.torch import load_file

    raw = load_file(str(path))
    assert raw["w"].shape == (8, 512) and raw["w"].dtype == torch.float32
    assert raw["image"].shape == raw["phase1"].shape == (3, 32, 32)
    assert raw["delta.b4.conv1.weight"].shape == (32, 32, 3, 3)
    assert raw["delta.b32.torgb.weight"].shape == (3, 16, 1, 1)
    back = load_inversion(path)
    assert back.metadata["checkpoint"] == "HI.pt"
    assert torch.equal(back.w, r.w) and torch.equal(back.image, r.image)
    img = synthesize(model, back.w[None], back.deltas.batched())[0]
    assert torch.allclose(img, r.image, atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["inv.safetensors"]  # no temp files left


def test_load_inversion_rejects_other_files(tmp_path):
    from safetensors.torch import save_file

    from hyperinverter_gui.errors import HyperInverterError

    p = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(p))
    with pytest.raises(HyperInverterError, match="not an inversion"):
        load_inversion(p)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(HyperInverterError, match="not a readable inversion"):
        load_inversion(bad)


def test_regressor_output_is_a_memory_view_not_a_transpose():
    """The official regressor ends with ``.view(N, O, I, k, k)`` on an [N, I, O*k*k] tensor."""
    from hyperinverter_gui.networks.hypernetwork import WeightRegressor

    reg = WeightRegressor(hidden_dim=1, out_channels=2, in_channels=3, kernel_size=1)
    with torch.no_grad():
        for p in reg.parameters():
            p.zero_()
        reg.feature_extractor[6].bias.fill_(1.0)  # the D=1 feature vector is exactly [1]
        reg.w1.copy_(torch.tensor([[1.0, 2.0, 3.0]]))  # row i of M scales with i+1
        reg.w2.copy_(torch.tensor([[10.0, 20.0]]))  # column o of M scales with o+1
    feats = torch.zeros(1, 512, 8, 8)
    out = reg(feats, feats)[0, :, :, 0, 0]
    # M[i, o] = (i+1) * 10 * (o+1) = [[10, 20], [20, 40], [30, 60]], read in memory order as 2x3.
    assert torch.equal(out, torch.tensor([[10.0, 20.0, 20.0], [40.0, 30.0, 60.0]]))
