"""3x3 stride-1 convolutions by Winograd's minimal filtering, F(4x4, 3x3), in plain PyTorch ops.

A direct 3x3 convolution spends 9 multiplies per output and input channel. F(4x4, 3x3)
(Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016) computes each 4x4
output tile from a 6x6 input tile with 36 multiplies instead of 144: the input tile and the
kernel are taken to a 6x6 transform domain (``B^T d B`` and ``G g G^T``), multiplied
element-wise, summed over input channels — 36 independent [tiles, I] x [I, O] matrix products,
where nearly all the work is — and taken back (``A^T m A``).

The products over channels are large matrix multiplications, so this pays off where the
channel count is high and the image small (the generator's 8-512 px layers: 1.2-3x per layer
on a 2-core AVX2 CPU; on AVX-512, whose direct convolutions are much faster, its 8-256 px
layers, 1.5-2.8x). Where channels are few and images large the transforms' memory traffic
dominates and the direct convolution is faster; :func:`worthwhile` encodes that rule. The work
runs in bands of tile rows, so the transform-domain tensors stay small and in cache. GPUs'
convolution libraries already choose Winograd themselves, so the renderer uses this on the CPU
only. The encoders (``fast_encoders``) use it too, with their weights transformed at each call
instead of kept (4x the weight's size, about 0.9 GB for E1 and E2 together):
:func:`pays_per_call` is their rule.

Exactness: the transforms use the points 0, +-1, +-2 (the usual choice); in float32 an output
differs from the direct convolution by about 1e-5 relative (measured 4-6e-5 absolute on outputs
of magnitude 5), within the engine's bound, see ``tests/test_winograd.py``.
"""

from __future__ import annotations

import functools
import threading

import torch

TILE = 4  # output tile side
_IN_TILE = 6  # input tile side (TILE + 3 - 1)

# Transform matrices of F(4, 3) with interpolation points 0, 1, -1, 2, -2 and infinity.
_BT = ((4, 0, -5, 0, 1, 0),
       (0, -4, -4, 1, 1, 0),
       (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0),
       (0, 2, -1, -2, 1, 0),
       (0, 4, 0, -5, 0, 1))
_G = ((1 / 4, 0, 0),
      (-1 / 6, -1 / 6, -1 / 6),
      (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6),
      (1 / 24, -1 / 12, 1 / 6),
      (0, 0, 1))
_AT = ((1, 1, 1, 1, 1, 0),
       (0, 1, -1, 2, -2, 0),
       (0, 1, 1, 4, 4, 0),
       (0, 1, -1, 8, -8, 1))

_MATS: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
_MATS_LOCK = threading.Lock()


