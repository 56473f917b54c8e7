"""``hyperinverter batch``: a folder, glob or list of photos inverted (and edited) into a folder,
resumable, on this machine or on a Ray cluster. The work itself is ``hyperinverter_gui.batch``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hyperinverter_gui.errors import HyperInverterError

EPILOG = """\
examples:
  hyperinverter batch photos/ -o out/ --preset "Older, smiling"
  hyperinverter batch 'shoot/**/*.jpg' -o out/ -e age=+2 -e smile=+1 --paste-back
  hyperinverter batch list.csv -o out/ --save-inversion --engine ray --address auto --gpus-per-worker 1
  hyperinverter batch photos/ -o out/ --shard 3/16          # one of 16 array jobs

Rerunning the same command completes an interrupted batch: finished photos are skipped.
Results: OUT/results.jsonl (one row per photo: status, error, timings, models, outputs).
"""


def add_parser(sub) -> None:
    from hyperinverter_gui.cli.main import MAX_BATCH_SIZE, _model_args, number

    whole = lambda lo, hi: number(lo, hi, integer=True)  # noqa: E731 - argparse types

    b = sub.add_parser(
        "batch", help="invert or edit a whole folder, glob or list of photos (resumable; locally or on Ray)",
        description="Invert (and edit) every photo of a folder, glob pattern or list file into an output "
                    "folder, with a results table. The same command runs on this machine or a Ray cluster.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("input", help="a folder (with its subfolders), a glob pattern in quotes ('photos/**/*.jpg'), "
                                 "a list file (.txt: a path per line; .csv: a 'path' column; .jsonl: "
                                 "{\"path\": ...}), or one photo")
    b.add_argument("--output", "-o", type=Path, required=True, help="output folder")
    what = b.add_mutually_exclusive_group()
    what.add_argument("--preset", default=None, metavar="NAME", help="apply a preset saved in the editor")
    what.add_argument("--edit", "-e", action="append", default=[], metavar="NAME=VALUE",
                      help="a slider value, e.g. age=+2 (repeatable); none: the reconstruction")
    b.add_argument("--directions", type=Path, default=None, help="directions folder (default: the usual one)")
    b.add_argument("--save-inversion", action="store_true", help="also write NAME.safetensors (w, deltas) per photo")
    b.add_argument("--paste-back", action="store_true",
                   help="write the whole photo with the edited face pasted back (default: the aligned face)")
    _model_args(b, checkpoint_required=False)  # -g, -c, --w-encoder, --no-align, --face, --device, --backend
    b.add_argument("--detector", choices=("auto", "fan", "dlib", "haar"), default="auto",
                   help="landmark source for aligning (default auto: the best one available)")
    b.add_argument("--batch-size", type=whole(1, MAX_BATCH_SIZE), default=4, metavar="B",
                   help="photos inverted together (default 4); part of the recipe: keep it for a rerun")
    b.add_argument("--threads", type=whole(0, 1024), default=0, metavar="T",
                   help="torch threads per engine (default: all cores locally, --cpus-per-worker on Ray). "
                        "Outputs are bitwise-equal between runs with equal threads on equal machines")
    b.add_argument("--align-workers", type=whole(0, 64), default=None, metavar="N",
                   help="local: processes that align photos while the engine inverts (default: cores - 1, up to 4)")
    b.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local (default: this machine, no extra service) or ray (needs the 'cluster' extra)")
    b.add_argument("--address", default=None,
                   help="Ray: the cluster to use: 'auto' (this machine is part of a running cluster), "
                        "'ray://HEAD:10001' (a remote cluster's client port); default: start a local cluster")
    b.add_argument("--workers", type=whole(1, 100_000), default=1, metavar="N", help="Ray: engine actors (default 1)")
    b.add_argument("--cpus-per-worker", type=number(0, 1024, lo_open=True), default=1.0, metavar="C", help="Ray: CPUs per actor (default 1)")
    b.add_argument("--gpus-per-worker", type=number(0, 1024), default=0.0, metavar="G",
                   help="Ray: GPUs per actor (default 0; 1 on GPU nodes)")
    b.add_argument("--num-cpus", type=whole(1, 100_000), default=None, metavar="N",
                   help="Ray without --address: CPUs of the local cluster (default: all)")
    b.add_argument("--shard", default=None, metavar="I/N",
                   help="do only shard I of N (e.g. 3/16), for array jobs; the shards together are the whole")
    b.add_argument("--parquet", action="store_true", help="also write the results table as results.parquet")
    b.add_argument("--overwrite", action="store_true",
                   help="redo every photo, replacing earlier outputs in the output folder")


def _values(args: argparse.Namespace) -> tuple[tuple[tuple[str, float], ...], str]:
    from hyperinverter_gui.editing.edits import parse_edit

    if args.preset is not None:
        from hyperinverter_gui.app.presets import PresetStore

        values = PresetStore().get(args.preset)
        return tuple(sorted((str(k), float(v)) for k, v in values.items())), args.preset
    edits = [parse_edit(e) for e in args.edit]
    return tuple(sorted(edits)), ""


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hyperinverter_gui.batch.inputs import parse_shard
    from hyperinverter_gui.batch.run import plan_batch, run_batch
    from hyperinverter_gui.batch.table import table_name
    from hyperinverter_gui.batch.work import BatchRecipe, BatchWorker
    from hyperinverter_gui.cli.main import _Front

    shard = parse_shard(args.shard) if args.shard else None
    if args.engine == "local" and (args.address or args.num_cpus):
        raise HyperInverterError("--address and --num-cpus are for --engine ray")
    if args.paste_back and args.no_align:
        raise HyperInverterError("--paste-back needs the original photos: it cannot be combined with --no-align")
    out_dir = args.output.expanduser().absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise HyperInverterError(f"--output must be a folder: {out_dir} is a file")
    values, preset = _values(args)
    plan = plan_batch(args.input, out_dir, args.batch_size, shard)
    front = _Front(args)
    front.load(need_inverter=True)
    files = front.engine.files
    absolute = {k: (Path(v).absolute() if v is not None else None) for k, v in vars(files).items()}
    threads = args.threads or (max(1, int(args.cpus_per_worker)) if args.engine == "ray" else 0)
    recipe = BatchRecipe(
        files=type(files)(**absolute), out_dir=out_dir, backend=args.backend, iterations=args.iterations,
        edits=values, directions_dir=args.directions.absolute() if args.directions else None, preset=preset,
        mode="photo" if args.paste_back else "aligned", save_inversion=args.save_inversion, align=not args.no_align,
        face=args.face - 1, detector=args.detector, device=args.device, threads=threads, batch_size=args.batch_size)
    BatchWorker(recipe, engine=front.engine)  # the edits must be usable before any work starts
    where = f" (shard {shard[0]} of {shard[1]})" if shard else ""
    print(f"{len(plan.items)} photos{where} from {plan.inputs.described}", file=sys.stderr)
    if plan.inputs.left_out:
        print(f"note: {plan.inputs.left_out} other files in the input folder are not photos by their name; left out",
              file=sys.stderr)

    bar = None

    def started(summary) -> None:
        nonlocal bar
        if summary.earlier:
            print(f"{summary.earlier} done in an earlier run: skipped", file=sys.stderr)
        bar = tqdm(total=summary.planned - summary.earlier, unit="photo", file=sys.stderr, dynamic_ncols=True)

    failed = 0

    def row_done(row) -> None:
        nonlocal failed
        if row["status"] != "done":
            failed += 1
            bar.set_postfix_str(f"{failed} failed", refresh=False)
        bar.update(1)

    ray_options = None
    if args.engine == "ray":
        ray_options = {"address": args.address, "workers": args.workers, "cpus_per_worker": args.cpus_per_worker,
                       "gpus_per_worker": args.gpus_per_worker, "num_cpus": args.num_cpus}
    try:
        summary = run_batch(plan, recipe, executor=args.engine, overwrite=args.overwrite, parquet=args.parquet,
                            engine=front.engine, align_workers=args.align_workers, ray_options=ray_options,
                            on_start=started, on_row=row_done)
    finally:
        if bar is not None:
            bar.close()
    table = out_dir / table_name(shard)
    rate = summary.done / summary.seconds if summary.seconds > 0 else 0.0
    for source, error in summary.failures[:10]:
        print(f"failed: {error}", file=sys.stderr)
    if len(summary.failures) > 10:
        print(f"... and {len(summary.failures) - 10} more failures (see {table})", file=sys.stderr)
    print(f"{summary.done} done, {summary.failed} failed, {summary.earlier} done earlier, of {summary.planned}"
          f" ({rate:.2f} photos/s); results: {table}", file=sys.stderr)
    if summary.interrupted:
        print(f"interrupted: {summary.left} photos left; run the same command again to finish them", file=sys.stderr)
        return 130
    return 1 if summary.failed else 0
