"""Per-cell sequence kernels of the fused engine: a forward loop and its hand-written backward.

Each kernel runs *one direction of one layer* over a whole sequence, given the input projections of
all steps ``xw`` (T, B, G) (``W_ih x_t + b_ih``, plus whatever part of ``b_hh`` is purely additive).
The forward writes every step into preallocated buffers (no per-step allocation, no ``torch.stack``);
the backward walks the steps in reverse and writes the gradient of every pre-activation into one
(T, B, G) buffer, so that the weight gradients are a few large GEMMs over all steps at the end
(``dW_hh = dPreᵀ · H_prev``) instead of T small ones.

The equations are the cells' (see :mod:`rnnkit.cells`); here they are re-stated in the buffer layout with
their derivatives. Activation derivatives are taken from the activation's *output*, as autograd does.

Variable lengths: ``mask`` (T, B, 1) bool is True where step t is inside sequence b. A finished
sequence's state is frozen (``s_t = where(m, s_new, s_{t-1})``) and its outputs/gates are zero, exactly as
in the reference engine. In the backward that splits the incoming state gradient into the part that
flows into the step (``where(m, ds, 0)``) and the part that skips it (``where(m, 0, ds)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.activations import activation_name
from rnnkit.cells import PeepholeLSTMCell
from rnnkit.engines import _fused_c as cext

aten = torch.ops.aten

# name -> (in-place activation, gradient from the activation's output: (dy, y) -> dx)
_ACT: dict[str, tuple[Callable[[Tensor], Any], Callable[[Tensor, Tensor], Tensor]]] = {
    "tanh": (Tensor.tanh_, lambda dy, y: aten.tanh_backward(dy, y)),
    "sigmoid": (Tensor.sigmoid_, lambda dy, y: aten.sigmoid_backward(dy, y)),
    "relu": (Tensor.relu_, lambda dy, y: aten.threshold_backward(dy, y, 0)),
    "identity": (lambda x: x, lambda dy, y: dy),
    # hardsigmoid(x) = clamp((x + 3) / 6, 0, 1): slope 1/6 exactly where the output is strictly inside (0, 1)
    "hard_sigmoid": (lambda x: F.hardsigmoid(x, inplace=True), lambda dy, y: dy * ((y > 0) & (y < 1)) / 6),
}


def act_name(fn: Callable[[Tensor], Tensor]) -> str | None:
    """The fused engine's name for activation ``fn``, or ``None`` if it is an arbitrary callable."""
    name = activation_name(fn)
    return name if name in _ACT else None


class Act:
    """An activation the kernels can apply in place and differentiate from its output."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        name = act_name(fn)
        if name is None:
            raise ValueError(f"the fused engine cannot differentiate activation {fn!r}; use engine='reference'")
        self.fn = fn
        self.inplace, self.grad = _ACT[name]

    def __call__(self, x: Tensor) -> Tensor:
        return self.fn(x)


def _split(mask: Tensor | None, t: int, ds: Tensor) -> tuple[Tensor, Tensor | None]:
    """Split a state gradient at step t into (into the step, skipping the step); no mask: all goes in."""
    if mask is None:
        return ds, None
    m = mask[t]  # (B, 1)
    return torch.where(m, ds, 0.0), torch.where(m, 0.0, ds)


def _freeze(mask: Tensor | None, t: int, new: Tensor, old: Tensor) -> None:
    """``new = where(m, new, old)`` in place: finished sequences keep their state."""
    if mask is not None:
        new.copy_(torch.where(mask[t], new, old))


def _masked(mask: Tensor | None, seq: Tensor) -> Tensor:
    """Zero ``seq`` (T, B, n) past each sequence's length; a fresh tensor either way."""
    return seq.clone() if mask is None else torch.where(mask, seq, 0.0)


def _flat(seq: Tensor) -> Tensor:
    return seq.reshape(-1, seq.shape[-1])  # (T*B, n)


