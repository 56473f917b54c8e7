"""Throughput of `hyperinverter batch`: photos per second, locally and on Ray with 1 and 2 workers.

    python benchmarks/bench_batch.py [--photos 8] [--models DIR] [--align] [--markdown OUT.md]

Seeded random models of the full FFHQ shapes (1024 px generator, HyperInverter D=128; cost does
not depend on the values) unless ``--models``; ``--photos`` aligned 1024 px crops (``--no-align``),
or with ``--align`` 1024 px photos of a portrait aligned by dlib on the way. Each configuration is
one fresh ``hyperinverter batch`` process into an empty folder, timed from start to exit; the
table gives that wall time, photos/s over it, and the photos/s the command itself reports (over
its work: from after loading the driver's models, and for Ray after the cluster started, to the
last row; worker start-up, alignment processes and Ray actors loading their engine included). Ray runs on a local cluster started by the command (``--num-cpus``: the machine's
cores, plus one logical CPU for the alignment tasks).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

from bench_session import machine, make_models  # noqa: E402


def make_photos(folder: Path, n: int, align: bool) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    if align:
        from skimage import data

        a = Image.fromarray(data.astronaut()).resize((1024, 1024), Image.BICUBIC)
        for i in range(n):
            im = a.transpose(Image.FLIP_LEFT_RIGHT) if i % 2 else a
            im.rotate(2 * i - n, resample=Image.BICUBIC, fillcolor=(128, 128, 128)).save(folder / f"p{i:03d}.jpg",
                                                                                         quality=92)
        return
    g = np.random.default_rng(0)
    for i in range(n):
        low = g.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(low).resize((1024, 1024), Image.BICUBIC).save(folder / f"p{i:03d}.png")


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"batch failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    m = re.search(r"\(([\d.]+) photos/s\)", proc.stderr)
    return wall, float(m.group(1)) if m else float("nan"), proc.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--align", action="store_true", help="photos to align (dlib) instead of aligned crops")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        models = args.models or tmp / "models"
        if args.models is None:
            print("writing FFHQ-shaped random models ...", file=sys.stderr)
            make_models(models)
        g = next(models.glob("*.pkl"))
        c = next(p for p in models.glob("*.pt") if "hyperinverter" in p.name.lower())
        photos = tmp / "photos"
        make_photos(photos, args.photos, args.align)
        cores = os.cpu_count() or 1
        base = [sys.executable, "-m", "hyperinverter_gui", "batch", str(photos), "-g", str(g), "-c", str(c),
                "--batch-size", str(args.batch_size), "--device", "cpu"]
        base += ["--detector", "dlib"] if args.align else ["--no-align"]
        configs = [
            ("local", []),
            ("ray, 1 worker", ["--engine", "ray", "--workers", "1", "--cpus-per-worker", str(cores),
                               "--num-cpus", str(cores + 1)]),
            ("ray, 2 workers", ["--engine", "ray", "--workers", "2", "--cpus-per-worker", str(max(1, cores // 2)),
                                "--num-cpus", str(2 * max(1, cores // 2) + 1)]),
        ]
        env = {**os.environ, "HYPERINVERTER_CACHE": str(tmp / "cache"),
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        # One unmeasured run converts the generator into the model cache, as a user's first run does.
        one = tmp / "one.txt"
        one.write_text(str(sorted(photos.iterdir())[0]) + "\n")
        run([*base[:4], str(one), *base[5:], "-o", str(tmp / "warm")], env)
        rows = []
        for name, extra in configs:
            out = tmp / name.replace(" ", "_").replace(",", "")
            wall, reported, _ = run([*base, "-o", str(out), *extra], env)
            rows.append((name, wall, args.photos / wall, reported))
            shutil.rmtree(out, ignore_errors=True)
            print(f"{name}: {wall:.1f} s, {args.photos / wall:.3f} photos/s (reported {reported:.3f})",
                  file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [f"Machine: {machine()}; {args.photos} {'photos aligned by dlib' if args.align else 'aligned crops'}"
             f", batch size {args.batch_size}, float32 CPU.", "",
             "| executor | whole command | photos/s (whole command) | photos/s (reported by the run) |",
             "| --- | --- | --- | --- |"]
    lines += [f"| {n} | {w:.1f} s | {r:.3f} | {rep:.3f} |" for n, w, r, rep in rows]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
