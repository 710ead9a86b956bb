"""Engines: interchangeable ways to run a :class:`~rnnkit.layer.Recurrent` layer over a whole sequence.

* ``"reference"`` (:mod:`.reference`) — the readable loop over the cell's step; it defines the numbers;
* ``"torch"`` (:mod:`.torch_rnn`) — torch's own fused kernels, for the cells torch has;
* ``"fused"`` (:mod:`.fused`) — rnnkit's whole-sequence kernels as torch operators, every built-in cell;
* ``"triton"`` (:mod:`.triton`) — the same operators' CUDA kernels, in Triton, every built-in cell on the GPU;
* ``"auto"`` — the fastest that supports the call (:func:`.registry.select_engine`).

The registry (:mod:`.registry`) imports no engine; importing this package registers the built-in ones.
"""

# registration order is auto's tie-break order: reference, then torch, then fused ahead of torch
from rnnkit.engines import reference, torch_rnn  # noqa: F401
from rnnkit.engines.fused import engine as _fused_engine  # noqa: F401
from rnnkit.engines.registry import (
    AUTO_ORDER,
    ENGINES,
    Engine,
    RunResult,
    check_engine_name,
    register_engine,
    select_engine,
)
from rnnkit.engines.triton import engine as _triton_engine  # noqa: F401

__all__ = ["AUTO_ORDER", "ENGINES", "Engine", "RunResult", "check_engine_name", "register_engine", "select_engine"]
