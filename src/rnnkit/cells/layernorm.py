"""Layer-normalised LSTM and GRU (Ba, Kiros & Hinton 2016, "Layer Normalization", section 3.1 and its LSTM).

Layer normalisation rescales one vector of summed inputs by its own mean and spread, per example and per
time step — no batch statistics, so it works the same at batch 1, at every step and at evaluation::

    LN(z; α, β) = α ⊙ (z − μ) / sqrt(σ² + ε) + β,   μ = mean(z),   σ² = mean((z − μ)²)

over the features of ``z`` (ε = 1e-5, torch's ``layer_norm`` default; the paper writes no ε). In a recurrent
net it keeps the gates' pre-activations at the same scale at every step, however large ``h`` and ``c`` grow.

Parameter names follow torch: ``weight_ih``, ``weight_hh`` are the matrices; the LN *gains* are
``ln_ih_weight`` (α_x), ``ln_hh_weight`` (α_h) and ``ln_c_weight`` (α_c); the LN *shifts* are ``bias_ih``
(β_x), ``bias_hh`` (β_h) and ``ln_c_bias`` (β_c). The paper's extra gate bias ``b`` is a third shift added to
the same sum as β_x and β_h, so it is left out: the cell computes the same family of functions. The matrices
are initialised as torch's (``U(−1/√H, 1/√H)``), gains to 1 and shifts to 0 (``forget_bias`` is then added
to the forget gate's β_x).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.activations import Activation
from rnnkit.cells.base import GatedCell, Gates, State

#: ε inside the square root of every layer norm: torch.nn.functional.layer_norm's default
LN_EPS = 1e-5


def layer_norm(z: Tensor, gain: Tensor, shift: Tensor | None) -> Tensor:
    """``LN(z; α, β) = α ⊙ (z − mean(z)) / sqrt(var(z) + ε) + β`` over the last dimension of ``z``."""
    return F.layer_norm(z, z.shape[-1:], gain, shift, LN_EPS)


class _LayerNormGated(GatedCell):
    """What both layer-normalised cells share: gains 1, shifts 0, and a layer-normalised input projection."""

    n_gates = 1

    def init_parameters(self, params: dict[str, Tensor]) -> None:
        super().init_parameters(params)  # the matrices: torch's uniform init (or orthogonal blocks of W_hh)
        with torch.no_grad():
            for name, p in params.items():
                if name.startswith("ln_") and name.endswith("_weight"):
                    p.fill_(1.0)  # gains α
                elif "bias" in name:
                    p.zero_()  # shifts β

    def input_projection(self, x: Tensor, w: Any) -> Tensor:
        """``LN(W_ih x; α_x, β_x)``: no recurrence, so an engine may compute it for all steps at once."""
        return layer_norm(F.linear(x, w.weight_ih), w.ln_ih_weight, w.bias_ih)  # (…, G·H)

    def _shapes(self) -> dict[str, tuple[int, ...] | None]:
        G, H, F_ = self.n_gates, self.hidden_size, self.input_size
        return {
            "weight_ih": (G * H, F_),
            "weight_hh": (G * H, H),
            "bias_ih": (G * H,) if self.bias else None,
            "bias_hh": (G * H,) if self.bias else None,
            "ln_ih_weight": (G * H,),
            "ln_hh_weight": (G * H,),
        }


class LayerNormLSTMCell(_LayerNormGated):
    r"""LSTM with layer normalisation (Ba, Kiros & Hinton 2016), gate order i, f, g, o as torch's LSTM.

    .. math::
        (a_i, a_f, a_g, a_o) = \mathrm{LN}(W_{hh} h_{t-1}; \alpha_h, \beta_h)
                             + \mathrm{LN}(W_{ih} x_t; \alpha_x, \beta_x) \\
        i_t = \sigma(a_i) \quad f_t = \sigma(a_f) \quad g_t = \tanh(a_g) \quad o_t = \sigma(a_o) \\
        c_t = f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t = o_t \odot \tanh(\mathrm{LN}(c_t; \alpha_c, \beta_c))

    These are the paper's layer-normalised LSTM equations: the input and the recurrent pre-activations are
    normalised separately, each over all four gates (4H features), so that the input cannot drown out the
    recurrence or the other way round; the memory ``c_t`` itself is not normalised (it carries the
    state), only what the cell shows of it. ``σ`` is ``recurrent_activation``, ``tanh`` is ``activation``.
    Parameters: ``weight_ih`` (4H, F), ``weight_hh`` (4H, H), ``bias_ih`` = β_x and ``bias_hh`` = β_h (4H),
    ``ln_ih_weight`` = α_x and ``ln_hh_weight`` = α_h (4H), ``ln_c_weight`` = α_c and ``ln_c_bias`` = β_c (H);
    ``bias=False`` drops every shift. State: ``(h, c)``. Gates reported: ``i``, ``f``, ``g``, ``o``, ``c``.
    """

    gate_names = ("i", "f", "g", "o", "c")
    supports_recurrent_dropout = True
    n_gates = 4

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        forget_bias: float = 0.0,
        activation: str | Activation = "tanh",
        recurrent_activation: str | Activation = "sigmoid",
        recurrent_init: str = "uniform",
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if forget_bias and not bias:
            raise ValueError("forget_bias needs bias=True: there is no bias to add it to")
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
        return (self.hidden_size, self.hidden_size)

    def parameter_shapes(self) -> dict[str, tuple[int, ...] | None]:
        H = self.hidden_size
        return {**self._shapes(), "ln_c_weight": (H,), "ln_c_bias": (H,) if self.bias else None}

    def init_parameters(self, params: dict[str, Tensor]) -> None:
        super().init_parameters(params)
        if self.forget_bias:
            H = self.hidden_size
            with torch.no_grad():
                params["bias_ih"][H : 2 * H] += self.forget_bias

    def recurrence(self, xw: Tensor, state: State, w: Any) -> tuple[State, Gates]:
        σ, act = self.recurrent_activation, self.activation
        h, c = state  # (B, H), (B, H)
        hd = self.recurrent_input(h, w)  # h where it meets W_hh (recurrent dropout); c and h carry on unmasked
        hw = layer_norm(F.linear(hd, w.weight_hh), w.ln_hh_weight, w.bias_hh)  # LN(W_hh h; α_h, β_h): (B, 4H)
        a_i, a_f, a_g, a_o = (xw + hw).chunk(4, dim=-1)  # each (B, H): the two normalised halves added
        i = σ(a_i)  # input gate
        f = σ(a_f)  # forget gate
        g = act(a_g)  # candidate memory
        o = σ(a_o)  # output gate
        c = f * c + i * g  # memory: not normalised, it carries the state
        h = o * act(layer_norm(c, w.ln_c_weight, w.ln_c_bias))  # h_t = o ⊙ tanh(LN(c_t; α_c, β_c))
        return (h, c), {"i": i, "f": f, "g": g, "o": o, "c": c}

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", forget_bias={self.forget_bias}" if self.forget_bias else "")


class LayerNormGRUCell(_LayerNormGated):
    r"""GRU with layer normalisation, gate order r, z, n and the reset gate applied after the product (torch's).

    .. math::
        (x_r, x_z, x_n) = \mathrm{LN}(W_{ih} x_t; \alpha_x, \beta_x) \qquad
        (h_r, h_z, h_n) = \mathrm{LN}(W_{hh} h_{t-1}; \alpha_h, \beta_h) \\
        r_t = \sigma(x_r + h_r) \quad z_t = \sigma(x_z + h_z) \\
        n_t = \tanh(x_n + r_t \odot h_n) \\
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}

    The paper writes out the layer-normalised LSTM; this applies the same recipe to the GRU: the input and
    the recurrent pre-activations are normalised separately, each over all three gates (3H features). With
    every gain 1 and shift 0 replaced by torch's ``W x + b`` this is exactly ``torch.nn.GRU`` (reset after the
    product: the reset gate scales the recurrent candidate ``h_n`` including its shift, as torch's ``r ⊙
    (W_hn h + b_hn)``, which is also what makes the recurrent product one matrix for all three gates). The
    state ``h_t`` is not normalised: it is the interpolation the GRU's gradient path relies on.
    Parameters: ``weight_ih`` (3H, F), ``weight_hh`` (3H, H), ``bias_ih`` = β_x, ``bias_hh`` = β_h,
    ``ln_ih_weight`` = α_x, ``ln_hh_weight`` = α_h (3H each). Gates reported: ``r``, ``z``, ``n``.
    """

    gate_names = ("r", "z", "n")
    supports_recurrent_dropout = True
    n_gates = 3

    def parameter_shapes(self) -> dict[str, tuple[int, ...] | None]:
        return self._shapes()

    def recurrence(self, xw: Tensor, state: State, w: Any) -> tuple[State, Gates]:
        σ, act = self.recurrent_activation, self.activation
        (h,) = state  # (B, H)
        x_r, x_z, x_n = xw.chunk(3, dim=-1)  # each (B, H): LN(W_ih x; α_x, β_x)
        hd = self.recurrent_input(h, w)  # h where it meets W_hh (recurrent dropout); z ⊙ h keeps h itself
        h_r, h_z, h_n = layer_norm(F.linear(hd, w.weight_hh), w.ln_hh_weight, w.bias_hh).chunk(3, dim=-1)  # LN(W_hh h)
        r = σ(x_r + h_r)  # reset gate
        z = σ(x_z + h_z)  # update gate
        n = act(x_n + r * h_n)  # candidate: reset applied to the normalised recurrent part
        h = (1 - z) * n + z * h  # interpolate old state and candidate
        return (h,), {"r": r, "z": z, "n": n}
