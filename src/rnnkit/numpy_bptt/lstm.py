"""The LSTM by hand (gate order i, f, g, o as in torch), with optional projection and peepholes.

Forward (``σ`` sigmoid; peephole terms ``w_c* ⊙ c`` only for :class:`PeepholeLSTM`)::

    i_t = σ(U_i x_t + W_i h_{t-1} + b_i + w_ci ⊙ c_{t-1})
    f_t = σ(U_f x_t + W_f h_{t-1} + b_f + w_cf ⊙ c_{t-1})
    g_t = tanh(U_g x_t + W_g h_{t-1} + b_g)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t                       memory is added to, not overwritten (Hung-yi Lee)
    o_t = σ(U_o x_t + W_o h_{t-1} + b_o + w_co ⊙ c_t)
    m_t = o_t ⊙ tanh(c_t);   h_t = m_t, or W_hr m_t with proj_size > 0 (LSTMP)

Backward carries two gradients, ``∂L/∂h_t`` and ``∂L/∂c_t``. The memory path gives
``∂c_t/∂c_{t-1} = diag(f_t)`` (+ peephole terms): no weight matrix and no squashing derivative in the
product, so with forget gates near 1 the gradient reaches far back (the "constant error carousel").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnkit.numpy_bptt.common import Array, Params, State, accumulate, linear, sigmoid


@dataclass
class LSTM:
    """LSTM cell, ``torch.nn.LSTM`` equations; ``proj_size > 0`` gives torch's projected LSTM."""

    hidden_size: int
    proj_size: int = 0
    bias: bool = True
    name: str = field(default="LSTM", init=False)
    peephole: bool = field(default=False, init=False)

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.proj_size or self.hidden_size, self.hidden_size)

    def parameter_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        H, P = self.hidden_size, self.proj_size
        shapes = {"weight_ih": (4 * H, input_size), "weight_hh": (4 * H, P or H)}
        if self.bias:
            shapes.update(bias_ih=(4 * H,), bias_hh=(4 * H,))
        if P:
            shapes["weight_hr"] = (P, H)
        if self.peephole:
            shapes.update(weight_ci=(H,), weight_cf=(H,), weight_co=(H,))
        return shapes

    def step(self, p: Params, x: Array, state: State) -> tuple[State, Any]:
        h_prev, c_prev = state  # (B, P or H), (B, H)
        a = linear(x, p["weight_ih"], p.get("bias_ih")) + linear(h_prev, p["weight_hh"], p.get("bias_hh"))
        a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)  # gate pre-activations, each (B, H)
        if self.peephole:
            a_i = a_i + p["weight_ci"] * c_prev  # the input gate peeks at c_{t-1}
            a_f = a_f + p["weight_cf"] * c_prev  # the forget gate peeks at c_{t-1}
        i, f, g = sigmoid(a_i), sigmoid(a_f), np.tanh(a_g)
        c = f * c_prev + i * g  # c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        if self.peephole:
            a_o = a_o + p["weight_co"] * c  # the output gate peeks at the new c_t
        o = sigmoid(a_o)
        tc = np.tanh(c)
        m = o * tc  # o_t ⊙ tanh(c_t)
        h = linear(m, p["weight_hr"], None) if self.proj_size else m  # LSTMP: h_t = W_hr m_t
        return (h, c), (x, h_prev, c_prev, i, f, g, o, c, tc, m)

    def step_backward(self, p: Params, cache: Any, dstate: State, grads: Params) -> tuple[State, Array]:
        x, h_prev, c_prev, i, f, g, o, c, tc, m = cache
        dh, dc = dstate  # ∂L/∂h_t, ∂L/∂c_t (from later steps)
        if self.proj_size:
            grads["weight_hr"] += dh.T @ m  # h_t = W_hr m_t
            dm = dh @ p["weight_hr"]
        else:
            dm = dh
        do = dm * tc  # ∂m_t/∂o_t = tanh(c_t)
        da_o = do * o * (1.0 - o)
        dc = dc + dm * o * (1.0 - tc * tc)  # c_t reaches L directly (next step) and through h_t
        if self.peephole:
            dc = dc + da_o * p["weight_co"]  # … and through o_t's peephole
            grads["weight_co"] += (da_o * c).sum(0)
        di, dg, df = dc * g, dc * i, dc * c_prev  # c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        dc_prev = dc * f  # the memory path: ∂c_t/∂c_{t-1} = diag(f_t)
        da_i = di * i * (1.0 - i)
        da_f = df * f * (1.0 - f)
        da_g = dg * (1.0 - g * g)
        if self.peephole:
            dc_prev = dc_prev + da_i * p["weight_ci"] + da_f * p["weight_cf"]
            grads["weight_ci"] += (da_i * c_prev).sum(0)
            grads["weight_cf"] += (da_f * c_prev).sum(0)
        da = np.concatenate([da_i, da_f, da_g, da_o], axis=1)  # δ_t for the stacked gates (B, 4H)
        grads["weight_ih"] += da.T @ x  # ∂E/∂U = Σ_t δ_t x_tᵀ
        grads["weight_hh"] += da.T @ h_prev  # ∂E/∂W = Σ_t δ_t h_{t-1}ᵀ
        accumulate(grads, "bias_ih", da.sum(0))
        accumulate(grads, "bias_hh", da.sum(0))
        dh_prev = da @ p["weight_hh"]  # ∂L/∂h_{t-1} = Wᵀ δ_t
        return (dh_prev, dc_prev), da @ p["weight_ih"]


@dataclass
class PeepholeLSTM(LSTM):
    """LSTM whose gates also see the memory cell (Gers & Schmidhuber 2000), as ``rnnkit.PeepholeLSTM``."""

    name: str = field(default="PeepholeLSTM", init=False)
    peephole: bool = field(default=True, init=False)
