"""The ``"triton"`` engine: the fused engine's operator ``rnnkit::sequence`` with Triton kernels on the GPU.

Per (layer, direction) it makes the same call as the ``"fused"`` engine, ``torch.ops.rnnkit.sequence``,
whose CUDA kernel is the Triton implementation (:mod:`.dispatch`): the cell's specs, buffers, outputs,
masking, autograd formula and fake tensors are the fused engine's, so ``torch.compile`` and
``torch.export`` see one operator on every device. It runs every built-in cell with any named activation,
``proj_size``, both GRU forms, ``lengths=`` and ``return_gates``, in float32 and float64.

On CPU tensors it runs only under Triton's interpreter (``TRITON_INTERPRET=1``), which executes the very
same kernels with NumPy: that is how the test suite checks them on machines without a GPU. ``"auto"``
never takes it there (the C kernels are the CPU's fast path); on CUDA, ``"auto"`` takes torch's cuDNN
kernels for the cells torch has and this engine for everything else (peephole LSTM, Jordan,
``GRU(reset_after=False)``, other activations, ``return_gates``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from rnnkit.engines.fused.engine import _ACTIVATION_ATTRS, run_by_operator
from rnnkit.engines.fused.specs import SPECS, act_code
from rnnkit.engines.registry import RunResult, exporting_onnx, func_transforms_active, register_engine
from rnnkit.engines.triton.dispatch import interpreted, interpreting, unavailable

if TYPE_CHECKING:
    from rnnkit.layer import Recurrent

#: the specs (:mod:`rnnkit.engines.fused.specs`) that have Triton kernels (:data:`.impl.KERNELS`; not imported
#: here, since that imports Triton)
TRITON_CELLS = ("lstm", "gru", "elman", "jordan")


def cell_unsupported(layer: Recurrent) -> str | None:
    """Why the kernels cannot compute this layer's cell (whatever the device), or ``None``."""
    cell = layer.cells[0]
    if type(cell) not in SPECS or SPECS[type(cell)].name not in TRITON_CELLS:
        return f"no Triton kernel for {type(cell).__name__} (only the built-in cells that have one, not subclasses)"
    for attr in _ACTIVATION_ATTRS:
        fn = getattr(cell, attr, None)
        if fn is not None and act_code(fn) is None:
            return f"{attr}={fn!r} is not a named activation, so it has no hand-written derivative"
    return unavailable()


class TritonEngine:
    name = "triton"

    def unsupported(self, layer: Recurrent, x: Tensor, return_gates: bool) -> str | None:
        reason = cell_unsupported(layer)
        if reason is not None:
            return reason
        if x.device.type == "cpu" and not interpreting():
            return "the Triton kernels run on CUDA tensors (on CPU ones: TRITON_INTERPRET=1 before importing triton)"
        if x.device.type not in ("cpu", "cuda"):
            return f"the Triton kernels run on CUDA tensors, not {x.device.type}"
        if x.dtype not in (torch.float32, torch.float64):
            return f"the Triton kernels compute in float32 or float64, not {x.dtype}"
        if torch.compiler.is_compiling():
            return None if x.device.type == "cuda" else "torch.compile cannot trace Triton's CPU interpreter"
        if exporting_onnx():
            return "torch.onnx.export records torch ops only and cannot see inside rnnkit's kernels"
        if func_transforms_active():
            return "torch.func transforms (vmap, grad, jacrev) need the reference loop's plain torch ops"
        return None

    def declines_auto(self, layer: Recurrent, x: Tensor, return_gates: bool) -> bool:
        """On the CPU the interpreter gives the right numbers, thousands of times slower than the C kernels."""
        return self.interpreted(x)

    def interpreted(self, x: Tensor) -> bool:
        """Whether a call on ``x`` would run under Triton's CPU interpreter (``rnnkit bench`` skips it)."""
        return x.device.type != "cuda"

    def run(
        self, layer: Recurrent, x: Tensor, hx: tuple[Tensor, ...], lengths: Tensor | None, return_gates: bool
    ) -> RunResult:
        on_gpu = x.device.type == "cuda"
        if on_gpu:
            from rnnkit.engines.fused import ops  # noqa: F401  (the operators, with their CUDA kernels)
        return run_by_operator(layer, x, hx, lengths, return_gates, sequence=None if on_gpu else interpreted)


register_engine(TritonEngine(), auto_priority=99)  # last: after torch's cuDNN kernels, for what they lack
