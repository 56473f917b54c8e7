"""The allow-list unpickler both network-pickle readers build on.

A pickle names every callable it needs as a global (module + name); resolving
only an explicit allow-list, and refusing everything else before it can run,
is what makes reading untrusted network pickles safe.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import pickle
from typing import Any, Callable

import numpy as np

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray

from hyperinverter_gui.errors import UnsafeModelFileError


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access)."""


def codecs_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it: latin-1 strings holding bytes."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise UnsafeModelFileError("refused to load: unexpected use of _codecs.encode in pickle")
    return codecs.encode(obj, encoding, errors)


def common_globals() -> dict[tuple[str, str], Callable[..., Any] | type]:
    """Plain containers and numpy reconstruction that both NVIDIA pickle formats use."""
    allowed: dict[tuple[str, str], Callable[..., Any] | type] = {
        ("dnnlib.util", "EasyDict"): EasyDict,
        ("dnnlib", "EasyDict"): EasyDict,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("_codecs", "encode"): codecs_encode,
        ("numpy", "dtype"): np.dtype,
        ("numpy", "ndarray"): np.ndarray,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "scalar")] = _multiarray.scalar
        allowed[(mod, "_reconstruct")] = _multiarray._reconstruct
    return allowed


class AllowListUnpickler(pickle.Unpickler):
    """Resolves only ``allowed[(module, name)]``; anything else goes to :meth:`refuse`."""

    allowed: dict[tuple[str, str], Callable[..., Any] | type] = {}
    kind = "network pickle"

    def find_class(self, module: str, name: str) -> Any:
        # Protocol-2 pickles written by Python 3 name Python 2 modules (__builtin__, copy_reg).
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        found = self.allowed.get((module, name))
        if found is not None:
            return found
        self.refuse(module, name)
        raise AssertionError("refuse() must raise")

    def refuse(self, module: str, name: str) -> None:
        raise UnsafeModelFileError(
            f"refused to load: the pickle asks for '{module}.{name}', which a {self.kind} never needs. "
            "Nothing from the file was executed."
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeModelFileError("refused to load: unexpected persistent id in pickle")
