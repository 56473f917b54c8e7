"""The local executor: worker processes open and align photos while this process's engine inverts.

Memory stays bounded: at most ``align_workers + 1`` groups are prepared ahead of the engine.
Rows reach the results table as each group finishes, so an interrupted run keeps everything
finished before the interruption (Ctrl+C stops after the file being written; no file is ever
left half-written under its final name: every write is atomic).
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from hyperinverter_gui.batch.inputs import BatchItem
from hyperinverter_gui.batch.table import ResultsTable
from hyperinverter_gui.batch.work import BatchRecipe, BatchWorker, Prepared, prepare

RowCallback = Callable[[dict[str, Any]], None]


@dataclass
class RunSummary:
    """How a run went (the rows themselves are in the results table)."""

    planned: int = 0  # items of this run (this shard)
    earlier: int = 0  # complete from an earlier run: skipped
    done: int = 0
    failed: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (source, error)

    def count(self, row: dict[str, Any]) -> None:
        if row["status"] == "done":
            self.done += 1
        else:
            self.failed += 1
            self.failures.append((row["source"], row["error"] or "failed"))

    @property
    def left(self) -> int:
        return self.planned - self.earlier - self.done - self.failed


def groups_of(items: Sequence[BatchItem], batch_size: int) -> list[list[BatchItem]]:
    """The items in their fixed groups (item number // batch size), in order."""
    groups: dict[int, list[BatchItem]] = {}
    for it in items:
        groups.setdefault(it.group(batch_size), []).append(it)
    return [groups[g] for g in sorted(groups)]


def prepare_group(items: Sequence[BatchItem], recipe: BatchRecipe, resolution: int) -> list[Prepared]:
    return [prepare(it, recipe, resolution) for it in items]


def _quiet_worker(threads: int) -> None:
    # Ctrl+C is the parent's to handle: the workers are shut down by it, without tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(max(1, threads))


def default_align_workers(cpus: int, groups: int) -> int:
    """Processes that align while the engine inverts: none for a single group (starting one costs
    more than it saves), else up to 4, leaving a core to the engine."""
    if groups <= 1:
        return 0
    return max(1, min(4, cpus - 1))


def run_local(
    groups: Sequence[Sequence[BatchItem]],
    left: Collection[int],
    worker: BatchWorker,
    table: ResultsTable,
    summary: RunSummary,
    *,
    align_workers: int = 0,
    on_row: RowCallback | None = None,
) -> RunSummary:
    """Prepare, invert and write the items numbered in ``left`` of ``groups``, appending rows to ``table``.

    Ctrl+C (KeyboardInterrupt) stops the run: ``summary.interrupted`` is set and the rows so far
    are kept; the caller closes the table.
    """
    recipe, resolution = worker.recipe, worker.resolution
    t0 = time.perf_counter()
    pool = None
    try:
        if align_workers > 0:
            pool = ProcessPoolExecutor(align_workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_quiet_worker, initargs=(1,))
            ahead: deque[Future] = deque()
            pending = iter(groups)
            for g in pending:
                ahead.append(pool.submit(prepare_group, g, recipe, resolution))
                if len(ahead) > align_workers:
                    break
            while ahead:
                prepared = ahead.popleft().result()
                nxt = next(pending, None)
                if nxt is not None:
                    ahead.append(pool.submit(prepare_group, nxt, recipe, resolution))
                _finish(worker, prepared, left, table, summary, on_row)
        else:
            for g in groups:
                _finish(worker, prepare_group(g, recipe, resolution), left, table, summary, on_row)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        summary.seconds += time.perf_counter() - t0
    return summary


def _finish(worker: BatchWorker, prepared: list[Prepared], left: Collection[int], table: ResultsTable,
            summary: RunSummary, on_row: RowCallback | None) -> None:
    rows = worker.process(prepared, left)
    table.append(rows)
    for row in rows:
        summary.count(row)
        if on_row is not None:
            on_row(row)


__all__ = ["RunSummary", "default_align_workers", "groups_of", "prepare_group", "run_local"]
