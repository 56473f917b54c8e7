"""The work of a batch, the same on every executor: the recipe, preparing a photo, and a worker that
inverts, edits and writes a group of prepared photos.

``prepare`` (open + align) needs no model and runs wherever CPUs are (worker processes, Ray
tasks). ``BatchWorker`` holds one engine, loaded once, and turns a group of prepared photos into
files and result rows; every frame is rendered and written by ``app.export`` through the engine,
as in the editor and the ``edit`` command. Nothing here raises for a bad photo: each item ends in
a row, "done" or "failed" with the reason.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hyperinverter_gui.batch.inputs import BatchItem
from hyperinverter_gui.catalog.cache import file_sha256 as sha256_of
from hyperinverter_gui.engine.engine import ModelFiles
from hyperinverter_gui.errors import HyperInverterError

MODES = ("aligned", "photo")


@dataclass(frozen=True)
class BatchRecipe:
    """What every worker does to every photo. Plain data: it travels to worker processes and Ray actors."""

    files: ModelFiles  # resolved model files (the workers load exactly these)
    out_dir: Path
    backend: str = "hyperinverter"
    iterations: int = 5  # HyperStyle refinement steps
    edits: tuple[tuple[str, float], ...] = ()  # slider name -> value, sorted by name
    directions_dir: Path | None = None  # None: the default directions folder
    preset: str = ""  # the preset the edits came from, for the metadata
    mode: str = "aligned"  # "aligned": the face crop; "photo": pasted back into the photo
    save_inversion: bool = False  # also write <key>.safetensors
    align: bool = True  # False: the photos are FFHQ-aligned crops already
    face: int = 0  # which face, 0 = the largest
    detector: str = "auto"  # landmark source: auto, fan, dlib, haar
    device: str = "cpu"
    threads: int = 0  # torch threads per worker; 0 = torch's default. Frames are bitwise equal for equal threads.
    batch_size: int = 4  # photos per engine call; the groups are fixed by item number

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise HyperInverterError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.batch_size < 1:
            raise HyperInverterError("the batch size must be at least 1")
        if self.mode == "photo" and not self.align:
            raise HyperInverterError("pasting back needs the original photos: it cannot be combined with --no-align")

    def image_path(self, item: BatchItem) -> Path:
        if self.mode == "photo":
            from hyperinverter_gui.app.batch_export import output_suffix

            return self.out_dir / f"{item.key}{output_suffix(item.source, 'photo')}"
        return self.out_dir / f"{item.key}.png"

    def inversion_path(self, item: BatchItem) -> Path | None:
        return self.out_dir / f"{item.key}.safetensors" if self.save_inversion else None

    def outputs(self, item: BatchItem) -> list[Path]:
        return [p for p in (self.image_path(item), self.inversion_path(item)) if p is not None]

    def fingerprint(self) -> dict[str, Any]:
        """What decides the outputs' content: a rerun with another recipe must not mix its results in."""

        def model(p: Path | None) -> str | None:
            if p is None:
                return None
            try:
                return f"{p.name} ({p.stat().st_size} bytes)"
            except OSError:
                return p.name

        return {
            "models": {k: model(v) for k, v in vars(self.files).items() if v is not None},
            "backend": self.backend, "iterations": self.iterations if self.backend == "hyperstyle" else None,
            "edits": edits_text(self.edits), "mode": self.mode, "save_inversion": self.save_inversion,
            "align": self.align, "face": self.face, "detector": self.detector if self.align else None,
            "batch_size": self.batch_size,
        }


def edits_text(edits: Sequence[tuple[str, float]]) -> str:
    return ", ".join(f"{n}={v:+g}" for n, v in edits) or "none"


@dataclass
class Prepared:
    """A photo opened and aligned, ready for the engine (or why not)."""

    item: BatchItem
    aligned: np.ndarray | None = None  # uint8 [R, R, 3]
    photo: np.ndarray | None = None  # the decoded photo (kept only for paste-back)
    transform: Any = None  # alignment.AlignTransform (paste-back)
    detector: str = ""
    faces: int = 0
    note: str | None = None
    error: str | None = None
    seconds: float = 0.0


def unexpected(e: BaseException) -> str:
    """A row's message for an error that is not one of ours: the kind and the innermost place; the
    traceback goes to the log file of the machine it happened on."""
    from hyperinverter_gui.host.log import log_unexpected, one_line

    log = log_unexpected(e, "processing a batch item")
    where = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
    at = f" at {Path(where[0].filename).name}:{where[0].lineno}" if where else ""
    tail = f" (traceback in {log} on {socket.gethostname()})" if log is not None else ""
    return one_line(f"unexpected {type(e).__name__}{at}: {e}{tail}", limit=500)


