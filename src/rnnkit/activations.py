"""Activation functions by name, as Keras names them.

Cells accept either one of these names or any callable ``Tensor -> Tensor``.
``hard_sigmoid`` is ``relu6(x + 3) / 6`` (torch's ``hardsigmoid`` and Keras 3's definition).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Activation = Callable[[torch.Tensor], torch.Tensor]


def identity(x: torch.Tensor) -> torch.Tensor:
    """The linear activation ``a(x) = x`` (the cell input/output activation of Hung-yi Lee's worked example)."""
    return x


ACTIVATIONS: dict[str, Activation] = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "identity": identity,
    "linear": identity,
    "hard_sigmoid": F.hardsigmoid,
}


def get_activation(spec: str | Activation, *, what: str = "activation") -> Activation:
    """Resolve ``spec`` (a name from :data:`ACTIVATIONS` or a callable) to a callable."""
    if callable(spec):
        return spec
    if isinstance(spec, str) and spec in ACTIVATIONS:
        return ACTIVATIONS[spec]
    names = ", ".join(sorted(ACTIVATIONS))
    raise ValueError(f"unknown {what} {spec!r}: use one of {names}, or pass a callable")


def activation_name(fn: Activation) -> str | None:
    """The canonical name of ``fn`` if it is one of the named activations, else ``None``."""
    for name, f in ACTIVATIONS.items():
        if f is fn and name != "linear":
            return name
    return None
