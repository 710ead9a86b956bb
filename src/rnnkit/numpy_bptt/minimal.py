"""The minimal cells by hand: MGU, IndRNN, minGRU and minLSTM (rnnkit's names and gate order).

Forward (``σ`` sigmoid; ``[·]_f`` the f-block of a stacked weight)::

    MGU      f_t = σ(U_f x_t + b_if + W_f h_{t-1} + b_hf)
             n_t = tanh(U_n x_t + b_in + W_n (f_t ⊙ h_{t-1}) + b_hn)
             h_t = (1 - f_t) ⊙ h_{t-1} + f_t ⊙ n_t
    IndRNN   h_t = act(U x_t + b_ih + u ⊙ h_{t-1} + b_hh)                 (u a vector)
    minGRU   z_t = σ(U_z x_t + b_z),  n_t = U_n x_t + b_n,  h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ n_t
    minLSTM  f_t = σ(U_f x_t + b_f),  i_t = σ(U_i x_t + b_i),  n_t = U_n x_t + b_n
             f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t),  h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ n_t

What carries the gradient back in time: MGU ``diag(1 - f_t)`` plus matrix paths through both gates, IndRNN
``diag(u ⊙ act'_t)`` (one number per unit: ``u^T`` over T steps), minGRU ``diag(1 - z_t)`` and minLSTM
``diag(f'_t)`` — nothing else, since their gates do not read ``h``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnkit.numpy_bptt.common import Array, Params, State, accumulate, activation, linear, sigmoid


@dataclass
class MGU:
    """Minimal gated unit (Zhou et al. 2016), as ``rnnkit.MGU`` with its default activations."""

    hidden_size: int
    bias: bool = True
    name: str = field(default="MGU", init=False)

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size,)

    def parameter_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        H = self.hidden_size
        shapes = {"weight_ih": (2 * H, input_size), "weight_hh": (2 * H, H)}
        if self.bias:
            shapes.update(bias_ih=(2 * H,), bias_hh=(2 * H,))
        return shapes

    def step(self, p: Params, x: Array, state: State) -> tuple[State, Any]:
        (h_prev,) = state  # (B, H)
        H = self.hidden_size
        xf, xn = np.split(linear(x, p["weight_ih"], p.get("bias_ih")), 2, axis=1)  # U_* x_t + b_i*
        W, b = p["weight_hh"], p.get("bias_hh")
        b_f, b_n = (None, None) if b is None else np.split(b, 2)
        f = sigmoid(xf + linear(h_prev, W[:H], b_f))  # the one gate
        fh = f * h_prev  # the gated state the candidate reads
        n = np.tanh(xn + linear(fh, W[H:], b_n))  # candidate
        h = (1.0 - f) * h_prev + f * n
        return (h,), (x, h_prev, f, fh, n)

    def step_backward(self, p: Params, cache: Any, dstate: State, grads: Params) -> tuple[State, Array]:
        x, h_prev, f, fh, n = cache
        (dh,) = dstate  # ∂L/∂h_t (B, H)
        H = self.hidden_size
        W = p["weight_hh"]
        dn = dh * f  # ∂h_t/∂n_t = f_t
        df = dh * (n - h_prev)  # ∂h_t/∂f_t = n_t - h_{t-1} (the interpolation)
        dh_prev = dh * (1.0 - f)  # the direct path
        da_n = dn * (1.0 - n * n)  # through tanh
        grads["weight_hh"][H:] += da_n.T @ fh  # ∂/∂W_n = Σ δ_n (f ⊙ h)ᵀ
        d_fh = da_n @ W[H:]  # ∂L/∂(f_t ⊙ h_{t-1})
        df = df + d_fh * h_prev  # f_t also gates the candidate's input …
        dh_prev = dh_prev + d_fh * f  # … and h_{t-1} reaches the candidate through it
        da_f = df * f * (1.0 - f)  # through σ
        grads["weight_hh"][:H] += da_f.T @ h_prev
        dh_prev = dh_prev + da_f @ W[:H]
        da_x = np.concatenate([da_f, da_n], axis=1)  # ∂L/∂(U x_t + b_ih), both blocks (B, 2H)
        grads["weight_ih"] += da_x.T @ x
        accumulate(grads, "bias_ih", da_x.sum(0))
        accumulate(grads, "bias_hh", da_x.sum(0))  # b_hf, b_hn add where b_if, b_in do
        return (dh_prev,), da_x @ p["weight_ih"]


@dataclass
class IndRNN:
    """Independently recurrent network (Li et al. 2018), as ``rnnkit.IndRNN``; ``u`` is ``weight_hh`` (H,)."""

    hidden_size: int
    nonlinearity: str = "relu"
    bias: bool = True
    name: str = field(default="IndRNN", init=False)

    def __post_init__(self) -> None:
        self.act, self.dact = activation(self.nonlinearity)

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size,)

    def parameter_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        H = self.hidden_size
        shapes = {"weight_ih": (H, input_size), "weight_hh": (H,)}
        if self.bias:
            shapes.update(bias_ih=(H,), bias_hh=(H,))
        return shapes

    def step(self, p: Params, x: Array, state: State) -> tuple[State, Any]:
        (h_prev,) = state
        a = linear(x, p["weight_ih"], p.get("bias_ih")) + p["weight_hh"] * h_prev  # U x_t + b_ih + u ⊙ h_{t-1}
        if "bias_hh" in p:
            a = a + p["bias_hh"]
        h = self.act(a)
        return (h,), (x, h_prev, h)

    def step_backward(self, p: Params, cache: Any, dstate: State, grads: Params) -> tuple[State, Array]:
        x, h_prev, h = cache
        (dh,) = dstate
        da = dh * self.dact(h)  # through act, from its output
        grads["weight_hh"] += (da * h_prev).sum(0)  # ∂/∂u_k = Σ_b δ_k h_{t-1,k}: one number per unit
        grads["weight_ih"] += da.T @ x
        accumulate(grads, "bias_ih", da.sum(0))
        accumulate(grads, "bias_hh", da.sum(0))
        return (da * p["weight_hh"],), da @ p["weight_ih"]  # ∂h_t/∂h_{t-1} = diag(u ⊙ act')


@dataclass
class MinGRU:
    """minGRU (Feng et al. 2024), as ``rnnkit.MinGRU``: no ``weight_hh``."""

    hidden_size: int
    bias: bool = True
    name: str = field(default="MinGRU", init=False)

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size,)

    def parameter_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        H = self.hidden_size
        return {"weight_ih": (2 * H, input_size), **({"bias_ih": (2 * H,)} if self.bias else {})}

    def step(self, p: Params, x: Array, state: State) -> tuple[State, Any]:
        (h_prev,) = state
        kz, n = np.split(linear(x, p["weight_ih"], p.get("bias_ih")), 2, axis=1)
        z = sigmoid(kz)  # update gate, from x_t alone
        h = (1.0 - z) * h_prev + z * n  # n: the linear candidate h̃_t
        return (h,), (x, h_prev, z, n)

    def step_backward(self, p: Params, cache: Any, dstate: State, grads: Params) -> tuple[State, Array]:
        x, h_prev, z, n = cache
        (dh,) = dstate
        da_z = dh * (n - h_prev) * z * (1.0 - z)  # ∂h_t/∂z_t = n_t - h_{t-1}, then σ'
        dn = dh * z  # the candidate has no activation
        da_x = np.concatenate([da_z, dn], axis=1)
        grads["weight_ih"] += da_x.T @ x
        accumulate(grads, "bias_ih", da_x.sum(0))
        return (dh * (1.0 - z),), da_x @ p["weight_ih"]  # ∂h_t/∂h_{t-1} = diag(1 - z_t) only


@dataclass
class MinLSTM:
    """minLSTM (Feng et al. 2024), as ``rnnkit.MinLSTM``: normalised gates, no ``weight_hh``, no cell state."""

    hidden_size: int
    bias: bool = True
    name: str = field(default="MinLSTM", init=False)

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size,)

    def parameter_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        H = self.hidden_size
        return {"weight_ih": (3 * H, input_size), **({"bias_ih": (3 * H,)} if self.bias else {})}

    def step(self, p: Params, x: Array, state: State) -> tuple[State, Any]:
        (h_prev,) = state
        kf, ki, n = np.split(linear(x, p["weight_ih"], p.get("bias_ih")), 3, axis=1)
        f, i = sigmoid(kf), sigmoid(ki)
        s = f + i
        h = (f / s) * h_prev + (i / s) * n  # h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ n_t
        return (h,), (x, h_prev, f, i, n)

    def step_backward(self, p: Params, cache: Any, dstate: State, grads: Params) -> tuple[State, Array]:
        x, h_prev, f, i, n = cache
        (dh,) = dstate
        s = f + i
        df_n, di_n = dh * h_prev, dh * n  # ∂L/∂f'_t, ∂L/∂i'_t
        # f' = f/s, i' = i/s with s = f + i: ∂f'/∂f = i/s², ∂f'/∂i = -f/s², ∂i'/∂i = f/s², ∂i'/∂f = -i/s²
        df = (df_n - di_n) * i / (s * s)
        di = (di_n - df_n) * f / (s * s)
        da_x = np.concatenate([df * f * (1.0 - f), di * i * (1.0 - i), dh * i / s], axis=1)
        grads["weight_ih"] += da_x.T @ x
        accumulate(grads, "bias_ih", da_x.sum(0))
        return (dh * f / s,), da_x @ p["weight_ih"]  # ∂h_t/∂h_{t-1} = diag(f'_t) only
