"""Latent edits (InterFaceGAN, GANSpace) and two-image interpolation on theta + delta_theta.

An edit only moves w; the image keeps its own inverted weights theta + delta_theta,
which is what lets HyperInverter edit real photos without losing their details.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from hyperinverter_gui.errors import HyperInverterError
from hyperinverter_gui.formats.checkpoints import load_torch_file
from hyperinverter_gui.inversion.result import InversionResult, WeightDeltas


class EditError(HyperInverterError):
    """An edit request that cannot be applied (unknown slider, bad value, wrong file)."""


class DirectionFileError(EditError):
    """A direction file (InterFaceGAN tensor, GANSpace PCA) is malformed or holds bad numbers."""


# Bounds on numbers that reach an edit (documented in docs/design-notes.md). Slider values and
# edit strengths are in the direction's own units (GANSpace: standard deviations; InterFaceGAN:
# lengths of its unit normal); published sliders use at most +-10, and far beyond +-100 a face is
# no longer a face, only numbers on the way to overflowing float32.
MAX_EDIT_VALUE = 100.0
# A direction's entries: w itself stays within about +-10; a direction of 1e4 is a damaged file.
MAX_DIRECTION_ENTRY = 1e4
MAX_COMPONENT = 100_000  # GANSpace component index
MAX_LAYER = 1_000  # layer_start / layer_stop (a 1024 px generator has 18 ws)


def check_edit_value(value: object, name: str) -> float:
    """``value`` as a finite float within +-MAX_EDIT_VALUE, else an EditError naming the slider."""
    from hyperinverter_gui.formats.guard import finite_number

    return finite_number(value, "the value", f"'{name}'", -MAX_EDIT_VALUE, MAX_EDIT_VALUE, EditError)


def _check_direction_values(t: torch.Tensor, field: str, path: Path) -> None:
    if not bool(torch.isfinite(t).all()):
        raise DirectionFileError(f"{path.name}: '{field}' holds NaN or infinite values; the file is damaged")
    if t.numel() and float(t.abs().max()) > MAX_DIRECTION_ENTRY:
        raise DirectionFileError(f"{path.name}: '{field}' holds values beyond +-{MAX_DIRECTION_ENTRY:g}; "
                                 "it is not a direction in W space")


# ----------------------------------------------------------------------------
# Direction files


@dataclass
class GanspacePCA:
    """PCA of W in the GANSpace format: mean [1,D], unit components [K,1,D], std [K]."""

    mean: torch.Tensor
    comp: torch.Tensor
    std: torch.Tensor

    @property
    def num_components(self) -> int:
        return int(self.comp.shape[0])

    @property
    def w_dim(self) -> int:
        return int(self.mean.shape[-1])

    def to_file_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "comp": self.comp, "std": self.std}


def load_interfacegan_direction(path: str | Path, w_dim: int = 512) -> torch.Tensor:
    """An InterFaceGAN direction file: a tensor [1,D] / [D], or per-layer [1,num_ws,D] / [num_ws,D].

    Returns [1, D] or [num_ws, D] on the CPU (files saved from a GPU load fine).
    """
    path = Path(path)
    obj = load_torch_file(path)
    if isinstance(obj, Mapping):
        raise EditError(
            f"{path.name} holds a dict ({', '.join(map(str, list(obj)[:4]))}), not a direction tensor"
            + ("; it looks like a GANSpace PCA file" if "comp" in obj else "")
        )
    if not isinstance(obj, torch.Tensor) or not obj.is_floating_point():
        raise DirectionFileError(f"{path.name} is not a direction tensor (floating-point numbers)")
    if obj.ndim == 0 or obj.ndim > 3:
        raise DirectionFileError(f"{path.name}: direction shape {list(obj.shape)} is not [1,{w_dim}] or "
                                 f"[1,num_ws,{w_dim}]")
    d = obj.detach().float().cpu()
    _check_direction_values(d, "direction", path)
    if d.shape[-1] != w_dim:
        raise EditError(f"{path.name}: a direction must have {w_dim} values per w, this one has {d.shape[-1]}")
    if d.ndim == 1:
        d = d.unsqueeze(0)
    elif d.ndim == 3 and d.shape[0] == 1:
        d = d[0]
    if d.ndim != 2:
        raise EditError(f"{path.name}: direction shape {list(obj.shape)} is not [1,{w_dim}] or [1,num_ws,{w_dim}]")
    return d


def load_ganspace(path: str | Path) -> GanspacePCA:
    """A GANSpace PCA file (``ffhq_pca.pt`` format): {'mean': [1,D], 'comp': [K,1,D], 'std': [K]}."""
    path = Path(path)
    obj = load_torch_file(path)
    if not isinstance(obj, Mapping):
        raise EditError(f"{path.name} is not a GANSpace PCA file (expected a dict with mean, comp, std)")
    missing = [k for k in ("mean", "comp", "std") if k not in obj]
    if missing:
        raise EditError(f"{path.name} is not a GANSpace PCA file: missing {', '.join(missing)}")
    for k in ("mean", "comp", "std"):
        v = obj[k]
        if not (isinstance(v, torch.Tensor) and (v.is_floating_point() or v.dtype in (torch.int32, torch.int64))):
            raise DirectionFileError(f"{path.name}: '{k}' is a {type(v).__name__}, not a tensor of numbers")
        if v.ndim == 0 or v.numel() == 0:
            raise DirectionFileError(f"{path.name}: '{k}' has shape {list(v.shape)}; it must hold values")
    mean, comp, std = (obj[k].detach().float().cpu() for k in ("mean", "comp", "std"))
    for k, v in (("mean", mean), ("comp", comp), ("std", std)):
        _check_direction_values(v, k, path)
    d = mean.shape[-1]
    if mean.numel() != d:
        raise DirectionFileError(f"{path.name}: 'mean' has shape {list(mean.shape)}, expected [1, D]")
    mean = mean.reshape(1, d)
    if comp.shape[-1] != d or comp.numel() % d:
        raise EditError(f"{path.name}: components of width {comp.shape[-1]} do not match the mean's {d}")
    comp = comp.reshape(-1, 1, d)
    std = std.reshape(-1)
    if std.shape[0] != comp.shape[0]:
        raise EditError(f"{path.name}: {comp.shape[0]} components but {std.shape[0]} standard deviations")
    return GanspacePCA(mean, comp, std)


def save_ganspace(pca: GanspacePCA, path: str | Path) -> Path:
    from hyperinverter_gui.media.atomic import atomic_write

    return atomic_write(path, lambda tmp: torch.save(pca.to_file_dict(), tmp), ".pt")


# ----------------------------------------------------------------------------
# Edits


@dataclass
class Direction:
    """A slider: one direction in W space, applied to a range of ws.

    For GANSpace directions ``vector`` is the unit component times its standard
    deviation, so a value of 1 moves one sigma along the component.
    """

    name: str
    vector: torch.Tensor  # [1, D] (same for every w) or [num_ws, D]
    kind: str = "interfacegan"  # "interfacegan" or "ganspace"
    label: str = ""
    layer_start: int = 0  # first w touched
    layer_stop: int | None = None  # one past the last w touched (Python slice), None = all
    group: str = ""
    value_range: tuple[float, float] = (-3.0, 3.0)
    step: float = 0.1
    meta: dict[str, Any] = field(default_factory=dict)

    def delta(self, num_ws: int, value: float) -> torch.Tensor:
        """The change of w [num_ws, D] this slider at ``value`` makes."""
        stop = num_ws if self.layer_stop is None else self.layer_stop
        if not 0 <= self.layer_start < stop <= num_ws:
            raise EditError(
                f"'{self.name}' touches ws {self.layer_start}..{stop - 1}, but this generator has {num_ws} ws"
            )
        v = self.vector
        if v.shape[0] not in (1, num_ws):
            raise EditError(f"'{self.name}' has {v.shape[0]} per-layer directions, the generator {num_ws} ws")
        out = torch.zeros(num_ws, v.shape[-1], dtype=v.dtype, device=v.device)
        out[self.layer_start : stop] = float(value) * v.expand(num_ws, -1)[self.layer_start : stop]
        return out


def ganspace_direction(pca: GanspacePCA, component: int, layer_start: int, layer_stop: int | None, name: str,
                       **kwargs: Any) -> Direction:
    """Relative GANSpace slider: value v adds v * std[c] * comp[c] to ws[layer_start:layer_stop].

    Upstream GANSpace (e4e/HyperInverter ``editings/ganspace.py``) instead *sets*
    the coordinate along the component to the strength, so there 0 is not "no edit".
    """
    if not 0 <= component < pca.num_components:
        raise EditError(f"'{name}' uses GANSpace component {component}, the file has {pca.num_components}")
    vec = (pca.comp[component].reshape(1, -1) * pca.std[component]).clone()
    return Direction(name, vec, "ganspace", layer_start=layer_start, layer_stop=layer_stop,
                     meta={"component": component}, **kwargs)


def apply_edits(w: torch.Tensor, edits: Iterable[tuple[Direction, float]]) -> torch.Tensor:
    """w [num_ws, D] moved along each (direction, value).

    The changes are summed in a fixed order (by name), so the result does not
    depend on the order sliders were moved in; all-zero values return ``w``
    itself.
    """
    if w.ndim != 2:
        raise EditError(f"w must be [num_ws, w_dim], got {list(w.shape)}")
    total = None
    items = sorted(edits, key=lambda e: e[0].name)
    for direction, value in items:
        value = check_edit_value(value, direction.name)
        if value == 0:
            continue
        if direction.vector.shape[-1] != w.shape[-1]:
            raise EditError(
                f"'{direction.name}' has width {direction.vector.shape[-1]}, w has {w.shape[-1]}"
            )
        d = direction.delta(w.shape[0], value).to(w.device, w.dtype)
        total = d if total is None else total + d
    if total is None:
        return w
    out = w + total
    if not bool(torch.isfinite(out).all()):  # never render a flat black "success"
        names = ", ".join(d.name for d, v in items if v)
        raise EditError(f"the edits {names} move w to non-finite values; use smaller values")
    return out


Synthesis = Callable[..., torch.Tensor]


def synthesize_one(synthesis: Synthesis, w: torch.Tensor, deltas: Mapping[str, torch.Tensor] | None,
                   **kwargs: Any) -> torch.Tensor:
    """G(w; theta + deltas) for one image: w [num_ws, D], deltas without batch dim -> [3,R,R]."""
    batched = None if deltas is None else {k: v.unsqueeze(0) for k, v in deltas.items()}
    with torch.no_grad():
        return synthesis(w.unsqueeze(0), batched, **kwargs)[0]


def render_edits(synthesis: Synthesis, result: InversionResult, edits: Iterable[tuple[Direction, float]],
                 **kwargs: Any) -> torch.Tensor:
    """The edited image with the photo's own theta + delta_theta; no edit = the inversion itself."""
    w = apply_edits(result.w, edits)
    if w is result.w and not kwargs:
        return result.image
    return synthesize_one(synthesis, w, result.deltas, **kwargs)


