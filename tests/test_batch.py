"""`hyperinverter batch`: inputs, names, shards, resuming, and the local and Ray executors writing the same bytes.

The runs use the tiny seeded models of conftest (32 px generator, full-size encoders) and photos
made here: 18 crops of one portrait in nested folders plus 2 broken files.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hyperinverter_gui.batch.inputs import (BatchInputError, collect_inputs, parse_shard, plan_items,
                                            shard_items)
from hyperinverter_gui.batch.table import comparable, read_rows
from hyperinverter_gui.cli.main import main

REPO = Path(__file__).resolve().parents[1]


def tree_hashes(folder: Path, suffixes=(".png", ".jpg", ".safetensors")) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix in suffixes}


def table_rows(folder: Path, pattern: str = "results*.jsonl") -> list[dict]:
    rows = []
    for t in sorted(folder.glob(pattern)):
        rows += list(read_rows(t)[0].values())
    return sorted((comparable(r) for r in rows), key=lambda r: r["index"])


# ---------------------------------------------------------------------------- inputs (no models)


def touch_photo(path: Path, size=8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(path)
    return path


def test_folder_is_searched_recursively_in_a_stable_order_without_hidden_files(tmp_path):
    for rel in ("b.png", "A.jpg", "sub/c.webp", "sub/deeper/d.png", ".hidden/e.png", "sub/.f.png"):
        touch_photo(tmp_path / "in" / rel)
    (tmp_path / "in" / "notes.txt").write_text("x")
    inputs = collect_inputs(tmp_path / "in")
    keys = [it.key for it in plan_items(inputs)]
    assert keys == ["A", "b", "sub/c", "sub/deeper/d"]
    assert inputs.left_out == 1


def test_output_folder_inside_the_input_folder_is_not_read_as_input(tmp_path):
    touch_photo(tmp_path / "in" / "a.png")
    touch_photo(tmp_path / "in" / "out" / "a.png")  # an earlier run's output
    inputs = collect_inputs(tmp_path / "in", exclude=tmp_path / "in" / "out")
    assert [p.name for p in inputs.paths] == ["a.png"] and len(inputs.paths) == 1


def test_names_that_clash_get_distinct_outputs(tmp_path):
    for rel in ("face.png", "face.jpg", "Face.webp", "other.png"):
        touch_photo(tmp_path / "in" / rel)
    keys = [it.key for it in plan_items(collect_inputs(tmp_path / "in"))]
    assert sorted(keys) == ["Face_webp", "face_jpg", "face_png", "other"]
    assert len({k.casefold() for k in keys}) == len(keys)


@pytest.mark.parametrize("kind", ["txt", "csv", "jsonl"])
def test_list_files(tmp_path, kind):
    a = touch_photo(tmp_path / "photos" / "a.png")
    b = touch_photo(tmp_path / "elsewhere" / "a.png")  # same name, outside the list's folder
    touch_photo(tmp_path / "photos" / "c.png")
    lst = tmp_path / f"list.{kind}"
    rel = ["photos/a.png", str(b), "photos/c.png", "photos/a.png"]  # the last one twice: one item
    if kind == "txt":
        lst.write_text("# my photos\n\n" + "\n".join(rel) + "\n")
    elif kind == "csv":
        lst.write_text("id,Path\n" + "\n".join(f"{i},{r}" for i, r in enumerate(rel)) + "\n")
    else:
        lst.write_text("\n".join(json.dumps({"path": r, "label": i}) for i, r in enumerate(rel)) + "\n")
    items = plan_items(collect_inputs(lst))
    assert [it.source.resolve() for it in items] == [a.resolve(), b.resolve(), (tmp_path / "photos/c.png").resolve()]
    assert len({it.key.casefold() for it in items}) == 3


def test_bad_list_files_say_where(tmp_path):
    bad_csv = tmp_path / "l.csv"
    bad_csv.write_text("name,size\nx,1\n")
    with pytest.raises(BatchInputError, match="no column named path"):
        collect_inputs(bad_csv)
    bad_jsonl = tmp_path / "l.jsonl"
    bad_jsonl.write_text('{"path": "a.png"}\n{"file": 3}\n')
    with pytest.raises(BatchInputError, match="line 2"):
        collect_inputs(bad_jsonl)
    with pytest.raises(BatchInputError, match="not found"):
        collect_inputs(tmp_path / "nope")
    with pytest.raises(BatchInputError, match="matches no photos"):
        collect_inputs(str(tmp_path / "*.png"))


def test_glob_patterns_keep_the_folders_below_the_fixed_part(tmp_path):
    touch_photo(tmp_path / "in" / "x" / "a.jpg")
    touch_photo(tmp_path / "in" / "y" / "a.jpg")
    touch_photo(tmp_path / "in" / "y" / "b.png")
    items = plan_items(collect_inputs(str(tmp_path / "in" / "**" / "*.jpg")))
    assert [it.key for it in items] == ["x/a", "y/a"]


@pytest.mark.parametrize("n", [1, 3, 16])
def test_shards_are_disjoint_whole_groups_and_together_the_whole(tmp_path, n):
    for i in range(23):
        touch_photo(tmp_path / "in" / f"p{i:02d}.png")
    items = plan_items(collect_inputs(tmp_path / "in"))
    parts = [shard_items(items, (i, n), batch_size=4) for i in range(1, n + 1)]
    assert sorted(it.index for p in parts for it in p) == list(range(23))
    for p in parts:  # each group lies in one shard only
        for it in p:
            assert all(other.group(4) != it.group(4) for q in parts if q is not p for other in q)


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0", "-1/2"])
def test_bad_shard_specs(text):
    with pytest.raises(BatchInputError, match="shard"):
        parse_shard(text)


# ---------------------------------------------------------------------------- runs with the tiny models


def make_batch_photos(folder: Path, portrait: np.ndarray) -> None:
    """18 crops of a portrait (flipped, shifted, in subfolders, two sharing a name) and 2 broken files."""
    for i in range(18):
        dx, dy = (i * 7) % 40, (i * 11) % 40
        im = Image.fromarray(portrait[dy:dy + 400, dx:dx + 400])
        if i % 2:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        sub = folder / ("sub" if i % 3 == 0 else "") / ("deeper" if i % 9 == 0 else "")
        sub.mkdir(parents=True, exist_ok=True)
        name = "same" if i in (4, 5) else f"p{i:02d}"
        im.save(sub / f"{name}.{'png' if i % 4 == 0 else 'jpg'}", quality=92)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 this is not really a JPEG")
    good = folder / "p01.jpg"
    (folder / "truncated.png").write_bytes(touch_photo(folder / "t.png", 64).read_bytes()[:60])
    (folder / "t.png").unlink()
    assert good.exists()


@pytest.fixture(scope="module")
def batch_case(tmp_path_factory, model_dir, astronaut):
    """The photos, the directions, and the local executor's run (the reference the others must equal)."""
    import torch

    root = tmp_path_factory.mktemp("batch")
    photos = root / "photos"
    make_batch_photos(photos, astronaut)
    d = root / "directions"
    d.mkdir()
    torch.save(torch.randn(1, 512, generator=torch.Generator().manual_seed(11)) * 0.5, d / "age.pt")
    (d / "manifest.toml").write_text('[[slider]]\nname = "age"\nlabel = "Age"\ngroup = "InterFaceGAN"\n'
                                     'kind = "interfacegan"\nfile = "age.pt"\nrange = [-5.0, 5.0]\n')
    common = ["-g", str(model_dir / "G.pkl"), "-c", str(model_dir / "HI.pt"), "--detector", "dlib",
              "-e", "age=+1.5", "--directions", str(d), "--save-inversion", "--threads", "2", "--batch-size", "4"]
    out = root / "local"
    rc = main(["batch", str(photos), "-o", str(out), *common])
    return {"photos": photos, "common": common, "local": out, "rc": rc, "root": root}


