"""Faster HyperInverter inversion, stage by stage, with the same results as ``inversion.invert``.

What changes against :func:`hyperinverter_gui.engine.reference.invert` (whose
semantics stay as they are):

* both syntheses run on :class:`~hyperinverter_gui.engine.renderer.EditRenderer`
  (plain convolutions with weights modulated once per frame, in-place epilogues,
  channels_last); Phase I uses one renderer for theta, prepared once per model
  and reused for every photo; Phase II prepares one renderer per image, which
  the GUI can keep for the edits that follow (its cache is warm);
* E2 reads the photo and the Phase-I image as one batch of 2N;
* float32: E1 and E2 run folded (``networks.fast_encoders``: BatchNorm folded into the
  convolutions, fused epilogues, Winograd F(4x4, 3x3) in the body layers where it pays on this
  CPU class, weights transformed per call so nothing extra is kept); Phase I transforms the
  weights of its Winograd layers per frame where that pays (``winograd.pays_per_call``);
* channels_last inputs for the encoders;
* ``precision="bfloat16"`` (a setting, not the default): bf16 autocast for E1 and
  E2 and bf16 syntheses. It is not exact: see ``benchmarks/bench_speed.py``.

float32 results match ``invert``: deltas within 1e-4 relative error (tests),
images within float rounding.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch

from hyperinverter_gui.engine.renderer import EditRenderer, resolve_precision
from hyperinverter_gui.host.memory import release_pages
from hyperinverter_gui.inversion.result import InversionResult, WeightDeltas
from hyperinverter_gui.networks.fast_encoders import fast_encoder
from hyperinverter_gui.networks.hyperinverter import HyperInverter, resize_for_encoder


@dataclass
class FastInversion:
    """Results plus the prepared per-image renderers (theta + delta_theta)."""

    results: list[InversionResult]
    renderers: list[EditRenderer]


class FastInverter:
    """Holds what is prepared once per model (the theta renderer) and runs inversions.

    Stages (each a method, so the benchmark and the GUI worker can time or
    report them): :meth:`prepare_input`, :meth:`encode_w`, :meth:`phase1`,
    :meth:`encode_pair`, :meth:`hypernet`, :meth:`phase2`.
    """

    def __init__(
        self,
        model: HyperInverter,
        precision: str | torch.dtype = "float32",
        *,
        channels_last: bool = True,
        cache_resolution: int = 256,
        release_weights: bool = False,
        fold_encoders: bool = True,
    ):
        self.model = model
        # float32: E1 and E2 run their folded-BN forward (networks.fast_encoders; Winograd where it
        # pays on this CPU). False keeps the modules' own forward (the tests compare the two).
        self.fold_encoders = fold_encoders
        # After each encoder stage, hand its memory-mapped weights' pages back to the OS (see
        # memory.release_pages): the GUI's peak then holds one network at a time, not all of them.
        self.release_weights = release_weights
        self.dtype = resolve_precision(precision)
        self.channels_last = channels_last
        self.cache_resolution = cache_resolution
        self.device = next(model.parameters()).device
        self._theta: EditRenderer | None = None

    @property
    def precision(self) -> str:
        return "bfloat16" if self.dtype == torch.bfloat16 else "float32"

    @property
    def theta_renderer(self) -> EditRenderer:
        if self._theta is None:
            # No kept Winograd transforms here: Phase I renders one frame per photo, and they would
            # add ~150 MB at FFHQ size (theta itself is read in place) to a renderer the editor keeps
            # between photos. Where a transform made at each frame still pays
            # (winograd.pays_per_call: AVX2 16-512 px, AVX-512 32-256 px), the frame makes it and drops it.
            self._theta = EditRenderer(
                self.model.generator, None, precision=self.dtype, cache_resolution=0,
                channels_last=self.channels_last, keep_transforms=False,
            )
        return self._theta

    def _autocast(self):
        if self.dtype == torch.bfloat16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _cl(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # --- stages ---------------------------------------------------------------

    def prepare_input(self, images: torch.Tensor) -> torch.Tensor:
        """[N,3,H,W] in [-1,1] -> the 256 px encoder input."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N,3,H,W], got {list(images.shape)}")
        return self._cl(resize_for_encoder(images.to(self.device, torch.float32)))

    def _folded(self, encoder: torch.nn.Module):
        """The folded-BN forward of an encoder (``networks.fast_encoders``) for float32, else None."""
        if self.dtype != torch.float32 or not self.fold_encoders:
            return None
        return fast_encoder(encoder)

    def _after_part(self):
        return _release_after_part if self.release_weights else None

    def encode_w(self, x256: torch.Tensor) -> torch.Tensor:
        """Phase I code ws [N, num_ws, w_dim] (float32)."""
        folded = self._folded(self.model.w_encoder)
        if folded is not None:
            w = folded(x256, after_part=self._after_part())
        else:
            with self._autocast(), self._releasing(self.model.w_encoder.body):
                w = self.model.w_encoder(x256)
        self._release(self.model.w_encoder)
        w = w.float() + self.model.generator.w_avg.unsqueeze(0)
        return w.unsqueeze(1).repeat(1, self.model.num_ws, 1)

    def phase1(self, ws: torch.Tensor) -> torch.Tensor:
        """G(ws; theta) [N,3,R,R], all images in one pass (modulated activations)."""
        return self.theta_renderer.render_batch(ws)

    def encode_pair(self, x256: torch.Tensor, phase1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """E2 on photos and Phase-I images as one batch -> (image_features, photo_features)."""
        n = x256.shape[0]
        batch = torch.cat([x256, self._cl(resize_for_encoder(phase1))], dim=0)
        e2 = self.model.w_bar_encoder
        folded = self._folded(e2)
        if folded is not None:
            feats = folded(self._cl(batch), after_part=self._after_part())
        else:
            with self._autocast(), self._releasing([*e2.body, *e2.styles]):
                feats = e2(self._cl(batch))
        self._release(self.model.w_bar_encoder)
        feats = feats.float()
        return feats[n:], feats[:n]

    def hypernet(self, image_features: torch.Tensor, photo_features: torch.Tensor) -> dict[str, torch.Tensor]:
        with self._releasing(self.model.hypernet.weight_regressors.values()):
            deltas = self.model.hypernet(image_features, photo_features)
        self._release(self.model.hypernet)
        return deltas

    @contextlib.contextmanager
    def _releasing(self, parts):
        """While active, each of ``parts`` (sub-networks that run once per forward) hands its pages
        back as soon as it has run, so a stage never holds all of its network's weights at once
        (the hypernetwork, about 0.6 GB at FFHQ size, was the session's memory peak)."""
        hooks = [p.register_forward_hook(_release_after_forward) for p in parts] if self.release_weights else []
        try:
            yield
        finally:
            for h in hooks:
                h.remove()

    def _release(self, module: torch.nn.Module) -> None:
        if self.release_weights:
            release_pages(module)

    def phase2(self, ws: torch.Tensor, deltas: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[EditRenderer]]:
        """G(ws; theta + delta_theta) per image; returns images [N,3,R,R] and the per-image renderers."""
        renderers, images = [], []
        for i in range(ws.shape[0]):
            r = EditRenderer(
                self.model.generator, {k: v[i] for k, v in deltas.items()}, precision=self.dtype,
                cache_resolution=self.cache_resolution, channels_last=self.channels_last,
            )
            images.append(r.render(ws[i]))
            renderers.append(r)
        return torch.stack(images), renderers

    # --- all of it ---------------------------------------------------------------

    @torch.no_grad()
    def invert(
        self, images: torch.Tensor, on_stage: Callable[[str], None] | None = None, keep_renderers: bool = False,
        on_phase1: Callable[[torch.Tensor], None] | None = None,
    ) -> FastInversion | list[InversionResult]:
        """Like ``reference.invert``; with ``keep_renderers`` also the renderers for the edits to come.

        ``on_stage(name)`` is called before each stage (progress reports, cancellation checks);
        ``on_phase1(images)`` as soon as the Phase-I images [N,3,R,R] exist.
        """
        step = on_stage or (lambda name: None)
        step("resize")
        x256 = self.prepare_input(images)
        step("encode_w")
        ws = self.encode_w(x256)
        step("phase1")
        phase1 = self.phase1(ws)
        if on_phase1 is not None:
            on_phase1(phase1)
        step("encode_pair")
        image_features, photo_features = self.encode_pair(x256, phase1)
        step("hypernet")
        deltas = self.hypernet(image_features, photo_features)
        step("phase2")
        final, renderers = self.phase2(ws, deltas)
        results = [
            InversionResult(
                w=ws[i], deltas=WeightDeltas({k: v[i] for k, v in deltas.items()}), phase1=phase1[i], image=final[i]
            )
            for i in range(ws.shape[0])
        ]
        if keep_renderers:
            return FastInversion(results, renderers)
        return results


def _release_after_forward(module: torch.nn.Module, args, output) -> None:
    release_pages(module)  # returns None: a forward hook's non-None return would replace the output


def _release_after_part(module: torch.nn.Module) -> None:
    release_pages(module)


_INVERTERS: weakref.WeakKeyDictionary[HyperInverter, dict[str, FastInverter]] = weakref.WeakKeyDictionary()


def fast_inverter(model: HyperInverter, precision: str | torch.dtype = "float32") -> FastInverter:
    """The :class:`FastInverter` of a model (created once per model and precision, then reused)."""
    per_model = _INVERTERS.setdefault(model, {})
    key = "bfloat16" if resolve_precision(precision) == torch.bfloat16 else "float32"
    if key not in per_model:
        per_model[key] = FastInverter(model, key)
    return per_model[key]


@torch.no_grad()
def invert_fast(model: HyperInverter, images: torch.Tensor, precision: str = "float32") -> list[InversionResult]:
    """Drop-in for ``inversion.invert(model, images)``: same results in float32, faster.

    ``precision="bfloat16"`` trades exactness for speed (a setting; PSNR in the benchmark).
    """
    return fast_inverter(model, precision).invert(images)
