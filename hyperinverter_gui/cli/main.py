"""Command-line interface: ``hyperinverter invert ...`` (the GUI comes with no subcommand)."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from hyperinverter_gui import __version__
from hyperinverter_gui.errors import HyperInverterError
from hyperinverter_gui.media.atomic import (
    OutputWriteError,
    atomic_write,
    check_writable_path,
    shown,
    write_error,
)
from hyperinverter_gui.media.images import IMAGE_SUFFIXES, load_image, save_png

#: bounds of numbers given on the command line (docs/cli.md, "Limits"); checked before any work
MAX_BATCH_SIZE = 64
MAX_FACE = 100
MAX_GANSPACE_SAMPLES = 10_000_000
MAX_GANSPACE_COMPONENTS = 512


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: argument --fps: ...`` and where to find the help."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"error: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def number(lo: float, hi: float, *, integer: bool = False, lo_open: bool = False,
           unit: str = "") -> Callable[[str], float]:
    """An argparse type: a finite number in [lo, hi] (``lo_open``: above lo), a whole one with
    ``integer``; the message names the flag (argparse adds it) and the allowed range."""
    kind = "a whole number" if integer else "a number"
    bounds = f"{'above' if lo_open else 'from'} {lo:g} {'up ' if lo_open else ''}to {hi:g}{unit}"

    def parse(text: str):
        try:
            value = int(text, 10) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind} {bounds}, got {text!r}") from None
        if not math.isfinite(value) or value > hi or value < lo or (lo_open and value == lo):
            raise argparse.ArgumentTypeError(f"must be {kind} {bounds}, got {text!r}")
        return value

    parse.__name__ = "int" if integer else "float"
    return parse


def check_edit_values(specs: Sequence[tuple[str, float]]) -> None:
    """Edit values are finite and at most ``editing.edits.MAX_EDIT_VALUE`` in size (the sliders span 3 to 10);
    ``parse_edit`` checks this too: kept here so every front end refuses before any work."""
    from hyperinverter_gui.editing.edits import MAX_EDIT_VALUE

    for name, value in specs:
        if not math.isfinite(value) or abs(value) > MAX_EDIT_VALUE:
            raise HyperInverterError(f"--edit {name}={value:g}: edit values must be between -{MAX_EDIT_VALUE:g} "
                                     f"and {MAX_EDIT_VALUE:g} (the sliders span about -10..10)")


def _file_key(p: Path) -> tuple:
    """What identifies the file a path names: its real path (links and '..' resolved, case folded
    where the system ignores case), and its device and inode when it exists (hard links)."""
    real = os.path.normcase(os.path.realpath(p))
    try:
        st = os.stat(p)
        return real, (st.st_dev, st.st_ino)
    except OSError:
        return real, None


def _same_file(a: Path, b: Path) -> bool:
    """Do two paths name one file (links, '..', case on case-insensitive systems)?"""
    (ra, ia), (rb, ib) = _file_key(a), _file_key(b)
    return ra == rb or (ia is not None and ia == ib)


def check_outputs(inputs: Sequence[Path], outputs: Sequence[tuple[str, Path | None]]) -> None:
    """Refuse, before any work, outputs that name one file twice or would replace an input
    (``--overwrite`` never allows that)."""
    taken: dict[object, tuple[str, Path]] = {}
    sources: dict[object, Path] = {}
    for src in inputs:
        real, inode = _file_key(src)
        sources[real] = src
        if inode is not None:
            sources[inode] = src
    for flag, p in outputs:
        if p is None:
            continue
        real, inode = _file_key(p)
        for key in (real, inode):
            if key is None:
                continue
            if key in sources:
                raise HyperInverterError(f"{flag} {shown(p)} would replace the input {shown(sources[key])}: choose "
                                         "another output name (even --overwrite never replaces an input)")
            if key in taken:
                raise HyperInverterError(f"{taken[key][0]} and {flag} both name {shown(p)}: give each output its "
                                         "own file")
        for key in (real, inode):
            if key is not None:
                taken[key] = (flag, p)


@dataclass
class _Job:
    source: Path
    output: Path
    phase1_output: Path | None
    inversion_output: Path | None


def _build_parser() -> argparse.ArgumentParser:
    from hyperinverter_gui.app.export import (
        MAX_INTERPOLATION_STEPS,
        MIN_INTERPOLATION_STEPS,
    )
    from hyperinverter_gui.media.animation import MAX_FPS, MIN_FPS

    p = _Parser(
        prog="hyperinverter",
        description="HyperInverter Studio: invert and edit face photos with HyperInverter + StyleGAN2.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command")

    inv = sub.add_parser(
        "invert",
        help="reconstruct photos with HyperInverter (Phase I + Phase II)",
        description="Invert an aligned face photo, or every image in a folder, and write the reconstruction.",
    )
    inv.add_argument("input", type=Path, help="an aligned face image, or a folder of them")
    inv.add_argument("--generator", "-g", type=Path, default=None,
                     help="StyleGAN2 generator file (default: found in the weights folders)")
    inv.add_argument("--checkpoint", "-c", type=Path, default=None,
                     help="HyperInverter checkpoint (.pt) (default: found in the weights folders)")
    inv.add_argument(
        "--w-encoder", type=Path, default=None, help="separate pSp W-encoder file (default: the checkpoint's own E1)"
    )
    inv.add_argument("--no-align", action="store_true", help="the input is already an FFHQ-aligned crop")
    inv.add_argument("--face", type=number(1, MAX_FACE, integer=True), default=1, metavar="N",
                     help="with automatic alignment: which face, 1 = largest (default)")
    inv.add_argument("--output", "-o", type=Path, required=True, help="output PNG (a folder when INPUT is a folder)")
    inv.add_argument("--phase1-output", type=Path, default=None, help="also write the Phase-I image (PNG or folder)")
    inv.add_argument(
        "--save-inversion", type=Path, default=None,
        help="also write w, deltas and images as safetensors (file or folder) for later editing",
    )
    inv.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda[:N]")
    inv.add_argument("--batch-size", type=number(1, MAX_BATCH_SIZE, integer=True), default=4,
                     help=f"images inverted together, 1..{MAX_BATCH_SIZE} (default 4)")
    _backend_args(inv)
    inv.add_argument("--overwrite", action="store_true", help="replace existing output files")

    ed = sub.add_parser(
        "edit",
        help="apply slider edits (age, pose, GANSpace...) to a photo or a saved inversion",
        description="Edit w along named directions and render with the image's own theta + delta_theta.",
    )
    ed.add_argument("input", type=Path, help="an aligned face image, or an inversion file (.safetensors)")
    ed.add_argument("--edit", "-e", action="append", default=[], metavar="NAME=VALUE",
                    help="e.g. age=+2 or eye_openness=-1.5 (repeatable; see `hyperinverter directions list`)")
    _model_args(ed, checkpoint_required=False)
    ed.add_argument("--output", "-o", type=Path, required=True, help="output PNG")
    ed.add_argument("--directions", type=Path, default=None, help="directions folder (default: directions/)")
    ed.add_argument("--save-inversion", type=Path, default=None, help="also save the inversion of a photo")
    ed.add_argument("--overwrite", action="store_true", help="replace existing output files")

    it = sub.add_parser(
        "interpolate",
        help="morph between two photos (latent codes and generator weights)",
        description="HyperInverter interpolation: w and delta_theta blended from A to B.",
    )
    it.add_argument("a", type=Path, help="first image or inversion file")
    it.add_argument("b", type=Path, help="second image or inversion file")
    _model_args(it, checkpoint_required=False)
    it.add_argument("--steps", type=number(MIN_INTERPOLATION_STEPS, MAX_INTERPOLATION_STEPS, integer=True),
                    default=9, help=f"number of frames including A and B, {MIN_INTERPOLATION_STEPS}.."
                                    f"{MAX_INTERPOLATION_STEPS} (default 9)")
    it.add_argument("--output", "-o", type=Path, required=True, help="folder for frame_000.png ...")
    it.add_argument("--gif", type=Path, default=None, help="also write an animated GIF (A -> B -> A)")
    it.add_argument("--mp4", type=Path, default=None, help="also write an MP4 video (needs opencv-python)")
    it.add_argument("--fps", type=number(MIN_FPS, MAX_FPS), default=12.0,
                    help=f"frames per second of GIF/MP4, {MIN_FPS:g}..{MAX_FPS:g} (default 12)")
    it.add_argument("--latent-only", action="store_true",
                    help="interpolate w only and render with the plain generator, for comparison")
    it.add_argument("--overwrite", action="store_true", help="replace existing output files")

    from hyperinverter_gui.cli.alignment import add_parsers as add_alignment_parsers

    add_alignment_parsers(sub)
    from hyperinverter_gui.cli.video import add_parser as add_video_parser

    add_video_parser(sub)
    from hyperinverter_gui.cli.batch import add_parser as add_batch_parser

    add_batch_parser(sub)

    wt = sub.add_parser("weights", help="list, find and download model files")
    wsub = wt.add_subparsers(dest="weights_command")
    wsub.add_parser("list", help="each role, which file serves it, and what is missing")
    wd = wsub.add_parser("download", help="download models (and direction files) named in the manifests")
    wd.add_argument("name", nargs="+",
                    help="model or direction file name(s) from `hyperinverter weights list` / `directions list`, "
                         "or 'defaults' (every default model and direction file)")
    wd.add_argument("--to", type=Path, default=None,
                    help="destination folder (default: the weights folder; direction files: the directions folder)")

    dr = sub.add_parser("directions", help="list edit directions, or compute GANSpace for a generator")
    dsub = dr.add_subparsers(dest="directions_command")
    dl = dsub.add_parser("list", help="show the sliders and which direction files are missing")
    dl.add_argument("--directions", type=Path, default=None, help="directions folder (default: directions/)")
    dl.add_argument("--generator", "-g", type=Path, default=None, help="only what fits this generator")
    dd = dsub.add_parser("download", help="download the published direction files (default: the default ones)")
    dd.add_argument("name", nargs="*", default=["defaults"],
                    help="direction file name(s) (see `hyperinverter directions list`), or 'defaults'")
    dd.add_argument("--to", type=Path, default=None, help="destination folder (default: the directions folder)")
    dg = dsub.add_parser(
        "ganspace",
        help="PCA of the generator's W space (GANSpace file format)",
        description="Sample w = mapping(z) and write {mean, comp, std} like ffhq_pca.pt, for any StyleGAN2.",
    )
    dg.add_argument("--generator", "-g", type=Path, default=None,
                    help="StyleGAN2 generator file (default: found in the weights folders)")
    dg.add_argument("--samples", type=number(2, MAX_GANSPACE_SAMPLES, integer=True), default=100_000,
                    help=f"number of z samples, 2..{MAX_GANSPACE_SAMPLES} (default 100000)")
    dg.add_argument("--components", type=number(1, MAX_GANSPACE_COMPONENTS, integer=True), default=80,
                    help=f"number of components, 1..{MAX_GANSPACE_COMPONENTS} (default 80)")
    dg.add_argument("--seed", type=number(0, 2**63 - 1, integer=True), default=0, help="random seed (default 0)")
    dg.add_argument("--output", "-o", type=Path, default=None,
                    help="output .pt file (default: cache it for this generator, so its first components become "
                         "sliders in the editor and in `directions list -g`)")
    dg.add_argument("--device", default="auto", help="auto, cpu or cuda")
    dg.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return p


def _model_args(p: argparse.ArgumentParser, checkpoint_required: bool) -> None:
    p.add_argument("--generator", "-g", type=Path, default=None,
                   help="StyleGAN2 generator file (default: found in the weights folders)")
    p.add_argument("--checkpoint", "-c", type=Path, default=None,
                   help="HyperInverter checkpoint (.pt) for inverting photos (default: found in the weights folders)")
    p.add_argument("--w-encoder", type=Path, default=None,
                   help="separate pSp W-encoder file (HyperStyle: its faces_w_encoder.pt)")
    p.add_argument("--no-align", action="store_true", help="photos are already FFHQ-aligned crops")
    p.add_argument("--face", type=number(1, MAX_FACE, integer=True), default=1, metavar="N",
                   help="with automatic alignment: which face, 1 = largest (default)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda[:N]")
    _backend_args(p)


def _backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("hyperinverter", "hyperstyle"), default="hyperinverter",
                   help="inversion method for photos (default hyperinverter); hyperstyle needs its checkpoint "
                        "(-c) and W encoder (--w-encoder), found in the weights folders when not given")
    p.add_argument("--iterations", type=int, choices=range(1, 6), default=5, metavar="{1..5}",
                   help="HyperStyle refinement steps (default 5)")


def _make_output_dir(d: Path, flag: str) -> None:
    if d.exists() and not d.is_dir():
        raise HyperInverterError(f"{flag} {shown(d)} must be a folder when the input is a folder (it is a file)")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(e, d) from None


def _folder_names(files: Sequence[Path]) -> dict[Path, str]:
    """Output stems for a folder's photos: the photo's stem, or, when two photos share one
    (face.png and face.jpg), stem_extension for each of them, so no result replaces another."""
    by_stem: dict[str, list[Path]] = {}
    for f in files:
        by_stem.setdefault(f.stem.casefold(), []).append(f)
    names = {}
    for group in by_stem.values():
        for f in group:
            names[f] = f.stem if len(group) == 1 else f"{f.stem}_{f.suffix[1:].lower()}"
    seen: dict[str, Path] = {}
    for f, name in names.items():
        key = name.casefold()
        if key in seen:
            raise HyperInverterError(f"{shown(seen[key].name)} and {shown(f.name)} would both be written as "
                                     f"{shown(name)}.png: rename one of them")
        seen[key] = f
    clashes = [f for f, n in names.items() if n != f.stem]
    if clashes:
        print(f"note: {len(clashes)} photos share a name with another one; their results are named "
              f"NAME_EXTENSION (e.g. {shown(names[clashes[0]])}.png)", file=sys.stderr)
    return names


def _plan_jobs(args: argparse.Namespace) -> tuple[list[_Job], list[str]]:
    src: Path = args.input
    if not src.exists():
        raise HyperInverterError(f"input not found: {shown(src)}")
    problems: list[str] = []
    flags = (("output", "-o"), ("phase1_output", "--phase1-output"), ("save_inversion", "--save-inversion"))
    if src.is_dir():
        files = sorted(f for f in src.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise HyperInverterError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {shown(src)}")
        folders = [(flag, getattr(args, opt)) for opt, flag in flags if getattr(args, opt) is not None]
        for i, (flag, d) in enumerate(folders):
            if _same_file(d, src):
                raise HyperInverterError(f"{flag} {shown(d)} is the input folder: write the results to another "
                                         "folder (even --overwrite never writes over the input photos)")
            for other_flag, e in folders[:i]:
                if _same_file(d, e):
                    raise HyperInverterError(f"{other_flag} and {flag} both name the folder {shown(d)}: give each "
                                             "output its own folder")
        names = _folder_names(files)
        for flag, d in folders:
            _make_output_dir(d, flag)
        jobs = [
            _Job(
                f,
                args.output / f"{names[f]}.png",
                args.phase1_output / f"{names[f]}.png" if args.phase1_output else None,
                args.save_inversion / f"{names[f]}.safetensors" if args.save_inversion else None,
            )
            for f in files
        ]
        for j in jobs:
            check_outputs(files, [("-o", j.output), ("--phase1-output", j.phase1_output),
                                  ("--save-inversion", j.inversion_output)])
    else:
        jobs = [_Job(src, args.output, args.phase1_output, args.save_inversion)]
        check_outputs([src], [("-o", args.output), ("--phase1-output", args.phase1_output),
                              ("--save-inversion", args.save_inversion)])
        for p in (args.output, args.phase1_output, args.save_inversion):
            if p is not None:
                check_writable_path(p)
    if not args.overwrite:
        kept = []
        for j in jobs:
            existing = [p for p in (j.output, j.phase1_output, j.inversion_output) if p is not None and p.exists()]
            if existing:
                problems.append(f"{shown(j.source.name)}: {shown(existing[0])} exists (use --overwrite to replace it)")
            else:
                kept.append(j)
        jobs = kept
    return jobs, problems


def _write_inversion(result, path: Path, metadata: dict[str, str], overwrite: bool) -> Path:
    """``inversion.save_inversion`` onto a temporary name, which then claims ``path`` (refused when
    the name was taken meanwhile and ``overwrite`` is off)."""
    from hyperinverter_gui.inversion.result import save_inversion

    meta = {k: shown(v) for k, v in metadata.items()}  # safetensors metadata must be valid UTF-8
    return atomic_write(path, lambda tmp: save_inversion(result, tmp, metadata=meta), ".safetensors",
                        overwrite=overwrite)


def _remove_quietly(paths: Sequence[Path]) -> None:
    for p in paths:
        try:
            p.unlink()
        except OSError:
            pass


def cmd_invert(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    jobs, failures = _plan_jobs(args)
    if failures and not args.input.is_dir():
        raise HyperInverterError(failures[0])  # before the models load: there is nothing to do
    _check_inputs([args.input] if not args.input.is_dir() else [])
    t0 = time.perf_counter()
    front = _Front(args)
    res = front.load(need_inverter=True)
    print(f"models loaded in {time.perf_counter() - t0:.1f} s on {front.engine.device}", file=sys.stderr)
    meta = front.metadata()
    done = 0
    multi = args.input.is_dir()
    bar = tqdm(total=len(jobs), unit="img", disable=not multi, file=sys.stderr)
    for start in range(0, len(jobs), args.batch_size):
        batch, images = [], []
        for j in jobs[start : start + args.batch_size]:
            try:
                images.append(photo_tensor(j.source, res, args))
                batch.append(j)
            except HyperInverterError as e:
                failures.append(str(e))
                bar.update(1)
        if not batch:
            continue
        results = front.invert(torch.stack(images))
        for j, r in zip(batch, results):
            written: list[Path] = []
            try:
                written.append(save_png(r.image, j.output, text=meta, overwrite=args.overwrite))
                if j.phase1_output:
                    written.append(save_png(r.phase1, j.phase1_output, text=meta, overwrite=args.overwrite))
                if j.inversion_output:
                    written.append(_write_inversion(r, j.inversion_output, {**meta, "source": j.source.name},
                                                    args.overwrite))
                done += 1
            except OutputWriteError:
                _remove_quietly(written)  # a result is all of its files or none of them
                raise  # a full disk or a read-only folder fails every photo that follows: stop now
            except HyperInverterError as e:
                _remove_quietly(written)
                failures.append(f"{shown(j.source.name)}: {e}")
            except BaseException:
                _remove_quietly(written)
                raise
            bar.update(1)
    bar.close()
    elapsed = time.perf_counter() - t0
    total = done + len(failures)
    if not multi and failures:
        raise HyperInverterError(failures[0])
    for f in failures:
        print(f"skipped: {f}", file=sys.stderr)
    if multi or failures:
        print(f"{done} of {total} images inverted in {elapsed:.1f} s; {len(failures)} failed", file=sys.stderr)
    elif done:
        print(f"wrote {shown(jobs[0].output)}", file=sys.stderr)
    return 0 if not failures else 1


def photo_tensor(path: Path, resolution: int, args: argparse.Namespace) -> torch.Tensor:
    """The network input for a photo: as is with --no-align, else its FFHQ-aligned crop (``app.photos``)."""
    if getattr(args, "no_align", False):
        return load_image(path, resolution)
    from hyperinverter_gui.app.photos import align_photo
    from hyperinverter_gui.engine.engine import image_batch

    face = max(0, getattr(args, "face", 1) - 1)
    out = align_photo(resolution, path=path, face_index=face)
    notes = getattr(args, "_notes", set())
    if out.message and out.message not in notes:
        print(f"note: {out.message}", file=sys.stderr)
        notes.add(out.message)
        args._notes = notes
    if out.aligned is None:
        raise HyperInverterError(f"{shown(path.name)}: {out.no_face}")
    if len(out.faces) > 1 and getattr(args, "face", 1) == 1:
        print(f"{shown(path.name)}: {len(out.faces)} faces found, using the largest (--face N picks another)",
              file=sys.stderr)
    return image_batch(out.aligned)[0]


def _refuse_existing(paths: Sequence[Path | None], overwrite: bool) -> None:
    if overwrite:
        return
    for p in paths:
        if p is not None and p.exists():
            raise HyperInverterError(f"{shown(p)} exists (use --overwrite to replace it)")


class _Front:
    """The command line's side of the engine: which files serve which role (flags win, else the
    weights folders), one :class:`Engine` that loads them lazily, and the inputs of a command."""

    def __init__(self, args: argparse.Namespace):
        from hyperinverter_gui.engine import Engine

        self.args = args
        # Outputs of the command line are exact: float32 frames whatever the machine.
        self.engine = Engine(args.device, precision="float32", release_weights=False,
                             on_notice=lambda message: print(f"note: {message}", file=sys.stderr))
        self._selection = None
        self._loaded = False

    @property
    def backend(self) -> str:
        return getattr(self.args, "backend", "hyperinverter")

    def _select(self):
        from hyperinverter_gui.catalog.discovery import discover, select

        if self._selection is None:
            overrides = {"generator": getattr(self.args, "generator", None),
                         "inverter": getattr(self.args, "checkpoint", None)}
            self._selection = select(discover(), overrides)
        return self._selection

    def _path(self, role: str, flag: str) -> Path:
        attr = {"generator": "generator", "inverter": "checkpoint", "hyperstyle": "checkpoint",
                "hyperstyle_w_encoder": "w_encoder"}[role]
        given = getattr(self.args, attr, None)
        if given is not None:
            return given
        sel = self._select()
        if role in sel.chosen:
            f = sel.chosen[role]
            print(f"using {f.path} as the {role} ({sel.reasons[role]})", file=sys.stderr)
            return f.path
        from hyperinverter_gui.catalog.discovery import ROLE_TITLES, weights_dirs

        hints = "; ".join(f"`hyperinverter weights download {e.name}`" for e in sel.missing.get(role, [])
                          if e.default)
        raise HyperInverterError(
            f"no {ROLE_TITLES[role]} found in {' or '.join(str(d) for d in weights_dirs())}. "
            f"Pass {flag} FILE, or get one: {hints or 'see `hyperinverter weights list`'}"
        )

    def _saved_backend(self, inputs: Sequence[Path]) -> str | None:
        """The backend that made saved inversions among ``inputs`` (HyperStyle results need its generator)."""
        from safetensors import safe_open

        for p in inputs:
            if p.suffix.lower() != ".safetensors" or not p.exists():
                continue
            try:
                with safe_open(str(p), framework="pt") as f:
                    backend = (f.metadata() or {}).get("backend")
            except Exception:  # noqa: BLE001 - reported properly when the file is loaded
                continue
            if backend == "hyperstyle":
                return backend
        return None

    def load(self, need_inverter: bool, inputs: Sequence[Path] = ()) -> int:
        """Choose the files this command needs and hand them to the engine. Returns the resolution."""
        from hyperinverter_gui.engine import ModelFiles

        hyperstyle = self.backend == "hyperstyle" and need_inverter
        saved_hs = self._saved_backend(inputs) == "hyperstyle" and getattr(self.args, "generator", None) is None
        files: dict[str, Path | None] = {}
        if hyperstyle or saved_hs:
            files["hyperstyle"] = self.args.checkpoint = self._path("hyperstyle", "--checkpoint")
            files["hyperstyle_w_encoder"] = self.args.w_encoder = self._path("hyperstyle_w_encoder", "--w-encoder")
            if getattr(self.args, "generator", None) is not None:
                files["generator"] = self.args.generator
        else:
            files["generator"] = self.args.generator = self._path("generator", "--generator")
            if need_inverter:
                files["inverter"] = self.args.checkpoint = self._path("inverter", "--checkpoint")
                files["w_encoder"] = getattr(self.args, "w_encoder", None)
        self.engine.load(ModelFiles(**files), eager=False)
        self._loaded = True
        return self.engine.resolution

    def metadata(self) -> dict[str, str]:
        if self.backend == "hyperstyle":
            return {"backend": "hyperstyle", "checkpoint": self.args.checkpoint.name,
                    "iterations": str(self.args.iterations)}
        return {"generator": self.args.generator.name, "checkpoint": self.args.checkpoint.name}

    def generator_name(self) -> str:
        f = self.engine.files
        return (f.generator or f.hyperstyle or Path("")).name

    def invert(self, images: torch.Tensor) -> list:
        return self.engine.invert(images, self.backend, iterations=getattr(self.args, "iterations", 5))

    def inversion(self, path: Path):
        """A saved inversion file, or a photo inverted now."""
        from hyperinverter_gui.inversion.result import load_inversion

        if path.suffix.lower() == ".safetensors":
            r = load_inversion(path)
            self.engine.check_fits(r, path.name)
            return r
        x = photo_tensor(path, self.engine.resolution, self.args)
        return self.invert(x.unsqueeze(0))[0]


def _check_inputs(inputs: Sequence[Path]) -> None:
    """Photos among ``inputs`` are checked from their headers before any model loads (missing,
    pipes, not images, decompression bombs); saved inversions are checked when loaded."""
    from hyperinverter_gui.media.images import check_image_header

    for p in inputs:
        if p.suffix.lower() != ".safetensors":
            check_image_header(p)
        elif not p.is_file():
            raise HyperInverterError(f"inversion file not found: {shown(p)}" if not p.exists() else
                                     f"{shown(p)} is not a regular file")


def _needs_inverter(inputs: Sequence[Path]) -> bool:
    return any(p.suffix.lower() != ".safetensors" for p in inputs)


def cmd_edit(args: argparse.Namespace) -> int:
    from hyperinverter_gui.app.export import EditExport, export_edit
    from hyperinverter_gui.editing.edits import parse_edit
    from hyperinverter_gui.editing.library import load_library

    edits = [parse_edit(e) for e in args.edit]
    check_edit_values(edits)
    check_outputs([args.input], [("-o", args.output), ("--save-inversion", args.save_inversion)])
    for p in (args.output, args.save_inversion):
        if p is not None:
            check_writable_path(p)
    _refuse_existing([args.output, args.save_inversion], args.overwrite)
    _check_inputs([args.input])
    front = _Front(args)
    front.load(_needs_inverter([args.input]), [args.input])
    g = front.engine.generator(front.backend if _needs_inverter([args.input]) else
                               front._saved_backend([args.input]) or "hyperinverter")
    lib = load_library(args.directions, num_ws=g.num_ws, img_resolution=g.img_resolution)
    picked = lib.pick(edits)
    r = front.inversion(args.input)
    text = {"generator": front.generator_name(), "edits": ", ".join(f"{n}={v:+g}" for n, v in edits) or "none"}
    export_edit(front.engine, EditExport(r, picked, args.output, "aligned",
                                         text, overwrite=args.overwrite))
    if args.save_inversion is not None:
        try:
            _write_inversion(r, args.save_inversion, {"generator": front.generator_name()}, args.overwrite)
        except BaseException:
            _remove_quietly([args.output])  # the command wrote both files or neither
            raise
    print(f"wrote {shown(args.output)}", file=sys.stderr)
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hyperinverter_gui.app.export import check_steps, export_interpolation

    steps = check_steps(args.steps, "--steps")
    out: Path = args.output
    if out.exists() and not out.is_dir():
        raise HyperInverterError(f"--output must be a folder: {shown(out)} is a file")
    frames_paths = [out / f"frame_{i:03d}.png" for i in range(steps)]
    outputs = [(f"-o (frame {i})", p) for i, p in enumerate(frames_paths)] + [("--gif", args.gif),
                                                                               ("--mp4", args.mp4)]
    check_outputs([args.a, args.b], outputs)
    for p in (args.gif, args.mp4):
        if p is not None:
            check_writable_path(p)
    probe = out
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise HyperInverterError(f"cannot write to {shown(out)}: {shown(probe)} is a file, not a folder")
    _refuse_existing([*frames_paths, args.gif, args.mp4], args.overwrite)
    _check_inputs([args.a, args.b])
    if args.mp4 is not None:
        try:
            import cv2  # noqa: F401
        except ImportError:
            raise HyperInverterError("MP4 export needs opencv-python (pip install 'opencv-python<5')") from None
    front = _Front(args)
    front.load(_needs_inverter([args.a, args.b]), [args.a, args.b])
    a, b = front.inversion(args.a), front.inversion(args.b)
    with tqdm(total=steps, unit="frame", file=sys.stderr, desc="rendering", leave=False) as bar:
        def progress(stage: str, fraction: float) -> None:
            bar.n = min(steps, round(fraction / 0.9 * steps))
            bar.refresh()

        export_interpolation(front.engine, a, b, steps, latent_only=args.latent_only, frames_dir=out,
                             gif=args.gif, mp4=args.mp4, fps=args.fps, progress=progress, overwrite=args.overwrite)
    print(f"wrote {steps} frames to {shown(out)}", file=sys.stderr)
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from hyperinverter_gui.app.downloads import direction_entries
    from hyperinverter_gui.catalog.discovery import (
        OPTIONAL_ROLES,
        ROLE_TITLES,
        ROLES,
        describe_found,
        discover,
        load_manifest,
        select,
        weights_dirs,
    )

    entries = load_manifest()
    if args.weights_command == "list":
        disc = discover(entries=entries)
        sel = select(disc, entries=entries)
        print("weights folders: " + ", ".join(str(d) for d in weights_dirs()))
        for role in ROLES:
            title = ROLE_TITLES[role]
            if role in sel.chosen:
                f = sel.chosen[role]
                print(f"[ok]      {title}: {f.path}  ({describe_found(f)}; {sel.reasons[role]})")
                for alt in sel.alternatives.get(role, []):
                    print(f"          also: {alt.path}  ({describe_found(alt)})")
            elif role == "w_encoder":
                print(f"[-]       {title}: none (HyperInverter checkpoints contain their own)")
            elif role in OPTIONAL_ROLES:
                names = ", ".join(e.name for e in sel.missing.get(role, []))
                print(f"[-]       {title}: none" + (f" (download: {names})" if names else ""))
            else:
                print(f"[missing] {title}")
                for e in sel.missing.get(role, []):
                    star = "*" if e.default else " "
                    print(f"        {star} {e.name:38s} {e.description}")
                print("          get one with `hyperinverter weights download NAME` (* = default)")
        from hyperinverter_gui.alignment import landmark_source_lines

        for line in landmark_source_lines():  # which landmarks align photos; dlib's: non-commercial use only
            print(line)
        for path, problem in disc.problems:
            print(f"[damaged] {path}: {problem}")
        return 0 if not any(r in sel.missing for r in ("generator", "inverter")) else 1
    if args.weights_command == "download":
        return _download(args, entries + direction_entries())
    raise HyperInverterError("use `hyperinverter weights list` or `hyperinverter weights download NAME`")


def _download(args: argparse.Namespace, entries) -> int:
    from tqdm import tqdm

    from hyperinverter_gui.app.downloads import destination, fetch, present
    from hyperinverter_gui.catalog.discovery import find_entry

    names = [e.name for e in entries if e.default] if args.name == ["defaults"] else args.name
    todo = [find_entry(n, entries) for n in names]
    for entry in todo:
        there = present(entry, args.to)
        if there is not None:
            print(f"{entry.name}: already present at {there}", file=sys.stderr)
            continue
        print(f"{entry.name}: downloading {entry.url}\n    -> {destination(entry, args.to)}", file=sys.stderr)
        with tqdm(unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, desc=entry.file) as bar:
            def progress(done: int, total: int | None) -> None:
                if total is not None and bar.total != total:
                    bar.total = total
                bar.n = done
                bar.refresh()

            result = fetch(entry, args.to, progress)
        print(f"{entry.name}: {result.size} bytes, sha256 {result.sha256} ({result.state})", file=sys.stderr)
    return 0


def cmd_directions(args: argparse.Namespace) -> int:
    if args.directions_command == "list":
        from hyperinverter_gui.editing.library import (
            directions_dirs,
            generator_key,
            load_library,
        )

        num_ws = res = key = None
        if args.generator is not None:
            from hyperinverter_gui.engine import Engine, ModelFiles

            engine = Engine("cpu")
            engine.load(ModelFiles(generator=args.generator))
            num_ws, res, key = engine.generator().num_ws, engine.resolution, generator_key(args.generator)
        lib = load_library(args.directions, num_ws=num_ws, img_resolution=res, generator_key=key)
        folders = [args.directions] if args.directions is not None else directions_dirs()
        print("directions folders: " + ", ".join(str(f) for f in folders))
        for name, d in lib.directions.items():
            span = f"ws {d.layer_start}..{(d.layer_stop or (num_ws or 0)) - 1}" if d.layer_stop else "all ws"
            extra = f"component {d.meta['component']}, " if "component" in d.meta else ""
            lo, hi = d.value_range
            print(f"  {name:20s} {d.kind:12s} {extra}{span}, range {lo:g}..{hi:g}")
        for name, why in lib.skipped:
            print(f"  {name:20s} unusable: {why}")
        if lib.missing:
            from hyperinverter_gui.app.downloads import direction_entries

            names = {e.file: e.name for e in direction_entries()}
            print("missing files (`hyperinverter directions download` fetches the defaults into the directions "
                  "folder):")
            seen = set()
            for spec in lib.missing:
                if spec.file in seen:
                    continue
                seen.add(spec.file)
                users = ", ".join(s.name for s in lib.missing if s.file == spec.file)
                name = f" (download name: {names[spec.file]})" if spec.file in names else ""
                print(f"  {spec.file:16s} for {users}{name}\n  {'':16s} from {spec.url}")
        return 0
    if args.directions_command == "download":
        from hyperinverter_gui.app.downloads import direction_entries

        return _download(args, direction_entries())
    if args.directions_command == "ganspace":
        from tqdm import tqdm

        from hyperinverter_gui.editing.edits import save_ganspace
        from hyperinverter_gui.editing.library import (
            generator_key,
            save_computed_ganspace,
        )

        _refuse_existing([args.output], args.overwrite)
        if args.output is not None:
            check_writable_path(args.output)
        front = _Front(args)
        front.load(need_inverter=False)
        with tqdm(total=args.samples, unit="z", file=sys.stderr) as bar:
            pca = front.engine.compute_ganspace(args.samples, args.components, args.seed, progress=bar.update)
        if args.output is not None:
            written = save_ganspace(pca, args.output)
        else:
            g = front.engine.files.generator
            written = save_computed_ganspace(pca, generator_key(g), generator_name=g.name, samples=args.samples,
                                             seed=args.seed)
        print(f"wrote {written}: {pca.num_components} components, top std "
              f"{', '.join(f'{v:.3f}' for v in pca.std[:3].tolist())}", file=sys.stderr)
        return 0
    raise HyperInverterError("use `hyperinverter directions list|download` or `hyperinverter directions ganspace ...`")


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command in ("align", "paste-back"):
        from hyperinverter_gui.cli.alignment import run as run_alignment

        return run_alignment(args)
    if args.command == "batch":
        from hyperinverter_gui.cli.batch import run as run_batch

        return run_batch(args)
    if args.command == "video":
        from hyperinverter_gui.cli.video import run as run_video

        return run_video(args)
    if args.command == "invert":
        return cmd_invert(args)
    if args.command == "edit":
        return cmd_edit(args)
    if args.command == "interpolate":
        return cmd_interpolate(args)
    if args.command == "directions":
        return cmd_directions(args)
    if args.command == "weights":
        return cmd_weights(args)
    parser.error(f"unknown command {args.command}")
    return 2


#: exit statuses (docs/cli.md): 2 the command could not do its work (a one-line reason on stderr),
#: 3 an unexpected error (logged with its traceback; the line names the log file), 130 Ctrl+C.
EXIT_ERROR, EXIT_UNEXPECTED, EXIT_INTERRUPTED = 2, 3, 130


def run_guarded(command: str, work: Callable[[], int]) -> int:
    """The command line's error boundary: ``work()``'s status, or one line on stderr and a non-zero
    status for anything it raises; unexpected errors are logged with their traceback."""
    from hyperinverter_gui.host.log import log_unexpected, one_line, unexpected_message

    doing = f"running `hyperinverter {command}`"
    try:
        return work()
    except HyperInverterError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted: stopped; files already written are complete, nothing half-written was kept",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:
        # Reading or writing a file the operating system refused: say which, keep the details.
        log = log_unexpected(e, doing)
        where = f" {shown(e.filename)}" if e.filename is not None else ""
        reason = e.strerror or type(e).__name__
        tail = f" (details in the log file {log})" if log is not None else ""
        print(f"error: {one_line(reason)}:{where or ' a file'}{tail}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError as e:
        print(f"error: {unexpected_message(e, doing)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # noqa: BLE001 - the boundary: never a traceback on the terminal
        print(f"error: {unexpected_message(e, doing)}", file=sys.stderr)
        return EXIT_UNEXPECTED


def main(argv: Sequence[str] | None = None) -> int:
    # Names that are not valid UTF-8 must print, never end the command in UnicodeEncodeError.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):
            pass
    parser = _build_parser()
    args = parser.parse_args(argv)  # SystemExit for --help, --version, and one-line usage errors (_Parser)
    from hyperinverter_gui.host.allocator import keep_freed_memory

    keep_freed_memory()  # batch inversions and edits reuse freed activations (no page faults)
    if args.command is None:
        parser.print_help(sys.stderr)
        print("\nWith no arguments at all, `hyperinverter` opens the editor.", file=sys.stderr)
        return 2
    return run_guarded(args.command, lambda: _dispatch(parser, args))
