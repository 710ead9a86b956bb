"""The ``"fused"`` engine: every cell, whole sequences, a hand-written backward.

Two ways to run one direction of one layer, both matching the reference engine (``tests/test_fused.py``,
``tests/test_fused_seq.py``, float64 to 1e-10):

* **the C sequence kernels** (:mod:`rnnkit.engines._fused_seq`, ``csrc/``) for the built-in LSTM, peephole
  LSTM, GRU (torch's reset), Elman and Jordan cells with their usual activations on CPU: the whole
  sequence — every step's tile products and pointwise update, forward and backward — is a handful of C
  calls on all threads, with rnnkit's own GEMM for the weight gradients;
* **the per-step kernels** (:mod:`rnnkit.engines._fused_kernels`, :mod:`rnnkit.engines._fused_gated`) for
  everything else (LSTM with ``proj_size``, GRU with ``reset_after=False``, other named activations, calls
  that return the gates, other devices): the input projections of all steps in one GEMM, per step one
  ``addmm`` into a preallocated buffer and in-place pointwise work (a C step where one exists), and one
  ``torch.autograd.Function`` per (layer, direction) whose backward writes every pre-activation gradient
  into one (T, B, G) buffer so that the weight gradients are single large GEMMs.

An arbitrary callable activation or a user subclass of a cell (whose equations it cannot know) is reported
by :meth:`FusedEngine.unsupported` and ``"auto"`` falls back to the reference loop. ``"auto"`` prefers this
engine wherever the C sequence kernels run the call and the sequence has at least :data:`AUTO_MIN_STEPS`
steps, and for every cell torch has no kernel for; measured speeds are in ``docs/engines.md`` and
``docs/benchmarks.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.cells import GRUCell, JordanCell, LSTMCell, PeepholeLSTMCell, RNNCell
from rnnkit.engines import RunResult, _fused_seq, native, register_engine
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
#: below this many time steps "auto" leaves a cell torch also has to torch: the per-call set-up dominates
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
        # the C sequence kernels beat torch's on CPU once the per-call set-up (packing the weights) is paid
        # off; one step per call (a generation loop) stays with torch — or better, layer.stepper()
        return not (x.shape[0] >= AUTO_MIN_STEPS and _fused_seq.supports(layer.cells[0], x, return_gates))

    def run(
        self, layer: Recurrent, x: Tensor, hx: tuple[Tensor, ...], lengths: Tensor | None, return_gates: bool
    ) -> RunResult:
        def one(k: int, inp: Tensor, state: tuple[Tensor, ...], mask: Tensor | None) -> Any:
            cell, w = layer.cells[k], layer.weights(k)
            if _fused_seq.supports(cell, inp, return_gates):  # the whole sequence in C (LSTM, GRU)
                out, state = _fused_seq.run(cell, w, inp, state, mask)
                return out, state, None
            kernel = make_kernel(cell, mask, return_gates)
            xw = F.linear(inp, w.weight_ih, kernel.input_bias(w))  # (T, B, G): all steps in one GEMM
            out, state, g = run_sequence(kernel, xw, state, kernel.weights(w))
            return out, state, dict(zip(cell.gate_names, g, strict=True)) if return_gates else None

        return run_stack(layer, x, hx, lengths, return_gates, one)


assert native  # imported first so that "torch" is registered before "fused" goes ahead of it
register_engine(FusedEngine(), auto_priority=0)  # first, but declines_auto() defers to "torch" where it is faster
