"""One time step of each rnnkit cell as ONNX nodes: the body of a ``Scan`` and of a one-token model.

A translation mirrors the cell's ``recurrence`` line by line (see :mod:`rnnkit.cells`), with one change:
every bias that only adds to a gate's pre-activation moves into the input projection (``input_bias``),
so a step adds it once for all time steps instead of once per step. The one bias that cannot move is
GRU's ``b_hn`` with ``reset_after=True``: the reset gate multiplies it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rnnkit.cells import (
    GRUCell,
    IndRNNCell,
    JordanCell,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    LSTMCell,
    MGUCell,
    MinGRUCell,
    MinLSTMCell,
    PeepholeLSTMCell,
    RecurrentCell,
    RNNCell,
)
from rnnkit.cells.layernorm import LN_EPS
from rnnkit.export.graph import Graph, onnx_activation


def _sum(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    if a is None or b is None:
        return a if b is None else b
    return a + b


class ElmanStep:
    def input_bias(self, cell: RNNCell, w: Any) -> Tensor | None:
        return _sum(w.bias_ih, w.bias_hh)

    def step(self, g: Graph, cell: RNNCell, w: Any, xw: str, state: list[str]) -> list[str]:
        (h,) = state
        return [g.activation(g.add(xw, g.linear(h, w.weight_hh)), cell.activation, "activation")]


class JordanStep:
    def input_bias(self, cell: JordanCell, w: Any) -> Tensor | None:
        return _sum(w.bias_ih, w.bias_yh)

    def step(self, g: Graph, cell: JordanCell, w: Any, xw: str, state: list[str]) -> list[str]:
        (y,) = state
        h = g.activation(g.add(xw, g.linear(y, w.weight_yh)), cell.activation, "activation")
        return [g.activation(g.linear(h, w.weight_hy, w.bias_hy), cell.output_activation, "output_activation")]


class GRUStep:
    def input_bias(self, cell: GRUCell, w: Any) -> Tensor | None:
        if w.bias_hh is None or not cell.reset_after:
            return _sum(w.bias_ih, w.bias_hh)
        H = cell.hidden_size
        return w.bias_ih + torch.cat([w.bias_hh[: 2 * H], w.bias_hh.new_zeros(H)])  # b_hn stays inside r ⊙ (…)

    def step(self, g: Graph, cell: GRUCell, w: Any, xw: str, state: list[str]) -> list[str]:
        σ, act, H = cell.recurrent_activation, cell.activation, cell.hidden_size
        (h,) = state
        xr, xz, xn = g.split(xw, [H, H, H])
        if cell.reset_after:
            b_hn = None if w.bias_hh is None else w.bias_hh[2 * H :]
            hr, hz, hn = g.split(g.linear(h, w.weight_hh), [H, H, H])
            r = g.activation(g.add(xr, hr), σ, "recurrent_activation")
            z = g.activation(g.add(xz, hz), σ, "recurrent_activation")
            n = g.activation(g.add(xn, g.mul(r, g.add(hn, g.b.weight(b_hn)))), act, "activation")
        else:
            hr, hz = g.split(g.linear(h, w.weight_hh[: 2 * H]), [H, H])
            r = g.activation(g.add(xr, hr), σ, "recurrent_activation")
            z = g.activation(g.add(xz, hz), σ, "recurrent_activation")
            n = g.activation(g.add(xn, g.linear(g.mul(r, h), w.weight_hh[2 * H :])), act, "activation")
        one = g.b.const(torch.ones(()).numpy(), "one")
        return [g.add(g.mul(g.sub(one, z), n), g.mul(z, h))]  # h' = (1 − z) ⊙ n + z ⊙ h


class LSTMStep:
    def input_bias(self, cell: LSTMCell, w: Any) -> Tensor | None:
        return _sum(w.bias_ih, w.bias_hh)

    def step(self, g: Graph, cell: LSTMCell, w: Any, xw: str, state: list[str]) -> list[str]:
        σ, act, H = cell.recurrent_activation, cell.activation, cell.hidden_size
        h, c = state
        pi, pf, pg, po = g.split(g.add(xw, g.linear(h, w.weight_hh)), [H] * 4)
        peep = isinstance(cell, PeepholeLSTMCell)
        if peep:  # i and f look at c_{t-1}
            pi = g.add(pi, g.mul(g.b.weight(w.weight_ci), c))
            pf = g.add(pf, g.mul(g.b.weight(w.weight_cf), c))
        i = g.activation(pi, σ, "recurrent_activation")
        f = g.activation(pf, σ, "recurrent_activation")
        c_new = g.add(g.mul(f, c), g.mul(i, g.activation(pg, act, "activation")))
        if peep:  # o looks at the new c_t
            po = g.add(po, g.mul(g.b.weight(w.weight_co), c_new))
        h_new = g.mul(g.activation(po, σ, "recurrent_activation"), g.activation(c_new, act, "activation"))
        if cell.proj_size:
            h_new = g.linear(h_new, w.weight_hr)
        return [h_new, c_new]


class MGUStep:
    def input_bias(self, cell: MGUCell, w: Any) -> Tensor | None:
        return _sum(w.bias_ih, w.bias_hh)  # b_hf and b_hn both add outside their products

    def step(self, g: Graph, cell: MGUCell, w: Any, xw: str, state: list[str]) -> list[str]:
        H = cell.hidden_size
        (h,) = state
        xf, xn = g.split(xw, [H, H])
        f = g.activation(g.add(xf, g.linear(h, w.weight_hh[:H])), cell.recurrent_activation, "recurrent_activation")
        n = g.activation(g.add(xn, g.linear(g.mul(f, h), w.weight_hh[H:])), cell.activation, "activation")
        one = g.b.const(torch.ones(()).numpy(), "one")
        return [g.add(g.mul(g.sub(one, f), h), g.mul(f, n))]  # h' = (1 − f) ⊙ h + f ⊙ n


class IndRNNStep:
    def input_bias(self, cell: IndRNNCell, w: Any) -> Tensor | None:
        return _sum(w.bias_ih, w.bias_hh)

    def step(self, g: Graph, cell: IndRNNCell, w: Any, xw: str, state: list[str]) -> list[str]:
        (h,) = state
        return [g.activation(g.add(xw, g.mul(g.b.weight(w.weight_hh), h)), cell.activation, "activation")]


class MinGRUStep:
    def input_bias(self, cell: MinGRUCell, w: Any) -> Tensor | None:
        return w.bias_ih

    def step(self, g: Graph, cell: MinGRUCell, w: Any, xw: str, state: list[str]) -> list[str]:
        (h,) = state
        kz, n = g.split(xw, [cell.hidden_size] * 2)
        z = g.op("Sigmoid", [kz])
        one = g.b.const(torch.ones(()).numpy(), "one")
        return [g.add(g.mul(g.sub(one, z), h), g.mul(z, n))]  # h' = (1 − z) ⊙ h + z ⊙ h̃


class MinLSTMStep:
    def input_bias(self, cell: MinLSTMCell, w: Any) -> Tensor | None:
        return w.bias_ih

    def step(self, g: Graph, cell: MinLSTMCell, w: Any, xw: str, state: list[str]) -> list[str]:
        (h,) = state
        kf, ki, n = g.split(xw, [cell.hidden_size] * 3)
        f, i = g.op("Sigmoid", [kf]), g.op("Sigmoid", [ki])
        total = g.add(f, i)
        f, i = g.op("Div", [f, total]), g.op("Div", [i, total])  # f' = f / (f + i), i' = i / (f + i)
        return [g.add(g.mul(f, h), g.mul(i, n))]  # h' = f' ⊙ h + i' ⊙ h̃


def _layer_norm(g: Graph, z: str, gain: Tensor, shift: Tensor | None) -> str:
    """ONNX's LayerNormalization (opset 17) over the last axis: α ⊙ (z − μ) / sqrt(σ² + ε) + β."""
    inputs = [z, g.b.weight(gain)] + ([g.b.weight(shift)] if shift is not None else [])
    return g.op("LayerNormalization", inputs, axis=-1, epsilon=LN_EPS)


