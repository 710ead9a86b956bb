"""The ``"fused"`` engine: one direction of one layer is one call of the operator ``rnnkit::sequence``.

Depth and direction are :func:`rnnkit.engines.stack.run_stack`'s, as for every engine. Per (layer,
direction) the engine hands the cell's configuration and parameters to the operator (:mod:`.ops`), which
packs the weights and runs the whole sequence in C — every step's tile products and pointwise update, and
on the way back the reverse walk, then the weight gradients as a few large GEMMs — and returns the output
sequence and final states (each with its own gradient path) and the buffers, whose views are the gates
(``return_gates=True``).

It runs every built-in cell with any named activation, ``proj_size``, both GRU forms, ``lengths=`` and
``return_gates``, in float32 and float64 on the CPU (the MGU, run on the GRU's kernels, needs a sigmoid or
hard-sigmoid gate). minGRU and minLSTM run as one input projection and a parallel scan over time
(:mod:`.scan`, torch ops). An arbitrary callable activation or a user subclass of
a cell (whose equations the kernels cannot know) is reported by :meth:`FusedEngine.unsupported`, and
``"auto"`` falls back to the reference loop. Where the native kernels cannot be built, the engine runs the
reference loop instead and says so once (:func:`.build.announce_fallback`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from rnnkit.engines.fused import build, ops
from rnnkit.engines.fused.scan import SCAN_CELLS, run_scan
from rnnkit.engines.fused.specs import SPECS, act_code
from rnnkit.engines.fused.stepper import ONE_CALL, kept_stepper
from rnnkit.engines.registry import ENGINES, RunResult, exporting_onnx, func_transforms_active, register_engine
from rnnkit.engines.stack import run_stack
from rnnkit.regularisers import in_loop_unsupported, kernel_args

if TYPE_CHECKING:
    from rnnkit.layer import Recurrent

_ACTIVATION_ATTRS = ("activation", "recurrent_activation", "output_activation")
#: below this many time steps "auto" leaves a cell torch also has to torch: the per-call set-up dominates
AUTO_MIN_STEPS = 16


def bf16_products(x: Tensor) -> bool:
    """Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` on a CPU with AVX512_BF16, the kernels take the
    products' operands in bf16 (float32 accumulation, state and weights); elsewhere they stay in float32."""
    return (
        x.dtype == torch.float32
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and torch.ops.rnnkit_c.bf16_products()
    )


class FusedEngine:
    name = "fused"

    def unsupported(self, layer: Recurrent, x: Tensor, return_gates: bool) -> str | None:
        cell = layer.cells[0]
        in_loop = in_loop_unsupported(layer)  # zoneout, recurrent dropout: inside every step
        if type(cell) in SCAN_CELLS:  # the scan is torch ops: any device, any float dtype
            if in_loop is not None:
                return f"the scan of {type(cell).__name__} has no in-loop regularisers: {in_loop}"
        else:
            if type(cell) not in SPECS:
                return f"no fused kernel for {type(cell).__name__} (the built-in cells that have one, not subclasses)"
            reason = getattr(SPECS[type(cell)], "unsupported", lambda cell: None)(cell)
            if reason is not None:
                return reason
            for attr in _ACTIVATION_ATTRS:
                fn = getattr(cell, attr, None)
                if fn is not None and act_code(fn) is None:
                    return f"{attr}={fn!r} is not a named activation, so it has no hand-written derivative"
            if in_loop is not None and not getattr(SPECS[type(cell)], "regularisers", False):
                return f"the fused kernels of {type(cell).__name__} have no in-loop regularisers: {in_loop}"
            regs = getattr(layer, "regularisers", None)
            if return_gates and regs is not None and (regs.zoneout or regs.zoneout_cell):
                return "return_gates with zoneout: the kernels keep the zoned states, the reference reports the cell's"
            one_gate = SPECS[type(cell)].name in ("elman", "jordan")
            if regs is not None and regs.zoneout and not layer.training and one_gate:
                if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in layer.parameters())):
                    # the one-gate kernels' backward would recover the candidate state from the expectation by a
                    # division, which is not exact at a piecewise activation's kink (relu): the reference loop is
                    return "a gradient through zoneout's expectation (evaluation mode) of a one-gate cell"
            if x.device.type != "cpu":
                return f"the fused kernels run on CPU tensors, not {x.device.type}"
            if x.dtype not in (torch.float32, torch.float64):
                return f"the fused kernels compute in float32 or float64, not {x.dtype}"
        if torch.compiler.is_compiling():
            return None  # dynamo/export see the operator (and use functorch themselves: the checks below would lie)
        if exporting_onnx():
            return "torch.onnx.export records torch ops only and cannot see inside rnnkit's kernels"
        if func_transforms_active():
            return "torch.func transforms (vmap, grad, jacrev) need the reference loop's plain torch ops"
        return None

    def declines_auto(self, layer: Recurrent, x: Tensor, return_gates: bool) -> bool:
        """Leave to torch's kernels what they were measured faster at (docs/engines.md)."""
        if layer.cells[0].torch_mode() is None or return_gates:
            return False  # torch cannot run it: fused is the fast path
        if x.shape[0] == 1 and steppable(layer, x, return_gates):
            return False  # one step without a gradient (a decoding loop): the layer's kept stepper
        other = ENGINES.get("torch")
        if other is not None and other.unsupported(layer, x, return_gates) is not None:
            return False  # e.g. zoneout or recurrent dropout, which torch's kernels cannot run either
        if build.unavailable() is not None:
            return True  # without the native kernels, torch's own beat the reference loop
        if torch.compiler.is_compiling():
            return False  # one opaque operator per layer and direction: no graph breaks, no recompiles
        # the sequence kernels beat torch's once the per-call set-up (packing the weights) is paid off
        return x.shape[0] < AUTO_MIN_STEPS

    def run(
        self, layer: Recurrent, x: Tensor, hx: tuple[Tensor, ...], lengths: Tensor | None, return_gates: bool
    ) -> RunResult:
        if type(layer.cells[0]) in SCAN_CELLS:  # minGRU, minLSTM: a parallel scan over time (no native kernels)
            return run_scan(layer, x, hx, lengths, return_gates)
        if build.unavailable() is not None:
            build.announce_fallback("the fused engine")
            return ENGINES["reference"].run(layer, x, hx, lengths, return_gates)
        if x.shape[0] == 1 and lengths is None and steppable(layer, x, return_gates):
            stepper = kept_stepper(layer, layer)  # made on the first such call, packed again when a weight changes
            if stepper is not None:
                final = stepper.step_checked(x[0], hx)  # the layer has checked x and the state
                return final[0][-1:].clone(), final, None  # a copy: torch's output does not share memory with h_n
        return run_by_operator(layer, x, hx, lengths, return_gates, bf16=bf16_products(x))


def steppable(layer: Recurrent, x: Tensor, return_gates: bool) -> bool:
    """Whether a one-step call can go to the layer's kept :class:`~.stepper.Stepper` (one native call for the
    whole stack, weights packed once instead of on every call, as a decoding loop makes them): no gradient is wanted
    (``torch.no_grad``/``inference_mode``), plain eager float32/float64 on the CPU without bf16 autocast, one
    direction, a cell the stepper runs in one native call, and nothing random (no dropout between layers or
    regulariser in training mode)."""
    spec = SPECS.get(type(layer.cells[0]))
    regs = getattr(layer, "regularisers", None)
    return (
        not torch.is_grad_enabled()
        and not return_gates
        and spec is not None
        and spec.name in ONE_CALL
        and not layer.bidirectional
        and not (layer.training and (layer.dropout > 0 or (regs is not None and regs.any())))
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and not torch.is_autocast_enabled("cpu")
        and ops.plain_eager([x])
    )


def run_by_operator(
    layer: Recurrent,
    x: Tensor,
    hx: tuple[Tensor, ...],
    lengths: Tensor | None,
    return_gates: bool,
    sequence: Any = None,
    bf16: bool = False,
) -> RunResult:
    """Depth and direction (:func:`run_stack`), each (layer, direction) one call of ``rnnkit::sequence``
    (:func:`.ops.call_sequence`) — or of ``sequence``, another callable with its signature (the Triton engine) —
    which returns the output sequence, the final states and the buffers that give the gates (``spec.outputs``)."""
    call = sequence or ops.call_sequence
    masks = getattr(layer, "call_masks", None)
    # a traced graph must not depend on the grad mode it was traced under (torch.jit.trace checks it)
    grad = torch.is_grad_enabled() or torch.jit.is_tracing()

    def one(k: int, inp: Tensor, state: tuple[Tensor, ...], mask: Tensor | None) -> Any:
        cell = layer.cells[k]
        spec = SPECS[type(cell)]
        config, params = spec.config_and_params(cell, layer.weights(k))
        keep = return_gates or (grad and any(t.requires_grad for t in (inp, *state, *params)))
        # contiguous here (the kernels would copy it anyway): the input is saved for the backward, and a
        # compiled graph must see the same layout as its trace (a batch-first input is a transposed view)
        inp = inp.contiguous()
        reg = kernel_args(masks, k, state[0])  # zoneout, recurrent dropout: inside the kernels' time loop
        low = bf16 and spec.bf16_products(config)
        extra = {"reg": reg} if reg else {}
        # the output rows and final states come with gradient paths of their own (ops.op_outputs); the gates are
        # views of the buffers
        out, finals, buffers = call(spec.name, config, inp, list(state), params, lengths, keep, low, **extra)
        if mask is not None:  # outputs past a sequence's end are zero
            out = torch.where(mask, out, 0.0)
        named = None
        if return_gates:  # views of the buffers, made only when asked for (a dozen views cost ~20 µs a call)
            gates = spec.outputs(config, buffers)[2]
            if mask is not None:  # and so are the gates
                gates = [torch.where(mask, g, 0.0) for g in gates]
            named = dict(zip(cell.gate_names, gates, strict=True))
        return out, tuple(finals), named

    return run_stack(layer, x, hx, lengths, return_gates, one)


register_engine(FusedEngine(), auto_priority=0)  # first, but declines_auto() defers to "torch" where it is faster
