"""Apply slider values (a preset) to a folder of photos: each photo aligned, inverted, edited, exported.

One engine job per photo (:class:`BatchExport`), so the editor's own work (renders of the open
photo) can run between two photos. A photo that fails (not an image, no face, ...) is reported and
skipped. Cancelling stops between photos, or between the stages of the photo being done; it never
interrupts a file being written (exports are atomic), so no file is ever half-written, and a file
that was written is always reported. Runs on any executor of ``app.jobs`` (the editor's Qt one,
``ThreadExecutor``, ``InlineExecutor``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hyperinverter_gui.app.export import EditExport, export_edit
from hyperinverter_gui.app.jobs import Job, JobContext
from hyperinverter_gui.app.photos import align_photo
from hyperinverter_gui.editing.edits import Direction
from hyperinverter_gui.engine.cancel import CancelToken
from hyperinverter_gui.engine.engine import Engine
from hyperinverter_gui.errors import HyperInverterError
from hyperinverter_gui.media.images import IMAGE_SUFFIXES

MODES = ("aligned", "photo")


@dataclass
class BatchSettings:
    """What to do to every photo."""

    values: Mapping[str, float]  # slider name -> value (e.g. a preset)
    directions: Mapping[str, Direction]  # the sliders available (values of other names are ignored)
    out_dir: Path
    mode: str = "aligned"  # "aligned": the edited face; "photo": the photo with the edited face pasted back
    backend: str = "hyperinverter"
    iterations: int = 5  # HyperStyle refinement steps
    overwrite: bool = False
    preset: str = ""  # its name, for the PNG metadata
    text: Mapping[str, str] = field(default_factory=dict)  # more PNG metadata (software, models)

    def edits(self) -> list[tuple[Direction, float]]:
        return [(self.directions[n], float(v)) for n, v in sorted(self.values.items())
                if n in self.directions and v != 0]


@dataclass
class BatchItem:
    source: Path
    output: Path


@dataclass
class ItemOutcome:
    source: Path
    output: Path | None  # the file written (None: failed or cancelled)
    error: str | None = None


@dataclass
class BatchReport:
    written: list[ItemOutcome] = field(default_factory=list)
    failed: list[ItemOutcome] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)  # files in the folder that are not photos by name
    not_done: list[Path] = field(default_factory=list)  # left when cancelled
    cancelled: bool = False

    def summary(self) -> str:
        bits = [f"{len(self.written)} exported"]
        if self.failed:
            bits.append(f"{len(self.failed)} failed")
        if self.ignored:
            bits.append(f"{len(self.ignored)} other file{'s' if len(self.ignored) != 1 else ''} ignored")
        if self.cancelled:
            bits.append(f"cancelled, {len(self.not_done)} not done")
        return ", ".join(bits)


def folder_photos(folder: str | Path) -> tuple[list[Path], list[Path]]:
    """(files named like photos, other files) in ``folder``, sorted; hidden files and subfolders are left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HyperInverterError(f"{folder} is not a folder")
    files = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: p.name.casefold())
    photos = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    return photos, [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]


def output_suffix(source: Path, mode: str) -> str:
    """The edited face is a PNG; a pasted-back photo keeps its format where it can be written, else JPEG."""
    if mode == "aligned":
        return ".png"
    from hyperinverter_gui.alignment.photo import SAVE_FORMATS

    suffix = source.suffix.lower()
    return suffix if suffix in SAVE_FORMATS else ".jpg"


