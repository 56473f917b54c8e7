"""Shared fixtures: tiny seeded models written in the official file formats."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The model cache and the identified-files memo go to a folder of this run, not the user's cache.
if "HYPERINVERTER_CACHE" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["HYPERINVERTER_CACHE"] = tempfile.mkdtemp(prefix="hyperinverter-test-cache-")
    atexit.register(shutil.rmtree, os.environ["HYPERINVERTER_CACHE"], True)

import official_formats as of  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("models")
    marker = d / "SOURCE_WAS_EXECUTED"
    tree = of.stylegan2_generator_tree(seed=0, source=of.EVIL_SOURCE.format(marker=str(marker)))
    of.write_nvidia_pickle(d / "G.pkl", tree)
    of.write_hyperinverter_checkpoint(d / "HI.pt")
    of.write_w_encoder_file(d / "w_encoder.pt")
    return d


@pytest.fixture(scope="session")
def generator(model_dir):
    from hyperinverter_gui.formats.loading import load_generator

    return load_generator(model_dir / "G.pkl")


@pytest.fixture(scope="session")
def model(model_dir, generator):
    from hyperinverter_gui.formats.loading import load_hyperinverter

    return load_hyperinverter(model_dir / "HI.pt", generator)


@pytest.fixture(scope="session")
def photos() -> torch.Tensor:
    """Two smooth seeded 'photos' [2,3,32,32] in [-1,1] on the 8-bit grid."""
    g = torch.Generator().manual_seed(123)
    low = torch.rand(2, 3, 4, 4, generator=g) * 2 - 1
    x = torch.nn.functional.interpolate(low, size=(32, 32), mode="bicubic", align_corners=False).clamp(-1, 1)
    return ((x + 1) * 127.5).round() / 127.5 - 1


@pytest.fixture(scope="session")
def inverted(model, photos):
    from hyperinverter_gui.engine.reference import invert

    return invert(model, photos)


@pytest.fixture()
def offline(tmp_path, monkeypatch):
    """No network and an empty torch hub: face-alignment cannot get its weights."""
    import socket

    from hyperinverter_gui.alignment import clear_detector_cache

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)

    def no_network(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    clear_detector_cache()
    yield
    clear_detector_cache()


@pytest.fixture(scope="session")
def astronaut():
    from skimage import data

    return data.astronaut()


EDITOR_TIMEOUT_MS = 120_000  # inversions take a few seconds on a loaded 2-core machine


@pytest.fixture()
def directions_dir(tmp_path) -> Path:
    """A directions folder with one seeded InterFaceGAN slider, "age" (range -5..5)."""
    d = tmp_path / "directions"
    d.mkdir()
    g = torch.Generator().manual_seed(11)
    torch.save(torch.randn(1, 512, generator=g) * 0.5, d / "age.pt")
    (d / "manifest.toml").write_text('[[slider]]\nname = "age"\nlabel = "Age"\ngroup = "InterFaceGAN"\n'
                                     'kind = "interfacegan"\nfile = "age.pt"\nrange = [-5.0, 5.0]\n')
    return d


@pytest.fixture()
def open_editor(qtbot, tmp_path, model_dir, monkeypatch):
    """Opens the editor window with the tiny models loaded (exact float32 frames, so tests can
    compare pixels): ``open_editor(directions, size=None)``; None keeps the default geometry.
    Windows it opened are shut down after the test."""
    from PySide6.QtCore import QSettings

    from hyperinverter_gui._qt.main_window import MainWindow

    opened = []

    def make(directions: Path, size=None):
        monkeypatch.setenv("HYPERINVERTER_CACHE", str(tmp_path / "cache"))
        settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
        settings.setValue("precision", "float32")
        win = MainWindow(settings, directions_dir=directions)
        qtbot.addWidget(win)
        opened.append(win)
        with qtbot.waitSignal(win.modelsLoaded, timeout=EDITOR_TIMEOUT_MS):
            win.models_panel.refresh(model_paths={"generator": model_dir / "G.pkl",
                                                  "inverter": model_dir / "HI.pt"})
        if size is not None:
            win.resize(*size)
        win.show()
        return win

    yield make
    for win in opened:
        win.shutdown()
