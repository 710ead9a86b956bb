"""The fused engine as real PyTorch operators: ``rnnkit::sequence``, its backward, and ``rnnkit::dropout``.

``torch.ops.rnnkit.sequence(cell, config, x, state, params, lengths, keep, bf16, reg)`` runs one direction of one
layer of any built-in cell over a whole sequence (``cell`` names a spec of :mod:`.specs`; ``config`` and
``params`` come from its ``config_and_params``; ``reg`` is ``[]`` or the in-loop regularisers, ``[zone, rmask]``,
tensors so that a new seed per call is data, not a recompile) and returns the output rows (T, B, S), the final
states (B, ·) each, then the spec's buffers (:func:`op_outputs`). Because it is a
``torch.library`` operator with a fake (shape-only) implementation and a registered autograd formula,
``torch.compile`` sees one node per call instead of a graph break, ``torch.export`` records it, and
``torch.jit.trace`` keeps it. Its backward is the operator ``rnnkit::sequence_backward`` (the C kernels'
reverse walk).

Double backward (``create_graph=True``: gradient penalties, ``gradgradcheck``) works too: when autograd
asks for a differentiable backward, the gradients are recomputed through the cell's readable step (the
reference loop) under autograd, which can be differentiated again — slower, and exact.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from rnnkit.engines.fused import build
from rnnkit.engines.fused.specs import BY_NAME
from rnnkit.engines.registry import func_transforms_active
from rnnkit.engines.triton.dispatch import register_cuda

# ---- the sequence operator -------------------------------------------------------------------------------


def sequence_impl(
    cell: str,
    config: Sequence[int],
    x: Tensor,
    state: Sequence[Tensor],
    params: Sequence[Tensor],
    lengths: Tensor | None,
    keep: bool,
    bf16: bool,
    reg: Sequence[Tensor],
) -> list[Tensor]:
    """One direction of one layer: x (T, B, F), state (B, S) each -> the spec's buffers (see specs.py).
    ``bf16``: the matrix products take bf16 operands (float32 accumulation, state and buffers). (No argument
    has a default: the dispatcher drops arguments equal to their defaults, which autograd's bookkeeping of
    the inputs' structure does not expect.)"""
    if build.unavailable() is not None:  # loads the kernels in a fresh process (e.g. a loaded exported program)
        raise RuntimeError(f"rnnkit::sequence: the native kernels are unavailable ({build.unavailable()})")
    spec, config = BY_NAME[cell], list(config)
    extra = {"reg": list(reg)} if reg else {}  # only the specs with in-loop regularisers take it
    return spec.run(config, spec.pack(config, list(params), bf16), x, list(state), lengths, keep, bf16, **extra)


def op_outputs(buffers: list[Tensor], n_state: int) -> list[Tensor]:
    """The operator's outputs from a kernel's buffers: the output rows ``Hs[1:]`` (T, B, S), the final states
    (row T of each state buffer), then the buffers. The rows and finals are copies — an operator's outputs may not
    alias one another — so that their gradients reach the backward as they are: through views of the buffers a
    compiled graph would zero-fill (T + 1)-row gradients and scatter them in (a tenth of a d2l GRU step)."""
    return [buffers[0][1:].clone(), *(buffers[k][-1].clone() for k in range(n_state)), *buffers]


@functools.wraps(sequence_impl)  # the operator's schema comes from sequence_impl's signature
def _sequence_op(*args: Any) -> list[Tensor]:
    return op_outputs(sequence_impl(*args), len(args[3]))


sequence = torch.library.custom_op("rnnkit::sequence", mutates_args=(), device_types="cpu")(_sequence_op)


@sequence.register_fake
def _(cell, config, x, state, params, lengths, keep, bf16, reg):
    shapes = BY_NAME[cell].buffer_shapes(list(config), x, list(state), keep)
    rows, finals = (shapes[0][0] - 1, *shapes[0][1:]), [shapes[k][1:] for k in range(len(state))]
    return [x.new_empty(s) for s in (rows, *finals, *shapes)]


def sequence_backward_impl(
    cell: str,
    config: Sequence[int],
    x: Tensor,
    state: Sequence[Tensor],
    params: Sequence[Tensor],
    lengths: Tensor | None,
    buffers: Sequence[Tensor],
    grads: Sequence[Tensor],
    needs: Sequence[bool],
    bf16: bool,
    reg: Sequence[Tensor],
) -> list[Tensor]:
    """Gradients of (x, *state, *params) from those of the buffers; an empty tensor where ``needs`` is False
    (and an empty gradient means "not used")."""
    spec, args = BY_NAME[cell], (list(config), x, list(state), list(params), lengths, list(buffers), list(grads))
    res = spec.backward(*args, list(needs), bf16, **({"reg": list(reg)} if reg else {}))
    return [g if (n and g is not None) else x.new_empty(0) for g, n in zip(res, needs, strict=True)]


sequence_backward = torch.library.custom_op("rnnkit::sequence_backward", mutates_args=(), device_types="cpu")(
    sequence_backward_impl
)


@sequence_backward.register_fake
def _(cell, config, x, state, params, lengths, buffers, grads, needs, bf16, reg):
    like = [x, *state, *params]  # the gradients are contiguous, whatever the inputs' strides
    return [t.new_empty(t.shape) if n else x.new_empty(0) for t, n in zip(like, needs, strict=True)]


def _setup(ctx: Any, inputs: tuple, buffers: list[Tensor], takes_rows: bool) -> None:
    """``takes_rows``: whether the backward implementation reads a state's gradient as rows 1..T alone (the C
    kernels do; the Triton ones and the double-backward recomputation take all T + 1)."""
    cell, config, x, state, params, lengths, keep, bf16, reg = inputs
    ctx.cell, ctx.config, ctx.n_state, ctx.keep, ctx.bf16 = cell, list(config), len(state), keep, bf16
    ctx.needs = [t.requires_grad for t in (x, *state, *params)]
    ctx.has_lengths = lengths is not None
    ctx.n_reg = len(reg)
    ctx.save_for_backward(x, *state, *params, *([lengths] if lengths is not None else []), *reg, *buffers)
    ctx.n_params = len(params)
    ctx.state_shapes = [buffers[k].shape for k in range(len(state))]
    ctx.takes_rows = takes_rows
    ctx.set_materialize_grads(False)  # an unused output's gradient stays None: no zero-filled (T, B, ·) tensors


def _fold(ctx: Any, grads: Sequence[Tensor | None]) -> list[Tensor | None]:
    """The buffers' gradients, given those of all outputs (rows, finals, buffers): the rows' and the finals'
    folded into their state buffer's — as rows 1..T alone where the backward takes them and nothing else is
    there, else as all T + 1 rows."""
    n = ctx.n_state
    g_rows, g_finals, g_bufs = grads[0], grads[1 : 1 + n], list(grads[1 + n :])
    takes_rows = ctx.takes_rows and not torch.is_grad_enabled()
    for k in range(n):
        rows, final, whole = (g_rows if k == 0 else None), g_finals[k], g_bufs[k]
        if rows is None and final is None:
            continue
        if whole is None and rows is not None and takes_rows and rows.shape[0]:
            g_bufs[k] = rows if final is None else torch.cat([rows[:-1], (rows[-1] + final).unsqueeze(0)])
            continue
        if whole is None:
            whole = (final if rows is None else rows).new_zeros(ctx.state_shapes[k])
        if rows is not None:
            whole = torch.cat([whole[:1], whole[1:] + rows])
        if final is not None:
            whole = torch.cat([whole[:-1], (whole[-1] + final).unsqueeze(0)])
        g_bufs[k] = whole
    return g_bufs


def _input_grads(ctx: Any, grads: list[Tensor | None], backward_impl: Any) -> list[Tensor | None]:
    """The gradients of (x, *state, *params) from the saved tensors and those of the buffers."""
    saved = list(ctx.saved_tensors)
    n_in = 1 + ctx.n_state + ctx.n_params
    x, state, params = saved[0], saved[1 : 1 + ctx.n_state], saved[1 + ctx.n_state : n_in]
    lengths = saved[n_in] if ctx.has_lengths else None
    reg = saved[n_in + ctx.has_lengths : n_in + ctx.has_lengths + ctx.n_reg]
    buffers = saved[n_in + ctx.has_lengths + ctx.n_reg :]
    if torch.is_grad_enabled():  # create_graph=True: a backward that autograd can differentiate again
        return _differentiable_backward(ctx, x, state, params, lengths, grads, reg)
    grads = [x.new_empty(0) if g is None else g for g in grads]
    res = backward_impl(ctx.cell, ctx.config, x, state, params, lengths, buffers, grads, ctx.needs, ctx.bf16, reg)
    return [g if n else None for g, n in zip(res, ctx.needs, strict=True)]


def _setup_op(ctx: Any, inputs: tuple, output: list[Tensor]) -> None:
    _setup(ctx, inputs, output[1 + len(inputs[3]) :], takes_rows=inputs[2].device.type == "cpu")


def _backward(ctx: Any, grads: list[Tensor | None]) -> tuple:
    res = _input_grads(ctx, _fold(ctx, grads), torch.ops.rnnkit.sequence_backward)
    no_reg = [None] * ctx.n_reg  # the masks and the seed take no gradient
    return None, None, res[0], res[1 : 1 + ctx.n_state], res[1 + ctx.n_state :], None, None, None, no_reg


torch.library.register_autograd("rnnkit::sequence", _backward, setup_context=_setup_op)


@torch.library.register_vmap("rnnkit::sequence_backward")
def _(info: Any, in_dims: tuple, *args: Any) -> tuple:
    """Batched gradients (``torch.autograd.grad(..., is_grads_batched=True)``, gradcheck's batched check, vmap
    over a backward): one backward per element of the batch, stacked."""

    def pick(value: Any, dim: Any, i: int) -> Any:
        if isinstance(value, (list, tuple)):
            dims = dim if isinstance(dim, (list, tuple)) else [dim] * len(value)
            return [pick(v, d, i) for v, d in zip(value, dims, strict=True)]
        return value if dim is None or not isinstance(value, Tensor) else value.select(dim, i)

    results = [torch.ops.rnnkit.sequence_backward(*pick(list(args), list(in_dims), i)) for i in range(info.batch_size)]
    stacked = [torch.stack([r[k] for r in results]) for k in range(len(results[0]))]
    return stacked, [0] * len(stacked)


class _Direct(torch.autograd.Function):
    """``rnnkit::sequence`` without the dispatcher: the same implementation, outputs, saved tensors and backward
    (:func:`_setup`, :func:`_fold`, :func:`_input_grads`), for plain eager calls (:func:`call_sequence`) and for
    the Triton kernels on CPU tensors under their interpreter. The output rows and final states are views of the
    buffers here (no copies), detached: a view of an output would be a second view of one base, which autograd
    forbids. They share the buffers' version counter, so an in-place change of the rows still fails the backward.
    """

    @staticmethod
    def forward(ctx: Any, impls: tuple, cell: str, config: list[int], lengths: Tensor | None, keep: bool,
                bf16: bool, reg: list[Tensor], n_state: int, *tensors: Tensor) -> tuple[Tensor, ...]:  # fmt: skip
        x, state, params = tensors[0], list(tensors[1 : 1 + n_state]), list(tensors[1 + n_state :])
        buffers = impls[0](cell, config, x, state, params, lengths, keep, bf16, reg)
        inputs = (cell, config, x, state, params, lengths, keep, bf16, reg)
        _setup(ctx, inputs, buffers, takes_rows=impls[1] is sequence_backward_impl)
        ctx.backward_impl = impls[1]
        return tuple(t.detach() for t in _views(buffers, n_state)) + tuple(buffers)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple:
        # under vmap (autograd.grad(..., is_grads_batched=True), as gradcheck does) the operator's batching rule
        impl = torch.ops.rnnkit.sequence_backward if func_transforms_active() else ctx.backward_impl
        return (None,) * 8 + tuple(_input_grads(ctx, _fold(ctx, grads), impl))


def _views(buffers: list[Tensor], n_state: int) -> list[Tensor]:
    """The output rows and the final states as views of the buffers."""
    return [buffers[0][1:], *(buffers[k][-1] for k in range(n_state))]


def plain_eager(tensors: Sequence[Tensor]) -> bool:
    """True where nothing records or transforms a call on ``tensors`` (no torch.compile, export, jit.trace,
    dispatch or function mode, tensor subclass): there an operator's implementation may be called directly."""
    return (
        not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and torch._C._len_torch_dispatch_stack() == 0
        and torch._C._len_torch_function_stack() == 0
        and all(type(t) in (Tensor, torch.nn.Parameter) for t in tensors)
    )


def call_sequence(cell: str, config: list[int], x: Tensor, state: list[Tensor], params: list[Tensor],
                  lengths: Tensor | None, keep: bool, bf16: bool,
                  impls: tuple | None = None,
                  reg: list[Tensor] | None = None) -> tuple[Tensor, list[Tensor], list[Tensor]]:  # fmt: skip
    """``torch.ops.rnnkit.sequence(...)``, or in plain eager mode the same implementation called directly — the
    dispatcher and the custom-operator wrappers cost ~60 µs a call, a tenth of a small layer's. Whatever records
    or transforms the call (torch.compile, torch.export, jit.trace, a dispatch or function mode, tensor
    subclasses) sees the operator. ``impls``: another (forward, backward) implementation pair (the Triton
    kernels under their CPU interpreter), always called directly. ``reg``: the in-loop regularisers (specs.py).

    Returns the output sequence (T, B, S), the final states and the buffers; the first two with gradient paths
    of their own (:func:`op_outputs`)."""
    tensors, n = [x, *state, *params], len(state)
    reg = list(reg or [])
    if impls is None and (x.device.type != "cpu" or not plain_eager(tensors)):  # CUDA: the Triton kernels
        outs = torch.ops.rnnkit.sequence(cell, config, x, state, params, lengths, keep, bf16, reg)
        return outs[0], list(outs[1 : 1 + n]), list(outs[1 + n :])
    impls = impls or (sequence_impl, sequence_backward_impl)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        rows, *rest = _Direct.apply(impls, cell, config, lengths, keep, bf16, reg, n, *tensors)
        return rows, rest[:n], rest[n:]
    with torch.no_grad():
        buffers = impls[0](cell, config, x, state, params, lengths, keep, bf16, reg)
    rows, *finals = _views(buffers, n)
    return rows, finals, buffers


# CUDA tensors: the Triton kernels (rnnkit.engines.triton), same buffers, so the fake and autograd above serve both
register_cuda(sequence, sequence_backward, op_outputs)


def reference_buffers(cell: str, config: list[int], x: Tensor, state: list[Tensor], params: list[Tensor],
                      lengths: Tensor | None, reg: Sequence[Tensor] = ()) -> list[Tensor]:  # fmt: skip
    """The buffers of ``rnnkit::sequence`` computed by stepping the equivalent rnnkit cell (differentiable), with
    the in-loop regularisers ``reg`` (specs.py) as the reference loop applies them.

    Only the buffers a caller can see are recomputed (states and gates); the kernels' private ones (the
    LSTM's ``M``, the GRU's ``HN``) come back as ``None``: no gradient flows into them from outside.
    """
    spec = BY_NAME[cell]
    T, B, F = x.shape
    w = spec.weights(config, params)
    gates = getattr(spec, "n_gates", None) or {"lstm": 4, "gru": 3, "mgu": 2}.get(spec.name, 1)
    H = config[3] if spec.name == "jordan" else w.weight_ih.shape[0] // gates
    cell_ = spec.make_cell(config, F, H, state[0].shape[-1])
    zoneout = None
    if reg:
        zone, rmask = reg
        w.recurrent_mask = rmask if rmask.numel() else None
        zoneout = _zoneout_from(zone)
    s = tuple(state)
    steps: list[tuple[tuple[Tensor, ...], dict[str, Tensor]]] = []
    for t in range(T):
        new, gates = cell_.step(x[t], s, w)
        if zoneout is not None:
            new = zoneout(t, s, new)
        if lengths is not None:  # finished sequences keep their state
            alive = (t < lengths).unsqueeze(-1)
            new = tuple(torch.where(alive, a, b) for a, b in zip(new, s))
        steps.append((new, gates))
        s = new
    states = [torch.stack([state[k], *(st[k] for st, _ in steps)]) for k in range(len(state))]
    gate = {n: torch.stack([g[n] for _, g in steps]) if T else x.new_empty(0, B, 0) for n in cell_.gate_names}
    if spec.name in ("lnlstm", "lngru"):  # Hs, Cs, G; the kernels' statistics are private
        lstm = spec.name == "lnlstm"
        G = torch.cat([gate[n] for n in ("ifgo" if lstm else "rzn")], -1)
        return [states[0], states[1] if lstm else None, G, *([None] * 7)]
    if spec.name == "lstm":
        G = torch.cat([gate[n] for n in "ifgo"], -1)
        return [states[0], states[1], G, None]
    if spec.name == "gru":
        return [states[0], torch.cat([gate[n] for n in "rzn"], -1), None]
    if spec.name == "mgu":  # the GRU's buffers (specs.MGUSpec): r = f, z = 1 - f
        return [states[0], torch.cat([gate["f"], 1 - gate["f"], gate["n"]], -1), None]
    if spec.name in ("elman", "indrnn"):
        return [states[0]]
    return [states[0], gate["h"]]


def _zoneout_from(zone: Tensor) -> Any:
    """``zoneout(t, old, new)`` from the kernels' zone tensor (p_h, p_c, train, key_h, key_c)."""
    from rnnkit.regularisers import zoneout, zoneout_mask

    p_h, p_c, train, key_h, key_c = zone.tolist()

    def step(t: int, old: tuple[Tensor, ...], new: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        out = list(new)
        for i, (p, key) in enumerate(((p_h, key_h), (p_c, key_c))):
            if p and i < len(new):
                k = torch.tensor([int(key)])
                keep = zoneout_mask(k, t, tuple(new[i].shape), p, new[i].device) if train else p
                out[i] = zoneout(old[i], new[i], keep)
        return tuple(out)

    return step


def _differentiable_backward(ctx: Any, x: Tensor, state: list[Tensor], params: list[Tensor],
                             lengths: Tensor | None, grads: list[Tensor | None],
                             reg: Sequence[Tensor] = ()) -> list[Tensor | None]:  # fmt: skip
    """dL/d(inputs) by recomputing the buffers from the saved inputs through the cell's step, under autograd:
    the gradients are then themselves functions of the inputs (and of ``grads``), differentiable again."""
    inputs = [x, *state, *params]
    bufs = reference_buffers(ctx.cell, ctx.config, x, state, params, lengths, reg)
    outs, gouts = [], []
    for b, g in zip(bufs, grads, strict=True):
        if b is not None and g is not None and g.numel() and b.shape == g.shape:
            outs.append(b)
            gouts.append(g)
    wanted = [t for t, n in zip(inputs, ctx.needs, strict=True) if n]
    got = torch.autograd.grad(outs, wanted, gouts, create_graph=True, allow_unused=True) if outs else []
    it = iter(got)
    res: list[Tensor | None] = []
    for t, need in zip(inputs, ctx.needs, strict=True):
        g = next(it) if need else None
        res.append(torch.zeros_like(t) if need and g is None else g)
    return res


# ---- dropout ---------------------------------------------------------------------------------------------


@torch.library.custom_op("rnnkit::dropout", mutates_args=(), device_types="cpu")
def dropout(x: Tensor, p: float, seed: Tensor) -> Tensor:
    """``x`` with each element kept with probability ``1 - p`` (a hash of ``seed`` and its index) and scaled
    by ``1 / (1 - p)``; 0 < p < 1. ``seed`` is a one-element int64 tensor, so no value leaves the graph."""
    if build.unavailable() is not None:
        raise RuntimeError(f"rnnkit::dropout: the native kernels are unavailable ({build.unavailable()})")
    return torch.ops.rnnkit_c.dropout(x, p, int(seed))


@dropout.register_fake
def _(x, p, seed):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _dropout_setup(ctx: Any, inputs: tuple, output: Tensor) -> None:
    _, ctx.p, seed = inputs
    ctx.save_for_backward(seed)


def _dropout_backward(ctx: Any, grad: Tensor) -> tuple:
    (seed,) = ctx.saved_tensors
    return torch.ops.rnnkit.dropout(grad, ctx.p, seed), None, None  # the same mask and scale


torch.library.register_autograd("rnnkit::dropout", _dropout_backward, setup_context=_dropout_setup)


class _DirectDropout(torch.autograd.Function):
    """``rnnkit::dropout`` without the dispatcher and the custom-operator wrappers, for plain eager calls
    (:func:`call_dropout`): a forward and backward over a 1024 × 256 matrix took 74 µs against the operator's 97."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, p: float, seed: Tensor) -> Tensor:
        ctx.p, ctx.seed = p, int(seed)
        return torch.ops.rnnkit_c.dropout(x, p, ctx.seed)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple:
        if func_transforms_active():  # vmap over the backward: the operator, as before
            return torch.ops.rnnkit.dropout(grad, ctx.p, torch.tensor([ctx.seed])), None, None
        return torch.ops.rnnkit_c.dropout(grad, ctx.p, ctx.seed), None, None  # the same mask and scale


def call_dropout(x: Tensor, p: float, seed: Tensor) -> Tensor:
    """``torch.ops.rnnkit.dropout(x, p, seed)``, or in plain eager mode (:func:`plain_eager`) the same kernel
    called directly. 0 < p < 1; ``seed`` a one-element int64 tensor."""
    if not plain_eager([x, seed]):
        return torch.ops.rnnkit.dropout(x, p, seed)
    if build.unavailable() is not None:
        raise RuntimeError(f"rnnkit::dropout: the native kernels are unavailable ({build.unavailable()})")
    if torch.is_grad_enabled() and x.requires_grad:
        return _DirectDropout.apply(x, p, seed)
    return torch.ops.rnnkit_c.dropout(x, p, int(seed))
