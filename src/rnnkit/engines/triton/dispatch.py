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


def forward(cell: str, config: Sequence[int], x: Tensor, state: Sequence[Tensor], params: Sequence[Tensor],
            lengths: Tensor | None, keep: bool, bf16: bool, reg: Sequence[Tensor] = ()) -> list[Tensor]:  # fmt: skip
    """``rnnkit::sequence`` by the Triton kernels (``bf16`` products are the C kernels' alone: the Triton kernels
    compute in the inputs' dtype; they have no in-loop regularisers, so the engine never passes ``reg``)."""
    if reg:
        raise RuntimeError("rnnkit::sequence: the Triton kernels have no zoneout or recurrent dropout")
    return _impl().sequence(cell, config, x, state, params, lengths, keep)


def backward(cell: str, config: Sequence[int], x: Tensor, state: Sequence[Tensor], params: Sequence[Tensor],
             lengths: Tensor | None, buffers: Sequence[Tensor], grads: Sequence[Tensor], needs: Sequence[bool],
             bf16: bool, reg: Sequence[Tensor] = ()) -> list[Tensor]:  # fmt: skip
    """``rnnkit::sequence_backward`` by the Triton kernels."""
    return _impl().sequence_backward(cell, config, x, state, params, lengths, buffers, grads, needs)


def register_cuda(sequence_op: Any, backward_op: Any, outputs: Any) -> None:
    """Register the Triton implementations as the CUDA kernels of the two custom operators; ``outputs(buffers,
    n_state)`` makes the operator's outputs from the forward's buffers."""

    def sequence(cell, config, x, state, params, lengths, keep, bf16, reg):  # noqa: ANN001, ANN202
        return outputs(forward(cell, config, x, state, params, lengths, keep, bf16, reg), len(state))

    sequence_op.register_kernel("cuda")(sequence)
    backward_op.register_kernel("cuda")(backward)


def interpreted(cell: str, config: Sequence[int], x: Tensor, state: Sequence[Tensor], params: Sequence[Tensor],
                lengths: Tensor | None, keep: bool, bf16: bool = False) -> list[Tensor]:  # fmt: skip
    """``torch.ops.rnnkit.sequence(...)`` for CPU tensors, computed by the Triton kernels under the interpreter:
    the operator's CPU kernel is the C one, so the Triton pair is called directly, with the operator's saved
    tensors, backward and double-backward recomputation (:func:`rnnkit.engines.fused.ops.call_sequence`)."""
    from rnnkit.engines.fused.ops import call_sequence

    return call_sequence(cell, list(config), x, list(state), list(params), lengths, keep, False, (forward, backward))
