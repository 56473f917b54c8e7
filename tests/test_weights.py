"""The weights folders: discovery by content, selection, the conversion cache, downloads."""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import official_formats as of
import pytest
import torch

from hyperinverter_gui.catalog.cache import load_generator_cached, load_hyperinverter_cached
from hyperinverter_gui.catalog.discovery import discover, download_dir, find_entry, load_manifest, select
from hyperinverter_gui.catalog.download import DownloadError, download
from hyperinverter_gui.cli.main import main

# --------------------------------------------------------------------------
# Discovery and selection


@pytest.fixture()
def weights_dir(tmp_path, model_dir, monkeypatch):
    d = tmp_path / "weights"
    d.mkdir()
    shutil.copy(model_dir / "G.pkl", d / "my generator.pkl")
    shutil.copy(model_dir / "HI.pt", d / "inverter-v1.pt")
    shutil.copy(model_dir / "w_encoder.pt", d / "e1.pt")
    (d / "notes.pt").write_text("<html><body>Sign in</body></html>")
    monkeypatch.setenv("HYPERINVERTER_WEIGHTS", str(d))
    monkeypatch.setenv("HYPERINVERTER_USER_WEIGHTS", str(tmp_path / "user_weights"))
    monkeypatch.setenv("HYPERINVERTER_CACHE", str(tmp_path / "cache"))
    return d


def test_discovery_identifies_files_by_content(weights_dir):
    disc = discover([weights_dir])
    roles = {f.path.name: (f.role, f.kind, f.resolution) for f in disc.found}
    assert roles["my generator.pkl"] == ("generator", "stylegan2-ada-pickle", 32)
    assert roles["inverter-v1.pt"] == ("inverter", "hyperinverter", 32)
    assert roles["e1.pt"][0] == "w_encoder"
    assert [(p.name, "HTML" in why) for p, why in disc.problems] == [("notes.pt", True)]


def test_selection_rules(weights_dir, tmp_path):
    # A second generator of another resolution, newer: the inverter's resolution decides.
    tree = of.stylegan2_generator_tree(seed=9, img_resolution=64, channel_max=16, channel_base=512)
    of.write_nvidia_pickle(weights_dir / "newer.pkl", tree)
    sel = select(discover([weights_dir]))
    assert sel.chosen["generator"].path.name == "my generator.pkl"
    assert "matches" in sel.reasons["generator"]
    assert [a.path.name for a in sel.alternatives["generator"]] == ["newer.pkl"]
    # An explicit choice always wins.
    sel = select(discover([weights_dir]), {"generator": weights_dir / "newer.pkl"})
    assert sel.chosen["generator"].path.name == "newer.pkl" and sel.reasons["generator"] == "given explicitly"
    # A file under the manifest's default name wins over a newer unnamed one.
    entry = next(e for e in load_manifest() if e.role == "inverter" and e.default and e.domain == "ffhq")
    shutil.copy(weights_dir / "inverter-v1.pt", weights_dir / entry.file)
    time.sleep(0.01)
    shutil.copy(weights_dir / "inverter-v1.pt", weights_dir / "zz-newest.pt")
    sel = select(discover([weights_dir]))
    assert sel.chosen["inverter"].path.name == entry.file and sel.reasons["inverter"] == "manifest default"


