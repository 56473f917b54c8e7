"""The allocator setting that spares every frame its page faults (allocator.keep_freed_memory)."""

import subprocess
import sys
from pathlib import Path

import pytest

from hyperinverter_gui.host.allocator import _glibc

ROOT = Path(__file__).resolve().parent.parent

# In a fresh process (the setting is process-wide): "frames" that each run a chain of 64 MB
# tensors, every layer's output a fresh tensor and its input freed, as a synthesis does. After a
# few frames, count the minor page faults of one more -- in the main thread and in a worker
# thread, as the editor's engine runs in a QThread.
_PROBE = """
import resource, sys, threading
import torch
from hyperinverter_gui.host.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def frame():
    x = torch.ones(16 << 20)
    for _ in range(6):
        x = x * 2
    return float(x[0])
def steady_frame():
    for _ in range(4):
        frame()
    f0 = faults(); frame()
    return faults() - f0
out = {"main": steady_frame()}
t = threading.Thread(target=lambda: out.update(thread=steady_frame())); t.start(); t.join()
print(applied, out["main"], out["thread"])
"""


def _probe(mode: str, **env_extra) -> tuple[bool, int, int]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("THP_MEM_ALLOC_ENABLE", "HYPERINVERTER_MALLOC")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    applied, main, thread = out.stdout.split()
    return applied == "True", int(main), int(thread)


@pytest.mark.skipif(_glibc() is None, reason="the setting is for glibc's malloc (Linux)")
def test_freed_activations_are_reused_without_page_faults():
    applied, main, thread = _probe("keep")
    assert applied
    # Seven 64 MB tensors in 4 KB pages are 114688 faults; reused memory needs (almost) none.
    assert main < 2000 and thread < 2000, (main, thread)
    # Control: without the setting glibc maps fresh memory for it, so the probe can tell.
    applied, main, thread = _probe("system")
    assert not applied
    assert main > 50000 and thread > 50000, (main, thread)


@pytest.mark.skipif(_glibc() is None, reason="the setting is for glibc's malloc (Linux)")
def test_user_can_turn_the_allocator_setting_off():
    applied, main, _ = _probe("keep", HYPERINVERTER_MALLOC="system")
    assert not applied and main > 50000
