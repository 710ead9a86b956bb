"""Long short-term memory (Hochreiter & Schmidhuber 1997), with optional projection and peepholes."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.activations import Activation
from rnnkit.cells.base import GatedCell, Gates, State, check_size
from rnnkit.errors import ShapeError


class LSTMCell(GatedCell):
    r"""LSTM cell; with the defaults it is exactly ``torch.nn.LSTMCell`` (gate order i, f, g, o).

    .. math::
        i_t = \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t = \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
        g_t = \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t = \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
        c_t = f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t = o_t \odot \tanh(c_t) \qquad (h_t = W_{hr}(o_t \odot \tanh(c_t)) \text{ when proj\_size} > 0)

    ``σ`` is ``recurrent_activation``, ``tanh`` is ``activation`` (both uses, as in Keras).
    ``proj_size > 0`` gives torch's LSTMP: ``h`` has ``proj_size`` features, ``c`` keeps ``hidden_size``.
    ``forget_bias`` is added to the f-gate part of ``bias_ih`` at init (Jozefowicz et al. 2015 use 1).
    State: ``(h, c)``. Gates reported: ``i``, ``f``, ``g``, ``o``, ``c``.
    """

    gate_names = ("i", "f", "g", "o", "c")
    supports_recurrent_dropout = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        proj_size: int = 0,
        forget_bias: float = 0.0,
        activation: str | Activation = "tanh",
        recurrent_activation: str | Activation = "sigmoid",
        recurrent_init: str = "uniform",
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if isinstance(proj_size, int) and not isinstance(proj_size, bool) and proj_size < 0:
            raise ShapeError(f"proj_size should be a positive integer or zero to disable projections, got {proj_size}")
        check_size("proj_size", proj_size, minimum=0)
        if proj_size and isinstance(hidden_size, int) and proj_size >= hidden_size:
            raise ValueError(
                f"proj_size has to be smaller than hidden_size, got proj_size={proj_size} and hidden_size={hidden_size}"
            )
        if forget_bias and not bias:
            raise ValueError("forget_bias needs bias=True: there is no bias to add it to")
        self.proj_size = proj_size
        self.forget_bias = float(forget_bias)
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

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.proj_size or self.hidden_size, self.hidden_size)

    def parameter_shapes(self) -> dict[str, tuple[int, ...] | None]:
        H, F_, P = self.hidden_size, self.input_size, self.proj_size
        shapes: dict[str, tuple[int, ...] | None] = {
            "weight_ih": (4 * H, F_),
            "weight_hh": (4 * H, P or H),
            "bias_ih": (4 * H,) if self.bias else None,
            "bias_hh": (4 * H,) if self.bias else None,
        }
        if P:
            shapes["weight_hr"] = (P, H)
        return shapes

    def init_parameters(self, params: dict[str, Tensor]) -> None:
        super().init_parameters(params)
        if self.forget_bias:
            H = self.hidden_size
            with torch.no_grad():
                params["bias_ih"][H : 2 * H] += self.forget_bias

    def recurrence(self, xw: Tensor, state: State, w: Any) -> tuple[State, Gates]:
        σ, act = self.recurrent_activation, self.activation
        h, c = state  # (B, P or H), (B, H)
        xi, xf, xg, xo = xw.chunk(4, dim=-1)  # each (B, H): W_i* x + b_i*
        hd = self.recurrent_input(h, w)  # h where it meets W_h* (recurrent dropout masks only this operand)
        hi, hf, hg, ho = F.linear(hd, w.weight_hh, w.bias_hh).chunk(4, dim=-1)  # W_h* h + b_h*
        i = σ(xi + hi)  # input gate: how much of the candidate to write
        f = σ(xf + hf)  # forget gate: how much of the old memory to keep
        g = act(xg + hg)  # candidate memory
        o = σ(xo + ho)  # output gate: how much of the memory to show
        c = f * c + i * g  # memory is added to, not overwritten (Hung-yi Lee's LSTM lecture)
        h = o * act(c)  # hidden state
        if self.proj_size:
            h = F.linear(h, w.weight_hr)  # LSTMP projection (B, P)
        return (h, c), {"i": i, "f": f, "g": g, "o": o, "c": c}

    def torch_mode(self) -> str | None:
        return "LSTM" if self.has_default_activations() else None

    def extra_repr(self) -> str:
        extra = f", proj_size={self.proj_size}" if self.proj_size else ""
        extra += f", forget_bias={self.forget_bias}" if self.forget_bias else ""
        return super().extra_repr() + extra


class PeepholeLSTMCell(LSTMCell):
    r"""LSTM with peephole connections (Gers & Schmidhuber 2000): the gates also look at the memory cell.

    .. math::
        i_t = \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi} + w_{ci} \odot c_{t-1}) \\
        f_t = \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf} + w_{cf} \odot c_{t-1}) \\
        g_t = \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        c_t = f_t \odot c_{t-1} + i_t \odot g_t \\
        o_t = \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho} + w_{co} \odot c_t) \\
        h_t = o_t \odot \tanh(c_t)

    The peephole weights ``weight_ci``, ``weight_cf``, ``weight_co`` are diagonal, stored as vectors (H,).
    Everything else (names, init, ``proj_size``, ``forget_bias``) is as in :class:`LSTMCell`.
    """

    def parameter_shapes(self) -> dict[str, tuple[int, ...] | None]:
        H = self.hidden_size
        return {**super().parameter_shapes(), "weight_ci": (H,), "weight_cf": (H,), "weight_co": (H,)}

    def recurrence(self, xw: Tensor, state: State, w: Any) -> tuple[State, Gates]:
        σ, act = self.recurrent_activation, self.activation
        h, c_prev = state  # (B, P or H), (B, H)
        xi, xf, xg, xo = xw.chunk(4, dim=-1)  # each (B, H)
        hi, hf, hg, ho = F.linear(self.recurrent_input(h, w), w.weight_hh, w.bias_hh).chunk(4, dim=-1)  # W_h* h
        i = σ(xi + hi + w.weight_ci * c_prev)  # input gate peeks at c_{t-1}
        f = σ(xf + hf + w.weight_cf * c_prev)  # forget gate peeks at c_{t-1}
        g = act(xg + hg)  # candidate memory
        c = f * c_prev + i * g  # memory update
        o = σ(xo + ho + w.weight_co * c)  # output gate peeks at the new c_t
        h = o * act(c)  # hidden state
        if self.proj_size:
            h = F.linear(h, w.weight_hr)
        return (h, c), {"i": i, "f": f, "g": g, "o": o, "c": c}

    def torch_mode(self) -> str | None:
        return None
