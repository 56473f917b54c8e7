"""Edit directions (InterFaceGAN, GANSpace), edit algebra, GANSpace computation, interpolation."""

from __future__ import annotations

import contextlib
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from hyperinverter_gui.cli.main import main
from hyperinverter_gui.editing.edits import (
    Direction,
    EditError,
    apply_edits,
    compute_ganspace,
    ganspace_direction,
    interpolate,
    load_ganspace,
    load_interfacegan_direction,
    parse_edit,
    render_edits,
    render_interpolation,
    save_ganspace,
)
from hyperinverter_gui.editing.library import load_library
from hyperinverter_gui.inversion.result import save_inversion
from hyperinverter_gui.media.images import tensor_to_uint8


@contextlib.contextmanager
def _storages_tagged_cuda():
    """Make torch.save record 'cuda:0' as the storage location, like files saved from a GPU."""
    import torch.serialization as ser

    entry = (0, lambda storage: "cuda:0", lambda storage, location: None)
    ser._package_registry.insert(0, entry)
    try:
        yield
    finally:
        ser._package_registry.remove(entry)


def _pca_file(path, w_dim=512, k=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(w_dim, k, generator=g))
    torch.save({"mean": torch.randn(1, w_dim, generator=g), "comp": q.T.reshape(k, 1, w_dim).contiguous(),
                "std": torch.linspace(3, 1, k)}, path)
    return path


def test_interfacegan_formats(tmp_path):
    g = torch.Generator().manual_seed(0)
    d = torch.randn(1, 512, generator=g)
    torch.save(d, tmp_path / "age.pt")
    assert torch.equal(load_interfacegan_direction(tmp_path / "age.pt"), d)
    per_layer = torch.randn(1, 8, 512, generator=g)
    with _storages_tagged_cuda():
        torch.save(per_layer, tmp_path / "pose.pt")
    with zipfile.ZipFile(tmp_path / "pose.pt") as zf:
        pkl = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        assert b"cuda:0" in zf.read(pkl)  # really recorded as a GPU tensor
    loaded = load_interfacegan_direction(tmp_path / "pose.pt")
    assert loaded.shape == (8, 512) and loaded.device.type == "cpu" and torch.equal(loaded, per_layer[0])


def test_direction_errors(tmp_path):
    torch.save(torch.zeros(1, 256), tmp_path / "narrow.pt")
    with pytest.raises(EditError, match="512 values per w"):
        load_interfacegan_direction(tmp_path / "narrow.pt")
    torch.save({"mean": torch.zeros(1, 512), "comp": torch.zeros(3, 1, 512)}, tmp_path / "pca.pt")
    with pytest.raises(EditError, match="missing std"):
        load_ganspace(tmp_path / "pca.pt")
    with pytest.raises(EditError, match="GANSpace PCA file"):
        load_interfacegan_direction(_pca_file(tmp_path / "full_pca.pt"))
    with pytest.raises(EditError, match="NAME=VALUE"):
        parse_edit("age")
    with pytest.raises(EditError, match="not a number"):
        parse_edit("age=old")
    assert parse_edit("age=+2") == ("age", 2.0)


def test_zero_edits_give_the_exact_inversion(inverted, generator):
    r = inverted[0]
    d = Direction("age", torch.randn(1, 512))
    assert render_edits(generator.synthesis, r, [(d, 0.0)]) is r.image
    assert torch.equal(render_edits(generator.synthesis, r, []), r.image)


def test_edits_compose_in_any_order_and_use_the_image_weights(inverted, generator):
    r = inverted[0]
    g = torch.Generator().manual_seed(1)
    a, b, c = (Direction(n, torch.randn(1, 512, generator=g)) for n in "abc")
    w1 = apply_edits(r.w, [(a, 1.5), (b, -2.0), (c, 0.7)])
    w2 = apply_edits(r.w, [(c, 0.7), (a, 1.5), (b, -2.0)])
    assert torch.equal(w1, w2)
    assert torch.allclose(w1, r.w + 1.5 * a.vector - 2.0 * b.vector + 0.7 * c.vector, atol=1e-5)
    edited = render_edits(generator.synthesis, r, [(a, 1.5)])
    with torch.no_grad():
        expected = generator.synthesis(apply_edits(r.w, [(a, 1.5)])[None], r.deltas.batched())[0]
        plain = generator.synthesis(apply_edits(r.w, [(a, 1.5)])[None])[0]
    assert torch.equal(edited, expected)
    assert (edited - plain).abs().max() > 1e-3  # rendered with theta + delta, not theta


