"""The reference engine: a readable Python loop over the cell. It defines rnnkit's numbers.

Depth, direction and variable lengths are handled here once, for every cell:

* depth — layer ``l`` reads the (dropout-ed) concatenated outputs of layer ``l - 1``;
* direction — the reverse direction runs the forward loop on each sequence reversed *within its own
  length*, so it starts at that sequence's last valid step, then un-reverses its outputs;
* lengths — past a sequence's length the state is frozen (so the final state is the state at the last
  valid step) and outputs and gates are zero.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from rnnkit.dropout import dropout
from rnnkit.engines import RunResult, register_engine

if TYPE_CHECKING:
    from rnnkit.cells import RecurrentCell
    from rnnkit.layer import Recurrent


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of ``x`` (T, B, ...) within its own length; padding stays where it is."""
    if lengths is None:
        return x.flip(0)
    T = x.shape[0]
    t = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
    idx = torch.where(t < lengths, lengths - 1 - t, t)  # (T, B): an involution
    idx = idx.view(T, -1, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(0, idx)


def step_mask(lengths: Tensor | None, T: int) -> Tensor | None:
    """(T, B, 1) boolean: True where step t is inside sequence b."""
    if lengths is None:
        return None
    return (torch.arange(T, device=lengths.device).unsqueeze(1) < lengths).unsqueeze(-1)


def run_direction(
    cell: RecurrentCell, w: Any, x: Tensor, state: tuple[Tensor, ...], mask: Tensor | None, return_gates: bool
) -> tuple[Tensor, tuple[Tensor, ...], dict[str, Tensor] | None]:
    """Step ``cell`` over ``x`` (T, B, F) from ``state``; returns outputs (T, B, S0), final state, gates."""
    outputs: list[Tensor] = []
    steps: list[dict[str, Tensor]] = []
    for t in range(x.shape[0]):
        new_state, gates = cell.step(x[t], state, w)
        if mask is not None:  # freeze finished sequences, zero what they emit
            m = mask[t]  # (B, 1)
            new_state = tuple(torch.where(m, new, old) for new, old in zip(new_state, state))
            gates = {k: torch.where(m, v, 0.0) for k, v in gates.items()} if return_gates else gates
        state = new_state
        outputs.append(state[0] if mask is None else torch.where(mask[t], state[0], 0.0))
        if return_gates:
            steps.append(gates)
    stacked = {k: torch.stack([g[k] for g in steps]) for k in cell.gate_names} if return_gates else None
    return torch.stack(outputs), state, stacked


DirectionRunner = Callable[
    [int, Tensor, tuple[Tensor, ...], "Tensor | None"], tuple[Tensor, tuple[Tensor, ...], "dict[str, Tensor] | None"]
]


def run_stack(
    layer: Recurrent,
    x: Tensor,
    hx: tuple[Tensor, ...],
    lengths: Tensor | None,
    return_gates: bool,
    run_one: DirectionRunner,
) -> RunResult:
    """Depth and direction, the same for every engine: ``run_one(k, input, state, mask)`` runs cell ``k``
    over one (already reversed, for the reverse direction) sequence and returns (outputs, final state, gates)."""
    D = layer.num_directions
    mask = step_mask(lengths, x.shape[0])
    finals: list[tuple[Tensor, ...]] = []
    gates: list[dict[str, Tensor]] = []
    layer_input = x
    for l in range(layer.num_layers):
        if l > 0 and layer.dropout and layer.training:
            layer_input = dropout(layer_input, layer.dropout)
        outputs = []
        for d in range(D):
            k = l * D + d
            inp = layer_input if d == 0 else reverse_padded(layer_input, lengths)
            out, state, g = run_one(k, inp, tuple(s[k] for s in hx), mask)
            if d == 1:
                out = reverse_padded(out, lengths)
                g = {n: reverse_padded(v, lengths) for n, v in g.items()} if g is not None else None
            outputs.append(out)
            finals.append(state)
            if g is not None:
                gates.append(g)
        layer_input = outputs[0] if D == 1 else torch.cat(outputs, dim=-1)
    final = tuple(torch.stack(s) for s in zip(*finals))
    stacked = {n: torch.stack([g[n] for g in gates]) for n in gates[0]} if return_gates else None
    return layer_input, final, stacked


class ReferenceEngine:
    name = "reference"

    def unsupported(self, layer: Recurrent, x: Tensor, return_gates: bool) -> str | None:
        return None

    def run(
        self, layer: Recurrent, x: Tensor, hx: tuple[Tensor, ...], lengths: Tensor | None, return_gates: bool
    ) -> RunResult:
        def one(k: int, inp: Tensor, state: tuple[Tensor, ...], mask: Tensor | None) -> Any:
            return run_direction(layer.cells[k], layer.weights(k), inp, state, mask, return_gates)

        return run_stack(layer, x, hx, lengths, return_gates, one)


register_engine(ReferenceEngine())  # auto falls back to it when no faster engine fits