class Kernel:
    """Base: one (cell, direction) problem. Subclasses set the names of the recurrent weights they use."""

    #: names of the tensors (cell parameter names) the recurrence reads, in the order ``forward`` takes them
    weight_names: tuple[str, ...] = ()

    def __init__(self, cell: Any, mask: Tensor | None, return_gates: bool) -> None:
        self.cell = cell
        self.mask = mask
        self.return_gates = return_gates
        self.H = cell.hidden_size

    def input_bias(self, w: Any) -> Tensor | None:
        """The bias added in the input projection: ``b_ih`` plus the additive part of the recurrent bias."""
        if w.bias_ih is None:
            return None
        return w.bias_ih + w.bias_hh

    def weights(self, w: Any) -> list[Tensor | None]:
        return [getattr(w, n) for n in self.weight_names]

    def c_kernel(self, name: str, x: Tensor):
        """The C pointwise step ``name`` if it applies here (default activations, CPU float), else ``None``."""
        key = (name, x.dtype, x.device)
        if getattr(self, "_ck_key", None) != key:  # cached: the stepper asks once per token
            default = self.act.fn is torch.tanh and self.sig.fn is torch.sigmoid
            self._ck_key, self._ck = key, (cext.fn(name, x) if default and cext.usable(x) else None)
        return self._ck


# ------------------------------------------------------------------------------------------------------
class ElmanKernel(Kernel):
    """``h_t = act(xw_t + W_hh h_{t-1})`` (``b_hh`` is folded into ``xw``). Gates: ``h``."""

    weight_names = ("weight_hh",)

    def __init__(self, cell: Any, mask: Tensor | None, return_gates: bool) -> None:
        super().__init__(cell, mask, return_gates)
        self.act = Act(cell.activation)

    def forward(self, xw: Tensor, state: tuple[Tensor, ...], weights: list, save: bool):
        (W,) = weights
        T, B, _ = xw.shape
        Hs = xw.new_empty(T + 1, B, self.H)  # h_0 … h_T
        Hs[0] = state[0]
        Wt = W.t().contiguous()  # (H, H): a row-major right operand is ~8% faster in MKL here
        for t in range(T):
            h = torch.addmm(xw[t], Hs[t], Wt, out=Hs[t + 1])  # pre-activation W_ih x + b + W_hh h
            self.act.inplace(h)
            _freeze(self.mask, t, h, Hs[t])
        out = Hs[1:] if self.mask is None else torch.where(self.mask, Hs[1:], 0.0)
        gates = (_masked(self.mask, Hs[1:]),) if self.return_gates else ()
        return out, (Hs[T].clone(),), gates, (Hs, W)

    def step(self, xw: Tensor, state: tuple[Tensor, ...], weights: list) -> tuple[Tensor, ...]:
        """One step without autograd bookkeeping (the generation loop): ``xw`` (B, G) -> new state."""
        return (self.act.inplace(torch.addmm(xw, state[0], weights[0].t())),)

    def backward(self, saved, g_out: Tensor, g_final: tuple[Tensor, ...], g_gates: tuple[Tensor, ...]):
        Hs, W = saved
        T = g_out.shape[0]
        if self.mask is not None:
            g_out = torch.where(self.mask, g_out, 0.0)
        if g_gates:
            g_out = g_out + _masked(self.mask, g_gates[0])
        dPre = torch.empty_like(g_out)  # (T, B, H)
        dh = g_final[0]
        for t in range(T - 1, -1, -1):
            dh_in, dh_skip = _split(self.mask, t, dh)
            torch.add(dh_in, g_out[t], out=dPre[t])
            dPre[t] = self.act.grad(dPre[t], Hs[t + 1])
            dh = dPre[t] @ W
            if dh_skip is not None:
                dh += dh_skip
        dW = _flat(dPre).t() @ _flat(Hs[:-1])
        return dPre, (dh,), [dW]


