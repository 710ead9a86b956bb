"""Activation functions by name, as Keras names them.

Cells accept either one of these names or any callable ``Tensor -> Tensor``.
Two piecewise-linear sigmoids go by the name "hard sigmoid", and the difference matters when weights move
between frameworks:

* ``hard_sigmoid`` is ``clip(x / 6 + 1/2, 0, 1)`` = ``relu6(x + 3) / 6``: torch's ``hardsigmoid`` and Keras 3's
  ``hard_sigmoid`` (ONNX ``HardSigmoid`` with ``alpha=1/6``);
* ``hard_sigmoid_keras2`` is ``clip(0.2 x + 1/2, 0, 1)``: what ``hard_sigmoid`` meant in Keras 2 / tf.keras
  (ONNX ``HardSigmoid``'s default ``alpha=0.2``), for weights trained there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Activation = Callable[[torch.Tensor], torch.Tensor]


def identity(x: torch.Tensor) -> torch.Tensor:
    """The linear activation ``a(x) = x`` (the cell input/output activation of Hung-yi Lee's worked example)."""
    return x


def hard_sigmoid_keras2(x: torch.Tensor) -> torch.Tensor:
    """Keras 2's hard sigmoid, ``clip(0.2 x + 0.5, 0, 1)`` (steeper than Keras 3's and torch's ``x / 6 + 0.5``)."""
    return (0.2 * x + 0.5).clamp(0.0, 1.0)


#: slope of each named hard sigmoid (both have offset 1/2): ONNX HardSigmoid's alpha
HARD_SIGMOID_SLOPES = {"hard_sigmoid": 1.0 / 6.0, "hard_sigmoid_keras2": 0.2}

ACTIVATIONS: dict[str, Activation] = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "identity": identity,
    "linear": identity,
    "hard_sigmoid": F.hardsigmoid,
    "hard_sigmoid_keras2": hard_sigmoid_keras2,
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
