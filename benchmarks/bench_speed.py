"""Naive vs fast paths side by side: inversion stages, slider frames, batch and resolution scaling.

    python benchmarks/bench_speed.py [--device auto|cpu|cuda] [--repeats 5] [--hidden-dim 128]
                                     [--batches 1,2,4,8] [--resolutions 256,512,1024]
                                     [--markdown OUT.md] [--quick]

Models are the full FFHQ config-f shapes (1024 px, 18 ws) with seeded random
weights (cost does not depend on the values), built in memory by
``bench_inversion.ffhq_model``; the resample filters are set to the official
[1,3,3,1] filter and noise strengths / biases to non-zero values so every code
path runs as with a real network.

naive    = what the app did before: ``model(x)`` stage by stage (E2 twice), and one
           ``generator.synthesis(w[None], deltas)`` per frame (per-sample weights,
           float32).
fast f32 = ``fast_inversion.FastInverter`` / ``fast_render.EditRenderer`` in float32
           (the exact path).
fast bf16 = the same with precision="bfloat16" (PSNR below). The editor's *auto* precision
           uses it only for the previews while dragging, where the hardware runs bf16
           natively; the target column judges each row by what *auto* runs.

Each timed figure is the median over ``--repeats`` runs after one warm-up run;
naive and fast runs alternate so a busy machine slows both alike. Peak memory
is the process's resident set (RSS, sampled every 2 ms) during each path, on
CUDA the peak of allocated device memory. The frame rows use the image
inverted in the same run; "GANSpace rows a-17" moves only ws[a:], the renderer
restarts from its cached activations (as in the GUI while dragging such a
slider). A preview of r px costs what an r-px config-f generator costs.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import statistics
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_inversion import ffhq_model

from hyperinverter_gui.engine.device import resolve_device
from hyperinverter_gui.engine.inverter import FastInverter
from hyperinverter_gui.engine.renderer import EditRenderer
from hyperinverter_gui.networks.hyperinverter import resize_for_encoder

TARGETS = {"frame": 0.8, "preview": 0.3, "inversion": 2.5}  # seconds, CPU 2 threads (issue 7)
GANSPACE_STARTS = (7, 12)  # layer_start of GANSpace edits in directions/manifest.toml


# --- measuring ----------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak RSS (CPU) or peak allocated device memory (CUDA) over ``with`` sections, per key."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peaks: dict[str, int] = {}
        self.growth: dict[str, int] = {}  # peak minus the memory in use when the section began
        self._cur = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._cur = max(self._cur, _rss_bytes())

    @contextmanager
    def section(self, key: str):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
            start = torch.cuda.memory_allocated(self.device)
            yield
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated(self.device)
        elif not os.path.exists("/proc/self/statm"):
            yield
            start = peak = 0
        else:
            self._cur = start = _rss_bytes()
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
            try:
                yield
            finally:
                self._stop.set()
                self._thread.join()
            peak = max(self._cur, _rss_bytes())
        self.peaks[key] = max(self.peaks.get(key, 0), peak)
        self.growth[key] = max(self.growth.get(key, 0), peak - start)


class Timer:
    def __init__(self, device: torch.device):
        self.device = device
        self.times: dict[str, list[float]] = {}
        self.record = True

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def __call__(self, key: str, fn):
        self.sync()
        t = time.perf_counter()
        out = fn()
        self.sync()
        if self.record:
            self.times.setdefault(key, []).append(time.perf_counter() - t)
        return out

    def med(self, key: str) -> float | None:
        ts = self.times.get(key)
        return statistics.median(ts) if ts else None


def psnr(a: torch.Tensor, ref: torch.Tensor, peak: float = 2.0) -> float:
    mse = (a.float() - ref.float()).square().mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(peak * peak / mse)


def rel_err(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(((a[k].float() - b[k].float()).norm() / b[k].float().norm().clamp_min(1e-30)).item() for k in b)


# --- the model -------------------------------------------------------------------------


def build_model(hidden_dim: int, device: torch.device):
    torch.manual_seed(0)
    model = ffhq_model(hidden_dim)
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = torch.outer(f, f)
    f = f / f.sum()
    g = model.generator
    with torch.no_grad():
        for name, b in g.named_buffers():
            if name.endswith("resample_filter"):
                b.copy_(f)
        for name, p in g.synthesis.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.05)
            elif name.endswith(".bias") and "affine" not in name:
                p.normal_(0, 0.1)
    return model.to(device).eval().requires_grad_(False)


def machine(device: torch.device) -> str:
    cpu = platform.processor() or "unknown CPU"
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in text.splitlines():
            if line.startswith("flags"):
                fl = set(line.split(":", 1)[1].split())
                flags = ", ".join(x for x in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if x in fl)
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = ""
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    desc = f"{cpu} ({cores} cores{', ' + flags if flags else ''}{mem}), {torch.get_num_threads()} torch threads"
    if device.type == "cuda":
        desc = f"{torch.cuda.get_device_name(device)}; host: {desc}"
    return f"{desc}; torch {torch.__version__}, device {device}"


# --- the runs ------------------------------------------------------------------------


def naive_inversion(model, x, t: Timer, prefix: str = "naive."):
    g = model.generator
    x256 = t(prefix + "resize", lambda: resize_for_encoder(x))
    ws = t(prefix + "encode_w", lambda: model.encode_w(x256))
    p1 = t(prefix + "phase1", lambda: g.synthesis(ws))
    fx = t(prefix + "e2_photo", lambda: model.w_bar_encoder(x256))
    fp = t(prefix + "e2_phase1", lambda: model.w_bar_encoder(resize_for_encoder(p1)))
    d = t(prefix + "hypernet", lambda: model.hypernet(fp, fx))
    final = t(prefix + "phase2", lambda: g.synthesis(ws, d))
    return ws, p1, d, final


def fast_inversion(inv: FastInverter, x, t: Timer, prefix: str):
    x256 = t(prefix + "resize", lambda: inv.prepare_input(x))
    ws = t(prefix + "encode_w", lambda: inv.encode_w(x256))
    p1 = t(prefix + "phase1", lambda: inv.phase1(ws))
    fi, fx = t(prefix + "e2_pair", lambda: inv.encode_pair(x256, p1))
    d = t(prefix + "hypernet", lambda: inv.hypernet(fi, fx))
    renderers, finals = [], []
    for i in range(ws.shape[0]):
        di = {k: v[i] for k, v in d.items()}
        r = t(prefix + "prepare", lambda di=di: EditRenderer(
            inv.model.generator, di, precision=inv.dtype, cache_resolution=inv.cache_resolution))
        finals.append(t(prefix + "phase2", lambda r=r, w=ws[i]: r.render(w)))
        renderers.append(r)
    return ws, p1, d, torch.stack(finals), renderers


def main() -> None:
    from hyperinverter_gui.host.allocator import keep_freed_memory

    keep_freed_memory()  # as the editor and the command line do
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per figure after one warm-up")
    ap.add_argument("--hidden-dim", type=int, default=128)
    ap.add_argument("--batches", default="1,2,4,8", help="inversion batch sizes ('' to skip)")
    ap.add_argument("--batch-repeats", type=int, default=1, help="timed runs per batch size (no extra warm-up)")
    ap.add_argument("--resolutions", default="256,512,1024", help="frame resolutions (previews of the 1024 model)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    ap.add_argument("--markdown", type=Path, help="also write the table (and machine) to this markdown file")
    ap.add_argument("--quick", action="store_true", help="repeats 2, batches 1,2, for a smoke run")
    ap.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                    help="measure the bfloat16 path: auto = only where the hardware runs bf16 natively "
                         "(elsewhere it is emulated, ~10x slower than float32, and the editor never uses it)")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.batches = 2, "1,2"
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    resolutions = [int(r) for r in args.resolutions.split(",") if r.strip()]
    t0 = time.perf_counter()

    model = build_model(args.hidden_dim, device)
    g = model.generator
    res_max = g.img_resolution
    resolutions = [r for r in resolutions if r <= res_max] or [res_max]
    mem = PeakMemory(device)
    baseline_rss = _rss_bytes() if device.type == "cpu" and os.path.exists("/proc/self/statm") else 0
    t = Timer(device)
    from hyperinverter_gui.engine.renderer import recommended_precision

    native_bf16 = recommended_precision(device) == "bfloat16"
    with_bf16 = args.bf16 == "on" or (args.bf16 == "auto" and native_bf16)
    inverters = {"f32": FastInverter(model, "float32")}
    if with_bf16:
        inverters["bf16"] = FastInverter(model, "bfloat16")
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(1, 3, res_max, res_max, generator=gen) * 2 - 1).to(device)
    acc: dict[str, float] = {}
    renderers: dict[str, EditRenderer] = {}

    print(f"machine: {machine(device)}", flush=True)
    with torch.inference_mode():
        # Prepared once per model (not per photo): the theta renderer of Phase I.
        for key, inv in inverters.items():
            t(f"{key}.theta", lambda inv=inv: inv.theta_renderer)

        # --- 1. inversion, batch 1, stage by stage ---------------------------------------------
        for i in range(args.repeats + 1):
            t.record = i > 0
            with mem.section("naive.inversion"):
                ws, _, d, final = naive_inversion(model, x, t)
            for key, inv in inverters.items():
                with mem.section(f"{key}.inversion"):
                    _, _, fd, ffinal, frs = fast_inversion(inv, x, t, f"{key}.")
                acc[f"{key}.inv_delta_rel"] = max(acc.get(f"{key}.inv_delta_rel", 0.0), rel_err(fd, d))
                acc[f"{key}.inv_img_abs"] = max(acc.get(f"{key}.inv_img_abs", 0.0), (ffinal - final).abs().max().item())
                acc[f"{key}.inv_psnr"] = min(acc.get(f"{key}.inv_psnr", float("inf")), psnr(ffinal, final))
                renderers[key] = frs[0]
            print(f"  inversion run {i}/{args.repeats} done ({time.perf_counter() - t0:.0f} s)", flush=True)
        img_std = final.float().std().item()
        deltas = {k: v[:1] for k, v in d.items()}
        w0 = ws[0]

        # --- 2. frames of the inverted image -------------------------------------------------
        gen = torch.Generator().manual_seed(2)
        direction = torch.randn(w0.shape, generator=gen).to(device)
        direction = direction / direction.norm(dim=1, keepdim=True) * 3.0

        def moved(i: int, start: int = 0) -> torch.Tensor:
            w = w0.clone()
            w[start:] += (0.3 + 0.1 * i) * direction[start:]  # a new slider position every run
            return w

        cases = [(f"frame_{r}", 0, None if r == res_max else r) for r in resolutions]
        for start in GANSPACE_STARTS:
            cases.append((f"gs{start}_{res_max}", start, None))
            if 256 in resolutions and res_max > 256:
                cases.append((f"gs{start}_256", start, 256))

        for r in renderers.values():
            r.render(w0)  # the GUI shows the inverted image first
        # One case at a time, as while dragging one slider; naive and fast alternate frame by frame.
        for name, start, max_res in cases:
            for i in range(args.repeats + 1):
                t.record = i > 0
                w = moved(i, start)
                with mem.section("naive.frames"):
                    ref = t(f"naive.{name}",
                            lambda w=w, mr=max_res: g.synthesis(w[None], deltas, max_resolution=mr)[0])
                outs = {}
                for key, r in renderers.items():
                    with mem.section(f"{key}.frames"):
                        outs[key] = t(f"{key}.{name}", lambda r=r, w=w, mr=max_res: r.render(w, mr))
                acc["f32.frame_abs"] = max(acc.get("f32.frame_abs", 0.0), (outs["f32"] - ref).abs().max().item())
                if "bf16" in outs:
                    key_psnr = "bf16.frame_psnr" if max_res is None else "bf16.preview_psnr"
                    acc[key_psnr] = min(acc.get(key_psnr, float("inf")), psnr(outs["bf16"], outs["f32"]))
            print(f"  frames {name} done ({time.perf_counter() - t0:.0f} s)", flush=True)
        for key, r in renderers.items():
            acc[f"{key}.cache_mb"] = r.cache_bytes() / 2**20
            acc[f"{key}.weights_mb"] = r.weight_bytes() / 2**20
        del renderers

        # --- 3. inversion vs batch size --------------------------------------------------------
        for n in batches:
            xb = (torch.rand(n, 3, res_max, res_max, generator=gen) * 2 - 1).to(device)
            for _ in range(args.batch_repeats):
                with mem.section(f"naive.batch{n}"):
                    t(f"naive.batch{n}", lambda xb=xb: model(xb))
                for key, inv in inverters.items():
                    with mem.section(f"{key}.batch{n}"):
                        t(f"{key}.batch{n}", lambda inv=inv, xb=xb: inv.invert(xb))
            print(f"  batch {n} done ({time.perf_counter() - t0:.0f} s)", flush=True)
            gc.collect()

    # --- the table ---------------------------------------------------------------------------
    rows: list[list[str]] = []

    def fmt_s(v: float | None) -> str:
        if v is None:
            return "—"
        return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.1f}×" if a and b else ""

    def row(label, naive, f32, bf16, target=None, preview=False):
        # Targets are judged for what the editor's *auto* precision runs: float32, except the
        # previews while dragging, which use bf16 where it is native (fast_render.precision_plan).
        tgt = ""
        if target is not None:
            auto_bf16 = preview and bf16 is not None and native_bf16
            v = bf16 if auto_bf16 else f32
            tgt = f"≤ {target} s: " + ("met" if v <= target else "not met") + (" (bf16)" if auto_bf16 else " (f32)")
            if not auto_bf16 and v > target and bf16 is not None and bf16 <= target:
                tgt += "; bf16 setting: met"
        rows.append([label, fmt_s(naive), fmt_s(f32), ratio(naive, f32), fmt_s(bf16), ratio(naive, bf16), tgt])

    def section(label):
        rows.append([f"**{label}**", "", "", "", "", "", ""])

    def mem_row(label, key):
        def gb(k):
            v = mem.peaks.get(k)
            return f"{v / 2**30:.2f} GB (+{mem.growth.get(k, 0) / 2**30:.2f})" if v else "—"
        rows.append([label, gb(f"naive.{key}"), gb(f"f32.{key}"), "", gb(f"bf16.{key}"), "", ""])

    m = t.med
    section(f"Inversion, batch 1, {res_max} px, D={args.hidden_dim}")
    row("resize to 256", m("naive.resize"), m("f32.resize"), m("bf16.resize"))
    row("E1 (W encoder)", m("naive.encode_w"), m("f32.encode_w"), m("bf16.encode_w"))
    row("Phase-I synthesis θ", m("naive.phase1"), m("f32.phase1"), m("bf16.phase1"))
    naive_e2 = (m("naive.e2_photo") or 0) + (m("naive.e2_phase1") or 0)
    row("E2 on photo + Phase-I image (fast: one batch of 2)", naive_e2, m("f32.e2_pair"), m("bf16.e2_pair"))
    row("hypernetwork", m("naive.hypernet"), m("f32.hypernet"), m("bf16.hypernet"))
    row("prepare θ renderer for Phase I (once per model, not in the total)", None, m("f32.theta"), m("bf16.theta"))
    row("prepare θ+Δθ renderer (once per image)", None, m("f32.prepare"), m("bf16.prepare"))
    row("Phase-II synthesis θ+Δθ", m("naive.phase2"), m("f32.phase2"), m("bf16.phase2"))
    totals = {}
    for key, stages in (
        ("naive", ("resize", "encode_w", "phase1", "e2_photo", "e2_phase1", "hypernet", "phase2")),
        ("f32", ("resize", "encode_w", "phase1", "e2_pair", "hypernet", "prepare", "phase2")),
        ("bf16", ("resize", "encode_w", "phase1", "e2_pair", "hypernet", "prepare", "phase2")),
    ):
        totals[key] = sum(m(f"{key}.{s}") or 0 for s in stages) or None
    row("**inversion total**", totals["naive"], totals["f32"], totals["bf16"], TARGETS["inversion"])
    mem_row("peak memory, inversion", "inversion")

    section("Frames of one inverted image (slider moves)")
    for r in resolutions:
        label = f"frame {r} px, all ws move" + (" (preview)" if r < res_max else "")
        target = TARGETS["frame"] if r == res_max else TARGETS["preview"] if r == 256 else None
        row(label, m(f"naive.frame_{r}"), m(f"f32.frame_{r}"), m(f"bf16.frame_{r}"), target, preview=r < res_max)
    for start in GANSPACE_STARTS:
        row(f"GANSpace ws {start}–{g.num_ws - 1} move, {res_max} px (cached layers)", m(f"naive.gs{start}_{res_max}"),
            m(f"f32.gs{start}_{res_max}"), m(f"bf16.gs{start}_{res_max}"), TARGETS["frame"])
        if 256 in resolutions and res_max > 256:
            row(f"GANSpace ws {start}–{g.num_ws - 1} move, preview 256 px (cached)", m(f"naive.gs{start}_256"),
                m(f"f32.gs{start}_256"), m(f"bf16.gs{start}_256"), TARGETS["preview"], preview=True)
    mem_row("peak memory, frames", "frames")
    rows.append(["renderer memory: prepared θ+Δθ weights + activation cache (≤ 256 px)", "—",
                 f"{acc.get('f32.weights_mb', 0):.0f} + {acc.get('f32.cache_mb', 0):.0f} MB", "",
                 f"{acc['bf16.weights_mb']:.0f} + {acc['bf16.cache_mb']:.0f} MB" if "bf16.weights_mb" in acc else "—",
                 "", ""])

    if batches:
        section("Inversion vs batch size: per batch (per image)")
        for n in batches:
            a, b, c = m(f"naive.batch{n}"), m(f"f32.batch{n}"), m(f"bf16.batch{n}")
            rows.append([f"batch {n}", f"{fmt_s(a)} ({fmt_s(a / n if a else None)})",
                         f"{fmt_s(b)} ({fmt_s(b / n if b else None)})", ratio(a, b),
                         f"{fmt_s(c)} ({fmt_s(c / n if c else None)})", ratio(a, c), ""])
        for n in batches:
            mem_row(f"peak memory, batch {n}", f"batch{n}")

    section("Accuracy (fast vs naive; bf16 vs float32)")
    rows.append(["frame: max abs difference vs naive (images ≈ [-1,1] scale)", "—",
                 f"{acc['f32.frame_abs']:.1e}", "", "", "", "bound 1e-3"])
    def bf16_acc(key, fmt):
        return fmt.format(acc[key]) if key in acc else "not measured (no native bf16)"

    rows.append(["preview frames (≤ 512 px; bf16 in the editor's auto): PSNR vs float32 (random weights, raw)",
                 "—", "—", "", bf16_acc("bf16.preview_psnr", "{:.1f} dB"), "", "floor 40 dB"])
    rows.append([f"frame {res_max} px (bf16 only as a setting): PSNR vs float32 (random weights, raw)", "—", "—", "",
                 bf16_acc("bf16.frame_psnr", "{:.1f} dB"), "", "floor 40 dB"])
    if "bf16.frame_psnr" in acc:
        scaled = acc["bf16.frame_psnr"] + 20 * math.log10(img_std / 0.5)
        rows.append([f"frame {res_max} px: PSNR scaled to a face-like image std 0.5 (this model's std {img_std:.2f})",
                     "—", "—",
                     "", f"{scaled:.1f} dB", "", "floor 40 dB"])
    rows.append(["inversion: Δθ relative error vs naive", "—", f"{acc['f32.inv_delta_rel']:.1e}", "",
                 bf16_acc("bf16.inv_delta_rel", "{:.1e}"), "", "bound 1e-4 (f32)"])
    rows.append(["inversion: final image max abs diff / PSNR vs naive", "—", f"{acc['f32.inv_img_abs']:.1e}", "",
                 bf16_acc("bf16.inv_psnr", "{:.1f} dB"), "", ""])

    header = ["", "naive f32", "fast f32", "×", "fast bf16", "×", "target (CPU, 2 threads)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    table = "\n".join(lines)
    desc = machine(device)
    baseline = f"{baseline_rss / 2**30:.2f} GB" if baseline_rss else "n/a"
    notes = (
        f"Machine: {desc}.\n"
        f"`python benchmarks/bench_speed.py --device {args.device} --repeats {args.repeats}`"
        f"{'' if with_bf16 else ' (bf16 columns empty: this hardware has no native bf16, so auto = float32)'}: medians of "
        f"{args.repeats} runs after a warm-up (batch rows: {args.batch_repeats} run each), FFHQ config-f shapes "
        f"with random weights, memory = peak RSS of the process during each path "
        f"(in brackets: its growth during the path; the models alone: {baseline}; the process also holds "
        f"the other paths' results and renderers). Took {time.perf_counter() - t0:.0f} s."
    )
    print()
    print(table)
    print()
    print(notes)
    if args.markdown:
        args.markdown.write_text(f"{notes}\n\n{table}\n")
        print(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
