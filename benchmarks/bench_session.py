"""A whole editor session, as a user has it: start, open a photo, invert, move sliders, export.

    python benchmarks/bench_session.py [--models DIR] [--runs 3] [--precision auto] [--markdown OUT.md]

Each run is a fresh process running the real window (``QT_QPA_PLATFORM=offscreen``
unless a display is set) with the models found in ``DIR`` through the normal
discovery and loaded from the model cache (one unmeasured run converts them
first). Without ``--models`` the script writes seeded random models of the full
FFHQ shapes (1024 px generator pickle, HyperInverter D=128 checkpoint) in the
official formats into a temporary folder; cost does not depend on the values.
Face-alignment's weights cannot be downloaded here, so alignment uses the Haar
fallback (as a first start offline does).

Measured per run (wall clock, from just before the process is started):

* start to window shown, and start to interactive (models loaded: sliders work
  as soon as a photo is inverted);
* open + align + invert a photo (first photo, then a second one), and the inversion alone
  (from the engine thread starting Phase I to its result);
* slider release to the updated full-resolution image on screen, and the
  preview frames rendered while dragging (the engine's own figure);
* export of the edited face (float32 render + PNG);
* peak resident memory of the process over the whole session (``VmHWM``), and
  its resident memory after each step.

Prints one table (medians over the runs); ``--markdown`` also writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"interactive": 3.0, "peak_gb": 3.0, "release_full": 0.8, "preview": 0.3, "invert": 2.5}


# --- the child: one editor session ---------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def child(args: argparse.Namespace) -> None:
    t0 = float(os.environ["BENCH_T0"])
    out: dict = {}
    rss: dict = {}

    def snapshot(name: str) -> None:
        # Resident memory, and its split: private (anonymous) and file-backed (memory-mapped weights).
        rss[name] = {k: _status_kb(f) / 1e6 for k, f in (("rss", "VmRSS"), ("anon", "RssAnon"), ("file", "RssFile"))}

    def mark(name: str) -> None:
        out[name] = time.time() - t0
        snapshot(name)

    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from hyperinverter_gui._qt.app import apply_theme, setup_logging
    from hyperinverter_gui._qt.main_window import MainWindow

    mark("imports")
    setup_logging()
    app = QApplication([sys.argv[0]])
    settings = QSettings(str(Path(args.workdir) / "settings.ini"), QSettings.IniFormat)
    settings.setValue("precision", args.precision)
    apply_theme("dark")

    def wait(signal, pred=lambda *a: True, timeout=300.0):
        loop, got = QEventLoop(), []

        def on(*a):
            if pred(*a):
                got.append(a)
                loop.quit()

        signal.connect(on)
        QTimer.singleShot(int(timeout * 1000), loop.quit)
        loop.exec()
        signal.disconnect(on)
        if not got:
            raise SystemExit(f"timed out waiting for {signal}")
        return got[0]

    win = MainWindow(settings, directions_dir=Path(args.directions), weights_dirs=[Path(args.models)])
    win.resize(1360, 860)
    win.show()
    app.processEvents()
    mark("window_shown")
    if win.models_info is None:
        wait(win.modelsLoaded)
    app.processEvents()
    mark("interactive")
    out["precision"] = win.models_info.plan.frames
    out["preview_precision"] = win.models_info.plan.previews

    def open_and_invert(path: str, name: str) -> float:
        started: list[float] = []  # when the engine thread starts the inversion (alignment done)

        def on_progress(stage, fraction):
            if not started and stage.startswith("Phase I"):
                started.append(time.time())

        win.stageChanged.connect(on_progress)
        t = time.time()
        win.open_photo(Path(path))
        wait(win.inverted)
        done = time.time()
        win.stageChanged.disconnect(on_progress)
        app.processEvents()
        if started:
            out[f"{name}_inversion"] = done - started[0]
        out[name] = time.time() - t
        return out[name]

    open_and_invert(args.photo, "invert_first")
    snapshot("invert_first")
    win.scheduler.busy or app.processEvents()
    # The inversion itself (no edits) is shown without rendering; wait for any render in flight.
    while win.scheduler.busy:
        wait(win.rendered)

    slider = win.slider_panel.sliders["age"]
    previews, releases = [], []
    for k, target in enumerate((80, -120, 150, -60, 100)):
        slider.sliderPressed.emit()
        slider.setSliderDown(True)
        start = slider.value()
        for i in range(1, 9):  # a drag: eight moves, events processed between them
            slider.setValue(int(start + (target - start) * i / 8))
            app.processEvents()
            time.sleep(0.03)
        while win.scheduler.busy:
            state, ms = wait(win.rendered)
            if state[2] is not None:
                previews.append(ms / 1000)
        slider.setSliderDown(False)
        t = time.time()
        slider.sliderReleased.emit()
        wait(win.rendered, lambda state, ms: state[2] is None)
        app.processEvents()
        releases.append(time.time() - t)
    if args.screenshot:
        win.grab().save(args.screenshot)
    out["release_full"] = statistics.median(releases)
    out["preview"] = statistics.median(previews) if previews else float("nan")
    snapshot("sliders")

    t = time.time()
    win.export_to(Path(args.workdir) / f"export-{os.getpid()}.png", overwrite=True)
    wait(win.exported)  # an engine job now: the window stays responsive while it runs
    out["export"] = time.time() - t
    snapshot("export")

    open_and_invert(args.photo2, "invert_second")
    snapshot("invert_second")
    while win.scheduler.busy:
        wait(win.rendered)
    slider.setValue(40)  # a click on the groove: one full render with the new photo's weights
    wait(win.rendered, lambda state, ms: state[2] is None)
    snapshot("second_edit")

    out["peak_gb"] = _status_kb("VmHWM") / 1e6
    out["rss"] = rss
    win.shutdown()
    print("BENCH_RESULT " + json.dumps(out), flush=True)


# --- the parent: models, runs, table -----------------------------------------------


def make_models(folder: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from official_formats import stylegan2_generator_tree, write_hyperinverter_checkpoint, write_nvidia_pickle

    folder.mkdir(parents=True, exist_ok=True)
    tree = stylegan2_generator_tree(seed=0, z_dim=512, w_dim=512, img_resolution=1024, channel_base=32768,
                                    channel_max=512, mapping_layers=8)
    write_nvidia_pickle(folder / "stylegan2-ffhq-config-f.pkl", tree)
    write_hyperinverter_checkpoint(folder / "hyperinverter_ffhq_psp_lightweight.pt", img_resolution=1024,
                                   channel_base=32768, channel_max=512, hidden_dim=128)


def make_inputs(folder: Path) -> tuple[Path, Path, Path]:
    import numpy as np
    import torch
    from PIL import Image
    from skimage import data

    a = folder / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(a, quality=95)
    b = folder / "astronaut_mirrored.png"
    Image.fromarray(np.ascontiguousarray(data.astronaut()[:, ::-1])).save(b)
    d = folder / "directions"
    d.mkdir(exist_ok=True)
    torch.save(torch.randn(1, 512, generator=torch.Generator().manual_seed(11)) * 0.5, d / "age.pt")
    (d / "manifest.toml").write_text('[[slider]]\nname = "age"\nlabel = "Age"\ngroup = "InterFaceGAN"\n'
                                     'kind = "interfacegan"\nfile = "age.pt"\nrange = [-5.0, 5.0]\n')
    return a, b, d


def run_child(args, workdir: Path, photo: Path, photo2: Path, directions: Path, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--child", "--models", str(args.models), "--workdir", str(workdir),
           "--photo", str(photo), "--photo2", str(photo2), "--directions", str(directions),
           "--precision", args.precision] + (["--screenshot", args.screenshot] if args.screenshot else [])
    env = {**env, "BENCH_T0": repr(time.time())}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT "):])
    raise SystemExit(f"session run failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), for the benchmarks' machine lines."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine() -> str:
    import torch

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu_model()}, {os.cpu_count()} cores, {mem:.0f} GiB RAM; torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def fmt_s(x: float) -> str:
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="folder with the generator and HyperInverter files (default: random FFHQ)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"])
    ap.add_argument("--markdown", help="also write the table to this file")
    ap.add_argument("--screenshot", help="save the window after the slider moves of the first measured run (PNG)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--workdir", "--photo", "--photo2", "--directions"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    tmp = Path(tempfile.mkdtemp(prefix="bench-session-"))
    try:
        measure(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # models, cache and inputs: about 1.5 GB at FFHQ size


def measure(args, tmp: Path) -> None:
    if args.models is None:
        args.models = str(tmp / "models")
        print(f"writing random FFHQ-shaped models to {args.models} ...", flush=True)
        make_models(Path(args.models))
    photo, photo2, directions = make_inputs(tmp)
    env = {**os.environ, "HYPERINVERTER_CACHE": str(tmp / "cache"), "TORCH_HOME": str(tmp / "torch_home"),
           "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen" if not os.environ.get("DISPLAY") else "")}
    if not env["QT_QPA_PLATFORM"]:
        env.pop("QT_QPA_PLATFORM")
    print("first start (converts the models into the cache; not measured) ...", flush=True)
    shot, args.screenshot = args.screenshot, None
    run_child(args, tmp, photo, photo2, directions, env)
    runs = []
    for k in range(args.runs):
        args.screenshot = shot if k == 0 else None
        runs.append(run_child(args, tmp, photo, photo2, directions, env))
        r = runs[-1]
        print(f"run {k + 1}: interactive {r['interactive']:.2f} s, invert {r['invert_first']:.2f} s, "
              f"release {r['release_full']:.2f} s, peak {r['peak_gb']:.2f} GB", flush=True)

    def med(key):
        return statistics.median(r[key] for r in runs)

    def rng(key, f=fmt_s):
        vals = [r[key] for r in runs]
        return f"{f(min(vals))} – {f(max(vals))}" if len(vals) > 1 else f(vals[0])

    gb = lambda x: f"{x:.2f} GB"  # noqa: E731
    rows = [
        ("start → window shown", fmt_s(med("window_shown")), rng("window_shown"), ""),
        ("start → interactive (models loaded from the cache)", fmt_s(med("interactive")), rng("interactive"),
         "≤ 3 s"),
        ("open + align + invert, first photo", fmt_s(med("invert_first")), rng("invert_first"), ""),
        ("open + align + invert, second photo", fmt_s(med("invert_second")), rng("invert_second"), ""),
    ]
    if all("invert_first_inversion" in r and "invert_second_inversion" in r for r in runs):
        rows += [
            ("— of which the inversion (engine thread: Phase I start → result), first photo",
             fmt_s(med("invert_first_inversion")), rng("invert_first_inversion"), ""),
            ("— of which the inversion, second photo", fmt_s(med("invert_second_inversion")),
             rng("invert_second_inversion"), "≤ 2.5 s"),
        ]
    rows += [
        ("slider release → full 1024 px image shown", fmt_s(med("release_full")), rng("release_full"), "≤ 0.8 s"),
        ("preview frame while dragging (256 px)", fmt_s(med("preview")), rng("preview"), "≤ 0.3 s"),
        ("export of the edited face (float32 + PNG)", fmt_s(med("export")), rng("export"), ""),
        ("**peak memory of the session (VmHWM)**", gb(med("peak_gb")), rng("peak_gb", gb), "≤ 3 GB"),
    ]
    for step in runs[0]["rss"]:
        m = {k: statistics.median(r["rss"][step][k] for r in runs) for k in ("rss", "anon", "file")}
        rows.append((f"resident memory after: {step.replace('_', ' ')} (private + file-mapped)",
                     gb(m["rss"]), f"{m['anon']:.2f} + {m['file']:.2f} GB", ""))
    lines = [
        f"Machine: {machine()}.",
        f"`python benchmarks/bench_session.py --runs {args.runs} --precision {args.precision}` "
        f"(inversion and released frames: {runs[0]['precision']}, previews while dragging: "
        f"{runs[0].get('preview_precision')}): {len(runs)} fresh editor processes, medians (range).",
        "",
        "| session step | median | range | target |",
        "|---|---|---|---|",
    ] + [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    text = "\n".join(lines)
    print()
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
