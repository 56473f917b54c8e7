"""The package as users install it: a wheel, installed into a fresh folder, run from elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """Build the wheel from this checkout and install it (no dependencies: they are in this environment)."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist, target = tmp / "dist", tmp / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    wheels = list(dist.glob("hyperinverter_gui-*.whl"))
    assert len(wheels) == 1
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "hyperinverter_gui/catalog/models.toml" in names and "hyperinverter_gui/editing/directions.toml" in names
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                           str(wheels[0])], capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stderr
    return target


def _run(target: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPERINVERTER_")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(PYTHONPATH=str(target), HOME=str(home), XDG_DATA_HOME=str(home / "data"),
               XDG_CACHE_HOME=str(home / "cache"), TORCH_HOME=str(home / "torch"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, *args], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=300)


def test_installed_wheel_knows_its_models_and_sliders(installed, tmp_path):
    where = _run(installed, tmp_path, "-c", "import hyperinverter_gui, hyperinverter_gui.host.paths as p; "
                 "print(hyperinverter_gui.__file__); print(p.checkout_root())")
    assert where.returncode == 0, where.stderr
    module_file, checkout = where.stdout.split()
    assert Path(module_file).is_relative_to(installed) and checkout == "None"  # the wheel, not this checkout

    weights = _run(installed, tmp_path, "-m", "hyperinverter_gui", "weights", "list")
    assert "stylegan2-ffhq" in weights.stdout and "hyperinverter-ffhq-psp-lightweight" in weights.stdout, \
        weights.stdout + weights.stderr
    assert str(ROOT) not in weights.stdout  # no folder of the checkout is searched
    assert str(tmp_path / "home" / "data" / "hyperinverter-studio" / "weights") in weights.stdout
    assert weights.returncode == 1  # the generator and the inverter are missing: said, with a non-zero code

    directions = _run(installed, tmp_path, "-m", "hyperinverter_gui", "directions", "list")
    assert directions.returncode == 0, directions.stderr
    out = directions.stdout
    assert "age.pt" in out and "ffhq_pca.pt" in out  # the packaged manifest's sliders, their files missing
    assert str(tmp_path / "home" / "data" / "hyperinverter-studio" / "directions") in out
