"""Releasing the pages of memory-mapped weights (memory.release_pages) on real cache files."""

from __future__ import annotations

import sys

import pytest
import torch

from hyperinverter_gui.catalog.cache import load_generator_cached, load_hyperinverter_cached
from hyperinverter_gui.engine.inverter import FastInverter
from hyperinverter_gui.host.memory import file_mappings, release_pages

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise and /proc are Linux's")


def _resident_kb(path_part: str) -> int:
    """Resident kB of this process's mappings of files whose path contains ``path_part``."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
                inside = len(head) >= 6 and path_part in head[-1]
            elif inside and line.startswith("Rss:"):
                total += int(head[1])
    return total


@pytest.fixture()
def mapped_model(tmp_path, model_dir):
    cache = tmp_path / "cache"
    g = load_generator_cached(model_dir / "G.pkl", cache)
    load_hyperinverter_cached(model_dir / "HI.pt", g, None, cache)  # converts into the cache
    g = load_generator_cached(model_dir / "G.pkl", cache)
    model = load_hyperinverter_cached(model_dir / "HI.pt", g, None, cache)  # memory-mapped from it
    return model, cache


def test_released_pages_come_back_from_the_file_unchanged(mapped_model, photos):
    model, cache = mapped_model
    e2 = model.w_bar_encoder
    assert any(cache.as_posix() in path for _, _, path in file_mappings())
    x = torch.nn.functional.interpolate(photos, size=(256, 256), mode="bilinear", align_corners=False)
    with torch.no_grad():
        before = e2(x)
        resident = _resident_kb("inverters")
        released = release_pages(e2)
        assert released >= sum(t.numel() * t.element_size() for t in e2.state_dict().values()) * 0.9
        assert _resident_kb("inverters") < resident - released / 1024 * 0.5
        after = e2(x)  # the weights are read again from the mapped file
        # Again (the GUI releases after every inversion; the module's file ranges are remembered).
        resident = _resident_kb("inverters")
        assert release_pages(e2) == released
        assert _resident_kb("inverters") < resident - released / 1024 * 0.5
        again = e2(x)
    assert torch.equal(before, after) and torch.equal(before, again)


def test_tensors_in_ordinary_memory_are_never_touched(model_dir):
    layer = torch.nn.Linear(256, 256)
    with torch.no_grad():
        layer.weight.normal_()
    saved = layer.weight.clone()
    assert release_pages(layer) == 0  # MADV_DONTNEED on anonymous memory would have zeroed it
    assert torch.equal(layer.weight, saved)
    assert release_pages([torch.zeros(0), saved]) == 0


def test_inverting_with_released_weights_gives_the_same_results(mapped_model, photos):
    model, _ = mapped_model
    plain = FastInverter(model).invert(photos)
    releasing = FastInverter(model, release_weights=True)
    for _ in range(2):  # the second run reads every network back from the file
        for a, b in zip(releasing.invert(photos), plain):
            assert torch.equal(a.w, b.w) and torch.equal(a.image, b.image)
            assert all(torch.equal(a.deltas[k], b.deltas[k]) for k in b.deltas)


def test_a_freshly_converted_model_is_already_served_from_its_cache_file(tmp_path, model_dir):
    cache = tmp_path / "cache"
    g = load_generator_cached(model_dir / "G.pkl", cache)  # converts
    model = load_hyperinverter_cached(model_dir / "HI.pt", g, None, cache)  # converts
    assert release_pages(model.w_bar_encoder) > 0 and release_pages(g.synthesis) > 0
    assert any("generators" in path for _, _, path in file_mappings())


def test_each_hypernetwork_regressor_hands_its_pages_back_once_it_has_run(mapped_model, photos):
    """The hypernetwork is the largest network: with release_weights its regressors go one at a time."""
    model, _ = mapped_model
    regs = list(model.hypernet.weight_regressors.values())
    resident: dict[str, int] = {}
    hooks = [regs[0].register_forward_pre_hook(lambda m, a: resident.update(first=_resident_kb("inverters"))),
             regs[-1].register_forward_pre_hook(lambda m, a: resident.update(last=_resident_kb("inverters")))]
    try:
        FastInverter(model, release_weights=True).invert(photos)
    finally:
        for h in hooks:
            h.remove()
    earlier_kb = sum(p.numel() * p.element_size() for r in regs[:-1] for p in r.parameters()) / 1024
    assert earlier_kb > 10_000  # the test's model is large enough for page-level effects to show
    # Had they stayed mapped in, the regressors before the last would add about earlier_kb.
    assert resident["last"] - resident["first"] < 0.25 * earlier_kb, (resident, earlier_kb)
