"""What the editor's start costs: model construction, file identification, allocator setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from hyperinverter_gui.catalog.discovery import discover
from hyperinverter_gui.networks import construction

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str, env: dict | None = None) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, **(env or {})})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_loading_models_does_not_import_the_compiler_stack(model_dir):
    """Building modules on the meta device imports torch._dynamo and sympy (seconds); the loaders must not."""
    code = (
        "import sys\n"
        "from hyperinverter_gui.formats.loading import load_generator, load_hyperinverter\n"
        f"g = load_generator({str(model_dir / 'G.pkl')!r})\n"
        f"m = load_hyperinverter({str(model_dir / 'HI.pt')!r}, g)\n"
        "print(sorted(n for n in ('torch._dynamo', 'sympy') if n in sys.modules))\n"
    )
    assert _run(code) == "[]"


def test_uninitialized_skips_initialisers_and_restores_them():
    before = {n: getattr(nn.init, n) for n in ("kaiming_uniform_", "normal_", "zeros_")}
    with construction.uninitialized():
        t = torch.full((4,), 7.0)
        assert nn.init.normal_(t) is t and torch.equal(t, torch.full((4,), 7.0))
        conv = nn.Conv2d(2, 3, 3)  # built, not initialised: loaders assign every tensor afterwards
        assert conv.weight.shape == (3, 2, 3, 3)
    with pytest.raises(RuntimeError):
        with construction.uninitialized():
            raise RuntimeError("a failing loader")
    assert {n: getattr(nn.init, n) for n in before} == before
    assert construction.randn((1000,), std=0.5).std().item() == pytest.approx(0.5, rel=0.15)
    assert torch.equal(construction.zeros((3,)), torch.zeros(3))


def test_identification_is_remembered_until_the_file_changes(tmp_path, model_dir, monkeypatch):
    monkeypatch.setenv("HYPERINVERTER_CACHE", str(tmp_path / "cache"))
    d = tmp_path / "weights"
    d.mkdir()
    ckpt = d / "inverter.pt"
    ckpt.write_bytes((model_dir / "HI.pt").read_bytes())
    first = discover([d])
    assert [f.role for f in first.found] == ["inverter"] and (tmp_path / "cache" / "identified.json").is_file()
    # Same size, same mtime, same inode: the memo answers without reading the file.
    st = ckpt.stat()
    with open(ckpt, "r+b") as f:
        f.write(b"\0" * 64)
    os.utime(ckpt, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert [f.role for f in discover([d]).found] == ["inverter"]
    # Touched (as any real change does): read again, and now reported as damaged.
    os.utime(ckpt, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = discover([d])
    assert again.found == [] and again.problems and again.problems[0][0] == ckpt
    # Without a cache nothing is remembered or written.
    monkeypatch.setenv("HYPERINVERTER_CACHE", "off")
    assert discover([d]).problems


def test_editor_shows_a_splash_before_torch_loads_and_then_opens(tmp_path):
    """`python main.py`: the splash comes up before torch is imported; the window follows and the app exits cleanly."""
    empty = tmp_path / "weights"
    empty.mkdir()
    code = (
        "import sys\n"
        "from PySide6.QtCore import QTimer\n"
        "from PySide6.QtWidgets import QApplication, QSplashScreen\n"
        "import hyperinverter_gui._qt.app as gui\n"
        "assert 'torch' not in sys.modules, 'torch imported before the splash'\n"
        "app = QApplication([])\n"
        "seen = []\n"
        "orig = gui._splash\n"
        "def splash():\n"
        "    s = orig(); seen.append(('torch' in sys.modules, s.isVisible())); return s\n"
        "gui._splash = splash\n"
        "def done():\n"
        "    win = getattr(app, 'main_window', None)\n"
        "    if win is None:\n"
        "        QTimer.singleShot(50, done); return\n"
        "    seen.append(win.isVisible())\n"
        "    seen.append(not any(isinstance(w, QSplashScreen) and w.isVisible() for w in app.topLevelWidgets()))\n"
        "    app.quit()\n"
        "QTimer.singleShot(0, done)\n"
        "rc = gui.main([])\n"
        "print(rc, seen)\n"
    )
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "HYPERINVERTER_WEIGHTS": str(empty),
           "HYPERINVERTER_USER_WEIGHTS": str(empty), "HYPERINVERTER_CACHE": str(tmp_path / "cache"),
           "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path)}
    assert _run(code, env) == "0 [(False, True), True, True]"
