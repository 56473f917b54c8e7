"""Read NVIDIA stylegan2-ada-pytorch network pickles without executing their code.

Those pickles store every network as a "persistent object": the pickle calls
``torch_utils.persistence._reconstruct_persistent_obj(meta)``, where ``meta``
carries the Python source of the defining module (which upstream ``exec``s)
and the object's ``__dict__`` (parameters, buffers, sub-modules, init kwargs).

Here a restricted unpickler resolves only an allow-list of globals: the
persistence hook is replaced by a function that keeps ``class_name`` and
``state`` and ignores the source, tensors are rebuilt by torch's own
``weights_only`` loader, and containers become plain dicts. Any other global
(``os.system``, ``builtins.eval``, ...) is refused before anything runs.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from hyperinverter_gui.errors import (
    ModelFileError,
    ModelStructureError,
    UnsafeModelFileError,
)
from hyperinverter_gui.formats import guard, sniff
from hyperinverter_gui.formats.safe_pickle import AllowListUnpickler, common_globals

# Limits on the object tree of a network pickle. The official generators are at most 5 modules
# deep and hold a few hundred modules; the limits leave a wide margin and keep flattening linear
# in the file size (a pickle can name one sub-module many times through its memo, which would
# otherwise make a 2 MB file expand to 2**40 modules).
MAX_MODULE_DEPTH = 32
MAX_MODULES = 20_000
MAX_TENSOR_ELEMENTS = 1 << 31  # 8 GiB of float32 in one tensor; the largest official one is 2.4 M


@dataclass
class PersistentObject:
    """What a pickled persistent network object is reduced to: its class name and state."""

    class_name: str
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def init_kwargs(self) -> dict[str, Any]:
        kwargs = self.state.get("_init_kwargs") or {}
        if not isinstance(kwargs, Mapping):
            raise ModelFileError(f"{self.class_name}: its init_kwargs are a {type(kwargs).__name__}, not a dict")
        return dict(kwargs)

    def _part(self, key: str, prefix: str) -> Mapping[str, Any]:
        value = self.state.get(key) or {}
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ModelFileError(f"malformed network pickle: {prefix or self.class_name} has a {key} "
                                 f"that is a {type(value).__name__} rather than a dict of names")
        return value

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Flatten parameters and persistent buffers like ``nn.Module.state_dict()``.

        Each sub-module object is visited once: one reached twice (shared through the pickle's
        memo) or through itself (a cycle), deeper than ``MAX_MODULE_DEPTH`` or beyond
        ``MAX_MODULES`` in all is refused with :class:`ModelStructureError`.
        """
        out: dict[str, torch.Tensor] = {}
        seen: dict[int, str] = {}
        # Iterative depth-first walk (no Python recursion, so no RecursionError on deep files).
        stack: list[tuple[PersistentObject, str, int]] = [(self, prefix, 0)]
        while stack:
            node, pre, depth = stack.pop()
            where = pre[:-1] or node.class_name
            if len(where) > 80:
                where = "..." + where[-77:]
            if id(node) in seen:
                raise ModelStructureError(
                    f"malformed network pickle: sub-module {where} is the same object as {seen[id(node)]}; "
                    "a network never shares sub-modules (a crafted or damaged file)"
                )
            seen[id(node)] = where
            if len(seen) > MAX_MODULES:
                raise ModelStructureError(
                    f"malformed network pickle: more than {MAX_MODULES} sub-modules; no StyleGAN2 network has that many"
                )
            if depth > MAX_MODULE_DEPTH:
                raise ModelStructureError(
                    f"malformed network pickle: sub-modules nested more than {MAX_MODULE_DEPTH} levels deep ({where})"
                )
            for name, p in node._part("_parameters", pre).items():
                if p is not None:
                    out[pre + name] = _as_tensor(p, pre + name)
            skip = node.state.get("_non_persistent_buffers_set") or ()
            if not isinstance(skip, (set, frozenset, list, tuple)):
                raise ModelFileError(f"malformed network pickle: {where} has a malformed buffer list")
            for name, b in node._part("_buffers", pre).items():
                if b is not None and name not in skip:
                    out[pre + name] = _as_tensor(b, pre + name)
            subs = list(node._part("_modules", pre).items())
            for name, sub in reversed(subs):  # reversed: popped in the file's order
                if sub is None:
                    continue
                if not isinstance(sub, PersistentObject):
                    raise ModelFileError(f"sub-module {pre + name} is not a network object ({type(sub).__name__})")
                stack.append((sub, pre + name + ".", depth + 1))
        return out


