"""Per-cell sequence kernels of the fused engine: a forward loop and its hand-written backward.

Each kernel runs *one direction of one layer* over a whole sequence, given the input projections of
all steps ``xw`` (T, B, G) (``W_ih x_t + b_ih``, plus whatever part of ``b_hh`` is purely additive).
The forward writes every step into preallocated buffers (no per-step allocation, no ``torch.stack``);
the backward walks the steps in reverse and writes the gradient of every pre-activation into one
(T, B, G) buffer, so that the weight gradients are a few large GEMMs over all steps at the end
(``dW_hh = dPreᵀ · H_prev``) instead of T small ones.

The equations are the cells' (see :mod:`rnnkit.cells`); here they are re-stated in the buffer layout with
their derivatives. Activation derivatives are taken from the activation's *output*, as autograd does.

Variable lengths: ``mask`` (T, B, 1) bool is True where step t is inside sequence b. A finished
sequence's state is frozen (``s_t = where(m, s_new, s_{t-1})``) and its outputs/gates are zero, exactly as
in the reference engine. In the backward that splits the incoming state gradient into the part that
flows into the step (``where(m, ds, 0)``) and the part that skips it (``where(m, 0, ds)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.activations import activation_name
from rnnkit.engines import _fused_c as cext

aten = torch.ops.aten

# name -> (in-place activation, gradient from the activation's output: (dy, y) -> dx)
_ACT: dict[str, tuple[Callable[[Tensor], Any], Callable[[Tensor, Tensor], Tensor]]] = {
    "tanh": (Tensor.tanh_, lambda dy, y: aten.tanh_backward(dy, y)),
    "sigmoid": (Tensor.sigmoid_, lambda dy, y: aten.sigmoid_backward(dy, y)),
    "relu": (Tensor.relu_, lambda dy, y: aten.threshold_backward(dy, y, 0)),
    "identity": (lambda x: x, lambda dy, y: dy),
    # hardsigmoid(x) = clamp((x + 3) / 6, 0, 1): slope 1/6 exactly where the output is strictly inside (0, 1)
    "hard_sigmoid": (lambda x: F.hardsigmoid(x, inplace=True), lambda dy, y: dy * ((y > 0) & (y < 1)) / 6),
}


def act_name(fn: Callable[[Tensor], Tensor]) -> str | None:
    """The fused engine's name for activation ``fn``, or ``None`` if it is an arbitrary callable."""
    name = activation_name(fn)
    return name if name in _ACT else None


class Act:
    """An activation the kernels can apply in place and differentiate from its output."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        name = act_name(fn)
        if name is None:
            raise ValueError(f"the fused engine cannot differentiate activation {fn!r}; use engine='reference'")
        self.fn = fn
        self.inplace, self.grad = _ACT[name]

    def __call__(self, x: Tensor) -> Tensor:
        return self.fn(x)


def _split(mask: Tensor | None, t: int, ds: Tensor) -> tuple[Tensor, Tensor | None]:
    """Split a state gradient at step t into (into the step, skipping the step); no mask: all goes in."""
    if mask is None:
        return ds, None
    m = mask[t]  # (B, 1)
    return torch.where(m, ds, 0.0), torch.where(m, 0.0, ds)


def _freeze(mask: Tensor | None, t: int, new: Tensor, old: Tensor) -> None:
    """``new = where(m, new, old)`` in place: finished sequences keep their state."""
    if mask is not None:
        new.copy_(torch.where(mask[t], new, old))


def _masked(mask: Tensor | None, seq: Tensor) -> Tensor:
    """Zero ``seq`` (T, B, n) past each sequence's length; a fresh tensor either way."""
    return seq.clone() if mask is None else torch.where(mask, seq, 0.0)


def _flat(seq: Tensor) -> Tensor:
    return seq.reshape(-1, seq.shape[-1])  # (T*B, n)


