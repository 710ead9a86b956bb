"""The Triton implementations of ``rnnkit::sequence`` and ``rnnkit::sequence_backward``, per cell.

:func:`sequence` and :func:`sequence_backward` take exactly the operators' arguments and return what the
C kernels return (the spec's buffers; the gradients, an empty tensor where not needed), so the operators'
fake tensors, autograd formula and the engine's ``spec.outputs`` serve both. They are the operators' CUDA
kernels (:mod:`.dispatch`). Importing this module imports Triton.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from typing import Any

import torch
from torch import Tensor

from rnnkit.engines.triton import gru, lstm, simple

#: cell name (``spec.name``) -> (forward, backward)
KERNELS: dict[str, tuple[Any, Any]] = {
    "lstm": (lstm.forward, lstm.backward),
    "gru": (gru.forward, gru.backward),
    "elman": (simple.elman_forward, simple.elman_backward),
    "jordan": (simple.jordan_forward, simple.jordan_backward),
}


def sequence(cell: str, config: Seq[int], x: Tensor, state: Seq[Tensor], params: Seq[Tensor],
             lengths: Tensor | None, keep: bool) -> list[Tensor]:  # fmt: skip
    """One direction of one layer: the spec's buffers (see :mod:`rnnkit.engines.fused.specs`)."""
    x = x.contiguous()
    state = [s.contiguous() for s in state]
    lengths = None if lengths is None else lengths.to(device=x.device, dtype=torch.int64)
    return KERNELS[cell][0](list(config), list(params), x, state, lengths, keep)


def sequence_backward(cell: str, config: Seq[int], x: Tensor, state: Seq[Tensor], params: Seq[Tensor],
                      lengths: Tensor | None, buffers: Seq[Tensor], grads: Seq[Tensor],
                      needs: Seq[bool]) -> list[Tensor]:  # fmt: skip
    """Gradients of (x, *state, *params) from those of the buffers; an empty tensor where ``needs`` is False."""
    x = x.contiguous()
    lengths = None if lengths is None else lengths.to(device=x.device, dtype=torch.int64)
    res = KERNELS[cell][1](list(config), x, list(state), list(params), lengths, list(buffers), list(grads), list(needs))
    return [g if (n and g is not None) else x.new_empty(0) for g, n in zip(res, needs, strict=True)]