def test_local_run_writes_every_good_photo_and_reports_the_broken_ones(batch_case):
    out = batch_case["local"]
    assert batch_case["rc"] == 1  # two photos failed
    rows = table_rows(out)
    assert len(rows) == 20 and [r["index"] for r in rows] == list(range(20))
    failed = {Path(r["source"]).name: r["error"] for r in rows if r["status"] != "done"}
    assert set(failed) == {"broken.jpg", "truncated.png"}
    assert "not an image" in failed["broken.jpg"] and "truncated" in failed["truncated.png"]
    done = [r for r in rows if r["status"] == "done"]
    assert len(done) == 18
    for r in done:
        assert r["detector"] == "dlib" and r["edits"] == "age=+1.5" and r["generator"] == "G.pkl"
        for rel, digest in r["sha256"].items():
            assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
        img = Image.open(out / r["outputs"]["image"])
        assert img.size == (32, 32)
    # same.png and same.jpg both kept, under distinct names
    assert {"same_png", "same_jpg"} <= {r["id"] for r in done}
    assert not list(out.rglob(".*.tmp*"))


def test_ray_equals_local_even_when_a_worker_is_killed(batch_case):
    """The Ray executor (local cluster, 3 logical CPUs) writes the same bytes and the same table;
    its engine actor is killed with SIGKILL after its first group, and Ray retries its work."""
    psutil = pytest.importorskip("psutil")
    pytest.importorskip("ray.data")
    out = batch_case["root"] / "ray"
    result: dict = {}

    def run() -> None:
        result["rc"] = main(["batch", str(batch_case["photos"]), "-o", str(out), *batch_case["common"],
                             "--engine", "ray", "--num-cpus", "3", "--cpus-per-worker", "2"])

    t = threading.Thread(target=run)
    t.start()
    killed = []
    deadline = time.monotonic() + 300
    try:
        while t.is_alive() and not killed and time.monotonic() < deadline:
            table = out / "results.jsonl"
            if table.exists() and table.read_text().count("\n") >= 4:
                for proc in psutil.process_iter(["pid", "cmdline"]):
                    cmd = " ".join(proc.info["cmdline"] or [])
                    if "InvertAndWrite" in cmd and proc.pid != os.getpid():
                        proc.send_signal(signal.SIGKILL)
                        killed.append(proc.pid)
            time.sleep(0.05)
    finally:
        t.join(600)
    assert killed, "the engine actor was not found to be killed"
    rows_before_end = read_rows(out / "results.jsonl")[0]
    assert result["rc"] == 1
    assert tree_hashes(out) == tree_hashes(batch_case["local"])
    assert table_rows(out) == table_rows(batch_case["local"])
    assert len(rows_before_end) == 20  # every item once
    workers = {r["worker"] for r in rows_before_end.values() if r["invert_s"] is not None}
    assert len(workers) >= 2  # the killed actor and its replacement both wrote rows


