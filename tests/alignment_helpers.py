"""Shared pieces of the alignment tests."""

from __future__ import annotations

import numpy as np

# Five points of the astronaut (skimage.data.astronaut, 512x512) read off a 10x zoomed
# view with a 5-px grid: eye centres, nose tip, mouth corners.
ASTRONAUT_POINTS = np.array([(203.5, 101.0), (246.0, 102.5), (223.8, 125.5), (204.0, 140.5), (243.0, 141.0)])


def identical_outside(out: np.ndarray, orig: np.ndarray, alpha: np.ndarray) -> bool:
    """Every pixel with blend weight 0 is bit-for-bit the original."""
    changed = np.any(out != orig, axis=-1)
    return not np.any(changed & (alpha == 0))
