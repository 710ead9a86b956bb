"""minGRU and minLSTM (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We Needed?").

The GRU and the LSTM stripped until their gates read the input only: no gate looks at ``h_{t-1}``, and ``h_t``
is a *linear* function of ``h_{t-1}``,

    h_t = a_t ⊙ h_{t-1} + b_t        (a_t, b_t computed from x_t alone).

That is what lets training run all T steps at once as a scan (:func:`rnnkit.scan.linear_scan`, which the
``"fused"`` engine uses) while generation still takes one step at a time (:meth:`RecurrentCell.step`, the
reference engine and ``layer.stepper()``). Each cell writes its gates once, in :meth:`transition`, which returns
``a_t`` and ``b_t``; the step and the scan both use it.

Which form is the definition. The paper gives each model twice: the plain form (its Section 3, the equations
below) and a log-space form (its appendix) meant for a scan built on ``logcumsumexp``, which needs a positive
candidate and therefore passes it (and ``h_0``) through ``g(x) = x + 0.5`` for ``x ≥ 0``, ``σ(x)`` otherwise.
The two compute different functions. rnnkit's cells are the plain form: its scan multiplies and adds, takes no
logarithm, and so needs no positive candidate (and is safe in float32 without one).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.base import Gates, RecurrentCell, State


class _MinCell(RecurrentCell):
    """What minGRU and minLSTM share: gates from ``W_ih x_t + b_ih`` only, a linear update of ``h``."""

    recurrent_weights = ()  # no recurrent matrix at all
    _blocks = 0  # gate blocks stacked in weight_ih
    #: the gates' σ (fixed: the paper's); an attribute so that reports know the gates lie in (0, 1)
    recurrent_activation = staticmethod(torch.sigmoid)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)
        self.reset_parameters()

    def parameter_shapes(self) -> dict[str, tuple[int, ...] | None]:
        G, H, F_ = self._blocks, self.hidden_size, self.input_size
        return {"weight_ih": (G * H, F_), "bias_ih": (G * H,) if self.bias else None}

    def transition(self, xw: Tensor) -> tuple[Tensor, Tensor, Gates]:
        """``a_t``, ``b_t`` of ``h_t = a_t ⊙ h_{t-1} + b_t`` and the gates, from ``xw`` (..., G*H): any leading
        shape, one step (B, ·) or all steps at once (T, B, ·)."""
        raise NotImplementedError

    def recurrence(self, xw: Tensor, state: State, w: Any) -> tuple[State, Gates]:
        (h,) = state  # (B, H)
        a, b, gates = self.transition(xw)  # each (B, H)
        return (a * h + b,), gates  # h_t = a_t ⊙ h_{t-1} + b_t


class MinGRUCell(_MinCell):
    r"""minGRU (Feng et al. 2024): a GRU whose update gate and candidate read only the input.

    .. math::
        z_t = \sigma(W_{iz} x_t + b_{iz}) \\
        \tilde h_t = W_{in} x_t + b_{in} \\
        h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t

    The paper's ``Linear_z``, ``Linear_h`` are the blocks z, n of ``weight_ih`` (2H, F) and ``bias_ih`` (2H,);
    there is no ``weight_hh``. Init ``U(-1/sqrt(H), 1/sqrt(H))``. Gates reported: ``z``, ``n`` (= ``h̃``).
    The plain form, not the paper's log-space one (module docstring).
    """

    gate_names = ("z", "n")
    _blocks = 2

    def transition(self, xw: Tensor) -> tuple[Tensor, Tensor, Gates]:
        kz, n = xw.chunk(2, dim=-1)  # W_iz x_t + b_iz, and the candidate h̃_t = W_in x_t + b_in
        z = self.recurrent_activation(kz)  # update gate: how much of the candidate to write
        return 1 - z, z * n, {"z": z, "n": n}  # h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t


class MinLSTMCell(_MinCell):
    r"""minLSTM (Feng et al. 2024): forget and input gates that read only the input, normalised to sum to one.

    .. math::
        f_t = \sigma(W_{if} x_t + b_{if}) \qquad i_t = \sigma(W_{ii} x_t + b_{ii}) \\
        f'_t = f_t / (f_t + i_t) \qquad i'_t = i_t / (f_t + i_t) \\
        \tilde h_t = W_{in} x_t + b_{in} \\
        h_t = f'_t \odot h_{t-1} + i'_t \odot \tilde h_t

    The normalisation is the paper's length-independent scaling: with ``f' + i' = 1`` the state stays a convex
    combination of candidates, whatever the sequence length. Blocks f, i, n of ``weight_ih`` (3H, F) and
    ``bias_ih`` (3H,); no ``weight_hh``. Init ``U(-1/sqrt(H), 1/sqrt(H))``. Gates reported: the normalised
    ``f`` (= ``f'``) and ``i`` (= ``i'``), and ``n`` (= ``h̃``). The plain form, not the paper's log-space one.
    """

    gate_names = ("f", "i", "n")
    _blocks = 3

    def transition(self, xw: Tensor) -> tuple[Tensor, Tensor, Gates]:
        kf, ki, n = xw.chunk(3, dim=-1)  # W_if x_t + b_if, W_ii x_t + b_ii, and h̃_t = W_in x_t + b_in
        # f / (f + i) = 1 / (1 + i / f) = σ(log f - log i): the same number, and no 0 / 0 where both gates
        # underflow (σ of a pre-activation below about -100 is 0 in float32)
        d = F.logsigmoid(kf) - F.logsigmoid(ki)  # log f_t - log i_t
        f = self.recurrent_activation(d)  # f'_t = f_t / (f_t + i_t)
        i = self.recurrent_activation(-d)  # i'_t = i_t / (f_t + i_t)
        return f, i * n, {"f": f, "i": i, "n": n}  # h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t
