"""Issue 19, the command line: a catalogue of bad inputs and faults, each ending in one line and a known exit.

Every case runs ``main([...])`` in process (or a real process where a signal or two concurrent
runs are the point) in a workspace folder, and asserts: the exact exit status, exactly one
``error:`` line holding the expected words, no traceback, and that no file in the workspace
changed except the outputs the case expects (sha256 of every file before and after).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hyperinverter_gui.cli.main import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_UNEXPECTED,
    main,
    run_guarded,
)
from hyperinverter_gui.inversion.result import save_inversion
from hyperinverter_gui.media.images import tensor_to_uint8

NON_UTF8 = os.fsdecode(b"caf\xe9_\xff.png")  # a Latin-1 name: not valid UTF-8


def _bomb_png(path: Path, side: int = 30_000) -> None:
    """A PNG whose header declares side x side pixels (over PIL's bomb limit); the data is tiny."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
                     + chunk(b"IEND", b""))


@pytest.fixture()
def ws(tmp_path, photos, inverted, directions_dir, model_dir, monkeypatch):
    """A workspace: photos, saved inversions (one of NaN), a directions folder, odd files."""
    w = tmp_path / "ws"
    w.mkdir()
    Image.fromarray(tensor_to_uint8(photos[0])).save(w / "face.png")
    Image.fromarray(tensor_to_uint8(photos[1])).save(w / "other.png")
    d = w / "photos"
    d.mkdir()
    Image.fromarray(tensor_to_uint8(photos[0])).save(d / "a.png")
    Image.fromarray(tensor_to_uint8(photos[1])).save(d / "a.jpg", quality=95)
    Image.fromarray(tensor_to_uint8(photos[1])).save(d / "b.png")
    save_inversion(inverted[0], w / "a.safetensors")
    save_inversion(inverted[1], w / "b.safetensors")
    (w / "afile").write_text("a file, not a folder")
    (w / "existing_dir").mkdir()
    _bomb_png(w / "bomb.png")
    os.mkfifo(w / "pipe.png")
    Image.fromarray(tensor_to_uint8(photos[0]).copy()[:, ::-1].copy()).save(d / NON_UTF8)
    monkeypatch.chdir(w)
    return w  # the model cache is the run's (conftest): converted once, shared by these tests


def _nan_inversion(inverted, path: Path) -> None:
    """A saved inversion whose w holds NaN (written around any load-time check, like a damaged file)."""
    bad = dataclasses.replace(inverted[0], w=torch.full_like(inverted[0].w, float("nan")))
    save_inversion(bad, path)


