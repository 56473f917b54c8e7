"""Temporal smoothing of the FFHQ crop, and how much a crop sequence shakes.

Aligning every frame on its own detected landmarks makes the crop follow the detector's noise:
the face shakes inside the crop, and the edit and paste-back shake with it. Temporally coherent
face-editing pipelines therefore smooth the alignment over time. Here the crop square of each
frame (``geometry.ffhq_square``: centre c and half-axis h, whose direction is the rotation and
whose length the scale) is smoothed per *segment* (a run of consecutive frames with the face) by
a local linear fit with Gaussian weights (sigma in frames): a face moving at constant speed is
followed without lag, and detector noise is averaged away. One robust pass down-weights a frame
whose detection is far off (a bisquare on the residuals), so a single bad detection does not
drag its neighbours.

``crop_jitter`` measures what the viewer sees: the frame-to-frame deviation of the crop from a
locally linear (smooth) path, in pixels of the aligned crop (the RMS of the second difference of
the square's corners, divided by sqrt(6), the factor that turns it into the standard deviation of
white noise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from hyperinverter_gui.alignment.geometry import ffhq_square

#: default sigma (frames) of the crop smoothing; 0 turns it off
DEFAULT_SIGMA = 3.0


def square_params(points5: np.ndarray) -> np.ndarray:
    """[cx, cy, hx, hy]: the crop square's centre and half-axis (x direction) from five points."""
    c, hx, _ = ffhq_square(points5)
    return np.array([c[0], c[1], hx[0], hx[1]], dtype=np.float64)


def quad_from_params(p: Sequence[float]) -> np.ndarray:
    """Corners [4, 2] (top-left, bottom-left, bottom-right, top-right) of a square [cx, cy, hx, hy]."""
    c = np.array([p[0], p[1]], dtype=np.float64)
    hx = np.array([p[2], p[3]], dtype=np.float64)
    hy = np.array([-hx[1], hx[0]])
    return np.stack([c - hx - hy, c - hx + hy, c + hx + hy, c + hx - hy])


def segments(indices: Sequence[int]) -> list[list[int]]:
    """Runs of consecutive frame numbers: [0, 1, 2, 5, 6] -> [[0, 1, 2], [5, 6]]."""
    runs: list[list[int]] = []
    for i in sorted(indices):
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _local_linear(x: np.ndarray, sigma: float, robust: np.ndarray | None = None) -> np.ndarray:
    """Gaussian-weighted local linear fit of each column of x [n, d] at every row."""
    n = x.shape[0]
    if n < 3 or sigma <= 0:
        return x.copy()
    t = np.arange(n, dtype=np.float64)
    radius = int(math.ceil(3 * sigma))
    out = np.empty_like(x)
    for i in range(n):
        lo, hi = max(0, i - radius), min(n, i + radius + 1)
        dt = t[lo:hi] - i
        w = np.exp(-0.5 * (dt / sigma) ** 2)
        if robust is not None:
            w = w * robust[lo:hi]
        s0, s1, s2 = w.sum(), (w * dt).sum(), (w * dt * dt).sum()
        det = s0 * s2 - s1 * s1
        y = x[lo:hi]
        m0 = (w[:, None] * y).sum(0)
        if abs(det) < 1e-12 * max(s0 * s2, 1e-300):  # one usable frame: its value
            out[i] = m0 / max(s0, 1e-300)
            continue
        m1 = (w[:, None] * dt[:, None] * y).sum(0)
        out[i] = (s2 * m0 - s1 * m1) / det  # the fitted line's value at dt = 0
    return out


def smooth_params(params: np.ndarray, sigma: float = DEFAULT_SIGMA) -> np.ndarray:
    """Smoothed squares [n, 4] of one segment (consecutive frames); sigma 0 returns them unchanged."""
    p = np.asarray(params, dtype=np.float64)
    if sigma <= 0 or len(p) < 3:
        return p.copy()
    first = _local_linear(p, sigma)
    # One robust pass: residuals in units of the face size; bisquare weights beyond ~4.7 MADs.
    size = np.hypot(p[:, 2], p[:, 3])
    r = np.hypot(*(p[:, :2] - first[:, :2]).T) / np.maximum(size, 1e-9)
    r += np.hypot(*(p[:, 2:] - first[:, 2:]).T) / np.maximum(size, 1e-9)
    mad = np.median(r) + 1e-12
    u = r / (6.0 * mad)
    robust = np.where(u < 1, (1 - u * u) ** 2, 0.0)
    if robust.sum() < 3:
        return first
    return _local_linear(p, sigma, robust + 1e-6)


def smooth_track(params: dict[int, np.ndarray], sigma: float = DEFAULT_SIGMA) -> dict[int, np.ndarray]:
    """Smooth every segment of a track {frame: [cx, cy, hx, hy]} separately (gaps are not bridged)."""
    out: dict[int, np.ndarray] = {}
    for run in segments(params):
        sm = smooth_params(np.stack([params[i] for i in run]), sigma)
        for i, p in zip(run, sm):
            out[i] = p
    return out


def crop_jitter(params: dict[int, np.ndarray], size: int) -> float | None:
    """Frame-to-frame shake of the crop, in pixels of a ``size`` crop (None: too few frames).

    For each run of three consecutive frames, the second difference of the square's corners,
    in crop pixels (corner motion divided by the side, times ``size``); RMS over all of them,
    divided by sqrt(6).
    """
    total, count = 0.0, 0
    for run in segments(params):
        if len(run) < 3:
            continue
        quads = np.stack([quad_from_params(params[i]) for i in run])  # [n, 4, 2]
        side = 2 * np.hypot(*np.stack([params[i][2:] for i in run]).T)  # [n]
        d2 = quads[:-2] - 2 * quads[1:-1] + quads[2:]
        px = np.hypot(d2[..., 0], d2[..., 1]) / side[1:-1, None] * size
        total += float((px ** 2).sum())
        count += px.size
    if not count:
        return None
    return math.sqrt(total / count / 6.0)


def window(i: int, radius: int, segment_of: dict[int, int]) -> list[int]:
    """Frames within ``radius`` of frame ``i`` in its segment (the w / delta-theta smoothing window)."""
    seg = segment_of.get(i)
    return [j for j in range(i - radius, i + radius + 1) if segment_of.get(j) == seg]
