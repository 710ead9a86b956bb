"""The reference engine: a readable Python loop over the cell. It defines rnnkit's numbers.

Depth and direction are :func:`rnnkit.engines.stack.run_stack`'s; here is only the time loop of one
direction: step the cell, apply the layer's zoneout, and past a sequence's length freeze the state (so the
final state is the state at the last valid step) and zero the outputs and gates. Recurrent dropout reaches
the cell through its weights (``w.recurrent_mask``, see :meth:`RecurrentCell.recurrent_input`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from rnnkit.engines.registry import RunResult, register_engine
from rnnkit.engines.stack import run_stack

if TYPE_CHECKING:
    from rnnkit.cells import RecurrentCell
    from rnnkit.layer import Recurrent


def run_direction(
    cell: RecurrentCell,
    w: Any,
    x: Tensor,
    state: tuple[Tensor, ...],
    mask: Tensor | None,
    return_gates: bool,
    zoneout: Callable[[int, tuple[Tensor, ...], tuple[Tensor, ...]], tuple[Tensor, ...]] | None = None,
) -> tuple[Tensor, tuple[Tensor, ...], dict[str, Tensor] | None]:
    """Step ``cell`` over ``x`` (T, B, F) from ``state``; returns outputs (T, B, S0), final state, gates.
    ``zoneout(t, old, new)``: the state after step t's zoneout (the layer's option), if any."""
    outputs: list[Tensor] = []
    steps: list[dict[str, Tensor]] = []
    for t in range(x.shape[0]):
        new_state, gates = cell.step(x[t], state, w)
        if zoneout is not None:  # keep each unit's previous value with probability p (Krueger et al. 2017)
            new_state = zoneout(t, state, new_state)
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


class ReferenceEngine:
    name = "reference"

    def unsupported(self, layer: Recurrent, x: Tensor, return_gates: bool) -> str | None:
        return None

    def run(
        self, layer: Recurrent, x: Tensor, hx: tuple[Tensor, ...], lengths: Tensor | None, return_gates: bool
    ) -> RunResult:
        masks = getattr(layer, "call_masks", None)  # the layer's regularisers in this call, if any

        def one(k: int, inp: Tensor, state: tuple[Tensor, ...], mask: Tensor | None) -> Any:
            w, zoneout = layer.weights(k), None
            if masks is not None:
                w.recurrent_mask = masks.recurrent_mask(k, state[0])  # (B, S) or None: RecurrentCell.recurrent_input
                if masks.has_zoneout():
                    zoneout = functools.partial(masks.zoneout_step, k)
            return run_direction(layer.cells[k], w, inp, state, mask, return_gates, zoneout)

        return run_stack(layer, x, hx, lengths, return_gates, one)


register_engine(ReferenceEngine())  # auto falls back to it when no faster engine fits
