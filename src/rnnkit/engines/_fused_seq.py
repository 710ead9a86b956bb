"""The fused engine's whole-sequence C path: LSTM (with or without peepholes), GRU, Elman and Jordan layers.

One ``torch.autograd.Function`` per (layer, direction) whose forward and backward each make a handful of C
calls (:mod:`rnnkit.engines._fused_c`, ``csrc/``), none per time step:

forward
    the weights are packed into per-unit-block panels; the sequence kernel then runs every step on all
    threads — the tile products ``x_t W_ihᵀ`` and ``h_{t-1} W_hhᵀ`` and the cell's pointwise update straight
    after them, in registers — and the threads meet once per step.
backward
    the sequence kernel walks the steps in reverse (pointwise derivative, then ``dh_{t-1} = dPre_t W_hh``)
    and sums the bias (and peephole) gradients as it goes; the weight gradients are then a few large
    GEMMs over all steps: ``dW_hh = dPreᵀ H_prev``, ``dW_ih = dPreᵀ X`` and, if asked for, ``dX = dPre W_ih``.

Every product runs on rnnkit's own register-tiled GEMM rather than torch's: on this machine's AMD CPU MKL's
sgemm takes a path that reaches about a third of the core's peak (docs/engines.md). The equations are the
cells' (:mod:`rnnkit.cells`; the C files restate them); the per-cell halves live in
:mod:`rnnkit.engines._fused_seq_cells`. ``tests/test_fused_seq.py`` checks them against the reference
engine in float64 on one and two threads.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.cells import GRUCell, JordanCell, LSTMCell, PeepholeLSTMCell, RNNCell
from rnnkit.engines import _fused_c as cext
from rnnkit.engines._fused_kernels import act_name

#: activation name -> the C kernels' code (csrc/kernels.c: RK_IDENTITY …)
ACT_CODES = {"identity": 0, "tanh": 1, "relu": 2, "sigmoid": 3}


def lib_fn(name: str, like: Tensor) -> Any:
    return getattr(cext.get(), f"{name}_{'f32' if like.dtype == torch.float32 else 'f64'}")


def ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def threads() -> int:
    return torch.get_num_threads()


def vl(like: Tensor) -> int:
    """Elements per 64-byte vector: the kernels' block of hidden units."""
    return 64 // like.element_size()


def gemm(a: Tensor, b: Tensor, bias: Tensor | None = None, out: Tensor | None = None) -> Tensor:
    """``a @ b (+ bias)`` for 2-D CPU tensors of one float type, ``a`` and ``b`` of any strides."""
    M, K = a.shape
    N = b.shape[1]
    if out is None:
        out = a.new_empty(M, N)
    assert out.stride(1) == 1 and b.shape[0] == K
    rc = lib_fn("rk_gemm", a)(
        M, N, K, a.data_ptr(), a.stride(0), a.stride(1), b.data_ptr(), b.stride(0), b.stride(1),
        out.data_ptr(), out.stride(0), 0.0, ptr(bias), threads(),
    )  # fmt: skip
    if rc != 0:
        raise MemoryError("rnnkit gemm: out of memory for a packed copy of the right operand")
    return out


def weight_grad(d: Tensor, x2: Tensor) -> Tensor:
    """``dᵀ x2`` (G, F); for a narrow ``x2`` (F below a few vectors, e.g. one-hot characters) computed as
    ``(x2ᵀ d)ᵀ``, whose long side then runs along the vectors: ~2.5× faster for F = 28."""
    if x2.shape[1] >= 4 * vl(x2):
        return gemm(d.t(), x2)
    return gemm(x2.t(), d).t().contiguous()