# ----------------------------------------------------------------------------
# Interpolation


def interpolate(
    a: InversionResult, b: InversionResult, alpha: float, latent_only: bool = False
) -> tuple[torch.Tensor, WeightDeltas | None]:
    """HyperInverter interpolation: w = (1-a) w_A + a w_B and delta = (1-a) delta_A + a delta_B.

    ``latent_only`` interpolates w alone and renders with the plain generator
    (the usual pipeline the paper compares against); then no deltas are returned.
    """
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0 or math.isnan(alpha):
        raise EditError(f"interpolation alpha must be within [0, 1], got {alpha}")
    if a.w.shape != b.w.shape:
        raise EditError(f"the two inversions have different w shapes {list(a.w.shape)} and {list(b.w.shape)}")
    # Exact endpoints: no floating-point blend at alpha 0 or 1.
    if alpha == 0.0:
        w, pick = a.w, a
    elif alpha == 1.0:
        w, pick = b.w, b
    else:
        w, pick = torch.lerp(a.w, b.w, alpha), None
    if latent_only:
        return w, None
    if set(a.deltas) != set(b.deltas):
        raise EditError("the two inversions predicted different layer sets (different checkpoints?)")
    if pick is not None:
        return w, pick.deltas
    return w, WeightDeltas({k: torch.lerp(a.deltas[k], b.deltas[k], alpha) for k in a.deltas})


