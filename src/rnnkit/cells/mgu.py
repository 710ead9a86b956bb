"""Minimal gated unit (Zhou, Wu, Zhang & Zhou 2016, "Minimal Gated Unit for Recurrent Neural Networks").

The GRU with its two gates merged into one: the forget gate ``f`` both resets the state that the candidate
reads (the GRU's ``r``) and interpolates between the old state and the candidate (the GRU's ``z``, with the
sides swapped: ``f`` weighs the *new* candidate).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.activations import Activation
from rnnkit.cells.base import GatedCell, Gates, State


class MGUCell(GatedCell):
    r"""Minimal gated unit (Zhou et al. 2016): one gate, gate order f, n (``n`` is the paper's :math:`\tilde h`).

    .. math::
        f_t = \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
        \tilde h_t = \tanh(W_{in} x_t + b_{in} + W_{hn} (f_t \odot h_{t-1}) + b_{hn}) \\
        h_t = (1 - f_t) \odot h_{t-1} + f_t \odot \tilde h_t

    The paper writes one bias per gate (``b_f``, ``b_h``); like torch's cells this one has ``bias_ih`` and
    ``bias_hh``, whose sum is the paper's bias. Parameters: ``weight_ih`` (2H, F), ``weight_hh`` (2H, H) and
    the biases (2H,), blocks in the order f, n; init ``U(-1/sqrt(H), 1/sqrt(H))`` as torch's GRU (the paper
    names none). ``σ`` is ``recurrent_activation``, ``tanh`` is ``activation``. Gates reported: ``f``, ``n``.
    """

    gate_names = ("f", "n")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        activation: str | Activation = "tanh",
        recurrent_activation: str | Activation = "sigmoid",
        recurrent_init: str = "uniform",
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
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
            "weight_ih": (2 * H, F_),
            "weight_hh": (2 * H, H),
            "bias_ih": (2 * H,) if self.bias else None,
            "bias_hh": (2 * H,) if self.bias else None,
        }

    def recurrence(self, xw: Tensor, state: State, w: Any) -> tuple[State, Gates]:
        σ, act = self.recurrent_activation, self.activation
        (h,) = state  # (B, H)
        xf, xn = xw.chunk(2, dim=-1)  # each (B, H): W_i* x_t + b_i*
        W_hf, W_hn = w.weight_hh.chunk(2, dim=0)  # each (H, H)
        b_hf, b_hn = (None, None) if w.bias_hh is None else w.bias_hh.chunk(2)
        f = σ(xf + F.linear(h, W_hf, b_hf))  # the one gate
        n = act(xn + F.linear(f * h, W_hn, b_hn))  # candidate h̃_t: reads the gated state f_t ⊙ h_{t-1}
        h = (1 - f) * h + f * n  # keep 1 - f of the old state, write f of the candidate
        return (h,), {"f": f, "n": n}
