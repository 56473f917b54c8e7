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
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from hyperinverter_gui.errors import ModelFileError, UnsafeModelFileError
from hyperinverter_gui.formats import sniff
from hyperinverter_gui.formats.safe_pickle import AllowListUnpickler, common_globals


@dataclass
class PersistentObject:
    """What a pickled persistent network object is reduced to: its class name and state."""

    class_name: str
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return dict(self.state.get("_init_kwargs") or {})

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Flatten parameters and persistent buffers like ``nn.Module.state_dict()``."""
        out: dict[str, torch.Tensor] = {}
        for name, p in (self.state.get("_parameters") or {}).items():
            if p is not None:
                out[prefix + name] = _as_tensor(p, prefix + name)
        skip = set(self.state.get("_non_persistent_buffers_set") or ())
        for name, b in (self.state.get("_buffers") or {}).items():
            if b is not None and name not in skip:
                out[prefix + name] = _as_tensor(b, prefix + name)
        for name, sub in (self.state.get("_modules") or {}).items():
            if sub is None:
                continue
            if not isinstance(sub, PersistentObject):
                raise ModelFileError(f"sub-module {prefix + name} is not a network object ({type(sub).__name__})")
            out.update(sub.state_dict(prefix + name + "."))
        return out


def _as_tensor(value: Any, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ModelFileError(f"{name} is not a tensor ({type(value).__name__})")
    return value.detach().to(torch.float32) if value.is_floating_point() else value.detach()


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
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


_ALLOWED: dict[tuple[str, str], Callable[..., Any] | type] = {
    **common_globals(),
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch", "Size"): torch.Size,
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
    try:
        with open(path, "rb") as f:
            data = _StructureUnpickler(f).load()
    except (UnsafeModelFileError, ModelFileError):
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure means a damaged file
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
        with open(path, "rb") as f:
            data = RestrictedUnpickler(f).load()
    except (UnsafeModelFileError, ModelFileError):
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, RuntimeError, TypeError, IndexError) as e:
        raise ModelFileError(f"{path.name} is truncated or corrupt ({type(e).__name__}: {e})") from None
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
    kwargs = g.init_kwargs
    sd = g.state_dict()
    del data  # drop D, G, augment_pipe early
    return kwargs, sd
