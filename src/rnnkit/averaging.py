"""An exponential moving average of a model's weights, for evaluation and the best checkpoint.

After each optimiser step ``t`` (counted from 1) every parameter's average moves toward it::

    d_t = min(decay, t / (t + 10))        # a short ramp: early averages do not remember the random init
    θ̄_t = d_t · θ̄_{t-1} + (1 - d_t) · θ_t

Evaluating the average instead of the last iterate smooths out the noise of the final steps, as Polyak
averaging (Polyak & Juditsky 1992) and the averaged SGD of AWD-LSTM (Merity et al. 2018) do; Keras
optimisers expose the same idea as ``use_ema``/``ema_momentum`` and timm as ``ModelEmaV2``. The average
is float32 like the master weights (bf16 autocast only changes the products), and a convex combination of
weights that each respected a cell's bound (IndRNN's ``recurrent_max``) respects it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

PREFIX = "ema."  # the averages' names among a checkpoint's extra tensors


class WeightAverage:
    """The running average of ``model``'s trainable parameters (a copy of each, on the same device)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight average's decay must be in (0, 1), e.g. 0.999, got {decay!r}")
        self.decay = decay
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.average = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the weights after optimiser step ``step`` (1 for the first)."""
        d = min(self.decay, step / (step + 10.0))
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1.0 - d)

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block and its own again after it."""
        with torch.no_grad():
            live = [p.detach().clone() for p in self.params]
            torch._foreach_copy_([p.detach() for p in self.params], self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.detach() for p in self.params], live)

    def tensors(self) -> dict[str, Tensor]:
        """The averages by parameter name, for a checkpoint's extra tensors."""
        return {PREFIX + n: a for n, a in zip(self.names, self.average)}

    def load(self, tensors: dict[str, Tensor]) -> bool:
        """Restore the averages from a checkpoint's tensors; False (nothing changed) if it holds none."""
        found = [PREFIX + n in tensors for n in self.names]
        if not any(found):
            return False
        if not all(found):
            missing = [n for n, f in zip(self.names, found) if not f]
            raise ValueError(f"the checkpoint's weight average lacks {', '.join(missing[:5])}: it is not this model's")
        with torch.no_grad():
            for n, a in zip(self.names, self.average):
                a.copy_(tensors[PREFIX + n])
        return True
