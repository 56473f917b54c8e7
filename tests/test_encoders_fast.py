"""The folded encoders (networks/fast_encoders.py) compute what the modules compute.

Random BatchNorm statistics, affine parameters and PReLU slopes (a freshly built module has the
identity BN, which would hide a wrong folding), seeded; small inputs so the full IR-SE-50 runs in
well under a second.
"""

from __future__ import annotations

import pytest
import torch

from hyperinverter_gui.networks import fast_encoders, winograd
from hyperinverter_gui.networks.encoders import LayerWiseEncoder, WEncoder
from hyperinverter_gui.networks.fast_encoders import (
    FastIRBackbone,
    FastLayerWiseEncoder,
    FastWEncoder,
    fast_encoder,
)

REL = 1e-5  # folding only: float32 rounding
REL_WINOGRAD = 1e-4  # plus F(4x4, 3x3) in some layers (~1e-5 relative each)


def _randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(1 + 0.3 * torch.randn(n, generator=g))
                m.bias.copy_(0.3 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.3 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            elif isinstance(m, torch.nn.PReLU):
                m.weight.copy_(0.25 + 0.2 * torch.randn(m.weight.shape, generator=g))
    return module.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def e1() -> WEncoder:
    torch.manual_seed(0)
    return _randomize(WEncoder("ir_se"), 1)


@pytest.fixture(scope="module")
def e2() -> LayerWiseEncoder:
    torch.manual_seed(1)
    return _randomize(LayerWiseEncoder(18, "ir_se"), 2)


def _x(n: int, side: int, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, side, side, generator=g) * 2 - 1).contiguous(memory_format=torch.channels_last)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@torch.no_grad()
def test_folded_e1_equals_the_module(e1):
    x = _x(2, 64)
    fast = FastWEncoder(e1, wide_vectors=True)  # the AVX-512 rule: no Winograd at these small shapes
    ref = e1(x)
    out = fast(x)
    assert out.shape == ref.shape
    assert _rel(out, ref) < REL
    assert fast.backbone.winograd_layers == 0
    # Plain (contiguous) inputs too, and one photo at a time equals the batch.
    assert _rel(fast(x.contiguous()), ref) < REL
    assert _rel(fast(x[1:]), ref[1:]) < REL


@torch.no_grad()
def test_folded_e1_with_winograd_layers_equals_the_module(e1):
    # 128 px: the 128-channel units run at 32 px, where the AVX2 rule picks Winograd.
    x = _x(1, 128)
    fast = FastWEncoder(e1, wide_vectors=False)
    out = fast(x)
    assert fast.backbone.winograd_layers > 0
    assert _rel(out, e1(x)) < REL_WINOGRAD


@torch.no_grad()
def test_folded_e2_equals_the_module(e2):
    x = _x(2, 64, seed=4)
    ref = e2(x)
    for wide in (True, False):
        out = FastLayerWiseEncoder(e2, wide_vectors=wide)(x)
        assert out.shape == ref.shape == (2, 18, 512, 2, 2)
        assert _rel(out, ref) < REL
    # Each style block's output is at its own place (a swap would pass a global bound on the stack).
    for j in (0, 3, 7, 17):
        assert _rel(out[:, j], ref[:, j]) < REL


@torch.no_grad()
def test_the_border_bias_of_the_folded_input_batchnorm_is_needed(e1):
    """Folding BN(x) into the next 3x3 convolution changes its bias on the one-pixel border only;
    a folding that used the interior bias everywhere is measurably wrong, and is caught."""
    x = _x(1, 64)
    ref = e1(x)
    fast = FastWEncoder(e1, wide_vectors=True)
    assert _rel(fast(x), ref) < REL
    for unit in fast.backbone.units:
        unit.conv1.edges.zero_()
    assert _rel(fast(x), ref) > 1e-3


@torch.no_grad()
def test_the_folding_reads_every_batchnorm(e1):
    """A wrong scale or shift in any one folded BatchNorm shows in the output."""
    x = _x(1, 64)
    ref = e1(x)
    for attr in ("scale", "shift"):
        for pick in (lambda b: b.units[0].conv1, lambda b: b.units[10].conv2, lambda b: b.units[3].shortcut,
                     lambda b: b.stem):
            fast = FastWEncoder(e1, wide_vectors=False)
            folded = pick(fast.backbone)
            t = getattr(folded, attr)
            setattr(folded, attr, t * 1.01 if attr == "scale" else t + 0.01)
            # Rebuild what was derived from them, as _pre_bn_conv / _post_bn_conv would.
            if folded.folded is not None:
                w = folded.module.weight
                s = folded.scale.reshape(1, -1, 1, 1) if hasattr(folded, "edges") else folded.scale.reshape(-1, 1, 1, 1)
                folded.folded = (w * s).contiguous(memory_format=torch.channels_last)
            if hasattr(folded, "edges"):
                pattern = fast_encoders._shift_pattern(folded.module.weight, folded.shift)
                folded.center = pattern[:, 1, 1].contiguous()
                folded.edges = pattern - folded.center.reshape(-1, 1, 1)
            assert _rel(fast(x), ref) > 1e-5, attr


def test_fast_encoder_is_built_once_and_only_for_ir_backbones(e1, e2):
    assert fast_encoder(e1) is fast_encoder(e1)
    assert isinstance(fast_encoder(e2), FastLayerWiseEncoder)
    assert fast_encoder(WEncoder("resnet34")) is None
    with pytest.raises(ValueError, match="resnet34"):
        FastIRBackbone(WEncoder("resnet34"))


@torch.no_grad()
def test_after_part_sees_every_unit_and_style_block(e2):
    seen = []
    FastLayerWiseEncoder(e2, wide_vectors=True)(_x(1, 32), after_part=seen.append)
    assert seen == [*e2.body, *e2.styles]


def test_winograd_per_call_rule():
    # The measured rule: AVX2 from 64 channels at 16-512 px; AVX-512 (direct convolutions ~1.7x
    # as fast) from 128 channels at 32-256 px; never a side that is not a multiple of 4.
    for wide in (False, True):
        assert winograd.pays_per_call(256, 256, 32, 32, wide_vectors=wide)
        assert winograd.pays_per_call(128, 128, 64, 64, wide_vectors=wide)
        assert winograd.pays_per_call(256, 256, 128, 128, wide_vectors=wide)
        assert not winograd.pays_per_call(256, 256, 30, 30, wide_vectors=wide)
        assert not winograd.pays_per_call(32, 32, 1024, 1024, wide_vectors=wide)
    assert winograd.pays_per_call(512, 512, 16, 16, wide_vectors=False)
    assert winograd.pays_per_call(64, 128, 128, 128, wide_vectors=False)  # 1.5x
    assert winograd.pays_per_call(64, 64, 256, 256, wide_vectors=False)  # 1.2x
    assert not winograd.pays_per_call(512, 512, 16, 16, wide_vectors=True)  # 0.87-1.02x
    assert not winograd.pays_per_call(64, 128, 128, 128, wide_vectors=True)
    assert not winograd.pays_per_call(64, 64, 256, 256, wide_vectors=True)  # 0.9x