def prepare(item: BatchItem, recipe: BatchRecipe, resolution: int) -> Prepared:
    """Open ``item``'s photo and align it (or take it as an aligned crop). Never raises for a bad photo."""
    t = time.perf_counter()
    out = Prepared(item)
    try:
        if recipe.align:
            from hyperinverter_gui.app.photos import align_photo

            found = align_photo(resolution, path=item.source, face_index=recipe.face, detector=recipe.detector)
            out.detector, out.faces, out.note = found.detector, len(found.faces), found.notice
            if found.aligned is None:
                out.error = f"{item.source.name}: {found.no_face}"
            else:
                out.aligned = found.aligned
                if recipe.mode == "photo":
                    out.photo, out.transform = found.rgb, found.transform
        else:
            from PIL import Image

            from hyperinverter_gui.media.images import read_rgb

            im = read_rgb(item.source)
            if im.size != (resolution, resolution):
                # The official inference transform: a bilinear resize to the model's resolution.
                im = im.resize((resolution, resolution), Image.BILINEAR)
            out.aligned = np.asarray(im, dtype=np.uint8)
    except HyperInverterError as e:
        out.error = str(e)
    except Exception as e:  # noqa: BLE001 - one bad photo must not stop a batch; the row says what happened
        out.error = unexpected(e)
    out.seconds = time.perf_counter() - t
    return out


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class BatchWorker:
    """One engine, loaded once, that turns groups of prepared photos into files and result rows.

    ``engine``: an engine with the recipe's files loaded already (the local executor passes its
    own); None loads one here (a Ray actor).
    """

    recipe: BatchRecipe
    engine: Any = None
    edits: list[tuple[Any, float]] = field(default_factory=list)
    text: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        import torch

        from hyperinverter_gui.editing.library import load_library
        from hyperinverter_gui.engine.engine import Engine

        if self.recipe.threads > 0:
            torch.set_num_threads(self.recipe.threads)
        if self.engine is None:
            self.engine = Engine(self.recipe.device, precision="float32", release_weights=False)
            self.engine.load(self.recipe.files, eager=True)
        if self.recipe.edits:
            g = self.engine.generator(self.recipe.backend)
            lib = load_library(self.recipe.directions_dir, num_ws=g.num_ws, img_resolution=g.img_resolution)
            self.edits = lib.pick(self.recipe.edits)
        f = self.recipe.files
        self.text = {"generator": (f.generator or f.hyperstyle or Path("")).name,
                     "checkpoint": (f.inverter or f.hyperstyle or Path("")).name,
                     "backend": self.recipe.backend, "edits": edits_text(self.recipe.edits),
                     "preset": self.recipe.preset}

    @property
    def resolution(self) -> int:
        return self.engine.resolution

    def _row(self, p: Prepared) -> dict[str, Any]:
        r = self.recipe
        return {"index": p.item.index, "id": p.item.key, "source": os.fspath(p.item.source), "status": "failed",
                "error": p.error, "outputs": {}, "sha256": {}, "detector": p.detector or None,
                "faces": p.faces if r.align else None, "note": p.note,
                "generator": self.text["generator"], "checkpoint": self.text["checkpoint"],
                "backend": r.backend, "edits": self.text["edits"], "mode": r.mode,
                "align_s": round(p.seconds, 4), "invert_s": None, "write_s": None, "worker": worker_name()}

    def process(self, group: Sequence[Prepared], only: Collection[int] | None = None) -> list[dict[str, Any]]:
        """Invert the ready photos of one group together, then edit and write each. One row per photo.

        ``only``: the item numbers to write (a rerun completes a group: the engine still sees the
        whole group, so every output is the bytes a single run writes); None: all.
        """
        from hyperinverter_gui.app.export import EditExport, export_edit
        from hyperinverter_gui.inversion.result import save_inversion

        wanted = [p for p in group if only is None or p.item.index in only]
        rows = {p.item.index: self._row(p) for p in wanted}
        ready = [p for p in group if p.error is None and p.aligned is not None]
        if not any(p.item.index in rows for p in ready):
            return [rows[p.item.index] for p in wanted]
        r = self.recipe
        t = time.perf_counter()
        try:
            results = self.engine.invert([p.aligned for p in ready], r.backend, iterations=r.iterations)
        except HyperInverterError as e:
            for p in ready:
                if p.item.index in rows:
                    rows[p.item.index]["error"] = f"{p.item.source.name}: {e}"
            return [rows[p.item.index] for p in wanted]
        except Exception as e:  # noqa: BLE001 - recorded in the rows; the batch goes on
            for p in ready:
                if p.item.index in rows:
                    rows[p.item.index]["error"] = f"{p.item.source.name}: {unexpected(e)}"
            return [rows[p.item.index] for p in wanted]
        share = (time.perf_counter() - t) / len(ready)
        for p, result in zip(ready, results):
            if p.item.index not in rows:
                continue
            row = rows[p.item.index]
            row["invert_s"] = round(share, 4)
            t = time.perf_counter()
            image = r.image_path(p.item)
            inversion = r.inversion_path(p.item)
            try:
                image.parent.mkdir(parents=True, exist_ok=True)
                text = {**self.text, "source": p.item.source.name}
                export_edit(self.engine, EditExport(result, self.edits, image, r.mode, text, p.photo, p.transform,
                                                    p.item.source, overwrite=True))
                written = [("image", image)]
                if inversion is not None:
                    save_inversion(result, inversion, metadata={**self.text, "source": p.item.source.name})
                    written.append(("inversion", inversion))
                row["outputs"] = {kind: path.relative_to(r.out_dir).as_posix() for kind, path in written}
                row["sha256"] = {path.relative_to(r.out_dir).as_posix(): sha256_of(path) for _, path in written}
                row["status"], row["error"] = "done", None
            except HyperInverterError as e:
                row["error"] = f"{p.item.source.name}: {e}"
            except Exception as e:  # noqa: BLE001
                row["error"] = f"{p.item.source.name}: {unexpected(e)}"
            row["write_s"] = round(time.perf_counter() - t, 4)
        return [rows[p.item.index] for p in wanted]


__all__ = ["BatchRecipe", "BatchWorker", "MODES", "Prepared", "edits_text", "prepare", "sha256_of"]
