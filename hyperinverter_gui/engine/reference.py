"""The readable reference inversion: the networks' own forward passes, as the official code runs them.

Production work goes through :class:`hyperinverter_gui.engine.Engine` (staged inversion and the
prepared renderer); this module is the specification they are tested against.
"""

from __future__ import annotations

from typing import Mapping

import torch

from hyperinverter_gui.inversion.result import InversionResult, WeightDeltas
from hyperinverter_gui.networks.hyperinverter import HyperInverter


@torch.no_grad()
def invert(model: HyperInverter, images: torch.Tensor) -> list[InversionResult]:
    """Invert a batch ``[N,3,H,W]`` in [-1,1] (any H=W; resized to 256 for the encoders).

    The whole batch runs at once; per-image weights use grouped convolutions.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [N,3,H,W], got {list(images.shape)}")
    device = next(model.parameters()).device
    ws, phase1, final, deltas = model(images.to(device, torch.float32))
    results = []
    for i in range(images.shape[0]):
        results.append(
            InversionResult(
                w=ws[i],
                deltas=WeightDeltas({k: v[i] for k, v in deltas.items()}),
                phase1=phase1[i],
                image=final[i],
            )
        )
    return results


@torch.no_grad()
def synthesize(model: HyperInverter, ws: torch.Tensor, deltas: Mapping[str, torch.Tensor] | None) -> torch.Tensor:
    """G(ws; theta + delta) for ws [N, num_ws, w_dim] and batched deltas ``{name: [N, *shape]}``."""
    return model.generator.synthesis(ws, deltas)
