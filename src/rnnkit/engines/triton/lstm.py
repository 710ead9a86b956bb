"""The LSTM (peepholes and projection optional) as Triton kernels: forward and backward over a sequence.

The equations are :class:`rnnkit.cells.LSTMCell`'s and :class:`~rnnkit.cells.PeepholeLSTMCell`'s (torch's gate
order i, f, g, o; σ = the recurrent activation):
``i = σ(Wx_i + Wh_i + w_ci ⊙ c_{t-1})``, ``f = σ(… + w_cf ⊙ c_{t-1})``, ``g = act(…)``, ``c_t = f c_{t-1} + i g``,
``o = σ(… + w_co ⊙ c_t)``, ``m_t = o act(c_t)``, ``h_t = m_t`` or ``W_hr m_t`` with a projection. The input
projection of every step is one GEMM first (:func:`.jit.input_projection`); per step, phase A computes the
four gates of a tile of units from ``h_{t-1} W_hhᵀ`` and updates ``c``; with a projection, phase B computes
``h_t = W_hr m_t`` (it needs all of ``m_t``). Buffers and gradients follow
:class:`rnnkit.engines.fused.specs.LSTMSpec`, so the same spec and autograd serve both kernels.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from rnnkit.engines.fused.specs import LSTMSpec
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
def lstm_fwd(XP, W, WR, PEEP, LEN, Hs, Cs, G, M, B, H, S, t0, n_steps, tiles_a, tiles_b, tiles_c,
             ACT: tl.constexpr, REC: tl.constexpr, PEEPHOLE: tl.constexpr, PROJ: tl.constexpr, KEEP: tl.constexpr,
             HAS_LEN: tl.constexpr, PREC: tl.constexpr, DIR: tl.constexpr, BB: tl.constexpr, DO_A: tl.constexpr,
             DO_B: tl.constexpr, DO_C: tl.constexpr, BU: tl.constexpr, BK: tl.constexpr):  # fmt: skip
    rows = tl.program_id(0) * BB + tl.arange(0, BB)
    rmask = rows < B
    H4 = 4 * H
    for i in range(n_steps):
        t = tl.cast(t0 + DIR * i, tl.int64)
        alive = alive_rows(LEN, rows, rmask, t, HAS_LEN)
        hp = Hs + t * B * S  # h_{t-1}
        if DO_A:
            xp, cp = XP + t * B * H4, Cs + t * B * H
            for j in range(tiles_a):
                cols = (tl.program_id(1) * tiles_a + j) * BU + tl.arange(0, BU)
                cm = cols < H
                # gate k's pre-activation: x_t W_ihᵀ + b (precomputed) + h_{t-1} W_hhᵀ, W_hh's rows k·H + cols
                pi = mm(load2(xp, rows, rmask, cols, cm, H4, 1), hp, S, rows, rmask, S, W, 1, S, cols, cm, BK, PREC)
                pf = mm(load2(xp + H, rows, rmask, cols, cm, H4, 1), hp, S, rows, rmask, S, W + H * S, 1, S, cols, cm,
                        BK, PREC)  # fmt: skip
                pg = mm(load2(xp + 2 * H, rows, rmask, cols, cm, H4, 1), hp, S, rows, rmask, S, W + 2 * H * S, 1, S,
                        cols, cm, BK, PREC)  # fmt: skip
                po = mm(load2(xp + 3 * H, rows, rmask, cols, cm, H4, 1), hp, S, rows, rmask, S, W + 3 * H * S, 1, S,
                        cols, cm, BK, PREC)  # fmt: skip
                c_prev = load2(cp, rows, rmask, cols, cm, H, 1)
                if PEEPHOLE:
                    pi += tl.load(PEEP + cols, mask=cm, other=0.0)[None, :] * c_prev
                    pf += tl.load(PEEP + H + cols, mask=cm, other=0.0)[None, :] * c_prev
                gi, gf, gg = act(pi, REC), act(pf, REC), act(pg, ACT)
                c = gf * c_prev + gi * gg
                if PEEPHOLE:
                    po += tl.load(PEEP + 2 * H + cols, mask=cm, other=0.0)[None, :] * c
                go = act(po, REC)
                m = go * act(c, ACT)
                store2(cp + B * H, tl.where(alive, c, c_prev), rows, rmask, cols, cm, H)  # ended: carried
                if PROJ:
                    store2(M + t * B * H, tl.where(alive, m, 0.0), rows, rmask, cols, cm, H)
                else:
                    h_prev = load2(hp, rows, rmask, cols, cm, S, 1)
                    store2(hp + B * S, tl.where(alive, m, h_prev), rows, rmask, cols, cm, S)
                if KEEP:  # gates past a sequence's end are zero
                    gt = G + t * B * H4
                    store2(gt, tl.where(alive, gi, 0.0), rows, rmask, cols, cm, H4)
                    store2(gt + H, tl.where(alive, gf, 0.0), rows, rmask, cols, cm, H4)
                    store2(gt + 2 * H, tl.where(alive, gg, 0.0), rows, rmask, cols, cm, H4)
                    store2(gt + 3 * H, tl.where(alive, go, 0.0), rows, rmask, cols, cm, H4)
            tl.debug_barrier()
        if DO_B:  # the projection h_t = W_hr m_t (all of m_t is written); ended sequences keep h_{t-1}
            for j in range(tiles_b):
                cols = (tl.program_id(1) * tiles_b + j) * BU + tl.arange(0, BU)
                cm = cols < S
                h = tl.zeros((BB, BU), dtype=Hs.dtype.element_ty)
                h = mm(h, M + t * B * H, H, rows, rmask, H, WR, 1, H, cols, cm, BK, PREC)
                h_prev = load2(hp, rows, rmask, cols, cm, S, 1)
                store2(hp + B * S, tl.where(alive, h, h_prev), rows, rmask, cols, cm, S)
            tl.debug_barrier()


@triton.jit(do_not_specialize=["t0"])  # no recompiles as t0 moves
def lstm_bwd(G, Cs, W, WR, PEEP, LEN, GH, GC, GG, R, DC, DPRE, DHT, B, H, S, t0, n_steps, tiles_a, tiles_b, tiles_c,
             ACT: tl.constexpr, REC: tl.constexpr, PEEPHOLE: tl.constexpr, PROJ: tl.constexpr, HAS_GC: tl.constexpr,
             HAS_GG: tl.constexpr, HAS_LEN: tl.constexpr, PREC: tl.constexpr, DIR: tl.constexpr, BB: tl.constexpr,
             DO_A: tl.constexpr, DO_B: tl.constexpr, DO_C: tl.constexpr, BU: tl.constexpr,
             BK: tl.constexpr):  # fmt: skip
    """Step t from the last: phase A, per tile of units: dL/dm_t (through W_hr with a projection), the gates'
    pre-activation gradients dPre_t and dL/dc_{t-1} (kept in DC); phase B, per tile of h's units:
    dL/dh_{t-1} = dPre_t W_hh (plus dL/dh_t itself where the sequence has ended: the state was carried)."""
    rows = tl.program_id(0) * BB + tl.arange(0, BB)
    rmask = rows < B
    H4 = 4 * H
    for i in range(n_steps):
        t = tl.cast(t0 + DIR * i, tl.int64)
        alive = alive_rows(LEN, rows, rmask, t, HAS_LEN)
        cur, nxt = R + ((t + 1) % 2) * B * S, R + (t % 2) * B * S  # dL/dh_t from step t + 1; dL/dh_{t-1}
        gh = GH + (t + 1) * B * S  # dL/dh_t from outside the recurrence
        if DO_A:
            gt, dp = G + t * B * H4, DPRE + t * B * H4
            for j in range(tiles_a):
                cols = (tl.program_id(1) * tiles_a + j) * BU + tl.arange(0, BU)
                cm = cols < H
                if PROJ:  # dL/dm_t = dL/dh_t W_hr
                    dm = tl.zeros((BB, BU), dtype=G.dtype.element_ty)
                    dm = mm(dm, cur, S, rows, rmask, S, WR, H, 1, cols, cm, BK, PREC)
                    dm = mm(dm, gh, S, rows, rmask, S, WR, H, 1, cols, cm, BK, PREC)
                else:
                    dm = load2(cur, rows, rmask, cols, cm, S, 1) + load2(gh, rows, rmask, cols, cm, S, 1)
                gi, gf = load2(gt, rows, rmask, cols, cm, H4, 1), load2(gt + H, rows, rmask, cols, cm, H4, 1)
                gg = load2(gt + 2 * H, rows, rmask, cols, cm, H4, 1)
                go = load2(gt + 3 * H, rows, rmask, cols, cm, H4, 1)
                c_prev = load2(Cs + t * B * H, rows, rmask, cols, cm, H, 1)
                c = load2(Cs + (t + 1) * B * H, rows, rmask, cols, cm, H, 1)
                dc_next = load2(DC, rows, rmask, cols, cm, H, 1)
                if HAS_GC:
                    dc_next += load2(GC + (t + 1) * B * H, rows, rmask, cols, cm, H, 1)
                ei, ef, eg, eo = 0.0, 0.0, 0.0, 0.0  # gradients reaching the gates from outside
                if HAS_GG:
                    ge = GG + t * B * H4
                    ei, ef = load2(ge, rows, rmask, cols, cm, H4, 1), load2(ge + H, rows, rmask, cols, cm, H4, 1)
                    eg = load2(ge + 2 * H, rows, rmask, cols, cm, H4, 1)
                    eo = load2(ge + 3 * H, rows, rmask, cols, cm, H4, 1)
                tc = act(c, ACT)
                dpo = (dm * tc + eo) * act_grad(go, REC)
                dc = dc_next + dm * go * act_grad(tc, ACT)  # dL/dc_t
                if PEEPHOLE:
                    dc += dpo * tl.load(PEEP + 2 * H + cols, mask=cm, other=0.0)[None, :]
                dpi = (dc * gg + ei) * act_grad(gi, REC)
                dpf = (dc * c_prev + ef) * act_grad(gf, REC)
                dpg = (dc * gi + eg) * act_grad(gg, ACT)
                dc_prev = dc * gf
                if PEEPHOLE:
                    dc_prev += dpi * tl.load(PEEP + cols, mask=cm, other=0.0)[None, :]
                    dc_prev += dpf * tl.load(PEEP + H + cols, mask=cm, other=0.0)[None, :]
                store2(DC, tl.where(alive, dc_prev, dc_next), rows, rmask, cols, cm, H)  # ended: passes through
                store2(dp, tl.where(alive, dpi, 0.0), rows, rmask, cols, cm, H4)
                store2(dp + H, tl.where(alive, dpf, 0.0), rows, rmask, cols, cm, H4)
                store2(dp + 2 * H, tl.where(alive, dpg, 0.0), rows, rmask, cols, cm, H4)
                store2(dp + 3 * H, tl.where(alive, dpo, 0.0), rows, rmask, cols, cm, H4)
            tl.debug_barrier()
        if DO_B:
            for j in range(tiles_b):
                cols = (tl.program_id(1) * tiles_b + j) * BU + tl.arange(0, BU)
                cm = cols < S
                d = load2(cur, rows, rmask, cols, cm, S, 1) + load2(gh, rows, rmask, cols, cm, S, 1)
                dh = mm(tl.where(alive, 0.0, d), DPRE + t * B * H4, H4, rows, rmask, H4, W, S, 1, cols, cm, BK, PREC)
                store2(nxt, dh, rows, rmask, cols, cm, S)
                if PROJ:
                    store2(DHT + t * B * S, d, rows, rmask, cols, cm, S)
            tl.debug_barrier()


def forward(config: list[int], params: list[Tensor], x: Tensor, state: list[Tensor], lengths: Tensor | None,
            keep: bool) -> list[Tensor]:  # fmt: skip
    """The buffers of :class:`~rnnkit.engines.fused.specs.LSTMSpec`: Hs, Cs, G (or (0,)), M (or (0,))."""
    W_ih, W_hh, b_ih, b_hh, W_hr, peep = LSTMSpec._unpack(config, params)
    (T, B, _), (h0, c0) = x.shape, state
    S, H, proj = h0.shape[-1], c0.shape[-1], W_hr is not None
    XP = input_projection(x, W_ih, None if b_ih is None else b_ih + b_hh)
    Hs, Cs = x.new_empty(T + 1, B, S), x.new_empty(T + 1, B, H)
    Hs[0], Cs[0] = h0, c0
    G = x.new_empty(T, B, 4 * H) if keep else x.new_empty(0)
    M = x.new_empty(T, B, H) if proj else x.new_empty(0)
    W = W_hh.contiguous()
    WR = W_hr.contiguous() if proj else W
    P = torch.stack(peep) if peep is not None else XP
    args = (XP, W, WR, P, XP if lengths is None else lengths, Hs, Cs, G if keep else XP, M if proj else XP, B, H, S)
    walk(lstm_fwd, args, B, T, [H, S] if proj else [H], False, depths=[S, H], ACT=config[0], REC=config[1],
         PEEPHOLE=peep is not None, PROJ=proj, KEEP=keep, HAS_LEN=lengths is not None, PREC=precision(x))  # fmt: skip
    return [Hs, Cs, G, M]


def backward(config: list[int], x: Tensor, state: list[Tensor], params: list[Tensor], lengths: Tensor | None,
             buffers: list[Tensor], grads: list[Tensor | None], needs: list[bool]) -> list[Tensor | None]:  # fmt: skip
    """Gradients of (x, h0, c0, *params), as :meth:`LSTMSpec.backward` returns them."""
    W_ih, W_hh, b_ih, _, W_hr, peep = LSTMSpec._unpack(config, params)
    Hs, Cs, G, M = buffers
    gHs, gCs, gG, _ = (grad_or_none(g) for g in grads)
    gHs = torch.zeros_like(Hs) if gHs is None else gHs.contiguous()
    T, B, H4 = G.shape
    H, S, proj = H4 // 4, Hs.shape[-1], W_hr is not None
    R, DC = recurrent_grads(B, S, G), G.new_zeros(B, H)
    dPre = G.new_empty(T, B, H4)
    dHt = G.new_empty(T, B, S) if proj else dPre
    W = W_hh.contiguous()
    WR = W_hr.contiguous() if proj else W
    P = torch.stack(peep) if peep is not None else G
    args = (G, Cs, W, WR, P, G if lengths is None else lengths, gHs, G if gCs is None else gCs.contiguous(),
            G if gG is None else gG.contiguous(), R, DC, dPre, dHt, B, H, S)  # fmt: skip
    walk(lstm_bwd, args, B, T, [H, S], True, depths=[S, H4], ACT=config[0], REC=config[1], PEEPHOLE=peep is not None,
         PROJ=proj, HAS_GC=gCs is not None, HAS_GG=gG is not None, HAS_LEN=lengths is not None,
         PREC=precision(G))  # fmt: skip
    dh0 = R[0] + gHs[0]
    dc0 = DC + gCs[0] if gCs is not None else DC
    dx, dW_ih = input_grads([needs[0], needs[3]], dPre, x, W_ih)
    res = [dx, dh0, dc0, dW_ih, weight_grad(dPre, Hs[:-1])]  # dW_hh = Σ_t dPre_tᵀ h_{t-1}
    if b_ih is not None:
        db = dPre.sum((0, 1))
        res += [db, db.clone()]
    if proj:
        res.append(weight_grad(dHt, M))  # dW_hr = Σ_t dh_tᵀ m_t
    if peep is not None:
        res += [(dPre[..., :H] * Cs[:-1]).sum((0, 1)), (dPre[..., H : 2 * H] * Cs[:-1]).sum((0, 1)),
                (dPre[..., 3 * H :] * Cs[1:]).sum((0, 1))]  # fmt: skip
    return res
