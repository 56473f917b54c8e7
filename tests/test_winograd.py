"""Winograd F(4x4, 3x3) convolutions (models.winograd) and the renderer layers that use them."""

from __future__ import annotations

import official_formats as of
import pytest
import torch
import torch.nn.functional as F

from hyperinverter_gui.engine.renderer import EditRenderer
from hyperinverter_gui.networks import winograd

BOUND = 1e-3  # max abs difference on images of the float32 fast path (as in test_speed.py)


@pytest.mark.parametrize("n, c, o, h, w", [(1, 8, 5, 4, 4), (2, 16, 24, 8, 12), (3, 7, 9, 16, 8)])
def test_winograd_convolution_equals_the_direct_convolution(n, c, o, h, w):
    g = torch.Generator().manual_seed(n * 100 + c)
    x = torch.randn(n, c, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(o, c, 3, 3, generator=g) / (9 * c) ** 0.5
    bias = torch.randn(o, generator=g)
    s = torch.rand(n, c, generator=g) + 0.5
    d = torch.rand(n, o, generator=g) + 0.5
    ref = F.conv2d(x.double() * s.double()[:, :, None, None], weight.double(), padding=1)
    ref = ref * d.double()[:, :, None, None] + bias.double()[None, :, None, None]
    out = winograd.conv3x3(x, winograd.transform_weight(weight), in_scale=s, out_scale=d, bias=bias)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert (out.double() - ref).abs().max().item() < 1e-4 * ref.abs().max().item()
    # Without scales or bias: the plain convolution; one [I] scale broadcasts over the batch.
    plain = winograd.conv3x3(x.contiguous(), winograd.transform_weight(weight))
    assert (plain.double() - F.conv2d(x.double(), weight.double(), padding=1)).abs().max().item() < 1e-4
    shared = winograd.conv3x3(x, winograd.transform_weight(weight), in_scale=s[0])
    ref = F.conv2d(x.double() * s[0].double()[None, :, None, None], weight.double(), padding=1)
    assert (shared.double() - ref).abs().max().item() < 1e-4
    # Bias alone, and a shared [O] output scale with a bias (the folded BatchNorm of the encoders):
    # both written in the output pass.
    u = winograd.transform_weight(weight)
    direct = F.conv2d(x.double(), weight.double(), padding=1)
    biased = winograd.conv3x3(x, u, bias=bias)
    assert (biased.double() - direct - bias.double()[None, :, None, None]).abs().max().item() < 1e-4
    bn = winograd.conv3x3(x, u, out_scale=d[0], bias=bias)
    ref = direct * d[0].double()[None, :, None, None] + bias.double()[None, :, None, None]
    assert (bn.double() - ref).abs().max().item() < 1e-4



@pytest.mark.parametrize("n, c, o", [(2, 6, 20), (1, 24, 5)])
def test_winograd_bands_give_the_same_result(n, c, o):
    # The work runs in bands of tile rows; tiny bands (one row, a partial last band, more output
    # than input channels) must give the one-band result (to the matrix library's rounding: its
    # summation order may follow the matrix sizes), with every row written.
    g = torch.Generator().manual_seed(7)
    x = torch.randn(n, c, 28, 12, generator=g).contiguous(memory_format=torch.channels_last)
    u = winograd.transform_weight(torch.randn(o, c, 3, 3, generator=g))
    s, d, bias = torch.rand(n, c, generator=g) + 0.5, torch.rand(n, o, generator=g) + 0.5, torch.randn(o, generator=g)
    whole = winograd.conv3x3(x, u, in_scale=s, out_scale=d, bias=bias, band_bytes=1 << 40)
    for band_bytes in (1, 36 * 4 * n * 3 * max(c, o) * 2):  # 1 tile row per band; 2 rows (7 rows: 3 full + 1)
        banded = winograd.conv3x3(x, u, in_scale=s, out_scale=d, bias=bias, band_bytes=band_bytes)
        assert (banded - whole).abs().max().item() <= 1e-5 * whole.abs().max().item()

def test_winograd_rejects_what_it_cannot_compute():
    with pytest.raises(ValueError, match="3, 3"):
        winograd.transform_weight(torch.randn(4, 4, 5, 5))
    with pytest.raises(ValueError, match="divisible by 4"):
        winograd.conv3x3(torch.randn(1, 4, 6, 8), winograd.transform_weight(torch.randn(4, 4, 3, 3)))
    # The rule follows the measurements: enough channels, sides up to a ceiling, both lower on
    # AVX-512 CPUs (much faster direct convolutions). The generator's layers on each class:
    for wide in (False, True):
        assert winograd.worthwhile(512, 512, 64, 64, wide) and winograd.worthwhile(512, 512, 8, 8, wide)
        assert winograd.worthwhile(256, 256, 128, 128, wide) and winograd.worthwhile(128, 128, 256, 256, wide)
        assert not winograd.worthwhile(32, 32, 1024, 1024, wide)
        assert not winograd.worthwhile(512, 512, 4, 4, wide) and not winograd.worthwhile(256, 256, 30, 30, wide)
    assert winograd.worthwhile(64, 64, 512, 512, wide_vectors=False)  # AVX2 1.2x
    assert not winograd.worthwhile(64, 64, 512, 512, wide_vectors=True)  # AVX-512 0.9x: left direct
    assert not winograd.worthwhile(128, 128, 512, 512, wide_vectors=True)


@pytest.fixture(scope="module")
def wide_generator(tmp_path_factory):
    """A 32 px generator with 512 channels in every layer, so its 8-32 px convolutions take the Winograd path."""
    from hyperinverter_gui.formats.loading import load_generator

    path = tmp_path_factory.mktemp("wide") / "G.pkl"
    tree = of.stylegan2_generator_tree(seed=5, img_resolution=32, channel_base=16384, channel_max=512, z_dim=32,
                                       w_dim=64, mapping_layers=1)
    of.write_nvidia_pickle(path, tree)
    return load_generator(path)


def test_renderer_layers_on_the_winograd_path_keep_frames_exact(wide_generator):
    g = wide_generator
    torch.manual_seed(0)
    deltas = {k: 0.05 * torch.randn(1, *shape) for k, shape in g.synthesis.weight_shapes().items()}
    w = g.mapping(torch.randn(1, g.z_dim), None)[0]
    fast = EditRenderer(g, deltas)
    direct = EditRenderer(g, deltas, winograd=False)
    wino_layers = [s.layer.name for s in fast.steps if s.layer is not None and s.layer.winograd is not None]
    # Plain (not up-sampling) 3x3 convolutions at 8-32 px: b8.conv1, b16.conv1, b32.conv1.
    assert wino_layers == ["b8.conv1", "b16.conv1", "b32.conv1"]
    assert all(s.layer.winograd is None for s in direct.steps if s.layer is not None)
    with torch.no_grad():
        for k in range(3):
            wk = w + 0.3 * k * torch.randn(w.shape)
            ref = g.synthesis(wk[None], deltas)[0]
            for res in (None, 16):
                exp = ref if res is None else g.synthesis(wk[None], deltas, max_resolution=res)[0]
                assert (fast.render(wk, max_resolution=res) - exp).abs().max().item() < BOUND
                assert (direct.render(wk, max_resolution=res) - exp).abs().max().item() < BOUND
        # Several images at once (activation modulation with per-image styles).
        ws = torch.stack([w, w + 0.5, w - 0.5])
        ref = g.synthesis(ws, {k: v.expand(3, *v.shape[1:]) for k, v in deltas.items()})
        assert (fast.render_batch(ws) - ref).abs().max().item() < BOUND
    # Off by default where it does not pay: bfloat16 and (by the same rule) CUDA.
    assert all(s.layer.winograd is None for s in EditRenderer(g, deltas, precision="bfloat16").steps
               if s.layer is not None)


def test_renderer_without_kept_transforms_makes_them_per_frame_and_stays_exact(wide_generator, monkeypatch):
    """keep_transforms=False (Phase I's theta renderer): the layers where a per-frame transform pays
    (the AVX2 rule: 16 px and more) transform the generator's own weight at each frame."""
    monkeypatch.setattr(winograd, "_cpu_has_avx512", lambda: False)  # the AVX2 class's rule on any CPU
    g = wide_generator
    theta = EditRenderer(g, None, cache_resolution=0, keep_transforms=False)
    per_call = [s.layer.name for s in theta.steps if s.layer is not None and s.layer.winograd_per_call]
    assert per_call == ["b16.conv1", "b32.conv1"]
    assert all(s.layer.winograd is None for s in theta.steps if s.layer is not None)  # nothing kept
    params = dict(g.synthesis.named_parameters())
    layer = next(s.layer for s in theta.steps if s.layer is not None and s.layer.name == "b32.conv1")
    assert layer.w_base.data_ptr() == params["b32.conv1.weight"].data_ptr()  # read in place, not copied
    torch.manual_seed(1)
    ws = g.mapping(torch.randn(2, g.z_dim), None)
    with torch.no_grad():
        assert (theta.render_batch(ws) - g.synthesis(ws)).abs().max().item() < BOUND
        assert (theta.render(ws[0]) - g.synthesis(ws[:1])[0]).abs().max().item() < BOUND
