"""The engine registry: interchangeable ways to run a :class:`~rnnkit.layer.Recurrent` layer over a sequence.

Every engine takes the same normalised problem and returns the same answer:

* ``x`` — input (T, B, F), time-major, already validated;
* ``hx`` — tuple of initial state tensors, each (num_layers * num_directions, B, S);
* ``lengths`` — (B,) int64 on ``x.device`` or ``None`` (every sequence has length T);
* returns ``(output (T, B, D*S0), final_states (tuple like hx), gates or None)`` where ``gates`` maps each
  of the cell's ``gate_names`` to a tensor (num_layers * num_directions, T, B, size).

The reference engine defines the numbers; every other engine must match it (float64 tests).
``"auto"`` tries :data:`AUTO_ORDER` and takes the first engine that supports the call — including what the
call needs beyond the numbers (``torch.func`` transforms, ONNX export by tracing), so it never picks an
engine that would fail or export something wrong. This module imports no engine: engines import it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

if TYPE_CHECKING:
    from rnnkit.layer import Recurrent

RunResult = tuple[Tensor, tuple[Tensor, ...], "dict[str, Tensor] | None"]


class Engine(Protocol):
    name: str

    def unsupported(self, layer: Recurrent, x: Tensor, return_gates: bool) -> str | None:
        """``None`` if this engine can run the call, else a short reason why not."""

    def run(
        self, layer: Recurrent, x: Tensor, hx: tuple[Tensor, ...], lengths: Tensor | None, return_gates: bool
    ) -> RunResult: ...

    # Optional: ``declines_auto(layer, x, return_gates) -> bool`` — True where the engine can run the call but
    # was measured slower than a later engine in AUTO_ORDER, so ``"auto"`` should pass it over.


ENGINES: dict[str, Engine] = {}
#: the order in which ``engine="auto"`` tries engines, fastest first; the reference loop is the fallback
AUTO_ORDER: list[str] = []


def register_engine(engine: Engine, *, auto_priority: int | None = None) -> None:
    """Make ``engine`` selectable by name; with ``auto_priority`` also a candidate for ``"auto"`` (0 = first)."""
    ENGINES[engine.name] = engine
    if auto_priority is not None:
        if engine.name in AUTO_ORDER:
            AUTO_ORDER.remove(engine.name)
        AUTO_ORDER.insert(min(auto_priority, len(AUTO_ORDER)), engine.name)


def check_engine_name(name: str) -> str:
    if name != "auto" and name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}: use one of {', '.join(['auto', *ENGINES])}")
    return name


def select_engine(layer: Recurrent, x: Tensor, return_gates: bool) -> Engine:
    """The engine that will run this call: the named one (or a clear error), or the first that fits for auto."""
    name = layer.engine
    if name != "auto":
        engine = ENGINES[check_engine_name(name)]
        reason = engine.unsupported(layer, x, return_gates)
        if reason is not None:
            raise ValueError(f"engine={name!r} cannot run this call: {reason}; use engine='auto' or 'reference'")
        return engine
    for candidate in AUTO_ORDER:
        engine = ENGINES[candidate]
        declines = getattr(engine, "declines_auto", None)
        if declines is not None and declines(layer, x, return_gates):
            continue
        if engine.unsupported(layer, x, return_gates) is None:
            return engine
    return ENGINES["reference"]


# ---- what a call needs beyond the numbers --------------------------------------------------------------


def func_transforms_active() -> bool:
    """Whether a ``torch.func`` transform (``vmap``, ``grad``, ``jacrev``…) is wrapping this call."""
    peek = getattr(getattr(torch._C, "_functorch", None), "peek_interpreter_stack", None)
    return peek is not None and peek() is not None


def exporting_onnx() -> bool:
    """Whether ``torch.onnx.export`` is tracing this call (its TorchScript path records torch ops only)."""
    onnx = sys.modules.get("torch.onnx")  # imported by whoever exports; importing it here would be slow
    return onnx is not None and bool(getattr(onnx, "is_in_onnx_export", lambda: False)())
