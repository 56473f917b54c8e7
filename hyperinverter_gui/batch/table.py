"""The results table of a batch: one row per photo, and what makes a batch resumable.

``results.jsonl`` (``results.shard-I-of-N.jsonl`` for a shard) in the output folder holds one
JSON object per photo (see ``BatchWorker._row`` for the columns: status, error, timings, model
names, output paths and their SHA-256). While a run goes on, rows are appended and flushed as
photos finish; a row that is cut off (the process killed mid-line) is ignored when read. At the
end of a run, interrupted or not, the table is rewritten (atomically) with one row per photo in
input order. ``batch.json`` beside it records the recipe: a rerun into the same folder with a
different recipe is refused instead of mixing two batches.

An item is complete when its last row says "done" and every output it names exists with the
recorded SHA-256; a rerun skips exactly those.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hyperinverter_gui.batch.inputs import BatchItem
from hyperinverter_gui.batch.work import BatchRecipe, sha256_of
from hyperinverter_gui.errors import HyperInverterError
from hyperinverter_gui.media.atomic import atomic_write

RECIPE_FILE = "batch.json"
VOLATILE = ("align_s", "invert_s", "write_s", "worker")  # differ from run to run; everything else must not


class BatchTableError(HyperInverterError):
    """The output folder holds another batch's results, or outputs the batch would replace."""


def table_name(shard: tuple[int, int] | None) -> str:
    return "results.jsonl" if shard is None or shard == (1, 1) else f"results.shard-{shard[0]}-of-{shard[1]}.jsonl"


def read_rows(path: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """The last row of each item in a table file, and the number of unreadable lines skipped."""
    rows: dict[str, dict[str, Any]] = {}  # by item key
    bad = 0
    if not path.exists():
        return rows, 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                key, _ = str(row["id"]), int(row["index"])
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            rows[key] = row
    return rows, bad


class ResultsTable:
    """The table of one run (or one shard) in ``recipe.out_dir``."""

    def __init__(self, recipe: BatchRecipe, shard: tuple[int, int] | None = None, parquet: bool = False):
        self.recipe = recipe
        self.path = recipe.out_dir / table_name(shard)
        self.parquet = parquet
        self.rows, self.skipped_lines = read_rows(self.path)
        self._file = None

    # ------------------------------------------------------------------ before the run

    def check_folder(self, items: list[BatchItem], overwrite: bool) -> None:
        """Refuse, before any work, to mix with another batch's results or to replace files not ours."""
        out = self.recipe.out_dir
        recipe_file = out / RECIPE_FILE
        mine = self.recipe.fingerprint()
        if recipe_file.exists() and not overwrite:
            try:
                theirs = json.loads(recipe_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                theirs = None
            if isinstance(theirs, dict) and theirs != mine:
                what = ", ".join(k for k in mine if theirs.get(k) != mine[k]) or "the recipe"
                raise BatchTableError(f"{out} holds the results of another batch ({what} differ): choose another "
                                      "output folder, or use --overwrite to redo every photo with this recipe")
        if overwrite:
            self.rows = {}
        elif not recipe_file.exists():
            existing = [p for it in items for p in self.recipe.outputs(it) if os.path.lexists(p)]
            if existing:
                raise BatchTableError(
                    f"{out} already has {len(existing)} of this batch's output files (e.g. {existing[0].name}) "
                    "and no batch results table: use another output folder, or --overwrite to replace them")
        out.mkdir(parents=True, exist_ok=True)
        text = json.dumps(mine, indent=1, sort_keys=True)
        if not recipe_file.exists() or recipe_file.read_text(encoding="utf-8") != text:
            atomic_write(recipe_file, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), ".json")

    def complete(self, item: BatchItem) -> bool:
        """Done in an earlier run, with every output present and unchanged."""
        row = self.rows.get(item.key)
        if not row or row.get("status") != "done":
            return False
        sums = row.get("sha256") or {}
        expected = {p.relative_to(self.recipe.out_dir).as_posix() for p in self.recipe.outputs(item)}
        if set(sums) != expected:
            return False
        for rel, digest in sums.items():
            p = self.recipe.out_dir / rel
            try:
                if not p.is_file() or sha256_of(p) != digest:
                    return False
            except OSError:
                return False
        return True

    # ------------------------------------------------------------------ during the run

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        if self._file is None:
            self.recipe.out_dir.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        for row in rows:
            self.rows[row["id"]] = row
            self._file.write(json.dumps(row, sort_keys=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    # ------------------------------------------------------------------ after the run

    def close(self) -> None:
        """Rewrite the table: one row per item, in input order (atomically); also ``.parquet`` if asked."""
        if self._file is not None:
            self._file.close()
            self._file = None
        ordered = sorted(self.rows.values(), key=lambda r: (int(r["index"]), r["id"]))
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in ordered)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), ".jsonl")
        if self.parquet:
            write_parquet(ordered, self.path.with_suffix(".parquet"))


def write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise HyperInverterError("--parquet needs pyarrow: pip install pyarrow (the JSONL table was written)") from None
    flat = [{**r, "outputs": json.dumps(r.get("outputs") or {}, sort_keys=True),
             "sha256": json.dumps(r.get("sha256") or {}, sort_keys=True)} for r in rows]
    table = pa.Table.from_pylist(flat)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp), ".parquet")


def comparable(row: dict[str, Any]) -> dict[str, Any]:
    """A row without what legitimately differs between runs (timings, worker names)."""
    return {k: v for k, v in row.items() if k not in VOLATILE}


__all__ = ["BatchTableError", "RECIPE_FILE", "ResultsTable", "comparable", "read_rows", "table_name"]
