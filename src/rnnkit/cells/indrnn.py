"""Independently recurrent network (Li, Li, Cook, Zhu & Gao 2018, "Independently Recurrent Neural Network
(IndRNN): Building A Longer and Deeper RNN").

Each unit sees only its own previous value: the recurrent weight is a vector ``u`` (H,) and the recurrence an
elementwise product, so ``∂h_t/∂h_{t-1}`` is diagonal, ``diag(u ⊙ act'(·))``, and the gradient over T steps is
regulated per unit by ``u^T``. With ReLU (the paper's default) a unit with ``0 ≤ u ≤ 2^{1/T}`` can neither vanish
faster than its inputs nor grow more than twofold over T steps.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.activations import Activation, get_activation
from rnnkit.cells.base import Gates, RecurrentCell, State


class IndRNNCell(RecurrentCell):
    r"""IndRNN cell (Li et al. 2018): an Elman cell whose recurrent matrix is diagonal.

    .. math::  h_t = \mathrm{act}(W_{ih} x_t + b_{ih} + u \odot h_{t-1} + b_{hh})

    ``u`` is ``weight_hh``, a vector (H,). ``act`` is ReLU by default, as in the paper (``activation=`` takes any
    named activation or a callable). Gates reported: ``h``.

    Init: ``weight_ih`` and the biases ``U(-1/sqrt(H), 1/sqrt(H))`` as torch's RNN; ``u`` as the paper
    recommends for ReLU, ``U(0, 2^{1/T})`` with ``T = max_steps`` — the bound under which no unit grows more
    than twofold over T steps — and ``U(0, 1)`` when ``max_steps`` is not given (inside that bound for any T).
    The paper also keeps ``|u|`` within a bound during training, clipping it after each optimiser step:
    ``recurrent_max=m`` does the same (``|u| ≤ m``; the layer's ``constrain_()``, which rnnkit's trainer calls
    after every step — call it after ``optimizer.step()`` in a loop of your own). Without it ``u`` is left to the
    optimiser, and a unit whose ``|u|`` passes 1 can grow without bound over a long carried stream.
    """

    gate_names = ("h",)
    supports_recurrent_dropout = True  # u ⊙ (h ⊙ m): the mask acts on the elementwise recurrence
    recurrent_weights = ()  # a vector: nothing for orthogonal init to act on

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        activation: str | Activation = "relu",
        max_steps: int | None = None,
        recurrent_max: float | None = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if max_steps is not None and (not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1):
            raise ValueError(f"max_steps must be a positive number of time steps or None, got {max_steps!r}")
        number = isinstance(recurrent_max, (int, float)) and not isinstance(recurrent_max, bool)
        if recurrent_max is not None and not (number and 0 < recurrent_max < math.inf):
            raise ValueError(f"recurrent_max must be a positive bound on |u| or None, got {recurrent_max!r}")
        self.max_steps = max_steps
        self.recurrent_max = recurrent_max
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)
        self.activation = get_activation(activation)
        self.reset_parameters()

    def parameter_shapes(self) -> dict[str, tuple[int, ...] | None]:
        H, F_ = self.hidden_size, self.input_size
        return {
            "weight_ih": (H, F_),
            "weight_hh": (H,),  # u: one recurrent weight per unit
            "bias_ih": (H,) if self.bias else None,
            "bias_hh": (H,) if self.bias else None,
        }

    def init_parameters(self, params: dict[str, Tensor]) -> None:
        super().init_parameters(params)  # torch's uniform for W_ih and the biases
        u_max = 1.0 if self.max_steps is None else 2.0 ** (1.0 / self.max_steps)  # the paper's bound for ReLU
        with torch.no_grad():
            nn.init.uniform_(params["weight_hh"], 0.0, u_max)

    def constraints(self) -> dict[str, float]:
        return {} if self.recurrent_max is None else {"weight_hh": float(self.recurrent_max)}  # |u| ≤ recurrent_max

    def recurrence(self, xw: Tensor, state: State, w: Any) -> tuple[State, Gates]:
        (h,) = state  # (B, H)
        pre = xw + w.weight_hh * self.recurrent_input(h, w)  # W_ih x_t + b_ih + u ⊙ h_{t-1}: each unit sees itself
        if w.bias_hh is not None:
            pre = pre + w.bias_hh
        h = self.activation(pre)  # h_t = act(W x_t + u ⊙ h_{t-1} + b)
        return (h,), {"h": h}

    def extra_repr(self) -> str:
        s = super().extra_repr() + (f", max_steps={self.max_steps}" if self.max_steps is not None else "")
        return s + (f", recurrent_max={self.recurrent_max}" if self.recurrent_max is not None else "")
