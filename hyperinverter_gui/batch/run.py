"""A whole batch from start to end, for any front end: plan, check, skip what is done, execute, close the table."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperinverter_gui.batch.inputs import (
    BatchItem,
    InputSet,
    collect_inputs,
    plan_items,
    shard_items,
)
from hyperinverter_gui.batch.local import (
    RowCallback,
    RunSummary,
    default_align_workers,
    groups_of,
    run_local,
)
from hyperinverter_gui.batch.table import BatchTableError, ResultsTable
from hyperinverter_gui.batch.work import BatchRecipe, BatchWorker

EXECUTORS = ("local", "ray")


@dataclass
class BatchPlan:
    inputs: InputSet
    items: list[BatchItem]  # this run's items (this shard's)
    total: int  # items of the whole input, all shards
    shard: tuple[int, int] | None


def plan_batch(source: str | Path, out_dir: Path, batch_size: int, shard: tuple[int, int] | None = None) -> BatchPlan:
    """The items of ``source`` (a folder, glob, list file or photo) for this run or shard.

    The output folder is left out when it lies inside an input folder; an output that would
    replace an input is refused before any work.
    """
    inputs = collect_inputs(source, exclude=out_dir)
    if Path(source).is_dir() and _same_folder(Path(source), out_dir):
        # A rerun would take the outputs for photos; some would even replace photos of the same name.
        raise BatchTableError(f"the output folder is the input folder {source}: choose another one "
                              "(a new subfolder of it is fine)")
    items = plan_items(inputs)
    mine = shard_items(items, shard, batch_size) if shard is not None else items
    return BatchPlan(inputs, mine, len(items), shard)


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def check_outputs_apart(plan: BatchPlan, recipe: BatchRecipe) -> None:
    """No output may be an input (a list file can name files inside the output folder)."""
    sources = {os.path.normcase(os.path.realpath(it.source)) for it in plan.items}
    for it in plan.items:
        for p in recipe.outputs(it):
            if os.path.normcase(os.path.realpath(p)) in sources:
                raise BatchTableError(f"the output {p} would replace the input photo of the same name: "
                                      "choose an output folder apart from the photos")


def run_batch(
    plan: BatchPlan,
    recipe: BatchRecipe,
    *,
    executor: str = "local",
    overwrite: bool = False,
    parquet: bool = False,
    engine: Any = None,
    resolution: int | None = None,
    align_workers: int | None = None,
    ray_options: dict[str, Any] | None = None,
    on_start: Callable[[RunSummary], None] | None = None,
    on_row: RowCallback | None = None,
) -> RunSummary:
    """Run ``plan`` with ``recipe``; items complete from an earlier run into the same folder are skipped.

    ``engine``: the local executor's engine with the recipe's files loaded (None: loaded here).
    ``resolution``: the generator's, for the Ray executor's alignment tasks (None: from ``engine``).
    ``on_start(summary)`` is called once the items left to do are known (``planned``, ``earlier``).
    """
    if executor not in EXECUTORS:
        raise BatchTableError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")
    check_outputs_apart(plan, recipe)
    table = ResultsTable(recipe, plan.shard, parquet=parquet)
    table.check_folder(plan.items, overwrite)
    todo_items = [it for it in plan.items if not table.complete(it)]
    summary = RunSummary(planned=len(plan.items), earlier=len(plan.items) - len(todo_items))
    # A group with any item left is redone whole, so the engine sees the same batch as in one run
    # (bitwise-equal outputs); only the items left are written.
    left = {it.index for it in todo_items}
    groups = [g for g in groups_of(plan.items, recipe.batch_size) if any(it.index in left for it in g)]
    if on_start is not None:
        on_start(summary)
    try:
        if executor == "ray":
            from hyperinverter_gui.batch.ray_executor import run_ray

            if resolution is None:
                resolution = engine.resolution if engine is not None else BatchWorker(recipe).resolution
            run_ray(groups, left, recipe, resolution, table, summary, on_row=on_row, **(ray_options or {}))
        else:
            worker = BatchWorker(recipe, engine=engine)
            workers = align_workers if align_workers is not None else (
                default_align_workers(os.cpu_count() or 1, len(groups)) if recipe.align else 0)
            run_local(groups, left, worker, table, summary, align_workers=workers, on_row=on_row)
    finally:
        table.close()
    return summary


__all__ = ["BatchPlan", "EXECUTORS", "check_outputs_apart", "plan_batch", "run_batch"]
