"""rnnkit: recurrent neural networks from the equations up.

Cells are one time step (:mod:`rnnkit.cells`); one generic layer runs any cell over time, depth and
direction (:mod:`rnnkit.layer`); :mod:`rnnkit.rnn` offers drop-in replacements for ``torch.nn.RNN``,
``GRU`` and ``LSTM`` plus ``PeepholeLSTM``, ``Jordan``, ``MGU``, ``IndRNN``, ``MinGRU``, ``MinLSTM``,
``LayerNormLSTM`` and ``LayerNormGRU``.
"""

from rnnkit.activations import ACTIVATIONS, get_activation
from rnnkit.cells import (
    GRUCell,
    IndRNNCell,
    JordanCell,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    LSTMCell,
    MGUCell,
    MinGRUCell,
    MinLSTMCell,
    PeepholeLSTMCell,
    RecurrentCell,
    RNNCell,
)
from rnnkit.compat import to_torch
from rnnkit.engines import ENGINES, register_engine
from rnnkit.errors import DeviceError, DtypeError, ShapeError
from rnnkit.layer import Recurrent, constrain
from rnnkit.rnn import (
    GRU,
    LSTM,
    MGU,
    RNN,
    IndRNN,
    Jordan,
    LayerNormGRU,
    LayerNormLSTM,
    MinGRU,
    MinLSTM,
    PeepholeLSTM,
)

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "DeviceError",
    "DtypeError",
    "ENGINES",
    "GRU",
    "GRUCell",
    "IndRNN",
    "IndRNNCell",
    "Jordan",
    "JordanCell",
    "LayerNormGRU",
    "LayerNormGRUCell",
    "LayerNormLSTM",
    "LayerNormLSTMCell",
    "LSTM",
    "LSTMCell",
    "MGU",
    "MGUCell",
    "MinGRU",
    "MinGRUCell",
    "MinLSTM",
    "MinLSTMCell",
    "PeepholeLSTM",
    "PeepholeLSTMCell",
    "RNN",
    "RNNCell",
    "Recurrent",
    "RecurrentCell",
    "ShapeError",
    "constrain",
    "get_activation",
    "register_engine",
    "to_torch",
]
