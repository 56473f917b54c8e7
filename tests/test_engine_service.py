"""The Engine through its public API: invert, render, interpolate, cancel per job, memory fallback.

The reference forward passes (``engine.reference``, the networks' own ``forward``) are the oracle;
the engine must match them (float32) while running the production renderer and staged inverter.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from hyperinverter_gui.app.jobs import Job, JobManager, ThreadExecutor
from hyperinverter_gui.editing.edits import Direction, apply_edits
from hyperinverter_gui.engine import Cancelled, CancelToken, Engine, EngineBusyError, ModelFiles
from hyperinverter_gui.engine.reference import invert as reference_invert
from hyperinverter_gui.errors import HyperInverterError


@pytest.fixture()
def engine(model_dir, tmp_path):
    e = Engine("cpu", "float32", cache=tmp_path / "cache")
    e.load(ModelFiles(generator=model_dir / "G.pkl", inverter=model_dir / "HI.pt"))
    return e


@pytest.fixture(scope="module")
def age():
    g = torch.Generator().manual_seed(5)
    return Direction("age", torch.randn(1, 512, generator=g) * 0.5)


def _uint8(photos: torch.Tensor) -> np.ndarray:
    return ((photos + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_invert_matches_the_reference_forward(engine, model, photos):
    ours = engine.invert(_uint8(photos))  # uint8 photos, as the editor and the CLI hand them over
    ref = reference_invert(model, photos)
    assert len(ours) == 2
    for a, b in zip(ours, ref):
        assert a.w.device.type == "cpu" and a.image.dtype == torch.float32
        assert (a.w - b.w).abs().max() < 1e-4
        assert (a.image - b.image).abs().max() < 1e-3 and (a.phase1 - b.phase1).abs().max() < 1e-3
        for k in b.deltas:
            rel = (a.deltas[k] - b.deltas[k]).norm() / b.deltas[k].norm().clamp_min(1e-12)
            assert rel < 1e-4, k


def test_render_an_edit_matches_the_reference_synthesis(engine, generator, photos, age):
    r = engine.invert(photos[:1])[0]
    assert engine.render(r) is r.image  # no edit: the inversion itself, nothing computed
    img = engine.render(r, [(age, 1.5)])
    w = apply_edits(r.w, [(age, 1.5)])
    with torch.no_grad():
        ref = generator.synthesis(w[None], r.deltas.batched())[0]
    assert img.shape == ref.shape and (img - ref).abs().max() < 1e-3
    # A negative control: the wrong value is far away (the comparison can fail).
    assert (engine.render(r, [(age, 1.0)]) - ref).abs().max() > 1e-2
    # Previews stop early, at the resolution asked for.
    assert engine.render(r, [(age, 1.5)], resolution=16, kind="preview").shape[-1] == 16


def test_interpolate_endpoints_and_midpoint(engine, generator, photos):
    a, b = engine.invert(photos)
    assert engine.interpolate(a, b, 0.0) is a.image and engine.interpolate(a, b, 1.0) is b.image
    mid = engine.interpolate(a, b, 0.5)
    w = torch.lerp(a.w, b.w, 0.5)
    deltas = {k: torch.lerp(a.deltas[k], b.deltas[k], 0.5)[None] for k in a.deltas}
    with torch.no_grad():
        ref = generator.synthesis(w[None], deltas)[0]
        plain = generator.synthesis(w[None], None)[0]
    assert (mid - ref).abs().max() < 1e-3
    assert (engine.interpolate(a, b, 0.5, latent_only=True) - plain).abs().max() < 1e-3
    frames = engine.interpolation_frames(a, b, 3)
    assert len(frames) == 3 and torch.equal(frames[0], a.image) and (frames[1] - ref).abs().max() < 1e-3


def test_cancel_is_per_job(engine, photos):
    """Two jobs queued on the engine thread; cancelling one mid-inversion leaves the other running."""
    manager = JobManager()
    executor = ThreadExecutor(engine, manager)
    answers: dict[str, object] = {}
    stages: list[str] = []
    try:
        def make_run(name: str):
            def run(eng, ctx):
                def on_stage(label, fraction):
                    stages.append(f"{name}:{label}")
                    if name == "A" and label.startswith("Phase I: synthesis"):
                        ctx.token.cancel()  # what the Cancel button does, from any thread
                    ctx.progress(label, fraction)
                return eng.invert(photos[:1], on_stage=on_stage, cancel=ctx.token)[0]
            return run

        for name in ("A", "B"):
            manager.submit(Job(name, make_run(name), on_done=lambda r, n=name: answers.__setitem__(n, r),
                               on_cancelled=lambda n=name: answers.__setitem__(n, "cancelled")))
        deadline = time.monotonic() + 120
        while len(manager.running) and time.monotonic() < deadline:
            executor.pump(timeout=0.1)
        assert "B" in answers and not isinstance(answers["B"], str)  # B ran to the end
        assert "A" not in answers  # a cancelled job's answers are dropped, never shown
        # A stopped between stages: it never reached Phase II.
        assert "A:Phase I: synthesis" in stages and not any(s.startswith("A:Phase II") for s in stages)
        assert any(s.startswith("B:Phase II: synthesis") for s in stages)
    finally:
        executor.shutdown()


def test_a_cancelled_token_stops_before_any_work(engine, photos):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        engine.invert(photos[:1], cancel=token)


def test_out_of_memory_frees_the_caches_and_retries(engine, photos, age, monkeypatch):
    """An allocation failure raised from inside the real render path (torch's own conv2d)."""
    r = engine.invert(photos[:1])[0]
    expected = engine.render(r, [(age, 1.0)], kind="exact")
    notices: list[str] = []
    engine.on_notice = notices.append
    real_conv2d = torch.nn.functional.conv2d
    calls = {"n": 0}

    def failing_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_conv2d(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", failing_once)
    img = engine.render(r, [(age, 2.0)], kind="exact")
    monkeypatch.setattr(torch.nn.functional, "conv2d", real_conv2d)
    assert calls["n"] > 1 and notices and "Memory ran short" in notices[0]
    assert torch.isfinite(img).all() and (img - engine.render(r, [(age, 2.0)], kind="exact")).abs().max() == 0
    assert not torch.equal(img, expected)

    # Out of memory twice in a row: a clear error, not a traceback.
    def always(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(torch.nn.functional, "conv2d", always)
    with pytest.raises(HyperInverterError, match="out of memory"):
        engine.render(r, [(age, 3.0)], kind="exact")


def test_one_thread_at_a_time(engine, photos):
    """The threading contract is enforced: a second thread gets a clear error, not corrupted state."""
    inside = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def slow_stage(label, fraction):
        inside.set()
        release.wait(30)

    t = threading.Thread(target=lambda: engine.invert(photos[:1], on_stage=slow_stage))
    t.start()
    try:
        assert inside.wait(60)
        try:
            engine.invert(photos[:1])
        except EngineBusyError as e:
            errors.append(e)
    finally:
        release.set()
        t.join()
    assert len(errors) == 1


def test_lazy_loading_needs_only_what_is_used(model_dir, tmp_path, inverted, age):
    """The CLI edits a saved inversion with the generator alone (no checkpoint is read)."""
    e = Engine("cpu", "float32", cache=None)
    e.load(ModelFiles(generator=model_dir / "G.pkl"), eager=False)
    assert e.render(inverted[0], [(age, 1.0)]).shape == inverted[0].image.shape
    with pytest.raises(HyperInverterError, match="no HyperInverter checkpoint"):
        e.invert(np.zeros((32, 32, 3), np.uint8))