def render_interpolation(synthesis: Synthesis, a: InversionResult, b: InversionResult, alpha: float,
                         latent_only: bool = False, **kwargs: Any) -> torch.Tensor:
    """One interpolation frame; at alpha 0 and 1 (weights mode) exactly A's and B's reconstructions."""
    w, deltas = interpolate(a, b, alpha, latent_only)
    if not latent_only and not kwargs:
        for r in (a, b):
            if w is r.w and deltas is r.deltas:
                return r.image
    return synthesize_one(synthesis, w, deltas, **kwargs)


def interpolation_alphas(steps: int) -> list[float]:
    if steps < 2:
        raise EditError("interpolation needs at least 2 steps")
    return [i / (steps - 1) for i in range(steps)]


# ----------------------------------------------------------------------------
# GANSpace for any generator


@torch.no_grad()
def compute_ganspace(
    mapping: Callable[[torch.Tensor], torch.Tensor],
    z_dim: int,
    num_samples: int = 100_000,
    num_components: int = 80,
    seed: int = 0,
    batch_size: int = 4096,
    progress: Callable[[int], None] | None = None,
    device: torch.device | str = "cpu",
) -> GanspacePCA:
    """PCA of w = mapping(z), z ~ N(0, I), in the GANSpace file format.

    Components are unit vectors sorted by variance; each is signed so that its
    largest-magnitude coordinate is positive, which makes the result
    deterministic for a seed (up to floating-point summation order).
    """
    if num_samples < 2:
        raise EditError("GANSpace needs at least 2 samples")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    # Streaming first and second moments in float64: memory does not grow with the sample count.
    s1: torch.Tensor | None = None
    s2: torch.Tensor | None = None
    done = 0
    while done < num_samples:
        n = min(batch_size, num_samples - done)
        z = torch.randn(n, z_dim, generator=gen).to(device)
        w = mapping(z)
        if w.ndim == 3:
            w = w[:, 0]
        w = w.double().cpu()
        s1 = w.sum(0) if s1 is None else s1 + w.sum(0)
        s2 = w.T @ w if s2 is None else s2 + w.T @ w
        done += n
        if progress is not None:
            progress(n)
    assert s1 is not None and s2 is not None
    d = s1.shape[0]
    k = min(num_components, d, num_samples - 1)
    if num_components > k:
        raise EditError(f"at most {k} components can be computed from {num_samples} samples of width {d}")
    mean = (s1 / num_samples).unsqueeze(0)
    cov = (s2 - num_samples * mean.T @ mean) / (num_samples - 1)
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    order = torch.argsort(evals, descending=True)[:k]
    evals, comps = evals[order].clamp_min(0), evecs[:, order].T  # [k, d]
    idx = comps.abs().argmax(dim=1)
    signs = torch.sign(comps[torch.arange(k), idx])
    comps = comps * signs[:, None]
    return GanspacePCA(mean.float(), comps.float().reshape(k, 1, d), evals.sqrt().float())