# ------------------------------------------------------------------------------------------------------
class JordanKernel(Kernel):
    """``h_t = act(xw_t + W_yh y_{t-1})``, ``y_t = out_act(W_hy h_t + b_hy)`` (``b_yh`` folded). Gates: h, y."""

    weight_names = ("weight_yh", "weight_hy", "bias_hy")

    def __init__(self, cell: Any, mask: Tensor | None, return_gates: bool) -> None:
        super().__init__(cell, mask, return_gates)
        self.act = Act(cell.activation)
        self.out_act = Act(cell.output_activation)

    def input_bias(self, w: Any) -> Tensor | None:
        return None if w.bias_ih is None else w.bias_ih + w.bias_yh

    def forward(self, xw: Tensor, state: tuple[Tensor, ...], weights: list, save: bool):
        W_yh, W_hy, b_hy = weights
        T, B, _ = xw.shape
        O = W_hy.shape[0]
        Ys = xw.new_empty(T + 1, B, O)  # y_0 … y_T
        Hh = xw.new_empty(T if save or self.return_gates else 1, B, self.H)  # hidden layers
        Ys[0] = state[0]
        W_yh_t, W_hy_t = W_yh.t(), W_hy.t()
        for t in range(T):
            h = torch.addmm(xw[t], Ys[t], W_yh_t, out=Hh[t if Hh.shape[0] > 1 else 0])
            self.act.inplace(h)
            y = Ys[t + 1]
            if b_hy is None:
                torch.mm(h, W_hy_t, out=y)
            else:
                torch.addmm(b_hy, h, W_hy_t, out=y)
            self.out_act.inplace(y)
            _freeze(self.mask, t, y, Ys[t])
        out = Ys[1:] if self.mask is None else torch.where(self.mask, Ys[1:], 0.0)
        gates = (_masked(self.mask, Hh), _masked(self.mask, Ys[1:])) if self.return_gates else ()
        return out, (Ys[T].clone(),), gates, (Ys, Hh, W_yh, W_hy)

    def step(self, xw: Tensor, state: tuple[Tensor, ...], weights: list) -> tuple[Tensor, ...]:
        W_yh, W_hy, b_hy = weights
        h = self.act.inplace(torch.addmm(xw, state[0], W_yh.t()))
        y = torch.mm(h, W_hy.t()) if b_hy is None else torch.addmm(b_hy, h, W_hy.t())
        return (self.out_act.inplace(y),)

    def backward(self, saved, g_out: Tensor, g_final: tuple[Tensor, ...], g_gates: tuple[Tensor, ...]):
        Ys, Hh, W_yh, W_hy = saved
        T = g_out.shape[0]
        if self.mask is not None:
            g_out = torch.where(self.mask, g_out, 0.0)
        g_h = None
        if g_gates:
            g_out = g_out + _masked(self.mask, g_gates[1])
            g_h = _masked(self.mask, g_gates[0])
        dPreY = torch.empty_like(g_out)  # (T, B, O): gradient of W_hy h + b_hy
        dPre = torch.empty_like(Hh)  # (T, B, H): gradient of the hidden pre-activation
        dy = g_final[0]
        for t in range(T - 1, -1, -1):
            dy_in, dy_skip = _split(self.mask, t, dy)
            torch.add(dy_in, g_out[t], out=dPreY[t])
            dPreY[t] = self.out_act.grad(dPreY[t], Ys[t + 1])
            dh = dPreY[t] @ W_hy
            if g_h is not None:
                dh += g_h[t]
            dPre[t] = self.act.grad(dh, Hh[t])
            dy = dPre[t] @ W_yh
            if dy_skip is not None:
                dy += dy_skip
        dW_yh = _flat(dPre).t() @ _flat(Ys[:-1])
        dW_hy = _flat(dPreY).t() @ _flat(Hh)
        db_hy = dPreY.sum((0, 1))
        return dPre, (dy,), [dW_yh, dW_hy, db_hy]


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
