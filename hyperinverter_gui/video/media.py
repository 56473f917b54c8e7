"""Reading and writing video clips: frames streamed one at a time, audio copied unchanged.

PyAV (``pip install 'hyperinverter-gui[video]'``, the ``av`` package with its own FFmpeg) is the
main path: any container and codec its FFmpeg decodes (MP4/MOV/WebM/MKV; H.264, HEVC, VP9, AV1,
...), the frame rate and every frame's timestamp, the rotation a phone stores in the file, and the
audio streams, which are copied packet for packet. Without PyAV, OpenCV decodes and writes the
pictures only (no audio; MPEG-4 Part 2 in MP4), and the user is told.

Times are seconds from the clip's first frame. A *selection* [start, end) picks the frames whose
time t satisfies start <= t < end; frames are numbered 0, 1, ... within the selection.

Pictures are handed over upright (the stored rotation applied), as uint8 RGB; an edited picture
is turned back before it is encoded and the output keeps the input's rotation, so the output has
the input's stored size and shows the same way in every player.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from hyperinverter_gui.errors import HyperInverterError

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")
#: encoders tried, in order, for each output container when none is named (software encoders only)
PREFERRED_ENCODERS = {
    "mp4": ("libx264", "libopenh264", "mpeg4"),
    "mov": ("libx264", "libopenh264", "mpeg4"),
    "matroska": ("libx264", "libopenh264", "libvpx-vp9", "mpeg4"),
    "webm": ("libvpx-vp9", "libvpx", "libsvtav1"),
    "avi": ("mpeg4", "libx264"),
}
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
#: audio codec used when a stream cannot be copied into the output container
AUDIO_FALLBACK = {"webm": "libopus", "matroska": "flac"}
#: audio codecs each container takes as they are (FFmpeg's own check lets some through that fail later)
AUDIO_COPY = {
    "mp4": ("aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"),
    "mov": ("aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_f32le", "opus", "flac"),
    "webm": ("opus", "vorbis"),
    "avi": ("mp3", "ac3", "pcm_s16le"),
}
#: encoders whose point is to keep every RGB value: they get an RGB pixel format, not 4:2:0
LOSSLESS_RGB = ("ffv1", "libx264rgb", "utvideo", "png", "rawvideo", "huffyuv", "ffvhuff", "qtrle")
RGB_FORMATS = ("gbrp", "bgr0", "rgb24", "bgr24", "rgba", "bgra")
H264_NAMES = {"libx264": "H.264 (x264)", "libopenh264": "H.264 (OpenH264)", "mpeg4": "MPEG-4 Part 2",
              "libvpx-vp9": "VP9", "libvpx": "VP8", "libsvtav1": "AV1 (SVT-AV1)", "ffv1": "FFV1 (lossless)",
              "libx264rgb": "H.264 RGB (x264)"}
DEFAULT_CRF = {"libx264": 18, "libvpx-vp9": 32, "libsvtav1": 30}


class VideoError(HyperInverterError):
    """A clip cannot be read or written; the message says why."""


def have_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _av():
    try:
        import av
    except ImportError:
        raise VideoError("this needs PyAV: pip install 'hyperinverter-gui[video]' (or pip install av)") from None
    return av


def parse_time(text: str | float | int | None) -> float | None:
    """'83.5', '1:23.5' or '0:01:23.5' -> seconds (None stays None)."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    s = str(text).strip()
    m = re.fullmatch(r"(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d*)?|\.\d+)", s)
    if not m:
        raise VideoError(f"'{text}' is not a time: use seconds (12.5) or [HH:]MM:SS(.s) (00:01.0)")
    parts = [p for p in m.groups() if p is not None]
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + float(p)
    return seconds


def format_time(seconds: float) -> str:
    m, s = divmod(max(0.0, float(seconds)), 60)
    return f"{int(m):02d}:{s:04.1f}"


