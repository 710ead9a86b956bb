"""One token at a time, without the layer's per-call overhead: the generation loop's inner step.

``layer(x_t[None], state)`` per token pays for input checks, engine selection, a sequence-sized
buffer and (through torch.nn) a packed-weights dispatch — most of the 160–173 µs torch.nn.LSTM takes
per token here (docs/engines.md). A :class:`Stepper` checks the layout once, folds the additive biases
once, and then each call is, per layer, one input GEMV, one recurrent GEMV and the fused engine's
in-place pointwise step.

It reads the layer's parameters when created and notices when they change (their version counters),
so it stays correct if the model keeps training. Inference only: it runs under ``torch.no_grad()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from rnnkit.engines._fused_kernels import Kernel
from rnnkit.engines.fused import FusedEngine, make_kernel

if TYPE_CHECKING:
    from rnnkit.layer import Recurrent


class Stepper:
    """Step ``layer`` one token at a time: ``y, state = stepper(x_t, state)``.

    ``x_t`` is (B, F) (or (F,) unbatched); ``state`` is what the layer takes and returns (``h`` or ``(h, c)``,
    each (num_layers, B, S)), ``None`` for zeros. Returns the top layer's output (B, S) and the new state,
    equal to ``layer(x_t.unsqueeze(0), state)`` (tests). Unidirectional layers only.
    """

    def __init__(self, layer: Recurrent) -> None:
        if layer.bidirectional:
            raise ValueError("a bidirectional layer cannot be stepped one token at a time: its reverse half needs "
                             "the whole sequence; run the layer on the sequence instead")  # fmt: skip
        reason = FusedEngine().unsupported(layer, layer.weight_ih_l0, False)
        if reason is not None:
            raise ValueError(f"Stepper needs the fused engine's kernels: {reason}")
        self.layer = layer
        self._params = list(layer.parameters())
        self.kernels: list[Kernel] = [make_kernel(cell, None, False) for cell in layer.cells]
        self._versions: tuple[int, ...] | None = None
        self._prepare()

    def _prepare(self) -> None:
        """Detach the parameters and fold the biases once (again only if a parameter changed)."""
        with torch.no_grad():
            self.W_ih_t, self.b_in, self.weights = [], [], []
            for k, kernel in enumerate(self.kernels):
                w = self.layer.weights(k)
                self.W_ih_t.append(w.weight_ih.detach().t())
                b = kernel.input_bias(w)
                self.b_in.append(None if b is None else b.detach())
                self.weights.append([None if t is None else t.detach() for t in kernel.weights(w)])
        self._versions = self._current_versions()

    def _current_versions(self) -> tuple[int, ...]:
        return tuple(p._version for p in self._params)

    @torch.no_grad()
    def __call__(self, x: Tensor, state: Tensor | tuple[Tensor, ...] | None = None):
        if self._current_versions() != self._versions:
            self._prepare()
        unbatched = x.dim() == 1
        if unbatched:
            x = x.unsqueeze(0)
        if x.dim() != 2 or x.shape[-1] != self.layer.input_size:
            raise ValueError(f"Stepper: expected x of shape (B, {self.layer.input_size}), got {tuple(x.shape)}")
        sizes = self.layer.cells[0].state_sizes
        L, B = self.layer.num_layers, x.shape[0]
        if state is None:
            state = tuple(x.new_zeros(L, B, s) for s in sizes)
        else:
            state = (state,) if isinstance(state, Tensor) else tuple(state)
            if unbatched:
                state = tuple(s.unsqueeze(1) for s in state)
        finals = []
        for k, kernel in enumerate(self.kernels):
            b = self.b_in[k]
            xw = torch.mm(x, self.W_ih_t[k]) if b is None else torch.addmm(b, x, self.W_ih_t[k])  # (B, G)
            new = kernel.step(xw, tuple(s[k] for s in state), self.weights[k])
            x = new[0]
            finals.append(new)
        if L == 1:
            new_state = tuple(s.unsqueeze(0) for s in finals[0])
        else:
            new_state = tuple(torch.stack(s) for s in zip(*finals))
        if unbatched:
            x, new_state = x.squeeze(0), tuple(s.squeeze(1) for s in new_state)
        return x, (new_state[0] if len(new_state) == 1 else new_state)
