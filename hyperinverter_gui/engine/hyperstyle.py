"""The HyperStyle backend: iterative refinement of the weights, theta * (1 + D)."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from hyperinverter_gui.formats.hyperstyle_files import BACKEND_NAME
from hyperinverter_gui.inversion.result import InversionResult, WeightDeltas
from hyperinverter_gui.networks.hyperstyle import INPUT_RESOLUTION, MAX_ITERATIONS, HyperStyle


def resize_for_hyperstyle(images: torch.Tensor) -> torch.Tensor:
    """Photos to 256 x 256 as upstream's data transform does (PIL bilinear resize, antialiased)."""
    if tuple(images.shape[-2:]) == (INPUT_RESOLUTION, INPUT_RESOLUTION):
        return images
    return F.interpolate(images, size=(INPUT_RESOLUTION, INPUT_RESOLUTION), mode="bilinear",
                         align_corners=False, antialias=True)


def check_iterations(iterations: Any) -> int:
    if isinstance(iterations, bool) or not isinstance(iterations, int) or not 1 <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"iterations must be an integer from 1 to {MAX_ITERATIONS}, got {iterations!r}")
    return iterations


@torch.no_grad()
def invert_hyperstyle(
    model: HyperStyle,
    images: torch.Tensor,
    iterations: int = MAX_ITERATIONS,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> list[InversionResult]:
    """Invert a batch ``[N, 3, H, W]`` in [-1, 1] (resized to 256 px for the networks).

    ``w``: the initial code (W encoder + latent_avg) in every w row;
    ``phase1``: G(w; theta); ``image``: the reconstruction after the last step;
    ``deltas``: theta * D with D the offsets accumulated over the steps, so
    G(w; theta + deltas) == G(w; theta * (1 + D)).
    ``on_step(step, images)`` is called after each refinement step (step = 1..iterations)
    with that step's full-resolution reconstructions ``[N, 3, R, R]``.
    """
    iterations = check_iterations(iterations)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor [N,3,H,W], got {shape}")
    if images.shape[0] == 0:
        return []
    device = model.latent_avg.device
    x256 = resize_for_hyperstyle(images.to(device, torch.float32))
    out = model(x256, iterations, on_step)
    final = out.images[-1]
    meta = {"backend": BACKEND_NAME, "iterations": str(iterations)}
    return [
        InversionResult(
            w=out.ws[i],
            deltas=WeightDeltas({k: v[i] for k, v in out.deltas.items()}),
            phase1=out.initial[i],
            image=final[i],
            metadata=dict(meta),
        )
        for i in range(images.shape[0])
    ]