# ----------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class AudioInfo:
    index: int  # the stream's index in the container
    codec: str
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class ClipInfo:
    """What a clip is. ``width``/``height`` are the upright (displayed) size."""

    path: Path
    width: int
    height: int
    fps: Fraction  # average frame rate
    duration: float  # seconds of video (0 when unknown)
    frames: int  # frame count (from the container, else estimated from duration and rate)
    codec: str
    rotation: int = 0  # degrees counter-clockwise the stored pictures are turned for display
    audio: tuple[AudioInfo, ...] = ()
    backend: str = "pyav"
    pix_fmt: str = ""

    def describe(self) -> str:
        fps = float(self.fps)
        audio = ", ".join(f"{a.codec} {a.sample_rate} Hz" for a in self.audio) or "no audio"
        turn = f", stored turned {self.rotation}°" if self.rotation else ""
        return (f"{self.width}×{self.height}, {fps:.3f}".rstrip("0").rstrip(".") +
                f" fps, {format_time(self.duration)} ({self.frames} frames), {self.codec}{turn}; {audio}")


@dataclass
class Frame:
    """One decoded frame of a selection."""

    index: int  # 0, 1, ... within the selection
    time: float  # seconds from the clip's first frame
    rgb: np.ndarray  # upright uint8 [H, W, 3]
    pts: int | None = None  # timestamp in the stream's time base (PyAV)
    source: Any = None  # the decoded av.VideoFrame (PyAV), encoded as is when the frame is not changed


@dataclass
class AudioPacket:
    """An audio packet of the selection, in demux order, to be copied as is."""

    packet: Any
    stream_index: int


def _rotation_of(frame: Any) -> int:
    r = int(getattr(frame, "rotation", 0) or 0)
    return int(round(r / 90.0)) * 90 % 360


def upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """The picture as shown: stored pixels turned ``rotation`` degrees counter-clockwise."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def stored(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Inverse of :func:`upright`: an upright picture turned back to how the file stores it."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, -k)) if k else rgb


def _stream_rotation(container: Any, stream: Any) -> int:
    """Rotation from the first frame's display matrix (PyAV reports it per frame)."""
    try:
        for frame in container.decode(stream):
            return _rotation_of(frame)
    except Exception:  # noqa: BLE001 - a clip that does not decode is reported by the caller
        return 0
    return 0


