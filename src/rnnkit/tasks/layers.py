"""Small helpers the task models share: build an rnnkit layer by cell name, read its top layer's final state."""

from __future__ import annotations

from torch import Tensor

from rnnkit.layer import Recurrent
from rnnkit.rnn import make_layer


def build_layer(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    dropout: float = 0.0,
    bidirectional: bool = False,
    engine: str = "auto",
) -> Recurrent:
    """A batch_first rnnkit layer; ``jordan`` feeds back an output of ``hidden_size`` features."""
    return make_layer(cell, input_size, hidden_size, num_layers=num_layers, dropout=dropout if num_layers > 1 else 0.0,
                      batch_first=True, bidirectional=bidirectional, engine=engine)  # fmt: skip


def top_final_state(layer: Recurrent, state: Tensor | tuple[Tensor, ...]) -> Tensor:
    """The top layer's final hidden state (B, D·S), forward then backward direction.

    With ``lengths=`` the layer's final state is each sequence's state at its own last valid step (and, for the
    backward direction, after reading the whole valid sequence back to step 0), so this is the right
    "last state" readout for padded batches.
    """
    h = state[0] if isinstance(state, tuple) else state  # (L·D, B, S)
    D = layer.num_directions
    top = h[-D:]  # (D, B, S)
    return top.transpose(0, 1).reshape(h.shape[1], -1)  # (B, D·S)
