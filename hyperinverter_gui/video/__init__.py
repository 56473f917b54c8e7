"""Editing a face through a whole video clip: decode, follow the face, smooth the crop over time,
invert in batches through the engine, edit, paste back, encode with the original sound.

``media`` reads and writes clips (PyAV, else OpenCV without sound), ``stabilize`` smooths the
crop over time and measures its jitter, ``workdir`` keeps the per-frame results that make a job
resumable, ``pipeline`` is the job itself (:class:`VideoJob`) and the Video tab's previews.
Qt-free. May import: ``engine`` and everything below it; never ``app``, ``cli`` or ``_qt``
(it sits beside ``app`` in the layers contract).
"""

from hyperinverter_gui.video.media import ClipInfo, VideoError, have_pyav, parse_time, probe
from hyperinverter_gui.video.pipeline import (
    FramePreview,
    Progress,
    VideoJob,
    VideoReport,
    VideoSettings,
    prepare_preview,
    render_preview,
    run_to_end,
)

__all__ = ["ClipInfo", "FramePreview", "Progress", "VideoError", "VideoJob", "VideoReport", "VideoSettings",
           "have_pyav", "parse_time", "prepare_preview", "probe", "render_preview", "run_to_end"]