class Kernel:
    """Base: one (cell, direction) problem. Subclasses set the names of the recurrent weights they use."""

    #: names of the tensors (cell parameter names) the recurrence reads, in the order ``forward`` takes them
    weight_names: tuple[str, ...] = ()

    def __init__(self, cell: Any, mask: Tensor | None, return_gates: bool) -> None:
        self.cell = cell
        self.mask = mask
        self.return_gates = return_gates
        self.H = cell.hidden_size

    def input_bias(self, w: Any) -> Tensor | None:
        """The bias added in the input projection: ``b_ih`` plus the additive part of the recurrent bias."""
        if w.bias_ih is None:
            return None
        return w.bias_ih + w.bias_hh

    def weights(self, w: Any) -> list[Tensor | None]:
        return [getattr(w, n) for n in self.weight_names]

    def c_kernel(self, name: str, x: Tensor):
        """The C pointwise step ``name`` if it applies here (default activations, CPU float), else ``None``."""
        key = (name, x.dtype, x.device)
        if getattr(self, "_ck_key", None) != key:  # cached: the stepper asks once per token
            default = self.act.fn is torch.tanh and self.sig.fn is torch.sigmoid
            self._ck_key, self._ck = key, (cext.fn(name, x) if default and cext.usable(x) else None)
        return self._ck


# ------------------------------------------------------------------------------------------------------
class ElmanKernel(Kernel):
    """``h_t = act(xw_t + W_hh h_{t-1})`` (``b_hh`` is folded into ``xw``). Gates: ``h``."""

    weight_names = ("weight_hh",)

    def __init__(self, cell: Any, mask: Tensor | None, return_gates: bool) -> None:
        super().__init__(cell, mask, return_gates)
        self.act = Act(cell.activation)

    def forward(self, xw: Tensor, state: tuple[Tensor, ...], weights: list, save: bool):
        (W,) = weights
        T, B, _ = xw.shape
        Hs = xw.new_empty(T + 1, B, self.H)  # h_0 … h_T
        Hs[0] = state[0]
        Wt = W.t().contiguous()  # (H, H): a row-major right operand is ~8% faster in MKL here
        for t in range(T):
            h = torch.addmm(xw[t], Hs[t], Wt, out=Hs[t + 1])  # pre-activation W_ih x + b + W_hh h
            self.act.inplace(h)
            _freeze(self.mask, t, h, Hs[t])
        out = Hs[1:] if self.mask is None else torch.where(self.mask, Hs[1:], 0.0)
        gates = (_masked(self.mask, Hs[1:]),) if self.return_gates else ()
        return out, (Hs[T].clone(),), gates, (Hs, W)

    def step(self, xw: Tensor, state: tuple[Tensor, ...], weights: list) -> tuple[Tensor, ...]:
        """One step without autograd bookkeeping (the generation loop): ``xw`` (B, G) -> new state."""
        return (self.act.inplace(torch.addmm(xw, state[0], weights[0].t())),)

    def backward(self, saved, g_out: Tensor, g_final: tuple[Tensor, ...], g_gates: tuple[Tensor, ...]):
        Hs, W = saved
        T = g_out.shape[0]
        if self.mask is not None:
            g_out = torch.where(self.mask, g_out, 0.0)
        if g_gates:
            g_out = g_out + _masked(self.mask, g_gates[0])
        dPre = torch.empty_like(g_out)  # (T, B, H)
        dh = g_final[0]
        for t in range(T - 1, -1, -1):
            dh_in, dh_skip = _split(self.mask, t, dh)
            torch.add(dh_in, g_out[t], out=dPre[t])
            dPre[t] = self.act.grad(dPre[t], Hs[t + 1])
            dh = dPre[t] @ W
            if dh_skip is not None:
                dh += dh_skip
        dW = _flat(dPre).t() @ _flat(Hs[:-1])
        return dPre, (dh,), [dW]


