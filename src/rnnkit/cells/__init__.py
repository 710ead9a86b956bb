"""Recurrent cells: one time step each. See :mod:`rnnkit.cells.base` for the API every cell shares."""

from rnnkit.cells.base import GatedCell, Gates, RecurrentCell, State
from rnnkit.cells.elman import JordanCell, RNNCell
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.layernorm import LayerNormGRUCell, LayerNormLSTMCell
from rnnkit.cells.lstm import LSTMCell, PeepholeLSTMCell

__all__ = [
    "Gates",
    "GatedCell",
    "GRUCell",
    "JordanCell",
    "LayerNormGRUCell",
    "LayerNormLSTMCell",
    "LSTMCell",
    "PeepholeLSTMCell",
    "RecurrentCell",
    "RNNCell",
    "State",
]
