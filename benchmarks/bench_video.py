"""Seconds per frame of ``hyperinverter video``, split by stage, on this machine.

    python benchmarks/bench_video.py [--models DIR] [--frames 8] [--size 1280x720] [--batch-size 4]
                                     [--device cpu] [--smooth 0] [--markdown OUT.md]

Without ``--models`` it writes seeded random models of the full FFHQ shapes (1024 px generator
pickle, HyperInverter D=128 checkpoint, as ``bench_session.py`` does) into a temporary folder: the
cost does not depend on the values. The clip is the scikit-image astronaut panned and zoomed over
``--frames`` frames at 24 fps with a sine tone, every frame showing the face (the worst case).

Two measurements:

* **stages**: each step of the pipeline on the clip's frames, one after the other, with the
  functions the job uses: decode, find the face (landmarks: what ``auto`` picks here), align
  (the FFHQ crop at 1024 px), invert (``Engine.invert`` in batches), edit + render
  (``Engine.render``, float32), paste back (feathered), encode (H.264 through PyAV);
* **job**: the whole ``VideoJob`` end to end (three passes, work folder, audio copied), its own
  per-pass times and peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))


def machine(device: str) -> str:
    import os

    import torch

    from bench_session import cpu_model

    cpu = cpu_model()
    gpu = f"; GPU {torch.cuda.get_device_name(0)}" if device.startswith("cuda") and torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads){gpu}"


def make_clip(path: Path, frames: int, width: int, height: int) -> Path:
    import cv2
    import numpy as np
    from skimage import data
    from test_video_clips import write_clip

    a = data.astronaut()
    pics = []
    for t in range(frames):
        u = t / max(1, frames - 1)
        s = (height / 256) * (1.0 + 0.2 * u)  # the face about 0.4 x the height
        cx, cy = 200 + 30 * u, 150 + 15 * np.sin(np.pi * u)
        m = np.array([[s, 0, width / 2 - s * cx], [0, s, height / 2 - s * cy]])
        pics.append(cv2.warpAffine(a, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return write_clip(path, pics, codec="libx264", pix_fmt="yuv420p", audio="aac")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=None, help="folder with a generator and a checkpoint")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--smooth", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-stages", action="store_true", help="only the whole job (e.g. to compare clip lengths)")
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    import numpy as np
    import torch

    from hyperinverter_gui.alignment import AlignTransform, detect_faces, paste_back
    from hyperinverter_gui.alignment.warp import render_aligned
    from hyperinverter_gui.catalog.discovery import discover, select
    from hyperinverter_gui.editing.edits import Direction
    from hyperinverter_gui.engine import Engine, ModelFiles
    from hyperinverter_gui.media.images import tensor_to_uint8
    from hyperinverter_gui.video import VideoJob, VideoSettings, probe, run_to_end
    from hyperinverter_gui.video.media import AudioPacket, ClipWriter, Decoder
    from hyperinverter_gui.video.stabilize import quad_from_params, square_params

    tmp = Path(tempfile.mkdtemp(prefix="bench-video-"))
    models = args.models
    if models is None:
        from bench_session import make_models

        models = tmp / "models"
        print("writing random FFHQ-shaped models (1024 px)…", file=sys.stderr)
        make_models(models)
    sel = select(discover([models]))
    files = ModelFiles(generator=sel.chosen["generator"].path, inverter=sel.chosen["inverter"].path)
    engine = Engine(args.device, "float32", cache=tmp / "cache", release_weights=False)
    t = time.perf_counter()
    info = engine.load(files)
    print(f"models loaded in {time.perf_counter() - t:.1f} s ({info.resolution} px, {info.device})", file=sys.stderr)
    res = engine.resolution
    age = Direction("age", torch.randn(1, 512, generator=torch.Generator().manual_seed(11)) * 0.5)
    edits = [(age, 2.0)]
    clip = make_clip(tmp / "clip.mp4", args.frames, width, height)
    n = args.frames

    # --- the whole job
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # models loaded
    job = VideoJob(VideoSettings(clip, tmp / "job.mp4", edits, batch_size=args.batch_size, smooth=args.smooth))
    t0 = time.perf_counter()
    report = run_to_end(job, engine)
    total = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # --- stages, one after the other on the same frames
    stage: dict[str, float] = {}
    detector = "auto"

    def clock(name, fn, *a, **k):
        t0 = time.perf_counter()
        out = fn(*a, **k)
        stage[name] = stage.get(name, 0.0) + time.perf_counter() - t0
        return out

    if not args.no_stages:
        t0 = time.perf_counter()
        with Decoder(clip) as d:
            frames = list(d.frames())
        stage["decode"] = time.perf_counter() - t0
        found = [clock("find the face", detect_faces, f.rgb, turns=False) for f in frames]
        detector = found[0].detector
        quads = [quad_from_params(square_params(r.faces[0].points5)) for r in found]
        crops = [clock("align (1024 px crop)", render_aligned, f.rgb, q, res) for f, q in zip(frames, quads)]
        engine.invert(np.stack(crops[:1]))  # warm-up (prepares the staged inverter), not counted
        results = []
        for k in range(0, n, args.batch_size):
            batch = crops[k:k + args.batch_size]
            batch += [batch[-1]] * (args.batch_size - len(batch))
            results += clock("invert", engine.invert, np.stack(batch))[: min(args.batch_size, n - k)]
        edited = [clock("edit + render", lambda r: tensor_to_uint8(engine.render(r, edits, kind="exact")), r)
                  for r in results]
        pasted = [clock("paste back", paste_back, f.rgb, e, AlignTransform(q, (width, height), res))
                  for f, e, q in zip(frames, edited, quads)]
        t0 = time.perf_counter()
        with Decoder(clip, audio=True, keep_source=True) as d:
            w = ClipWriter(tmp / "stages.mp4", d, probe(clip))
            i = 0
            for item in d:
                if isinstance(item, AudioPacket):
                    w.add_audio(item)
                else:
                    w.add_frame(item, pasted[i])
                    i += 1
            w.finish()
        stage["encode (decode again, H.264)"] = time.perf_counter() - t0
        del frames, crops, results, edited, pasted

    lines = [f"# bench_video: {n} frames {width}x{height}, {res} px models, batch {args.batch_size}, "
             f"device {engine.device}", "", f"machine: {machine(str(engine.device))}",
             f"landmarks: {detector}; encoder: {report.encoder}; audio: {', '.join(report.audio)}"]
    if stage:
        lines += ["", "| stage | s / frame |", "| --- | ---: |"]
        lines += [f"| {k} | {v / n:.3f} |" for k, v in stage.items()]
        lines.append(f"| **sum of stages** | **{sum(stage.values()) / n:.3f}** |")
    lines += ["", "| whole job (VideoJob) | s / frame |", "| --- | ---: |"]
    for k, v in report.seconds.items():
        lines.append(f"| {k} | {v / n:.3f} |")
    lines += ["", f"whole job: {total:.1f} s for {n} frames = {total / n:.2f} s/frame; peak RSS during the job "
                  f"{rss / 1024:.2f} GiB (models loaded: {rss0 / 1024:.2f} GiB)"]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)  # about 3 GB of models, their cache and the clips


if __name__ == "__main__":
    main()
