"""The headless ``hyperinverter invert`` command, end to end."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from hyperinverter_gui.cli.main import main
from hyperinverter_gui.inversion.result import load_inversion
from hyperinverter_gui.media.images import tensor_to_uint8


def _write_photo(path, tensor):
    Image.fromarray(tensor_to_uint8(tensor)).save(path)


@pytest.fixture()
def photo_dir(tmp_path, photos):
    d = tmp_path / "photos"
    d.mkdir()
    _write_photo(d / "a.png", photos[0])
    _write_photo(d / "b.jpg", photos[1])
    good = (d / "a.png").read_bytes()
    (d / "broken.png").write_bytes(good[: len(good) // 3])  # truncated PNG
    (d / "notes.png").write_text("this is not an image")
    (d / "readme.txt").write_text("ignored: not an image suffix")
    return d


def test_invert_folder_skips_bad_files(tmp_path, model_dir, photo_dir, inverted, capsys):
    out, inv = tmp_path / "out", tmp_path / "inv"
    rc = main([
        "invert", str(photo_dir), "-g", str(model_dir / "G.pkl"), "-c", str(model_dir / "HI.pt"),
        "--no-align", "-o", str(out), "--save-inversion", str(inv), "--phase1-output", str(tmp_path / "p1"),
        "--device", "cpu", "--batch-size", "3",
    ])
    err = capsys.readouterr().err
    assert rc == 1
    assert "2 of 4 images inverted" in err
    assert "broken.png" in err and "truncated or corrupt" in err
    assert "notes.png" in err and "not an image" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert sorted(p.name for p in (tmp_path / "p1").iterdir()) == ["a.png", "b.png"]
    # a.png is lossless, so its reconstruction must equal the library's result.
    png = np.asarray(Image.open(out / "a.png"))
    assert np.array_equal(png, tensor_to_uint8(inverted[0].image))
    assert Image.open(out / "a.png").text["checkpoint"] == "HI.pt"
    saved = load_inversion(inv / "a.safetensors")
    assert torch.allclose(saved.w, inverted[0].w, atol=1e-5)
    assert saved.metadata["source"] == "a.png"


def test_invert_single_file_and_no_overwrite(tmp_path, model_dir, photos, capsys):
    src = tmp_path / "face.png"
    _write_photo(src, photos[0])
    out = tmp_path / "recon.png"
    args = ["invert", str(src), "-g", str(model_dir / "G.pkl"), "-c", str(model_dir / "HI.pt"), "--no-align",
            "-o", str(out), "--device", "cpu"]
    assert main(args) == 0
    first = out.read_bytes()
    assert Image.open(out).size == (32, 32)
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err
    assert out.read_bytes() == first
    assert main(args + ["--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.png", "recon.png"]  # no temp files


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "[Nn]o face"),
        (["--no-align", "--device", "cuda:0"] if not torch.cuda.is_available() else ["--no-align", "--device", "x"],
         "CUDA|unknown device"),
    ],
)
def test_invert_usage_errors(tmp_path, model_dir, photos, capsys, extra, message):
    src = tmp_path / "face.png"
    _write_photo(src, photos[0])
    rc = main(["invert", str(src), "-g", str(model_dir / "G.pkl"), "-c", str(model_dir / "HI.pt"),
               "-o", str(tmp_path / "o.png"), *extra])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in err
    import re

    assert re.search(message, err)


def test_invert_wrong_model_files(tmp_path, model_dir, photos, capsys):
    src = tmp_path / "face.png"
    _write_photo(src, photos[0])
    base = ["invert", str(src), "--no-align", "-o", str(tmp_path / "o.png")]
    assert main(base + ["-g", str(model_dir / "HI.pt"), "-c", str(model_dir / "HI.pt")]) == 2
    assert "not a StyleGAN2 generator" in capsys.readouterr().err
    assert main(base + ["-g", str(model_dir / "G.pkl"), "-c", str(tmp_path / "missing.pt")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_module_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "hyperinverter_gui", "invert", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--save-inversion" in r.stdout


def test_invert_aligns_a_real_photo(tmp_path, model_dir, capsys, offline, astronaut):
    """Without --no-align the face is found (Haar fallback offline), aligned to the model size, inverted."""
    Image.fromarray(astronaut).save(tmp_path / "astronaut.jpg", quality=95)
    out = tmp_path / "recon.png"
    rc = main(["invert", str(tmp_path / "astronaut.jpg"), "-g", str(model_dir / "G.pkl"), "-c",
               str(model_dir / "HI.pt"), "-o", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "dlib's 68-point predictor" in err  # the user is told which landmarks were used
    assert Image.open(out).size == (32, 32)
