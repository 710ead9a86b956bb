"""The seam between the one training loop and a task (language modelling, forecasting, translation…).

The loop owns optimisation, clipping, schedules, evaluation cadence, logging and checkpoints; a task
owns its data, its loss and its metrics. A task is any object with these members.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn


@runtime_checkable
class Task(Protocol):
    #: short name used in logs and checkpoint metadata ("lm", "forecast", …)
    name: str
    #: what the third value of :meth:`loss` counts ("tokens", "sequences"…), shown as ``<unit>/s``; optional
    #: (the loop says "units" when a task has none)
    unit: str

    def train_batches(self, generator: torch.Generator) -> Iterator[Any]:
        """An endless iterator over training batches, drawn with ``generator`` (so resuming is exact)."""
        ...

    def loss(self, model: nn.Module, batch: Any, state: Any) -> tuple[Tensor, Any, int]:
        """Mean training loss on ``batch``, the state to carry to the next batch (detached) or None,
        and the number of units (tokens, samples) in the batch, for throughput."""
        ...

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Metrics on the validation split; must include ``"loss"`` (lower is better: picks the best checkpoint)."""
        ...

    def metadata(self) -> dict[str, Any]:
        """JSON-ready facts a checkpoint needs to rebuild the task's side (vocabulary, scaler, corpus fingerprint…)."""
        ...
