"""``hyperinverter video``: edit a face through a whole clip, with its sound.

Wired into the main parser with ``add_parser(subparsers)``; ``run(args)`` does the command. The
work itself is ``video.VideoJob`` (the Video tab runs the same job); models are chosen and the
engine is made by the command line's ``_Front``, as for ``invert`` and ``edit``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: bounds of --smooth (frames) and --stabilize (sigma, frames): windows longer than a few seconds
#: of video blur the face into its neighbours
MAX_SMOOTH, MAX_STABILIZE = 100, 100.0


def _time(text: str) -> float:
    from hyperinverter_gui.video.media import VideoError, parse_time

    try:
        return float(parse_time(text))
    except VideoError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_parser(subparsers) -> None:
    """Add the ``video`` subcommand to an argparse subparsers object."""
    from hyperinverter_gui.cli.main import (
        MAX_BATCH_SIZE,
        MAX_FACE,
        _backend_args,
        number,
    )
    from hyperinverter_gui.video.stabilize import DEFAULT_SIGMA

    v = subparsers.add_parser(
        "video",
        help="edit a face through a whole video clip (age, pose, smile, GANSpace...), with its sound",
        description=(
            "Find the face in every frame and follow it (the face chosen stays chosen when others appear), "
            "smooth the FFHQ crop over time so it does not jitter, invert the frames in batches, apply the "
            "edits, paste the edited face back with a feathered mask, and write a clip of the same size, frame "
            "rate and length with the audio copied unchanged. Frames without the face are passed through. "
            "Work is kept in a folder next to the output: after Ctrl+C or a crash, run the same command again "
            "and it continues where it stopped. Needs PyAV for sound and H.264: pip install '.[video]'."
        ),
    )
    v.add_argument("input", type=Path, metavar="CLIP", help="MP4, MOV, MKV, WebM or AVI clip")
    v.add_argument("--edit", "-e", action="append", default=[], metavar="NAME=VALUE",
                   help="e.g. age=+2 or smile=1 (repeatable; see `hyperinverter directions list`)")
    v.add_argument("--output", "-o", type=Path, required=True, metavar="OUT",
                   help="clip to write (.mp4: H.264 where this FFmpeg has it; .mkv, .mov, .webm, .avi)")
    v.add_argument("--face", type=number(1, MAX_FACE, integer=True), default=1, metavar="N",
                   help="which face, counted in the first frame that has faces: 1 = largest (default); it is "
                        "followed from there")
    v.add_argument("--smooth", type=number(0, MAX_SMOOTH, integer=True), default=0, metavar="N",
                   help="also average w and delta-theta over a window of N frames (e.g. 5; 0 = off, default)")
    v.add_argument("--stabilize", type=number(0, MAX_STABILIZE), default=DEFAULT_SIGMA, metavar="SIGMA",
                   help=f"smooth the face crop over time with this sigma in frames (default {DEFAULT_SIGMA:g}; "
                        "0 = align each frame on its own)")
    v.add_argument("--start", type=_time, default=0.0, metavar="TIME",
                   help="first time to keep: seconds or [HH:]MM:SS.s (default: the beginning)")
    v.add_argument("--end", type=_time, default=None, metavar="TIME",
                   help="time to stop before (default: the end)")
    v.add_argument("--work", type=Path, default=None, metavar="DIR",
                   help="work folder (default: OUT.work next to the output); removed after success")
    v.add_argument("--keep-work", action="store_true", help="keep the work folder after success")
    v.add_argument("--batch-size", type=number(1, MAX_BATCH_SIZE, integer=True), default=4,
                   help=f"frames inverted together, 1..{MAX_BATCH_SIZE} (default 4)")
    v.add_argument("--codec", default=None, metavar="ENCODER",
                   help="video encoder, e.g. libx264, libvpx-vp9, ffv1 (lossless, .mkv) (default: H.264 if "
                        "available, else the best one this FFmpeg has; the choice is printed)")
    v.add_argument("--crf", type=number(0, 63, integer=True), default=None,
                   help="quality of x264/VP9/AV1, 0..63 (lower is better; default 18 for x264)")
    v.add_argument("--detector", choices=("auto", "fan", "dlib", "haar"), default="auto",
                   help="landmark source (default auto: face-alignment, else dlib, else OpenCV Haar)")
    v.add_argument("--decoder", choices=("auto", "pyav", "opencv"), default="auto",
                   help="auto: PyAV when installed, else OpenCV (pictures only, no sound)")
    v.add_argument("--generator", "-g", type=Path, default=None,
                   help="StyleGAN2 generator file (default: found in the weights folders)")
    v.add_argument("--checkpoint", "-c", type=Path, default=None,
                   help="HyperInverter checkpoint (default: found in the weights folders)")
    v.add_argument("--w-encoder", type=Path, default=None, help="separate W-encoder file (HyperStyle: its own)")
    v.add_argument("--directions", type=Path, default=None, help="directions folder (default: directions/)")
    v.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda[:N]")
    _backend_args(v)
    v.add_argument("--overwrite", action="store_true", help="replace an existing output clip")
    v.set_defaults(command="video")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hyperinverter_gui.cli.main import _Front, check_edit_values
    from hyperinverter_gui.editing.edits import parse_edit
    from hyperinverter_gui.editing.library import load_library
    from hyperinverter_gui.engine.cancel import Cancelled
    from hyperinverter_gui.video import VideoJob, VideoSettings, have_pyav
    from hyperinverter_gui.video.media import format_time

    specs = [parse_edit(e) for e in args.edit]
    check_edit_values(specs)
    settings = VideoSettings(
        source=args.input, output=args.output, face=args.face - 1, stabilize=args.stabilize, smooth=args.smooth,
        start=args.start, end=args.end, work=args.work, keep_work=args.keep_work, batch_size=args.batch_size,
        backend=args.backend, iterations=args.iterations, detector=args.detector, codec=args.codec, crf=args.crf,
        overwrite=args.overwrite, decoder=args.decoder,
    )
    job = VideoJob(settings)  # checks the paths before any model is loaded
    if args.decoder != "opencv" and not have_pyav():
        print("note: PyAV is not installed: OpenCV reads and writes the pictures only, without sound "
              "(pip install '.[video]' for H.264 and audio)", file=sys.stderr)
    front = _Front(args)
    front.load(need_inverter=True)
    g = front.engine.generator(front.backend)
    lib = load_library(args.directions, num_ws=g.num_ws, img_resolution=g.img_resolution)
    settings.edits = lib.pick(specs)
    if not settings.edits:
        print("note: no edits given (-e NAME=VALUE): the face is inverted and pasted back unchanged",
              file=sys.stderr)

    bars: dict[str, tqdm] = {}
    try:
        for p in job.run(front.engine):
            bar = bars.get(p.stage)
            if bar is None:
                for b in bars.values():
                    b.close()
                bar = bars[p.stage] = tqdm(total=p.total, unit="frame", desc=p.message.split(":")[0],
                                           file=sys.stderr, leave=False)
            bar.total = p.total
            bar.n = p.done
            bar.set_postfix_str(f"all done in ~{format_time(p.eta)}" if p.eta is not None else "", refresh=False)
            bar.refresh()
    except (KeyboardInterrupt, Cancelled):
        for b in bars.values():
            b.close()
        kept = len(job.work.done_crops()) if job.work is not None and job.work.render_key else 0
        where = job.work.root if job.work is not None else settings.work_dir()
        print(f"interrupted: {kept} edited frames are kept in {where}; run the same command again to continue",
              file=sys.stderr)
        return 130
    for b in bars.values():
        b.close()
    for line in job.report.lines():
        print(line, file=sys.stderr)
    return 0
