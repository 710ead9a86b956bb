"""Gated recurrent unit (Cho et al. 2014), in torch/cuDNN's form and in the paper's form."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.activations import Activation
from rnnkit.cells.base import GatedCell, Gates, State


class GRUCell(GatedCell):
    r"""GRU cell; with the defaults it is exactly ``torch.nn.GRUCell`` (gate order r, z, n).

    .. math::
        r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn}))
              \quad\text{(reset\_after=True, torch/cuDNN)} \\
        n_t = \tanh(W_{in} x_t + b_{in} + W_{hn} (r_t \odot h_{t-1}) + b_{hn})
              \quad\text{(reset\_after=False, Cho et al. 2014)} \\
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}

    ``σ`` is ``recurrent_activation`` and ``tanh`` is ``activation``. Gates reported: ``r``, ``z``, ``n``.
    """

    gate_names = ("r", "z", "n")
    supports_recurrent_dropout = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        reset_after: bool = True,
        activation: str | Activation = "tanh",
        recurrent_activation: str | Activation = "sigmoid",
        recurrent_init: str = "uniform",
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.reset_after = reset_after
        super().__init__(
            input_size,
            hidden_size,
            bias,
            activation=activation,
            recurrent_activation=recurrent_activation,
            recurrent_init=recurrent_init,
            device=device,
            dtype=dtype,
        )

    def parameter_shapes(self) -> dict[str, tuple[int, ...] | None]:
        H, F_ = self.hidden_size, self.input_size
        return {
            "weight_ih": (3 * H, F_),
            "weight_hh": (3 * H, H),
            "bias_ih": (3 * H,) if self.bias else None,
            "bias_hh": (3 * H,) if self.bias else None,
        }

    def recurrence(self, xw: Tensor, state: State, w: Any) -> tuple[State, Gates]:
        σ, act = self.recurrent_activation, self.activation
        (h,) = state  # (B, H)
        xr, xz, xn = xw.chunk(3, dim=-1)  # each (B, H): W_i* x + b_i*
        hd = self.recurrent_input(h, w)  # h where it meets W_h* (recurrent dropout); z ⊙ h below keeps h itself
        if self.reset_after:
            hr, hz, hn = F.linear(hd, w.weight_hh, w.bias_hh).chunk(3, dim=-1)  # W_h* h + b_h*
            r = σ(xr + hr)  # reset gate
            z = σ(xz + hz)  # update gate
            n = act(xn + r * hn)  # candidate: reset applied after the matrix product
        else:
            W_hr, W_hz, W_hn = w.weight_hh.chunk(3, dim=0)
            b_hr, b_hz, b_hn = (None,) * 3 if w.bias_hh is None else w.bias_hh.chunk(3)
            r = σ(xr + F.linear(hd, W_hr, b_hr))  # reset gate
            z = σ(xz + F.linear(hd, W_hz, b_hz))  # update gate
            n = act(xn + F.linear(r * hd, W_hn, b_hn))  # candidate: reset applied to h before the product
        h = (1 - z) * n + z * h  # interpolate old state and candidate
        return (h,), {"r": r, "z": z, "n": n}

    def torch_mode(self) -> str | None:
        return "GRU" if self.reset_after and self.has_default_activations() else None

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.reset_after else ", reset_after=False")
