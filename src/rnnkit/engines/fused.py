"""The ``"fused"`` engine: every cell, whole sequences, a hand-written backward.

What it does differently from the reference loop (same numbers, see ``tests/test_fused.py``):

* the input projections of all T steps are one GEMM (``F.linear`` over (T, B, F)); the purely additive part
  of the recurrent bias is folded into it, so a step is one ``addmm`` (``h @ W_hhᵀ`` into a preallocated
  gate buffer) plus in-place pointwise work — no per-step allocation, ``chunk`` or ``torch.stack``;
* one ``torch.autograd.Function`` per (layer, direction) replaces T steps of autograd graph: its backward
  (:mod:`rnnkit.engines._fused_kernels`) walks the steps in reverse writing every pre-activation gradient
  into one (T, B, G) buffer, and the weight gradients are then a single large GEMM
  (``dW_hh = Σ_t dPre_t h_{t-1}ᵀ``) instead of T small ones;
* it saves only the activated gates and the state sequences (``tanh(c_t)`` is recomputed), and without
  autograd (inference) it keeps a single step's gate buffer.

* the element-wise work of an LSTM or GRU step (forward and backward) is one vectorised C loop
  (:mod:`rnnkit.engines._fused_c`, built on first use; torch ops where no compiler exists).

It runs every built-in cell (Elman tanh/relu, Jordan, GRU in both reset forms, LSTM with ``proj_size``,
peephole LSTM) with the named activations of :mod:`rnnkit.activations`; an arbitrary callable activation
or a user subclass of a cell (whose equations it cannot know) is reported by :meth:`FusedEngine.unsupported`
and ``"auto"`` falls back to the reference loop.

Measured (AMD EPYC, 2 cores shared with other jobs — load average ~13 —, 1 torch thread, torch 2.13, 2026-11-24;
``rnnkit bench --workloads d2l --engines fused --scratch false --repeats 7 --threads 1``; d2l config: one-hot
input 28, hidden 256, batch 32, 35 steps; median over 7 interleaved rounds of torch.nn time / fused time):

=============  =================  ======================  ===================
cell           baseline           training (fwd + bwd)    inference
=============  =================  ======================  ===================
Elman (tanh)   torch.nn.RNN       1.03×                   0.94×
GRU            torch.nn.GRU       1.25×                   1.02×
LSTM           torch.nn.LSTM      0.92×                   0.69×
peephole LSTM  torch.nn.LSTM      0.80×                   0.86×
Jordan (O=H)   torch.nn.LSTM      1.61×                   1.78×
=============  =================  ======================  ===================

Where it is slower, the time goes to the per-step ``h @ W_hhᵀ`` GEMM (32×256 by 256×1024; profiled: ~70–85 %
of an LSTM step), which torch.nn.LSTM runs through oneDNN's RNN primitive faster than MKL's ``sgemm`` does for
this small M; the element-wise C loop is ~17 µs (backward) to ~40 µs (forward) per step. Hence ``"auto"`` keeps
torch's kernels for LSTM and Elman (:meth:`FusedEngine.declines_auto`) and takes this engine for GRU on CPU and
for everything torch has no kernel for. Training memory: it saves the gates and the state sequences only —
peak 12.3 MiB vs torch.nn.LSTM's 26.8 MiB above, and at T = 2000 (``rnnkit bench --workloads long --cells lstm,gru
--engines fused --scratch false --repeats 3 --threads 1``, same machine and day) 626 MiB vs 1296 MiB for the
LSTM (training there 0.88×), 688 MiB vs 688 MiB for the GRU (training 1.24×).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.cells import GRUCell, JordanCell, LSTMCell, PeepholeLSTMCell, RNNCell
from rnnkit.engines import RunResult, _fused_c, native, register_engine
from rnnkit.engines._fused_gated import GRUKernel, LSTMKernel
from rnnkit.engines._fused_kernels import ElmanKernel, JordanKernel, Kernel, act_name
from rnnkit.engines.reference import run_stack

if TYPE_CHECKING:
    from rnnkit.layer import Recurrent

#: exact cell type -> kernel (a subclass may change the equations, so it is not matched)
KERNELS: dict[type, type[Kernel]] = {
    RNNCell: ElmanKernel,
    JordanCell: JordanKernel,
    GRUCell: GRUKernel,
    LSTMCell: LSTMKernel,
    PeepholeLSTMCell: LSTMKernel,
}

_ACTIVATION_ATTRS = ("activation", "recurrent_activation", "output_activation")
#: below this many time steps "auto" leaves a GRU to torch: the fused engine's per-call set-up dominates
AUTO_MIN_STEPS = 16


class _FusedSequence(torch.autograd.Function):
    """One direction of one layer over the whole sequence, as a single autograd node."""

    @staticmethod
    def forward(ctx: Any, kernel: Kernel, n_state: int, xw: Tensor, *tensors: Tensor | None) -> tuple[Tensor, ...]:
        state, weights = tensors[:n_state], list(tensors[n_state:])
        out, finals, gates, saved = kernel.forward(xw, state, weights, save=True)
        ctx.kernel, ctx.n_state, ctx.n_gates = kernel, n_state, len(gates)
        ctx.none = [s is None for s in saved]
        ctx.save_for_backward(*[s for s in saved if s is not None])
        return (out, *finals, *gates)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_out: Tensor, *grads: Tensor) -> tuple[Tensor | None, ...]:
        it = iter(ctx.saved_tensors)
        saved = [None if none else next(it) for none in ctx.none]
        g_final, g_gates = grads[: ctx.n_state], grads[ctx.n_state :]
        if g_gates and all(not g.any() for g in g_gates):
            g_gates = ()  # the gates were returned but not used in the loss
        dxw, dstate, dweights = ctx.kernel.backward(saved, g_out, g_final, g_gates)
        return (None, None, dxw, *dstate, *dweights)


def run_sequence(kernel: Kernel, xw: Tensor, state: tuple[Tensor, ...], weights: list[Tensor | None]):
    """Run ``kernel`` over ``xw`` (T, B, G): through the autograd node when a gradient is needed."""
    tensors = [*state, *weights]
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in [xw, *tensors]):
        res = _FusedSequence.apply(kernel, len(state), xw, *tensors)
        n = len(state)
        return res[0], tuple(res[1 : 1 + n]), tuple(res[1 + n :])
    with torch.no_grad():
        out, finals, gates, _ = kernel.forward(xw, state, weights, save=False)
    return out, finals, gates


def make_kernel(cell: Any, mask: Tensor | None, return_gates: bool) -> Kernel:
    return KERNELS[type(cell)](cell, mask, return_gates)


class FusedEngine:
    name = "fused"

    def unsupported(self, layer: Recurrent, x: Tensor, return_gates: bool) -> str | None:
        cell = layer.cells[0]
        if type(cell) not in KERNELS:
            return f"no fused kernel for {type(cell).__name__} (only the built-in cells, not subclasses)"
        for attr in _ACTIVATION_ATTRS:
            fn = getattr(cell, attr, None)
            if fn is not None and act_name(fn) is None:
                return f"{attr}={fn!r} is not a named activation, so it has no hand-written derivative"
        return None

    def declines_auto(self, layer: Recurrent, x: Tensor, return_gates: bool) -> bool:
        """Leave to torch's kernels what they were measured faster at (see the module docstring)."""
        mode = layer.cells[0].torch_mode()
        if mode is None or return_gates:
            return False  # torch cannot run it: fused is the fast path
        # GRU on CPU: 1.25x torch.nn.GRU at 35 steps, but 0.25x at one step per call (fixed per-call cost)
        return not (mode == "GRU" and x.shape[0] >= AUTO_MIN_STEPS and x.device.type == "cpu" and _fused_c.usable(x))

    def run(
        self, layer: Recurrent, x: Tensor, hx: tuple[Tensor, ...], lengths: Tensor | None, return_gates: bool
    ) -> RunResult:
        def one(k: int, inp: Tensor, state: tuple[Tensor, ...], mask: Tensor | None) -> Any:
            cell, w = layer.cells[k], layer.weights(k)
            kernel = make_kernel(cell, mask, return_gates)
            xw = F.linear(inp, w.weight_ih, kernel.input_bias(w))  # (T, B, G): all steps in one GEMM
            out, state, g = run_sequence(kernel, xw, state, kernel.weights(w))
            return out, state, dict(zip(cell.gate_names, g, strict=True)) if return_gates else None

        return run_stack(layer, x, hx, lengths, return_gates, one)


assert native  # imported first so that "torch" is registered before "fused" goes ahead of it
register_engine(FusedEngine(), auto_priority=0)  # first, but declines_auto() defers to "torch" where it is faster
