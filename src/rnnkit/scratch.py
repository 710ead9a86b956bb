"""The from-scratch baseline: RNN, GRU and LSTM written as d2l.ai writes them, with plain tensor ops.

This is the "readable but slow" code every learner writes first (d2l chapter 9/10 style:
``lstm(inputs, state, params)`` looping over time with ``X @ W_x* + H @ W_h* + b_*``). ``rnnkit bench``
times it next to ``torch.nn`` and rnnkit's engines, so the cost of a plain Python loop is measured, not
guessed. :func:`scratch_params` takes its weights from an rnnkit or torch layer, so all three compute
the same function and can be checked against each other:

* ``rnn`` and ``lstm`` equal ``torch.nn.RNN`` / ``torch.nn.LSTM``;
* ``gru`` is d2l's GRU, which applies the reset gate *before* the product (``(R ⊙ H) @ W_hh``): it
  equals rnnkit's ``GRU(reset_after=False)`` (Cho et al. 2014), not torch's ``reset_after`` form.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

State = tuple[Tensor, ...]


def rnn(inputs: Tensor, state: State, params: list[Tensor]) -> tuple[Tensor, State]:
    """Elman network over ``inputs`` (T, B, F); ``params`` = W_xh (F, H), W_hh (H, H), b_h (H,)."""
    W_xh, W_hh, b_h = params
    (H,) = state
    outputs = []
    for X in inputs:
        H = torch.tanh(X @ W_xh + H @ W_hh + b_h)
        outputs.append(H)
    return torch.stack(outputs), (H,)


def gru(inputs: Tensor, state: State, params: list[Tensor]) -> tuple[Tensor, State]:
    """d2l's GRU over ``inputs`` (T, B, F); ``params`` = (W_x*, W_h*, b_*) for * = z, r, h."""
    W_xz, W_hz, b_z, W_xr, W_hr, b_r, W_xh, W_hh, b_h = params
    (H,) = state
    outputs = []
    for X in inputs:
        Z = torch.sigmoid(X @ W_xz + H @ W_hz + b_z)  # update gate
        R = torch.sigmoid(X @ W_xr + H @ W_hr + b_r)  # reset gate
        H_tilde = torch.tanh(X @ W_xh + (R * H) @ W_hh + b_h)  # candidate
        H = Z * H + (1 - Z) * H_tilde
        outputs.append(H)
    return torch.stack(outputs), (H,)


def lstm(inputs: Tensor, state: State, params: list[Tensor]) -> tuple[Tensor, State]:
    """d2l's LSTM over ``inputs`` (T, B, F); ``params`` = (W_x*, W_h*, b_*) for * = i, f, o, c."""
    W_xi, W_hi, b_i, W_xf, W_hf, b_f, W_xo, W_ho, b_o, W_xc, W_hc, b_c = params
    H, C = state
    outputs = []
    for X in inputs:
        I = torch.sigmoid(X @ W_xi + H @ W_hi + b_i)
        F = torch.sigmoid(X @ W_xf + H @ W_hf + b_f)
        O = torch.sigmoid(X @ W_xo + H @ W_ho + b_o)
        C_tilde = torch.tanh(X @ W_xc + H @ W_hc + b_c)
        C = F * C + I * C_tilde
        H = O * torch.tanh(C)
        outputs.append(H)
    return torch.stack(outputs), (H, C)


SCRATCH: dict[str, Callable[[Tensor, State, list[Tensor]], tuple[Tensor, State]]] = {
    "rnn": rnn,
    "gru": gru,
    "lstm": lstm,
}

# Order of torch's gate blocks inside weight_ih / weight_hh -> the gate each d2l parameter triple belongs to.
_TORCH_BLOCKS = {"rnn": ("h",), "gru": ("r", "z", "h"), "lstm": ("i", "f", "c", "o")}
_D2L_ORDER = {"rnn": ("h",), "gru": ("z", "r", "h"), "lstm": ("i", "f", "o", "c")}


def scratch_params(kind: str, layer: nn.Module) -> list[Tensor]:
    """Fresh leaf tensors in d2l's layout (``X @ W`` with W (F, H), one bias per gate) from a 1-layer layer.

    ``layer`` is a single-layer, unidirectional ``torch.nn`` or rnnkit RNN/GRU/LSTM with biases; the two
    biases of each gate are summed, which is exact for every cell here (d2l's GRU adds ``b_hh`` of the
    candidate after ``(R ⊙ H) @ W_hh``, as rnnkit's ``reset_after=False`` does).
    """
    if kind not in SCRATCH:
        raise ValueError(f"no from-scratch {kind!r}: use one of {', '.join(SCRATCH)}")
    if getattr(layer, "num_layers", 1) != 1 or getattr(layer, "bidirectional", False) or not layer.bias:
        raise ValueError("scratch_params needs a single-layer, unidirectional layer with bias=True")
    blocks = _TORCH_BLOCKS[kind]
    w_ih = dict(zip(blocks, layer.weight_ih_l0.detach().chunk(len(blocks))))
    w_hh = dict(zip(blocks, layer.weight_hh_l0.detach().chunk(len(blocks))))
    b = dict(zip(blocks, (layer.bias_ih_l0 + layer.bias_hh_l0).detach().chunk(len(blocks))))
    params = []
    for gate in _D2L_ORDER[kind]:
        params += [w_ih[gate].t().contiguous(), w_hh[gate].t().contiguous(), b[gate].clone()]
    return [p.requires_grad_() for p in params]
