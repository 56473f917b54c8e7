"""Short test clips made here: the scikit-image astronaut panned and zoomed smoothly, with a sine tone.

Each clip's motion is known exactly (``motion``), so tests can say where the true face is in every
frame. Frames can be blurred so that no face is found in them (they must pass through unchanged).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

SIZE = 256


def motion(t: int, frames: int) -> np.ndarray:
    """2x3 affine from astronaut pixels to frame pixels at frame t: a smooth zoom (1.0 -> 1.25) and pan."""
    u = t / max(1, frames - 1)
    s = 1.0 + 0.25 * u
    cx, cy = 200 + 40 * u, 150 + 20 * np.sin(np.pi * u)
    return np.array([[s, 0, SIZE / 2 - s * cx], [0, s, SIZE / 2 - s * cy]])


def frame(astronaut: np.ndarray, t: int, frames: int, blur: bool = False) -> np.ndarray:
    import cv2

    f = cv2.warpAffine(astronaut, motion(t, frames), (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REFLECT)
    if blur:  # no face to be found: a heavy blur
        f = cv2.GaussianBlur(f, (0, 0), 9)
    return f


def tone(seconds: float, rate: int = 48000) -> np.ndarray:
    """A stereo sine (440 Hz left, 660 Hz right) as int16 [2, n]."""
    t = np.arange(int(round(seconds * rate))) / rate
    left = 0.3 * np.sin(2 * np.pi * 440 * t)
    right = 0.3 * np.sin(2 * np.pi * 660 * t)
    return (np.stack([left, right]) * 32767).astype(np.int16)


def write_clip(path: Path, pictures, fps: int = 24, *, codec: str = "ffv1", pix_fmt: str = "bgr0",
               audio: str | None = "flac", rotation: int = 0, rate: int = 48000) -> Path:
    """Encode upright uint8 pictures (stored turned back when ``rotation`` is set) with a tone."""
    import av

    pictures = list(pictures)
    c = av.open(str(path), "w")
    v = c.add_stream(codec, rate=fps)
    v.width, v.height, v.pix_fmt = pictures[0].shape[1], pictures[0].shape[0], pix_fmt
    if codec == "libx264":
        v.options = {"crf": "18", "preset": "veryfast"}
    if rotation:
        v.set_display_rotation(rotation)
        v.width, v.height = pictures[0].shape[0], pictures[0].shape[1]
    a = None
    if audio:
        a = c.add_stream(audio, rate=rate)
        a.layout = "stereo"
    for i, pic in enumerate(pictures):
        stored = np.ascontiguousarray(np.rot90(pic, -(rotation // 90))) if rotation else pic
        f = av.VideoFrame.from_ndarray(stored, format="rgb24")
        f.pts, f.time_base = i, Fraction(1, fps)
        for p in v.encode(f):
            c.mux(p)
    for p in v.encode():
        c.mux(p)
    if a is not None:
        samples = tone(len(pictures) / fps, rate)
        step = 4800
        for k in range(0, samples.shape[1], step):
            chunk = np.ascontiguousarray(samples[:, k:k + step])
            af = av.AudioFrame.from_ndarray(chunk, format="s16p", layout="stereo")
            af.sample_rate, af.pts = rate, k
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    c.close()
    return Path(path)


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every frame as shown (rotation applied), RGB."""
    import av

    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            k = int(round(f.rotation / 90.0)) % 4
            out.append(np.ascontiguousarray(np.rot90(f.to_ndarray(format="rgb24"), k)))
    return out


def audio_packets(path: Path) -> list[tuple[bytes, float]]:
    """(bytes, time in seconds) of every audio packet of the first audio stream."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return [(bytes(p), float(p.pts * p.time_base)) for p in c.demux(s) if p.size]


def audio_samples(path: Path) -> np.ndarray:
    import av

    def planar(f):  # [channels, n] whether the decoder gives planar or interleaved samples
        a = f.to_ndarray()
        return a if f.format.is_planar else a.reshape(-1, len(f.layout.channels)).T

    with av.open(str(path)) as c:
        return np.concatenate([planar(f) for f in c.decode(audio=0)], axis=-1)


def test_the_test_clips_decode_to_exactly_the_pictures_written(tmp_path, astronaut):
    """The premise of the pixel tests: FFV1 (RGB) in MKV gives back every value, and the tone is there."""
    import pytest

    pytest.importorskip("av")
    pictures = [frame(astronaut, t, 6, blur=t % 2 == 1) for t in range(6)]
    path = write_clip(tmp_path / "c.mkv", pictures)
    back = decoded_frames(path)
    assert len(back) == 6 and all(np.array_equal(a, b) for a, b in zip(pictures, back))
    samples = audio_samples(path)
    assert samples.shape == (2, 12000) and np.array_equal(samples, tone(0.25))