def _as_tensor(value: Any, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ModelFileError(f"{name} is not a tensor ({type(value).__name__})")
    return value.detach().to(torch.float32) if value.is_floating_point() else value.detach()


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list, torch.Size)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ModelFileError(f"malformed tensor in network pickle: its {what} is not a tuple of integers")
    if len(value) > 8:
        raise ModelStructureError(f"malformed tensor in network pickle: {len(value)} dimensions")
    return tuple(value)


def _checked_view(storage: Any, offset: Any, size: Any, stride: Any) -> tuple[Any, int, tuple, tuple]:
    """Check tensor-rebuild arguments before torch sees them: right types, inside the storage."""
    if not isinstance(storage, (torch.UntypedStorage, torch.TypedStorage)):
        raise ModelFileError(
            f"malformed tensor in network pickle: its storage is a {type(storage).__name__}, not tensor data"
        )
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ModelFileError("malformed tensor in network pickle: its storage offset is not a non-negative integer")
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise ModelFileError("malformed tensor in network pickle: its size and stride do not match")
    numel = math.prod(size)
    if numel > MAX_TENSOR_ELEMENTS:
        raise ModelStructureError(f"malformed tensor in network pickle: {numel} elements in one tensor")
    if numel:
        n = storage._size() if isinstance(storage, torch.TypedStorage) else storage.nbytes()
        last = offset + sum((d - 1) * s for d, s in zip(size, stride))
        if last >= n or numel > n:  # outside the data, or an overlapping (expanded) view no model stores
            raise ModelStructureError(
                f"malformed tensor in network pickle: a {list(size)} tensor does not fit in its {n}-element storage"
            )
    return storage, offset, size, stride


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                       backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    storage, storage_offset, size, stride = _checked_view(storage, storage_offset, size, stride)
    return torch._utils._rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> torch.Tensor:
    return torch._utils._rebuild_tensor(*_checked_view(storage, storage_offset, size, stride))


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise ModelFileError(f"malformed parameter in network pickle: its data is a {type(data).__name__}")
    return data  # a plain tensor: parameters are read-only data here


def _size(*args: Any) -> torch.Size:
    if len(args) != 1:
        raise ModelFileError("malformed tensor size in network pickle")
    return torch.Size(_int_tuple(args[0], "size"))


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    if not isinstance(meta, dict) or meta.get("type") != "class" or "class_name" not in meta:
        raise ModelFileError("malformed persistent object in network pickle")
    state = meta.get("state") or {}
    if not isinstance(state, dict):
        raise ModelFileError(f"malformed state for {meta['class_name']}")
    # meta["module_src"] is Python source that upstream would exec(); it is ignored.
    return PersistentObject(str(meta["class_name"]), dict(state))


def _load_storage_from_bytes(data: bytes) -> Any:
    # Storages inside plain pickles are nested torch.save() blobs; read them
    # with torch's weights-only unpickler. map_location: the authors' files
    # were saved from GPUs and must open on CPU-only machines.
    if not isinstance(data, (bytes, bytearray)):
        raise ModelFileError("malformed tensor storage in network pickle")
    storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(storage, (torch.UntypedStorage, torch.TypedStorage)):
        raise ModelFileError(f"malformed tensor storage in network pickle (a {type(storage).__name__})")
    return storage


_ALLOWED: dict[tuple[str, str], Callable[..., Any] | type] = {
    **common_globals(),
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    # torch's own rebuild functions behind checks of their arguments' types and bounds.
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch", "Size"): _size,
}