class LayerNormLSTMStep:
    """The projection ``W_ih x`` is computed for all steps before the Scan; its layer norm is per row, so it
    runs inside the step (no bias moves out: every shift sits after a normalisation)."""

    def input_bias(self, cell: LayerNormLSTMCell, w: Any) -> Tensor | None:
        return None

    def step(self, g: Graph, cell: LayerNormLSTMCell, w: Any, xw: str, state: list[str]) -> list[str]:
        σ, act, H = cell.recurrent_activation, cell.activation, cell.hidden_size
        h, c = state
        a = g.add(
            _layer_norm(g, xw, w.ln_ih_weight, w.bias_ih),
            _layer_norm(g, g.linear(h, w.weight_hh), w.ln_hh_weight, w.bias_hh),
        )
        pi, pf, pg, po = g.split(a, [H] * 4)
        i, f = g.activation(pi, σ, "recurrent_activation"), g.activation(pf, σ, "recurrent_activation")
        c_new = g.add(g.mul(f, c), g.mul(i, g.activation(pg, act, "activation")))
        shown = g.activation(_layer_norm(g, c_new, w.ln_c_weight, w.ln_c_bias), act, "activation")
        return [g.mul(g.activation(po, σ, "recurrent_activation"), shown), c_new]


class LayerNormGRUStep:
    def input_bias(self, cell: LayerNormGRUCell, w: Any) -> Tensor | None:
        return None

    def step(self, g: Graph, cell: LayerNormGRUCell, w: Any, xw: str, state: list[str]) -> list[str]:
        σ, act, H = cell.recurrent_activation, cell.activation, cell.hidden_size
        (h,) = state
        xr, xz, xn = g.split(_layer_norm(g, xw, w.ln_ih_weight, w.bias_ih), [H, H, H])
        hr, hz, hn = g.split(_layer_norm(g, g.linear(h, w.weight_hh), w.ln_hh_weight, w.bias_hh), [H, H, H])
        r = g.activation(g.add(xr, hr), σ, "recurrent_activation")
        z = g.activation(g.add(xz, hz), σ, "recurrent_activation")
        n = g.activation(g.add(xn, g.mul(r, hn)), act, "activation")
        one = g.b.const(torch.ones(()).numpy(), "one")
        return [g.add(g.mul(g.sub(one, z), n), g.mul(z, h))]