def pack(W: Tensor, n_gates: int, units: int | None = None) -> Tensor:
    """``W`` (n_gates·H, K) in the per-unit-block panel layout the sequence kernels read (csrc/gemm.h);
    ``units`` per panel: one vector for the gated cells, four for the one-gate Elman and Jordan layers."""
    H, K = W.shape[0] // n_gates, W.shape[1]
    U = units or vl(W)
    Wp = W.new_empty(-(-H // U) * K * n_gates * U)
    lib_fn("rk_pack_gates", W)(n_gates, H, K, U, W.data_ptr(), Wp.data_ptr(), threads())
    return Wp


def padded(W: Tensor) -> Tensor:
    """``W`` with its columns padded to a whole number of vectors (the backward product reads whole vectors)."""
    pad = -W.shape[1] % vl(W)
    return W.contiguous() if pad == 0 else F.pad(W, (0, pad))


def _named(fn: Any) -> str | None:
    return None if fn is None else act_name(fn)


def supports(cell: Any, x: Tensor, return_gates: bool) -> bool:
    """Whether this path runs the call: the built-in cells (LSTM and peephole LSTM without projection, GRU
    with torch's reset, Elman, Jordan) with the activations the C code knows, CPU float32/float64, the
    library built, and no gates asked for (those go through the per-step kernels)."""
    if return_gates or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return False
    kind = type(cell)
    gated_defaults = (
        _named(getattr(cell, "activation", None)) == "tanh"
        and _named(getattr(cell, "recurrent_activation", None)) == "sigmoid"
    )
    if kind in (LSTMCell, PeepholeLSTMCell):
        ok = cell.proj_size == 0 and gated_defaults
    elif kind is GRUCell:
        ok = cell.reset_after and gated_defaults
    elif kind is RNNCell:
        ok = _named(cell.activation) in ACT_CODES
    elif kind is JordanCell:
        ok = _named(cell.activation) in ACT_CODES and _named(cell.output_activation) in ACT_CODES
    else:
        return False
    return ok and cext.get() is not None


def lengths_of(mask: Tensor | None) -> Tensor | None:
    """Per-sequence lengths (B,) int64 from the (T, B, 1) prefix mask."""
    return None if mask is None else mask[:, :, 0].sum(0).contiguous()


def masked_output(seq: Tensor, mask: Tensor | None) -> Tensor:
    return seq if mask is None else torch.where(mask, seq, 0.0)


class _Sequence(torch.autograd.Function):
    """One direction of one layer through a cell's C kernels (``spec``: see _fused_seq_cells)."""

    @staticmethod
    def forward(ctx: Any, spec: Any, x: Tensor, mask: Tensor | None, *tensors: Tensor | None):
        n = spec.n_state
        out, finals, saved = spec.forward(x, lengths_of(mask), tensors[:n], tensors[n:], save=True)
        ctx.spec = spec
        ctx.none = [s is None for s in saved]
        ctx.save_for_backward(*[s for s in saved if s is not None])
        return (masked_output(out, mask), *finals)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_out: Tensor, *g_finals: Tensor):
        it = iter(ctx.saved_tensors)
        saved = [None if none else next(it) for none in ctx.none]
        need = ctx.needs_input_grad  # (spec, x, mask, *state, *params)
        dx, *rest = ctx.spec.backward(saved, g_out.contiguous(), g_finals, (need[1], *need[3:]))
        return (None, dx, None, *rest)


def run(cell: Any, w: Any, x: Tensor, state: tuple[Tensor, ...], mask: Tensor | None):
    """Run ``cell`` (``supports()`` said yes) over ``x`` (T, B, F): (outputs, final state)."""
    from rnnkit.engines._fused_seq_cells import spec_for

    spec, params = spec_for(cell, w)
    tensors = [*state, *params]
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in [x, *tensors]):
        res = _Sequence.apply(spec, x, mask, *tensors)
        return res[0], tuple(res[1:])
    with torch.no_grad():  # inference: nothing saved for a backward
        out, finals, _ = spec.forward(x, lengths_of(mask), tuple(state), params, save=False)
        return masked_output(out, mask), tuple(finals)
