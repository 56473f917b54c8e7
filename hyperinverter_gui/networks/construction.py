"""Building networks whose tensors come from a file, without computing random initial values.

Random initialisation of the FFHQ-size encoders and hypernetwork takes seconds and touches
~1.5 GB, all of it replaced by ``load_state_dict(..., assign=True)`` right after. The meta
device would avoid that, but in current PyTorch every meta-tensor op runs through Python
reference kernels whose first use imports torch._refs, sympy and torch._dynamo (2-3 s of the
editor's start). So modules are built on the CPU with ``torch.empty`` storage instead: every
initialiser goes through ``torch.nn.init``, which :func:`uninitialized` turns into no-ops.
Untouched ``torch.empty`` memory is never paged in, so building costs neither time nor memory.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

import torch
from torch import nn

_INITIALIZERS = (
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_",
)
_lock = threading.RLock()


def randn(shape: Sequence[int], std: float = 1.0) -> torch.Tensor:
    """``torch.randn(shape) * std``, through ``nn.init`` so that :func:`uninitialized` skips it."""
    return nn.init.normal_(torch.empty(tuple(shape)), std=std)


def zeros(shape: Sequence[int]) -> torch.Tensor:
    """``torch.zeros(shape)``, through ``nn.init`` (``torch.zeros`` writes every byte: 0.4 s for a hypernetwork)."""
    return nn.init.zeros_(torch.empty(tuple(shape)))


@contextlib.contextmanager
def uninitialized() -> Iterator[None]:
    """Within: ``torch.nn.init`` initialisers leave tensors as they are (uninitialised memory).

    Only for modules whose every parameter and buffer is then assigned from a file (the loaders
    check that with a strict ``load_state_dict``). The patch is process-wide for its duration;
    the lock keeps two loaders from interleaving their patches.
    """
    with _lock:
        saved = {name: getattr(nn.init, name) for name in _INITIALIZERS if hasattr(nn.init, name)}

        def keep(tensor, *args, **kwargs):
            return tensor

        try:
            for name in saved:
                setattr(nn.init, name, keep)
            yield
        finally:
            for name, fn in saved.items():
                setattr(nn.init, name, fn)
