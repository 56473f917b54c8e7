"""The fast paths (fast_render, fast_inversion) against the exact engine, on tiny models."""

from __future__ import annotations

import copy
import math

import official_formats as of
import pytest
import torch

from hyperinverter_gui.engine.inverter import FastInverter, fast_inverter, invert_fast
from hyperinverter_gui.engine.renderer import EditRenderer, upsample_img
from hyperinverter_gui.inversion.result import WeightDeltas
from hyperinverter_gui.networks import ops

BOUND = 1e-3  # max abs difference on images (roughly in [-1, 1]) of the float32 fast path
PSNR_FLOOR = 40.0  # dB, bfloat16 against float32, peak-to-peak 2


def _psnr(a: torch.Tensor, ref: torch.Tensor) -> float:
    mse = (a - ref).square().mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)


def _edits(w: torch.Tensor, n: int, seed: int = 0, start: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        e = w.clone()
        e[start:] += 0.5 * torch.randn(e[start:].shape, generator=g)
        out.append(e)
    return out


def _reference(generator, w, deltas, max_resolution=None):
    with torch.no_grad():
        return generator.synthesis(w[None], deltas.batched() if deltas is not None else None,
                                   max_resolution=max_resolution)[0]


def _previews(generator):
    return [None] + [r for r in generator.synthesis.block_resolutions if 4 < r < generator.img_resolution]


def test_edited_frames_equal_the_exact_path(generator, inverted):
    r = inverted[0]
    renderer = EditRenderer(generator, r.deltas)
    # The inverted image itself, then several edits, at full and preview resolutions.
    assert (renderer.render(r.w) - r.image).abs().max() < BOUND
    for w in _edits(r.w, 3):
        for res in _previews(generator):
            out = renderer.render(w, max_resolution=res)
            ref = _reference(generator, w, r.deltas, res)
            assert out.shape == ref.shape
            assert (out - ref).abs().max().item() < BOUND, res


def test_theta_renderer_and_batches_equal_the_exact_path(generator, inverted):
    ws = torch.stack([e for e in _edits(inverted[0].w, 3, seed=1)])
    with torch.no_grad():
        ref = generator.synthesis(ws)
    out = EditRenderer(generator, None).render_batch(ws)
    assert (out - ref).abs().max().item() < BOUND
    # Shared theta + delta_theta for a batch of w (activation modulation).
    d = inverted[1].deltas
    with torch.no_grad():
        ref = generator.synthesis(ws, {k: v.expand(3, *v.shape) for k, v in d.items()}, max_resolution=16)
    out = EditRenderer(generator, d).render_batch(ws, max_resolution=16)
    assert (out - ref).abs().max().item() < BOUND


@pytest.mark.parametrize("start", [1, 4, 6, 7])
def test_late_layer_edits_reuse_cached_layers_and_stay_exact(generator, inverted, start):
    r = inverted[0]
    renderer = EditRenderer(generator, r.deltas, cache_resolution=generator.img_resolution)
    renderer.render(r.w)
    n_steps = len(renderer.steps)
    for w in _edits(r.w, 3, seed=start, start=start):
        out = renderer.render(w)
        assert (out - _reference(generator, w, r.deltas)).abs().max().item() < BOUND
        # It restarted at the deepest layer whose inputs (rows < start) did not move.
        first, end = renderer.last_run
        assert end == n_steps
        nxt = renderer.steps[first + 1].rows_before if first + 1 < n_steps else generator.num_ws
        assert 0 < first and renderer.steps[first].rows_before <= start < nxt
        # A preview of the same w only reruns its last toRGB (all layers before it are cached).
        out = renderer.render(w, max_resolution=16)
        assert (out - _reference(generator, w, r.deltas, 16)).abs().max().item() < BOUND
        assert renderer.last_run[0] == renderer.last_run[1] - 1


def test_cache_survives_any_sequence_of_edits(generator, inverted):
    r = inverted[1]
    renderer = EditRenderer(generator, r.deltas, cache_resolution=16)
    g = torch.Generator().manual_seed(5)
    w = r.w.clone()
    for i in range(12):
        start = int(torch.randint(0, generator.num_ws, (1,), generator=g))
        if i % 4 != 3:  # every fourth frame repeats the previous w (returned from the cache)
            w = w.clone()
            w[start:] += 0.3 * torch.randn(w[start:].shape, generator=g)
        res = [None, 8, 16][i % 3]
        assert (renderer.render(w, res) - _reference(generator, w, r.deltas, res)).abs().max().item() < BOUND
    assert renderer.cache_bytes() > 0
    renderer.clear_cache()
    assert renderer.cache_bytes() == 0


def test_accepts_weight_deltas_and_batched_dicts(generator, inverted):
    r = inverted[0]
    a = EditRenderer(generator, r.deltas).render(r.w)
    b = EditRenderer(generator, r.deltas.batched()).render(r.w[None])
    assert torch.equal(a, b)
    with pytest.raises(ValueError):
        EditRenderer(generator, {k: v[None].expand(2, *v.shape) for k, v in r.deltas.items()})
    with pytest.raises(KeyError):
        EditRenderer(generator, {"b4.nothing.weight": torch.zeros(1)})
    with pytest.raises(ValueError):
        EditRenderer(generator, r.deltas).render(r.w[:3])


def test_affine_and_torgb_deltas(generator, inverted):
    """Residuals on any weight the synthesis network applies them to, affine weights included."""
    g = torch.Generator().manual_seed(9)
    shapes = generator.synthesis.weight_shapes()
    names = [n for n in shapes if n.endswith(("affine.weight", "conv0.weight", "conv1.weight", "torgb.weight"))]
    deltas = WeightDeltas({n: 0.05 * torch.randn(shapes[n], generator=g) for n in names})
    renderer = EditRenderer(generator, deltas)
    for w in _edits(inverted[0].w, 2, seed=3):
        assert (renderer.render(w) - _reference(generator, w, deltas)).abs().max().item() < BOUND


def test_non_binomial_filter_and_conv_clamp(tmp_path, inverted):
    """The generic FIR path and conv_clamp (lrelu gain applied in place, not folded forward)."""
    from hyperinverter_gui.formats.loading import load_generator

    of.write_nvidia_pickle(tmp_path / "G.pkl", of.stylegan2_generator_tree(seed=4, conv_clamp=0.7))
    g = load_generator(tmp_path / "G.pkl")
    assert g.synthesis.b8.conv0.conv_clamp == 0.7
    boxed = copy.deepcopy(g)
    with torch.no_grad():
        for name, b in boxed.named_buffers():
            if name.endswith("resample_filter"):
                b.copy_(torch.ones(4, 4) / 16)
    d = inverted[0].deltas
    for gen in (g, boxed):
        renderer = EditRenderer(gen, d)
        for w in _edits(inverted[0].w, 2, seed=7):
            for res in (None, 8):
                assert (renderer.render(w, res) - _reference(gen, w, d, res)).abs().max().item() < BOUND


def test_upsample_img_matches_the_reference_filter():
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = torch.outer(f, f) / 64
    x = torch.randn(2, 3, 9, 9)
    assert torch.allclose(upsample_img(x, f), ops.upsample2d(x, f), atol=1e-6)
    box = torch.ones(4, 4) / 16
    assert torch.allclose(upsample_img(x, box), ops.upsample2d(x, box))


def _psnr_face_scale(a: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR (peak-to-peak 2) after scaling both images so the reference has std 0.5, as a face has.

    The random-weight tiny model draws images of std ~2 (a real generator stays in [-1, 1]);
    bf16 errors are relative to the signal, so the raw PSNR would understate a real model's by
    about 20*log10(std / 0.5) dB. The raw figure is checked too, with a looser floor.
    """
    scale = 0.5 / ref.std().item()
    return _psnr(a * scale, ref * scale)


def test_bfloat16_frames_meet_the_psnr_floor(generator, inverted):
    """PSNR of bfloat16 frames against float32 on the tiny model.

    The FFHQ-size figures (random weights) are measured by benchmarks/bench_speed.py.
    """
    for r in inverted:
        f32 = EditRenderer(generator, r.deltas)
        bf16 = EditRenderer(generator, r.deltas, precision="bfloat16")
        assert bf16.precision == "bfloat16"
        for w in [r.w] + _edits(r.w, 3, seed=11):
            ref = f32.render(w)
            out = bf16.render(w)
            assert out.dtype == torch.float32
            assert _psnr_face_scale(out, ref) >= PSNR_FLOOR
            assert _psnr(out, ref) >= PSNR_FLOOR - 6


def test_fast_inversion_equals_invert(model, photos, inverted):
    fast = invert_fast(model, photos)
    assert len(fast) == len(inverted)
    for a, b in zip(fast, inverted):
        assert (a.w - b.w).abs().max().item() < 1e-5
        assert (a.phase1 - b.phase1).abs().max().item() < BOUND
        assert (a.image - b.image).abs().max().item() < BOUND
        assert list(a.deltas) == list(b.deltas)
        for k in b.deltas:
            rel = ((a.deltas[k] - b.deltas[k]).norm() / b.deltas[k].norm()).item()
            assert rel < 1e-4, k
    # One photo at a time gives the same as the batch.
    single = invert_fast(model, photos[1:])[0]
    assert (single.image - inverted[1].image).abs().max().item() < BOUND
    assert fast_inverter(model) is fast_inverter(model, "float32")


def test_folded_encoders_give_the_modules_results(model, photos):
    """float32 inversions run E1 and E2 folded (networks.fast_encoders); fold_encoders=False runs the
    modules' forward: the two agree within float rounding (E1's w and E2's features)."""
    folded, plain = FastInverter(model), FastInverter(model, fold_encoders=False)
    x256 = folded.prepare_input(photos[:1])
    assert (folded.encode_w(x256) - plain.encode_w(x256)).abs().max().item() < 1e-5
    for a, b in zip(folded.encode_pair(x256, photos[1:]), plain.encode_pair(x256, photos[1:])):
        assert ((a - b).abs().max() / b.abs().max()).item() < 1e-5


def test_fast_inversion_keeps_warm_renderers(model, photos, generator):
    out = FastInverter(model).invert(photos[:1], keep_renderers=True)
    (result,), (renderer,) = out.results, out.renderers
    assert torch.equal(renderer.render(result.w), result.image)
    w = _edits(result.w, 1, seed=2, start=5)[0]
    assert (renderer.render(w) - _reference(generator, w, result.deltas)).abs().max().item() < BOUND


def test_bfloat16_inversion_is_close(model, photos, inverted):
    stages = []
    fast = FastInverter(model, "bf16").invert(photos, on_stage=stages.append)
    assert stages == ["resize", "encode_w", "phase1", "encode_pair", "hypernet", "phase2"]
    for a, b in zip(fast, inverted):
        assert a.image.dtype == torch.float32 and torch.isfinite(a.image).all()
        # Not exact (a setting): bf16 encoders move w and delta_theta slightly.
        assert _psnr(a.image, b.image) > 25


def test_recommended_precision_and_memory_figures(generator, inverted):
    from hyperinverter_gui.engine.renderer import PRECISIONS, recommended_precision

    assert recommended_precision("cpu") in PRECISIONS
    r = EditRenderer(generator, inverted[0].deltas, cache_resolution=0)
    r.render(inverted[0].w)
    assert r.weight_bytes() > 0 and r.cache_bytes() == 0
    with pytest.raises(ValueError):
        EditRenderer(generator, None, precision="float16")


@pytest.mark.parametrize("shape", [(3, 5, 4, 4), (4, 2, 7, 5), (1, 8, 1, 1)])
def test_polyphase_up_convolution_equals_the_transposed_convolution(shape):
    """The four per-phase kernels of _up_phases rebuild conv_transpose2d(stride 2) exactly."""
    from hyperinverter_gui.engine.renderer import _PHASE_OFFSETS, _up_phases

    g = torch.Generator().manual_seed(3)
    n, i, h, w = shape
    x = torch.randn(n, i, h, w, generator=g)
    weight = torch.randn(6, i, 3, 3, generator=g)
    ref = torch.nn.functional.conv_transpose2d(x, weight.transpose(0, 1) * 4.0, stride=2)
    out = torch.empty_like(ref)
    for (ry, rx), k in zip(_PHASE_OFFSETS, _up_phases(weight, torch.contiguous_format)):
        out[:, :, ry::2, rx::2] = torch.nn.functional.conv2d(x, k, padding=(1 - ry, 1 - rx))
    assert (out - ref).abs().max().item() < 1e-4
    assert _up_phases(torch.randn(6, i, 5, 5), torch.contiguous_format) is None  # other kernels keep convT


def test_polyphase_and_transposed_paths_render_the_same_frames(generator, inverted):
    r = inverted[1]
    poly = EditRenderer(generator, r.deltas)
    plain = EditRenderer(generator, r.deltas, polyphase=False)
    assert any(s.layer.phases is not None for s in poly.steps if s.layer is not None and s.layer.up)
    assert all(s.layer.phases is None for s in plain.steps if s.layer is not None)
    for w in _edits(r.w, 2, seed=4):
        ref = _reference(generator, w, r.deltas)
        assert (poly.render(w) - ref).abs().max().item() < BOUND
        assert (plain.render(w) - ref).abs().max().item() < BOUND


def test_theta_renderer_reads_the_generator_weights_without_copying_them(generator, inverted):
    params = {n: p for n, p in generator.synthesis.named_parameters()}
    theta = EditRenderer(generator, None)
    for step in theta.steps:
        if step.layer is not None:
            assert step.layer.w_base.data_ptr() == params[f"{step.layer.name}.weight"].data_ptr()
    # With delta_theta the merged weights are the renderer's own; both count once with include_shared.
    edited = EditRenderer(generator, inverted[0].deltas)
    theta.render(inverted[0].w)
    edited.render(inverted[0].w)
    conv_bytes = sum(p.numel() * 4 for n, p in params.items() if n.endswith(("conv0.weight", "conv1.weight")))
    assert theta.weight_bytes(include_shared=True) - theta.weight_bytes() >= conv_bytes
    assert edited.weight_bytes() - theta.weight_bytes() >= conv_bytes  # theta + delta_theta, merged once


def test_layers_of_one_shape_share_one_scratch_weight(generator, inverted):
    r = EditRenderer(generator, inverted[0].deltas)
    r.render(inverted[0].w)
    shapes = set(r._scratch)
    assert shapes and len(shapes) == len(r._scratch)
    per_frame = [s.layer for s in r.steps if s.layer is not None and not s.layer.act_mod]
    assert len(r._scratch) < sum(4 if lay.phases else 1 for lay in per_frame)


def test_precision_plans():
    from hyperinverter_gui.engine.renderer import PrecisionPlan, precision_plan, recommended_precision

    auto = precision_plan("auto", "cpu")
    # What the user keeps or judges is exact; only drag previews may use bf16, and only where native.
    assert (auto.inversion, auto.frames) == ("float32", "float32")
    assert auto.previews == recommended_precision("cpu")
    assert precision_plan("bfloat16") == PrecisionPlan("bfloat16", "bfloat16", "bfloat16")
    assert precision_plan("float32") == PrecisionPlan("float32", "float32", "float32")
    with pytest.raises(ValueError):
        precision_plan("float16")


def test_bfloat16_previews_meet_the_raw_psnr_floor(generator, inverted):
    """The one place *auto* uses bf16: previews. Their raw PSNR (no scaling) clears the floor here."""
    for r in inverted:
        f32 = EditRenderer(generator, r.deltas)
        bf16 = EditRenderer(generator, r.deltas, precision="bfloat16")
        for w in [r.w] + _edits(r.w, 3, seed=12):
            for res in _previews(generator)[1:]:
                assert _psnr(bf16.render(w, res), f32.render(w, res)) >= PSNR_FLOOR, res