def probe(path: str | Path, backend: str = "auto") -> ClipInfo:
    """Size, rate, duration, rotation and audio streams of a clip."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"clip not found: {path}")
    if _use_pyav(backend):
        av = _av()
        try:
            with av.open(str(path)) as c:
                if not c.streams.video:
                    raise VideoError(f"{path.name} has no video stream")
                v = c.streams.video[0]
                rate = v.average_rate or v.guessed_rate or v.base_rate or Fraction(25)
                rate = Fraction(rate.numerator, rate.denominator)
                duration = 0.0
                if v.duration is not None and v.time_base is not None:
                    duration = float(v.duration * v.time_base)
                elif c.duration is not None:
                    duration = c.duration / 1_000_000
                frames = int(v.frames or 0) or int(round(duration * float(rate)))
                audio = tuple(AudioInfo(a.index, a.codec_context.name, int(a.codec_context.sample_rate or 0),
                                        int(a.codec_context.channels or 0)) for a in c.streams.audio)
                codec = v.codec_context.name
                w, h, pix = v.codec_context.width, v.codec_context.height, v.codec_context.pix_fmt or ""
                rotation = _stream_rotation(c, v)
        except VideoError:
            raise
        except Exception as e:  # av.error.*: not a video FFmpeg can read
            raise VideoError(f"cannot read {path.name}: {e}") from None
        if rotation in (90, 270):
            w, h = h, w
        return ClipInfo(path, w, h, rate, duration, frames, codec, rotation, audio, "pyav", pix)
    cv2 = _cv2()
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"OpenCV cannot read {path.name}")
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        ok, first = cap.read()
        if not ok:
            raise VideoError(f"OpenCV cannot decode {path.name}")
        h, w = first.shape[:2]
        rate = Fraction(fps).limit_denominator(1001)
        return ClipInfo(path, w, h, rate, n / fps if fps else 0.0, n, "unknown (OpenCV)", 0, (), "opencv")
    finally:
        cap.release()


def _use_pyav(backend: str) -> bool:
    if backend not in ("auto", "pyav", "opencv"):
        raise VideoError(f"unknown video backend {backend!r}: use auto, pyav or opencv")
    if backend == "pyav":
        _av()
        return True
    return backend == "auto" and have_pyav()


def _cv2():
    try:
        import cv2
    except ImportError:
        raise VideoError("reading video needs PyAV (pip install av) or OpenCV (pip install opencv-python)") from None
    return cv2


class Decoder:
    """Frames of a selection, one at a time (never the whole clip), and optionally its audio packets.

    Iterating yields :class:`Frame` objects, and with ``audio=True`` also :class:`AudioPacket`
    objects in the order the container stores them. Use as a context manager, or call close().
    """

    def __init__(self, path: str | Path, *, start: float = 0.0, end: float | None = None, audio: bool = False,
                 backend: str = "auto", keep_source: bool = False):
        self.path = Path(path)
        self.start = max(0.0, float(start or 0.0))
        self.end = None if end is None else float(end)
        if self.end is not None and self.end <= self.start:
            raise VideoError(f"the end ({self.end:g} s) must come after the start ({self.start:g} s)")
        self.audio = audio
        self.keep_source = keep_source
        self.pyav = _use_pyav(backend)
        self.container: Any = None
        self.video: Any = None
        self.audio_streams: list = []
        self.t0 = 0.0  # time of the stream's first frame (timestamps are relative to it)
        self.offset = 0.0  # seconds subtracted from every timestamp written (the trim start)
        self._cap: Any = None
        if self.pyav:
            av = _av()
            try:
                self.container = av.open(str(self.path))
            except Exception as e:  # noqa: BLE001
                raise VideoError(f"cannot read {self.path.name}: {e}") from None
            if not self.container.streams.video:
                self.close()
                raise VideoError(f"{self.path.name} has no video stream")
            self.video = self.container.streams.video[0]
            self.video.thread_type = "AUTO"
            self.audio_streams = list(self.container.streams.audio) if audio else []
            tb = self.video.time_base
            self.t0 = float(self.video.start_time * tb) if self.video.start_time is not None and tb else 0.0
            self.offset = self.start if self.start > 0 else 0.0
        else:
            cv2 = _cv2()
            self._cap = cv2.VideoCapture(str(self.path))
            if not self._cap.isOpened():
                raise VideoError(f"OpenCV cannot read {self.path.name}")

    def __enter__(self) -> "Decoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __iter__(self) -> Iterator[Frame | AudioPacket]:
        return self._iter_pyav() if self.pyav else self._iter_opencv()

    def frames(self) -> Iterator[Frame]:
        for item in self:
            if isinstance(item, Frame):
                yield item

    def _selected(self, t: float) -> int:
        """-1 before the selection, 0 inside, 1 after it (a microsecond of slack for rounding)."""
        if t < self.start - 1e-6:
            return -1
        if self.end is not None and t >= self.end - 1e-6:
            return 1
        return 0

    def _iter_pyav(self) -> Iterator[Frame | AudioPacket]:
        c, v = self.container, self.video
        tb = v.time_base
        if self.start > 0:
            target = int(math.floor((self.start + self.t0) / tb)) if tb else 0
            try:
                c.seek(target, stream=v, backward=True)
            except Exception:  # noqa: BLE001 - not seekable: decode from the beginning
                c.seek(0)
        index = 0
        fallback_step = 1.0 / float(v.average_rate or 25)
        streams = [v, *self.audio_streams]
        video_done = False
        audio_done: set[int] = set()
        for packet in c.demux(*streams):
            if packet.stream.type == "audio":
                if packet.pts is None or packet.size == 0:
                    continue
                t = float(packet.pts * packet.time_base) - self.t0
                if self.start > 0 and t < self.start - 1e-6:
                    continue
                if self.end is not None and t >= self.end - 1e-6:
                    audio_done.add(packet.stream.index)
                    if video_done and len(audio_done) == len(self.audio_streams):
                        return  # past the end in every stream: the rest of the file is not read
                    continue
                yield AudioPacket(packet, packet.stream.index)
                continue
            if video_done:
                continue
            try:
                decoded = packet.decode()
            except Exception as e:  # noqa: BLE001 - a damaged packet: say which frame
                raise VideoError(f"{self.path.name}: cannot decode the video after frame {index}: {e}") from None
            for frame in decoded:
                done = self._frame(frame, index, fallback_step)
                if done == "after":
                    video_done = True
                    if not self.audio_streams or len(audio_done) == len(self.audio_streams):
                        return
                    continue
                if done is not None:
                    yield done
                    index += 1

    def _frame(self, frame: Any, index: int, step: float):
        tb = self.video.time_base
        t = float(frame.pts * tb) - self.t0 if frame.pts is not None and tb else index * step + self.start
        where = self._selected(t)
        if where < 0:
            return None
        if where > 0:
            return "after"
        rgb = upright(frame.to_ndarray(format="rgb24"), _rotation_of(frame))
        return Frame(index, t, rgb, frame.pts, frame if self.keep_source else None)

    def _iter_opencv(self) -> Iterator[Frame]:
        cv2 = _cv2()
        cap = self._cap
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        n = 0
        index = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            t = n / fps
            n += 1
            where = self._selected(t)
            if where < 0:
                continue
            if where > 0:
                return
            yield Frame(index, t, np.ascontiguousarray(bgr[:, :, ::-1]))
            index += 1


def read_frame_at(path: str | Path, t: float, backend: str = "auto") -> Frame:
    """The frame shown at time ``t`` (the last frame starting at or before it)."""
    info_end = None
    with Decoder(path, start=max(0.0, t), end=info_end, backend=backend) as d:
        for frame in d.frames():
            return frame
    with Decoder(path, backend=backend) as d:  # past the end: the last frame
        last = None
        for frame in d.frames():
            last = frame
        if last is None:
            raise VideoError(f"{Path(path).name} has no frames")
        return last


# ----------------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class EncoderChoice:
    """The video encoder used, and what the user is told about it."""

    codec: str
    pix_fmt: str
    options: dict = field(default_factory=dict, hash=False, compare=False)
    note: str | None = None  # why this one (a fallback), or None

    def describe(self) -> str:
        name = H264_NAMES.get(self.codec, self.codec)
        return f"{name} ({self.codec}, {self.pix_fmt})"


_probe_cache: dict[tuple[str, str], bool] = {}


def encoder_works(codec: str, pix_fmt: str = "yuv420p") -> bool:
    """True when this FFmpeg has the encoder and it opens (checked once per process)."""
    key = (codec, pix_fmt)
    if key in _probe_cache:
        return _probe_cache[key]
    ok = False
    if have_pyav():
        av = _av()
        try:
            ctx = av.CodecContext.create(codec, "w")
            ctx.width, ctx.height, ctx.pix_fmt = 64, 64, pix_fmt
            ctx.time_base = Fraction(1, 25)
            ctx.framerate = Fraction(25)
            ctx.open()
            ok = True
            del ctx
        except Exception:  # noqa: BLE001 - missing, or it refuses this machine (no GPU, ...)
            ok = False
    _probe_cache[key] = ok
    return ok


def container_of(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in CONTAINERS:
        raise VideoError(f"unknown video file type {suffix or '(none)'}: use one of {', '.join(CONTAINERS)}")
    return CONTAINERS[suffix]


def _pix_fmt_for(codec: str, width: int, height: int, wanted: str | None = None) -> str:
    av = _av()
    try:
        formats = [f.name for f in (av.Codec(codec, "w").video_formats or [])]
    except Exception:  # noqa: BLE001
        raise VideoError(f"this FFmpeg has no video encoder named {codec!r}") from None
    if wanted:
        if formats and wanted not in formats:
            raise VideoError(f"{codec} cannot encode {wanted}; it takes {', '.join(formats)}")
        return wanted
    if codec in LOSSLESS_RGB:
        for f in RGB_FORMATS:
            if f in formats:
                return f
    odd = width % 2 or height % 2
    if not odd and (not formats or "yuv420p" in formats):
        return "yuv420p"
    for f in ("yuv444p", *RGB_FORMATS):  # 4:2:0 needs even sides
        if f in formats:
            return f
    return formats[0] if formats else "yuv420p"


def choose_encoder(path: str | Path, width: int, height: int, codec: str | None = None, *,
                   crf: int | None = None, pix_fmt: str | None = None) -> EncoderChoice:
    """The encoder for ``path``'s container: ``codec`` if named, else the first that works of
    :data:`PREFERRED_ENCODERS` (H.264 yuv420p in MP4 when this FFmpeg has it)."""
    fmt = container_of(path)
    candidates = (codec,) if codec else PREFERRED_ENCODERS[fmt]
    tried = []
    for name in candidates:
        try:
            pf = _pix_fmt_for(name, width, height, pix_fmt) if have_pyav() else "yuv420p"
        except VideoError:
            if codec and pix_fmt:
                raise
            pf = None
        if pf is None or not encoder_works(name, pf):
            tried.append(name)
            continue
        options: dict[str, str] = {}
        q = crf if crf is not None else (0 if name == "libx264rgb" else DEFAULT_CRF.get(name))
        if name in ("libx264", "libx264rgb"):
            options.update({"crf": str(q), "preset": "medium"})
        elif name in ("libvpx-vp9", "libsvtav1") and q is not None:
            options.update({"crf": str(q)} if name == "libsvtav1" else {"crf": str(q), "b": "0"})
        elif name == "mpeg4":
            options.update({"qscale": "2"})
        note = None
        if tried:
            note = (f"{', '.join(tried)} {'is' if len(tried) == 1 else 'are'} not available in this FFmpeg; "
                    f"encoding with {H264_NAMES.get(name, name)} ({name}) instead")
        if pf != "yuv420p" and name not in LOSSLESS_RGB and pix_fmt is None:
            note = ((note + "; ") if note else "") + f"{width}×{height} has an odd side, so the pixels are {pf}"
        return EncoderChoice(name, pf, options, note)
    if codec:
        raise VideoError(f"the encoder {codec!r} is not available in this FFmpeg (or cannot encode "
                         f"{width}×{height}); leave out --codec to pick one automatically")
    raise VideoError(f"no video encoder for {Path(path).suffix} works in this FFmpeg (tried {', '.join(tried)}); "
                     "write .mkv or .mp4")


def partial_path(path: Path) -> Path:
    """Where an output is written until it is complete (same folder, hidden, same suffix)."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