def plan(photos: list[Path], out_dir: str | Path, mode: str, tag: str = "edited") -> list[BatchItem]:
    """One output per photo in ``out_dir``: ``<name>_<tag><suffix>``; names that would clash get the source's suffix."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    out_dir = Path(out_dir)
    items, taken = [], set()
    for src in photos:
        suffix = output_suffix(src, mode)
        name = f"{src.stem}_{tag}{suffix}"
        if name.casefold() in taken:
            name = f"{src.stem}_{src.suffix.lstrip('.').lower()}_{tag}{suffix}"
        taken.add(name.casefold())
        items.append(BatchItem(src, out_dir / name))
    return items


def process_photo(engine: Engine, item: BatchItem, settings: BatchSettings, token: CancelToken,
                  progress: Callable[[str, float], None] | None = None) -> Path:
    """The work for one photo (on the engine thread): align, invert, edit, export. Returns the file written.

    ``token`` is checked before each stage and never once writing has begun.
    """
    step = progress or (lambda stage, fraction: None)
    if item.output.exists() and not settings.overwrite:
        raise HyperInverterError(f"{item.output.name} exists already (not replaced)")
    out = align_photo(engine.resolution, path=item.source, token=token, progress=lambda s, f: step(s, 0.15 * f))
    if out.aligned is None:
        raise HyperInverterError(out.no_face or f"{item.source.name}: no face found")
    token.raise_if_cancelled()
    step("Inverting", 0.15)
    result = engine.invert(out.aligned, settings.backend, iterations=settings.iterations,
                           on_stage=lambda s, f: step(s, 0.15 + 0.65 * f), cancel=token)[0]
    token.raise_if_cancelled()
    edits = settings.edits()
    text = {**settings.text, "edits": ", ".join(f"{d.name}={v:+g}" for d, v in edits) or "none",
            "source": item.source.name, "preset": settings.preset}
    req = EditExport(result, edits, item.output, settings.mode, text, out.rgb, out.transform, item.source,
                     overwrite=settings.overwrite)
    return export_edit(engine, req, lambda s, f: step(s, 0.8 + 0.2 * f))


class BatchExport:
    """Runs :func:`process_photo` for each item as one job after the other.

    ``submit`` queues a :class:`~hyperinverter_gui.app.jobs.Job` (e.g. ``JobManager.submit``);
    the callbacks run where the job answers arrive (the GUI thread): ``on_item(ItemOutcome)`` after
    each photo, ``on_progress(index, total, stage, overall_fraction)``, ``on_finished(BatchReport)``
    once at the end (also after :meth:`cancel`).
    """

    def __init__(
        self,
        submit: Callable[[Job], Job],
        items: list[BatchItem],
        settings: BatchSettings,
        *,
        ignored: list[Path] | None = None,
        on_item: Callable[[ItemOutcome], None] | None = None,
        on_progress: Callable[[int, int, str, float], None] | None = None,
        on_finished: Callable[[BatchReport], None] | None = None,
        purpose: str = "batch",
    ):
        self.submit = submit
        self.items = list(items)
        self.settings = settings
        self.on_item = on_item
        self.on_progress = on_progress
        self.on_finished = on_finished
        self.purpose = purpose
        self.token = CancelToken()
        self.report = BatchReport(ignored=list(ignored or []))
        self.finished = False
        self._next = 0
        self._in_flight: Job | None = None
        self._pumping = False

    @property
    def running(self) -> bool:
        """Started and not finished."""
        return self._next > 0 and not self.finished

    def start(self) -> "BatchExport":
        Path(self.settings.out_dir).mkdir(parents=True, exist_ok=True)
        self._pump()
        return self

    def cancel(self) -> None:
        """Stop after the stage that runs now (a file being written is completed and reported)."""
        self.token.cancel()
        if self._in_flight is None and not self._pumping:
            self._pump()

    def _pump(self) -> None:
        # A loop, not recursion: an inline executor answers inside submit().
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._in_flight is None and not self.finished:
                if self.token.cancelled or self._next >= len(self.items):
                    self._finish()
                    break
                index = self._next
                self._next += 1
                job = self._job(index)
                self._in_flight = job
                self.submit(job)
        finally:
            self._pumping = False

    def _job(self, index: int) -> Job:
        item, total = self.items[index], len(self.items)

        def run(engine: Engine, ctx: JobContext) -> Path:
            return process_photo(engine, item, self.settings, self.token, ctx.progress)

        def progress(stage: str, fraction: float) -> None:
            if self.on_progress is not None:
                self.on_progress(index, total, f"{item.source.name}: {stage}", (index + fraction) / total)

        return Job(self.purpose, run,
                   on_done=lambda path: self._answered(ItemOutcome(item.source, Path(path))),
                   on_failed=lambda message: self._answered(ItemOutcome(item.source, None, message)),
                   on_cancelled=lambda: self._answered(None, cancelled=item),
                   on_progress=progress)

    def _answered(self, outcome: ItemOutcome | None, cancelled: BatchItem | None = None) -> None:
        self._in_flight = None
        if cancelled is not None:
            self.report.not_done.append(cancelled.source)
        elif outcome is not None:
            (self.report.written if outcome.error is None else self.report.failed).append(outcome)
            if self.on_item is not None:
                self.on_item(outcome)
        self._pump()

    def _finish(self) -> None:
        self.finished = True
        if self.token.cancelled:
            self.report.cancelled = True
            self.report.not_done += [it.source for it in self.items[self._next:]]
            self._next = len(self.items)
        if self.on_finished is not None:
            self.on_finished(self.report)


__all__ = ["BatchExport", "BatchItem", "BatchReport", "BatchSettings", "ItemOutcome", "folder_photos", "plan",
           "process_photo"]
