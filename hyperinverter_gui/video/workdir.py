"""The work folder of one video edit: what is done so far, so that a rerun continues there.

Layout::

    job.json                      what the folder is for (source, settings keys), for people and checks
    tracks-<detect key>.jsonl     one line per frame: its timestamp and the followed face (box, points)
    crops-<render key>/NNNNNN.png the edited aligned face of frame NNNNNN, at the model's resolution

A key is a hash of everything its results depend on: the detection key of the source file (path,
size, modification time), the frames selected, the detector and the face chosen; the render key
of the detection key, the crop smoothing, the models, backend and precision, the edits (with
their direction vectors) and the w / delta-theta smoothing. Changing an edit keeps the
detections; changing the clip or the face starts afresh. Files of other keys are removed when a
job starts, so the folder never grows with old settings.

Every crop is written to a temporary name and renamed, and a torn last line of the tracks file
(the process was killed while writing it) is dropped, so whatever is in the folder is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hyperinverter_gui.video.media import VideoError

WORK_FORMAT = "hyperinverter-video-work/1"


def digest(obj: Any) -> str:
    """A short stable hash of JSON-able settings."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def file_identity(path: Path | None) -> dict | None:
    if path is None:
        return None
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return {"path": str(p)}
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def default_work_dir(output: Path) -> Path:
    """Next to the output: ``clip_older.mp4`` -> ``clip_older.mp4.work``."""
    return output.with_name(output.name + ".work")


class WorkFolder:
    """Cached per-frame results of one job (see the module description)."""

    def __init__(self, root: Path, detect_key: str, render_key: str | None, description: Mapping[str, Any]):
        """``render_key`` None: detections only (an analysis); edited frames of any key are left alone."""
        self.root = Path(root)
        self.detect_key = detect_key
        self.render_key = render_key
        self.discarded = 0  # cached frames of other settings removed when this folder was opened
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise VideoError(f"cannot make the work folder {self.root}: {e.strerror or e}") from None
        job = self.root / "job.json"
        if job.exists():
            try:
                old = json.loads(job.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                old = {}
            if old.get("format") not in (None, WORK_FORMAT):
                raise VideoError(f"{self.root} is not a HyperInverter video work folder; use another --work folder")
        elif any(self.root.iterdir()):
            raise VideoError(f"{self.root} is not empty and is not a HyperInverter video work folder; "
                             "use another --work folder")
        self._remove_stale()
        if render_key is not None:
            self.crops_dir.mkdir(exist_ok=True)
        text = json.dumps({"format": WORK_FORMAT, "detect_key": detect_key, "render_key": render_key,
                           **description}, indent=2, default=str)
        tmp = job.with_name(".job.json.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, job)

    @property
    def tracks_path(self) -> Path:
        return self.root / f"tracks-{self.detect_key}.jsonl"

    @property
    def crops_dir(self) -> Path:
        return self.root / f"crops-{self.render_key}"

    def _remove_stale(self) -> None:
        for p in self.root.iterdir():
            if p.name.startswith("tracks-") and not p.name.startswith(self.tracks_path.stem):
                p.unlink(missing_ok=True)
            elif p.name.startswith("crops-") and self.render_key is not None and p != self.crops_dir:
                self.discarded += sum(1 for _ in p.glob("*.png"))
                shutil.rmtree(p, ignore_errors=True)

    # -- tracks
    def read_tracks(self) -> list[dict]:
        """The frames detected so far (a torn last line is dropped and cut off the file)."""
        path = self.tracks_path
        if not path.exists():
            return []
        rows: list[dict] = []
        good = 0
        with open(path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                try:
                    row = json.loads(line)
                except ValueError:
                    break
                if row.get("i") != len(rows):
                    break
                rows.append(row)
                good += len(line)
        if good != path.stat().st_size:
            with open(path, "r+b") as f:
                f.truncate(good)
        return rows

    def open_tracks(self):
        return open(self.tracks_path, "a", encoding="utf-8")

    @staticmethod
    def track_line(index: int, pts: int | None, time: float, face: Any, faces: int) -> str:
        row: dict[str, Any] = {"i": index, "pts": pts, "t": round(time, 6), "faces": faces}
        if face is not None:
            row["box"] = [float(v) for v in face.box]
            row["points5"] = [[None if not np.isfinite(v) else float(v) for v in p] for p in face.points5]
        return json.dumps(row) + "\n"

    # -- crops
    def crop_path(self, index: int) -> Path:
        return self.crops_dir / f"{index:06d}.png"

    def has_crop(self, index: int) -> bool:
        return self.crop_path(index).exists()

    def done_crops(self) -> set[int]:
        out = set()
        for p in self.crops_dir.glob("*.png"):
            try:
                out.add(int(p.stem))
            except ValueError:
                pass
        return out

    def write_crop(self, index: int, rgb: np.ndarray) -> None:
        from PIL import Image

        path = self.crop_path(index)
        tmp = path.with_name(f".{path.name}.tmp")
        Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, path)

    def read_crop(self, index: int) -> np.ndarray:
        from PIL import Image

        with Image.open(self.crop_path(index)) as im:
            return np.asarray(im.convert("RGB"))

    def iter_crop_indices(self) -> Iterator[int]:
        yield from sorted(self.done_crops())

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
