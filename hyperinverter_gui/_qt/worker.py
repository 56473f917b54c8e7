"""The engine worker: owns the models and runs every computation on its own QThread.

The GUI talks to it only through queued signals; results come back as signals
tagged with the job id they answer, so the GUI can drop anything stale.
Cancellation is a flag the worker checks between stages.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PySide6.QtCore import QObject, Signal, Slot

from ..errors import HyperInverterError
from ..imageio import tensor_to_uint8
from ..inversion import InversionResult, WeightDeltas

if TYPE_CHECKING:
    from ..fast_render import PrecisionPlan

log = logging.getLogger(__name__)


class Cancelled(Exception):
    pass


@dataclass
class ModelRequest:
    generator: Path
    checkpoint: Path | None
    device: str = "auto"
    hyperstyle: Path | None = None  # optional second backend
    hyperstyle_w_encoder: Path | None = None
    precision: str = "auto"  # "auto", "float32" or "bfloat16" for interactive frames and inversion


@dataclass
class InvertRequest:
    aligned: np.ndarray  # uint8 HxWx3 at the generator's resolution
    backend: str = "hyperinverter"  # or "hyperstyle"
    iterations: int = 5


@dataclass
class AlignRequest:
    path: Path | None  # photo to open (None: re-align the current rgb with new points)
    rgb: np.ndarray | None = None
    points5: np.ndarray | None = None
    face_index: int = 0


@dataclass
class RenderRequest:
    token: Any  # the slider state this render shows (echoed back)
    w: torch.Tensor  # [num_ws, 512]
    deltas: WeightDeltas | None
    preview: int | None = None  # stop the synthesis at this resolution while dragging
    backend: str = "hyperinverter"  # whose generator renders it
    meta: dict = field(default_factory=dict)


def _no_face_message(found) -> str:
    from ..alignment.detect import no_face_error

    return str(no_face_error(found))


def default_points(width: int, height: int) -> np.ndarray:
    """Five points of a typical frontal face in the middle of a photo, for placing by hand."""
    s = 0.18 * min(width, height)
    cx, cy = width / 2, height / 2
    return np.array([(cx - s, cy - 0.3 * s), (cx + s, cy - 0.3 * s), (cx, cy + 0.35 * s),
                     (cx - 0.75 * s, cy + s), (cx + 0.75 * s, cy + s)], dtype=np.float64)


class EngineWorker(QObject):
    modelsLoaded = Signal(object)  # dict: generator, checkpoint, device, resolution, num_ws
    modelsFailed = Signal(str)
    progress = Signal(int, str, int)  # job, stage, percent
    aligned = Signal(int, object)  # job, dict
    phase1Ready = Signal(int, object)  # job, uint8 image
    stepReady = Signal(int, int, int, object)  # job, step, of steps, uint8 image (HyperStyle refinement)
    inverted = Signal(int, object)  # job, InversionResult on CPU
    rendered = Signal(object, object, float)  # token, uint8 image, milliseconds
    failed = Signal(int, str)  # job (-1 for renders), message
    cancelled = Signal(int)
    notice = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        from ..allocator import keep_freed_memory

        keep_freed_memory()  # frames and inversions reuse freed activations (idempotent)
        self.model = None
        self.generator = None
        self.hs_model = None
        self.device = torch.device("cpu")
        self._cancel_job = -1
        # Interactive frames: prepared renderers (one per precision in use) of one (generator,
        # deltas) at a time; see fast_render.
        self.frame_precision = "float32"  # frames after a slider is released
        self.preview_precision = "float32"  # frames while a slider is dragged
        self.inversion_precision = "float32"
        self._drop_renderers()

    def set_precision(self, setting: "str | PrecisionPlan") -> None:
        """The Precision setting: "auto" (exact, bfloat16 previews where native), "float32", "bfloat16",
        or a :class:`~hyperinverter_gui.fast_render.PrecisionPlan` of its own."""
        from ..fast_render import PrecisionPlan, precision_plan

        plan = setting if isinstance(setting, PrecisionPlan) else precision_plan(setting, self.device)
        self.frame_precision, self.preview_precision, self.inversion_precision = plan.frames, plan.previews, \
            plan.inversion
        self._drop_renderers()

    def _drop_renderers(self) -> None:
        self._renderers: dict[str, Any] = {}  # precision -> EditRenderer of _renderer_key
        self._renderer_key: tuple | None = None
        self._renderer_deltas = None  # keeps the id in the key stable while the renderers live

    # Called from the GUI thread: a plain attribute write, read between stages.
    def request_cancel(self, job: int) -> None:
        self._cancel_job = job

    def _check(self, job: int) -> None:
        if self._cancel_job == job:
            raise Cancelled()

    # --- models ----------------------------------------------------------------

    @Slot(object)
    def load_models(self, req: "ModelRequest") -> None:
        self._drop_renderers()
        self._load_models(req)

    def _load_models(self, req: "ModelRequest") -> None:
        from ..device import resolve_device
        from ..model_cache import load_generator_cached, load_hyperinverter_cached
        from ..weights import cache_dir

        try:
            t = time.perf_counter()
            self.device = resolve_device(req.device)
            self.set_precision(req.precision)
            cache = cache_dir()
            self.generator = load_generator_cached(req.generator, cache).to(self.device)
            self.model = None
            if req.checkpoint is not None:
                self.model = load_hyperinverter_cached(req.checkpoint, self.generator, None, cache).to(self.device)
            self.hs_model, hs_problem = None, None
            if req.hyperstyle is not None and req.hyperstyle_w_encoder is not None:
                from ..hyperstyle import load_hyperstyle

                try:
                    self.hs_model = load_hyperstyle(req.hyperstyle, req.hyperstyle_w_encoder).to(self.device)
                    if self.hs_model.generator.img_resolution != self.generator.img_resolution:
                        hs_problem = "the HyperStyle model is for another resolution than the generator"
                        self.hs_model = None
                except HyperInverterError as e:
                    hs_problem = f"HyperStyle is unavailable: {e}"
                if hs_problem:
                    self.notice.emit(hs_problem)
            self.modelsLoaded.emit({
                "precision": self.frame_precision,
                "preview_precision": self.preview_precision,
                "hyperstyle": self.hs_model is not None,
                "generator": req.generator.name,
                "checkpoint": req.checkpoint.name if req.checkpoint else None,
                "device": str(self.device),
                "resolution": self.generator.img_resolution,
                "num_ws": self.generator.num_ws,
                "seconds": time.perf_counter() - t,
            })
        except HyperInverterError as e:
            self.modelsFailed.emit(str(e))
        except Exception as e:  # noqa: BLE001 - reported, never a crash
            log.exception("model loading failed")
            self.modelsFailed.emit(f"could not load the models: {type(e).__name__}: {e}")

    # --- alignment ---------------------------------------------------------------

    @Slot(int, object)
    def align(self, job: int, req: AlignRequest) -> None:
        from ..alignment import align_face, detect_faces, face_from_points, load_photo

        try:
            out: dict[str, Any] = {}
            rgb = req.rgb
            if req.path is not None:
                self.progress.emit(job, "Opening photo", 2)
                photo = load_photo(req.path)
                rgb = photo.rgb
                out["rgb"] = rgb
            assert rgb is not None
            self._check(job)
            if req.points5 is None:
                self.progress.emit(job, "Finding the face", 5)
                found = detect_faces(rgb)
                out.update(faces=found.faces, detector=found.detector, message=found.message)
                if not found.faces:
                    # Show the photo anyway: the user can place the points by hand.
                    out["no_face"] = _no_face_message(found)
                    self.aligned.emit(job, out)
                    return
                face = found.face(req.face_index)
                out["face_index"] = req.face_index
            else:
                face = face_from_points(req.points5, (rgb.shape[1], rgb.shape[0]))
            self._check(job)
            self.progress.emit(job, "Aligning", 10)
            res = self.generator.img_resolution if self.generator is not None else 1024
            aligned = align_face(rgb, face, output_size=res)
            out.update(aligned=aligned.image, transform=aligned.transform, points5=np.asarray(face.points5))
            self.aligned.emit(job, out)
        except Cancelled:
            self.cancelled.emit(job)
        except HyperInverterError as e:
            self.failed.emit(job, str(e))
        except Exception as e:  # noqa: BLE001
            log.exception("alignment failed")
            self.failed.emit(job, f"alignment failed: {type(e).__name__}: {e}")

    # --- inversion ---------------------------------------------------------------

    @Slot(int, object)
    def invert(self, job: int, req: "InvertRequest | np.ndarray") -> None:
        if not isinstance(req, InvertRequest):
            req = InvertRequest(req)
        run = self._invert_hyperstyle if req.backend == "hyperstyle" else self._invert
        try:
            run(job, req)
        except Cancelled:
            self.cancelled.emit(job)
        except torch.cuda.OutOfMemoryError:
            log.warning("GPU out of memory; retrying on CPU")
            self.notice.emit("The GPU ran out of memory: continuing on the CPU.")
            try:
                self._to_cpu()
                run(job, req)
            except Cancelled:
                self.cancelled.emit(job)
            except Exception as e:  # noqa: BLE001
                self.failed.emit(job, f"inversion failed: {e}")
        except HyperInverterError as e:
            self.failed.emit(job, str(e))
        except Exception as e:  # noqa: BLE001
            log.error("inversion failed\n%s", traceback.format_exc())
            self.failed.emit(job, f"inversion failed: {type(e).__name__}: {e}")

    @torch.no_grad()
    def _invert_hyperstyle(self, job: int, req: InvertRequest) -> None:
        from ..hyperstyle import invert_hyperstyle

        if self.hs_model is None:
            raise HyperInverterError("HyperStyle is not loaded: put hyperstyle_ffhq.pt and faces_w_encoder.pt in "
                                     "the weights folder (`hyperinverter weights download hyperstyle-ffhq "
                                     "hyperstyle-faces-w-encoder`)")
        x = torch.from_numpy(np.array(req.aligned, dtype=np.uint8, copy=True)).permute(2, 0, 1).float()
        x = (x / 127.5 - 1).unsqueeze(0).to(self.device)
        self.progress.emit(job, "HyperStyle: initial code", 10)
        self._check(job)

        def on_step(step: int, images: torch.Tensor) -> None:
            self.stepReady.emit(job, step, req.iterations, tensor_to_uint8(images[0]))
            self.progress.emit(job, f"HyperStyle: refinement {step}/{req.iterations}",
                               10 + int(85 * step / req.iterations))
            self._check(job)  # cancelling stops between refinement steps

        result = invert_hyperstyle(self.hs_model, x, req.iterations, on_step)[0]
        result = InversionResult(result.w.cpu(), result.deltas.to("cpu"), result.phase1.cpu(), result.image.cpu(),
                                 result.metadata)
        self.phase1Ready.emit(job, tensor_to_uint8(result.phase1))
        self.progress.emit(job, "Done", 100)
        self.inverted.emit(job, result)

    def _to_cpu(self) -> None:
        self.device = torch.device("cpu")
        self._drop_renderers()
        if self.hs_model is not None:
            self.hs_model = self.hs_model.cpu()
        if self.model is not None:
            self.model = self.model.cpu()
            self.generator = self.model.generator
        elif self.generator is not None:
            self.generator = self.generator.cpu()

    @torch.no_grad()
    def _invert(self, job: int, req: InvertRequest) -> None:
        aligned_rgb = req.aligned
        from ..fast_inversion import fast_inverter

        if self.model is None:
            raise HyperInverterError("no HyperInverter checkpoint is loaded: see the model panel")
        inv = fast_inverter(self.model, self.inversion_precision)
        inv.release_weights = True  # memory: encoders' pages go back to the OS after their stage
        # Memory: the previous photo's renderer is not needed any more (its freed blocks stay in
        # the process, see allocator.keep_freed_memory, and this inversion reuses them).
        self._drop_renderers()
        x = torch.from_numpy(np.array(aligned_rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div(127.5).sub(1)
        x = x.unsqueeze(0).to(self.device)
        self._check(job)
        self.progress.emit(job, "Phase I: encoding", 15)
        x256 = inv.prepare_input(x)
        ws = inv.encode_w(x256)
        self._check(job)
        self.progress.emit(job, "Phase I: synthesis", 30)
        phase1 = inv.phase1(ws)
        # The theta renderer stays prepared for the next photo (about 80 MB; rebuilding it cost 0.12 s).
        self.phase1Ready.emit(job, tensor_to_uint8(phase1[0]))
        self._check(job)
        self.progress.emit(job, "Phase II: encoding the photo and the Phase-I image", 50)
        image_features, photo_features = inv.encode_pair(x256, phase1)
        self._check(job)
        self.progress.emit(job, "Phase II: hypernetwork", 75)
        deltas = inv.hypernet(image_features, photo_features)
        self._check(job)
        self.progress.emit(job, "Phase II: synthesis", 85)
        final, renderers = inv.phase2(ws, deltas)
        self._check(job)
        result = InversionResult(
            ws[0].float().cpu(), WeightDeltas({k: v[0].float().cpu() for k, v in deltas.items()}),
            phase1[0].float().cpu(), final[0].float().cpu(),
            {"precision": self.inversion_precision} if self.inversion_precision != "float32" else {},
        )
        if renderers and self.frame_precision == self.inversion_precision:
            # The first slider release renders with the renderer Phase II just prepared.
            self._renderers = {self.frame_precision: renderers[0]}
            self._renderer_key = (id(self.model.generator), id(result.deltas))
            self._renderer_deltas = result.deltas
        self.progress.emit(job, "Done", 100)
        self.inverted.emit(job, result)

    # --- rendering ---------------------------------------------------------------

    def _frame(self, generator, req: RenderRequest) -> torch.Tensor:
        """One frame: edits of one image reuse a prepared renderer; other frames use plain synthesis."""
        from ..fast_render import EditRenderer

        if req.meta.get("one_off"):
            deltas = None if req.deltas is None else {k: v.to(self.device).unsqueeze(0)
                                                      for k, v in req.deltas.items()}
            return generator.synthesis(req.w.to(self.device).unsqueeze(0), deltas, max_resolution=req.preview)[0]
        key = (id(generator), id(req.deltas))
        if self._renderer_key != key:
            self._drop_renderers()
            self._renderer_key, self._renderer_deltas = key, req.deltas
        precision = self.preview_precision if req.preview else self.frame_precision
        renderer = self._renderers.get(precision)
        if renderer is None:
            deltas = None if req.deltas is None else req.deltas.to(self.device)
            renderer = self._renderers[precision] = EditRenderer(generator, deltas, precision=precision)
        return renderer.render(req.w.to(self.device), max_resolution=req.preview)

    @Slot(object)
    def render(self, req: RenderRequest) -> None:
        try:
            generator = self.generator
            if req.backend == "hyperstyle":
                generator = self.hs_model.generator if self.hs_model is not None else None
            if generator is None:
                raise HyperInverterError("no generator is loaded")
            t = time.perf_counter()
            with torch.no_grad():
                img = self._frame(generator, req)
            self.rendered.emit(req.token, tensor_to_uint8(img), (time.perf_counter() - t) * 1000)
        except Exception as e:  # noqa: BLE001
            log.exception("render failed")
            self.failed.emit(-1, f"could not render: {e}")
            self.rendered.emit(req.token, None, 0.0)