def test_shards_together_equal_the_whole_run(batch_case):
    out = batch_case["root"] / "shards"
    for i in (1, 2, 3):
        rc = main(["batch", str(batch_case["photos"]), "-o", str(out), *batch_case["common"], "--shard", f"{i}/3",
                   "--align-workers", "0"])
        assert rc in (0, 1)
    assert sorted(p.name for p in out.glob("results*.jsonl")) == [f"results.shard-{i}-of-3.jsonl" for i in (1, 2, 3)]
    assert tree_hashes(out) == tree_hashes(batch_case["local"])
    assert table_rows(out) == table_rows(batch_case["local"])


def test_another_recipe_into_the_same_folder_is_refused(batch_case, capsys):
    before = tree_hashes(batch_case["local"])
    common = [a if a != "age=+1.5" else "age=-1" for a in batch_case["common"]]
    rc = main(["batch", str(batch_case["photos"]), "-o", str(batch_case["local"]), *common])
    assert rc == 2
    err = capsys.readouterr().err
    assert "another batch" in err and "edits" in err and "Traceback" not in err
    assert tree_hashes(batch_case["local"]) == before


def test_outputs_never_replace_inputs_or_unknown_files(tmp_path, model_dir, capsys):
    photos = tmp_path / "photos"
    touch_photo(photos / "a.png", 32)
    lst = photos / "list.txt"  # a list beside the photos, and the output folder there too
    lst.write_text("a.png\n")
    models = ["-g", str(model_dir / "G.pkl"), "-c", str(model_dir / "HI.pt"), "--no-align"]
    photos_before = tree_hashes(photos)
    assert main(["batch", str(lst), "-o", str(photos), *models, "--overwrite"]) == 2
    assert "would replace the input" in capsys.readouterr().err
    assert main(["batch", str(photos), "-o", str(photos / "."), *models, "--overwrite"]) == 2
    assert "is the input folder" in capsys.readouterr().err
    assert tree_hashes(photos) == photos_before and sorted(p.name for p in photos.iterdir()) == ["a.png", "list.txt"]
    other = tmp_path / "other"
    touch_photo(other / "a.png", 4)  # someone's file where the output would go
    before = tree_hashes(other)
    assert main(["batch", str(photos), "-o", str(other), *models]) == 2
    assert "no batch results table" in capsys.readouterr().err
    assert tree_hashes(other) == before


def aligned_crops(folder: Path, n: int) -> None:
    """Smooth seeded 32 px 'aligned faces' (the tiny generator's resolution)."""
    folder.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(3)
    for i in range(n):
        low = g.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(low).resize((32, 32), Image.BICUBIC).save(folder / f"crop{i}.png")


