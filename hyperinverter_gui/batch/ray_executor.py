"""The Ray executor (``--engine ray``, the optional ``cluster`` extra): the same work as the local
executor, spread over a Ray cluster with Ray Data.

The pipeline streams: groups of items are read, prepared (open + align) by CPU tasks, inverted,
edited and written by a pool of actors (each loads the engine once; ``num_gpus`` per actor where
the cluster has GPUs), and the rows come back to this process, which keeps the results table.
A photo that fails is a "failed" row; the run goes on. A worker process that dies is restarted by
Ray and its group is retried (the writes are atomic and the same bytes, so a retried group
replaces nothing with anything different). Every worker must be able to import this package and
read the model files and photos at the paths given here (a shared file system), and write to the
output folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import sys
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from hyperinverter_gui.batch.inputs import BatchItem
from hyperinverter_gui.batch.local import RowCallback, RunSummary, prepare_group
from hyperinverter_gui.batch.table import ResultsTable
from hyperinverter_gui.batch.work import BatchRecipe, BatchWorker
from hyperinverter_gui.errors import HyperInverterError


class RayUnavailableError(HyperInverterError):
    """Ray is not installed, or the cluster cannot be reached."""


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is a separate part of Ray's install
    except ImportError:
        raise RayUnavailableError("--engine ray needs Ray Data: pip install 'hyperinverter-studio[cluster]' "
                                  "(or pip install 'ray[data]')") from None
    return ray


def _align_row(row: dict[str, Any], recipe: BatchRecipe, resolution: int) -> dict[str, Any]:
    # Our own objects between our own stages of one run: pickled by this package, read by it.
    items = pickle.loads(row["items"])
    return {"group": row["group"], "prepared": pickle.dumps(prepare_group(items, recipe, resolution)),
            "left": row["left"]}


def _actor_class(recipe: BatchRecipe) -> type:
    """A Ray actor class with ``recipe`` built in: one engine for the actor's lifetime, one prepared
    group per call. (Built in rather than a constructor argument, which Ray would keep in its object
    store, where a restarted actor might not find it.)"""

    class InvertAndWrite:
        def __init__(self) -> None:
            self.worker = BatchWorker(recipe)

        def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
            import numpy as np

            out = []
            for blob, left in zip(batch["prepared"], batch["left"]):
                out.append(json.dumps(self.worker.process(pickle.loads(blob), set(json.loads(left)))))
            return {"rows": np.array(out, dtype=object)}

    return InvertAndWrite


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The process's standard error (the file descriptor, which Ray's C++ core writes to) goes to
    the null device while Ray starts: it announces its log level there whatever the level. Ray's
    own processes log to their files; failures reach the user as exceptions."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor 2 (an embedding host): nothing to quieten
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def run_ray(
    groups: Sequence[Sequence[BatchItem]],
    left: Collection[int],
    recipe: BatchRecipe,
    resolution: int,
    table: ResultsTable,
    summary: RunSummary,
    *,
    address: str | None = None,
    workers: int = 1,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    num_cpus: int | None = None,
    on_row: RowCallback | None = None,
) -> RunSummary:
    """Run ``groups`` on Ray: connect to ``address`` ("auto": the cluster this machine belongs to;
    "ray://host:10001": a remote cluster's client port) or start a local cluster (``num_cpus``)."""
    import time

    ray = _ray()
    if not groups:
        return summary
    for name in ("ray", "ray.data"):  # Ray's own progress and start-up chatter; our bar says it all
        logging.getLogger(name).setLevel(logging.ERROR)
    # Ray's C++ core logs to this terminal too (e.g. a note on how Ray Data restarts its actors);
    # failures reach the user through our rows and messages instead. A user's own setting wins.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    started_here = False
    if not ray.is_initialized():
        try:
            with _quiet_stderr():
                ray.init(address=address, num_cpus=num_cpus if address is None else None, include_dashboard=False,
                         logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise RayUnavailableError(f"cannot start or reach the Ray cluster ({address or 'local'}): {e}") from None
        started_here = True
    t0 = time.perf_counter()
    try:
        cpus = float(ray.cluster_resources().get("CPU", 0))
        if workers * cpus_per_worker + 0.5 > cpus:
            raise RayUnavailableError(
                f"the Ray cluster has {cpus:g} CPUs: {workers} workers x {cpus_per_worker:g} CPUs each leave none "
                "for opening and aligning photos; lower --workers or --cpus-per-worker"
                + (" or raise --num-cpus" if address is None else ""))
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        if hasattr(ctx, "print_on_execution_start"):
            ctx.print_on_execution_start = False
        rows = [{"group": i, "items": pickle.dumps(list(g)), "left": json.dumps([it.index for it in g if it.index in left])}
                for i, g in enumerate(groups)]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        # Ray retries a task whose worker died; Ray Data restarts a dead actor and retries its
        # call (its defaults: max_restarts=-1, max_task_retries=-1).
        ds = ds.map(_align_row, fn_kwargs={"recipe": recipe, "resolution": resolution}, num_cpus=0.5)
        ds = ds.map_batches(_actor_class(recipe), batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
                            num_cpus=cpus_per_worker, num_gpus=gpus_per_worker or None, batch_format="numpy")
        for out in ds.iter_rows():
            got = json.loads(out["rows"])
            table.append(got)
            for row in got:
                summary.count(row)
                if on_row is not None:
                    on_row(row)
    except KeyboardInterrupt:
        summary.interrupted = True
    except Exception as e:
        if isinstance(e, HyperInverterError):
            raise
        raise RayUnavailableError(f"the Ray run failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                                  ) from e
    finally:
        summary.seconds += time.perf_counter() - t0
        if started_here:
            ray.shutdown()
    return summary


__all__ = ["RayUnavailableError", "run_ray"]
