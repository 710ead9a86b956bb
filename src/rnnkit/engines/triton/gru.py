"""The GRU in both forms as Triton kernels: forward and backward over a sequence.

Gate order r, z, n (torch.nn.GRU); σ = the recurrent activation; ``h_t = n + z (h_{t-1} - n)``.
Reset after (torch's): ``n = act(W_in x + b_in + r ⊙ (W_hn h + b_hn))``, one phase per step (``HN`` keeps
``W_hn h + b_hn``). Reset before (Cho et al. 2014): ``n = act(W_in x + b_in + W_hn (r ⊙ h) + b_hn)``: phase A
computes r, z and ``r ⊙ h`` (kept in ``HN``), phase B the product with all of ``r ⊙ h``, then n and h.
Buffers and gradients follow :class:`rnnkit.engines.fused.specs.GRUSpec`. Without ``keep`` the gates are not
saved, but the reset-before form still passes r, z and ``r ⊙ h`` between its phases: through one step's worth
of scratch (a time stride of 0).
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
def gru_fwd(XP, W, BHH, LEN, Hs, G, HN, sG, B, H, t0, n_steps, tiles_a, tiles_b, tiles_c,
            ACT: tl.constexpr, REC: tl.constexpr, AFTER: tl.constexpr, HAS_BIAS: tl.constexpr, KEEP: tl.constexpr,
            HAS_LEN: tl.constexpr, PREC: tl.constexpr, DIR: tl.constexpr, BB: tl.constexpr, DO_A: tl.constexpr,
            DO_B: tl.constexpr, DO_C: tl.constexpr, BU: tl.constexpr, BK: tl.constexpr):  # fmt: skip
    """``sG``: the time stride of G and HN (B·3H and B·H when kept; 0 for one step of scratch)."""
    rows = tl.program_id(0) * BB + tl.arange(0, BB)
    rmask = rows < B
    H3 = 3 * H
    for i in range(n_steps):
        t = tl.cast(t0 + DIR * i, tl.int64)
        alive = alive_rows(LEN, rows, rmask, t, HAS_LEN)
        hp, xp, gt, hn_t = Hs + t * B * H, XP + t * B * H3, G + t * sG * 3, HN + t * sG
        if DO_A:
            for j in range(tiles_a):
                cols = (tl.program_id(1) * tiles_a + j) * BU + tl.arange(0, BU)
                cm = cols < H
                ar = load2(xp, rows, rmask, cols, cm, H3, 1)  # x W_ihᵀ + b_ih (precomputed)
                az = load2(xp + H, rows, rmask, cols, cm, H3, 1)
                if HAS_BIAS:
                    ar += tl.load(BHH + cols, mask=cm, other=0.0)[None, :]
                    az += tl.load(BHH + H + cols, mask=cm, other=0.0)[None, :]
                r = act(mm(ar, hp, H, rows, rmask, H, W, 1, H, cols, cm, BK, PREC), REC)
                z = act(mm(az, hp, H, rows, rmask, H, W + H * H, 1, H, cols, cm, BK, PREC), REC)
                h_prev = load2(hp, rows, rmask, cols, cm, H, 1)
                store2(gt, tl.where(alive, r, 0.0), rows, rmask, cols, cm, H3)
                store2(gt + H, tl.where(alive, z, 0.0), rows, rmask, cols, cm, H3)
                if AFTER:
                    hh = tl.zeros((BB, BU), dtype=Hs.dtype.element_ty)
                    if HAS_BIAS:
                        hh += tl.load(BHH + 2 * H + cols, mask=cm, other=0.0)[None, :]
                    hh = mm(hh, hp, H, rows, rmask, H, W + 2 * H * H, 1, H, cols, cm, BK, PREC)  # W_hn h + b_hn
                    n = act(load2(xp + 2 * H, rows, rmask, cols, cm, H3, 1) + r * hh, ACT)
                    store2(hp + B * H, tl.where(alive, n + z * (h_prev - n), h_prev), rows, rmask, cols, cm, H)
                    store2(gt + 2 * H, tl.where(alive, n, 0.0), rows, rmask, cols, cm, H3)
                    store2(hn_t, tl.where(alive, hh, 0.0), rows, rmask, cols, cm, H)
                else:
                    store2(hn_t, tl.where(alive, r * h_prev, 0.0), rows, rmask, cols, cm, H)  # r ⊙ h_{t-1}
            tl.debug_barrier()
        if DO_B:  # reset before: n = act(W_in x + b_in + W_hn (r ⊙ h) + b_hn), with all of r ⊙ h written
            for j in range(tiles_b):
                cols = (tl.program_id(1) * tiles_b + j) * BU + tl.arange(0, BU)
                cm = cols < H
                an = load2(xp + 2 * H, rows, rmask, cols, cm, H3, 1)
                if HAS_BIAS:
                    an += tl.load(BHH + 2 * H + cols, mask=cm, other=0.0)[None, :]
                n = act(mm(an, hn_t, H, rows, rmask, H, W + 2 * H * H, 1, H, cols, cm, BK, PREC), ACT)
                z = load2(gt + H, rows, rmask, cols, cm, H3, 1)
                h_prev = load2(hp, rows, rmask, cols, cm, H, 1)
                store2(hp + B * H, tl.where(alive, n + z * (h_prev - n), h_prev), rows, rmask, cols, cm, H)
                if KEEP:
                    store2(gt + 2 * H, tl.where(alive, n, 0.0), rows, rmask, cols, cm, H3)
            tl.debug_barrier()


@triton.jit(do_not_specialize=["t0"])  # no recompiles as t0 moves
def gru_bwd(G, HN, Hs, W, LEN, GH, GG, R, DPRE, DHH, B, H, t0, n_steps, tiles_a, tiles_b, tiles_c,
            ACT: tl.constexpr, REC: tl.constexpr, AFTER: tl.constexpr, HAS_GG: tl.constexpr, HAS_LEN: tl.constexpr,
            PREC: tl.constexpr, DIR: tl.constexpr, BB: tl.constexpr, DO_A: tl.constexpr, DO_B: tl.constexpr,
            DO_C: tl.constexpr, BU: tl.constexpr, BK: tl.constexpr):  # fmt: skip
    """Step t from the last, with d = dL/dh_t and x' = x ⊙ the activation's derivative:
    phase A: dn' = (d (1 - z) + e_n)', dz' = (d (h_{t-1} - n) + e_z)', dL/dh_{t-1} starts at d z (the direct
    path; d itself where the sequence has ended); reset after also dr' = (dn' ⊙ HN + e_r)' and
    dHH = (dr', dz', dn' r). Reset after, phase B: dL/dh_{t-1} += dHH W_hh. Reset before, phase B:
    drh = dn' W_hn (the gradient of r ⊙ h), dr' = (drh ⊙ h_{t-1} + e_r)', dL/dh_{t-1} += drh ⊙ r;
    phase C: dL/dh_{t-1} += (dr', dz') W_h{r,z}."""
    rows = tl.program_id(0) * BB + tl.arange(0, BB)
    rmask = rows < B
    H3 = 3 * H
    for i in range(n_steps):
        t = tl.cast(t0 + DIR * i, tl.int64)
        alive = alive_rows(LEN, rows, rmask, t, HAS_LEN)
        cur, nxt = R + ((t + 1) % 2) * B * H, R + (t % 2) * B * H
        gt, dp, hp, ge = G + t * B * H3, DPRE + t * B * H3, Hs + t * B * H, GG + t * B * H3
        if DO_A:
            for j in range(tiles_a):
                cols = (tl.program_id(1) * tiles_a + j) * BU + tl.arange(0, BU)
                cm = cols < H
                d = load2(cur, rows, rmask, cols, cm, H, 1) + load2(GH + (t + 1) * B * H, rows, rmask, cols, cm, H, 1)
                r, z = load2(gt, rows, rmask, cols, cm, H3, 1), load2(gt + H, rows, rmask, cols, cm, H3, 1)
                n = load2(gt + 2 * H, rows, rmask, cols, cm, H3, 1)
                er, ez, en = 0.0, 0.0, 0.0
                if HAS_GG:
                    er, ez = load2(ge, rows, rmask, cols, cm, H3, 1), load2(ge + H, rows, rmask, cols, cm, H3, 1)
                    en = load2(ge + 2 * H, rows, rmask, cols, cm, H3, 1)
                dpn = tl.where(alive, (d - d * z + en) * act_grad(n, ACT), 0.0)
                dpz = tl.where(alive, (d * (load2(hp, rows, rmask, cols, cm, H, 1) - n) + ez) * act_grad(z, REC), 0.0)
                store2(dp + H, dpz, rows, rmask, cols, cm, H3)
                store2(dp + 2 * H, dpn, rows, rmask, cols, cm, H3)
                store2(nxt, tl.where(alive, d * z, d), rows, rmask, cols, cm, H)
                if AFTER:
                    hh = load2(HN + t * B * H, rows, rmask, cols, cm, H, 1)
                    dpr = tl.where(alive, (dpn * hh + er) * act_grad(r, REC), 0.0)
                    dq = DHH + t * B * H3
                    store2(dp, dpr, rows, rmask, cols, cm, H3)
                    store2(dq, dpr, rows, rmask, cols, cm, H3)
                    store2(dq + H, dpz, rows, rmask, cols, cm, H3)
                    store2(dq + 2 * H, dpn * r, rows, rmask, cols, cm, H3)
            tl.debug_barrier()
        if DO_B:
            for j in range(tiles_b):
                cols = (tl.program_id(1) * tiles_b + j) * BU + tl.arange(0, BU)
                cm = cols < H
                dh = load2(nxt, rows, rmask, cols, cm, H, 1)
                if AFTER:
                    dh = mm(dh, DHH + t * B * H3, H3, rows, rmask, H3, W, H, 1, cols, cm, BK, PREC)
                else:
                    drh = tl.zeros((BB, BU), dtype=G.dtype.element_ty)
                    drh = mm(drh, dp + 2 * H, H3, rows, rmask, H, W + 2 * H * H, H, 1, cols, cm, BK, PREC)
                    r = load2(gt, rows, rmask, cols, cm, H3, 1)
                    er = 0.0
                    if HAS_GG:
                        er = load2(ge, rows, rmask, cols, cm, H3, 1)
                    dpr = (drh * load2(hp, rows, rmask, cols, cm, H, 1) + er) * act_grad(r, REC)
                    store2(dp, tl.where(alive, dpr, 0.0), rows, rmask, cols, cm, H3)
                    dh += tl.where(alive, drh * r, 0.0)
                store2(nxt, dh, rows, rmask, cols, cm, H)
            tl.debug_barrier()
        if DO_C:
            for j in range(tiles_c):
                cols = (tl.program_id(1) * tiles_c + j) * BU + tl.arange(0, BU)
                cm = cols < H
                dh = mm(load2(nxt, rows, rmask, cols, cm, H, 1), dp, H3, rows, rmask, 2 * H, W, H, 1, cols, cm, BK,
                        PREC)  # fmt: skip
                store2(nxt, dh, rows, rmask, cols, cm, H)
            tl.debug_barrier()


def forward(config: list[int], params: list[Tensor], x: Tensor, state: list[Tensor], lengths: Tensor | None,
            keep: bool) -> list[Tensor]:  # fmt: skip
    """The buffers of :class:`~rnnkit.engines.fused.specs.GRUSpec`: Hs, G and HN (or (0,) each)."""
    W_ih, W_hh = params[:2]
    b_ih, b_hh = params[2:4] if config[2] else (None, None)
    (T, B, _), H, after = x.shape, state[0].shape[-1], bool(config[3])
    XP = input_projection(x, W_ih, b_ih)
    Hs = x.new_empty(T + 1, B, H)
    Hs[0] = state[0]
    if keep:
        G, HN, sG = x.new_empty(T, B, 3 * H), x.new_empty(T, B, H), B * H
    else:  # one step of scratch, overwritten every step
        G, HN, sG = x.new_empty(1, B, 3 * H), x.new_empty(1, B, H), 0
    LEN = XP if lengths is None else lengths
    args = (XP, W_hh.contiguous(), XP if b_hh is None else b_hh.contiguous(), LEN, Hs, G, HN, sG, B, H)
    walk(gru_fwd, args, B, T, [H] if after else [H, H], False, depths=[H], ACT=config[0], REC=config[1],
         AFTER=after, HAS_BIAS=b_hh is not None, KEEP=keep, HAS_LEN=lengths is not None, PREC=precision(x))  # fmt: skip
    return [Hs, G, HN] if keep else [Hs, x.new_empty(0), x.new_empty(0)]


def backward(config: list[int], x: Tensor, state: list[Tensor], params: list[Tensor], lengths: Tensor | None,
             buffers: list[Tensor], grads: list[Tensor | None], needs: list[bool]) -> list[Tensor | None]:  # fmt: skip
    """Gradients of (x, h0, *params), as :meth:`GRUSpec.backward` returns them."""
    W_ih, W_hh = params[:2]
    Hs, G, HN = buffers
    gHs, gG, _ = (grad_or_none(g) for g in grads)
    gHs = torch.zeros_like(Hs) if gHs is None else gHs.contiguous()
    T, B, H3 = G.shape
    H, after = H3 // 3, bool(config[3])
    R, dPre = recurrent_grads(B, H, G), G.new_empty(T, B, H3)
    dHH = G.new_empty(T, B, H3) if after else dPre
    args = (G, HN, Hs, W_hh.contiguous(), G if lengths is None else lengths, gHs, G if gG is None else gG.contiguous(),
            R, dPre, dHH, B, H)  # fmt: skip
    walk(gru_bwd, args, B, T, [H, H] if after else [H, H, H], True, depths=[H3], ACT=config[0], REC=config[1],
         AFTER=after, HAS_GG=gG is not None, HAS_LEN=lengths is not None, PREC=precision(G))  # fmt: skip
    dx, dW_ih = input_grads([needs[0], needs[2]], dPre, x, W_ih)
    Hp = Hs[:-1]
    if after:  # dW_hh = Σ_t dHH_tᵀ h_{t-1}
        dW_hh, db_hh = weight_grad(dHH, Hp), dHH.sum((0, 1))
    else:  # the r, z rows see h_{t-1}, the n rows r ⊙ h_{t-1}; b_hh enters like b_ih
        dW_hh = torch.cat([weight_grad(dPre[..., : 2 * H], Hp), weight_grad(dPre[..., 2 * H :], HN)])
        db_hh = dPre.sum((0, 1))
    res = [dx, R[0] + gHs[0], dW_ih, dW_hh]
    return res + ([dPre.sum((0, 1)), db_hh] if config[2] else [])
