"""Simple recurrent networks: the Elman cell (hidden state fed back) and the Jordan cell (output fed back)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.activations import Activation, get_activation
from rnnkit.cells.base import Gates, RecurrentCell, State, check_size


class RNNCell(RecurrentCell):
    r"""Elman cell (``s_t = f(U x_t + W s_{t-1})``), exactly ``torch.nn.RNNCell``.

    .. math::  h_t = \mathrm{act}(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    ``nonlinearity`` is torch's name (``"tanh"`` | ``"relu"``); ``activation`` (Keras' name) accepts any
    named activation or a callable and overrides it. Gates reported: ``h``.
    """

    gate_names = ("h",)
    supports_recurrent_dropout = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        *,
        activation: str | Activation | None = None,
        recurrent_init: str = "uniform",
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(  # torch.nn's wording, then rnnkit's way to any other function
                f"Unknown nonlinearity {nonlinearity!r}. Select from 'tanh' or 'relu'. Any other function goes in "
                "activation="
            )
        super().__init__(input_size, hidden_size, bias, recurrent_init=recurrent_init, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity
        self.activation = get_activation(nonlinearity if activation is None else activation)
        self.reset_parameters()

    def parameter_shapes(self) -> dict[str, tuple[int, ...] | None]:
        H, F_ = self.hidden_size, self.input_size
        return {
            "weight_ih": (H, F_),
            "weight_hh": (H, H),
            "bias_ih": (H,) if self.bias else None,
            "bias_hh": (H,) if self.bias else None,
        }

    def recurrence(self, xw: Tensor, state: State, w: Any) -> tuple[State, Gates]:
        (h,) = state  # (B, H)
        hh = F.linear(self.recurrent_input(h, w), w.weight_hh, w.bias_hh)  # W_hh h + b_hh (h: see recurrent_input)
        h = self.activation(xw + hh)  # h_t = act(W_ih x + b_ih + W_hh h + b_hh)
        return (h,), {"h": h}

    def torch_mode(self) -> str | None:
        if self.activation is torch.tanh:
            return "RNN_TANH"
        if self.activation is torch.relu:
            return "RNN_RELU"
        return None


class JordanCell(RecurrentCell):
    r"""Jordan cell (Jordan 1986): the recurrent state is the previous *output* ``y``, not the hidden layer.

    .. math::
        h_t = \mathrm{act}(W_{ih} x_t + b_{ih} + W_{yh} y_{t-1} + b_{yh}) \\
        y_t = \mathrm{out\_act}(W_{hy} h_t + b_{hy})

    The state (and the output) has ``output_size`` features. Gates reported: ``h`` (the hidden layer,
    otherwise invisible) and ``y``. torch has no Jordan network.
    """

    gate_names = ("h", "y")
    supports_recurrent_dropout = True
    recurrent_weights = ("weight_yh",)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        bias: bool = True,
        *,
        activation: str | Activation = "tanh",
        output_activation: str | Activation = "identity",
        recurrent_init: str = "uniform",
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        check_size("output_size", output_size, minimum=0)
        self.jordan_output_size = output_size
        super().__init__(input_size, hidden_size, bias, recurrent_init=recurrent_init, device=device, dtype=dtype)
        self.activation = get_activation(activation)
        self.output_activation = get_activation(output_activation, what="output_activation")
        self.reset_parameters()

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.jordan_output_size,)

    def parameter_shapes(self) -> dict[str, tuple[int, ...] | None]:
        H, F_, O = self.hidden_size, self.input_size, self.jordan_output_size
        return {
            "weight_ih": (H, F_),
            "weight_yh": (H, O),
            "weight_hy": (O, H),
            "bias_ih": (H,) if self.bias else None,
            "bias_yh": (H,) if self.bias else None,
            "bias_hy": (O,) if self.bias else None,
        }

    def recurrence(self, xw: Tensor, state: State, w: Any) -> tuple[State, Gates]:
        (y,) = state  # (B, O)
        yh = F.linear(self.recurrent_input(y, w), w.weight_yh, w.bias_yh)  # W_yh y + b_yh (y: see recurrent_input)
        h = self.activation(xw + yh)  # h_t = act(W_ih x + b_ih + W_yh y + b_yh)
        y = self.output_activation(F.linear(h, w.weight_hy, w.bias_hy))  # y_t = out_act(W_hy h_t + b_hy)
        return (y,), {"h": h, "y": y}

    def extra_repr(self) -> str:
        return (
            super()
            .extra_repr()
            .replace(
                f"{self.input_size}, {self.hidden_size}",
                f"{self.input_size}, {self.hidden_size}, output_size={self.jordan_output_size}",
                1,
            )
        )
