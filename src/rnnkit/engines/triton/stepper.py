"""One token at a time on the GPU: :meth:`rnnkit.layer.Recurrent.stepper` for a layer on a CUDA device.

Per call and layer it runs the Triton forward for a single step (:func:`.impl.sequence` with T = 1: the
input GEMM, then one launch of the sequence kernel), without the layer's per-call checks, engine choice or
autograd, and reads the parameters as they are at each call (there is nothing packed to go stale).
Inference only: its outputs carry no gradient. It also runs on CPU tensors under Triton's interpreter,
which is how the tests check it without a GPU; on the CPU, ``layer.stepper()`` gives the C stepper.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from rnnkit.engines.fused.specs import SPECS
from rnnkit.engines.registry import ENGINES

if TYPE_CHECKING:
    from rnnkit.layer import Recurrent

State = Tensor | tuple[Tensor, ...]


class Stepper:
    """Step ``layer`` one token at a time: ``y, state = stepper(x_t, state)``, as
    :class:`rnnkit.engines.fused.stepper.Stepper` does on the CPU (same arguments, same results)."""

    def __init__(self, layer: Recurrent) -> None:
        if layer.bidirectional:
            raise ValueError("a bidirectional layer cannot be stepped one token at a time: its reverse half needs "
                             "the whole sequence; run the layer on the sequence instead")  # fmt: skip
        reason = ENGINES["triton"].unsupported(layer, layer.weight_ih_l0, False)
        if reason is not None:
            raise ValueError(f"Stepper needs the Triton kernels: {reason}")
        self.layer = layer

    def __reduce__(self) -> tuple:
        return Stepper, (self.layer,)

    def _state(self, x: Tensor, state: State | None, unbatched: bool) -> tuple[Tensor, ...]:
        sizes = self.layer.cells[0].state_sizes
        L, B, w = self.layer.num_layers, x.shape[0], self.layer.weight_ih_l0
        if state is None:
            return tuple(x.new_zeros(L, B, s) for s in sizes)
        state = (state,) if isinstance(state, Tensor) else tuple(state)
        if unbatched:
            state = tuple(s.unsqueeze(1) for s in state)
        want = [(L, B, s) for s in sizes]
        if [tuple(s.shape) for s in state] != want or any(s.dtype != w.dtype or s.device != w.device for s in state):
            raise ValueError(f"Stepper: expected a state of shapes {want} ({w.dtype} on {w.device}), got "
                             f"{[(tuple(s.shape), s.dtype, str(s.device)) for s in state]}")  # fmt: skip
        return state

    @torch.no_grad()
    def __call__(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        from rnnkit.engines.triton.impl import sequence

        w = self.layer.weight_ih_l0
        unbatched = x.dim() == 1
        if unbatched:
            x = x.unsqueeze(0)
        if x.dim() != 2 or x.shape[-1] != self.layer.input_size:
            raise ValueError(f"Stepper: expected x of shape (B, {self.layer.input_size}), got {tuple(x.shape)}")
        if x.dtype != w.dtype or x.device != w.device:
            raise ValueError(f"Stepper: expected a {w.dtype} input on {w.device}, got {x.dtype} on {x.device}; "
                             "convert it with x.to(...)")  # fmt: skip
        state = self._state(x, state, unbatched)
        finals = []
        for k, cell in enumerate(self.layer.cells):
            spec = SPECS[type(cell)]
            config, params = spec.config_and_params(cell, self.layer.weights(k))
            buffers = sequence(spec.name, config, x.unsqueeze(0), [s[k] for s in state], params, None, False)
            new = spec.outputs(config, buffers)[1]
            finals.append(new)
            x = new[0]  # the next layer reads this one's output
        new_state = tuple(torch.stack(s) for s in zip(*finals))
        y = x
        if unbatched:
            y, new_state = y.squeeze(0), tuple(s.squeeze(1) for s in new_state)
        return y, (new_state[0] if len(new_state) == 1 else new_state)
