"""Command-line interface: ``hyperinverter invert ...`` (the GUI comes with no subcommand)."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from . import __version__
from .device import resolve_device
from .errors import HyperInverterError
from .imageio import IMAGE_SUFFIXES, load_image, save_png


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
    inv.add_argument("--generator", "-g", type=Path, required=True, help="NVIDIA StyleGAN2 network pickle (.pkl)")
    inv.add_argument("--checkpoint", "-c", type=Path, required=True, help="HyperInverter checkpoint (.pt)")
    inv.add_argument(
        "--w-encoder", type=Path, default=None, help="separate pSp W-encoder file (default: the checkpoint's own E1)"
    )
    inv.add_argument("--no-align", action="store_true", help="the input is already an FFHQ-aligned crop")
    inv.add_argument("--output", "-o", type=Path, required=True, help="output PNG (a folder when INPUT is a folder)")
    inv.add_argument("--phase1-output", type=Path, default=None, help="also write the Phase-I image (PNG or folder)")
    inv.add_argument(
        "--save-inversion", type=Path, default=None,
        help="also write w, deltas and images as safetensors (file or folder) for later editing",
    )
    inv.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda[:N]")
    inv.add_argument("--batch-size", type=int, default=4, help="images inverted together (default 4)")
    inv.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


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

    from .inversion import invert, save_inversion
    from .loading import load_hyperinverter

    if not args.no_align:
        raise HyperInverterError(
            "automatic face alignment is not available in this version; pass --no-align with an "
            "already FFHQ-aligned face crop"
        )
    if args.batch_size < 1:
        raise HyperInverterError("--batch-size must be at least 1")
    jobs, failures = _plan_jobs(args)
    device = resolve_device(args.device)
    t0 = time.perf_counter()
    model = load_hyperinverter(args.checkpoint, args.generator, args.w_encoder).to(device)
    print(f"models loaded in {time.perf_counter() - t0:.1f} s on {device}", file=sys.stderr)
    res = model.generator.img_resolution
    meta = {"generator": args.generator.name, "checkpoint": args.checkpoint.name}
    done = 0
    multi = args.input.is_dir()
    bar = tqdm(total=len(jobs), unit="img", disable=not multi, file=sys.stderr)
    for start in range(0, len(jobs), args.batch_size):
        batch, images = [], []
        for j in jobs[start : start + args.batch_size]:
            try:
                images.append(load_image(j.source, res))
                batch.append(j)
            except HyperInverterError as e:
                failures.append(str(e))
                bar.update(1)
        if not batch:
            continue
        try:
            results = invert(model, torch.stack(images))
        except torch.cuda.OutOfMemoryError:
            raise HyperInverterError("the GPU ran out of memory; try --batch-size 1 or --device cpu") from None
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "invert":
            return cmd_invert(args)
    except HyperInverterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command}")
    return 2
