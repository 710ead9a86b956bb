"""Simple recurrent networks by hand: the Elman cell (``s_t = tanh(U x_t + W s_{t-1})``) and Jordan's.

Each step backward receives ``ds = ∂L/∂s_t`` and returns ``∂L/∂s_{t-1}``: one factor ``∂s_t/∂s_{t-1}`` of
the seed's product ``∏_{i=k+1}^{j} ∂s_i/∂s_{i-1}``. For Elman that factor is ``diag(f'(a_t)) W`` — the
quantity whose repeated product vanishes (``‖·‖ < 1``) or explodes (``> 1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rnnkit.numpy_bptt.common import Array, Params, State, accumulate, activation, linear


@dataclass
class Elman:
    """Elman cell, ``torch.nn.RNN`` equations: ``s_t = f(U x_t + b_ih + W s_{t-1} + b_hh)``.

    ``U = weight_ih`` (H, F), ``W = weight_hh`` (H, H); ``nonlinearity`` is ``"tanh"`` or ``"relu"`` (any name of
    :data:`~rnnkit.numpy_bptt.common.ACTIVATIONS` works).
    """

    hidden_size: int
    nonlinearity: str = "tanh"
    bias: bool = True
    name: str = field(default="Elman", init=False)

    def __post_init__(self) -> None:
        self.f, self.df = activation(self.nonlinearity, "nonlinearity")

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size,)

    def parameter_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        H = self.hidden_size
        shapes = {"weight_ih": (H, input_size), "weight_hh": (H, H)}
        if self.bias:
            shapes.update(bias_ih=(H,), bias_hh=(H,))
        return shapes

    def step(self, p: Params, x: Array, state: State) -> tuple[State, Any]:
        (s_prev,) = state  # (B, H)
        a = linear(x, p["weight_ih"], p.get("bias_ih")) + linear(s_prev, p["weight_hh"], p.get("bias_hh"))
        s = self.f(a)  # s_t = f(U x_t + W s_{t-1} + b)
        return (s,), (x, s_prev, s)

    def step_backward(self, p: Params, cache: Any, dstate: State, grads: Params) -> tuple[State, Array]:
        x, s_prev, s = cache
        (ds,) = dstate  # ∂L/∂s_t (B, H)
        delta = ds * self.df(s)  # δ_t = ∂L/∂a_t = ∂L/∂s_t ⊙ f'(a_t)   (tanh: 1 - s_t²)
        grads["weight_ih"] += delta.T @ x  # ∂E/∂U = Σ_t δ_t x_tᵀ        (∂E/∂U)
        grads["weight_hh"] += delta.T @ s_prev  # ∂E/∂W = Σ_t δ_t s_{t-1}ᵀ  (∂E/∂W)
        accumulate(grads, "bias_ih", delta.sum(0))
        accumulate(grads, "bias_hh", delta.sum(0))
        ds_prev = delta @ p["weight_hh"]  # ∂L/∂s_{t-1} = Wᵀ δ_t: one factor ∂s_t/∂s_{t-1} = diag(f') W
        dx = delta @ p["weight_ih"]  # ∂L/∂x_t = Uᵀ δ_t
        return (ds_prev,), dx


@dataclass
class Jordan:
    """Jordan cell: the fed-back state is the previous *output* ``y``.

    ``h_t = f(W_ih x_t + b_ih + W_yh y_{t-1} + b_yh)``, ``y_t = g(W_hy h_t + b_hy)``; the state, and what
    the head reads, is ``y_t`` (``output_size`` features). rnnkit's defaults: ``f = tanh``, ``g = identity``.
    """

    hidden_size: int
    output_size: int
    activation: str = "tanh"
    output_activation: str = "identity"
    bias: bool = True
    name: str = field(default="Jordan", init=False)

    def __post_init__(self) -> None:
        self.f, self.df = activation(self.activation)
        self.g, self.dg = activation(self.output_activation, "output_activation")

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.output_size,)

    def parameter_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        H, O = self.hidden_size, self.output_size
        shapes = {"weight_ih": (H, input_size), "weight_yh": (H, O), "weight_hy": (O, H)}
        if self.bias:
            shapes.update(bias_ih=(H,), bias_yh=(H,), bias_hy=(O,))
        return shapes

    def step(self, p: Params, x: Array, state: State) -> tuple[State, Any]:
        (y_prev,) = state  # (B, O)
        h = self.f(linear(x, p["weight_ih"], p.get("bias_ih")) + linear(y_prev, p["weight_yh"], p.get("bias_yh")))
        y = self.g(linear(h, p["weight_hy"], p.get("bias_hy")))  # y_t = g(W_hy h_t + b_hy)
        return (y,), (x, y_prev, h, y)

    def step_backward(self, p: Params, cache: Any, dstate: State, grads: Params) -> tuple[State, Array]:
        x, y_prev, h, y = cache
        (dy,) = dstate  # ∂L/∂y_t (B, O)
        delta_y = dy * self.dg(y)  # ∂L/∂(W_hy h_t + b_hy)
        grads["weight_hy"] += delta_y.T @ h
        accumulate(grads, "bias_hy", delta_y.sum(0))
        delta_h = (delta_y @ p["weight_hy"]) * self.df(h)  # ∂L/∂(pre-activation of h_t)
        grads["weight_ih"] += delta_h.T @ x
        grads["weight_yh"] += delta_h.T @ y_prev  # the recurrent weight multiplies the previous output
        accumulate(grads, "bias_ih", delta_h.sum(0))
        accumulate(grads, "bias_yh", delta_h.sum(0))
        dy_prev = delta_h @ p["weight_yh"]  # ∂L/∂y_{t-1}: the factor diag(g') W_hy diag(f') W_yh
        return (dy_prev,), delta_h @ p["weight_ih"]
