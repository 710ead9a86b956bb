"""Fused-engine kernels of the gated cells: GRU (both reset forms) and LSTM (projection, peepholes).

Same conventions as :mod:`rnnkit.engines._fused_kernels` (buffers, masks, the backward's (T, B, G) gradient
buffer). Both use the C pointwise step of :mod:`rnnkit.engines._fused_c` where it applies and the torch ops
below otherwise; the two paths compute the same equations (tests compare them).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rnnkit.cells import PeepholeLSTMCell
from rnnkit.engines._fused_kernels import Act, Kernel, _flat, _freeze, _masked, _split


# ------------------------------------------------------------------------------------------------------
class GRUKernel(Kernel):
    """GRU, both forms; gates r, z, n stored side by side in one (T, B, 3H) buffer.

    ``reset_after=True``: ``b_hh`` stays in the recurrence (``b_hn`` is multiplied by r), and the products
    ``hn = W_hn h + b_hn`` are kept for the backward. ``reset_after=False``: ``b_hh`` is folded into ``xw``
    and the candidate's product is taken of ``r ⊙ h``.
    """

    def __init__(self, cell: Any, mask: Tensor | None, return_gates: bool) -> None:
        super().__init__(cell, mask, return_gates)
        self.after = cell.reset_after
        self.act = Act(cell.activation)
        self.sig = Act(cell.recurrent_activation)
        self.weight_names = ("weight_hh", "bias_hh") if self.after else ("weight_hh",)

    def input_bias(self, w: Any) -> Tensor | None:
        if w.bias_ih is None:
            return None
        return w.bias_ih if self.after else w.bias_ih + w.bias_hh

    def forward(self, xw: Tensor, state: tuple[Tensor, ...], weights: list, save: bool):
        W = weights[0]
        b = weights[1] if self.after else None
        T, B, _ = xw.shape
        H = self.H
        full = save or self.return_gates
        Hs = xw.new_empty(T + 1, B, H)
        G = xw.new_empty(T if full else 1, B, 3 * H)  # r, z, n
        HN = xw.new_empty(T, B, H) if self.after and save else None  # W_hn h + b_hn
        hh = xw.new_empty(B, 3 * H)
        rh = xw.new_empty(B, H)
        Hs[0] = state[0]
        Wt, W_rz_t, W_n_t = W.t().contiguous(), W[: 2 * H].t(), W[2 * H :].t()
        ck = self.c_kernel("gru_fwd", xw) if self.after else None
        for t in range(T):
            h, g, x = Hs[t], G[t if full else 0], xw[t]
            rz, n = g[:, : 2 * H], g[:, 2 * H :]
            if ck is not None:  # the same equations as below, in one C loop
                torch.mm(h, Wt, out=hh) if b is None else torch.addmm(b, h, Wt, out=hh)
                ck(x.data_ptr(), hh.data_ptr(), h.data_ptr(), g.data_ptr(), Hs[t + 1].data_ptr(), B, H)
                if save:
                    HN[t] = hh[:, 2 * H :]
                _freeze(self.mask, t, Hs[t + 1], h)
                continue
            if self.after:
                if b is None:
                    torch.mm(h, Wt, out=hh)
                else:
                    torch.addmm(b, h, Wt, out=hh)  # (B, 3H): W_h* h + b_h*
                torch.add(x[:, : 2 * H], hh[:, : 2 * H], out=rz)
                self.sig.inplace(rz)
                hn = hh[:, 2 * H :]
                if save:
                    HN[t] = hn
                torch.addcmul(x[:, 2 * H :], rz[:, :H], hn, out=n)  # xn + r ⊙ (W_hn h + b_hn)
            else:
                torch.addmm(x[:, : 2 * H], h, W_rz_t, out=rz)
                self.sig.inplace(rz)
                torch.mul(rz[:, :H], h, out=rh)
                torch.addmm(x[:, 2 * H :], rh, W_n_t, out=n)  # xn + W_hn (r ⊙ h)
            self.act.inplace(n)
            h_new = torch.sub(h, n, out=Hs[t + 1])  # h' = n + z ⊙ (h - n) = (1 - z) ⊙ n + z ⊙ h
            h_new.mul_(rz[:, H:]).add_(n)
            _freeze(self.mask, t, h_new, h)
        out = Hs[1:] if self.mask is None else torch.where(self.mask, Hs[1:], 0.0)
        gates = tuple(_masked(self.mask, G[..., k * H : (k + 1) * H]) for k in range(3)) if self.return_gates else ()
        return out, (Hs[T].clone(),), gates, (Hs, G, HN, W)

    def step(self, xw: Tensor, state: tuple[Tensor, ...], weights: list) -> tuple[Tensor, ...]:
        H, W, (h,) = self.H, weights[0], state
        if self.after:
            b = weights[1]
            hh = torch.mm(h, W.t()) if b is None else torch.addmm(b, h, W.t())  # (B, 3H)
            ck = self.c_kernel("gru_fwd", xw)
            if ck is not None and h.is_contiguous():
                g, h_new = torch.empty_like(xw), torch.empty_like(h)
                ck(xw.data_ptr(), hh.data_ptr(), h.data_ptr(), g.data_ptr(), h_new.data_ptr(), xw.shape[0], H)
                return (h_new,)
            rz = self.sig.inplace(xw[:, : 2 * H].add_(hh[:, : 2 * H]))
            n = self.act.inplace(torch.addcmul(xw[:, 2 * H :], rz[:, :H], hh[:, 2 * H :]))
        else:
            rz = self.sig.inplace(torch.addmm(xw[:, : 2 * H], h, W[: 2 * H].t()))
            n = self.act.inplace(torch.addmm(xw[:, 2 * H :], rz[:, :H] * h, W[2 * H :].t()))
        return (torch.sub(h, n).mul_(rz[:, H:]).add_(n),)

    def backward(self, saved, g_out: Tensor, g_final: tuple[Tensor, ...], g_gates: tuple[Tensor, ...]):
        Hs, G, HN, W = saved
        T = g_out.shape[0]
        H = self.H
        if self.mask is not None:
            g_out = torch.where(self.mask, g_out, 0.0)
        gg = [_masked(self.mask, g) for g in g_gates] if g_gates else None
        dPre = torch.empty_like(G)  # (T, B, 3H): gradient of xw (the input pre-activations)
        dHH = torch.empty_like(G) if self.after else None  # gradient of W_hh h + b_hh
        W_rz, W_n = W[: 2 * H], W[2 * H :]
        dh = g_final[0]
        ck = self.c_kernel("gru_bwd", G) if self.after and gg is None else None
        dhp = torch.empty_like(Hs[0])
        for t in range(T - 1 if ck is not None else -1, -1, -1):  # C path: one pointwise call per step
            dh_in, dh_skip = _split(self.mask, t, dh)
            dh_new = (dh_in + g_out[t]).contiguous()
            ck(G[t].data_ptr(), HN[t].data_ptr(), Hs[t].data_ptr(), dh_new.data_ptr(), dPre[t].data_ptr(),
               dHH[t].data_ptr(), dhp.data_ptr(), G.shape[1], H)  # fmt: skip
            dh = torch.addmm(dhp, dHH[t], W)
            if dh_skip is not None:
                dh += dh_skip
        for t in range(T - 1 if ck is None else -1, -1, -1):
            r, z, n = G[t].split(H, dim=-1)
            h = Hs[t]
            dh_in, dh_skip = _split(self.mask, t, dh)
            dh_new = dh_in + g_out[t]
            dn = dh_new - dh_new * z  # ∂h'/∂n = 1 - z
            dz = dh_new * (h - n)
            dh = dh_new * z
            if gg is not None:
                dn += gg[2][t]
                dz += gg[1][t]
            dpr, dpz, dpn = dPre[t].split(H, dim=-1)
            dpn.copy_(self.act.grad(dn, n))
            if self.after:
                dr = dpn * HN[t]
                torch.mul(dpn, r, out=dHH[t][:, 2 * H :])
            else:
                drh = dpn @ W_n  # gradient of r ⊙ h
                dr = drh * h
                dh += drh * r
            if gg is not None:
                dr += gg[0][t]
            dpr.copy_(self.sig.grad(dr, r))
            dpz.copy_(self.sig.grad(dz, z))
            if self.after:
                dHH[t][:, : 2 * H] = dPre[t][:, : 2 * H]
                dh += dHH[t] @ W
            else:
                dh += dPre[t][:, : 2 * H] @ W_rz
            if dh_skip is not None:
                dh += dh_skip
        Hp = _flat(Hs[:-1])  # (T*B, H): h_{t-1}
        if self.after:
            dW = _flat(dHH).t() @ Hp
            return dPre, (dh,), [dW, dHH.sum((0, 1))]
        dW = torch.cat([_flat(dPre[..., : 2 * H]).t() @ Hp, _flat(dPre[..., 2 * H :]).t() @ (_flat(G[..., :H]) * Hp)])
        return dPre, (dh,), [dW]


# ------------------------------------------------------------------------------------------------------
class LSTMKernel(Kernel):
    """LSTM with optional peepholes and projection; gates i, f, g, o in one (T, B, 4H) buffer.

    ``b_hh`` is folded into ``xw``. Saved for the backward: the four activated gates, the cell states
    c_0 … c_T and the states h_0 … h_T (whose tail is the output) — ``tanh(c_t)`` is recomputed.
    """

    def __init__(self, cell: Any, mask: Tensor | None, return_gates: bool) -> None:
        super().__init__(cell, mask, return_gates)
        self.act = Act(cell.activation)
        self.sig = Act(cell.recurrent_activation)
        self.peephole = isinstance(cell, PeepholeLSTMCell)
        self.proj = cell.proj_size
        names = ["weight_hh"]
        if self.proj:
            names.append("weight_hr")
        if self.peephole:
            names += ["weight_ci", "weight_cf", "weight_co"]
        self.weight_names = tuple(names)

    def _unpack(self, weights: list) -> tuple[Tensor, Tensor | None, tuple[Tensor, ...] | None]:
        W, rest = weights[0], list(weights[1:])
        W_hr = rest.pop(0) if self.proj else None
        peep = tuple(rest) if self.peephole else None
        return W, W_hr, peep

    def _peep_ptrs(self, peep: tuple[Tensor, ...] | None, like: Tensor) -> list[int]:
        """Pointers to the peephole vectors for the C kernels (zeros without peepholes: no branch per element)."""
        if peep is None:
            zeros = getattr(self, "_zeros", None)
            if zeros is None or zeros.dtype != like.dtype:
                self._zeros = zeros = like.new_zeros(self.H)  # kept alive on self while the C code reads it
            return [zeros.data_ptr()] * 3
        return [p.data_ptr() for p in peep]

    def forward(self, xw: Tensor, state: tuple[Tensor, ...], weights: list, save: bool):
        W, W_hr, peep = self._unpack(weights)
        T, B, _ = xw.shape
        H, P = self.H, self.proj or self.H
        full = save or self.return_gates
        Hs = xw.new_empty(T + 1, B, P)  # h_0 … h_T
        Cs = xw.new_empty(T + 1, B, H)  # c_0 … c_T
        G = xw.new_empty(T if full else 1, B, 4 * H)  # i, f, g, o (activated)
        m = xw.new_empty(B, H) if self.proj else None
        Hs[0], Cs[0] = state
        Wt = W.t().contiguous()  # (P, 4H): a row-major right operand is ~8% faster in MKL here
        W_hr_t = W_hr.t() if self.proj else None
        ck = self.c_kernel("lstm_fwd", xw)
        pp = self._peep_ptrs(peep, xw)
        for t in range(T):
            if ck is not None:  # the same equations as below, in one C loop (which also adds xw_t)
                g_all = torch.mm(Hs[t], Wt, out=G[t if full else 0])
                mt = m if self.proj else Hs[t + 1]
                ck(xw[t].data_ptr(), g_all.data_ptr(), Cs[t].data_ptr(), Cs[t + 1].data_ptr(), mt.data_ptr(), *pp, B, H)
                if self.proj:
                    torch.mm(m, W_hr_t, out=Hs[t + 1])
                _freeze(self.mask, t, Hs[t + 1], Hs[t])
                _freeze(self.mask, t, Cs[t + 1], Cs[t])
                continue
            g_all = torch.addmm(xw[t], Hs[t], Wt, out=G[t if full else 0])  # (B, 4H) pre-activations
            i, f, g, o = g_all.split(H, dim=-1)
            c_prev, c = Cs[t], Cs[t + 1]
            if peep is not None:
                i.addcmul_(peep[0], c_prev)  # + w_ci ⊙ c_{t-1}
                f.addcmul_(peep[1], c_prev)  # + w_cf ⊙ c_{t-1}
            self.sig.inplace(g_all[:, : 2 * H])  # i, f
            self.act.inplace(g)
            torch.mul(f, c_prev, out=c)
            c.addcmul_(i, g)  # c_t = f ⊙ c_{t-1} + i ⊙ g
            if peep is not None:
                o.addcmul_(peep[2], c)  # + w_co ⊙ c_t
            self.sig.inplace(o)
            torch.mul(o, self.act(c), out=m if self.proj else Hs[t + 1])  # o ⊙ act(c_t)
            if self.proj:
                torch.mm(m, W_hr_t, out=Hs[t + 1])
            _freeze(self.mask, t, Hs[t + 1], Hs[t])
            _freeze(self.mask, t, c, c_prev)
        out = Hs[1:] if self.mask is None else torch.where(self.mask, Hs[1:], 0.0)
        gates = ()
        if self.return_gates:
            gates = (*(_masked(self.mask, G[..., k * H : (k + 1) * H]) for k in range(4)), _masked(self.mask, Cs[1:]))
        return out, (Hs[T].clone(), Cs[T].clone()), gates, (Hs, Cs, G, *weights)

    def step(self, xw: Tensor, state: tuple[Tensor, ...], weights: list) -> tuple[Tensor, ...]:
        W, W_hr, peep = self._unpack(weights)
        H, (h, c_prev) = self.H, state
        ck = self.c_kernel("lstm_fwd", xw)
        if ck is not None and c_prev.is_contiguous():
            g_all, c, m = torch.mm(h, W.t()), torch.empty_like(c_prev), torch.empty_like(c_prev)
            ck(xw.data_ptr(), g_all.data_ptr(), c_prev.data_ptr(), c.data_ptr(), m.data_ptr(),
               *self._peep_ptrs(peep, xw), xw.shape[0], H)  # fmt: skip
            return (m if W_hr is None else torch.mm(m, W_hr.t()), c)
        g_all = xw.addmm_(h, W.t())  # (B, 4H)
        i, f, g, o = g_all.split(H, dim=-1)
        if peep is not None:
            i.addcmul_(peep[0], c_prev)
            f.addcmul_(peep[1], c_prev)
        self.sig.inplace(g_all[:, : 2 * H])
        self.act.inplace(g)
        c = torch.addcmul(f * c_prev, i, g)
        if peep is not None:
            o.addcmul_(peep[2], c)
        h = self.sig.inplace(o).mul_(self.act(c))
        return (h if W_hr is None else torch.mm(h, W_hr.t()), c)

    def backward(self, saved, g_out: Tensor, g_final: tuple[Tensor, ...], g_gates: tuple[Tensor, ...]):
        Hs, Cs, G, *weights = saved
        W, W_hr, peep = self._unpack(weights)
        T = g_out.shape[0]
        H = self.H
        if self.mask is not None:
            g_out = torch.where(self.mask, g_out, 0.0)
        gg = [_masked(self.mask, g) for g in g_gates] if g_gates else None
        dPre = torch.empty_like(G)  # (T, B, 4H): gradient of every gate pre-activation (= of xw)
        dHn = torch.empty_like(g_out) if self.proj else None  # gradient of h_t = W_hr m_t
        dh, dc = g_final
        ck = self.c_kernel("lstm_bwd", G) if gg is None else None
        if ck is not None:
            pp = self._peep_ptrs(peep, G)
            dc_buf = torch.empty_like(Cs[0])
        for t in range(T - 1 if ck is not None else -1, -1, -1):  # C path: one pointwise call per step
            dh_in, dh_skip = _split(self.mask, t, dh)
            dc_in, dc_skip = _split(self.mask, t, dc)
            dm = dh_in + g_out[t]
            if self.proj:
                dHn[t] = dm
                dm = dm @ W_hr
            dm = dm.contiguous()
            dc_buf.copy_(dc_in)
            ck(G[t].data_ptr(), Cs[t].data_ptr(), Cs[t + 1].data_ptr(), dm.data_ptr(), dc_buf.data_ptr(),
               dPre[t].data_ptr(), *pp, G.shape[1], H)  # fmt: skip
            dh = dPre[t] @ W
            dc = dc_buf
            if dh_skip is not None:
                dh += dh_skip
                dc = dc_buf + dc_skip
        for t in range(T - 1 if ck is None else -1, -1, -1):
            i, f, g, o = G[t].split(H, dim=-1)
            dpi, dpf, dpg, dpo = dPre[t].split(H, dim=-1)
            c_prev, c = Cs[t], Cs[t + 1]
            dh_in, dh_skip = _split(self.mask, t, dh)
            dc_in, dc_skip = _split(self.mask, t, dc)
            dh_new = dh_in + g_out[t]
            if self.proj:
                dHn[t] = dh_new
                dh_new = dh_new @ W_hr  # gradient of m_t = o ⊙ act(c_t)
            tc = self.act(c)
            do = dh_new * tc
            dc_new = dc_in + self.act.grad(dh_new * o, tc)
            if gg is not None:
                do += gg[3][t]
                dc_new += gg[4][t]
            dpo.copy_(self.sig.grad(do, o))
            if peep is not None:
                dc_new += dpo * peep[2]
            di, dg, df = dc_new * g, dc_new * i, dc_new * c_prev
            dc = dc_new * f
            if gg is not None:
                di += gg[0][t]
                df += gg[1][t]
                dg += gg[2][t]
            dpi.copy_(self.sig.grad(di, i))
            dpf.copy_(self.sig.grad(df, f))
            dpg.copy_(self.act.grad(dg, g))
            if peep is not None:
                dc += dpi * peep[0] + dpf * peep[1]
            dh = dPre[t] @ W
            if dh_skip is not None:
                dh += dh_skip
                dc += dc_skip
        grads = [_flat(dPre).t() @ _flat(Hs[:-1])]  # dW_hh = Σ_t dPre_t h_{t-1}ᵀ
        if self.proj:
            Ms = G[..., 3 * H :] * self.act(Cs[1:])  # m_t, recomputed
            grads.append(_flat(dHn).t() @ _flat(Ms))
        if peep is not None:
            grads.append((dPre[..., :H] * Cs[:-1]).sum((0, 1)))
            grads.append((dPre[..., H : 2 * H] * Cs[:-1]).sum((0, 1)))
            grads.append((dPre[..., 3 * H :] * Cs[1:]).sum((0, 1)))
        return dPre, (dh, dc), grads
