"""Direction files are part of the model set: downloaded like the models (local HTTP servers on 127.0.0.1).

Also Google Drive through gdown: against a local server, and against a local fake of Drive's own
hosts (drive.google.com, drive.usercontent.google.com) reached through an HTTPS proxy on
127.0.0.1 with a certificate the test makes, so gdown's real Drive code runs under our wrapper.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import shutil
import socketserver
import ssl
import subprocess
import threading
import time
import tomllib
from pathlib import Path

import pytest
import torch

from hyperinverter_gui.catalog.download import DownloadError, download
from hyperinverter_gui.cli.main import main

# --------------------------------------------------------------------------
# Direction files the test writes, and a server for them


def _direction_bytes(tmp_path: Path) -> dict[str, bytes]:
    g = torch.Generator().manual_seed(5)
    torch.save(torch.randn(1, 512, generator=g), tmp_path / "age.pt")
    torch.save(torch.randn(1, 512, generator=g), tmp_path / "smile.pt")
    comp = torch.linalg.qr(torch.randn(512, 8, generator=g))[0].T.reshape(8, 1, 512)
    torch.save({"mean": torch.randn(1, 512, generator=g), "comp": comp, "std": torch.rand(8, generator=g) + 0.5},
               tmp_path / "tiny_pca.pt")
    out = {n: (tmp_path / n).read_bytes() for n in ("age.pt", "smile.pt", "tiny_pca.pt")}
    for n in out:
        (tmp_path / n).unlink()
    return out


class FileServer(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` (path -> bytes) with Range support; ``slow`` paths trickle; ``pages`` are HTML."""

    files: dict[str, bytes] = {}
    pages: dict[str, str] = {}
    slow: dict[str, float] = {}  # path -> seconds between 2 KB pieces
    truncate: dict[str, int] = {}  # path -> bytes sent before the connection drops (first request only)
    log: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        path = self.path.split("?")[0]
        rng = self.headers.get("Range")
        type(self).log.append((path, rng))
        if path in self.pages:
            body = self.pages[path].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        data = self.files.get(path)
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        body = data[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        cut = self.truncate.pop(path, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            return
        delay = self.slow.get(path)
        if delay is None:
            self.wfile.write(body)
            return
        for i in range(0, len(body), 2048):
            self.wfile.write(body[i:i + 2048])
            self.wfile.flush()
            time.sleep(delay)


@pytest.fixture()
def server():
    handler = type("Handler", (FileServer,), {"files": {}, "pages": {}, "slow": {}, "truncate": {}, "log": []})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    handler.base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield handler
    srv.shutdown()
    srv.server_close()


def write_manifest(path: Path, base: str, files: dict[str, bytes], *, sha: dict[str, str] | None = None,
                   generator: str = "") -> Path:
    """A directions manifest like the packaged one: [[download]] entries and sliders using them."""
    sha = sha if sha is not None else {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}
    text = ""
    for n, b in files.items():
        text += (f'[[download]]\nname = "dl-{Path(n).stem}"\nfile = "{n}"\nurl = "{base}/{n}"\n'
                 f'sha256 = "{sha.get(n, "")}"\nsize = {len(b)}\ngenerator = "{generator}"\n'
                 f'description = "test direction {n}"\ndefault = true\n\n')
    text += ('[[slider]]\nname = "age"\nlabel = "Age"\ngroup = "InterFaceGAN"\nkind = "interfacegan"\n'
             f'file = "age.pt"\ngenerator = "{generator}"\nrange = [-5.0, 5.0]\n\n'
             '[[slider]]\nname = "smile"\nlabel = "Smile"\ngroup = "InterFaceGAN"\nkind = "interfacegan"\n'
             f'file = "smile.pt"\ngenerator = "{generator}"\nrange = [-5.0, 5.0]\n\n'
             '[[slider]]\nname = "pc_two"\nlabel = "PC 2"\ngroup = "GANSpace"\nkind = "ganspace"\n'
             f'file = "tiny_pca.pt"\ngenerator = "{generator}"\ncomponent = 1\nlayer_start = 0\nlayer_stop = 2\n')
    path.write_text(text)
    return path


@pytest.fixture()
def folders(tmp_path, monkeypatch):
    """Empty weights and directions folders, checksums in a user folder of this test."""
    d = {"weights": tmp_path / "w", "user_weights": tmp_path / "user" / "weights", "directions": tmp_path / "dirs",
         "user_directions": tmp_path / "user" / "directions"}
    monkeypatch.setenv("HYPERINVERTER_WEIGHTS", str(d["weights"]))
    monkeypatch.setenv("HYPERINVERTER_USER_WEIGHTS", str(d["user_weights"]))
    monkeypatch.setenv("HYPERINVERTER_DIRECTIONS", str(d["directions"]))
    monkeypatch.setenv("HYPERINVERTER_USER_DIRECTIONS", str(d["user_directions"]))
    return d


@pytest.fixture()
def published(server, tmp_path, monkeypatch, folders):
    """The server publishes three direction files; the packaged manifests name them (and one model)."""
    files = _direction_bytes(tmp_path)
    for n, b in files.items():
        server.files["/" + n] = b
    server.files["/tiny.pkl"] = b"\x80\x04" + bytes(range(256)) * 40
    manifest = write_manifest(tmp_path / "directions.toml", server.base, files,
                              sha={"age.pt": hashlib.sha256(files["age.pt"]).hexdigest(),
                                   "tiny_pca.pt": hashlib.sha256(files["tiny_pca.pt"]).hexdigest()})  # smile: unknown
    monkeypatch.setattr("hyperinverter_gui.editing.library.packaged_manifest", lambda: manifest)
    models = tmp_path / "models.toml"
    models.write_text(f'[[model]]\nname = "tiny"\nrole = "generator"\nfile = "tiny.pkl"\n'
                      f'url = "{server.base}/tiny.pkl"\ndefault = true\n')
    monkeypatch.setattr("hyperinverter_gui.catalog.discovery.manifest_path", lambda: models)
    return files


# --------------------------------------------------------------------------
# The packaged manifest


def test_packaged_manifest_names_a_pinned_checksummed_download_for_every_slider_file():
    from hyperinverter_gui.app.downloads import direction_entries
    from hyperinverter_gui.editing.library import packaged_manifest, read_manifest

    data = tomllib.loads(packaged_manifest().read_text(encoding="utf-8"))
    entries = {e.file: e for e in direction_entries()}
    assert len(entries) == len(data["download"]) == 5
    for spec in read_manifest():
        e = entries[spec.file]
        assert spec.url == e.url  # the slider's own address comes from its download entry
        assert e.role == "direction" and e.install == "directions" and e.domain == spec.generator
    for e in entries.values():
        assert re.fullmatch(r"[0-9a-f]{64}", e.sha256) and e.size and e.default
        # An address pinned to a commit: the bytes there cannot change under the checksum.
        assert re.fullmatch(r"https://github\.com/VinAIResearch/HyperInverter/raw/[0-9a-f]{40}/editings/.+\.pt", e.url)


# --------------------------------------------------------------------------
# The command line: `weights download defaults` fetches models and directions alike


def test_weights_download_defaults_fetches_the_direction_files(published, server, folders, capsys):
    assert main(["weights", "download", "defaults"]) == 0
    err = capsys.readouterr().err
    for n, b in published.items():
        assert (folders["directions"] / n).read_bytes() == b  # into the directions drop folder
    assert (folders["weights"] / "tiny.pkl").is_file()  # and the model into the weights folder
    # Known checksums are verified; the unknown one (smile.pt) is recorded, as for models.
    assert re.search(r"dl-age: \d+ bytes, sha256 [0-9a-f]{64} \(verified\)", err)
    assert "dl-smile" in err and "(recorded)" in err
    recorded = json.loads((folders["user_weights"].parent / "checksums.json").read_text())
    assert recorded["smile.pt"]["sha256"] == hashlib.sha256(published["smile.pt"]).hexdigest()
    assert "age.pt" not in recorded
    # Progress: tqdm's bar for each file reached its size.
    assert "tiny_pca.pt: 100%" in err and "smile.pt: 100%" in err
    # The sliders are there now.
    assert main(["directions", "list"]) == 0
    out = capsys.readouterr().out
    assert "age " in out and "pc_two" in out and "missing files" not in out
    # A second run finds them.
    assert main(["directions", "download"]) == 0
    assert "dl-age: already present at" in capsys.readouterr().err
    # The next download of smile.pt is checked against the checksum the first one recorded.
    (folders["directions"] / "smile.pt").unlink()
    b = published["smile.pt"]
    server.files["/smile.pt"] = b[:100] + bytes([b[100] ^ 0xFF]) + b[101:]  # same size, other bytes
    assert main(["directions", "download", "dl-smile"]) == 2
    assert "checksum mismatch for smile.pt" in capsys.readouterr().err
    assert not (folders["directions"] / "smile.pt").exists()


def test_directions_list_says_how_to_download_what_is_missing(published, capsys):
    assert main(["directions", "list"]) == 0
    out = capsys.readouterr().out
    assert "hyperinverter directions download" in out and "(download name: dl-age)" in out


def test_direction_download_progress_checksum_and_resume(published, server, folders):
    from hyperinverter_gui.app.downloads import direction_entries, fetch

    entry = next(e for e in direction_entries() if e.file == "tiny_pca.pt")
    data = published["tiny_pca.pt"]
    # An interrupted earlier download: its first part is kept.
    folders["directions"].mkdir(parents=True)
    (folders["directions"] / "tiny_pca.pt.part").write_bytes(data[:5000])
    seen = []
    got = fetch(entry, progress=lambda done, total: seen.append((done, total)))
    assert got.state == "verified" and got.path == folders["directions"] / "tiny_pca.pt"
    assert got.path.read_bytes() == data and not (folders["directions"] / "tiny_pca.pt.part").exists()
    assert server.log[-1] == ("/tiny_pca.pt", "bytes=5000-")  # resumed, not started over
    assert seen[-1] == (len(data), len(data)) and all(d > 5000 for d, _ in seen)
    from hyperinverter_gui.editing.library import load_library

    assert "pc_two" in load_library().directions  # the slider works from the downloaded file


def test_direction_download_refuses_html_and_bad_checksums(published, server, folders, tmp_path):
    from hyperinverter_gui.app.downloads import direction_entries, fetch

    entry = next(e for e in direction_entries() if e.file == "age.pt")
    server.pages["/age.pt"] = "<!DOCTYPE html><html><body>Sign in to continue</body></html>"
    with pytest.raises(DownloadError, match=r"HTML page.*Download http://127\.0\.0\.1:\d+/age\.pt .*save it as"):
        fetch(entry)
    assert not (folders["directions"] / "age.pt").exists()
    del server.pages["/age.pt"]
    server.files["/age.pt"] = published["smile.pt"]  # another file under the name
    with pytest.raises(DownloadError, match="checksum mismatch for age.pt"):
        fetch(entry)
    assert list(folders["directions"].iterdir()) == []  # nothing half-written, no .part left


def test_direction_downloads_go_to_the_user_folder_when_the_drop_folder_is_read_only(published, monkeypatch,
                                                                                       folders):
    from hyperinverter_gui.app.downloads import direction_entries, fetch

    monkeypatch.setenv("HYPERINVERTER_DIRECTIONS", "/proc/hyperinverter-directions")  # cannot be created
    got = fetch(next(e for e in direction_entries() if e.file == "age.pt"))
    assert got.path == folders["user_directions"] / "age.pt"


# --------------------------------------------------------------------------
# Google Drive through gdown, against a local server


def test_drive_download_through_gdown_progress_checksum(server, tmp_path):
    data = bytes(range(256)) * 3000
    server.files["/big.pt"] = b"PK\x03\x04" + data
    seen = []
    r = download(f"{server.base}/big.pt?id=x", tmp_path / "big.pt", hashlib.sha256(b"PK\x03\x04" + data).hexdigest(),
                 progress=lambda d, t: seen.append((d, t)), drive_hosts=("127.0.0.1",))
    assert r.verified and (tmp_path / "big.pt").read_bytes() == b"PK\x03\x04" + data
    assert seen[-1] == (len(data) + 4, len(data) + 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.pt"]  # gdown's staging file was renamed


def test_drive_download_through_gdown_resumes(server, tmp_path):
    payload = b"PK\x03\x04" + bytes(range(256)) * 8000  # 2 MB: gdown writes in pieces of 512 KB
    server.files["/big.pt"] = payload
    server.truncate["/big.pt"] = 1_300_000  # the connection drops in the third piece
    with pytest.raises(DownloadError, match="stopped before the end.*run the command again to resume"):
        download(f"{server.base}/big.pt", tmp_path / "big.pt", drive_hosts=("127.0.0.1",), timeout=10)
    assert not (tmp_path / "big.pt").exists()
    partial = [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert len(partial) == 1
    kept = partial[0].stat().st_size
    assert 0 < kept <= 1_300_000 and partial[0].read_bytes() == payload[:kept]
    r = download(f"{server.base}/big.pt", tmp_path / "big.pt", hashlib.sha256(payload).hexdigest(),
                 drive_hosts=("127.0.0.1",))
    assert r.verified and (tmp_path / "big.pt").read_bytes() == payload
    assert server.log[-1] == ("/big.pt", f"bytes={kept}-")  # resumed where it stopped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.pt"]


QUOTA_PAGE = ("<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>"
              "<p class=\"uc-error-caption\">Sorry, you can't view or download this file at this time.</p>"
              "<p class=\"uc-error-subcaption\">Too many users have viewed or downloaded this file recently. Please "
              "try accessing the file again later.</p></body></html>")


def test_drive_html_is_refused_and_a_quota_page_names_the_manual_route(server, tmp_path):
    server.pages["/quota"] = QUOTA_PAGE
    with pytest.raises(DownloadError) as e:
        download(f"{server.base}/quota", tmp_path / "G.pkl", drive_hosts=("127.0.0.1",))
    msg = str(e.value)
    assert "download quota of this file is exceeded" in msg and "Try again later" in msg
    assert re.search(r"open http://127\.0\.0\.1:\d+/quota in a browser .* save it as .*G\.pkl", msg)
    server.pages["/signin"] = "<html><body>Sign in</body></html>"
    with pytest.raises(DownloadError, match=r"Google Drive sent a page instead of the file.*save it as"):
        download(f"{server.base}/signin", tmp_path / "G.pkl", drive_hosts=("127.0.0.1",))
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{server.base}/gone", tmp_path / "G.pkl", drive_hosts=("127.0.0.1",))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------
# Google Drive through gdown, against a local fake of Drive's hosts (HTTPS proxy on 127.0.0.1)

DRIVE_FILE = b"\x80\x04" + bytes(range(256)) * 2000


class _FakeDrive(http.server.BaseHTTPRequestHandler):
    """An HTTPS proxy that answers for drive.google.com / drive.usercontent.google.com itself."""

    cert: tuple[str, str] = ("", "")
    log: list = []

    def log_message(self, *args):
        pass

    def do_CONNECT(self):  # noqa: N802
        host = self.path.split(":")[0]
        self.send_response(200, "Connection established")
        self.end_headers()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*self.cert)
        conn = ctx.wrap_socket(self.connection, server_side=True)
        self.connection = conn
        self.rfile = conn.makefile("rb")
        self.wfile = socketserver._SocketWriter(conn)
        self.tunnel_host = host
        self.handle_one_request()
        self.close_connection = True

    def _send(self, body: bytes, ctype: str, extra: dict | None = None):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        host = getattr(self, "tunnel_host", "")
        type(self).log.append((host, self.path))
        if host == "drive.google.com" and self.path.startswith("/uc?id=BIGFILE"):
            # The "can't scan this file for viruses" page of a large file, with its download form.
            page = ('<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>\n'
                    '<form id="download-form" action="https://drive.usercontent.google.com/download" method="get">'
                    '<input type="submit" value="Download anyway"/><input type="hidden" name="id" value="BIGFILE">'
                    '<input type="hidden" name="export" value="download"><input type="hidden" name="confirm" '
                    'value="t"><input type="hidden" name="uuid" value="1234-abcd"></form>\n</body></html>')
            self._send(page.encode(), "text/html; charset=utf-8")
        elif host == "drive.usercontent.google.com" and "id=BIGFILE" in self.path and "confirm=t" in self.path \
                and "uuid=1234-abcd" in self.path:
            self._send(DRIVE_FILE, "application/octet-stream",
                       {"Content-Disposition": 'attachment; filename="stylegan2-ffhq-config-f.pkl"'})
        elif host == "drive.google.com" and self.path.startswith("/uc?id=BUSYFILE"):
            self._send(QUOTA_PAGE.replace("><", ">\n<").encode(), "text/html; charset=utf-8")
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


@pytest.fixture()
def fake_drive(tmp_path, monkeypatch):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the fake Drive's certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=drive.google.com", "-addext",
                    "subjectAltName=DNS:drive.google.com,DNS:drive.usercontent.google.com,DNS:docs.google.com"],
                   check=True, capture_output=True, timeout=60)
    handler = type("Drive", (_FakeDrive,), {"cert": (str(cert), str(key)), "log": []})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    proxy = f"http://127.0.0.1:{srv.server_address[1]}"
    for var in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, proxy)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # trust the fake Drive's certificate
    yield handler
    srv.shutdown()
    srv.server_close()


