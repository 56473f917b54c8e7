"""Command-line interface: ``hyperinverter invert ...`` (the GUI comes with no subcommand)."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from hyperinverter_gui import __version__
from hyperinverter_gui.errors import HyperInverterError
from hyperinverter_gui.media.images import IMAGE_SUFFIXES, load_image, save_png


@dataclass
class _Job:
    source: Path
    output: Path
    phase1_output: Path | None
    inversion_output: Path | None


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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
    inv.add_argument("--face", type=int, default=1, metavar="N",
                     help="with automatic alignment: which face, 1 = largest (default)")
    inv.add_argument("--output", "-o", type=Path, required=True, help="output PNG (a folder when INPUT is a folder)")
    inv.add_argument("--phase1-output", type=Path, default=None, help="also write the Phase-I image (PNG or folder)")
    inv.add_argument(
        "--save-inversion", type=Path, default=None,
        help="also write w, deltas and images as safetensors (file or folder) for later editing",
    )
    inv.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda[:N]")
    inv.add_argument("--batch-size", type=int, default=4, help="images inverted together (default 4)")
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
    it.add_argument("--steps", type=int, default=9, help="number of frames including A and B (default 9)")
    it.add_argument("--output", "-o", type=Path, required=True, help="folder for frame_000.png ...")
    it.add_argument("--gif", type=Path, default=None, help="also write an animated GIF (A -> B -> A)")
    it.add_argument("--mp4", type=Path, default=None, help="also write an MP4 video (needs opencv-python)")
    it.add_argument("--fps", type=float, default=12.0, help="frames per second of GIF/MP4 (default 12)")
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
    dg.add_argument("--samples", type=int, default=100_000, help="number of z samples (default 100000)")
    dg.add_argument("--components", type=int, default=80, help="number of components (default 80)")
    dg.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
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
    p.add_argument("--face", type=int, default=1, metavar="N",
                   help="with automatic alignment: which face, 1 = largest (default)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda[:N]")
    _backend_args(p)


def _backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("hyperinverter", "hyperstyle"), default="hyperinverter",
                   help="inversion method for photos (default hyperinverter); hyperstyle needs its checkpoint "
                        "(-c) and W encoder (--w-encoder), found in the weights folders when not given")
    p.add_argument("--iterations", type=int, choices=range(1, 6), default=5, metavar="{1..5}",
                   help="HyperStyle refinement steps (default 5)")


def _plan_jobs(args: argparse.Namespace) -> tuple[list[_Job], list[str]]:
    src: Path = args.input
    if not src.exists():
        raise HyperInverterError(f"input not found: {src}")
    problems: list[str] = []
    if src.is_dir():
        files = sorted(f for f in src.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise HyperInverterError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {src}")
        for opt in ("output", "phase1_output", "save_inversion"):
            d = getattr(args, opt)
            if d is not None:
                if d.exists() and not d.is_dir():
                    raise HyperInverterError(f"--{opt.replace('_', '-')} must be a folder when the input is a folder")
                d.mkdir(parents=True, exist_ok=True)
        jobs = [
            _Job(
                f,
                args.output / f"{f.stem}.png",
                args.phase1_output / f"{f.stem}.png" if args.phase1_output else None,
                args.save_inversion / f"{f.stem}.safetensors" if args.save_inversion else None,
            )
            for f in files
        ]
    else:
        jobs = [_Job(src, args.output, args.phase1_output, args.save_inversion)]
    if not args.overwrite:
        kept = []
        for j in jobs:
            existing = [p for p in (j.output, j.phase1_output, j.inversion_output) if p is not None and p.exists()]
            if existing:
                problems.append(f"{j.source.name}: {existing[0]} exists (use --overwrite to replace it)")
            else:
                kept.append(j)
        jobs = kept
    return jobs, problems


def cmd_invert(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hyperinverter_gui.inversion.result import save_inversion

    if args.batch_size < 1:
        raise HyperInverterError("--batch-size must be at least 1")
    jobs, failures = _plan_jobs(args)
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
            try:
                save_png(r.image, j.output, text=meta)
                if j.phase1_output:
                    save_png(r.phase1, j.phase1_output, text=meta)
                if j.inversion_output:
                    save_inversion(r, j.inversion_output, metadata={**meta, "source": j.source.name})
                done += 1
            except HyperInverterError as e:
                failures.append(f"{j.source.name}: {e}")
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
        print(f"wrote {jobs[0].output}", file=sys.stderr)
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
        raise HyperInverterError(f"{path.name}: {out.no_face}")
    if len(out.faces) > 1 and getattr(args, "face", 1) == 1:
        print(f"{path.name}: {len(out.faces)} faces found, using the largest (--face N picks another)",
              file=sys.stderr)
    return image_batch(out.aligned)[0]


def _refuse_existing(paths: Sequence[Path | None], overwrite: bool) -> None:
    if overwrite:
        return
    for p in paths:
        if p is not None and p.exists():
            raise HyperInverterError(f"{p} exists (use --overwrite to replace it)")


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


def _needs_inverter(inputs: Sequence[Path]) -> bool:
    return any(p.suffix.lower() != ".safetensors" for p in inputs)


def cmd_edit(args: argparse.Namespace) -> int:
    from hyperinverter_gui.app.export import EditExport, export_edit
    from hyperinverter_gui.editing.edits import ensure_known, parse_edit
    from hyperinverter_gui.editing.library import load_library
    from hyperinverter_gui.inversion.result import save_inversion

    edits = [parse_edit(e) for e in args.edit]
    _refuse_existing([args.output, args.save_inversion], args.overwrite)
    front = _Front(args)
    front.load(_needs_inverter([args.input]), [args.input])
    g = front.engine.generator(front.backend if _needs_inverter([args.input]) else
                               front._saved_backend([args.input]) or "hyperinverter")
    lib = load_library(args.directions, num_ws=g.num_ws, img_resolution=g.img_resolution)
    names = [n for n, _ in edits]
    if len(set(names)) != len(names):
        raise HyperInverterError("each direction may be given once")
    missing = {s.name: s for s in lib.missing}
    for n in names:
        if n in missing and n not in lib.directions:
            raise HyperInverterError(
                f"direction '{n}' needs {missing[n].file}, which is not in the directions folder; "
                f"download it from {missing[n].url or 'its upstream project'}"
            )
        for skipped, why in lib.skipped:
            if skipped == n:
                raise HyperInverterError(f"direction '{n}' cannot be used with this generator: {why}")
    ensure_known(names, lib.directions)
    r = front.inversion(args.input)
    text = {"generator": front.generator_name(), "edits": ", ".join(f"{n}={v:+g}" for n, v in edits) or "none"}
    export_edit(front.engine, EditExport(r, [(lib.directions[n], v) for n, v in edits], args.output, "aligned",
                                         text, overwrite=True))
    if args.save_inversion is not None:
        save_inversion(r, args.save_inversion, metadata={"generator": front.generator_name()})
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from hyperinverter_gui.app.export import export_interpolation
    from hyperinverter_gui.editing.edits import interpolation_alphas

    alphas = interpolation_alphas(args.steps)
    if args.fps <= 0:
        raise HyperInverterError("--fps must be positive")
    out: Path = args.output
    if out.exists() and not out.is_dir():
        raise HyperInverterError(f"--output must be a folder: {out} is a file")
    frames_paths = [out / f"frame_{i:03d}.png" for i in range(len(alphas))]
    _refuse_existing([*frames_paths, args.gif, args.mp4], args.overwrite)
    if args.mp4 is not None:
        try:
            import cv2  # noqa: F401
        except ImportError:
            raise HyperInverterError("MP4 export needs opencv-python (pip install 'opencv-python<5')") from None
    front = _Front(args)
    front.load(_needs_inverter([args.a, args.b]), [args.a, args.b])
    a, b = front.inversion(args.a), front.inversion(args.b)
    export_interpolation(front.engine, a, b, len(alphas), latent_only=args.latent_only, frames_dir=out,
                         gif=args.gif, mp4=args.mp4, fps=args.fps)
    print(f"wrote {len(alphas)} frames to {out}", file=sys.stderr)
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
        from hyperinverter_gui.editing.library import directions_dirs, generator_key, load_library

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
        from hyperinverter_gui.editing.library import generator_key, save_computed_ganspace

        _refuse_existing([args.output], args.overwrite)
        if args.samples < 2 or args.components < 1:
            raise HyperInverterError("--samples must be >= 2 and --components >= 1")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    from hyperinverter_gui.host.allocator import keep_freed_memory

    keep_freed_memory()  # batch inversions and edits reuse freed activations (no page faults)
    if args.command is None:
        parser.print_help(sys.stderr)
        print("\nWith no arguments at all, `hyperinverter` opens the editor.", file=sys.stderr)
        return 2
    try:
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
    except HyperInverterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command}")
    return 2
