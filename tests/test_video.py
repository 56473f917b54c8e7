"""Editing a face through a whole clip: decode, follow, smooth, invert, edit, paste back, encode, resume.

The clips are made here (``test_video_clips``): the astronaut panned and zoomed smoothly at 24 fps
with a stereo tone. Models are the tiny seeded ones of conftest (32 px generator, so the aligned
crop is 32 px); landmarks come from dlib (no download). Inversions are the expensive part (the
encoders are full IR-SE-50s), so the clips have the face in only a few frames: the others are
blurred and must pass through unchanged.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("av")
pytest.importorskip("dlib")

from test_video_clips import (  # noqa: E402
    audio_packets,
    audio_samples,
    decoded_frames,
    frame,
    motion,
    write_clip,
)

from hyperinverter_gui.alignment import AlignTransform, paste_mask  # noqa: E402
from hyperinverter_gui.engine import Cancelled, CancelToken, Engine, ModelFiles  # noqa: E402
from hyperinverter_gui.video import VideoError, VideoJob, VideoSettings, probe, run_to_end  # noqa: E402
from hyperinverter_gui.video.media import Decoder, choose_encoder, encoder_works, parse_time  # noqa: E402
from hyperinverter_gui.video.stabilize import (  # noqa: E402
    crop_jitter,
    quad_from_params,
    segments,
    smooth_params,
    smooth_track,
)

FPS = 24
FACE_A = range(10, 14)  # frames of clip A that show the face (the rest are blurred)
FACE_B = range(12, 14)


def _consume(gen):
    for _ in gen:
        pass


@pytest.fixture(scope="module")
def clips(tmp_path_factory, astronaut):
    d = tmp_path_factory.mktemp("clips")
    a = write_clip(d / "a.mkv", [frame(astronaut, t, 24, blur=t not in FACE_A) for t in range(24)])
    b = write_clip(d / "b.mp4", [frame(astronaut, t, 24, blur=t not in FACE_B) for t in range(24)],
                   codec="libx264", pix_fmt="yuv420p", audio="aac", rotation=90)
    return {"a": a, "b": b, "dir": d}


@pytest.fixture(scope="module")
def directions(tmp_path_factory):
    d = tmp_path_factory.mktemp("directions")
    torch.save(torch.randn(1, 512, generator=torch.Generator().manual_seed(11)) * 0.5, d / "age.pt")
    (d / "manifest.toml").write_text('[[slider]]\nname = "age"\nlabel = "Age"\ngroup = "InterFaceGAN"\n'
                                     'kind = "interfacegan"\nfile = "age.pt"\nrange = [-5.0, 5.0]\n')
    return d


@pytest.fixture(scope="module")
def engine(model_dir, tmp_path_factory):
    e = Engine("cpu", "float32", cache=tmp_path_factory.mktemp("cache"))
    e.load(ModelFiles(generator=model_dir / "G.pkl", inverter=model_dir / "HI.pt"))
    return e


@pytest.fixture(scope="module")
def age(engine, directions):
    from hyperinverter_gui.editing.library import load_library

    g = engine.generator()
    return load_library(directions, num_ws=g.num_ws, img_resolution=g.img_resolution).directions["age"]


@pytest.fixture(scope="module")
def run_a(clips, engine, age):
    """Clip A edited (age +2) into a lossless MKV, uninterrupted; memory traced."""
    out = clips["dir"] / "a_edited.mkv"
    job = VideoJob(VideoSettings(clips["a"], out, [(age, 2.0)], batch_size=2, detector="dlib", codec="ffv1",
                                 work=clips["dir"] / "work_a", keep_work=True))
    stages = []
    report = run_to_end(job, engine, on_progress=lambda p: stages.append((p.stage, p.eta)))
    return job, report, out, stages


# ------------------------------------------------------------------ small parts


def test_times_parse():
    assert parse_time("83.5") == 83.5 and parse_time("1:23.5") == 83.5 and parse_time("00:01.0") == 1.0
    assert parse_time("0:01:23.5") == 83.5 and parse_time(2) == 2.0
    with pytest.raises(VideoError):
        parse_time("1m")


def test_encoder_choice_follows_what_this_ffmpeg_has():
    mp4 = choose_encoder("x.mp4", 256, 256)
    if encoder_works("libx264"):
        assert (mp4.codec, mp4.pix_fmt, mp4.note) == ("libx264", "yuv420p", None)
    else:  # told which encoder replaced H.264
        assert mp4.note and mp4.codec in mp4.note
    odd = choose_encoder("x.mkv", 255, 256)
    assert odd.pix_fmt != "yuv420p" and "odd" in odd.note  # 4:2:0 needs even sides: the user is told
    assert choose_encoder("x.mkv", 256, 256, "ffv1").pix_fmt in ("gbrp", "bgr0")  # lossless RGB
    with pytest.raises(VideoError, match="not available"):
        choose_encoder("x.mp4", 256, 256, "no-such-encoder")
    with pytest.raises(VideoError, match="unknown video file type"):
        choose_encoder("x.gif", 256, 256)


def test_crop_smoothing_follows_steady_motion_and_averages_noise():
    rng = np.random.default_rng(0)
    t = np.arange(40, dtype=np.float64)[:, None]
    steady = np.hstack([100 + 1.5 * t, 80 + 0.5 * t, 40 + 0.2 * t, 2 + 0 * t])  # moving, growing square
    assert np.allclose(smooth_params(steady, 3.0), steady, atol=1e-9)  # no lag on a constant speed
    noisy = steady + rng.normal(0, 0.8, steady.shape)
    sm = smooth_params(noisy, 3.0)
    rms = lambda x: float(np.sqrt(((x - steady) ** 2).mean()))  # noqa: E731
    assert rms(sm) < 0.5 * rms(noisy)
    bad = noisy.copy()
    bad[20, :2] += 25  # one wild detection
    assert np.abs(smooth_params(bad, 3.0)[[18, 19, 21, 22], :2] - steady[[18, 19, 21, 22], :2]).max() < 1.5
    track = {i: noisy[i] for i in list(range(10)) + list(range(15, 40))}
    assert segments(track) == [list(range(10)), list(range(15, 40))]
    smoothed = smooth_track(track, 3.0)
    assert set(smoothed) == set(track)  # the gap is not bridged, and nothing is invented in it
    raw_j, sm_j = crop_jitter(track, 1024), crop_jitter(smoothed, 1024)
    assert crop_jitter({i: steady[i] for i in range(40)}, 1024) < 1e-6 and sm_j < 0.2 * raw_j


def test_opencv_decodes_the_same_pictures_without_sound(clips):
    info = probe(clips["a"], "opencv")
    assert (info.width, info.height, info.frames, float(info.fps)) == (256, 256, 24, 24.0)
    with Decoder(clips["a"], backend="opencv") as cv, Decoder(clips["a"]) as pyav:
        a, b = list(cv.frames()), list(pyav.frames())
    assert len(a) == len(b) == 24 and all(np.array_equal(x.rgb, y.rgb) for x, y in zip(a, b))
    from hyperinverter_gui.video.media import ClipWriter

    out = clips["dir"] / "opencv.mkv"
    with Decoder(clips["a"], backend="opencv") as d:  # and written by OpenCV: pictures only, the user told
        w = ClipWriter(out, d, info)
        for f in d:
            w.add_frame(f)
        w.finish()
    assert "without sound" in w.encoder.note and probe(out).frames == 24 and not probe(out).audio


# ------------------------------------------------------------------ the whole clip


def test_edited_clip_keeps_frames_rate_length_and_sound_bit_for_bit(clips, run_a):
    job, report, out, _ = run_a
    src, dst = probe(clips["a"]), probe(out)
    assert (dst.frames, dst.fps, dst.width, dst.height) == (src.frames, src.fps, 256, 256) == (24, 24, 256, 256)
    assert abs(dst.duration - src.duration) < 1e-3 and abs(report.duration - 1.0) < 1e-9
    a_in, a_out = audio_packets(clips["a"]), audio_packets(out)
    assert len(a_in) == len(a_out) > 1 and a_in == a_out  # every packet, bytes and times
    assert np.array_equal(audio_samples(clips["a"]), audio_samples(out))
    assert report.audio == ["flac copied"]
    assert (report.edited, report.no_face, report.rendered, report.cached) == (4, 20, 4, 0)


def test_pixels_outside_the_face_mask_are_unchanged_and_frames_without_the_face_pass_through(clips, run_a):
    job, report, out, _ = run_a
    before, after = decoded_frames(clips["a"]), decoded_frames(out)
    assert sorted(job.plan) == list(FACE_A)
    for i, (x, y) in enumerate(zip(before, after)):
        if i not in FACE_A:
            assert np.array_equal(x, y), i
            continue
        mask = paste_mask(job.transform(i))
        outside = mask == 0
        assert outside.mean() > 0.5 and np.array_equal(x[outside], y[outside]), i
        inside = mask > 0.5
        assert np.abs(x[inside].astype(int) - y[inside]).mean() > 5, i  # the face was replaced


def test_memory_stays_bounded_by_the_batch_not_the_clip(run_a, tmp_path, astronaut, engine):
    job, _, _, stages = run_a
    assert job.peak_buffer <= 2  # inversions held at once: one batch
    assert [s for s, _ in stages if s == "encode"] and any(eta is not None for _, eta in stages)
    # Decoding, following the face and encoding stream the clip: twice the frames, the same peak
    # (numpy memory, traced; a clip held whole would add 196 kB per frame).
    peaks = []
    for n in (24, 48):
        clip = write_clip(tmp_path / f"{n}.mkv", [frame(astronaut, t, n, blur=True) for t in range(n)])
        job = VideoJob(VideoSettings(clip, tmp_path / f"{n}_out.mkv", detector="haar", codec="ffv1"))
        tracemalloc.start()
        try:
            report = run_to_end(job, engine)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert report.no_face == n and report.frames == n
    assert peaks[1] < peaks[0] + 256 * 256 * 3, peaks


def test_mp4_with_rotation_trim_and_smoothed_codes(clips, engine, age):
    out = clips["dir"] / "b_edited.mp4"
    job = VideoJob(VideoSettings(clips["b"], out, [(age, -2.0)], batch_size=2, detector="dlib", smooth=3,
                                 start=parse_time("00:00.25"), end=parse_time("00:00.75")))
    report = run_to_end(job, engine)
    src, dst = probe(clips["b"]), probe(out)
    if encoder_works("libx264"):
        assert report.encoder.startswith("H.264") and "yuv420p" in report.encoder
    assert dst.codec in ("h264", "mpeg4", "hevc")
    assert dst.rotation == src.rotation == 90 and (dst.width, dst.height) == (256, 256)
    # exactly the frames with 0.25 <= t < 0.75: 6..17
    assert dst.frames == report.frames == 12 and dst.fps == src.fps == 24
    assert abs(dst.duration - 0.5) < 1e-3
    assert sorted(job.plan) == [6, 7]  # frames 12 and 13 of the clip, the only ones with the face
    assert report.rendered == 2 and report.inverted == 2 and job.peak_buffer <= 2 + 2
    before, after = decoded_frames(clips["b"])[6:18], decoded_frames(out)
    for i, (x, y) in enumerate(zip(before, after)):
        diff = np.abs(x.astype(int) - y)
        if i in job.plan:
            mask = paste_mask(job.transform(i))
            assert diff[mask > 0.5].mean() > 5 and diff[mask == 0].mean() < 3  # upright, in place
        else:
            assert diff.mean() < 3  # H.264 twice: close, not equal
    # the sound of [0.25, 0.75): the same packets, bytes unchanged, moved to start at 0
    wanted = [(b, t - 0.25) for b, t in audio_packets(clips["b"]) if 0.25 - 1e-6 <= t < 0.75 - 1e-6]
    got = audio_packets(out)
    assert [b for b, _ in got] == [b for b, _ in wanted] and len(got) >= 10
    assert all(abs(t1 - t2) < 1e-3 for (_, t1), (_, t2) in zip(got, wanted))
    assert report.audio == ["aac copied"] and not Path(str(out) + ".work").exists()  # work folder removed


def test_the_chosen_face_stays_chosen_when_a_larger_one_appears(tmp_path, astronaut):
    import cv2

    head = astronaut[10:230, 110:300]
    scenes = []
    for t in range(8):
        bg = cv2.GaussianBlur(cv2.resize(astronaut, (256, 192)), (0, 0), 8)
        bg[40:150, 8 + t:103 + t] = cv2.resize(head, (95, 110))
        if t >= 3:  # a second, larger face comes in on the right
            bg[30:170, 128:249] = cv2.resize(head[:, ::-1], (121, 140))
        scenes.append(bg)
    clip = write_clip(tmp_path / "two.mkv", scenes, audio=None)
    job = VideoJob(VideoSettings(clip, tmp_path / "out.mkv", detector="dlib", stabilize=0))
    _consume(job.analyse(resolution=32))
    rows = job.tracks
    assert [r["faces"] for r in rows] == [1, 1, 1, 2, 2, 2, 2, 2]
    assert sorted(job.plan) == list(range(8))
    centres = [(r["box"][0] + r["box"][2]) / 2 for r in rows]
    assert all(c < 128 for c in centres), centres  # never switched to the larger face
    job2 = VideoJob(VideoSettings(clip, tmp_path / "out2.mkv", detector="dlib", face=1, work=tmp_path / "w2"))
    _consume(job2.analyse(resolution=32))
    # --face 2: the second largest face of the first frame that has two (frame 3: the small one on the left)
    assert sorted(job2.plan) == [3, 4, 5, 6, 7]
    assert all((r["box"][0] + r["box"][2]) / 2 < 128 for r in job2.tracks[3:])


def test_temporal_stability_of_the_crop_is_measured_and_smoothing_lowers_it(tmp_path, astronaut, capsys):
    n = 48
    clip = write_clip(tmp_path / "pan.mkv", [frame(astronaut, t, n) for t in range(n)], audio=None)
    for detector in ("dlib", "haar"):
        results = _jitter(clip, n, detector, tmp_path)
        with capsys.disabled():
            print(f"\n{detector}: crop landmark jitter on the smooth pan (true face points in the crop, px): "
                  f"smoothing off {results[(0.0, 1024)]:.3f} at 1024 / {results[(0.0, 32)]:.4f} at 32; on (sigma 3) "
                  f"{results[(3.0, 1024)]:.3f} at 1024 / {results[(3.0, 32)]:.4f} at 32; crop-window jitter "
                  f"{results[(0.0, 'self')]:.3f} -> {results[(3.0, 'self')]:.3f} px at 1024")
        assert results[(3.0, 1024)] < 1.0 and results[(3.0, 32)] < 1.0
        assert results[(3.0, 1024)] < 0.3 * results[(0.0, 1024)]
        assert results[(3.0, "self")] < 0.3 * results[(0.0, "self")]


def _jitter(clip, n, detector, tmp_path):
    results = {}
    for sigma in (0.0, 3.0):
        job = VideoJob(VideoSettings(clip, tmp_path / "o.mkv", detector=detector, stabilize=sigma,
                                     work=tmp_path / "w"))  # the second pass reuses the detections
        _consume(job.analyse(resolution=32))
        assert sorted(job.plan) == list(range(n))
        # Where the true face points are: the detections mapped back through the known motion and averaged.
        inv = [np.linalg.inv(np.vstack([motion(t, n), [0, 0, 1]])) for t in range(n)]
        pts = [np.array(job.tracks[t]["points5"], dtype=np.float64) for t in range(n)]
        ref = np.mean([(np.c_[p, np.ones(5)] @ m.T)[:, :2] for p, m in zip(pts, inv)], axis=0)
        for size in (32, 1024):
            crops = []
            for t in range(n):
                tf = AlignTransform(quad_from_params(job.plan[t]), (256, 256), size)
                true = np.c_[ref, np.ones(5)] @ np.vstack([motion(t, n), [0, 0, 1]]).T
                crops.append(tf.to_aligned(true[:, :2]))
            c = np.array(crops)
            d2 = c[:-2] - 2 * c[1:-1] + c[2:]
            results[(sigma, size)] = math.sqrt((d2 ** 2).sum(-1).mean() / 6)
        results[(sigma, "self")] = crop_jitter(job.plan, 1024)
    return results


def test_cancel_keeps_the_work_and_never_writes_half_a_clip(clips, engine, age, tmp_path):
    out = tmp_path / "c.mkv"
    token = CancelToken()
    job = VideoJob(VideoSettings(clips["a"], out, [(age, 2.0)], batch_size=2, detector="dlib", codec="ffv1",
                                 work=clips["dir"] / "work_a"))  # the detections of run_a are reused

    def stop(p):
        if p.stage == "encode" and p.done == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        run_to_end(job, engine, token, on_progress=stop)
    assert not out.exists() and not (tmp_path / ".c.partial.mkv").exists()
    assert job.detected == 0 and job.rendered == 0 and job.cached == 4  # nothing computed twice


def test_refuses_to_overwrite_or_replace_the_input(clips):
    with pytest.raises(VideoError, match="exists"):
        VideoJob(VideoSettings(clips["a"], clips["b"]))
    with pytest.raises(VideoError, match="replace the input"):
        VideoJob(VideoSettings(clips["a"], clips["a"], overwrite=True))
    with pytest.raises(VideoError, match="end"):
        VideoJob(VideoSettings(clips["a"], clips["dir"] / "x.mp4", start=2.0, end=1.0))


# ------------------------------------------------------------------ the command, killed and resumed


def _cli(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "hyperinverter_gui", "video", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_command_resumes_after_sigkill_computing_only_the_missing_frames(clips, run_a, model_dir, directions,
                                                                          tmp_path, capsys):
    _, _, reference, _ = run_a
    out, work = tmp_path / "resumed.mkv", tmp_path / "work"
    args = [clips["a"], "-e", "age=+2", "-o", out, "--codec", "ffv1", "--batch-size", "2", "--detector", "dlib",
            "-g", model_dir / "G.pkl", "-c", model_dir / "HI.pt", "--directions", directions, "--work", work,
            "--device", "cpu"]
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "no_torch_hub")}
    proc = _cli(args, env=env)
    deadline = time.time() + 600
    crops = []
    while time.time() < deadline and proc.poll() is None:
        crops = list(work.glob("crops-*/*.png"))
        if len(crops) >= 2:  # the first batch is written; the second takes seconds
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()[0][-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = len(list(work.glob("crops-*/*.png")))
    assert 2 <= kept < 4 and not out.exists()
    resumed = _cli(args, env=env)
    text = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, text[-3000:]
    m = re.search(r"work: (\d+) frames computed now \((\d+) inversions\), (\d+) taken from the work folder; "
                  r"(\d+) frames searched", text)
    assert m, text[-3000:]
    computed, inverted, cached, searched = map(int, m.groups())
    assert (computed, inverted, cached, searched) == (4 - kept, 4 - kept, kept, 0)
    with capsys.disabled():
        print(f"\nSIGKILL after {kept} of 4 edited frames; the rerun computed {computed} and searched {searched} "
              "frames for faces")
    # the same clip as the uninterrupted run, frame for frame and packet for packet
    a, b = decoded_frames(reference), decoded_frames(out)
    assert len(a) == len(b) == 24 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert audio_packets(reference) == audio_packets(out)
    assert not work.exists()  # removed after success


def test_command_reports_errors_without_a_traceback(clips, model_dir, directions, tmp_path):
    base = ["-g", model_dir / "G.pkl", "-c", model_dir / "HI.pt", "--directions", directions, "--device", "cpu"]
    p = _cli([clips["a"], "-o", clips["b"], *base])
    text = p.communicate(timeout=300)[0]
    assert p.returncode == 2 and "exists (use --overwrite" in text and "Traceback" not in text
    p = _cli([clips["a"], "-o", tmp_path / "o.mp4", "-e", "nosuch=1", *base])
    text = p.communicate(timeout=300)[0]
    assert p.returncode == 2 and "unknown edit direction 'nosuch'" in text and "Traceback" not in text
    p = _cli([clips["a"], "-o", tmp_path / "o.mp4", "--start", "soon", *base])
    text = p.communicate(timeout=300)[0]
    assert p.returncode == 2 and "is not a time" in text


@pytest.mark.parametrize("suffix,codec,audio", [(".mp4", "libx264", "aac"), (".mov", "libx264", "aac"),
                                                (".webm", "libvpx-vp9", "libopus"), (".mkv", "libx265", "flac"),
                                                (".mkv", "libsvtav1", "libopus")])
def test_common_containers_and_codecs_decode_with_rate_and_sound(tmp_path, astronaut, suffix, codec, audio):
    if not encoder_works(codec):
        pytest.skip(f"this FFmpeg cannot encode {codec} to make the clip")
    pictures = [frame(astronaut, t, 6) for t in range(6)]
    clip = write_clip(tmp_path / f"c{suffix}", pictures, codec=codec, pix_fmt="yuv420p", audio=audio)
    info = probe(clip)
    assert (info.width, info.height, info.fps, info.frames) == (256, 256, 24, 6) and len(info.audio) == 1
    with Decoder(clip) as d:
        got = list(d.frames())
    assert [f.index for f in got] == list(range(6))
    assert all(abs(f.time - i / 24) < 1e-3 for i, f in enumerate(got))
    assert all(np.abs(f.rgb.astype(int) - p).mean() < 6 for f, p in zip(got, pictures))  # lossy, but these pictures


def test_audio_the_output_cannot_hold_is_re_encoded_and_the_user_told(tmp_path, astronaut):
    from hyperinverter_gui.video.media import AudioPacket, ClipWriter

    clip = write_clip(tmp_path / "pcm.mkv", [frame(astronaut, t, 6) for t in range(6)], audio="pcm_s16le")
    with Decoder(clip, audio=True, keep_source=True) as d:
        w = ClipWriter(tmp_path / "o.mp4", d, probe(clip))
        for item in d:
            w.add_audio(item) if isinstance(item, AudioPacket) else w.add_frame(item)
        w.finish()
    assert w.audio_notes == ["pcm_s16le re-encoded as aac (MP4 cannot hold pcm_s16le)"]
    out = probe(tmp_path / "o.mp4")
    assert out.audio[0].codec == "aac" and out.frames == 6 and out.fps == 24
    samples = audio_samples(tmp_path / "o.mp4")
    assert samples.shape[0] == 2 and abs(samples.shape[1] - 12000) <= 2048  # the quarter second, give or take


def test_the_video_package_needs_no_qt():
    code = ("import sys, hyperinverter_gui.video, hyperinverter_gui.video.pipeline, hyperinverter_gui.cli.video; "
            "sys.exit('PySide6' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
