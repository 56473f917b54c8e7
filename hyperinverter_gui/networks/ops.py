"""Pure-PyTorch building blocks of the StyleGAN2 synthesis network.

Everything here is written with standard ``torch.nn.functional`` calls so it
runs on any CPU or CUDA device without compiling an extension. The math
follows the reference (non-CUDA) code paths of stylegan2-ada-pytorch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Gain applied after leaky ReLU so that activations keep unit variance.
LRELU_GAIN = math.sqrt(2.0)
LRELU_SLOPE = 0.2


def bias_act(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    lrelu: bool,
    gain: float = 1.0,
    clamp: float | None = None,
) -> torch.Tensor:
    """Add a per-channel bias, apply leaky ReLU (or nothing), scale, clamp.

    ``gain`` already includes the activation's default gain (sqrt(2) for lrelu).
    """
    if bias is not None:
        x = x + bias.reshape(1, -1, *([1] * (x.ndim - 2)))
    if lrelu:
        x = F.leaky_relu(x, LRELU_SLOPE)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def _fir(x: torch.Tensor, f: torch.Tensor, gain: float) -> torch.Tensor:
    """Depthwise 2-D FIR filter (true convolution, i.e. flipped kernel), no padding."""
    c = x.shape[1]
    k = (f * gain).flip([0, 1]).to(x.dtype)
    k = k[None, None].expand(c, 1, *k.shape)
    return F.conv2d(x, k, groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x upsampling: zero insertion, pad, low-pass filter ``f`` (2-D, sums to 1) with gain 4."""
    n, c, h, w = x.shape
    fh, fw = f.shape
    y = x.new_zeros(n, c, h, 2, w, 2)
    y[:, :, :, 0, :, 0] = x
    y = y.reshape(n, c, 2 * h, 2 * w)
    # Padding that keeps the output at exactly 2H x 2W for an even filter.
    px0, px1 = (fw + 1) // 2, (fw - 2) // 2
    py0, py1 = (fh + 1) // 2, (fh - 2) // 2
    y = F.pad(y, [px0, px1, py0, py1])
    return _fir(y, f, gain=4.0)


def conv2d_same(x: torch.Tensor, w: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """Stride-1 correlation with 'same' padding for odd kernels."""
    k = w.shape[-1]
    return F.conv2d(x, w, padding=k // 2, groups=groups)


def conv2d_up2(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """3x3 (or kxk) convolution at twice the input resolution.

    Implemented, like the reference code, as a stride-2 transposed convolution
    followed by the low-pass filter ``f``; output is exactly 2H x 2W.

    Args:
        x: [N, groups*I, H, W]
        w: [groups*O, I, k, k] correlation weights (as for ``F.conv2d``).
    """
    go, i, kh, kw = w.shape
    o = go // groups
    # conv_transpose2d expects [in, out/groups, k, k] per group.
    wt = w.reshape(groups, o, i, kh, kw).transpose(1, 2).reshape(groups * i, o, kh, kw)
    y = F.conv_transpose2d(x, wt, stride=2, groups=groups)
    fh, fw = f.shape
    # Total padding of the reference implementation for up=2, padding=k//2.
    px0 = kw // 2 + (fw + 1) // 2 - (kw - 1)
    px1 = kw // 2 + (fw - 2) // 2 - (kw - 2)
    py0 = kh // 2 + (fh + 1) // 2 - (kh - 1)
    py1 = kh // 2 + (fh - 2) // 2 - (kh - 2)
    y = F.pad(y, [px0, px1, py0, py1])
    return _fir(y, f, gain=4.0)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    up: bool = False,
    resample_filter: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution with optional per-sample weights.

    Args:
        x:       [N, I, H, W] activations.
        weight:  [O, I, k, k] shared weights, or [N, O, I, k, k] per-sample
                 weights (theta + delta-theta of an inverted image).
        styles:  [N, I] modulation coefficients.
        demodulate: normalise each output filter to unit norm (conv layers yes, toRGB no).
        up:      convolve at 2x resolution (first conv of every block but the first).
        noise:   optional tensor broadcastable to the output, added after demodulation.
    """
    n, i = styles.shape
    assert x.ndim == 4 and x.shape[0] == n and x.shape[1] == i, (x.shape, styles.shape)
    per_sample = weight.ndim == 5
    assert weight.shape[-3] == i, (weight.shape, i)
    if per_sample:
        assert weight.shape[0] == n, (weight.shape, n)

    if not per_sample and n > 1:
        # Shared weights: modulate the activations instead of the weights, so
        # one ordinary convolution serves the whole batch.
        dcoefs = None
        if demodulate:
            wsq = weight.square().sum(dim=[2, 3])  # [O, I]
            dcoefs = (styles.square() @ wsq.t() + 1e-8).rsqrt()  # [N, O]
        x = x * styles.reshape(n, -1, 1, 1)
        x = conv2d_up2(x, weight, resample_filter) if up else conv2d_same(x, weight)
        if dcoefs is not None:
            x = x * dcoefs.reshape(n, -1, 1, 1)
        if noise is not None:
            x = x + noise
        return x

    # Fused path: build the per-sample modulated (and demodulated) weights and
    # run all samples as one grouped convolution.
    w = weight if per_sample else weight.unsqueeze(0)
    w = w * styles.reshape(n, 1, -1, 1, 1)  # [N, O, I, k, k]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    o, kh, kw = w.shape[1], w.shape[3], w.shape[4]
    xg = x.reshape(1, n * i, *x.shape[2:])
    wg = w.reshape(n * o, i, kh, kw)
    y = conv2d_up2(xg, wg, resample_filter, groups=n) if up else conv2d_same(xg, wg, groups=n)
    y = y.reshape(n, o, *y.shape[2:])
    if noise is not None:
        y = y + noise
    return y