def _matrices(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B 36x36 on flattened 6x6 input tiles, A 16x36 back to 4x4 outputs, G 36x9 on flattened kernels)."""
    key = (device, dtype)
    with _MATS_LOCK:
        mats = _MATS.get(key)
        if mats is None:
            bt = torch.tensor(_BT, dtype=torch.float64)
            at = torch.tensor(_AT, dtype=torch.float64)
            g = torch.tensor(_G, dtype=torch.float64)
            # Both sides of B^T d B (A^T m A, G g G^T) at once, as one Kronecker-product matrix:
            # one matrix product with K = 36 runs far better than two with K = 6.
            mats = _MATS[key] = tuple(m.to(device, dtype) for m in (torch.kron(bt, bt), torch.kron(at, at),
                                                                    torch.kron(g, g)))
        return mats


def worthwhile(in_channels: int, out_channels: int, height: int, width: int, wide_vectors: bool | None = None) -> bool:
    """Whether F(4x4, 3x3) with a kept (pre-transformed) weight beats the direct convolution on a CPU.

    The transforms are passes over the activations, so Winograd pays where channels are many
    against the image side. Measured on an idle 2-core Xeon, one image, 2 threads, with the
    band-by-band :func:`conv3x3` (``docs/performance.md``, "Which layers run Winograd"):

    * AVX2 kernels (direct ~225 GFLOP/s): 512 channels at 16-64 px 2.2-3.1x, 256 at 128 px 2.3x,
      128 at 128-256 px 1.8x, 64 at 128-512 px 1.2x; 32 channels at 1024 px 0.7x.
      Rule: 64+ channels, up to 512 px.
    * AVX-512 (direct ~375 GFLOP/s): 512 at 16-64 px 2.1-2.8x, 256 at 128 px 2.1x, 128 at
      64-256 px 1.4-1.5x; 64 channels at 128-512 px 0.9x. Rule: 128+ channels, up to 256 px.

    ``wide_vectors`` (AVX-512) is read from PyTorch's CPU capability when not given.
    """
    return _fits(in_channels, out_channels, height, width, 8, wide_vectors)


def pays_per_call(in_channels: int, out_channels: int, height: int, width: int,
                  wide_vectors: bool | None = None) -> bool:
    """Whether F(4x4, 3x3) with the weight transformed at every call beats the direct convolution.

    The encoders and Phase I run once per photo, so their weights are transformed per call and
    dropped (no kept copies at 4x the weight's size); that costs about one weight-sized pass per
    layer, which small images do not amortise: the rule of :func:`worthwhile` with a floor on the
    side. Measured with 2 threads, batch 1 and 2, weight transform included
    (``benchmarks/bench_encoders.py``, ``docs/performance.md``):

    * AVX2: 512 at 16 px 1.0-1.3x, 512 at 32-64 px 1.8-2.3x, 256 at 32-128 px 1.9-2.3x,
      128 at 64-256 px 1.8x, 64->128 at 128 px 1.5x, 64 at 128-512 px 1.2x.
    * AVX-512: 512 at 16 px 0.87-1.02x (left direct), 512 at 32-64 px 1.7-2.1x, 256 at 32-128 px
      1.8-2.0x, 128 at 64-256 px 1.4-1.5x; 64 channels 0.9x.
    """
    return _fits(in_channels, out_channels, height, width, 32 if _wide(wide_vectors) else 16, wide_vectors)


def _wide(wide_vectors: bool | None) -> bool:
    return _cpu_has_avx512() if wide_vectors is None else wide_vectors


def _fits(in_channels: int, out_channels: int, height: int, width: int, min_side: int,
          wide_vectors: bool | None) -> bool:
    if height % TILE or width % TILE:
        return False
    min_channels, max_side = (128, 256) if _wide(wide_vectors) else (64, 512)
    return (min(in_channels, out_channels) >= min_channels
            and min(height, width) >= min_side and max(height, width) <= max_side)


@functools.lru_cache(maxsize=1)
def _cpu_has_avx512() -> bool:
    try:
        return "AVX512" in str(torch.backends.cpu.get_cpu_capability()).upper()
    except (AttributeError, RuntimeError):
        return False


def transform_weight(weight: torch.Tensor) -> torch.Tensor:
    """[O, I, 3, 3] convolution weight -> [36, I, O] transform-domain weight ``G g G^T`` (float32).

    Linear in the weight, so scaling input channel i by s_i and output channel o by d_o
    commutes with it: modulated convolutions can keep one transformed weight per image and
    scale the activations instead.
    """
    if weight.ndim != 4 or tuple(weight.shape[-2:]) != (3, 3):
        raise ValueError(f"expected a [O, I, 3, 3] weight, got {list(weight.shape)}")
    o, i = weight.shape[:2]
    g = _matrices(weight.device, torch.float32)[2]
    w_io = weight.detach().float().transpose(0, 1).reshape(i * o, 9)  # [I*O, 9]: a copy of the small side
    return torch.mm(g, w_io.t()).view(_IN_TILE * _IN_TILE, i, o)


def conv3x3(
    x: torch.Tensor,
    u: torch.Tensor,
    *,
    in_scale: torch.Tensor | None = None,
    out_scale: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    band_bytes: int = 8 << 20,
) -> torch.Tensor:
    """``F.conv2d(x * in_scale, w, padding=1) * out_scale + bias`` with ``u = transform_weight(w)``.

    Args:
        x: [N, I, H, W] float32, H and W multiples of 4 (any memory format).
        u: [36, I, O] from :func:`transform_weight`.
        in_scale: [N, I] or [I] per-channel factor applied to x (styles), or None.
        out_scale: [N, O] or [O] per-channel factor applied to the result (demodulation), or None.
        bias: [O], added last, or None.
        band_bytes: about how much transform-domain memory one band of tile rows may use (the
            work runs band by band; any value gives the same result up to float rounding, as
            the matrix library may sum in another order for other sizes).

    Returns [N, O, H, W] float32 in channels_last layout.
    """
    n, c, h, w = x.shape
    assert u.ndim == 3 and u.shape[0] == _IN_TILE * _IN_TILE and u.shape[1] == c, (list(u.shape), c)
    if h % TILE or w % TILE:
        raise ValueError(f"Winograd F(4x4, 3x3) needs H and W divisible by {TILE}, got {h}x{w}")
    o = u.shape[2]
    ty, tx = h // TILE, w // TILE
    b36, a16, _ = _matrices(x.device, x.dtype)

    # Zero-padded input, NHWC, with the input scaling folded into the one copy (only the
    # one-pixel border is zeroed: the interior is written next).
    xp = x.new_empty(n, h + 2, w + 2, c)
    xp[:, 0].zero_()
    xp[:, -1].zero_()
    xp[:, :, 0].zero_()
    xp[:, :, -1].zero_()
    src = x.permute(0, 2, 3, 1)
    if in_scale is None:
        xp[:, 1:-1, 1:-1].copy_(src)
    else:
        torch.mul(src, in_scale.reshape(-1, 1, 1, c), out=xp[:, 1:-1, 1:-1])
    s = xp.stride()
    # Overlapping 6x6 tiles at a stride of 4, tile position outermost: [36, N, ty, tx, I].
    tiles = xp.as_strided((_IN_TILE, _IN_TILE, n, ty, tx, c), (s[1], s[2], s[0], TILE * s[1], TILE * s[2], s[3]))
    y = torch.empty(n, o, h, w, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    dst = y.permute(0, 2, 3, 1).view(n, ty, TILE, tx, TILE, o)
    # Bands of tile rows: the transform-domain tensors of a whole 256 px image would be 36/16 of
    # the activations several times over (~250 MB at 128 channels); a band's stay near band_bytes
    # and in cache, so the peak memory is that of the direct convolution.
    rows = max(1, min(ty, band_bytes // (_IN_TILE * _IN_TILE * x.element_size() * n * tx * max(c, o))))
    per = _IN_TILE * _IN_TILE * n * rows * tx
    col, v_buf, m_buf = (x.new_empty(per * k) for k in (max(c, o), c, o))
    for r0 in range(0, ty, rows):
        r = min(rows, ty - r0)
        k = n * r * tx  # tiles in this band
        band = col[: _IN_TILE * _IN_TILE * k * c].view(_IN_TILE, _IN_TILE, n, r, tx, c)
        band.copy_(tiles[:, :, :, r0:r0 + r])
        v = torch.mm(b36, band.view(_IN_TILE * _IN_TILE, -1), out=v_buf[: band.numel()].view(_IN_TILE * _IN_TILE, -1))
        m = torch.bmm(v.view(_IN_TILE * _IN_TILE, k, c), u,
                      out=m_buf[: _IN_TILE * _IN_TILE * k * o].view(_IN_TILE * _IN_TILE, k, o))  # channel sums
        # Back to 4x4 output tiles, into the band's column buffer (read by now; sized for this).
        y_tiles = torch.mm(a16, m.view(_IN_TILE * _IN_TILE, -1),
                           out=col[: TILE * TILE * k * o].view(TILE * TILE, -1)).view(TILE, TILE, n, r, tx, o)
        _write(dst[:, r0:r0 + r], y_tiles.permute(2, 3, 0, 4, 1, 5), out_scale, bias, o)
    return y


def _write(dst: torch.Tensor, src: torch.Tensor, out_scale: torch.Tensor | None, bias: torch.Tensor | None,
           o: int) -> None:
    """dst = src * out_scale + bias, in the one pass that writes the output (no second sweep)."""
    if out_scale is None and bias is None:
        dst.copy_(src)
    elif out_scale is None:
        torch.add(src, bias.reshape(1, 1, 1, 1, 1, o), out=dst)
    elif bias is None:
        torch.mul(src, out_scale.reshape(-1, 1, 1, 1, 1, o), out=dst)
    else:
        torch.addcmul(bias.reshape(1, 1, 1, 1, 1, o), src, out_scale.reshape(-1, 1, 1, 1, 1, o), out=dst)


__all__ = ["TILE", "conv3x3", "pays_per_call", "transform_weight", "worthwhile"]