def test_interrupted_run_resumes_with_only_the_missing_photos(tmp_path, model_dir):
    """SIGINT to a running batch (a real process), then the same command: only what was left is done;
    a damaged output is noticed and redone to the same bytes."""
    photos, out = tmp_path / "crops", tmp_path / "out"
    aligned_crops(photos, 8)
    cmd = [sys.executable, "-m", "hyperinverter_gui", "batch", str(photos), "-o", str(out), "--no-align",
           "-g", str(model_dir / "G.pkl"), "-c", str(model_dir / "HI.pt"), "--batch-size", "2", "--threads", "2"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    table = out / "results.jsonl"
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if table.exists() and table.read_text().count("\n") >= 2:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.02)
    err = proc.communicate(timeout=240)[1]
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    first = read_rows(table)[0]
    assert 2 <= len(first) < 8
    assert not list(out.rglob(".*.tmp*"))  # nothing half-written
    for p in out.glob("*.png"):
        Image.open(p).load()  # every image under a final name is whole

    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert again.returncode == 0, again.stderr
    assert f"{len(first)} done in an earlier run" in again.stderr
    assert f"{8 - len(first)} done, 0 failed, {len(first)} done earlier" in again.stderr
    rows = read_rows(table)[0]
    assert len(rows) == 8 and all(r["status"] == "done" for r in rows.values())
    pids = {r["worker"] for r in rows.values()}
    assert len(pids) == 2  # the first process's rows were kept, not redone
    assert sum(r["worker"] == rows[k]["worker"] for k, r in first.items()) == len(first)

    # A damaged output is not "complete": the next rerun redoes that photo (its group) only.
    hashes = tree_hashes(out)
    victim = out / "crop5.png"
    victim.write_bytes(victim.read_bytes()[:-7] + b"garbage")
    third = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert third.returncode == 0, third.stderr
    assert "1 done, 0 failed, 7 done earlier" in third.stderr
    assert tree_hashes(out) == hashes  # redone to the same bytes


def test_parquet_table_has_the_same_rows(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    from hyperinverter_gui.batch.table import write_parquet

    rows = [{"index": i, "id": f"p{i}", "status": "done" if i else "failed", "error": None if i else "bad",
             "outputs": {"image": f"p{i}.png"}, "sha256": {f"p{i}.png": "ab"}, "invert_s": 0.5} for i in range(3)]
    write_parquet(rows, tmp_path / "results.parquet")
    back = pq.read_table(tmp_path / "results.parquet").to_pylist()
    assert [r["id"] for r in back] == ["p0", "p1", "p2"] and back[0]["error"] == "bad"
    assert json.loads(back[1]["outputs"]) == {"image": "p1.png"}


def test_ray_missing_is_a_plain_message(monkeypatch):
    from hyperinverter_gui.batch import ray_executor

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ray_executor.RayUnavailableError, match=r"\[cluster\]"):
        ray_executor._ray()


def test_preset_and_paste_back_write_whole_photos_in_their_format(tmp_path, model_dir, astronaut, directions_dir,
                                                                    monkeypatch):
    from hyperinverter_gui.app.presets import PresetStore

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    PresetStore().save("Older", {"age": 2.0})
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(astronaut[:400, :400]).save(photos / "a.jpg", quality=92)
    Image.fromarray(astronaut[10:410, 20:380]).save(photos / "b.png")
    out = tmp_path / "out"
    rc = main(["batch", str(photos), "-o", str(out), "-g", str(model_dir / "G.pkl"), "-c", str(model_dir / "HI.pt"),
               "--detector", "dlib", "--preset", "Older", "--directions", str(directions_dir), "--paste-back",
               "--parquet"])
    assert rc == 0
    assert Image.open(out / "a.jpg").size == (400, 400) and Image.open(out / "a.jpg").format == "JPEG"
    assert Image.open(out / "b.png").size == (360, 400)
    rows = table_rows(out)
    assert [r["edits"] for r in rows] == ["age=+2", "age=+2"] and all(r["mode"] == "photo" for r in rows)
    assert json.loads((out / "batch.json").read_text())["edits"] == "age=+2"
    assert (out / "results.parquet").exists()
    # Away from the face the photo is the original (the edited face is pasted back only there).
    a_in = np.asarray(Image.open(photos / "b.png")).astype(int)
    a_out = np.asarray(Image.open(out / "b.png")).astype(int)
    assert np.abs(a_in[-20:, :40] - a_out[-20:, :40]).max() <= 1
    assert np.abs(a_in - a_out).max() > 10