def test_ganspace_layer_range_and_relative_units(tmp_path, inverted):
    pca = load_ganspace(_pca_file(tmp_path / "pca.pt"))
    d = ganspace_direction(pca, component=2, layer_start=3, layer_stop=5, name="x")
    w = inverted[0].w
    out = apply_edits(w, [(d, 2.0)])
    changed = (out != w).any(dim=1).nonzero().flatten().tolist()
    assert changed == [3, 4]
    step = out[3] - w[3]
    # Two standard deviations along the unit component.
    assert torch.allclose(step, 2.0 * pca.std[2] * pca.comp[2, 0], atol=1e-5)
    with pytest.raises(EditError, match="component 9"):
        ganspace_direction(pca, 9, 0, 1, "y")
    far = ganspace_direction(pca, 1, 6, 12, "far")
    with pytest.raises(EditError, match="8 ws"):
        apply_edits(w, [(far, 1.0)])


def test_compute_ganspace(generator):
    pca = compute_ganspace(lambda z: generator.mapping(z)[:, 0], generator.z_dim, 3000, 10, seed=3,
                           batch_size=1000)
    comp = pca.comp[:, 0].double()
    assert pca.comp.shape == (10, 1, 512) and pca.mean.shape == (1, 512) and pca.std.shape == (10,)
    assert torch.allclose(comp @ comp.T, torch.eye(10, dtype=torch.float64), atol=1e-5)
    assert (pca.std[:-1] >= pca.std[1:]).all()
    again = compute_ganspace(lambda z: generator.mapping(z)[:, 0], generator.z_dim, 3000, 10, seed=3,
                             batch_size=500)
    assert torch.allclose(again.comp, pca.comp, atol=1e-4) and torch.allclose(again.std, pca.std, rtol=1e-4)
    other = compute_ganspace(lambda z: generator.mapping(z)[:, 0], generator.z_dim, 3000, 10, seed=4)
    assert not torch.allclose(other.mean, pca.mean)
    # Projections of fresh samples have the reported spread along the first component.
    w = generator.mapping(torch.randn(4000, generator.z_dim))[:, 0]
    proj = (w - pca.mean) @ pca.comp[0, 0]
    assert abs(proj.std().item() / pca.std[0].item() - 1) < 0.1


def test_interpolation(inverted, generator):
    a, b = inverted
    syn = generator.synthesis
    assert render_interpolation(syn, a, b, 0.0) is a.image
    assert render_interpolation(syn, a, b, 1.0) is b.image
    w, deltas = interpolate(a, b, 0.5)
    assert torch.allclose(w, (a.w + b.w) / 2, atol=1e-6)
    k = "b8.conv0.weight"
    assert torch.allclose(deltas[k], (a.deltas[k] + b.deltas[k]) / 2, atol=1e-6)
    mid = render_interpolation(syn, a, b, 0.5)
    assert (mid - a.image).abs().max() > 1e-3 and (mid - b.image).abs().max() > 1e-3
    latent_w, none = interpolate(a, b, 0.5, latent_only=True)
    assert none is None and torch.equal(latent_w, w)
    # Latent-only frames are rendered with the plain generator.
    lat0 = render_interpolation(syn, a, b, 0.0, latent_only=True)
    assert torch.allclose(lat0, a.phase1, atol=1e-5)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(EditError, match=r"within \[0, 1\]"):
            interpolate(a, b, bad)


def _directions_folder(tmp_path, num_ws=8):
    folder = tmp_path / "directions"
    folder.mkdir()
    g = torch.Generator().manual_seed(7)
    torch.save(torch.randn(1, 512, generator=g), folder / "age.pt")
    torch.save(torch.randn(1, 512, generator=g), folder / "glasses.pt")  # unlisted: becomes a slider
    _pca_file(folder / "ffhq_pca.pt")
    (folder / "manifest.toml").write_text(
        '[[slider]]\nname = "age"\nkind = "interfacegan"\nfile = "age.pt"\nrange = [-5.0, 5.0]\n\n'
        '[[slider]]\nname = "eye_openness"\nkind = "ganspace"\nfile = "ffhq_pca.pt"\ncomponent = 4\n'
        'layer_start = 5\nlayer_stop = 7\n\n'
        '[[slider]]\nname = "smile"\nkind = "interfacegan"\nfile = "smile.pt"\nurl = "https://example.invalid/smile.pt"\n\n'
        '[[slider]]\nname = "clouds"\nkind = "ganspace"\nfile = "ffhq_pca.pt"\ncomponent = 1\n'
        'layer_start = 7\nlayer_stop = 14\n'
    )
    return folder


