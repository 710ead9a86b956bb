"""How calls reach the Triton kernels: as the CUDA kernels of rnnkit's operators, or directly on CPU tensors
through Triton's interpreter. Nothing here imports Triton until a kernel runs.

* :func:`register_cuda` makes :mod:`.impl` the CUDA kernels of ``rnnkit::sequence`` and
  ``rnnkit::sequence_backward`` (:mod:`rnnkit.engines.fused.ops` calls it), so ``torch.compile``,
  ``torch.export`` and autograd see one operator on every device, with one fake implementation and one
  autograd formula.
* :func:`interpreted` runs one direction of one layer on CPU tensors under ``TRITON_INTERPRET=1``: the
  operator's CPU kernel is the C one, so here an autograd function calls the Triton forward and backward
  directly (the same buffers, the same double-backward recomputation as the operator).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def unavailable() -> str | None:
    """Why the Triton kernels cannot run here, or ``None``."""
    if importlib.util.find_spec("triton") is None:
        return "Triton is not installed (pip install triton; it comes with torch's CUDA wheels)"
    return None


def interpreting() -> bool:
    """Whether the kernels run under Triton's CPU interpreter. Triton decides when it decorates a kernel, its own
    library's included (``tl.zeros``…): once it is imported, a later ``TRITON_INTERPRET`` changes nothing."""
    lang = sys.modules.get("triton.language")
    if lang is not None:
        return type(getattr(lang, "zeros", None)).__name__ == "InterpretedFunction"
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "yes", "on")


def _impl() -> Any:
    try:
        from rnnkit.engines.triton import impl
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise RuntimeError(f"rnnkit's CUDA kernels need Triton ({e}): pip install triton") from e
    return impl


def register_cuda(sequence_op: Any, backward_op: Any) -> None:
    """Register the Triton implementations as the CUDA kernels of the two custom operators."""

    @sequence_op.register_kernel("cuda")
    def _(cell, config, x, state, params, lengths, keep, bf16):
        return _impl().sequence(cell, config, x, state, params, lengths, keep)  # bf16 products: the CPU kernels'

    @backward_op.register_kernel("cuda")
    def _(cell, config, x, state, params, lengths, buffers, grads, needs, bf16):
        return _impl().sequence_backward(cell, config, x, state, params, lengths, buffers, grads, needs)


class _Interpreted(torch.autograd.Function):
    """``rnnkit::sequence`` on CPU tensors through the Triton kernels (the operator's own CPU kernel is C)."""

    @staticmethod
    def forward(ctx: Any, cell: str, config: list[int], lengths: Tensor | None, keep: bool, n_state: int,
                *tensors: Tensor) -> tuple[Tensor, ...]:  # fmt: skip
        x, state, params = tensors[0], list(tensors[1 : 1 + n_state]), list(tensors[1 + n_state :])
        buffers = _impl().sequence(cell, config, x, state, params, lengths, keep)
        ctx.cell, ctx.config, ctx.n_state, ctx.lengths = cell, list(config), n_state, lengths
        ctx.needs = list(ctx.needs_input_grad[5:])
        ctx.set_materialize_grads(False)  # an unused buffer's gradient stays None: no zero-filled (T, B, ·) tensors
        ctx.save_for_backward(*tensors, *buffers)
        ctx.n_in = len(tensors)
        return tuple(buffers)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple:
        from rnnkit.engines.fused.ops import _differentiable_backward

        saved = ctx.saved_tensors
        x, state, params = saved[0], list(saved[1 : 1 + ctx.n_state]), list(saved[1 + ctx.n_state : ctx.n_in])
        if torch.is_grad_enabled():  # create_graph=True: the operator's differentiable recomputation
            res = _differentiable_backward(ctx, x, state, params, ctx.lengths, list(grads))
        else:
            gs = [x.new_empty(0) if g is None else g for g in grads]
            res = _impl().sequence_backward(
                ctx.cell, ctx.config, x, state, params, ctx.lengths, list(saved[ctx.n_in :]), gs, ctx.needs
            )
            res = [g if n else None for g, n in zip(res, ctx.needs, strict=True)]
        return (None, None, None, None, None, *res)


def interpreted(cell: str, config: Sequence[int], x: Tensor, state: Sequence[Tensor], params: Sequence[Tensor],
                lengths: Tensor | None, keep: bool, bf16: bool = False) -> list[Tensor]:  # fmt: skip
    """``torch.ops.rnnkit.sequence(...)`` for CPU tensors, computed by the Triton kernels under the interpreter
    (``bf16`` products are the C kernels' alone: the Triton kernels compute in the inputs' dtype)."""
    return list(_Interpreted.apply(cell, list(config), lengths, keep, len(state), x, *state, *params))
