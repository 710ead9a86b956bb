"""Backpropagation through time by hand: a NumPy-only (float64) reference for every rnnkit cell.

No autograd anywhere: each cell writes one step forward and one step backward
(:mod:`~rnnkit.numpy_bptt.elman`, :mod:`~rnnkit.numpy_bptt.gru`, :mod:`~rnnkit.numpy_bptt.lstm`,
:mod:`~rnnkit.numpy_bptt.minimal` for MGU, IndRNN, minGRU and minLSTM) and
:func:`bptt` runs them over a sequence with a softmax or squared-error head, optional initial state and
truncation (:mod:`~rnnkit.numpy_bptt.common`). Parameters use rnnkit's (= torch's) names and gate order::

    from rnnkit import LSTM
    from rnnkit.numpy_bptt import bptt, cell_from_layer, params_from_torch

    layer = LSTM(3, 5, dtype=torch.float64)
    params = params_from_torch(layer, head=torch.nn.Linear(5, 4, dtype=torch.float64))
    result = bptt(cell_from_layer(layer), params, x, y)     # result.grads["weight_hh"] …
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnkit.numpy_bptt.common import ACTIVATIONS, BPTTResult, Cell, bptt, forward, loss
from rnnkit.numpy_bptt.elman import Elman, Jordan
from rnnkit.numpy_bptt.gru import GRU
from rnnkit.numpy_bptt.layernorm import LayerNormGRU, LayerNormLSTM
from rnnkit.numpy_bptt.lstm import LSTM, PeepholeLSTM
from rnnkit.numpy_bptt.minimal import MGU, IndRNN, MinGRU, MinLSTM

__all__ = [
    "ACTIVATIONS",
    "BPTTResult",
    "Cell",
    "Elman",
    "GRU",
    "IndRNN",
    "Jordan",
    "LayerNormGRU",
    "LayerNormLSTM",
    "LSTM",
    "MGU",
    "MinGRU",
    "MinLSTM",
    "PeepholeLSTM",
    "bptt",
    "cell_from_layer",
    "forward",
    "loss",
    "params_from_torch",
]


def cell_from_layer(layer: Any) -> Cell:
    """The NumPy cell computing the same equations as a one-layer, one-direction rnnkit layer."""
    from rnnkit import cells
    from rnnkit.activations import activation_name

    if layer.num_layers != 1 or layer.bidirectional:
        raise ValueError("the NumPy reference runs one layer in one direction: use num_layers=1, bidirectional=False")
    cell = layer.cells[0]
    H, bias = cell.hidden_size, cell.bias
    if isinstance(cell, cells.GatedCell) and not cell.has_default_activations():
        raise ValueError("the NumPy reference implements the default gate activations (sigmoid, tanh) only")
    if isinstance(cell, cells.LayerNormLSTMCell):
        return LayerNormLSTM(H, bias=bias)
    if isinstance(cell, cells.LayerNormGRUCell):
        return LayerNormGRU(H, bias=bias)
    if isinstance(cell, cells.PeepholeLSTMCell):
        return PeepholeLSTM(H, proj_size=cell.proj_size, bias=bias)
    if isinstance(cell, cells.LSTMCell):
        return LSTM(H, proj_size=cell.proj_size, bias=bias)
    if isinstance(cell, cells.GRUCell):
        return GRU(H, reset_after=cell.reset_after, bias=bias)
    if type(cell) is cells.MGUCell:
        return MGU(H, bias=bias)
    if type(cell) is cells.MinGRUCell:
        return MinGRU(H, bias=bias)
    if type(cell) is cells.MinLSTMCell:
        return MinLSTM(H, bias=bias)
    names = [activation_name(getattr(cell, a, None)) for a in ("activation", "output_activation")]
    if isinstance(cell, cells.JordanCell) and None not in names:
        return Jordan(H, cell.jordan_output_size, activation=names[0], output_activation=names[1], bias=bias)
    if type(cell) is cells.IndRNNCell and names[0] is not None:
        return IndRNN(H, nonlinearity=names[0], bias=bias)
    if isinstance(cell, cells.RNNCell) and names[0] is not None:
        return Elman(H, nonlinearity=names[0], bias=bias)
    raise ValueError(f"no NumPy reference for {layer.describe_cell()}: use named activations")


def params_from_torch(layer: Any, head: Any = None) -> dict[str, np.ndarray]:
    """A one-layer rnnkit (or torch) layer's parameters under cell names (``weight_ih_l0`` -> ``weight_ih``),
    plus ``V``/``c`` from ``head`` (a ``torch.nn.Linear``) when given; float64 copies."""
    params = {}
    for name, t in layer.named_parameters():
        if not name.endswith("_l0"):
            raise ValueError(f"parameter {name!r}: the NumPy reference takes a one-layer, one-direction layer")
        params[name[: -len("_l0")]] = t.detach().cpu().double().numpy().copy()
    if head is not None:
        params["V"] = head.weight.detach().cpu().double().numpy().copy()
        bias = head.bias
        params["c"] = np.zeros(params["V"].shape[0]) if bias is None else bias.detach().cpu().double().numpy().copy()
    return params
