"""The Engine: the one service that owns the models and the device and does the model work.

Every front end calls it: the command line directly, the editor through a job queue
(``app.jobs`` and the Qt adapter), and the batch and video tools to come. Inversion runs the
staged HyperInverter inverter (``inverter.FastInverter``) or the HyperStyle backend; every
frame, whatever asked for it (a slider, an export, the CLI, an interpolation), is drawn by the
one production renderer, ``renderer.EditRenderer``. ``reference`` keeps the readable forward
passes the tests compare against.

Threading contract: an Engine is not thread-safe. One thread runs its calls (the editor's
engine thread, the CLI's main thread); other threads submit jobs and receive results and
progress through callbacks. A call made while another thread is inside the engine raises
:class:`EngineBusyError` instead of corrupting state. Cancellation is per call: pass a
:class:`~hyperinverter_gui.engine.cancel.CancelToken`; it is checked between stages.

Results (:class:`InversionResult`) and frames come back as float32 tensors on the CPU, images in
[-1, 1]; what runs on the device stays inside.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hyperinverter_gui.editing.edits import Direction, apply_edits
from hyperinverter_gui.editing.edits import interpolate as blend
from hyperinverter_gui.engine.cancel import CancelToken
from hyperinverter_gui.engine.device import resolve_device
from hyperinverter_gui.engine.inverter import FastInverter
from hyperinverter_gui.engine.renderer import EditRenderer, PrecisionPlan, precision_plan
from hyperinverter_gui.errors import HyperInverterError, ModelMismatchError
from hyperinverter_gui.inversion.result import InversionResult, WeightDeltas

log = logging.getLogger(__name__)

BACKENDS = ("hyperinverter", "hyperstyle")
# What a frame is for decides its precision (see renderer.PrecisionPlan): "frame" is a full
# frame on screen, "preview" one while a slider is dragged, "exact" anything written to a file.
FRAME_KINDS = ("frame", "preview", "exact")
# The inverter's stages, with what the user is told and how far along the inversion is.
STAGES = {
    "resize": ("Preparing the photo", 0.10),
    "encode_w": ("Phase I: encoding", 0.15),
    "phase1": ("Phase I: synthesis", 0.30),
    "encode_pair": ("Phase II: encoding the photo and the Phase-I image", 0.50),
    "hypernet": ("Phase II: hypernetwork", 0.75),
    "phase2": ("Phase II: synthesis", 0.85),
}
_DEFAULT_CACHE = object()

StageCallback = Callable[[str, float], None]  # (what runs now, fraction done)
ImageCallback = Callable[[str, torch.Tensor], None]  # (what it is: "phase1", "step 2/5", image [3,R,R])


class EngineBusyError(HyperInverterError):
    """Two threads used one engine at once (a bug in the caller: see the threading contract)."""


class ModelMissingError(HyperInverterError):
    """The work needs a model file that was not given."""


@dataclass(frozen=True)
class ModelFiles:
    """The model files an engine works with (None: not available)."""

    generator: Path | None = None  # StyleGAN2 generator (any supported format)
    inverter: Path | None = None  # HyperInverter checkpoint
    w_encoder: Path | None = None  # separate pSp W encoder (optional: checkpoints carry E1)
    hyperstyle: Path | None = None  # HyperStyle checkpoint (carries its own generator)
    hyperstyle_w_encoder: Path | None = None  # HyperStyle's W encoder


@dataclass(frozen=True)
class EngineInfo:
    """What is loaded, for the status bar and the log."""

    generator: str
    checkpoint: str | None
    device: str
    resolution: int
    num_ws: int
    hyperstyle: bool
    plan: PrecisionPlan
    seconds: float
    notices: tuple[str, ...] = field(default_factory=tuple)


def is_out_of_memory(e: BaseException) -> bool:
    """A device or host allocation failed (CUDA raises OutOfMemoryError; the CPU allocator a RuntimeError)."""
    if isinstance(e, torch.OutOfMemoryError):
        return True
    return isinstance(e, RuntimeError) and ("DefaultCPUAllocator" in str(e) or "out of memory" in str(e))


def image_batch(images: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> torch.Tensor:
    """Photos as the networks take them: [N, 3, H, W] float32 in [-1, 1].

    Accepts uint8 arrays [H, W, 3] / [N, H, W, 3] (a list of them too) or float tensors
    [3, H, W] / [N, 3, H, W] already in [-1, 1].
    """
    if isinstance(images, (list, tuple)):
        images = np.stack([np.asarray(i) for i in images])
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.shape[-1] != 3 or images.ndim not in (3, 4):
            raise ValueError(f"photos must be uint8 [N,H,W,3], got {images.dtype} {list(images.shape)}")
        x = torch.from_numpy(np.array(images, dtype=np.uint8, copy=True)).float().div(127.5).sub(1)
        x = x.permute(0, 3, 1, 2) if x.ndim == 4 else x.permute(2, 0, 1).unsqueeze(0)
        return x.contiguous()
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"photos must be an array or a tensor, got {type(images).__name__}")
    x = images.unsqueeze(0) if images.ndim == 3 else images
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"photos must be [N,3,H,W], got {list(images.shape)}")
    return x.float()


class Engine:
    """Loads models once and inverts, renders and interpolates with them.

    Args:
        device: "auto" (CUDA when available), "cpu" or "cuda[:N]".
        precision: the Precision setting ("auto", "float32", "bfloat16"); see
            :func:`~hyperinverter_gui.engine.renderer.precision_plan`. Frames of kind "exact" are
            always float32.
        cache: folder of the converted-model cache; None disables it; default: the per-user cache.
        release_weights: hand the encoders' memory-mapped pages back to the OS after each stage
            (lower peak memory for an interactive session; a batch keeps them for speed).
        on_notice: called with a sentence when something the user should know happened
            (e.g. the GPU ran out of memory and work continues on the CPU).
    """

    def __init__(
        self,
        device: str = "auto",
        precision: str = "auto",
        *,
        cache: Any = _DEFAULT_CACHE,
        release_weights: bool = True,
        on_notice: Callable[[str], None] | None = None,
    ):
        from hyperinverter_gui.host.allocator import keep_freed_memory

        # Before any frame: freed activations stay in the process, so frames and inversions reuse
        # them instead of page-faulting fresh memory each time (idempotent; host/allocator.py).
        keep_freed_memory()
        if cache is _DEFAULT_CACHE:
            from hyperinverter_gui.host.paths import model_cache_dir

            cache = model_cache_dir()
        self.cache: Path | None = cache
        self.device = resolve_device(device)
        self.precision_setting = precision
        self.plan = precision_plan(precision, self.device)
        self.release_weights = release_weights
        self.on_notice = on_notice or (lambda message: None)
        self.files = ModelFiles()
        self._generator = None
        self._inverter = None
        self._hyperstyle = None
        self._inverters: dict[str, FastInverter] = {}
        self._renderer_owner: weakref.ref | None = None
        self._renderers: dict[str, EditRenderer] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ threading

    @contextmanager
    def _exclusive(self):
        if not self._lock.acquire(blocking=False):
            raise EngineBusyError("the engine is already running a call on another thread")
        try:
            yield
        finally:
            self._lock.release()

    # ------------------------------------------------------------------ settings and models

    def set_precision(self, setting: str | PrecisionPlan) -> PrecisionPlan:
        """The Precision setting ("auto", "float32", "bfloat16") or a plan of its own."""
        with self._exclusive():
            self.plan = setting if isinstance(setting, PrecisionPlan) else precision_plan(setting, self.device)
            if not isinstance(setting, PrecisionPlan):
                self.precision_setting = setting
            self._drop_renderers()
            return self.plan

    def set_device(self, name: str) -> torch.device:
        """Move to another device ("auto", "cpu", "cuda[:N]"); loaded networks follow."""
        with self._exclusive():
            device = resolve_device(name)
            if device != self.device:
                self._move_to(device)
                self.plan = precision_plan(self.precision_setting, self.device)
            return self.device

    @property
    def has_generator(self) -> bool:
        return self.files.generator is not None or self.files.hyperstyle is not None

    def load(self, files: ModelFiles, *, eager: bool = True) -> EngineInfo:
        """Use these model files. ``eager`` loads them now (errors surface here); otherwise each
        network is loaded when first needed (the CLI edits a saved inversion with the generator only)."""
        with self._exclusive():
            t = time.perf_counter()
            self.files = files
            self._generator = self._inverter = self._hyperstyle = None
            self._inverters.clear()
            self._drop_renderers()
            notices: list[str] = []
            if eager:
                self._main_generator()
                if files.inverter is not None:
                    self._inverter_model()
                if files.hyperstyle is not None and files.hyperstyle_w_encoder is not None:
                    try:
                        hs = self._hyperstyle_model()
                        if hs.generator.img_resolution != self._main_generator().img_resolution:
                            self._hyperstyle = None
                            notices.append("HyperStyle is unavailable: its model is for another resolution than "
                                           "the generator")
                    except HyperInverterError as e:
                        self._hyperstyle = None
                        notices.append(f"HyperStyle is unavailable: {e}")
            for n in notices:
                self.on_notice(n)
            return self._info(time.perf_counter() - t, tuple(notices))

    def _info(self, seconds: float = 0.0, notices: tuple[str, ...] = ()) -> EngineInfo:
        g = self._main_generator()
        f = self.files
        return EngineInfo(
            generator=(f.generator or f.hyperstyle or Path("?")).name,
            checkpoint=f.inverter.name if f.inverter is not None else None,
            device=str(self.device), resolution=g.img_resolution, num_ws=g.num_ws,
            hyperstyle=self._hyperstyle is not None, plan=self.plan, seconds=seconds, notices=notices,
        )

    @property
    def resolution(self) -> int:
        return self._main_generator().img_resolution

    def generator(self, backend: str = "hyperinverter"):
        """The generator that renders results of ``backend`` (HyperStyle files carry their own)."""
        if backend == "hyperstyle":
            return self._hyperstyle_model().generator
        return self._main_generator()

    def _main_generator(self):
        if self._generator is None:
            if self.files.generator is not None:
                from hyperinverter_gui.catalog.cache import load_generator_cached

                self._generator = load_generator_cached(self.files.generator, self.cache).to(self.device)
            elif self.files.hyperstyle is not None:
                return self._hyperstyle_model().generator
            else:
                raise ModelMissingError("no StyleGAN2 generator is loaded: see `hyperinverter weights list`")
        return self._generator

    def _inverter_model(self):
        if self._inverter is None:
            if self.files.inverter is None:
                raise ModelMissingError("no HyperInverter checkpoint is loaded: see `hyperinverter weights list`")
            from hyperinverter_gui.catalog.cache import load_hyperinverter_cached

            self._inverter = load_hyperinverter_cached(
                self.files.inverter, self._main_generator(), self.files.w_encoder, self.cache
            ).to(self.device)
        return self._inverter

    def _hyperstyle_model(self):
        if self._hyperstyle is None:
            if self.files.hyperstyle is None or self.files.hyperstyle_w_encoder is None:
                raise ModelMissingError(
                    "HyperStyle is not loaded: put hyperstyle_ffhq.pt and faces_w_encoder.pt in the weights folder "
                    "(`hyperinverter weights download hyperstyle-ffhq hyperstyle-faces-w-encoder`)")
            from hyperinverter_gui.formats.hyperstyle_files import load_hyperstyle

            self._hyperstyle = load_hyperstyle(self.files.hyperstyle, self.files.hyperstyle_w_encoder).to(self.device)
        return self._hyperstyle

    def check_fits(self, result: InversionResult, source: str) -> None:
        """Refuse a saved inversion that another generator made (shapes of w and of every delta)."""
        with self._exclusive():
            g = self.generator(result.metadata.get("backend", "hyperinverter"))
            shapes = g.synthesis.weight_shapes()
            if tuple(result.w.shape) != (g.num_ws, g.w_dim):
                raise ModelMismatchError(f"{source} holds w of shape {list(result.w.shape)}; this generator needs "
                                         f"[{g.num_ws}, {g.w_dim}]")
            for k, v in result.deltas.items():
                if k not in shapes or tuple(v.shape) != tuple(shapes[k]):
                    raise ModelMismatchError(f"{source}: delta for {k} does not fit this generator")

    # ------------------------------------------------------------------ memory and devices

    def _drop_renderers(self) -> None:
        self._renderer_owner = None
        self._renderers = {}

    def _move_to(self, device: torch.device) -> None:
        self.device = device
        self._inverters.clear()
        self._drop_renderers()
        for name in ("_generator", "_inverter", "_hyperstyle"):
            m = getattr(self, name)
            if m is not None:
                setattr(self, name, m.to(device))
        if self._inverter is not None and self._generator is not None:
            self._generator = self._inverter.generator  # the checkpoint's networks share the generator

    def _with_fallback(self, run: Callable[[], Any]) -> Any:
        """Run ``run``; when memory runs out, free what can be rebuilt (and leave a GPU for the CPU), once."""
        try:
            return run()
        except (torch.OutOfMemoryError, RuntimeError) as e:
            if not is_out_of_memory(e):
                raise
            where = str(self.device)
            log.warning("out of memory on %s: %s", where, str(e).splitlines()[0])
        self._inverters.clear()
        self._drop_renderers()
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            self._move_to(torch.device("cpu"))
            self.plan = precision_plan(self.precision_setting, self.device)
            self.on_notice("The GPU ran out of memory: continuing on the CPU.")
        else:
            self.on_notice("Memory ran short: the renderer caches were freed and the work was retried.")
        try:
            return run()
        except (torch.OutOfMemoryError, RuntimeError) as e:
            if not is_out_of_memory(e):
                raise
            raise HyperInverterError(f"out of memory on {self.device} even after freeing the caches: use a smaller "
                                     "batch, a lower resolution, or close other programs") from None

    # ------------------------------------------------------------------ inversion

    def invert(
        self,
        images: np.ndarray | torch.Tensor | Sequence[np.ndarray],
        backend: str = "hyperinverter",
        *,
        iterations: int = 5,
        on_stage: StageCallback | None = None,
        on_image: ImageCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> list[InversionResult]:
        """Invert aligned photos (see :func:`image_batch` for the forms accepted).

        ``on_stage(label, fraction)`` is called before each stage, ``on_image(kind, image)`` with
        the Phase-I image ("phase1") and each HyperStyle refinement ("step k/n") of the first
        photo as soon as it exists. ``cancel`` is checked between stages
        (:class:`~hyperinverter_gui.engine.cancel.Cancelled` is raised).
        """
        if backend not in BACKENDS:
            raise HyperInverterError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        x = image_batch(images)
        token = cancel or CancelToken()
        stage = on_stage or (lambda label, fraction: None)
        with self._exclusive(), torch.no_grad():
            token.raise_if_cancelled()
            if backend == "hyperstyle":
                return self._with_fallback(lambda: self._invert_hyperstyle(x, iterations, stage, on_image, token))
            return self._with_fallback(lambda: self._invert_hyperinverter(x, stage, on_image, token))

    def _fast_inverter(self) -> FastInverter:
        key = self.plan.inversion
        inv = self._inverters.get(key)
        if inv is None:
            inv = self._inverters[key] = FastInverter(self._inverter_model(), key,
                                                      release_weights=self.release_weights)
        return inv

    def _invert_hyperinverter(self, x: torch.Tensor, stage: StageCallback, on_image: ImageCallback | None,
                              token: CancelToken) -> list[InversionResult]:
        inv = self._fast_inverter()
        # Memory: the previous photo's renderers are not needed any more; this inversion reuses their blocks.
        self._drop_renderers()

        def step(name: str) -> None:
            token.raise_if_cancelled()
            stage(*STAGES[name])

        def phase1_ready(images: torch.Tensor) -> None:
            if on_image is not None:
                on_image("phase1", images[0].float().cpu())

        single = x.shape[0] == 1
        out = inv.invert(x.to(self.device), on_stage=step, keep_renderers=single, on_phase1=phase1_ready)
        token.raise_if_cancelled()
        fast_results = out.results if single else out
        meta = {"precision": self.plan.inversion} if self.plan.inversion != "float32" else {}
        results = [
            InversionResult(r.w.float().cpu(), WeightDeltas({k: v.float().cpu() for k, v in r.deltas.items()}),
                            r.phase1.float().cpu(), r.image.float().cpu(), dict(meta))
            for r in fast_results
        ]
        if single and self.plan.frames == self.plan.inversion:
            # The first full frame of the edits to come reuses the renderer Phase II just prepared.
            self._renderer_owner = weakref.ref(results[0])
            self._renderers = {self.plan.frames: out.renderers[0]}
        stage("Done", 1.0)
        return results

    def _invert_hyperstyle(self, x: torch.Tensor, iterations: int, stage: StageCallback,
                           on_image: ImageCallback | None, token: CancelToken) -> list[InversionResult]:
        from hyperinverter_gui.engine.hyperstyle import check_iterations, invert_hyperstyle

        iterations = check_iterations(iterations)
        model = self._hyperstyle_model()
        self._drop_renderers()
        stage("HyperStyle: initial code", 0.10)

        def on_step(k: int, images: torch.Tensor) -> None:
            if on_image is not None:
                on_image(f"step {k}/{iterations}", images[0].float().cpu())
            stage(f"HyperStyle: refinement {k}/{iterations}", 0.10 + 0.85 * k / iterations)
            token.raise_if_cancelled()  # cancelling stops between refinement steps

        results = invert_hyperstyle(model, x.to(self.device), iterations, on_step)
        results = [InversionResult(r.w.cpu(), r.deltas.to("cpu"), r.phase1.cpu(), r.image.cpu(), dict(r.metadata))
                   for r in results]
        stage("Done", 1.0)
        return results

    # ------------------------------------------------------------------ frames

    def _dtype_for(self, kind: str) -> str:
        if kind not in FRAME_KINDS:
            raise ValueError(f"frame kind must be one of {FRAME_KINDS}, got {kind!r}")
        return {"frame": self.plan.frames, "preview": self.plan.previews, "exact": "float32"}[kind]

    def _renderer(self, owner: object, backend: str, deltas: WeightDeltas | None, precision: str) -> EditRenderer:
        """The prepared renderer of ``owner`` (an inversion, or a generator for theta alone) at a precision.

        One owner's renderers are kept at a time (each holds a merged copy of the weights)."""
        if self._renderer_owner is None or self._renderer_owner() is not owner:
            self._drop_renderers()
            self._renderer_owner = weakref.ref(owner)
        r = self._renderers.get(precision)
        if r is None:
            d = None if deltas is None else deltas.to(self.device)
            r = self._renderers[precision] = EditRenderer(self.generator(backend), d, precision=precision)
        return r

    def render(
        self,
        result: InversionResult,
        edits: Iterable[tuple[Direction, float]] = (),
        *,
        w: torch.Tensor | None = None,
        resolution: int | None = None,
        kind: str = "frame",
    ) -> torch.Tensor:
        """G(w'; θ+Δθ) of an inversion: w' = the edited w (or ``w`` itself), image [3, R, R] on the CPU.

        ``resolution`` stops the synthesis early (previews); ``kind`` ("frame", "preview", "exact")
        picks the precision from the plan; "exact" is float32 always. With no edit at full
        resolution the result's own image is returned (nothing to compute).
        """
        edited = apply_edits(result.w, edits) if w is None else w
        if edited is result.w and resolution is None and result.metadata.get("precision", "float32") == "float32":
            return result.image
        precision = self._dtype_for(kind)
        backend = result.metadata.get("backend", "hyperinverter")
        with self._exclusive(), torch.no_grad():
            def run() -> torch.Tensor:
                r = self._renderer(result, backend, result.deltas, precision)
                return r.render(edited.to(self.device), max_resolution=resolution).float().cpu()

            return self._with_fallback(run)

    def interpolate(
        self,
        a: InversionResult,
        b: InversionResult,
        alpha: float,
        *,
        latent_only: bool = False,
        resolution: int | None = None,
        kind: str = "frame",
    ) -> torch.Tensor:
        """One frame between two inversions: w and Δθ blended (HyperInverter's method), or w alone
        rendered with the plain generator (``latent_only``). At α = 0 and 1 (weights mode, full
        resolution) exactly A's and B's reconstructions."""
        backend = a.metadata.get("backend", "hyperinverter")
        if b.metadata.get("backend", "hyperinverter") != backend:
            raise HyperInverterError("A and B were inverted with different backends; invert both with one")
        w, deltas = blend(a, b, alpha, latent_only)
        if not latent_only and resolution is None:
            for r in (a, b):
                if w is r.w and deltas is r.deltas:
                    return r.image
        precision = self._dtype_for(kind)
        with self._exclusive(), torch.no_grad():
            def run() -> torch.Tensor:
                if deltas is None:  # theta alone: one renderer per generator, kept
                    g = self.generator(backend)
                    r = self._renderer(g, backend, None, precision)
                else:  # an image of its own: prepared for this frame only
                    r = EditRenderer(self.generator(backend), deltas.to(self.device), precision=precision,
                                     cache_resolution=0)
                return r.render(w.to(self.device), max_resolution=resolution).float().cpu()

            return self._with_fallback(run)

    def interpolation_frames(
        self, a: InversionResult, b: InversionResult, steps: int, *, latent_only: bool = False,
        on_frame: Callable[[int, int], None] | None = None, cancel: CancelToken | None = None,
    ) -> list[torch.Tensor]:
        """``steps`` exact frames from A to B (for GIF/MP4/PNG sequences); ``on_frame(done, total)``."""
        from hyperinverter_gui.editing.edits import interpolation_alphas

        token = cancel or CancelToken()
        frames = []
        alphas = interpolation_alphas(steps)
        for i, alpha in enumerate(alphas):
            token.raise_if_cancelled()
            frames.append(self.interpolate(a, b, alpha, latent_only=latent_only, kind="exact"))
            if on_frame is not None:
                on_frame(i + 1, len(alphas))
        return frames

    # ------------------------------------------------------------------ directions

    def compute_ganspace(self, samples: int, components: int, seed: int = 0,
                         progress: Callable[[int], None] | None = None, cancel: CancelToken | None = None):
        """PCA of the generator's W space (GANSpace file format), streamed over ``samples`` z draws."""
        from hyperinverter_gui.editing.edits import compute_ganspace

        token = cancel or CancelToken()
        with self._exclusive(), torch.no_grad():
            g = self._main_generator()

            def mapping(z: torch.Tensor) -> torch.Tensor:
                token.raise_if_cancelled()
                return g.mapping(z)[:, 0]

            return compute_ganspace(mapping, g.z_dim, samples, components, seed, progress=progress,
                                    device=self.device)
