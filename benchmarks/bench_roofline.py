"""How close the exact float32 path is to this CPU's arithmetic rate, and what that allows.

Random weights at the full FFHQ config-f shapes (cost does not depend on their values), no
model files needed:

    python benchmarks/bench_roofline.py [--threads 2] [--repeats 5]
                                        [--official-inversion SECONDS --official-frame SECONDS]

Prints three things:

1. the CPU's float32 matrix-multiply rate (``torch.mm`` 2048x2048, the ceiling any convolution
   algorithm that does all its multiplies reaches);
2. the multiply-adds of each inversion stage and of one 1024 px frame, split by kind: 3x3
   stride-1 convolutions (the only ones a Winograd-type algorithm can shrink, at most 4x for
   F(4x4, 3x3)) and everything else (stride-2, transposed and 1x1 convolutions, matrix products);
   from them, a *lower bound* on the time of the official computation on this CPU: everything at
   the matrix-multiply rate, Winograd's full 4x on every eligible layer at no transform cost, and
   every element-wise pass free. With ``--official-*`` it sets that against the 2.5x goal;
3. one edited frame of :class:`~hyperinverter_gui.engine.renderer.EditRenderer` layer by layer
   (prepared with random deltas, as after an inversion): time, GFLOP, the effective rate and its
   share of the matrix-multiply rate, and the algorithm the renderer picked.

To see the AVX2 class on an AVX-512 machine, set
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2``.
Medians of ``--repeats`` runs after one warm-up; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_encoders import median_time
from bench_inversion import ffhq_model

from hyperinverter_gui.engine.renderer import EditRenderer
from hyperinverter_gui.host.allocator import keep_freed_memory
from hyperinverter_gui.networks import winograd
from hyperinverter_gui.networks.hyperinverter import resize_for_encoder

WINOGRAD_FACTOR = 4.0  # F(4x4, 3x3): 36 multiplies per 4x4 output tile instead of 144


class FlopCount(TorchDispatchMode):
    """Counts the floating-point operations (2 per multiply-add) of convolutions and matrix products."""

    def __init__(self):
        super().__init__()
        self.flops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten.convolution.default:
            x, w, stride, transposed, groups = args[0], args[1], args[3], args[6], args[8]
            if transposed:  # every input pixel meets the whole kernel
                self.flops["other"] += 2 * x.shape[0] * x.shape[2] * x.shape[3] * w.numel()
            else:
                kind = "3x3 stride 1" if (tuple(w.shape[2:]) == (3, 3) and tuple(stride) == (1, 1)
                                          and groups == 1) else "other"
                self.flops[kind] += 2 * out.numel() * w.shape[1] * w.shape[2] * w.shape[3]
        elif func in (torch.ops.aten.mm.default, torch.ops.aten.bmm.default):
            self.flops["other"] += 2 * args[0].numel() * args[1].shape[-1]
        elif func is torch.ops.aten.addmm.default:
            self.flops["other"] += 2 * args[1].numel() * args[2].shape[-1]
        return out


def gemm_rate(repeats: int) -> float:
    """float32 GFLOP/s of a 2048x2048 matrix product on this CPU with the current threads."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    c = torch.empty(2048, 2048)
    return 2 * 2048**3 / median_time(lambda: torch.mm(a, b, out=c), repeats) / 1e9


def stage_flops(model) -> dict[str, collections.Counter]:
    """FLOPs of each stage of the official forward for one 1024 px photo (E2 counted once per image)."""
    x = torch.rand(1, 3, 1024, 1024) * 2 - 1
    out = {}
    with torch.no_grad():
        x256 = resize_for_encoder(x)
        with FlopCount() as c:
            ws = model.encode_w(x256)
        out["E1"] = c.flops
        with FlopCount() as c:
            model.generator.synthesis(ws)
        out["synthesis (each of Phase I, Phase II, a frame)"] = c.flops
        with FlopCount() as c:
            feats = model.w_bar_encoder(x256)
        out["E2, one image (runs twice)"] = c.flops
        with FlopCount() as c:
            model.hypernet(feats, feats)
        out["hypernetwork"] = c.flops
    return out


def bound(flops: collections.Counter, rate: float) -> float:
    """Seconds at ``rate`` GFLOP/s with Winograd's full factor on every 3x3 stride-1 layer."""
    return (flops["other"] + flops["3x3 stride 1"] / WINOGRAD_FACTOR) / rate / 1e9


def winograd_speedups(synthesis, repeats: int) -> dict[str, float]:
    """Measured direct / Winograd (kept transform) time of each 3x3 stride-1 synthesis layer, one image."""
    out = {}
    for res in synthesis.block_resolutions:
        layer = getattr(synthesis, f"b{res}").conv1
        o, i = layer.weight.shape[:2]
        if res % winograd.TILE:
            out[f"b{res}.conv1"] = 1.0
            continue
        x = torch.randn(1, i, res, res).contiguous(memory_format=torch.channels_last)
        w = torch.randn(o, i, 3, 3)
        u = winograd.transform_weight(w)
        direct = median_time(lambda x=x, w=w: torch.nn.functional.conv2d(x, w, padding=1), repeats)
        fast = median_time(lambda x=x, u=u: winograd.conv3x3(x, u), repeats)
        out[f"b{res}.conv1"] = direct / fast
    return out