# ------------------------------------------------------------------------------------------------------
class JordanKernel(Kernel):
    """``h_t = act(xw_t + W_yh y_{t-1})``, ``y_t = out_act(W_hy h_t + b_hy)`` (``b_yh`` folded). Gates: h, y."""

    weight_names = ("weight_yh", "weight_hy", "bias_hy")

    def __init__(self, cell: Any, mask: Tensor | None, return_gates: bool) -> None:
        super().__init__(cell, mask, return_gates)
        self.act = Act(cell.activation)
        self.out_act = Act(cell.output_activation)

    def input_bias(self, w: Any) -> Tensor | None:
        return None if w.bias_ih is None else w.bias_ih + w.bias_yh

    def forward(self, xw: Tensor, state: tuple[Tensor, ...], weights: list, save: bool):
        W_yh, W_hy, b_hy = weights
        T, B, _ = xw.shape
        O = W_hy.shape[0]
        Ys = xw.new_empty(T + 1, B, O)  # y_0 … y_T
        Hh = xw.new_empty(T if save or self.return_gates else 1, B, self.H)  # hidden layers
        Ys[0] = state[0]
        W_yh_t, W_hy_t = W_yh.t(), W_hy.t()
        for t in range(T):
            h = torch.addmm(xw[t], Ys[t], W_yh_t, out=Hh[t if Hh.shape[0] > 1 else 0])
            self.act.inplace(h)
            y = Ys[t + 1]
            if b_hy is None:
                torch.mm(h, W_hy_t, out=y)
            else:
                torch.addmm(b_hy, h, W_hy_t, out=y)
            self.out_act.inplace(y)
            _freeze(self.mask, t, y, Ys[t])
        out = Ys[1:] if self.mask is None else torch.where(self.mask, Ys[1:], 0.0)
        gates = (_masked(self.mask, Hh), _masked(self.mask, Ys[1:])) if self.return_gates else ()
        return out, (Ys[T].clone(),), gates, (Ys, Hh, W_yh, W_hy)

    def step(self, xw: Tensor, state: tuple[Tensor, ...], weights: list) -> tuple[Tensor, ...]:
        W_yh, W_hy, b_hy = weights
        h = self.act.inplace(torch.addmm(xw, state[0], W_yh.t()))
        y = torch.mm(h, W_hy.t()) if b_hy is None else torch.addmm(b_hy, h, W_hy.t())
        return (self.out_act.inplace(y),)

    def backward(self, saved, g_out: Tensor, g_final: tuple[Tensor, ...], g_gates: tuple[Tensor, ...]):
        Ys, Hh, W_yh, W_hy = saved
        T = g_out.shape[0]
        if self.mask is not None:
            g_out = torch.where(self.mask, g_out, 0.0)
        g_h = None
        if g_gates:
            g_out = g_out + _masked(self.mask, g_gates[1])
            g_h = _masked(self.mask, g_gates[0])
        dPreY = torch.empty_like(g_out)  # (T, B, O): gradient of W_hy h + b_hy
        dPre = torch.empty_like(Hh)  # (T, B, H): gradient of the hidden pre-activation
        dy = g_final[0]
        for t in range(T - 1, -1, -1):
            dy_in, dy_skip = _split(self.mask, t, dy)
            torch.add(dy_in, g_out[t], out=dPreY[t])
            dPreY[t] = self.out_act.grad(dPreY[t], Ys[t + 1])
            dh = dPreY[t] @ W_hy
            if g_h is not None:
                dh += g_h[t]
            dPre[t] = self.act.grad(dh, Hh[t])
            dy = dPre[t] @ W_yh
            if dy_skip is not None:
                dy += dy_skip
        dW_yh = _flat(dPre).t() @ _flat(Ys[:-1])
        dW_hy = _flat(dPreY).t() @ _flat(Hh)
        db_hy = dPreY.sum((0, 1))
        return dPre, (dy,), [dW_yh, dW_hy, db_hy]
