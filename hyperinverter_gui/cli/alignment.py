"""``hyperinverter align`` and ``hyperinverter paste-back``.

Wire into the main parser with ``add_parsers(subparsers)`` and call ``run(args)``
for either command; user errors are raised as ``HyperInverterError``.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path

from hyperinverter_gui.errors import HyperInverterError

COMMANDS = ("align", "paste-back")


def _positive_size(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, got {text!r}") from None
    if not 8 <= v <= 8192:
        raise argparse.ArgumentTypeError(f"the size must be between 8 and 8192, got {v}")
    return v


#: hand-set landmarks are pixels of the photo: anything beyond this is a typo, not a face
MAX_LANDMARK_COORDINATE = 1_000_000.0


def add_parsers(subparsers) -> None:
    """Add the ``align`` and ``paste-back`` subcommands to an argparse subparsers object."""
    al = subparsers.add_parser(
        "align",
        help="make the FFHQ-aligned face crop of a photo",
        description=(
            "Find the face in PHOTO and write its FFHQ-aligned crop (the input the face models expect). "
            "Landmarks come from face-alignment (FAN) when its model weights are downloaded, else from "
            "dlib's 68-point predictor (the landmarks FFHQ was made with; the optional 'landmarks' extra, "
            "non-commercial use only), else OpenCV's Haar cascades (approximate). A face not found upright "
            "is looked for in the photo turned by 90, 270 and 180 degrees. --save-transform keeps what "
            "'paste-back' needs to put an edited crop back into the photo."
        ),
    )
    al.add_argument("photo", type=Path, metavar="PHOTO", help="JPEG, PNG, WebP, BMP or TIFF photo")
    al.add_argument("--output", "-o", type=Path, required=True, metavar="ALIGNED.png", help="aligned crop to write")
    al.add_argument("--save-transform", type=Path, default=None, metavar="T.json",
                    help="also write the alignment transform (JSON) for paste-back")
    al.add_argument("--face", type=int, default=1, metavar="N",
                    help="which face when there are several: 1 = largest (default), 2 = next, ...")
    al.add_argument("--landmarks", default=None, metavar="x1,y1,...",
                    help="set the points by hand instead of detecting them: left eye, right eye, nose tip, "
                         "left mouth corner, right mouth corner as 10 numbers, or 8 without the nose "
                         "(pixels of the upright photo)")
    al.add_argument("--size", type=_positive_size, default=1024, metavar="N",
                    help="side of the aligned crop in pixels (default 1024)")
    al.add_argument("--detector", choices=("auto", "fan", "dlib", "haar"), default="auto",
                    help="auto: face-alignment if its weights are there, else dlib if installed, else face-alignment "
                         "with a download, else OpenCV Haar (default); fan, dlib, haar: that one only")
    al.add_argument("--device", default="auto", help="device for face-alignment: auto (CUDA if available), cpu, cuda")
    al.add_argument("--no-download", action="store_true",
                    help="never download face-alignment's model weights (use them only if already cached)")
    al.add_argument("--overwrite", action="store_true", help="replace existing output files")
    al.set_defaults(command="align")

    pb = subparsers.add_parser(
        "paste-back",
        help="put an edited aligned crop back into the original photo",
        description=(
            "Map EDITED (an aligned crop, e.g. after editing) back into PHOTO with the transform saved by "
            "'align --save-transform', blending it with a feathered mask; the rest of the photo is untouched. "
            "The ICC profile, EXIF (orientation applied to the pixels) and alpha are kept where the output "
            "format allows."
        ),
    )
    pb.add_argument("photo", type=Path, metavar="PHOTO", help="the original photo that was aligned")
    pb.add_argument("edited", type=Path, metavar="EDITED", help="the edited aligned crop (any size, square)")
    pb.add_argument("--transform", "-t", type=Path, required=True, metavar="T.json",
                    help="transform written by 'align --save-transform'")
    pb.add_argument("--output", "-o", type=Path, required=True, help="photo to write (format from the suffix)")
    pb.add_argument("--mask", choices=("face", "full"), default="face",
                    help="face: feathered oval over the face (default); full: the whole crop with a feathered rim")
    pb.add_argument("--feather", type=float, default=None,
                    help="width of the soft edge as a fraction of the crop side, above 0 up to 0.5 (default 0.07)")
    pb.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality, 1..100 (default 95)")
    pb.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    pb.set_defaults(command="paste-back")


def parse_landmarks(text: str) -> list[float]:
    """'x1,y1,x2,y2,...' (commas, spaces or semicolons) -> numbers; clear errors for anything else."""
    parts = [p for p in re.split(r"[,;\s]+", text.strip()) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise HyperInverterError(
            f"--landmarks must be numbers separated by commas, got {text!r}"
        ) from None
    if not all(math.isfinite(v) and abs(v) <= MAX_LANDMARK_COORDINATE for v in values):
        raise HyperInverterError(f"--landmarks must be finite pixel positions (at most "
                                 f"{MAX_LANDMARK_COORDINATE:,.0f} in size), got {text!r}")
    if len(values) not in (8, 10, 136):
        raise HyperInverterError(
            f"--landmarks needs 10 numbers (x,y of left eye, right eye, nose tip, left mouth corner, right mouth "
            f"corner) or 8 without the nose; got {len(values)}"
        )
    return values


def _refuse_existing(paths, overwrite: bool) -> None:
    from hyperinverter_gui.media.atomic import check_writable_path, shown

    for p in paths:
        if p is not None:
            check_writable_path(p)
    if overwrite:
        return
    for p in paths:
        if p is not None and p.exists():
            raise HyperInverterError(f"{shown(p)} exists (use --overwrite to replace it)")


def _write_new(path: Path, write, overwrite: bool) -> Path:
    """``write(file)`` (itself atomic) onto a temporary name that then claims ``path``; without
    ``overwrite`` a name taken meanwhile (another run) is refused, never replaced."""
    from hyperinverter_gui.media.atomic import atomic_write

    return atomic_write(path, lambda tmp: write(Path(tmp)), path.suffix.lower(), overwrite=overwrite)


def _check_suffix(path: Path, option: str) -> None:
    from hyperinverter_gui.alignment.photo import SAVE_FORMATS

    if path.suffix.lower() not in SAVE_FORMATS:
        raise HyperInverterError(
            f"{option} {path.name}: use an image suffix ({', '.join(sorted(SAVE_FORMATS))})"
        )


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


def cmd_align(args: argparse.Namespace) -> int:
    import numpy as np

    from hyperinverter_gui.alignment import (
        align_face,
        describe_source,
        detect_faces,
        load_photo,
        manual_result,
        save_photo,
    )
    from hyperinverter_gui.alignment.errors import DetectorUnavailableError

    _check_suffix(args.output, "--output")
    if args.save_transform is not None and args.save_transform.suffix.lower() != ".json":
        raise HyperInverterError(f"--save-transform {args.save_transform.name}: use a .json file name")
    from hyperinverter_gui.cli.main import check_outputs

    check_outputs([args.photo], [("-o", args.output), ("--save-transform", args.save_transform)])
    _refuse_existing([args.output, args.save_transform], args.overwrite)
    if args.face < 1:
        raise HyperInverterError("--face counts from 1 (the largest face)")
    photo = load_photo(args.photo)
    w, h = photo.size
    for note in photo.notes:
        _say(f"note: {args.photo.name}: {note}")
    t0 = time.perf_counter()
    if args.landmarks is not None:
        if args.face != 1:
            raise HyperInverterError("--face chooses among detected faces; it cannot be used with --landmarks")
        result = manual_result(parse_landmarks(args.landmarks), image_size=(w, h))
    else:
        device = None
        if args.device != "auto":
            from hyperinverter_gui.engine.device import resolve_device

            device = str(resolve_device(args.device))
        try:
            result = detect_faces(photo.rgb, detector=args.detector, device=device,
                                  allow_download=not args.no_download)
        except DetectorUnavailableError as e:
            raise HyperInverterError(f"{e} (use --detector auto to fall back to another source, or give --landmarks)"
                                     ) from None
        if result.message:
            _say(f"note: {result.message}")
        n = len(result.faces)
        if n > 1:
            _say(f"{n} faces found (largest first):")
            for i, f in enumerate(result.faces, 1):
                x0, y0, x1, y1 = f.box
                _say(f"  face {i}: {x1 - x0:.0f}x{y1 - y0:.0f} px at ({x0:.0f}, {y0:.0f})")
    face = result.face(args.face - 1)
    aligned = align_face(photo.rgb, face, output_size=args.size, source_name=args.photo.name)
    _write_new(args.output, lambda p: save_photo(p, aligned.image, like=photo, keep_exif=False, keep_alpha=False),
               args.overwrite)
    if args.save_transform is not None:
        try:
            _write_new(args.save_transform, aligned.transform.save, args.overwrite)
        except BaseException:
            args.output.unlink(missing_ok=True)  # both files or neither
            raise
    pts = aligned.transform.points5
    coords = ",".join(f"{v:.1f}" for v in pts[~np.isnan(pts).any(1)].ravel())
    source = "set by hand" if result.detector == "manual" else f"from {describe_source(result.detector)}"
    _say(f"landmarks {source}: {coords}")
    _say(f"wrote {args.output} ({args.size}x{args.size}) in {time.perf_counter() - t0:.1f} s")
    if args.save_transform is not None:
        _say(f"wrote {args.save_transform}")
    return 0


def cmd_paste_back(args: argparse.Namespace) -> int:
    from hyperinverter_gui.alignment import (
        AlignTransform,
        load_photo,
        paste_back,
        save_photo,
    )
    from hyperinverter_gui.alignment.warp import DEFAULT_FEATHER
    from hyperinverter_gui.cli.main import check_outputs

    _check_suffix(args.output, "--output")
    check_outputs([args.photo, args.edited, args.transform], [("-o", args.output)])
    _refuse_existing([args.output], args.overwrite)
    feather = DEFAULT_FEATHER if args.feather is None else args.feather
    if not 0.0 < feather <= 0.5:  # NaN and infinity fail this test too
        raise HyperInverterError(f"--feather must be above 0 and at most 0.5, got {feather:g}")
    if not 1 <= args.quality <= 100:
        raise HyperInverterError("--quality must be between 1 and 100")
    transform = AlignTransform.load(args.transform)
    photo = load_photo(args.photo)
    edited = load_photo(args.edited)
    eh, ew = edited.rgb.shape[:2]
    if abs(ew - eh) > max(2, 0.01 * max(ew, eh)):
        raise HyperInverterError(f"{args.edited.name} is {ew}x{eh}; an aligned crop is square")
    if transform.source_name and transform.source_name != args.photo.name:
        _say(f"note: the transform was made from {transform.source_name}, not {args.photo.name}")
    result = paste_back(photo.rgb, edited.rgb, transform, mask=args.mask, feather=feather)
    if photo.alpha is not None and args.output.suffix.lower() in (".jpg", ".jpeg", ".bmp"):
        _say(f"note: {args.output.suffix} cannot hold the photo's transparency; it is dropped")
    _write_new(args.output, lambda p: save_photo(p, result, like=photo, quality=args.quality), args.overwrite)
    _say(f"wrote {args.output} ({photo.size[0]}x{photo.size[1]})")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``align`` or ``paste-back`` from parsed arguments; returns the exit status."""
    commands = {"align": cmd_align, "paste-back": cmd_paste_back}
    if args.command not in commands:
        raise HyperInverterError(f"unknown command {args.command!r}")
    try:
        return commands[args.command](args)
    except MemoryError:
        raise HyperInverterError("not enough memory for this photo") from None


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m hyperinverter_gui.cli.alignment``), for testing."""
    from hyperinverter_gui.cli.main import _Parser

    parser = _Parser(prog="hyperinverter")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parsers(sub)
    args = parser.parse_args(argv)
    from hyperinverter_gui.cli.main import run_guarded

    return run_guarded(args.command, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
