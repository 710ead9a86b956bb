"""Every step's gates and states of a recurrent layer over one long sequence, for looking at (``rnnkit inspect``).

The gates come from the layer's public API, ``layer(x, return_gates=True)``; what this module adds is every
layer's states, not only the top one's, and a way to ask for them quickly on an engine that returns gates
step by step:

* **one block per (layer, direction).** A stacked or bidirectional layer only returns its top layer's
  output; to see every layer's hidden state too, each (layer, direction) is run as a one-layer,
  one-direction copy of itself (same cell, same weights), the reverse direction on the time-reversed
  input, the next layer on both directions' outputs — exactly what the stack computes.
* **chunks in parallel, where that pays** (``chunk`` > 0). One sequence of T steps gives the engine a batch
  of 1; where the gated path pays a cost per step and the plain one does not, the sequence is cut into
  chunks; one plain pass carries the state across the text and keeps the state at each chunk's start; then
  a single ``return_gates=True`` call runs all chunks as one batch, each from its own start state. Same
  equations, same start states, so the same numbers (``tests/test_record.py`` checks it against one direct
  call). The default (:data:`CHUNK` = 0) is one direct call per (layer, direction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from rnnkit.activations import activation_name
from rnnkit.cells import JordanCell, RecurrentCell
from rnnkit.layer import Recurrent

#: steps per chunk; 0 = the whole sequence in one gated call, the fastest since the fused engine returns the
#: gates from its sequence kernels (2 x 256 LSTM over 10,000 tokens: 0.75 s, against 1.2 s in 512-step chunks).
#: Chunks pay off where the gated path runs step by step and the plain one does not: on the engine before those
#: kernels, 2.4 s in 128-step chunks against 13.4 s for one direct call (medians, busy 2-core machine)
CHUNK = 0
#: value ranges of the named activations that have one (the saturation plot needs a bounded gate)
_RANGES = {"sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}
#: which activation produces each reported gate (``c``, the LSTM memory, has none: it is unbounded)
_GATE_ACTIVATION = {
    "i": "recurrent_activation", "f": "recurrent_activation", "o": "recurrent_activation",
    "r": "recurrent_activation", "z": "recurrent_activation",
    "g": "activation", "n": "activation", "h": "activation", "y": "output_activation",
}  # fmt: skip


def gate_range(cell: RecurrentCell, name: str) -> tuple[float, float] | None:
    """The range a gate's values lie in ((0, 1) for a sigmoid gate, (-1, 1) for tanh), or None if unbounded."""
    fn = getattr(cell, _GATE_ACTIVATION.get(name, ""), None)
    return _RANGES.get(activation_name(fn) or "") if fn is not None else None


@dataclass
class Block:
    """What one (layer, direction) of a stack did at every step: ``gates`` and ``states`` map a name to (T, units)."""

    layer: int
    direction: int
    gates: dict[str, np.ndarray]
    #: the states to colour text by, most telling first: LSTM ``c`` (memory) then ``h``; Jordan ``y``
    #: (the fed-back output) then its hidden layer ``h``; GRU and Elman ``h``
    states: dict[str, np.ndarray]
    #: per gate, its value range where bounded (the saturation scatter is drawn for those)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: the names in ``states`` that make up the layer's recurrent state, in its order (LSTM: h, c)
    carried: tuple[str, ...] = ("h",)

    @property
    def name(self) -> str:
        return f"layer {self.layer + 1}" + (" reverse" if self.direction else "")


def single_layer(layer: Recurrent, index: int, direction: int) -> Recurrent:
    """A one-layer, one-direction, time-major copy of ``layer``'s (``index``, ``direction``) cell and weights."""
    k = index * layer.num_directions + direction
    cell = layer.cells[k]
    w = layer.weights(k)
    ref = next(t for t in vars(w).values() if t is not None)
    single = Recurrent(type(cell), cell.input_size, layer.hidden_size, 1, layer.bias, engine=layer.engine,
                       cell_kwargs=layer.cell_kwargs, device=ref.device, dtype=ref.dtype)  # fmt: skip
    with torch.no_grad():
        for name, value in vars(w).items():
            if value is not None:
                getattr(single, name + "_l0").copy_(value)
    return single.eval()


