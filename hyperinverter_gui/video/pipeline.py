"""Editing a face through a whole clip: the per-clip pipeline.

Three passes over the clip, each streaming its frames (memory is bounded by the batch size,
whatever the clip's length):

1. **detect**: every frame's faces and landmarks; one face is followed (``alignment.FaceTracker``:
   box overlap, then landmark distance; never "the largest" once chosen). One line per frame goes
   to the work folder.
2. **invert**: the crop squares are smoothed over time (``stabilize``), each frame with the face
   is cropped with its smoothed square, inverted in batches by the engine (the one inversion
   path: ``Engine.invert``), optionally averaged with its neighbours (w and delta-theta, ``smooth``),
   edited and rendered (``Engine.render``, float32 "exact" frames); each edited crop goes to the
   work folder.
3. **encode**: each frame is decoded again, its edited crop pasted back with the smoothed
   transform and a feathered mask (``alignment.paste_back``), and encoded; frames without the face
   are passed through unchanged; the audio is copied. The file is written under a temporary name
   and renamed when complete.

A job is a generator of :class:`Progress` (``VideoJob.run``), so the command line prints it and
the editor runs it a slice at a time on the engine thread, between its other jobs. Whatever was
finished is in the work folder: a rerun after Ctrl+C, a crash or a kill continues where it
stopped, and computes only what is missing.

A short last batch is padded to the batch size with copies of its last crop, so every frame is
inverted in a batch of the same shape: a frame's result then does not depend on where an earlier
run stopped (batches of other shapes may differ in the last float bits).
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from hyperinverter_gui.alignment import AlignTransform, FaceTracker, detect_faces, paste_back
from hyperinverter_gui.alignment.detect import Face
from hyperinverter_gui.alignment.warp import render_aligned
from hyperinverter_gui.editing.edits import Direction, apply_edits
from hyperinverter_gui.engine.cancel import CancelToken
from hyperinverter_gui.inversion.result import InversionResult, WeightDeltas
from hyperinverter_gui.media.images import tensor_to_uint8
from hyperinverter_gui.video.media import (
    CONTAINERS,
    AudioPacket,
    ClipInfo,
    ClipWriter,
    Decoder,
    VideoError,
    format_time,
    probe,
)
from hyperinverter_gui.video.stabilize import (
    DEFAULT_SIGMA,
    crop_jitter,
    quad_from_params,
    segments,
    smooth_track,
    square_params,
    window,
)
from hyperinverter_gui.video.workdir import WorkFolder, default_work_dir, digest, file_identity

STAGES = ("detect", "invert", "encode")
STAGE_LABELS = {"detect": "Finding the face", "invert": "Inverting and editing", "encode": "Writing the clip"}
#: guesses of seconds per frame, used to weigh the stages in the progress bar until they are measured
STAGE_WEIGHTS = {"detect": 0.1, "invert": 2.0, "encode": 0.05}


@dataclass
class VideoSettings:
    """What to do to a clip (the ``video`` command's options, the Video tab's controls)."""

    source: Path
    output: Path
    edits: Sequence[tuple[Direction, float]] = ()
    face: int = 0  # which face in the first frame that has faces (0 = largest); it is followed from there
    stabilize: float = DEFAULT_SIGMA  # sigma (frames) of the crop smoothing; 0 = off
    smooth: int = 0  # window (frames) over which w and delta-theta are averaged; 0 or 1 = off
    start: float = 0.0  # seconds
    end: float | None = None  # seconds (exclusive); None = to the end
    work: Path | None = None  # work folder; default: next to the output
    keep_work: bool = False  # keep the work folder after success
    batch_size: int = 4
    backend: str = "hyperinverter"
    iterations: int = 5  # HyperStyle refinement steps
    detector: str = "auto"
    codec: str | None = None  # video encoder (default: H.264 where available)
    crf: int | None = None
    pix_fmt: str | None = None
    overwrite: bool = False
    decoder: str = "auto"  # "auto" (PyAV, else OpenCV), "pyav", "opencv"

    def work_dir(self) -> Path:
        return Path(self.work) if self.work is not None else default_work_dir(Path(self.output))


@dataclass
class Progress:
    stage: str  # "detect", "invert" or "encode"
    done: int  # frames done in this stage
    total: int  # frames of this stage (an estimate while detecting)
    fraction: float  # of the whole job
    eta: float | None  # seconds left for the whole job (None: not known yet)
    message: str


@dataclass
class VideoReport:
    output: Path
    frames: int
    fps: Fraction
    duration: float
    edited: int  # frames with the face, edited
    no_face: int  # frames without the face, passed through unchanged
    detected: int  # frames searched for faces in this run
    inverted: int  # inversions computed in this run
    rendered: int  # edited frames computed in this run
    cached: int  # edited frames taken from the work folder
    encoder: str
    encoder_note: str | None
    audio: list[str]
    jitter_raw: float | None  # crop jitter without smoothing, pixels of the aligned crop
    jitter_smoothed: float | None  # with the smoothing used
    crop_size: int
    seconds: dict[str, float] = field(default_factory=dict)
    work_dir: Path | None = None  # kept work folder (None: removed)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"wrote {self.output}: {self.frames} frames at {float(self.fps):.6g} fps "
               f"({self.duration:.3f} s), video {self.encoder}; audio: {', '.join(self.audio) or 'none'}"]
        out.append(f"face: {self.edited} frames edited, {self.no_face} without the face (passed through unchanged)")
        out.append(f"work: {self.rendered} frames computed now ({self.inverted} inversions), {self.cached} taken from "
                   f"the work folder; {self.detected} frames searched for faces")
        if self.jitter_raw is not None and self.jitter_smoothed is not None:
            out.append(f"stability: crop jitter {self.jitter_smoothed:.2f} px with the smoothing used, "
                       f"{self.jitter_raw:.2f} px without (in the {self.crop_size} px aligned crop)")
        if self.seconds:
            out.append("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()))
        for n in ([self.encoder_note] if self.encoder_note else []) + self.notes:
            out.append(f"note: {n}")
        return out


def edits_identity(edits: Sequence[tuple[Direction, float]]) -> list:
    import hashlib

    out = []
    for d, v in sorted(edits, key=lambda e: e[0].name):
        if float(v) == 0:
            continue
        vec = d.vector.detach().float().cpu().contiguous().numpy().tobytes()
        out.append([d.name, float(v), d.kind, d.layer_start, d.layer_stop, hashlib.sha256(vec).hexdigest()[:16]])
    return out


def _face_from_row(row: dict) -> Face | None:
    if "points5" not in row:
        return None
    pts = np.array([[np.nan if v is None else v for v in p] for p in row["points5"]], dtype=np.float64)
    return Face(box=tuple(row["box"]), points5=pts)


class _Clock:
    """Seconds per frame of each stage as measured, for the time left."""

    def __init__(self) -> None:
        self.rate: dict[str, float] = {}
        self.started: dict[str, float] = {}

    def start(self, stage: str) -> None:
        self.started[stage] = time.perf_counter()

    def measure(self, stage: str, done: int) -> None:
        if done > 0 and stage in self.started:
            self.rate[stage] = (time.perf_counter() - self.started[stage]) / done

    def eta(self, stage: str, done: int, total: int, later: dict[str, int]) -> float | None:
        rate = self.rate.get(stage)
        if rate is None:
            return None
        left = max(0, total - done) * rate
        for s, units in later.items():
            r = self.rate.get(s)
            if r is None and s == "encode":
                r = self.rate.get("detect", 0.0)  # decoding dominates both
            if r is None:
                if units:
                    return None
                continue
            left += units * r
        return left


class VideoJob:
    """One clip to edit. ``run(engine)`` is a generator of :class:`Progress`; the report is in
    :attr:`report` when it ends (and is the generator's return value)."""

    def __init__(self, settings: VideoSettings):
        s = settings
        self.settings = s
        s.source, s.output = Path(s.source), Path(s.output)
        if not s.source.is_file():
            raise VideoError(f"clip not found: {s.source}")
        if s.output.suffix.lower() not in CONTAINERS:
            raise VideoError(f"the output must be one of {', '.join(CONTAINERS)}, not {s.output.name}")
        if s.output.resolve() == s.source.resolve():
            raise VideoError("the output would replace the input clip; choose another name")
        if s.output.exists() and not s.overwrite:
            raise VideoError(f"{s.output} exists (use --overwrite to replace it)")
        if s.batch_size < 1:
            raise VideoError("the batch size must be at least 1")
        if s.smooth < 0 or s.stabilize < 0:
            raise VideoError("--smooth and --stabilize must not be negative")
        if s.end is not None and s.end <= s.start:
            raise VideoError(f"the end ({s.end:g} s) must come after the start ({s.start:g} s)")
        self.report: VideoReport | None = None
        self.info: ClipInfo | None = None
        self.raw: dict[int, np.ndarray] = {}  # frame -> detected crop square [cx, cy, hx, hy]
        self.plan: dict[int, np.ndarray] = {}  # frame -> smoothed crop square used
        self.frames = 0
        self.tracks: list[dict] = []  # per frame: {"i", "pts", "t", "faces", and "box", "points5" of the face}
        self.notes: list[str] = []
        self.work: WorkFolder | None = None
        self.detected = self.inverted = self.rendered = self.cached = 0
        self.peak_buffer = 0  # most inversions held at once (bounded by the batch and the --smooth window)
        self.seconds: dict[str, float] = {}
        self._clock = _Clock()

    # ------------------------------------------------------------------ helpers

    def transform(self, index: int) -> AlignTransform | None:
        """The transform frame ``index``'s edited face is pasted back with (None: no face)."""
        p = self.plan.get(index)
        if p is None or self.info is None:
            return None
        return AlignTransform(quad_from_params(p), (self.info.width, self.info.height), self._resolution)

    def _note(self, text: str | None) -> None:
        if text and text not in self.notes:
            self.notes.append(text)

    def _estimate_frames(self, info: ClipInfo) -> int:
        s = self.settings
        if not s.start and s.end is None:
            return max(1, info.frames)
        end = info.duration if s.end is None or not info.duration else min(s.end, info.duration)
        return max(1, int(round((end - s.start) * float(info.fps))))

    def _progress(self, stage: str, done: int, total: int, units: dict[str, int]) -> Progress:
        self._clock.measure(stage, done)
        order = list(STAGES)
        later = {s: units.get(s, 0) for s in order[order.index(stage) + 1:]}
        eta = self._clock.eta(stage, done, total, later)
        weights = {s: units.get(s, 0) * self._clock.rate.get(s, STAGE_WEIGHTS[s]) for s in order}
        all_w = sum(weights.values()) or 1.0
        before = sum(weights[s] for s in order[: order.index(stage)])
        here = weights[stage] * (done / total if total else 1.0)
        fraction = min(1.0, (before + here) / all_w)
        msg = f"{STAGE_LABELS[stage]}: frame {done} of {total}"
        return Progress(stage, done, total, fraction, eta, msg)

    def _detect_settings(self, info: ClipInfo) -> dict:
        s = self.settings
        return {"source": file_identity(s.source), "start": s.start, "end": s.end, "face": s.face,
                "detector": s.detector, "decoder": info.backend, "version": 1}

    def _keys(self, engine: Any, info: ClipInfo) -> tuple[str, str, dict]:
        s = self.settings
        detect = self._detect_settings(info)
        files = getattr(engine, "files", None)
        models = {k: file_identity(v) for k, v in vars(files).items()} if files is not None else {}
        plan = getattr(engine, "plan", None)
        render = {"detect": digest(detect), "stabilize": s.stabilize, "smooth": s.smooth, "models": models,
                  "backend": s.backend, "iterations": s.iterations if s.backend == "hyperstyle" else None,
                  "precision": getattr(plan, "inversion", "float32"), "resolution": self._resolution,
                  "edits": edits_identity(s.edits), "version": 1}
        description = {"source": str(s.source), "output": str(s.output), "detect": detect,
                       "render": {k: v for k, v in render.items() if k != "detect"}}
        return digest(detect), digest(render), description

    # ------------------------------------------------------------------ the job

    def run(self, engine: Any, cancel: CancelToken | None = None) -> Generator[Progress, None, VideoReport]:
        """Do the job (or what is left of it), yielding progress; see the module description."""
        s = self.settings
        token = cancel or CancelToken()
        t_all = time.perf_counter()
        self.info = info = probe(s.source, s.decoder)
        if s.start and info.duration and s.start >= info.duration:
            raise VideoError(f"the start ({format_time(s.start)}) is past the end of the clip "
                             f"({format_time(info.duration)})")
        self._resolution = int(engine.resolution)
        detect_key, render_key, description = self._keys(engine, info)
        self.work = work = WorkFolder(s.work_dir(), detect_key, render_key, description)
        if work.discarded:
            self._note(f"{work.discarded} edited frames of other settings were removed from the work folder")

        estimate = self._estimate_frames(info)
        yield from self._detect(work, info, token, estimate)
        self._plan(info)
        yield from self._invert(engine, work, token)
        writer_info = yield from self._encode(work, info, token)
        encoder, encoder_note, audio = writer_info

        if not s.keep_work:
            work.remove()
        self.seconds["total"] = time.perf_counter() - t_all
        self.report = VideoReport(
            output=s.output, frames=self.frames, fps=info.fps, duration=self._duration(info),
            edited=len(self.plan), no_face=self.frames - len(self.plan), detected=self.detected,
            inverted=self.inverted, rendered=self.rendered, cached=self.cached, encoder=encoder,
            encoder_note=encoder_note, audio=audio, jitter_raw=crop_jitter(self.raw, self._resolution),
            jitter_smoothed=crop_jitter(self.plan, self._resolution), crop_size=self._resolution,
            seconds=dict(self.seconds), work_dir=work.root if s.keep_work else None, notes=list(self.notes))
        return self.report

    def analyse(self, resolution: int = 1024, cancel: CancelToken | None = None) -> Generator[Progress, None, None]:
        """Only find and follow the face and smooth the crop (no models needed): fills :attr:`raw` and
        :attr:`plan`. The detections stay in the work folder for the job itself."""
        s = self.settings
        self.info = info = probe(s.source, s.decoder)
        self._resolution = int(resolution)
        detect = self._detect_settings(info)
        work = WorkFolder(s.work_dir(), digest(detect), None, {"source": str(s.source), "detect": detect})
        yield from self._detect(work, info, cancel or CancelToken(), self._estimate_frames(info))
        self._plan(info)

    def _duration(self, info: ClipInfo) -> float:
        return self.frames / float(info.fps) if info.fps else 0.0

    # -- pass 1
    def _detect(self, work: WorkFolder, info: ClipInfo, token: CancelToken, estimate: int):
        s = self.settings
        t = time.perf_counter()
        rows = work.read_tracks()
        done_file = work.tracks_path.with_suffix(".done")
        if done_file.exists() and done_file.read_text().strip() == str(len(rows)):
            self.tracks = rows
            self.frames = len(rows)
            self.seconds["detect"] = 0.0
            return
        done_file.unlink(missing_ok=True)
        reference = None
        for row in rows:
            f = _face_from_row(row)
            if f is not None:
                reference = f
        tracker = FaceTracker(s.face, reference)
        total = max(estimate, len(rows))
        units = {"detect": total, "invert": total, "encode": total}
        self._clock.start("detect")
        detected_before = len(rows)
        with work.open_tracks() as out, Decoder(s.source, start=s.start, end=s.end, backend=s.decoder) as dec:
            n = 0
            for frame in dec.frames():
                token.raise_if_cancelled()
                n = frame.index + 1
                if frame.index < len(rows):
                    if rows[frame.index].get("pts") != frame.pts:
                        raise VideoError(f"the work folder {work.root} does not match {s.source.name} "
                                         "(frame times differ); delete it and start again")
                    continue
                found = detect_faces(frame.rgb, detector=s.detector, turns=False)
                if found.message:
                    self._note(found.message)
                pick = tracker.pick(found.faces)
                face = found.faces[pick] if pick is not None else None
                line = work.track_line(frame.index, frame.pts, frame.time, face, len(found.faces))
                out.write(line)
                out.flush()
                rows.append(json.loads(line))
                self.detected += 1
                total = max(total, n)
                yield self._progress("detect", frame.index + 1 - detected_before, total - detected_before,
                                     {**units, "detect": total - detected_before})
        if n != len(rows):
            raise VideoError(f"the clip has {n} frames now but {len(rows)} were read before; delete the work "
                             f"folder {work.root} and start again")
        if not rows:
            raise VideoError(f"{s.source.name} has no frames in the selected time range")
        done_file.write_text(str(len(rows)))
        self.tracks = rows
        self.frames = len(rows)
        self.seconds["detect"] = time.perf_counter() - t

    def _plan(self, info: ClipInfo) -> None:
        """The crop square of every frame with the face: detected, then smoothed over time."""
        w, h = info.width, info.height
        raw = {}
        for row in self.tracks:
            f = _face_from_row(row)
            if f is None:
                continue
            try:
                raw[row["i"]] = square_params(f.points5)
            except Exception:  # noqa: BLE001 - degenerate landmarks: treat as no face
                continue
        self.raw = raw
        plan = smooth_track(raw, self.settings.stabilize)
        kept = {}
        for i, p in plan.items():
            q = quad_from_params(p)
            side = 2 * math.hypot(p[2], p[3])
            if side < 8 or q[:, 0].max() < 0 or q[:, 1].max() < 0 or q[:, 0].min() >= w or q[:, 1].min() >= h:
                continue
            kept[i] = p
        if len(kept) < len(plan):
            self._note(f"{len(plan) - len(kept)} frames had a face too small or outside the picture; "
                       "they are passed through unchanged")
        self.plan = kept
        if not kept:
            self._note("the face was not found in any frame: the clip is copied unchanged")

    # -- pass 2
    def _invert(self, engine: Any, work: WorkFolder, token: CancelToken):
        s = self.settings
        t = time.perf_counter()
        plan = self.plan
        done = work.done_crops() & set(plan)
        todo = [i for i in sorted(plan) if i not in done]
        self.cached = len(done)
        if not todo:
            self.seconds["invert"] = 0.0
            return
        seg_of = {i: k for k, run in enumerate(segments(plan)) for i in run}
        radius = s.smooth // 2 if s.smooth > 1 else 0
        need = sorted({j for i in todo for j in window(i, radius, seg_of)})
        need_set, last = set(need), need[-1]
        pending = deque(todo)
        buffer: dict[int, InversionResult] = {}
        batch: list[tuple[int, np.ndarray]] = []
        units = {"invert": len(todo), "encode": self.frames}
        self._clock.start("invert")

        def flush():
            images = [c for _, c in batch]
            images += [images[-1]] * (s.batch_size - len(images))  # same batch shape every time
            results = engine.invert(np.stack(images), s.backend, iterations=s.iterations, cancel=token)
            self.inverted += len(batch)
            for (i, _), r in zip(batch, results):
                buffer[i] = r
            self.peak_buffer = max(self.peak_buffer, len(buffer))
            batch.clear()
            while pending:
                i = pending[0]
                win = window(i, radius, seg_of)
                if not all(j in buffer for j in win):
                    break
                token.raise_if_cancelled()
                work.write_crop(i, self._render(engine, buffer, i, win))
                self.rendered += 1
                pending.popleft()
                yield self._progress("invert", self.rendered, len(todo), units)
            keep_from = pending[0] - radius if pending else math.inf
            for j in [j for j in buffer if j < keep_from]:
                del buffer[j]

        with Decoder(s.source, start=s.start, end=s.end, backend=s.decoder) as dec:
            for frame in dec.frames():
                token.raise_if_cancelled()
                i = frame.index
                if i in need_set:
                    batch.append((i, render_aligned(frame.rgb, quad_from_params(plan[i]), self._resolution)))
                    if len(batch) == s.batch_size:
                        yield from flush()
                if i >= last:
                    break
            if batch:
                yield from flush()
        if pending:
            raise VideoError(f"frames {pending[0]}.. of {s.source.name} could not be read again; delete the work "
                             f"folder {work.root} and start again")
        self.seconds["invert"] = time.perf_counter() - t

    def _render(self, engine: Any, buffer: dict[int, InversionResult], i: int, win: list[int]) -> np.ndarray:
        edits = list(self.settings.edits)
        r = buffer[i]
        if len(win) == 1:
            return tensor_to_uint8(engine.render(r, edits, kind="exact"))
        # w and delta-theta averaged over the window (the frame's own Phase-I/II images are kept as is)
        w = sum(buffer[j].w for j in win) / len(win)
        deltas = WeightDeltas({k: sum(buffer[j].deltas[k] for j in win) / len(win) for k in r.deltas})
        avg = InversionResult(w, deltas, r.phase1, r.image, dict(r.metadata))
        return tensor_to_uint8(engine.render(avg, edits, w=apply_edits(w, edits).clone(), kind="exact"))

    # -- pass 3
    def _encode(self, work: WorkFolder, info: ClipInfo, token: CancelToken):
        s = self.settings
        t = time.perf_counter()
        units = {"encode": self.frames}
        self._clock.start("encode")
        missing = [i for i in self.plan if not work.has_crop(i)]
        if missing:
            raise VideoError(f"{len(missing)} edited frames are missing from the work folder {work.root}")
        with Decoder(s.source, start=s.start, end=s.end, audio=True, keep_source=True, backend=s.decoder) as dec:
            writer = ClipWriter(s.output, dec, info, codec=s.codec, crf=s.crf, pix_fmt=s.pix_fmt)
            try:
                for item in dec:
                    if isinstance(item, AudioPacket):
                        writer.add_audio(item)
                        continue
                    token.raise_if_cancelled()
                    tf = self.transform(item.index)
                    if tf is None:
                        writer.add_frame(item)
                    else:
                        writer.add_frame(item, paste_back(item.rgb, work.read_crop(item.index), tf))
                    yield self._progress("encode", writer.frames, self.frames, units)
                if writer.frames != self.frames:
                    raise VideoError(f"{s.source.name} gave {writer.frames} frames this time, {self.frames} before; "
                                     f"delete the work folder {work.root} and start again")
                writer.finish()
            except BaseException:
                writer.abort()
                raise
        self.seconds["encode"] = time.perf_counter() - t
        return writer.encoder.describe(), writer.encoder.note, list(writer.audio_notes)


def run_to_end(job: VideoJob, engine: Any, cancel: CancelToken | None = None, on_progress=None) -> VideoReport:
    """Run a job without a front end (tests, scripts): progress goes to ``on_progress``."""
    for p in job.run(engine, cancel):
        if on_progress is not None:
            on_progress(p)
    assert job.report is not None
    return job.report


# ---------------------------------------------------------------------------------- previews


@dataclass
class FramePreview:
    """One frame at the playhead, inverted: what the Video tab shows before and after the edit."""

    time: float
    rgb: np.ndarray  # the upright frame
    faces: list = field(default_factory=list)
    face_index: int = 0
    transform: AlignTransform | None = None
    result: InversionResult | None = None
    message: str | None = None  # why there is no face
    detector: str = ""  # the landmark source that found the faces
    note: str | None = None  # about the landmark source (why a fallback was used)


def prepare_preview(engine: Any, rgb: np.ndarray, t: float, *, face: int = 0, detector: str = "auto",
                    backend: str = "hyperinverter", iterations: int = 5,
                    cancel: CancelToken | None = None) -> FramePreview:
    """Detect, align (this frame alone: no smoothing) and invert the frame at the playhead."""
    from hyperinverter_gui.alignment import align_face

    token = cancel or CancelToken()
    found = detect_faces(rgb, detector=detector, turns=False)
    prev = FramePreview(t, rgb, list(found.faces), detector=found.detector, note=found.message)
    if not found.faces:
        prev.message = "no face in this frame: it is passed through unchanged"
        return prev
    index = face if 0 <= face < len(found.faces) else 0
    prev.face_index = index
    token.raise_if_cancelled()
    aligned = align_face(rgb, found.faces[index], output_size=int(engine.resolution))
    prev.transform = aligned.transform
    prev.result = engine.invert(aligned.image, backend, iterations=iterations, cancel=token)[0]
    return prev


def render_preview(engine: Any, prev: FramePreview, edits: Sequence[tuple[Direction, float]],
                   kind: str = "frame") -> np.ndarray:
    """The frame with the edited face pasted back (the frame itself when it has no face)."""
    if prev.result is None or prev.transform is None:
        return prev.rgb
    edited = tensor_to_uint8(engine.render(prev.result, list(edits), kind=kind))
    return paste_back(prev.rgb, edited, prev.transform)
