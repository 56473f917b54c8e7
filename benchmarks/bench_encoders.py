"""Time the encoders (E1, E2) layer by layer and whole: the modules' forward against the folded one.

Random weights (cost does not depend on their values), FFHQ shapes (IR-SE-50, 18 styles, 256 px):

    python benchmarks/bench_encoders.py [--repeats 5] [--threads 2] [--layers-only | --whole-only]

Prints, for each 3x3 convolution shape of the IR-SE-50 body, the direct convolution against
Winograd F(4x4, 3x3) with the weight transformed at the call (what ``fast_encoders`` runs) and
what ``winograd.pays_per_call`` picks on this CPU; then E1 (batch 1) and E2 (batch 2, the photo
and the Phase-I image) through the modules' forward, the folded forward without Winograd and the
folded forward as the engine runs it. To see another CPU class on an AVX-512 machine, emulate
AVX2 with ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2``.
Medians of ``--repeats`` runs after one warm-up; other processes on the machine add noise, so
compare the columns of one run rather than figures of different runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from hyperinverter_gui.networks import winograd
from hyperinverter_gui.networks.encoders import LayerWiseEncoder, WEncoder
from hyperinverter_gui.networks.fast_encoders import FastLayerWiseEncoder, FastWEncoder

# (batch, in channels, out channels, side): the body's stride-1 3x3 convolutions, E1 (batch 1) and E2 (2).
SHAPES = [(n, i, o, s) for n in (1, 2) for i, o, s in
          ((64, 64, 256), (64, 64, 128), (64, 128, 128), (128, 128, 64), (128, 256, 64),
           (256, 256, 32), (256, 512, 32), (512, 512, 16))]


def median_time(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def randomized(module: torch.nn.Module) -> torch.nn.Module:
    """Random BatchNorm statistics and PReLU slopes, so the folding has something to fold."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(1 + 0.1 * torch.randn(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(1 + 0.1 * torch.rand(n, generator=g))
    return module.eval().requires_grad_(False)


def layers(repeats: int) -> None:
    print("3x3 stride-1 convolutions: direct vs Winograd F(4x4,3x3), weight transformed at each call")
    print(f"  {'batch  in->out @ side':24s} {'direct':>9s} {'GFLOP/s':>8s} {'winograd':>9s} {'x':>6s}  picked")
    for n, i, o, s in SHAPES:
        x = torch.randn(n, i, s, s).contiguous(memory_format=torch.channels_last)
        w = torch.randn(o, i, 3, 3) * 0.05
        b = torch.randn(o)
        t_direct = median_time(lambda x=x, w=w, b=b: F.conv2d(x, w, b, padding=1), repeats)
        t_wino = median_time(lambda x=x, w=w, b=b: winograd.conv3x3(x, winograd.transform_weight(w), bias=b), repeats)
        gflop = 2 * n * i * o * s * s * 9 / 1e9
        picked = "winograd" if winograd.pays_per_call(i, o, s, s) else "direct"
        print(f"  N{n} {i:4d}->{o:<4d} @ {s:<4d}        {t_direct * 1e3:7.1f}ms {gflop / t_direct:8.0f} "
              f"{t_wino * 1e3:7.1f}ms {t_direct / t_wino:5.2f}x  {picked}")


def whole(repeats: int) -> None:
    torch.manual_seed(0)
    e1 = randomized(WEncoder("ir_se"))
    e2 = randomized(LayerWiseEncoder(18, "ir_se"))
    print("Encoders at 256 px: modules' forward vs folded (BN folded, fused epilogues) vs folded + Winograd")
    for name, enc, fast_cls, n in (("E1 (batch 1)", e1, FastWEncoder, 1), ("E2 (batch 2)", e2, FastLayerWiseEncoder, 2)):
        x = (torch.rand(n, 3, 256, 256) * 2 - 1).contiguous(memory_format=torch.channels_last)
        fast = fast_cls(enc)
        with torch.no_grad():
            t_mod = median_time(lambda enc=enc, x=x: enc(x), repeats)
            fast.backbone.winograd_enabled = False
            t_fold = median_time(lambda fast=fast, x=x: fast(x), repeats)
            fast.backbone.winograd_enabled = True
            t_fast = median_time(lambda fast=fast, x=x: fast(x), repeats)
            err = float((fast(x) - enc(x)).abs().max() / enc(x).abs().max())
        print(f"  {name:14s} module {t_mod * 1e3:7.1f} ms   folded {t_fold * 1e3:7.1f} ms   "
              f"folded+winograd {t_fast * 1e3:7.1f} ms ({t_mod / t_fast:.2f}x)   max rel. diff {err:.1e}")


def main() -> None:
    from hyperinverter_gui.host.allocator import keep_freed_memory

    keep_freed_memory()  # as the editor and the command line do
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers-only", action="store_true")
    ap.add_argument("--whole-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    if not args.whole_only:
        layers(args.repeats)
    if not args.layers_only:
        whole(args.repeats)


if __name__ == "__main__":
    main()
