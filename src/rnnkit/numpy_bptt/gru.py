"""The GRU by hand, both variants (gate order r, z, n as in torch).

Forward (``σ`` sigmoid, ``[·]_r`` the r-block of a stacked (3H, ·) weight)::

    r_t = σ(U_r x_t + b_ir + W_r h_{t-1} + b_hr)
    z_t = σ(U_z x_t + b_iz + W_z h_{t-1} + b_hz)
    n_t = tanh(U_n x_t + b_in + r_t ⊙ (W_n h_{t-1} + b_hn))     reset_after=True  (torch / cuDNN)
    n_t = tanh(U_n x_t + b_in + W_n (r_t ⊙ h_{t-1}) + b_hn)     reset_after=False (Cho et al. 2014)
    h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

The last line is why gradients survive: ``∂h_t/∂h_{t-1}`` contains ``diag(z_t)`` — an identity path when
the update gate is near 1 — on top of the squashed matrix paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnkit.numpy_bptt.common import Array, Params, State, accumulate, linear, sigmoid


@dataclass
class GRU:
    """GRU cell; ``reset_after=True`` is ``torch.nn.GRU``, ``False`` is the paper's candidate."""

    hidden_size: int
    reset_after: bool = True
    bias: bool = True
    name: str = field(default="GRU", init=False)

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size,)

    def parameter_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        H = self.hidden_size
        shapes = {"weight_ih": (3 * H, input_size), "weight_hh": (3 * H, H)}
        if self.bias:
            shapes.update(bias_ih=(3 * H,), bias_hh=(3 * H,))
        return shapes

    def step(self, p: Params, x: Array, state: State) -> tuple[State, Any]:
        (h_prev,) = state  # (B, H)
        H = self.hidden_size
        xr, xz, xn = np.split(linear(x, p["weight_ih"], p.get("bias_ih")), 3, axis=1)  # U_* x_t + b_i*
        W = p["weight_hh"]
        b = p.get("bias_hh")
        b_r, b_z, b_n = (None, None, None) if b is None else np.split(b, 3)
        r = sigmoid(xr + linear(h_prev, W[:H], b_r))  # reset gate
        z = sigmoid(xz + linear(h_prev, W[H : 2 * H], b_z))  # update gate
        if self.reset_after:
            hn = linear(h_prev, W[2 * H :], b_n)  # W_n h_{t-1} + b_hn
            n = np.tanh(xn + r * hn)  # candidate, reset after the product
        else:
            hn = r * h_prev  # r_t ⊙ h_{t-1}
            n = np.tanh(xn + linear(hn, W[2 * H :], b_n))  # candidate, reset before the product
        h = (1.0 - z) * n + z * h_prev  # h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}
        return (h,), (x, h_prev, r, z, n, hn)

    def step_backward(self, p: Params, cache: Any, dstate: State, grads: Params) -> tuple[State, Array]:
        x, h_prev, r, z, n, hn = cache
        (dh,) = dstate  # ∂L/∂h_t (B, H)
        H = self.hidden_size
        W = p["weight_hh"]
        dn = dh * (1.0 - z)  # ∂h_t/∂n_t = 1 - z_t
        dz = dh * (h_prev - n)  # ∂h_t/∂z_t = h_{t-1} - n_t
        dh_prev = dh * z  # the direct path ∂h_t/∂h_{t-1} ∋ diag(z_t)
        da_n = dn * (1.0 - n * n)  # through tanh
        if self.reset_after:
            dr = da_n * hn  # n's pre-activation has r_t ⊙ (W_n h + b_hn)
            da_hn = da_n * r  # ∂L/∂(W_n h_{t-1} + b_hn)
            grads["weight_hh"][2 * H :] += da_hn.T @ h_prev
            dh_prev = dh_prev + da_hn @ W[2 * H :]
        else:
            d_rh = da_n @ W[2 * H :]  # ∂L/∂(r_t ⊙ h_{t-1})
            grads["weight_hh"][2 * H :] += da_n.T @ hn
            da_hn = da_n  # b_hn sits outside the product
            dr = d_rh * h_prev
            dh_prev = dh_prev + d_rh * r
        da_r = dr * r * (1.0 - r)  # through σ: σ' = σ(1 - σ)
        da_z = dz * z * (1.0 - z)
        grads["weight_hh"][: 2 * H] += np.concatenate([da_r, da_z], axis=1).T @ h_prev
        dh_prev = dh_prev + da_r @ W[:H] + da_z @ W[H : 2 * H]
        da_x = np.concatenate([da_r, da_z, da_n], axis=1)  # ∂L/∂(U x_t + b_ih), all gates (B, 3H)
        grads["weight_ih"] += da_x.T @ x  # ∂E/∂U = Σ_t δ_t x_tᵀ
        accumulate(grads, "bias_ih", da_x.sum(0))
        accumulate(grads, "bias_hh", np.concatenate([da_r, da_z, da_hn], axis=1).sum(0))
        return (dh_prev,), da_x @ p["weight_ih"]