class RestrictedUnpickler(AllowListUnpickler):
    """Reads stylegan2-ada-pytorch network pickles through the allow-list above."""

    allowed = _ALLOWED

    def refuse(self, module: str, name: str) -> None:
        if module.startswith("dnnlib.tflib"):
            raise ModelFileError(
                "this is a TensorFlow StyleGAN2 pickle (dnnlib.tflib), not a stylegan2-ada-pytorch one; "
                "open it with load_generator(), which converts it"
            )
        super().refuse(module, name)


class _TensorStub:
    """Placeholder for a tensor when only the structure of a pickle is wanted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass


class _StructureUnpickler(RestrictedUnpickler):
    """Same allow-list, but tensors are not materialised (fast look at configs)."""

    _STUBBED = {
        ("torch.storage", "_load_from_bytes"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_tensor"),
        ("torch._utils", "_rebuild_parameter"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._STUBBED:
            return _TensorStub
        return super().find_class(module, name)


def peek_generator_kwargs(path: str | Path) -> dict[str, Any]:
    """``G_ema.init_kwargs`` of an NVIDIA pickle without building any tensor."""
    path = Path(path)
    sniff.sniff_file(path)  # missing, folder, FIFO, empty
    with guard.reading(path, "network pickle"):
        try:
            with open(path, "rb") as f:
                data = _StructureUnpickler(f).load()
        except (UnsafeModelFileError, ModelFileError):
            raise
        except Exception as e:  # noqa: BLE001 - any parse failure means a damaged file
            if isinstance(e, (RecursionError, MemoryError)):
                raise
            raise ModelFileError(f"{path.name} is truncated or corrupt ({type(e).__name__})") from None
        g = data.get("G_ema") if isinstance(data, dict) else None
        if not isinstance(g, PersistentObject):
            raise ModelFileError(f"{path.name} has no generator 'G_ema'")
        return g.init_kwargs


def read_network_pickle(path: str | Path) -> dict[str, Any]:
    """Unpickle an NVIDIA network pickle into plain containers and ``PersistentObject``s."""
    path = Path(path)
    kind = sniff.sniff_file(path)  # raises for missing / empty / HTML files
    if kind == "zip":
        raise ModelFileError(
            f"{path.name} is a PyTorch checkpoint (zip archive), not an NVIDIA StyleGAN2 network pickle; "
            "pass it as the HyperInverter checkpoint, not as the generator"
        )
    if kind != "pickle":
        raise ModelFileError(f"{path.name} is not a network pickle (unrecognised file contents)")
    try:
        with guard.reading(path, "network pickle"), open(path, "rb") as f:
            data = RestrictedUnpickler(f).load()
    except ModelFileError as e:
        if type(e) in (ModelFileError, ModelStructureError) and not str(e).startswith(path.name):
            raise type(e)(f"{path.name}: {e}") from None  # name the file in messages from inside the pickle
        raise
    if not isinstance(data, dict):
        raise ModelFileError(f"{path.name}: expected a dict of networks, found {type(data).__name__}")
    return data


def load_stylegan2_ada_pickle(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Return ``(G_ema init_kwargs, G_ema state_dict)`` from an NVIDIA network pickle."""
    path = Path(path)
    data = read_network_pickle(path)
    g = data.get("G_ema")
    if not isinstance(g, PersistentObject):
        keys = ", ".join(sorted(map(str, data)))[:200]
        raise ModelFileError(f"{path.name} has no generator 'G_ema' (found keys: {keys or 'none'})")
    if g.class_name != "Generator":
        raise ModelFileError(f"{path.name}: 'G_ema' is a {g.class_name}, expected a Generator")
    try:
        kwargs = g.init_kwargs
        sd = g.state_dict()
    except ModelFileError as e:
        raise type(e)(f"{path.name}: {e}") from None
    del data  # drop D, G, augment_pipe early
    return kwargs, sd