def test_drive_confirmation_page_is_followed_by_gdown(fake_drive, tmp_path):
    seen = []
    r = download("https://drive.google.com/uc?id=BIGFILE", tmp_path / "G.pkl",
                 hashlib.sha256(DRIVE_FILE).hexdigest(), progress=lambda d, t: seen.append(d))
    assert r.verified and (tmp_path / "G.pkl").read_bytes() == DRIVE_FILE and seen[-1] == len(DRIVE_FILE)
    assert [h for h, _ in fake_drive.log] == ["drive.google.com", "drive.usercontent.google.com"]


def test_drive_quota_error_says_so_and_names_the_manual_route(fake_drive, tmp_path):
    dest = tmp_path / "weights" / "G.pkl"
    with pytest.raises(DownloadError) as e:
        download("https://drive.google.com/uc?id=BUSYFILE", dest)
    msg = str(e.value)
    assert "download quota of this file is exceeded" in msg
    assert "open https://drive.google.com/uc?id=BUSYFILE in a browser" in msg and str(dest) in msg
    assert list(dest.parent.iterdir()) == []
    assert fake_drive.log == [("drive.google.com", "/uc?id=BUSYFILE")]


# --------------------------------------------------------------------------
# GANSpace for the generator, as a job (Qt-free)


def test_ganspace_job_progress_cache_and_sliders(model_dir, generator, tmp_path, monkeypatch):
    from hyperinverter_gui.app.ganspace import ganspace_job
    from hyperinverter_gui.app.jobs import InlineExecutor, Job, JobManager
    from hyperinverter_gui.editing.edits import compute_ganspace
    from hyperinverter_gui.editing.library import generator_key, load_library
    from hyperinverter_gui.engine import Engine, ModelFiles

    monkeypatch.setenv("HYPERINVERTER_USER_DIRECTIONS", str(tmp_path / "user_dirs"))
    monkeypatch.setenv("HYPERINVERTER_CACHE", str(tmp_path / "cache"))
    engine = Engine("cpu")
    engine.load(ModelFiles(generator=model_dir / "G.pkl"))
    jobs = JobManager()
    jobs.executor = InlineExecutor(engine, jobs)
    seen, done = [], []
    jobs.submit(Job("ganspace", ganspace_job(model_dir / "G.pkl", samples=9000, components=20),
                    on_done=done.append, on_progress=lambda stage, f: seen.append((stage, f))))
    key = generator_key(model_dir / "G.pkl")
    manifest = tmp_path / "user_dirs" / "computed" / f"{key}_pca.toml"
    assert done == [manifest] and (tmp_path / "user_dirs" / "computed" / f"{key}_pca.pt").is_file()
    assert [round(f, 3) for _, f in seen] == [round(4096 / 9000, 3), round(8192 / 9000, 3), 1.0]
    assert seen[-1][0] == "GANSpace: 9,000 of 9,000 samples"
    info = tomllib.loads(manifest.read_text())
    assert info["ganspace"]["samples"] == 9000 and len(info["slider"]) == 10
    # Its first components are sliders for this generator (and only for it).
    lib = load_library(tmp_path / "no_dirs", num_ws=generator.num_ws, generator_key=key)
    assert [n for n in lib.directions if n.startswith("pc")] == [f"pc{i}" for i in range(1, 11)]
    assert "pc1" not in load_library(tmp_path / "no_dirs", generator_key="another-123").directions
    ref = compute_ganspace(lambda z: generator.mapping(z)[:, 0], generator.z_dim, 9000, 20, 0)
    pc1 = lib.directions["pc1"]
    assert torch.allclose(pc1.vector, ref.comp[0].reshape(1, -1) * ref.std[0], atol=1e-4)
    assert pc1.layer_start == 0 and pc1.layer_stop is None and pc1.kind == "ganspace"
    # Cancelled between batches (after the first): it stops there and writes nothing.
    shutil.rmtree(tmp_path / "user_dirs")
    seen.clear()
    done.clear()
    job = Job("ganspace", ganspace_job(model_dir / "G.pkl", samples=9000, components=20), on_done=done.append,
              on_progress=lambda stage, f: (seen.append(f), job.token.cancel()))
    jobs.submit(job)
    assert job.id not in jobs.running and done == [] and len(seen) == 1  # answered (cancelled), not done
    assert not (tmp_path / "user_dirs").exists()


