"""The layer-normalised LSTM and GRU by hand (Ba, Kiros & Hinton 2016), as :mod:`rnnkit.cells.layernorm`.

Layer normalisation of a row ``z`` (n features), its forward and its backward::

    μ = mean(z),  σ² = mean((z − μ)²),  r = 1 / sqrt(σ² + ε),  ẑ = (z − μ) r,  LN(z) = α ⊙ ẑ + β
    ∂L/∂α = Σ_b ∂L/∂LN ⊙ ẑ,   ∂L/∂β = Σ_b ∂L/∂LN,   d = ∂L/∂LN ⊙ α
    ∂L/∂z = r (d − mean(d) − ẑ ⊙ mean(d ⊙ ẑ))

The last line is the chain rule through μ and r: shifting every feature of ``z`` by the same amount, or
scaling them all, leaves ``ẑ`` unchanged, so the gradient has no component along 1 or along ``ẑ``.

Layer-normalised LSTM (``σ`` sigmoid; ``x_t`` and ``h_{t-1}`` normalised separately over all 4H gates)::

    a_t = LN(W_hh h_{t-1}; α_h, β_h) + LN(W_ih x_t; α_x, β_x)        split into a_i, a_f, a_g, a_o
    c_t = σ(a_f) ⊙ c_{t-1} + σ(a_i) ⊙ tanh(a_g)
    h_t = σ(a_o) ⊙ tanh(LN(c_t; α_c, β_c))

Layer-normalised GRU (reset after the product, as torch's GRU)::

    (x_r, x_z, x_n) = LN(W_ih x_t; α_x, β_x),   (h_r, h_z, h_n) = LN(W_hh h_{t-1}; α_h, β_h)
    r_t = σ(x_r + h_r),  z_t = σ(x_z + h_z),  n_t = tanh(x_n + r_t ⊙ h_n),  h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}

Names: ``bias_ih`` = β_x, ``bias_hh`` = β_h, ``ln_ih_weight`` = α_x, ``ln_hh_weight`` = α_h, ``ln_c_weight`` =
α_c, ``ln_c_bias`` = β_c (rnnkit's); without biases there are no β.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnkit.numpy_bptt.common import Array, Params, State, accumulate, sigmoid

#: torch.nn.functional.layer_norm's ε (rnnkit.cells.layernorm.LN_EPS)
EPS = 1e-5


def ln_forward(z: Array, gain: Array, shift: Array | None) -> tuple[Array, Any]:
    """LN(z; α, β) over the last axis of ``z`` (B, n), and what its backward needs."""
    d = z - z.mean(axis=-1, keepdims=True)  # z − μ
    r = 1.0 / np.sqrt((d * d).mean(axis=-1, keepdims=True) + EPS)  # 1 / sqrt(σ² + ε), (B, 1)
    zh = d * r  # ẑ: zero mean, unit variance per row
    out = gain * zh + (0.0 if shift is None else shift)
    return out, (zh, r, gain)


def ln_backward(dout: Array, cache: Any) -> tuple[Array, Array, Array]:
    """∂L/∂z, ∂L/∂α, ∂L/∂β from ∂L/∂LN(z)."""
    zh, r, gain = cache
    d = dout * gain  # ∂L/∂ẑ
    dz = r * (d - d.mean(axis=-1, keepdims=True) - zh * (d * zh).mean(axis=-1, keepdims=True))
    return dz, (dout * zh).sum(0), dout.sum(0)


def _gate_shapes(G: int, H: int, input_size: int, bias: bool) -> dict[str, tuple[int, ...]]:
    shapes = {"weight_ih": (G * H, input_size), "weight_hh": (G * H, H)}
    if bias:
        shapes.update(bias_ih=(G * H,), bias_hh=(G * H,))
    shapes.update(ln_ih_weight=(G * H,), ln_hh_weight=(G * H,))
    return shapes


def _input_backward(p: Params, da_x: Array, x: Array, cache_x: Any, grads: Params) -> Array:
    """Through LN(W_ih x; α_x, β_x): the parameter gradients, and ∂L/∂x."""
    dz, dgain, dshift = ln_backward(da_x, cache_x)
    grads["ln_ih_weight"] += dgain
    accumulate(grads, "bias_ih", dshift)
    grads["weight_ih"] += dz.T @ x  # ∂E/∂U = Σ_t δ_t x_tᵀ, δ_t taken before the normalisation
    return dz @ p["weight_ih"]


def _recurrent_backward(p: Params, da_h: Array, h_prev: Array, cache_h: Any, grads: Params) -> Array:
    """Through LN(W_hh h_{t-1}; α_h, β_h): the parameter gradients, and this path's ∂L/∂h_{t-1}."""
    dz, dgain, dshift = ln_backward(da_h, cache_h)
    grads["ln_hh_weight"] += dgain
    accumulate(grads, "bias_hh", dshift)
    grads["weight_hh"] += dz.T @ h_prev  # ∂E/∂W = Σ_t δ_t h_{t-1}ᵀ
    return dz @ p["weight_hh"]


