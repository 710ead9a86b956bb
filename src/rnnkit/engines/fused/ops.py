"""The fused engine as real PyTorch operators: ``rnnkit::sequence``, its backward, and ``rnnkit::dropout``.

``torch.ops.rnnkit.sequence(cell, config, x, state, params, lengths, keep, bf16)`` runs one direction of one
layer of any built-in cell over a whole sequence (``cell`` names a spec of :mod:`.specs`; ``config`` and
``params`` come from its ``config_and_params``) and returns the spec's buffers. Because it is a
``torch.library`` operator with a fake (shape-only) implementation and a registered autograd formula,
``torch.compile`` sees one node per call instead of a graph break, ``torch.export`` records it, and
``torch.jit.trace`` keeps it. Its backward is the operator ``rnnkit::sequence_backward`` (the C kernels'
reverse walk).

Double backward (``create_graph=True``: gradient penalties, ``gradgradcheck``) works too: when autograd
asks for a differentiable backward, the gradients are recomputed through the cell's readable step (the
reference loop) under autograd, which can be differentiated again — slower, and exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from rnnkit.engines.fused import build
from rnnkit.engines.fused.specs import BY_NAME
from rnnkit.engines.triton.dispatch import register_cuda

# ---- the sequence operator -------------------------------------------------------------------------------


@torch.library.custom_op("rnnkit::sequence", mutates_args=(), device_types="cpu")
def sequence(
    cell: str,
    config: Sequence[int],
    x: Tensor,
    state: Sequence[Tensor],
    params: Sequence[Tensor],
    lengths: Tensor | None,
    keep: bool,
    bf16: bool,
) -> list[Tensor]:
    """One direction of one layer: x (T, B, F), state (B, S) each -> the spec's buffers (see specs.py).
    ``bf16``: the matrix products take bf16 operands (float32 accumulation, state and buffers). (No argument
    has a default: the dispatcher drops arguments equal to their defaults, which autograd's bookkeeping of
    the inputs' structure does not expect.)"""
    if build.unavailable() is not None:  # loads the kernels in a fresh process (e.g. a loaded exported program)
        raise RuntimeError(f"rnnkit::sequence: the native kernels are unavailable ({build.unavailable()})")
    spec, config = BY_NAME[cell], list(config)
    return spec.run(config, spec.pack(config, list(params), bf16), x, list(state), lengths, keep, bf16)


@sequence.register_fake
def _(cell, config, x, state, params, lengths, keep, bf16):
    shapes = BY_NAME[cell].buffer_shapes(list(config), x, list(state), keep)
    return [x.new_empty(s) for s in shapes]


@torch.library.custom_op("rnnkit::sequence_backward", mutates_args=(), device_types="cpu")
def sequence_backward(
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
) -> list[Tensor]:
    """Gradients of (x, *state, *params) from those of the buffers; an empty tensor where ``needs`` is False
    (and an empty gradient means "not used")."""
    spec, args = BY_NAME[cell], (list(config), x, list(state), list(params), lengths, list(buffers), list(grads))
    res = spec.backward(*args, list(needs), bf16)
    return [g if (n and g is not None) else x.new_empty(0) for g, n in zip(res, needs, strict=True)]


@sequence_backward.register_fake
def _(cell, config, x, state, params, lengths, buffers, grads, needs, bf16):
    like = [x, *state, *params]  # the gradients are contiguous, whatever the inputs' strides
    return [t.new_empty(t.shape) if n else x.new_empty(0) for t, n in zip(like, needs, strict=True)]


def _setup(ctx: Any, inputs: tuple, output: list[Tensor]) -> None:
    cell, config, x, state, params, lengths, keep, bf16 = inputs
    ctx.cell, ctx.config, ctx.n_state, ctx.keep, ctx.bf16 = cell, list(config), len(state), keep, bf16
    ctx.needs = [t.requires_grad for t in (x, *state, *params)]
    ctx.has_lengths = lengths is not None
    ctx.save_for_backward(x, *state, *params, *([lengths] if lengths is not None else []), *output)
    ctx.n_params = len(params)


def _backward(ctx: Any, grads: list[Tensor]) -> tuple:
    saved = list(ctx.saved_tensors)
    n_in = 1 + ctx.n_state + ctx.n_params
    x, state, params = saved[0], saved[1 : 1 + ctx.n_state], saved[1 + ctx.n_state : n_in]
    lengths = saved[n_in] if ctx.has_lengths else None
    buffers = saved[n_in + ctx.has_lengths :]
    if torch.is_grad_enabled():  # create_graph=True: a backward that autograd can differentiate again
        res = _differentiable_backward(ctx, x, state, params, lengths, grads)
    else:
        grads = [x.new_empty(0) if g is None else g for g in grads]
        res = torch.ops.rnnkit.sequence_backward(
            ctx.cell, ctx.config, x, state, params, lengths, buffers, grads, ctx.needs, ctx.bf16
        )
        res = [g if n else None for g, n in zip(res, ctx.needs, strict=True)]
    return None, None, res[0], res[1 : 1 + ctx.n_state], res[1 + ctx.n_state :], None, None, None


torch.library.register_autograd("rnnkit::sequence", _backward, setup_context=_setup)

# CUDA tensors: the Triton kernels (rnnkit.engines.triton), same buffers, so the fake and autograd above serve both
register_cuda(sequence, sequence_backward)


def reference_buffers(cell: str, config: list[int], x: Tensor, state: list[Tensor], params: list[Tensor],
                      lengths: Tensor | None) -> list[Tensor]:  # fmt: skip
    """The buffers of ``rnnkit::sequence`` computed by stepping the equivalent rnnkit cell (differentiable).

    Only the buffers a caller can see are recomputed (states and gates); the kernels' private ones (the
    LSTM's ``M``, the GRU's ``HN``) come back as ``None``: no gradient flows into them from outside.
    """
    spec = BY_NAME[cell]
    T, B, F = x.shape
    w = spec.weights(config, params)
    H = config[3] if spec.name == "jordan" else w.weight_ih.shape[0] // {"lstm": 4, "gru": 3, "elman": 1}[spec.name]
    cell_ = spec.make_cell(config, F, H, state[0].shape[-1])
    s = tuple(state)
    steps: list[tuple[tuple[Tensor, ...], dict[str, Tensor]]] = []
    for t in range(T):
        new, gates = cell_.step(x[t], s, w)
        if lengths is not None:  # finished sequences keep their state
            alive = (t < lengths).unsqueeze(-1)
            new = tuple(torch.where(alive, a, b) for a, b in zip(new, s))
        steps.append((new, gates))
        s = new
    states = [torch.stack([state[k], *(st[k] for st, _ in steps)]) for k in range(len(state))]
    gate = {n: torch.stack([g[n] for _, g in steps]) if T else x.new_empty(0, B, 0) for n in cell_.gate_names}
    if spec.name == "lstm":
        G = torch.cat([gate[n] for n in "ifgo"], -1)
        return [states[0], states[1], G, None]
    if spec.name == "gru":
        return [states[0], torch.cat([gate[n] for n in "rzn"], -1), None]
    if spec.name == "elman":
        return [states[0]]
    return [states[0], gate["h"]]


def _differentiable_backward(ctx: Any, x: Tensor, state: list[Tensor], params: list[Tensor],
                             lengths: Tensor | None, grads: list[Tensor | None]) -> list[Tensor | None]:  # fmt: skip
    """dL/d(inputs) by recomputing the buffers from the saved inputs through the cell's step, under autograd:
    the gradients are then themselves functions of the inputs (and of ``grads``), differentiable again."""
    inputs = [x, *state, *params]
    bufs = reference_buffers(ctx.cell, ctx.config, x, state, params, lengths)
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