def test_library(tmp_path):
    lib = load_library(_directions_folder(tmp_path), num_ws=8, img_resolution=32)
    assert set(lib.directions) == {"age", "eye_openness", "glasses"}
    assert [s.name for s in lib.missing] == ["smile"]
    assert [n for n, _ in lib.skipped] == ["clouds"]  # ws 7..13 do not exist in an 8-ws generator
    assert lib.directions["eye_openness"].layer_start == 5 and lib.directions["age"].value_range == (-5.0, 5.0)


def test_cli_edit_from_saved_inversion(tmp_path, model_dir, inverted, capsys):
    inv = save_inversion(inverted[0], tmp_path / "face.safetensors")
    folder = _directions_folder(tmp_path)
    base = ["edit", str(inv), "-g", str(model_dir / "G.pkl"), "--directions", str(folder), "--device", "cpu"]
    assert main(base + ["-o", str(tmp_path / "same.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "same.png")), tensor_to_uint8(inverted[0].image))
    assert main(base + ["-e", "age=+2", "-e", "eye_openness=-1.5", "-o", str(tmp_path / "edited.png")]) == 0
    edited = Image.open(tmp_path / "edited.png")
    assert edited.text["edits"] == "age=+2, eye_openness=-1.5"
    assert not np.array_equal(np.asarray(edited), tensor_to_uint8(inverted[0].image))
    capsys.readouterr()
    assert main(base + ["-e", "beard=1", "-o", str(tmp_path / "x.png")]) == 2
    assert "unknown edit direction 'beard'" in capsys.readouterr().err
    assert main(base + ["-e", "smile=1", "-o", str(tmp_path / "x.png")]) == 2
    assert "smile.pt" in capsys.readouterr().err
    assert main(base + ["-e", "clouds=1", "-o", str(tmp_path / "x.png")]) == 2
    assert "cannot be used with this generator" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_cli_interpolate(tmp_path, model_dir, inverted):
    a = save_inversion(inverted[0], tmp_path / "a.safetensors")
    b = save_inversion(inverted[1], tmp_path / "b.safetensors")
    out = tmp_path / "frames"
    args = ["interpolate", str(a), str(b), "-g", str(model_dir / "G.pkl"), "--steps", "4", "-o", str(out),
            "--gif", str(tmp_path / "morph.gif"), "--mp4", str(tmp_path / "morph.mp4"), "--device", "cpu"]
    assert main(args) == 0
    frames = sorted(out.iterdir())
    assert [f.name for f in frames] == [f"frame_{i:03d}.png" for i in range(4)]
    assert np.array_equal(np.asarray(Image.open(frames[0])), tensor_to_uint8(inverted[0].image))
    assert np.array_equal(np.asarray(Image.open(frames[-1])), tensor_to_uint8(inverted[1].image))
    gif = Image.open(tmp_path / "morph.gif")
    assert gif.n_frames == 6  # A -> B -> A
    import cv2

    cap = cv2.VideoCapture(str(tmp_path / "morph.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 4
    assert main(args) == 2  # never overwrites without --overwrite


def test_cli_ganspace(tmp_path, model_dir):
    out = tmp_path / "my_pca.pt"
    assert main(["directions", "ganspace", "-g", str(model_dir / "G.pkl"), "--samples", "2000",
                 "--components", "5", "--output", str(out), "--device", "cpu"]) == 0
    pca = load_ganspace(out)
    assert pca.comp.shape == (5, 1, 512)
    raw = torch.load(out, weights_only=True)
    assert set(raw) == {"mean", "comp", "std"}


def test_save_ganspace_round_trip(tmp_path):
    pca = load_ganspace(_pca_file(tmp_path / "p.pt"))
    save_ganspace(pca, tmp_path / "q.pt")
    back = load_ganspace(tmp_path / "q.pt")
    assert torch.equal(back.comp, pca.comp) and torch.equal(back.std, pca.std)
