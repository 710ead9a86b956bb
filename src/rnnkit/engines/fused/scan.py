"""The fused engine's path for minGRU and minLSTM: one GEMM for every step's gates, then a scan over time.

Their gates read only the input (:mod:`rnnkit.cells.min_rnn`), so a whole direction of a layer is

1. ``W_ih x_t + b_ih`` for all T steps at once (one matrix product, (T·B, F) × (F, G·H));
2. every step's ``a_t``, ``b_t`` and gates at once (the cell's own :meth:`transition`, elementwise);
3. ``h_t = a_t ⊙ h_{t-1} + b_t`` for all t by :func:`rnnkit.scan.linear_scan` (a chunked scan: about 2√T
   dependent elementwise operations instead of T).

Padding (``lengths=``) becomes ``a_t = 1, b_t = 0`` past each sequence's end, which freezes the state exactly as
the reference loop does, so the final state is the one at the last valid step. Depth and direction are
:func:`rnnkit.engines.stack.run_stack`'s, as for every engine. Everything is torch ops: no native build needed,
any device; autograd (and double backward), ``torch.compile`` and ``torch.export`` see through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from rnnkit.cells.min_rnn import MinGRUCell, MinLSTMCell
from rnnkit.engines.registry import RunResult
from rnnkit.engines.stack import run_stack
from rnnkit.scan import linear_scan

if TYPE_CHECKING:
    from rnnkit.layer import Recurrent

#: exact cell types the scan runs (a subclass may change the equations, so it is not matched)
SCAN_CELLS: tuple[type, ...] = (MinGRUCell, MinLSTMCell)


def run_scan(
    layer: Recurrent, x: Tensor, hx: tuple[Tensor, ...], lengths: Tensor | None, return_gates: bool
) -> RunResult:
    """The layer over ``x`` (T, B, F), each (layer, direction) one projection and one scan."""

    def one(k: int, inp: Tensor, state: tuple[Tensor, ...], mask: Tensor | None) -> Any:
        cell = layer.cells[k]
        a, b, gates = cell.transition(cell.input_projection(inp, layer.weights(k)))  # (T, B, H) each
        # under autocast the projection may come back in bf16: the state and its sums stay in the state's dtype
        a, b = a.to(state[0].dtype), b.to(state[0].dtype)
        if mask is not None:  # past a sequence's end: h_t = 1 ⊙ h_{t-1} + 0, the state stays frozen
            a = torch.where(mask, a, 1.0)
            b = torch.where(mask, b, 0.0)
        h = linear_scan(a, b, state[0])  # (T, B, H)
        out = h if mask is None else torch.where(mask, h, 0.0)
        named = None
        if return_gates:
            named = {n: g if mask is None else torch.where(mask, g, 0.0) for n, g in gates.items()}
        return out, (h[-1],), named

    return run_stack(layer, x, hx, lengths, return_gates, one)