def _hashes(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_symlink() or not p.is_dir():
            out[str(p.relative_to(folder))] = "special"
    return out


def _run(capsys, argv) -> tuple[int, str]:
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse: usage errors exit from parse_args
        rc = e.code
    captured = capsys.readouterr()
    return rc, captured.err + captured.out


def _assert_one_error_line(err: str, words: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    assert words.lower() in lines[0].lower(), (words, lines[0])
    return lines[0]


def _models(model_dir) -> list[str]:
    return ["-g", str(model_dir / "G.pkl"), "-c", str(model_dir / "HI.pt"), "--device", "cpu"]


# (case id, argv after the models are filled in, expected exit, words in the error line)
# "M" in an argv is replaced by the model flags; "INV" by the models without the checkpoint.
REFUSED = [
    # --- numbers from users, checked at the edge (the message names the flag)
    ("fps-nan", ["interpolate", "a.safetensors", "b.safetensors", "-o", "frames", "--fps", "nan"], 2, "--fps"),
    ("fps-tiny", ["interpolate", "a.safetensors", "b.safetensors", "-o", "frames", "--fps", "1e-6"], 2, "--fps"),
    ("fps-inf", ["interpolate", "a.safetensors", "b.safetensors", "-o", "frames", "--fps", "inf"], 2, "--fps"),
    ("fps-negative", ["interpolate", "a.safetensors", "b.safetensors", "-o", "frames", "--fps", "-3"], 2, "--fps"),
    ("fps-tiny-mp4-not-opencv", ["interpolate", "a.safetensors", "b.safetensors", "-o", "frames", "--mp4", "x.mp4",
                                 "--fps", "1e-6"], 2, "argument --fps: must be a number from 0.1"),
    ("fps-word", ["interpolate", "a.safetensors", "b.safetensors", "-o", "frames", "--fps", "fast"], 2, "--fps"),
    ("steps-huge", ["interpolate", "a.safetensors", "b.safetensors", "-o", "frames", "--steps", "100000"], 2,
     "--steps: must be a whole number from 2 to 300"),
    ("steps-one", ["interpolate", "a.safetensors", "b.safetensors", "-o", "frames", "--steps", "1"], 2, "--steps"),
    ("steps-fraction", ["interpolate", "a.safetensors", "b.safetensors", "-o", "frames", "--steps", "2.5"], 2,
     "--steps"),
    ("batch-zero", ["invert", "face.png", "--no-align", "-o", "x.png", "--batch-size", "0"], 2, "--batch-size"),
    ("batch-huge", ["invert", "face.png", "--no-align", "-o", "x.png", "--batch-size", "100000"], 2, "--batch-size"),
    ("face-zero", ["invert", "face.png", "-o", "x.png", "--face", "0"], 2, "--face"),
    ("edit-1e308", ["edit", "a.safetensors", "-o", "x.png", "-e", "age=1e308", "M"], 2, "age=1e308"),
    ("edit-101", ["edit", "a.safetensors", "-o", "x.png", "-e", "age=101", "M"], 2, "100"),
    ("edit-nan", ["edit", "a.safetensors", "-o", "x.png", "-e", "age=nan", "M"], 2, "age=nan"),
    ("edit-minus-inf", ["edit", "a.safetensors", "-o", "x.png", "-e", "age=-inf", "M"], 2, "age=-inf"),
    ("edit-not-a-number", ["edit", "a.safetensors", "-o", "x.png", "-e", "age=old", "M"], 2, "not a number"),
    ("ganspace-samples", ["directions", "ganspace", "--samples", "1", "-o", "pca.pt"], 2, "--samples"),
    ("ganspace-components-zero", ["directions", "ganspace", "--components", "0", "-o", "pca.pt"], 2,
     "--components"),
    ("ganspace-components-huge", ["directions", "ganspace", "--components", "100000", "-o", "pca.pt"], 2,
     "--components"),
    ("landmarks-1e308", ["align", "face.png", "-o", "al.png", "--landmarks", "1e308,2,3,4,5,6,7,8,9,10"], 2,
     "--landmarks must be finite"),
    ("landmarks-nan", ["align", "face.png", "-o", "al.png", "--landmarks", "nan,2,3,4,5,6,7,8,9,10"], 2,
     "--landmarks must be finite"),
    ("align-size", ["align", "face.png", "-o", "al.png", "--size", "100000"], 2, "--size"),
    ("feather-nan", ["paste-back", "face.png", "other.png", "-t", "t.json", "-o", "pb.png", "--feather", "nan"], 2,
     "--feather"),
    ("quality-zero", ["paste-back", "face.png", "other.png", "-t", "t.json", "-o", "pb.png", "--quality", "0"], 2,
     "--quality"),
    ("video-smooth", ["video", "clip.mp4", "-o", "out.mp4", "--smooth", "-1"], 2, "--smooth"),
    ("video-crf", ["video", "clip.mp4", "-o", "out.mp4", "--crf", "99"], 2, "--crf"),
    ("video-stabilize-nan", ["video", "clip.mp4", "-o", "out.mp4", "--stabilize", "nan"], 2, "--stabilize"),
    ("video-batch", ["video", "clip.mp4", "-o", "out.mp4", "--batch-size", "0"], 2, "--batch-size"),
    ("video-edit-1e308", ["video", "clip.mp4", "-o", "out.mp4", "-e", "age=1e308"], 2, "age=1e308"),
    # --- two outputs on one file, outputs replacing inputs (even with --overwrite)
    ("same-o-phase1", ["invert", "face.png", "--no-align", "-o", "x.png", "--phase1-output", "x.png", "M"], 2,
     "-o and --phase1-output both name"),
    ("same-o-inversion", ["invert", "face.png", "--no-align", "-o", "x.png", "--save-inversion", "x.png", "M"], 2,
     "-o and --save-inversion both name"),
    ("same-via-dotdot", ["invert", "face.png", "--no-align", "-o", "existing_dir/../x.png", "--phase1-output",
                         "x.png", "M"], 2, "both name"),
    ("o-is-input", ["invert", "face.png", "--no-align", "-o", "face.png", "--overwrite", "M"], 2,
     "would replace the input"),
    ("o-is-input-folder", ["invert", "photos", "--no-align", "-o", "photos", "--overwrite", "M"], 2,
     "is the input folder"),
    ("o-is-input-folder-dotdot", ["invert", "photos", "--no-align", "-o", "photos/../photos/", "--overwrite", "M"],
     2, "is the input folder"),
    ("two-output-folders-same", ["invert", "photos", "--no-align", "-o", "out", "--phase1-output", "out", "M"], 2,
     "both name the folder"),
    ("edit-o-is-input", ["edit", "face.png", "--no-align", "-o", "face.png", "--overwrite", "M"], 2,
     "would replace the input"),
    ("edit-o-same-inversion", ["edit", "a.safetensors", "-o", "x.png", "--save-inversion", "x.png", "M"], 2,
     "both name"),
    ("edit-inversion-is-input", ["edit", "a.safetensors", "-o", "x.png", "--save-inversion", "a.safetensors",
                                 "--overwrite", "M"], 2, "would replace the input"),
    ("interp-gif-on-frame", ["interpolate", "a.safetensors", "b.safetensors", "-o", "frames", "--gif",
                             "frames/frame_001.png", "M"], 2, "both name"),
    ("interp-gif-is-input", ["interpolate", "a.safetensors", "b.safetensors", "-o", "frames", "--gif",
                             "a.safetensors", "--overwrite", "M"], 2, "would replace the input"),
    ("align-o-is-input", ["align", "face.png", "-o", "face.png", "--overwrite"], 2, "would replace the input"),
    ("paste-o-is-input", ["paste-back", "face.png", "other.png", "-t", "t.json", "-o", "other.png", "--overwrite"],
     2, "would replace the input"),
    # --- outputs that can never be written: said before any work, with the path
    ("o-under-a-file", ["invert", "face.png", "--no-align", "-o", "afile/x.png", "M"], 2, "is a file, not a folder"),
    ("o-folder-missing", ["edit", "a.safetensors", "-o", "nowhere/x.png", "M"], 2, "folder does not exist"),
    ("o-is-a-folder", ["invert", "face.png", "--no-align", "-o", "existing_dir", "M"], 2, "is a folder"),
    ("o-folder-under-file", ["invert", "photos", "--no-align", "-o", "afile/out", "M"], 2, "afile"),
    ("interp-o-under-file", ["interpolate", "a.safetensors", "b.safetensors", "-o", "afile/frames", "M"], 2,
     "is a file, not a folder"),
    ("exists-no-overwrite", ["invert", "face.png", "--no-align", "-o", "other.png", "M"], 2, "exists"),
    # --- bad inputs
    ("bomb-no-align", ["invert", "bomb.png", "--no-align", "-o", "x.png", "M"], 2, "too large to open safely"),
    ("fifo-no-align", ["invert", "pipe.png", "--no-align", "-o", "x.png", "M"], 2, "not a regular file"),
    ("fifo-aligned", ["invert", "pipe.png", "-o", "x.png", "M"], 2, "not a regular file"),
    ("input-missing", ["invert", "missing.png", "--no-align", "-o", "x.png", "M"], 2, "input not found"),
    ("nan-inversion-edit", ["edit", "nan.safetensors", "-o", "x.png", "-e", "age=1", "M"], 2, "nan"),
    ("nan-inversion-interpolate", ["interpolate", "nan.safetensors", "b.safetensors", "-o", "frames", "--steps", "3",
                                   "M"], 2, "nan"),
    # --- usage errors are one line too
    ("missing-output", ["invert", "face.png"], 2, "-o"),
    ("unknown-flag", ["edit", "face.png", "-o", "x.png", "--frobnicate"], 2, "--frobnicate"),
]


@pytest.mark.parametrize("case, argv, code, words", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_with_one_line_and_nothing_changed(ws, capsys, model_dir, inverted, directions_dir, case, argv,
                                                   code, words):
    if case.startswith("nan-"):
        _nan_inversion(inverted, ws / "nan.safetensors")
    if case.startswith("paste"):
        (ws / "t.json").write_text("{}")
    argv = [a for x in argv for a in (_models(model_dir) + ["--directions", str(directions_dir)]
                                      if x == "M" and argv[0] == "edit" else _models(model_dir) if x == "M" else [x])]
    before = _hashes(ws)
    rc, err = _run(capsys, argv)
    line = _assert_one_error_line(err, words)
    assert rc == code, (rc, err)
    if case == "fps-tiny-mp4-not-opencv":
        assert "opencv" not in line.lower()
    if case.startswith("nan-"):
        assert "nan" in line.lower() or "finite" in line.lower() or "invalid numbers" in line.lower()
    assert _hashes(ws) == before


def test_folder_name_clashes_and_non_utf8_names_keep_every_result(ws, capsys, model_dir):
    """face.png and face.jpg get distinct results; a name that is not UTF-8 is written and printed."""
    before = _hashes(ws)
    rc, err = _run(capsys, ["invert", "photos", "--no-align", "-o", "out", "--save-inversion", "inv",
                            *_models(model_dir)])
    assert rc == 0 and "Traceback" not in err and "error" not in err, err
    stem = Path(NON_UTF8).stem
    made = set(_hashes(ws)) - set(before)
    assert made == {"out/a_png.png", "out/a_jpg.png", "out/b.png", f"out/{stem}.png", "inv/a_png.safetensors",
                    "inv/a_jpg.safetensors", "inv/b.safetensors", f"inv/{stem}.safetensors"}, made
    assert {k: v for k, v in _hashes(ws).items() if k in before} == before
    a_png = np.asarray(Image.open(ws / "out/a_png.png"))
    a_jpg = np.asarray(Image.open(ws / "out/a_jpg.png"))
    assert not np.array_equal(a_png, a_jpg)  # two photos, two results
    assert "4 of 4 images inverted" in err


def _enospc_on_link_and_replace(monkeypatch, folder: Path):
    """The disk is full when a finished file is given its name in ``folder`` (os-level patch)."""
    real_link, real_replace = os.link, os.replace

    def full(real):
        def call(src, dst, *a, **k):
            if Path(dst).parent.resolve() == folder.resolve():
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
            return real(src, dst, *a, **k)
        return call

    monkeypatch.setattr(os, "link", full(real_link))
    monkeypatch.setattr(os, "replace", full(real_replace))


def _fail_opening_in(monkeypatch, folder: Path, code: int):
    """The OS refuses to create files in ``folder`` (EACCES: read-only; root ignores chmod, so os.open)."""
    real_open = os.open

    def refusing(path, flags, *a, **k):
        if (flags & os.O_CREAT) and Path(os.fsdecode(path)).parent.resolve() == folder.resolve():
            raise OSError(code, os.strerror(code), os.fsdecode(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", refusing)


@pytest.mark.parametrize("fault, words", [
    ("enospc-inversion", "not enough disk space to write"),
    ("enospc-png", "not enough disk space to write"),
    ("eacces", "no permission to write"),
    ("erofs", "no permission to write"),
])
def test_write_faults_are_reported_with_the_path(ws, capsys, model_dir, directions_dir, monkeypatch, fault, words):
    out = ws / "out"
    out.mkdir()
    # Saved inversions are edited with the generator alone: no inverter runs, the case stays quick.
    edit = ["edit", "a.safetensors", "-e", "age=1", "--directions", str(directions_dir)]
    if fault == "enospc-inversion":
        argv = [*edit, "-o", "x.png", "--save-inversion", "out/x.safetensors"]
        _enospc_on_link_and_replace(monkeypatch, out)
        target = "x.safetensors"
    elif fault == "enospc-png":
        argv = [*edit, "-o", "out/x.png"]
        _enospc_on_link_and_replace(monkeypatch, out)
        target = "x.png"
    else:
        argv = [*edit, "-o", "out/x.png"]
        _fail_opening_in(monkeypatch, out, errno.EACCES if fault == "eacces" else errno.EROFS)
        target = "x.png"
    before = _hashes(ws)
    rc, err = _run(capsys, [*argv, *_models(model_dir)])
    line = _assert_one_error_line(err, words)
    assert rc == EXIT_ERROR and target in line
    assert _hashes(ws) == before  # nothing under the final names, no temporary files, -o removed too


def test_ganspace_guard_bounds_before_any_work(ws, capsys, model_dir):
    rc, err = _run(capsys, ["directions", "ganspace", "-g", model_dir / "G.pkl", "--samples", "20000001"])
    _assert_one_error_line(err, "--samples")
    assert rc == 2


@pytest.mark.parametrize("exc, code, words", [
    (ValueError("bad value inside"), EXIT_UNEXPECTED, "details are in the log file"),
    (UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed"), EXIT_UNEXPECTED, "log file"),
    (AttributeError("'NoneType' object has no attribute 'x'"), EXIT_UNEXPECTED, "log file"),
    (PermissionError(errno.EACCES, "Permission denied", "/somewhere/x.png"), EXIT_ERROR, "/somewhere/x.png"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/a/file/x.png"), EXIT_ERROR, "/a/file/x.png"),
    (MemoryError(), EXIT_ERROR, "out of memory"),
    (KeyboardInterrupt(), EXIT_INTERRUPTED, ""),
])
def test_boundary_turns_any_exception_into_one_line(tmp_path, monkeypatch, capsys, exc, code, words):
    monkeypatch.setenv("HYPERINVERTER_CACHE", str(tmp_path / "cache"))

    def work() -> int:
        raise exc

    rc = run_guarded("edit", work)
    err = capsys.readouterr().err
    assert rc == code and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    if code == EXIT_INTERRUPTED:
        assert err.startswith("interrupted")
        return
    _assert_one_error_line(err, words)
    if code == EXIT_UNEXPECTED:
        log = tmp_path / "cache" / "logs" / "hyperinverter-studio.log"
        assert str(log) in err
        text = log.read_text(encoding="utf-8")
        assert "Traceback" in text and type(exc).__name__ in text


def _cli_process(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the run's model cache (conftest) is inherited
    return subprocess.Popen([sys.executable, "-m", "hyperinverter_gui", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_two_edits_to_one_new_output_one_wins(ws, model_dir, directions_dir):
    args = ["edit", "a.safetensors", "-o", "same.png", "-e", "age=1", "--directions", directions_dir,
            *_models(model_dir)]
    procs = [_cli_process(args, ws) for _ in range(2)]
    results = [(p.wait(timeout=240), p.stderr.read().decode("utf-8", "replace")) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    loser = next(err for rc, err in results if rc == 2)
    line = _assert_one_error_line(loser, "same.png")
    assert "exists" in line or "appeared while" in line
    assert Image.open(ws / "same.png").size == (32, 32)
    assert [p.name for p in ws.iterdir() if p.name.startswith(".same.png")] == []  # no temporary left


def test_ctrl_c_during_interpolation_leaves_no_files(ws, model_dir):
    p = _cli_process(["interpolate", "a.safetensors", "b.safetensors", "-o", "frames", "--gif", "anim.gif",
                      "--steps", "300", *_models(model_dir)], ws)
    fd = p.stderr.fileno()
    os.set_blocking(fd, False)
    seen, deadline = b"", time.monotonic() + 180
    while b"rendering" not in seen and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            seen += os.read(fd, 65536)
        except BlockingIOError:
            pass
    assert p.poll() is None, seen  # still rendering
    p.send_signal(signal.SIGINT)
    rc = p.wait(timeout=60)
    os.set_blocking(fd, True)
    err = (seen + p.stderr.read()).decode("utf-8", "replace")
    assert rc == EXIT_INTERRUPTED and "Traceback" not in err, err
    assert "interrupted" in err.splitlines()[-1]
    assert not (ws / "anim.gif").exists()
    assert not (ws / "frames").exists() or list((ws / "frames").iterdir()) == []
    assert [p.name for p in ws.iterdir() if ".tmp" in p.name] == []


# --- the export layer's own guards (the editor and the command line both write through it)


@pytest.fixture(scope="module")
def engine(model_dir):
    from hyperinverter_gui.engine import Engine, ModelFiles

    e = Engine("cpu", precision="float32")
    e.load(ModelFiles(generator=model_dir / "G.pkl"))
    return e


@pytest.mark.parametrize("broken", ["image", "w"])
def test_a_non_finite_frame_is_never_written(engine, inverted, directions_dir, tmp_path, broken):
    from hyperinverter_gui.errors import HyperInverterError

    """Inversions made in memory (past any load-time check): NaN in the image, or in w under an edit."""
    from hyperinverter_gui.app.export import (
        EditExport,
        export_edit,
        export_interpolation,
    )
    from hyperinverter_gui.editing.library import load_library
    from hyperinverter_gui.media.images import NonFiniteImageError

    r = inverted[0]
    bad = dataclasses.replace(r, **{broken: torch.full_like(getattr(r, broken), float("nan"))})
    lib = load_library(directions_dir, num_ws=engine.generator().num_ws, img_resolution=engine.resolution)
    edits = [(lib.directions["age"], 1.0)] if broken == "w" else []
    out = tmp_path / "out"
    out.mkdir()
    # NaN in the image: the frame check in app.export; NaN in w: the edit refuses it first (editing.edits).
    expected = NonFiniteImageError if broken == "image" else HyperInverterError
    with pytest.raises(expected, match="NaN or infinity|non-finite"):
        export_edit(engine, EditExport(bad, edits, out / "x.png"))
    with pytest.raises(HyperInverterError, match="NaN or infinity|non-finite"):
        export_interpolation(engine, bad, inverted[1], 3, frames_dir=out / "frames", gif=out / "a.gif")
    assert sorted(p.name for p in out.rglob("*")) == []


def test_export_refuses_a_name_taken_while_rendering(engine, inverted, tmp_path):
    """The second writer to a new output is refused, never silently replacing the first one's file."""
    from hyperinverter_gui.app.export import EditExport, export_edit
    from hyperinverter_gui.errors import HyperInverterError

    target = tmp_path / "x.png"

    def first_writer_finishes(stage: str, fraction: float) -> None:
        if stage == "Writing":  # the other process's file appears after our existence check
            target.write_bytes(b"the other run's result")

    with pytest.raises(HyperInverterError, match="exists"):
        export_edit(engine, EditExport(inverted[0], [], target), first_writer_finishes)
    assert target.read_bytes() == b"the other run's result"
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_atomic_write_claims_a_new_name_or_refuses(tmp_path, overwrite):
    """Another process finishes the same output while ours is being written (os.link semantics)."""
    from hyperinverter_gui.media.atomic import OutputExistsError, atomic_write

    target = tmp_path / "x.bin"

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(b"ours")
        target.write_bytes(b"theirs")  # appears after the existence check, before ours is complete

    if overwrite:
        atomic_write(target, write, overwrite=True)
        assert target.read_bytes() == b"ours"
    else:
        with pytest.raises(OutputExistsError, match="appeared while it was being written"):
            atomic_write(target, write, overwrite=False)
        assert target.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


@pytest.mark.parametrize("fps", [float("nan"), 1e-6, float("inf"), -1.0, 1000.0])
def test_gif_and_mp4_writers_refuse_bad_frame_rates(tmp_path, fps):
    from hyperinverter_gui.media.animation import write_gif, write_mp4

    frames = [np.zeros((8, 8, 3), np.uint8)] * 2
    for write in (write_gif, write_mp4):
        with pytest.raises(Exception, match="fps must be between 0.1 and 100") as e:
            write(frames, tmp_path / "x.out", fps)
        assert "opencv" not in str(e.value).lower()
    assert list(tmp_path.iterdir()) == []