def _as_tuple(state: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return (state,) if isinstance(state, Tensor) else tuple(state)


@torch.no_grad()
def run_with_gates(layer: Recurrent, x: Tensor, chunk: int = CHUNK) -> tuple[Tensor, dict[str, Tensor]]:
    """``layer(x, return_gates=True)`` for a time-major, one-sequence ``x`` (T, F) from a zero state, in one call
    or chunk by chunk in one batch (see the module docstring); returns the output (T, S) and gates {name: (T, H)}."""
    if layer.num_layers != 1 or layer.bidirectional or layer.batch_first:
        raise ValueError("run_with_gates takes a one-layer, one-direction, time-major layer (see single_layer)")
    T = x.shape[0]
    chunk = T if chunk <= 0 else min(chunk, T)
    K = math.ceil(T / chunk)
    zeros = tuple(x.new_zeros(1, 1, size) for size in layer.cells[0].state_sizes)
    starts, state = [zeros], None
    for k in range(K - 1):  # the plain pass: only the state at each later chunk's start is kept
        _, state = layer(x[k * chunk : (k + 1) * chunk, None], state)
        starts.append(_as_tuple(state))
    hx = tuple(torch.cat([s[i] for s in starts], dim=1) for i in range(len(zeros)))  # (1, K, size)
    pad = K * chunk - T
    xs = torch.cat([x, x.new_zeros(pad, x.shape[1])]).reshape(K, chunk, -1).transpose(0, 1)  # (chunk, K, F)
    lengths = torch.full((K,), chunk, dtype=torch.long) if K > 1 else None
    if lengths is not None:
        lengths[-1] = chunk - pad
    out, _, gates = layer(xs, hx[0] if len(hx) == 1 else hx, lengths=lengths, return_gates=True)

    def unchunk(t: Tensor) -> Tensor:  # (chunk, K, n) -> (T, n)
        return t.transpose(0, 1).reshape(K * chunk, -1)[:T]

    return unchunk(out), {n: unchunk(g[0]) for n, g in gates.items()}


@torch.no_grad()
def record(layer: Recurrent, x: Tensor, chunk: int = CHUNK) -> tuple[list[Block], Tensor]:
    """Every (layer, direction)'s gates and states over one sequence ``x`` ((T, F), or (T, 1, F) / (1, T, F) in
    the layer's own layout), from a zero state; also returns the layer's output (T, D*S) as ``layer(x)`` would."""
    if x.dim() == 3:
        if x.shape[1 if not layer.batch_first else 0] != 1:
            raise ValueError(f"record takes one sequence: got a batch of shape {tuple(x.shape)}")
        x = x[:, 0] if not layer.batch_first else x[0]
    if x.dim() != 2 or x.shape[1] != layer.input_size or x.shape[0] == 0:
        raise ValueError(f"record expects one sequence of shape (T, {layer.input_size}), got {tuple(x.shape)}")
    blocks: list[Block] = []
    inp = x
    for index in range(layer.num_layers):
        outs = []
        for direction in range(layer.num_directions):
            single = single_layer(layer, index, direction)
            seq = inp.flip(0) if direction else inp
            out, gates = run_with_gates(single, seq, chunk)
            if direction:  # back to text order
                out, gates = out.flip(0), {n: g.flip(0) for n, g in gates.items()}
            outs.append(out)
            blocks.append(_block(single.cells[0], index, direction, out, gates))
        inp = torch.cat(outs, dim=1)
    return blocks, inp


def _block(cell: RecurrentCell, index: int, direction: int, out: Tensor, gates: dict[str, Tensor]) -> Block:
    g = {n: t.detach().cpu().float().numpy() for n, t in gates.items()}
    states: dict[str, np.ndarray] = {}
    if "c" in g:
        states["c"] = g["c"]
    states["y" if isinstance(cell, JordanCell) else "h"] = out.detach().cpu().float().numpy()
    if isinstance(cell, JordanCell):
        states["h"] = g["h"]
    ranges = {n: r for n in g if (r := gate_range(cell, n)) is not None}
    carried = ("h", "c") if "c" in g else ("y",) if isinstance(cell, JordanCell) else ("h",)
    return Block(index, direction, g, states, ranges, carried)