class ClipWriter:
    """Writes the output clip to a temporary file; :meth:`finish` renames it over the real name.

    Video frames are encoded with their source timestamps (shifted by the trim start), so the
    frame rate and any variable frame timing carry over; audio packets are copied unchanged, or
    re-encoded (and :attr:`audio_notes` says so) when the output container cannot hold them.
    """

    def __init__(self, path: str | Path, decoder: Decoder, info: ClipInfo, *, codec: str | None = None,
                 crf: int | None = None, pix_fmt: str | None = None):
        self.path = Path(path)
        self.tmp = partial_path(self.path)
        self.decoder = decoder
        self.info = info
        self.frames = 0
        self.audio_notes: list[str] = []
        self._transcoders: dict[int, Any] = {}
        self._out_audio: dict[int, Any] = {}
        self.out: Any = None
        self._cv_writer: Any = None
        fmt = container_of(self.path)
        if not self.path.parent.exists():
            raise VideoError(f"folder does not exist: {self.path.parent}")
        if not decoder.pyav:
            self._open_opencv()
            return
        av = _av()
        v = decoder.video
        coded_w, coded_h = v.codec_context.width, v.codec_context.height
        self.encoder = choose_encoder(self.path, coded_w, coded_h, codec, crf=crf, pix_fmt=pix_fmt)
        options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        self.out = av.open(str(self.tmp), "w", format=fmt, options=options)
        try:
            rate = Fraction(v.average_rate or v.guessed_rate or 25)
            # Timestamps: the input's own when its time base is fine enough; a coarse one (Matroska
            # counts milliseconds) is replaced by 1/(100 x rate), and times the rounding explains are
            # put back on the frame grid, so 24 fps stays exactly 24 fps in any container.
            fine = Fraction(rate.denominator, rate.numerator * 100)
            self._in_tb = v.time_base
            self._snap = v.time_base is None or v.time_base > fine
            self._rate = rate
            tb = fine if self._snap else v.time_base
            vs = self.out.add_stream(self.encoder.codec, rate=rate, options=dict(self.encoder.options))
            vs.width, vs.height, vs.pix_fmt = coded_w, coded_h, self.encoder.pix_fmt
            vs.codec_context.time_base = tb
            vs.time_base = tb
            for attr in ("color_primaries", "color_trc", "colorspace", "color_range"):
                try:
                    setattr(vs.codec_context, attr, getattr(v.codec_context, attr))
                except Exception:  # noqa: BLE001 - an encoder that takes no colour tags
                    pass
            if info.rotation:
                vs.set_display_rotation(info.rotation)
            vs.thread_type = "AUTO"
            self.vstream = vs
            for a in decoder.audio_streams:
                self._add_audio(a, fmt)
        except Exception:
            self.abort()
            raise

    # -- audio
    def _add_audio(self, a: Any, fmt: str) -> None:
        av = _av()
        allowed = AUDIO_COPY.get(fmt)
        if allowed is None or a.codec_context.name in allowed:
            try:
                self._out_audio[a.index] = self.out.add_stream_from_template(a)
                self.audio_notes.append(f"{a.codec_context.name} copied")
                return
            except ValueError:
                pass  # the container cannot hold this codec: re-encode it
        target = AUDIO_FALLBACK.get(fmt, "aac")
        rate = int(a.codec_context.sample_rate or 48000)
        if target == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
            rate = 48000
        os_ = self.out.add_stream(target, rate=rate)
        try:  # a layout with named channels ("2 channels" is not one encoders take)
            os_.layout = av.AudioLayout(int(a.codec_context.channels or 2)).name
        except Exception:  # noqa: BLE001
            pass
        self._out_audio[a.index] = os_
        self._transcoders[a.index] = av.AudioResampler(format=os_.codec_context.format.name,
                                                       layout=os_.codec_context.layout.name, rate=rate)
        self.audio_notes.append(f"{a.codec_context.name} re-encoded as {target} ({fmt.upper()} cannot hold "
                                f"{a.codec_context.name})")

    def add_audio(self, item: AudioPacket) -> None:
        if self.out is None or item.stream_index not in self._out_audio:
            return
        out_stream = self._out_audio[item.stream_index]
        p = item.packet
        if item.stream_index in self._transcoders:
            for frame in p.decode():
                frame.pts = None
                for f in self._transcoders[item.stream_index].resample(frame):
                    for q in out_stream.encode(f):
                        self.out.mux(q)
            return
        if self.decoder.offset:
            shift = int(round(self.decoder.offset / p.time_base))
            p.pts = p.pts - shift
            if p.dts is not None:
                p.dts = p.dts - shift
        p.stream = out_stream
        self.out.mux(p)

    # -- video
    def add_frame(self, frame: Frame, edited_rgb: np.ndarray | None = None) -> None:
        """Encode ``frame``: unchanged (``edited_rgb`` None) or with this upright picture instead."""
        self.frames += 1
        if self._cv_writer is not None:
            cv2 = _cv2()
            rgb = frame.rgb if edited_rgb is None else edited_rgb
            self._cv_writer.write(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
            return
        av = _av()
        src = frame.source
        if edited_rgb is None and src is not None:
            out_frame = src
        else:
            rgb = stored(edited_rgb if edited_rgb is not None else frame.rgb, self.info.rotation)
            out_frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if src is not None:  # the same colour matrix both ways: unchanged pixels stay unchanged
                out_frame.colorspace = src.colorspace
                out_frame.color_range = src.color_range
        out_frame.pts = self._pts(frame)
        out_frame.time_base = self.vstream.codec_context.time_base
        for q in self.vstream.encode(out_frame):
            self.out.mux(q)

    def _pts(self, frame: Frame) -> int:
        tb = self.vstream.codec_context.time_base
        if not self._snap and frame.pts is not None:
            return frame.pts - int(round(self.decoder.offset / self._in_tb))
        t = (frame.time + self.decoder.t0 - self.decoder.offset) if frame.pts is not None else \
            frame.index / self._rate
        k = round(t * self._rate)
        slack = float(self._in_tb or 0) * float(self._rate) + 1e-9
        if abs(float(t * self._rate) - k) <= slack:
            return int(round(Fraction(k) / self._rate / tb))
        return int(round(t / tb))

    # -- closing
    def finish(self) -> Path:
        """Flush the encoders, close the file and rename it to its real name."""
        if self._cv_writer is not None:
            self._cv_writer.release()
            self._cv_writer = None
        elif self.out is not None:
            try:
                for q in self.vstream.encode(None):
                    self.out.mux(q)
                for index, resampler in self._transcoders.items():
                    s = self._out_audio[index]
                    for f in resampler.resample(None):
                        for q in s.encode(f):
                            self.out.mux(q)
                    for q in s.encode(None):
                        self.out.mux(q)
                self.out.close()
                self.out = None
            except Exception as e:  # noqa: BLE001
                self.abort()
                raise VideoError(f"writing {self.path.name} failed: {e}") from None
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop and remove the temporary file (the real name is never touched)."""
        try:
            if self.out is not None:
                self.out.close()
        except Exception:  # noqa: BLE001
            pass
        self.out = None
        if self._cv_writer is not None:
            self._cv_writer.release()
            self._cv_writer = None
        try:
            self.tmp.unlink()
        except OSError:
            pass

    def _open_opencv(self) -> None:
        cv2 = _cv2()
        fourcc = {"mp4": "mp4v", "mov": "mp4v", "avi": "MJPG", "matroska": "FFV1", "webm": "VP90"}
        fmt = container_of(self.path)
        code = fourcc[fmt]
        fps = float(self.info.fps) or 25.0
        self._cv_writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*code), fps,
                                          (self.info.width, self.info.height))
        if not self._cv_writer.isOpened():
            raise VideoError(f"OpenCV cannot write {self.path.suffix} files here; install PyAV (pip install av)")
        self.encoder = EncoderChoice(code, "bgr24", {}, f"without PyAV, OpenCV writes the pictures only ({code}), "
                                     "without sound; pip install 'hyperinverter-gui[video]' for H.264 and the "
                                     "audio")
        if self.info.audio:
            self.audio_notes.append("audio left out (OpenCV cannot copy it)")