def test_missing_roles_name_their_downloads(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    sel = select(discover([empty]))
    assert "generator" in sel.missing and "inverter" in sel.missing
    assert any(e.name == "stylegan2-ffhq" and e.url for e in sel.missing["generator"])


def test_cli_uses_discovered_models(weights_dir, tmp_path, photos, capsys):
    from PIL import Image

    from hyperinverter_gui.media.images import tensor_to_uint8

    Image.fromarray(tensor_to_uint8(photos[0])).save(tmp_path / "face.png")
    assert main(["invert", str(tmp_path / "face.png"), "--no-align", "-o", str(tmp_path / "out.png"),
                 "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "inverter-v1.pt as the inverter" in err and "my generator.pkl as the generator" in err
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "[ok]      StyleGAN2 generator" in out and "[damaged]" in out and "notes.pt" in out


def test_cli_without_models_says_what_to_download(tmp_path, monkeypatch, photos, capsys):
    monkeypatch.setenv("HYPERINVERTER_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.setenv("HYPERINVERTER_USER_WEIGHTS", str(tmp_path / "none2"))
    from PIL import Image

    Image.new("RGB", (32, 32), (128, 128, 128)).save(tmp_path / "face.png")  # a real photo: the models are missing
    assert main(["invert", str(tmp_path / "face.png"), "--no-align", "-o", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert "no StyleGAN2 generator found" in err or "no HyperInverter checkpoint found" in err
    assert "weights download" in err


# --------------------------------------------------------------------------
# Conversion cache


def test_cache_is_used_and_refreshed_when_the_source_changes(tmp_path, model_dir):
    src = tmp_path / "G.pkl"
    shutil.copy(model_dir / "G.pkl", src)
    cache = tmp_path / "cache"
    g1 = load_generator_cached(src, cache)
    entries = sorted((cache / "generators").iterdir())
    assert [p.suffix for p in entries] == [".json", ".safetensors"]
    import json

    meta = json.loads(entries[0].read_text())
    assert meta["source"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert meta["config"]["img_resolution"] == 32
    # Prove the next load reads the cache: change the cached tensors, not the source.
    from safetensors.torch import load_file, save_file

    sd = load_file(str(entries[1]))
    sd["synthesis.b4.const"] = sd["synthesis.b4.const"] + 1.0
    save_file(sd, str(entries[1]))
    g2 = load_generator_cached(src, cache)
    assert torch.allclose(g2.synthesis.b4.const, g1.synthesis.b4.const + 1.0)
    # The source changes (new mtime): converted again, the stale cache is replaced.
    os.utime(src, ns=(time.time_ns(), time.time_ns() + 10**9))
    g3 = load_generator_cached(src, cache)
    assert torch.equal(g3.synthesis.b4.const, g1.synthesis.b4.const)


def test_cached_hyperinverter_equals_direct_load(tmp_path, model_dir, generator, model, photos):
    from hyperinverter_gui.engine.reference import invert

    src = tmp_path / "HI.pt"
    shutil.copy(model_dir / "HI.pt", src)
    cache = tmp_path / "cache"
    load_hyperinverter_cached(src, generator, None, cache)
    cached = load_hyperinverter_cached(src, generator, None, cache)  # from the cache
    assert list((cache / "inverters").glob("*.safetensors"))
    a, b = invert(cached, photos[:1])[0], invert(model, photos[:1])[0]
    assert torch.equal(a.image, b.image)


def test_unwritable_cache_still_loads(model_dir):
    g = load_generator_cached(model_dir / "G.pkl", Path("/proc/hyperinverter-cache"))
    assert g.img_resolution == 32


# --------------------------------------------------------------------------
# Downloads against a local HTTP server

PAYLOAD = b"\x80\x04" + bytes(range(256)) * 4000  # a 'pickle' of ~1 MB


class _Handler(http.server.BaseHTTPRequestHandler):
    log: list = []

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, body: bytes, ctype="application/octet-stream", status=200, headers=None, length=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        _Handler.log.append((self.path, self.headers.get("Range")))
        rng = self.headers.get("Range")
        if self.path.startswith("/file"):
            if rng:
                start = int(rng.split("=")[1].split("-")[0])
                self._send(PAYLOAD[start:], status=206,
                           headers={"Content-Range": f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}"})
            else:
                self._send(PAYLOAD)
        elif self.path.startswith("/norange"):
            self._send(PAYLOAD)
        elif self.path.startswith("/uc"):
            page = ('<html><body><form id="download-form" action="/confirmed" method="get">'
                    '<input type="hidden" name="id" value="abc"><input type="hidden" name="confirm" value="t">'
                    '</form>Google Drive can\'t scan this file for viruses.</body></html>')
            self._send(page.encode(), ctype="text/html; charset=utf-8")
        elif self.path.startswith("/confirmed?id=abc&confirm=t"):
            self._send(PAYLOAD)
        elif self.path.startswith("/html-as-binary"):  # an error page served as a binary file
            self._send(b"<!DOCTYPE html><html>oops</html>")
        elif self.path.startswith("/html"):
            self._send(b"<!DOCTYPE html><html>404 not found</html>", ctype="text/html")
        elif self.path.startswith("/truncated"):
            self._send(PAYLOAD[:100_000], length=len(PAYLOAD))
        elif self.path.startswith("/empty"):
            self._send(b"")
        else:
            self._send(b"missing", status=404, ctype="text/plain")


@pytest.fixture()
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    _Handler.log = []
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_download_with_progress_and_checksum(server, tmp_path):
    seen = []
    r = download(f"{server}/file", tmp_path / "m.pkl", hashlib.sha256(PAYLOAD).hexdigest(),
                 progress=lambda done, total: seen.append((done, total)))
    assert (tmp_path / "m.pkl").read_bytes() == PAYLOAD and r.verified
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert not (tmp_path / "m.pkl.part").exists()


def test_download_resumes(server, tmp_path):
    (tmp_path / "m.pkl.part").write_bytes(PAYLOAD[:300_000])
    r = download(f"{server}/file", tmp_path / "m.pkl")
    assert (tmp_path / "m.pkl").read_bytes() == PAYLOAD
    assert r.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    assert _Handler.log[-1] == ("/file", "bytes=300000-")


def test_download_restarts_when_the_server_ignores_range(server, tmp_path):
    (tmp_path / "m.pkl.part").write_bytes(b"garbage" * 1000)
    download(f"{server}/norange", tmp_path / "m.pkl")
    assert (tmp_path / "m.pkl").read_bytes() == PAYLOAD


def test_google_drive_addresses_go_through_gdown_with_our_checks_on_top(server, tmp_path):
    # Drive's own pages are gdown's business (tested against a fake Drive in test_directions_download.py);
    # whatever gdown hands back is still checked here: a page saved in place of the model is refused.
    with pytest.raises(DownloadError, match=r"Google Drive sent a page instead of the file.*save it as .*m\.pkl"):
        download(f"{server}/uc?id=abc&export=download", tmp_path / "m.pkl", drive_hosts=("127.0.0.1",))
    assert list(tmp_path.iterdir()) == []
    r = download(f"{server}/file", tmp_path / "m.pkl", hashlib.sha256(PAYLOAD).hexdigest(),
                 drive_hosts=("127.0.0.1",))
    assert r.verified and (tmp_path / "m.pkl").read_bytes() == PAYLOAD
    assert [p for p, _ in _Handler.log] == ["/uc?id=abc&export=download", "/file"]


def test_direction_files_download_into_the_directions_folder(tmp_path, monkeypatch):
    from hyperinverter_gui.app.downloads import all_entries, direction_entries

    monkeypatch.setenv("HYPERINVERTER_DIRECTIONS", "/proc/hyperinverter-directions")  # cannot be created
    monkeypatch.setenv("HYPERINVERTER_USER_DIRECTIONS", str(tmp_path / "user_dirs"))
    age = find_entry("interfacegan-age", direction_entries())
    assert download_dir(age) == tmp_path / "user_dirs"
    names = [e.name for e in all_entries() if e.default]
    assert "stylegan2-ffhq" in names and "ganspace-ffhq" in names  # `weights download defaults` gets both


@pytest.mark.parametrize("path, message", [
    ("/html", "HTML page"),
    ("/html-as-binary", "HTML page"),
    ("/empty", "empty"),
    ("/nothing-here", "HTTP 404"),
])
def test_download_errors_leave_no_file(server, tmp_path, path, message):
    with pytest.raises(DownloadError, match=message):
        download(f"{server}{path}", tmp_path / "m.pkl")
    assert not (tmp_path / "m.pkl").exists()


def test_checksum_mismatch(server, tmp_path):
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download(f"{server}/file", tmp_path / "m.pkl", "0" * 64)
    assert not (tmp_path / "m.pkl").exists() and not (tmp_path / "m.pkl.part").exists()


def test_truncated_download_is_kept_for_resume(server, tmp_path):
    with pytest.raises(DownloadError, match="stopped after 100000 of"):
        download(f"{server}/truncated", tmp_path / "m.pkl", timeout=5)
    assert not (tmp_path / "m.pkl").exists()
    assert (tmp_path / "m.pkl.part").stat().st_size == 100_000
    download(f"{server}/file", tmp_path / "m.pkl")  # resumes from the kept part
    assert (tmp_path / "m.pkl").read_bytes() == PAYLOAD


def test_no_network_names_the_url(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(DownloadError, match=r"cannot reach 127.0.0.1.*Download http://127.0.0.1:\d+/f.pt .*save it as"):
        download(f"http://127.0.0.1:{port}/f.pt", tmp_path / "f.pt", timeout=5)


def test_disk_full_during_download(server, tmp_path):
    # A real write failure from the OS: the file-size limit makes write() fail with EFBIG.
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (200000, 200000))\n"
        "from hyperinverter_gui.catalog.download import download, DownloadError\n"
        "try:\n"
        f"    download('{server}/file', sys.argv[1])\n"
        "except DownloadError as e:\n"
        "    print('ERROR', e)\n"
    )
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m.pkl")], capture_output=True, text=True,
                       timeout=60)
    assert "ERROR the disk is full" in r.stdout, r.stdout + r.stderr
    assert not (tmp_path / "m.pkl").exists()


def test_read_only_weights_folder_falls_back_to_the_user_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERINVERTER_WEIGHTS", "/proc/hyperinverter-weights")  # cannot be created
    monkeypatch.setenv("HYPERINVERTER_USER_WEIGHTS", str(tmp_path / "user"))
    assert download_dir() == tmp_path / "user"
    assert download_dir(find_entry("s3fd")).name == "checkpoints"  # face-alignment files go to torch hub


def test_cli_download_records_the_checksum(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HYPERINVERTER_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setenv("HYPERINVERTER_USER_WEIGHTS", str(tmp_path / "user" / "weights"))
    manifest = tmp_path / "manifest.toml"
    manifest.write_text(f'[[model]]\nname = "tiny"\nrole = "generator"\nfile = "tiny.pkl"\nurl = "{server}/file"\n')
    monkeypatch.setattr("hyperinverter_gui.catalog.discovery.manifest_path", lambda: manifest)
    assert main(["weights", "download", "tiny"]) == 0
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    assert digest in capsys.readouterr().err
    assert (tmp_path / "w" / "tiny.pkl").read_bytes() == PAYLOAD
    import json

    assert json.loads((tmp_path / "user" / "checksums.json").read_text())["tiny.pkl"]["sha256"] == digest
    (tmp_path / "w" / "tiny.pkl").unlink()
    manifest.write_text(f'[[model]]\nname = "tiny"\nrole = "generator"\nfile = "tiny.pkl"\nurl = "{server}/norange"\n')
    assert main(["weights", "download", "tiny"]) == 0  # verified against the recorded checksum
    assert "(verified)" in capsys.readouterr().err
    assert main(["weights", "download", "nonexistent"]) == 2
    assert "unknown model 'nonexistent'" in capsys.readouterr().err