def test_cli_ganspace_without_output_caches_it_for_the_generator(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HYPERINVERTER_USER_DIRECTIONS", str(tmp_path / "user_dirs"))
    monkeypatch.setenv("HYPERINVERTER_DIRECTIONS", str(tmp_path / "dirs"))
    assert main(["directions", "ganspace", "-g", str(model_dir / "G.pkl"), "--samples", "5000", "--components",
                 "12", "--device", "cpu"]) == 0
    assert "computed" in capsys.readouterr().err
    assert main(["directions", "list", "-g", str(model_dir / "G.pkl")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"pc1\s+ganspace\s+component 0, all ws", out) and "pc10" in out


# --------------------------------------------------------------------------
# The editor: first-run panel, and "Compute GANSpace for this generator"

LONG = 120_000


def test_first_run_panel_downloads_models_and_directions(qtbot, server, tmp_path, monkeypatch, folders, model_dir):
    pytest.importorskip("pytestqt")
    from PySide6.QtCore import QSettings, Qt
    from PySide6.QtTest import QTest

    from hyperinverter_gui._qt.main_window import MainWindow

    monkeypatch.setenv("HYPERINVERTER_CACHE", str(tmp_path / "cache"))
    files = _direction_bytes(tmp_path)
    for n, b in files.items():
        server.files["/" + n] = b
        server.slow["/" + n] = 0.08  # 2 KB at a time: the panel is seen while they arrive
    server.files["/G.pkl"] = (model_dir / "G.pkl").read_bytes()
    server.files["/HI.pt"] = (model_dir / "HI.pt").read_bytes()
    manifest = write_manifest(tmp_path / "directions.toml", server.base, files)
    monkeypatch.setattr("hyperinverter_gui.editing.library.packaged_manifest", lambda: manifest)
    models = tmp_path / "models.toml"
    models.write_text(
        f'[[model]]\nname = "tiny-generator"\nrole = "generator"\nfile = "G.pkl"\nurl = "{server.base}/G.pkl"\n'
        'default = true\ndescription = "a tiny StyleGAN2"\n\n'
        f'[[model]]\nname = "tiny-inverter"\nrole = "inverter"\nfile = "HI.pt"\nurl = "{server.base}/HI.pt"\n'
        'default = true\ndescription = "a tiny HyperInverter"\n')
    monkeypatch.setattr("hyperinverter_gui.catalog.discovery.manifest_path", lambda: models)

    win = MainWindow(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    try:
        panel = win.models_panel
        assert panel.isVisible()
        text = panel.title.text()
        assert "Some models are missing" in text and "Edit directions" in text and "tiny_pca.pt" in text
        assert panel.download_button.text() == "Download the default models and edit directions"
        assert win.slider_panel.empty.isVisible()
        with qtbot.waitSignal(win.modelsLoaded, timeout=LONG):
            QTest.mouseClick(panel.download_button, Qt.LeftButton)
            assert not panel.download_button.isEnabled() and panel.bar.isVisible()
            qtbot.waitUntil(lambda: panel._states.get("dl-tiny_pca", "").startswith("downloading"), timeout=LONG)
            assert panel._states["tiny-generator"] == "done" and "downloading" in panel.title.text()
            assert "tiny_pca.pt (" in panel.bar.format() and " of 5)" in panel.bar.format()
            shot = win.grab()
            assert not shot.isNull()
            shots = Path(__import__("os").environ.get("HYPERINVERTER_SHOTS", str(tmp_path)))
            shots.mkdir(parents=True, exist_ok=True)
            shot.save(str(shots / "first_run_directions_downloading.png"))
        qtbot.waitUntil(lambda: not panel.isVisible(), timeout=LONG)
        assert {"age", "smile", "pc_two"} <= set(win.slider_panel.sliders)
        for n, b in files.items():
            assert (folders["directions"] / n).read_bytes() == b
        assert not win.ganspace_box.isVisible()  # a GANSpace slider fits this generator now
    finally:
        win.shutdown()


def test_compute_ganspace_for_this_generator_from_the_edits_panel(qtbot, tmp_path, monkeypatch, model_dir):
    pytest.importorskip("pytestqt")
    from PySide6.QtCore import QSettings, Qt
    from PySide6.QtTest import QTest

    from hyperinverter_gui._qt.main_window import MainWindow
    from hyperinverter_gui.editing.library import generator_key

    monkeypatch.setenv("HYPERINVERTER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HYPERINVERTER_USER_DIRECTIONS", str(tmp_path / "user_dirs"))
    win = MainWindow(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat), directions_dir=tmp_path / "nodirs")
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    try:
        with qtbot.waitSignal(win.modelsLoaded, timeout=LONG):
            win.models_panel.refresh(model_paths={"generator": model_dir / "G.pkl", "inverter": model_dir / "HI.pt"})
        box = win.ganspace_box
        assert box.isVisible() and not win.directions  # no published direction fits a 32 px generator
        assert not win.models_panel.isVisible()
        box.samples = 9000
        QTest.mouseClick(box.button, Qt.LeftButton)
        assert box.running and box.bar.isVisible() and not box.button.isEnabled()
        qtbot.waitUntil(lambda: "pc1" in win.directions, timeout=LONG)
        assert not box.isVisible() and "pc1" in win.slider_panel.sliders
        assert (tmp_path / "user_dirs" / "computed" / f"{generator_key(model_dir / 'G.pkl')}_pca.pt").is_file()
    finally:
        win.shutdown()