#: exact cell type -> its ONNX step (a user subclass may change the equations, so it is not matched)
STEPS: dict[type, Any] = {
    RNNCell: ElmanStep(),
    JordanCell: JordanStep(),
    GRUCell: GRUStep(),
    LSTMCell: LSTMStep(),
    PeepholeLSTMCell: LSTMStep(),
    MGUCell: MGUStep(),
    IndRNNCell: IndRNNStep(),
    MinGRUCell: MinGRUStep(),
    MinLSTMCell: MinLSTMStep(),
    LayerNormLSTMCell: LayerNormLSTMStep(),
    LayerNormGRUCell: LayerNormGRUStep(),
}


def step_for(cell: RecurrentCell) -> Any:
    """The ONNX step of ``cell``, or one ValueError line naming what cannot be exported."""
    step = STEPS.get(type(cell))
    if step is None:
        known = ", ".join(sorted(c.__name__ for c in STEPS))
        raise ValueError(
            f"to_onnx: no ONNX translation for {type(cell).__name__} (the exporter knows the equations of {known} "
            "only, not of subclasses)"
        )
    for attr in ("activation", "recurrent_activation", "output_activation"):
        fn = getattr(cell, attr, None)
        if fn is not None:
            onnx_activation(fn, attr)  # raises for a Python callable
    return step
