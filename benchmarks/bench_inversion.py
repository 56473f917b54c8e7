"""Time HyperInverter inversion stage by stage at the full FFHQ config-f shapes.

Weights are random (cost does not depend on their values), so no model files
are needed:

    python benchmarks/bench_inversion.py [--device cpu|cuda] [--batch 1] [--repeats 3] [--hidden-dim 128]

Prints the median time of each stage (after one warm-up run) and the total.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hyperinverter_gui.engine.device import resolve_device
from hyperinverter_gui.networks.hyperinverter import HyperInverter, HyperInverterConfig, resize_for_encoder
from hyperinverter_gui.networks.hypernetwork import TargetLayer, feature_index
from hyperinverter_gui.networks.stylegan2 import Generator, GeneratorConfig


def ffhq_model(hidden_dim: int) -> HyperInverter:
    cfg = GeneratorConfig.from_stylegan2_ada_kwargs(
        dict(z_dim=512, w_dim=512, img_resolution=1024, img_channels=3, synthesis_kwargs=dict(channel_base=32768))
    )
    g = Generator(cfg)
    shapes = g.synthesis.weight_shapes()
    names = [n for n in shapes if n.endswith(("conv0.weight", "conv1.weight", "torgb.weight")) and "affine" not in n]
    targets = [TargetLayer(n, tuple(shapes[n]), feature_index(n)) for n in names]
    model = HyperInverter(g, HyperInverterConfig("ir_se", "ir_se", 18, hidden_dim, targets))
    with torch.no_grad():
        for p in model.hypernet.parameters():
            p.normal_(0, 0.01)
    return model.eval().requires_grad_(False)


def main() -> None:
    from hyperinverter_gui.host.allocator import keep_freed_memory

    keep_freed_memory()  # as the editor and the command line do
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hidden-dim", type=int, default=128)
    args = ap.parse_args()
    device = resolve_device(args.device)
    model = ffhq_model(args.hidden_dim).to(device)
    x = torch.rand(args.batch, 3, 1024, 1024, device=device) * 2 - 1

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    stages: dict[str, list[float]] = {}

    def timed(name, fn):
        sync()
        t = time.perf_counter()
        out = fn()
        sync()
        stages.setdefault(name, []).append(time.perf_counter() - t)
        return out

    with torch.no_grad():
        for i in range(args.repeats + 1):
            if i == 1:
                stages.clear()  # first run is warm-up
            x256 = timed("resize to 256", lambda: resize_for_encoder(x))
            ws = timed("E1 (W encoder)", lambda: model.encode_w(x256))
            p1 = timed("Phase-I synthesis", lambda: model.generator.synthesis(ws))
            fx = timed("E2 on photo", lambda: model.w_bar_encoder(x256))
            fp = timed("E2 on Phase-I image", lambda: model.w_bar_encoder(resize_for_encoder(p1)))
            d = timed("hypernetwork", lambda: model.hypernet(fp, fx))
            timed("Phase-II synthesis (theta+delta)", lambda: model.generator.synthesis(ws, d))
    print(f"device: {device} ({torch.get_num_threads()} threads), batch {args.batch}, D={args.hidden_dim}, "
          f"torch {torch.__version__}")
    total = 0.0
    for name, ts in stages.items():
        med = statistics.median(ts)
        total += med
        print(f"  {name:34s} {med * 1000:9.1f} ms")
    print(f"  {'total per batch':34s} {total * 1000:9.1f} ms  ({total / args.batch * 1000:.1f} ms per image)")


if __name__ == "__main__":
    main()