def frame_bound(synthesis, rate: float, speedups: dict[str, float]) -> float:
    """Seconds for one frame's multiplies at ``rate`` with each 3x3 stride-1 layer at its measured
    Winograd speed-up (at most 4x, at least 1x: the direct convolution), all other passes free."""
    with torch.no_grad(), FlopCount() as c:
        synthesis(torch.zeros(1, synthesis.num_ws, synthesis.w_dim))
    seconds = c.flops["other"] / rate / 1e9
    for res in synthesis.block_resolutions:
        layer = getattr(synthesis, f"b{res}").conv1
        o, i = layer.weight.shape[:2]
        flops = 2 * res * res * 9 * i * o
        seconds += flops / min(WINOGRAD_FACTOR, max(1.0, speedups[f"b{res}.conv1"])) / rate / 1e9
    return seconds


def frame_layers(model, repeats: int, rate: float) -> None:
    g = torch.Generator().manual_seed(1)
    synthesis = model.generator.synthesis
    deltas = {n: 0.05 * torch.randn(s, generator=g) for n, s in synthesis.weight_shapes().items()
              if n.endswith(("conv0.weight", "conv1.weight", "torgb.weight")) and "affine" not in n}
    r = EditRenderer(model.generator, deltas, cache_resolution=0)
    times: dict[str, list[float]] = collections.defaultdict(list)

    def timed(step_fn):
        # Wraps the renderer's own per-layer step (a private method) for this benchmark only.
        def run(layer, *args):
            t = time.perf_counter()
            y = step_fn(layer, *args)
            times[layer.name].append(time.perf_counter() - t)
            return y
        return run

    r._conv_step, r._torgb_step = timed(r._conv_step), timed(r._torgb_step)
    w = torch.randn(r.num_ws, r.w_dim, generator=g) * 0.5
    total = median_time(lambda: r.render(w + torch.randn(1).item() * 1e-3), repeats)
    print(f"\nOne edited frame, layer by layer (EditRenderer, float32): {total * 1e3:.0f} ms")
    print(f"  {'layer':14s} {'ms':>7s} {'GFLOP':>7s} {'GFLOP/s':>8s} {'of mm':>6s}  algorithm")
    for step in r.steps:
        lay = step.layer
        if lay is None:
            continue
        o = lay.bias.numel()
        i = lay.affine_b.numel()
        if lay.kind == "torgb":
            gflop, algo = 2 * lay.resolution**2 * i * o / 1e9, "1x1"
        elif lay.up:
            gflop = 2 * (lay.resolution // 2) ** 2 * 9 * i * o / 1e9
            algo = "up: 4 phase convs + FIR" if lay.phases is not None else "up: modulated activations"
        else:
            gflop = 2 * lay.resolution**2 * 9 * i * o / 1e9
            algo = "Winograd F(4x4,3x3)" if (lay.winograd is not None or lay.winograd_per_call) else "direct"
        ms = statistics.median(times[lay.name][1:]) * 1e3
        eff = gflop / (ms / 1e3)
        print(f"  {lay.name:14s} {ms:7.1f} {gflop:7.2f} {eff:8.0f} {eff / rate:6.0%}  {algo}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--official-inversion", type=float, default=None, help="official inversion, seconds (same run)")
    p.add_argument("--official-frame", type=float, default=None, help="official edited frame, seconds (same run)")
    p.add_argument("--goal", type=float, default=2.5)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    keep_freed_memory()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads")
    rate = gemm_rate(a.repeats)
    print(f"float32 matrix product 2048x2048: {rate:.0f} GFLOP/s")
    model = ffhq_model(128)
    per = stage_flops(model)
    print("\nFLOPs of the official computation (GFLOP): 3x3 stride-1 / other")
    for name, f in per.items():
        print(f"  {name:48s} {f['3x3 stride 1'] / 1e9:7.1f} / {f['other'] / 1e9:6.1f}")
    syn = per["synthesis (each of Phase I, Phase II, a frame)"]
    inversion = per["E1"] + per["E2, one image (runs twice)"] + per["E2, one image (runs twice)"] \
        + per["hypernetwork"] + syn + syn
    rows = (("inversion", inversion, a.official_inversion), ("frame", syn, a.official_frame))
    print(f"\nLower bound at {rate:.0f} GFLOP/s, Winograd {WINOGRAD_FACTOR:g}x on every 3x3 stride-1 layer, "
          f"all other passes free:")
    for name, f, official in rows:
        b = bound(f, rate)
        line = f"  {name:9s} {sum(f.values()) / 1e9:6.1f} GFLOP -> at least {b:.3f} s"
        if official:
            need = official / a.goal
            line += (f"; {a.goal:g}x the official {official:.3f} s means {need:.3f} s, "
                     f"of which the bound alone takes {b / need:.0%}")
        print(line)
    speedups = winograd_speedups(model.generator.synthesis, a.repeats)
    print("\nWinograd's measured speed-up per 3x3 stride-1 synthesis layer (kept transform, one image): "
          + ", ".join(f"{k} {v:.2f}x" for k, v in speedups.items()))
    fb = frame_bound(model.generator.synthesis, rate, speedups)
    line = f"  frame bound with those speed-ups (at most {WINOGRAD_FACTOR:g}x, at least 1x): {fb:.3f} s"
    if a.official_frame:
        need = a.official_frame / a.goal
        line += f", {fb / need:.0%} of the {need:.3f} s a {a.goal:g}x frame allows"
    print(line)
    ib = bound(inversion, rate) + 2 * (fb - bound(syn, rate))
    line = f"  inversion bound with both syntheses at that frame bound: {ib:.3f} s"
    if a.official_inversion:
        need = a.official_inversion / a.goal
        line += f", {ib / need:.0%} of the {need:.3f} s a {a.goal:g}x inversion allows"
    print(line)
    frame_layers(model, a.repeats, rate)


if __name__ == "__main__":
    main()
