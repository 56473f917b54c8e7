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

# The astronaut's FFHQ points, in the convention FFHQ was made with (dlib's 68 landmarks: eye
# centre = mean of the six eyelid points, mouth corners = outer lip corners 48 and 54): left
# eye, right eye, left mouth corner, right mouth corner. Determined once, not by the code under
# test: dlib's predictor run 162 times (photo at 1x, 1.5x, 2x, each also mirrored, with the face
# box shifted by -2/0/+2 px in x and y and scaled by 0.95/1/1.05), the five-point sets averaged
# (each run lies within 0.6 px of the mean); then checked by eye at 30x zoom: the eye centres
# lie within 0.4 px of hand-traced eyelid contours, the mouth corners 1-2 px outside the dark
# commissures, where dlib's outer-lip corners sit.
ASTRONAUT_FFHQ_POINTS = np.array([(203.40, 101.56), (246.69, 103.78), (200.43, 139.02), (245.34, 140.87)])