@dataclass
class LayerNormLSTM:
    """Layer-normalised LSTM cell, ``rnnkit.LayerNormLSTM``'s equations."""

    hidden_size: int
    bias: bool = True
    name: str = field(default="LayerNormLSTM", init=False)

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size, self.hidden_size)

    def parameter_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        H = self.hidden_size
        shapes = _gate_shapes(4, H, input_size, self.bias)
        shapes["ln_c_weight"] = (H,)
        if self.bias:
            shapes["ln_c_bias"] = (H,)
        return shapes

    def step(self, p: Params, x: Array, state: State) -> tuple[State, Any]:
        h_prev, c_prev = state  # (B, H), (B, H)
        xw, cache_x = ln_forward(x @ p["weight_ih"].T, p["ln_ih_weight"], p.get("bias_ih"))  # LN(W_ih x_t)
        hw, cache_h = ln_forward(h_prev @ p["weight_hh"].T, p["ln_hh_weight"], p.get("bias_hh"))  # LN(W_hh h_{t-1})
        a_i, a_f, a_g, a_o = np.split(xw + hw, 4, axis=1)  # gate pre-activations, each (B, H)
        i, f, g, o = sigmoid(a_i), sigmoid(a_f), np.tanh(a_g), sigmoid(a_o)
        c = f * c_prev + i * g  # c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        lc, cache_c = ln_forward(c, p["ln_c_weight"], p.get("ln_c_bias"))  # LN(c_t; α_c, β_c)
        tl = np.tanh(lc)
        h = o * tl  # h_t = o_t ⊙ tanh(LN(c_t))
        return (h, c), (x, h_prev, c_prev, i, f, g, o, tl, cache_x, cache_h, cache_c)

    def step_backward(self, p: Params, cache: Any, dstate: State, grads: Params) -> tuple[State, Array]:
        x, h_prev, c_prev, i, f, g, o, tl, cache_x, cache_h, cache_c = cache
        dh, dc = dstate  # ∂L/∂h_t, ∂L/∂c_t (from later steps)
        da_o = dh * tl * o * (1.0 - o)  # ∂h_t/∂o_t = tanh(LN(c_t)), then through σ
        dc_ln, dgain, dshift = ln_backward(dh * o * (1.0 - tl * tl), cache_c)  # through tanh, then LN(c_t)
        grads["ln_c_weight"] += dgain
        accumulate(grads, "ln_c_bias", dshift)
        dc = dc + dc_ln  # c_t reaches L directly (next step) and through h_t
        da_i = dc * g * i * (1.0 - i)  # c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        da_f = dc * c_prev * f * (1.0 - f)
        da_g = dc * i * (1.0 - g * g)
        dc_prev = dc * f  # the memory path: ∂c_t/∂c_{t-1} = diag(f_t), untouched by the normalisation
        da = np.concatenate([da_i, da_f, da_g, da_o], axis=1)  # δ_t (B, 4H): the same for both normalised halves
        dh_prev = _recurrent_backward(p, da, h_prev, cache_h, grads)
        return (dh_prev, dc_prev), _input_backward(p, da, x, cache_x, grads)


@dataclass
class LayerNormGRU:
    """Layer-normalised GRU cell (reset after the product), ``rnnkit.LayerNormGRU``'s equations."""

    hidden_size: int
    bias: bool = True
    name: str = field(default="LayerNormGRU", init=False)

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size,)

    def parameter_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        return _gate_shapes(3, self.hidden_size, input_size, self.bias)

    def step(self, p: Params, x: Array, state: State) -> tuple[State, Any]:
        (h_prev,) = state  # (B, H)
        xw, cache_x = ln_forward(x @ p["weight_ih"].T, p["ln_ih_weight"], p.get("bias_ih"))  # LN(W_ih x_t)
        hw, cache_h = ln_forward(h_prev @ p["weight_hh"].T, p["ln_hh_weight"], p.get("bias_hh"))  # LN(W_hh h_{t-1})
        x_r, x_z, x_n = np.split(xw, 3, axis=1)
        h_r, h_z, h_n = np.split(hw, 3, axis=1)
        r = sigmoid(x_r + h_r)  # reset gate
        z = sigmoid(x_z + h_z)  # update gate
        n = np.tanh(x_n + r * h_n)  # candidate, reset after the (normalised) product
        h = (1.0 - z) * n + z * h_prev  # h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}
        return (h,), (x, h_prev, r, z, n, h_n, cache_x, cache_h)

    def step_backward(self, p: Params, cache: Any, dstate: State, grads: Params) -> tuple[State, Array]:
        x, h_prev, r, z, n, h_n, cache_x, cache_h = cache
        (dh,) = dstate  # ∂L/∂h_t (B, H)
        da_n = dh * (1.0 - z) * (1.0 - n * n)  # ∂h_t/∂n_t = 1 - z_t, then through tanh
        da_z = dh * (h_prev - n) * z * (1.0 - z)  # ∂h_t/∂z_t = h_{t-1} - n_t, then through σ
        da_r = da_n * h_n * r * (1.0 - r)  # n's pre-activation has r_t ⊙ h_n
        da_x = np.concatenate([da_r, da_z, da_n], axis=1)  # ∂L/∂LN(W_ih x_t) (B, 3H)
        da_h = np.concatenate([da_r, da_z, da_n * r], axis=1)  # ∂L/∂LN(W_hh h_{t-1}): h_n is scaled by r_t
        dh_prev = dh * z + _recurrent_backward(p, da_h, h_prev, cache_h, grads)  # direct path diag(z_t) + LN path
        return (dh_prev,), _input_backward(p, da_x, x, cache_x, grads)