def parse_edit(spec: str) -> tuple[str, float]:
    """'age=+2' -> ('age', 2.0)."""
    name, sep, value = spec.partition("=")
    if not sep or not name.strip():
        raise EditError(f"edit '{spec}' must look like NAME=VALUE, e.g. age=+2")
    try:
        v = float(value)
    except ValueError:
        raise EditError(f"edit '{spec}': '{value}' is not a number") from None
    if not math.isfinite(v):
        raise EditError(f"edit '{spec}': value must be finite")
    if abs(v) > MAX_EDIT_VALUE:
        raise EditError(f"edit '{spec}': value must be within [-{MAX_EDIT_VALUE:g}, {MAX_EDIT_VALUE:g}]")
    return name.strip(), v


def ensure_known(names: Sequence[str], available: Mapping[str, Direction]) -> None:
    unknown = [n for n in names if n not in available]
    if unknown:
        raise EditError(
            f"unknown edit direction{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"available: {', '.join(sorted(available)) or 'none (see directions/README.md)'}"
        )


__all__ = [
    "MAX_EDIT_VALUE",
    "Direction",
    "DirectionFileError",
    "EditError",
    "GanspacePCA",
    "apply_edits",
    "check_edit_value",
    "compute_ganspace",
    "ensure_known",
    "ganspace_direction",
    "interpolate",
    "interpolation_alphas",
    "load_ganspace",
    "load_interfacegan_direction",
    "parse_edit",
    "render_edits",
    "render_interpolation",
    "save_ganspace",
    "synthesize_one",
]
