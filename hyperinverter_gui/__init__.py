"""HyperInverter Studio: edit real face photos with HyperInverter and StyleGAN2."""

import os as _os
import sys as _sys


def _huge_pages_available() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled", encoding="ascii") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


# Large CPU tensors (megapixel activations) in transparent huge pages: PyTorch's CPU allocator
# reads this once, before its first allocation, so it is set before torch is imported. A fresh
# 1024 px activation then costs ~4x less in page faults, which is most of a frame's non-conv time.
if _sys.platform.startswith("linux") and "torch" not in _sys.modules and _huge_pages_available():
    _os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
