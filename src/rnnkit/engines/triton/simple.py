"""Elman and Jordan layers as Triton kernels: forward and backward over a sequence.

Elman (torch.nn.RNN): ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``, one phase per step.
Jordan (:class:`rnnkit.cells.JordanCell`): ``h_t = act(W_ih x_t + b_ih + W_yh y_{t-1} + b_yh)``, then
``y_t = out_act(W_hy h_t + b_hy)``; the state is ``y``, and the output layer needs all of ``h_t``: two
phases. Buffers and gradients follow :class:`~rnnkit.engines.fused.specs.ElmanSpec` and
:class:`~rnnkit.engines.fused.specs.JordanSpec`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from rnnkit.engines.triton.jit import (
    act,
    act_grad,
    alive_rows,
    grad_or_none,
    input_grads,
    input_projection,
    load2,
    mm,
    precision,
    recurrent_grads,
    store2,
    walk,
    weight_grad,
)


@triton.jit(do_not_specialize=["t0"])  # no recompiles as t0 moves
def elman_fwd(XP, W, LEN, Hs, B, H, t0, n_steps, tiles_a, tiles_b, tiles_c, ACT: tl.constexpr, HAS_LEN: tl.constexpr,
              PREC: tl.constexpr, DIR: tl.constexpr, BB: tl.constexpr, DO_A: tl.constexpr, DO_B: tl.constexpr,
              DO_C: tl.constexpr, BU: tl.constexpr, BK: tl.constexpr):  # fmt: skip
    rows = tl.program_id(0) * BB + tl.arange(0, BB)
    rmask = rows < B
    for i in range(n_steps):
        t = tl.cast(t0 + DIR * i, tl.int64)
        alive = alive_rows(LEN, rows, rmask, t, HAS_LEN)
        hp = Hs + t * B * H
        for j in range(tiles_a):
            cols = (tl.program_id(1) * tiles_a + j) * BU + tl.arange(0, BU)
            cm = cols < H
            pre = mm(load2(XP + t * B * H, rows, rmask, cols, cm, H, 1), hp, H, rows, rmask, H, W, 1, H, cols, cm, BK,
                     PREC)  # fmt: skip
            h_prev = load2(hp, rows, rmask, cols, cm, H, 1)
            store2(hp + B * H, tl.where(alive, act(pre, ACT), h_prev), rows, rmask, cols, cm, H)
        tl.debug_barrier()


@triton.jit(do_not_specialize=["t0"])  # no recompiles as t0 moves
def elman_bwd(Hs, W, LEN, GH, R, DPRE, B, H, t0, n_steps, tiles_a, tiles_b, tiles_c, ACT: tl.constexpr,
              HAS_LEN: tl.constexpr, PREC: tl.constexpr, DIR: tl.constexpr, BB: tl.constexpr, DO_A: tl.constexpr,
              DO_B: tl.constexpr, DO_C: tl.constexpr, BU: tl.constexpr, BK: tl.constexpr):  # fmt: skip
    """Phase A: dPre_t = dL/dh_t ⊙ act'(h_t) (0 past the end, where dL/dh_t passes to h_{t-1} unchanged);
    phase B: dL/dh_{t-1} += dPre_t W_hh."""
    rows = tl.program_id(0) * BB + tl.arange(0, BB)
    rmask = rows < B
    for i in range(n_steps):
        t = tl.cast(t0 + DIR * i, tl.int64)
        alive = alive_rows(LEN, rows, rmask, t, HAS_LEN)
        cur, nxt, dp = R + ((t + 1) % 2) * B * H, R + (t % 2) * B * H, DPRE + t * B * H
        if DO_A:
            for j in range(tiles_a):
                cols = (tl.program_id(1) * tiles_a + j) * BU + tl.arange(0, BU)
                cm = cols < H
                d = load2(cur, rows, rmask, cols, cm, H, 1) + load2(GH + (t + 1) * B * H, rows, rmask, cols, cm, H, 1)
                h = load2(Hs + (t + 1) * B * H, rows, rmask, cols, cm, H, 1)
                store2(dp, tl.where(alive, d * act_grad(h, ACT), 0.0), rows, rmask, cols, cm, H)
                store2(nxt, tl.where(alive, 0.0, d), rows, rmask, cols, cm, H)
            tl.debug_barrier()
        if DO_B:
            for j in range(tiles_b):
                cols = (tl.program_id(1) * tiles_b + j) * BU + tl.arange(0, BU)
                cm = cols < H
                dh = mm(load2(nxt, rows, rmask, cols, cm, H, 1), dp, H, rows, rmask, H, W, H, 1, cols, cm, BK, PREC)
                store2(nxt, dh, rows, rmask, cols, cm, H)
            tl.debug_barrier()


@triton.jit(do_not_specialize=["t0"])  # no recompiles as t0 moves
def jordan_fwd(XP, WY, WH, BHY, LEN, Ys, Hh, B, H, O, t0, n_steps, tiles_a, tiles_b, tiles_c, ACT: tl.constexpr,
               OUT: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_LEN: tl.constexpr, PREC: tl.constexpr,
               DIR: tl.constexpr, BB: tl.constexpr, DO_A: tl.constexpr, DO_B: tl.constexpr, DO_C: tl.constexpr,
               BU: tl.constexpr, BK: tl.constexpr):  # fmt: skip
    """Phase A: h_t (all rows: an ended row's h is masked out later); phase B: y_t, carried past the end."""
    rows = tl.program_id(0) * BB + tl.arange(0, BB)
    rmask = rows < B
    for i in range(n_steps):
        t = tl.cast(t0 + DIR * i, tl.int64)
        alive = alive_rows(LEN, rows, rmask, t, HAS_LEN)
        yp, h_t = Ys + t * B * O, Hh + t * B * H
        if DO_A:
            for j in range(tiles_a):
                cols = (tl.program_id(1) * tiles_a + j) * BU + tl.arange(0, BU)
                cm = cols < H
                pre = mm(load2(XP + t * B * H, rows, rmask, cols, cm, H, 1), yp, O, rows, rmask, O, WY, 1, O, cols, cm,
                         BK, PREC)  # fmt: skip
                store2(h_t, act(pre, ACT), rows, rmask, cols, cm, H)
            tl.debug_barrier()
        if DO_B:
            for j in range(tiles_b):
                cols = (tl.program_id(1) * tiles_b + j) * BU + tl.arange(0, BU)
                cm = cols < O
                pre = tl.zeros((BB, BU), dtype=Ys.dtype.element_ty)
                if HAS_BIAS:
                    pre += tl.load(BHY + cols, mask=cm, other=0.0)[None, :]
                pre = mm(pre, h_t, H, rows, rmask, H, WH, 1, H, cols, cm, BK, PREC)
                y_prev = load2(yp, rows, rmask, cols, cm, O, 1)
                store2(yp + B * O, tl.where(alive, act(pre, OUT), y_prev), rows, rmask, cols, cm, O)
            tl.debug_barrier()


@triton.jit(do_not_specialize=["t0"])  # no recompiles as t0 moves
def jordan_bwd(Ys, Hh, WY, WH, LEN, GY, GHH, R, DPRE, DPY, B, H, O, t0, n_steps, tiles_a, tiles_b, tiles_c,
               ACT: tl.constexpr, OUT: tl.constexpr, HAS_GH: tl.constexpr, HAS_LEN: tl.constexpr, PREC: tl.constexpr,
               DIR: tl.constexpr, BB: tl.constexpr, DO_A: tl.constexpr, DO_B: tl.constexpr, DO_C: tl.constexpr,
               BU: tl.constexpr, BK: tl.constexpr):  # fmt: skip
    """Phase A (units of y): dPreY_t = dL/dy_t ⊙ out_act'(y_t); phase B (units of h): dPre_t = (dPreY_t W_hy +
    the gradient reaching h_t from outside) ⊙ act'(h_t); phase C: dL/dy_{t-1} += dPre_t W_yh."""
    rows = tl.program_id(0) * BB + tl.arange(0, BB)
    rmask = rows < B
    for i in range(n_steps):
        t = tl.cast(t0 + DIR * i, tl.int64)
        alive = alive_rows(LEN, rows, rmask, t, HAS_LEN)
        cur, nxt = R + ((t + 1) % 2) * B * O, R + (t % 2) * B * O
        dpy, dp = DPY + t * B * O, DPRE + t * B * H
        if DO_A:
            for j in range(tiles_a):
                cols = (tl.program_id(1) * tiles_a + j) * BU + tl.arange(0, BU)
                cm = cols < O
                d = load2(cur, rows, rmask, cols, cm, O, 1) + load2(GY + (t + 1) * B * O, rows, rmask, cols, cm, O, 1)
                y = load2(Ys + (t + 1) * B * O, rows, rmask, cols, cm, O, 1)
                store2(dpy, tl.where(alive, d * act_grad(y, OUT), 0.0), rows, rmask, cols, cm, O)
                store2(nxt, tl.where(alive, 0.0, d), rows, rmask, cols, cm, O)
            tl.debug_barrier()
        if DO_B:
            for j in range(tiles_b):
                cols = (tl.program_id(1) * tiles_b + j) * BU + tl.arange(0, BU)
                cm = cols < H
                dh = tl.zeros((BB, BU), dtype=Ys.dtype.element_ty)
                if HAS_GH:
                    dh += load2(GHH + t * B * H, rows, rmask, cols, cm, H, 1)
                dh = mm(dh, dpy, O, rows, rmask, O, WH, H, 1, cols, cm, BK, PREC)
                h = load2(Hh + t * B * H, rows, rmask, cols, cm, H, 1)
                store2(dp, tl.where(alive, dh * act_grad(h, ACT), 0.0), rows, rmask, cols, cm, H)
            tl.debug_barrier()
        if DO_C:
            for j in range(tiles_c):
                cols = (tl.program_id(1) * tiles_c + j) * BU + tl.arange(0, BU)
                cm = cols < O
                dy = mm(load2(nxt, rows, rmask, cols, cm, O, 1), dp, H, rows, rmask, H, WY, O, 1, cols, cm, BK, PREC)
                store2(nxt, dy, rows, rmask, cols, cm, O)
            tl.debug_barrier()


def elman_forward(config: list[int], params: list[Tensor], x: Tensor, state: list[Tensor], lengths: Tensor | None,
                  keep: bool) -> list[Tensor]:  # fmt: skip
    (T, B, _), H = x.shape, state[0].shape[-1]
    XP = input_projection(x, params[0], params[2] + params[3] if config[1] else None)
    Hs = x.new_empty(T + 1, B, H)
    Hs[0] = state[0]
    args = (XP, params[1].contiguous(), XP if lengths is None else lengths, Hs, B, H)
    walk(elman_fwd, args, B, T, [H], False, depths=[H], ACT=config[0], HAS_LEN=lengths is not None, PREC=precision(x))
    return [Hs]


def elman_backward(config: list[int], x: Tensor, state: list[Tensor], params: list[Tensor], lengths: Tensor | None,
                   buffers: list[Tensor], grads: list[Tensor | None],
                   needs: list[bool]) -> list[Tensor | None]:  # fmt: skip
    (Hs,), gHs = buffers, grad_or_none(grads[0])
    gHs = torch.zeros_like(Hs) if gHs is None else gHs.contiguous()
    T, B, H = Hs.shape[0] - 1, Hs.shape[1], Hs.shape[2]
    R, dPre = recurrent_grads(B, H, Hs), Hs.new_empty(T, B, H)
    args = (Hs, params[1].contiguous(), Hs if lengths is None else lengths, gHs, R, dPre, B, H)
    walk(elman_bwd, args, B, T, [H, H], True, depths=[H], ACT=config[0], HAS_LEN=lengths is not None,
         PREC=precision(Hs))  # fmt: skip
    dx, dW_ih = input_grads([needs[0], needs[2]], dPre, x, params[0])
    res = [dx, R[0] + gHs[0], dW_ih, weight_grad(dPre, Hs[:-1])]
    if config[1]:
        db = dPre.sum((0, 1))
        res += [db, db.clone()]
    return res


def jordan_forward(config: list[int], params: list[Tensor], x: Tensor, state: list[Tensor], lengths: Tensor | None,
                   keep: bool) -> list[Tensor]:  # fmt: skip
    (T, B, _), O, H = x.shape, state[0].shape[-1], config[3]
    W_ih, W_yh, W_hy = params[:3]
    bias, b_hy = (params[3] + params[4], params[5]) if config[2] else (None, None)
    XP = input_projection(x, W_ih, bias)
    Ys, Hh = x.new_empty(T + 1, B, O), x.new_empty(T, B, H)
    Ys[0] = state[0]
    LEN = XP if lengths is None else lengths
    args = (XP, W_yh.contiguous(), W_hy.contiguous(), XP if b_hy is None else b_hy.contiguous(), LEN, Ys, Hh, B, H, O)
    walk(jordan_fwd, args, B, T, [H, O], False, depths=[O, H], ACT=config[0], OUT=config[1], HAS_BIAS=b_hy is not None,
         HAS_LEN=lengths is not None, PREC=precision(x))  # fmt: skip
    return [Ys, Hh]


def jordan_backward(config: list[int], x: Tensor, state: list[Tensor], params: list[Tensor], lengths: Tensor | None,
                    buffers: list[Tensor], grads: list[Tensor | None],
                    needs: list[bool]) -> list[Tensor | None]:  # fmt: skip
    W_ih, W_yh, W_hy = params[:3]
    Ys, Hh = buffers
    gYs, gHh = (grad_or_none(g) for g in grads)
    gYs = torch.zeros_like(Ys) if gYs is None else gYs.contiguous()
    (T, B, H), O = Hh.shape, Ys.shape[-1]
    R, dPre, dPreY = recurrent_grads(B, O, Hh), Hh.new_empty(T, B, H), Hh.new_empty(T, B, O)
    args = (Ys, Hh, W_yh.contiguous(), W_hy.contiguous(), Hh if lengths is None else lengths, gYs,
            Hh if gHh is None else gHh.contiguous(), R, dPre, dPreY, B, H, O)  # fmt: skip
    walk(jordan_bwd, args, B, T, [O, H, O], True, depths=[O, H], ACT=config[0], OUT=config[1], HAS_GH=gHh is not None,
         HAS_LEN=lengths is not None, PREC=precision(Hh))  # fmt: skip
    dx, dW_ih = input_grads([needs[0], needs[2]], dPre, x, W_ih)
    res = [dx, R[0] + gYs[0], dW_ih, weight_grad(dPre, Ys[:-1]), weight_grad(dPreY, Hh)]
    if config[2]:
        db = dPre.sum((0, 1))
        res += [db, db.clone(), dPreY.sum((0, 1))]
    return res
