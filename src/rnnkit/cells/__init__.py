"""Recurrent cells: one time step each. See :mod:`rnnkit.cells.base` for the API every cell shares."""

from rnnkit.cells.base import GatedCell, Gates, RecurrentCell, State
from rnnkit.cells.elman import JordanCell, RNNCell
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.indrnn import IndRNNCell
from rnnkit.cells.layernorm import LayerNormGRUCell, LayerNormLSTMCell
from rnnkit.cells.lstm import LSTMCell, PeepholeLSTMCell
from rnnkit.cells.mgu import MGUCell
from rnnkit.cells.min_rnn import MinGRUCell, MinLSTMCell

__all__ = [
    "Gates",
    "GatedCell",
    "GRUCell",
    "IndRNNCell",
    "JordanCell",
    "LayerNormGRUCell",
    "LayerNormLSTMCell",
    "LSTMCell",
    "MGUCell",
    "MinGRUCell",
    "MinLSTMCell",
    "PeepholeLSTMCell",
    "RecurrentCell",
    "RNNCell",
    "State",
]
