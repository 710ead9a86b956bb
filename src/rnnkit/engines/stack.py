"""Depth and direction, the same for every engine.

:func:`run_stack` runs a layer's cells over depth (layer ``l`` reads the — in training, dropped-out —
concatenated outputs of layer ``l - 1``) and direction (the reverse direction runs the forward loop on each
sequence reversed *within its own length*, so it starts at that sequence's last valid step, then
un-reverses its outputs). An engine gives it only the function that runs one direction of one layer.
The layer options that act outside the time loop are applied here, for every engine: ``input_dropout`` (one
(B, F) mask per cell, the same at every step) and the bidirectional ``merge_mode``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from rnnkit.dropout import dropout
from rnnkit.engines.registry import RunResult
from rnnkit.regularisers import merge

if TYPE_CHECKING:
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
    masks = getattr(layer, "call_masks", None)
    merge_mode = getattr(layer, "merge_mode", "concat")
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
            keep = masks.input_mask(k, inp) if masks is not None else None
            if keep is not None:  # variational input dropout: the same (B, F) mask at every step
                inp = inp * keep
            out, state, g = run_one(k, inp, tuple(s[k] for s in hx), mask)
            if d == 1:
                out = reverse_padded(out, lengths)
                g = {n: reverse_padded(v, lengths) for n, v in g.items()} if g is not None else None
            outputs.append(out)
            finals.append(state)
            if g is not None:
                gates.append(g)
        last = l == layer.num_layers - 1
        # merge_mode=None returns both directions stacked; between stacked layers they are concatenated
        layer_input = merge(outputs, merge_mode if merge_mode is not None or last else "concat")
    final = tuple(torch.stack(s) for s in zip(*finals))
    stacked = {n: torch.stack([g[n] for g in gates]) for n in gates[0]} if return_gates else None
    return layer_input, final, stacked
