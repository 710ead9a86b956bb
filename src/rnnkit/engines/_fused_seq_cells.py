"""The per-cell halves of the fused engine's C sequence path (see :mod:`rnnkit.engines._fused_seq`).

A spec runs one direction of one layer. ``forward(x, lens, state, params, save)`` returns the outputs
(T, B, S), the final state and what the backward needs (``pack(params)`` lays the weights out for it).
``backward(saved, g_out, g_finals, needs)`` returns the gradients of (x, *state, *params), ``None`` where
``needs`` says nobody asked. ``step(B, x, F, state, out, packed)`` runs one token for the one-token stepper
(:mod:`rnnkit.stepper`), with weights packed once and every tensor given by address (its hot path: no
tensor is made or indexed per layer): the input x (B, F), the state's parts (B, ·) and where the new
state goes. Buffers are time-major: ``Hs`` (T + 1, B, H) holds the initial state and then
every step's state, so ``Hs[:T]`` is each step's previous state, the right operand of the recurrent
weight gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rnnkit.cells import GRUCell, JordanCell, PeepholeLSTMCell, RNNCell
from rnnkit.engines._fused_kernels import act_name
from rnnkit.engines._fused_seq import ACT_CODES, gemm, lib_fn, pack, padded, ptr, threads, vl, weight_grad


def _start(x: Tensor, state) -> tuple[Tensor, list[Tensor]]:
    """``x`` (T, B, F) as (T·B, F), and per state part a (T + 1, B, S) buffer whose [0] is that part."""
    T, B, F = x.shape
    x2, bufs = x.contiguous().view(T * B, F), []
    for s in state:
        bufs.append(x2.new_empty(T + 1, B, s.shape[-1]))
        bufs[-1][0] = s
    return x2, bufs


def _input_grads(need_x: bool, need_w: bool, dPre: Tensor, x2: Tensor, W_ih: Tensor, T: int):
    """dL/dx = dPre W_ih (T, B, F) and dL/dW_ih = dPreᵀ X, each only if asked for."""
    dx = gemm(dPre, W_ih).view(T, -1, W_ih.shape[1]) if need_x else None
    return dx, (weight_grad(dPre, x2) if need_w else None)


def _sum(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    return None if a is None else a + b


class LSTMSpec:
    """params: W_ih, b_ih, b_hh, W_hh, peepholes (3, H) or None. Saved: the activated gates and c_0 … c_T."""

    n_state = 2

    def __init__(self, H: int) -> None:
        self.H = H

    def pack(self, params) -> tuple[Tensor, ...]:
        W_ih, b_ih, b_hh, W_hh, peep = params
        return pack(W_ih, 4), pack(W_hh, 4), _sum(b_ih, b_hh), peep

    def forward(self, x: Tensor, lens: Tensor | None, state, params, save: bool):
        W_ih, b_ih, b_hh, W_hh, peep = params
        (T, B, _), H = x.shape, self.H
        x2, (Hs, Cs) = _start(x, state)
        G = x2.new_empty(T, B, 4 * H) if save else None
        Wxp, Wp, bias, _ = self.pack(params)  # named: alive while C reads them
        lib_fn("rk_lstm_fwd", x2)(
            T, B, H, x2.shape[1], x2.data_ptr(), Wxp.data_ptr(), Wp.data_ptr(), ptr(bias), ptr(peep), ptr(lens),
            Hs.data_ptr(), Cs.data_ptr(), Hs[1:].data_ptr(), Cs[1:].data_ptr(), ptr(G), threads(),
        )  # fmt: skip
        self.has_bias = b_ih is not None
        return Hs[1:], (Hs[T].clone(), Cs[T].clone()), [x2, lens, Hs, Cs, G, W_ih, W_hh, peep]

    def step(self, B: int, x: int, F: int, state: list[int], out: list[int], packed) -> None:
        Wxp, Wp, bias, peep = packed
        lib_fn("rk_lstm_fwd", Wp)(
            1, B, self.H, F, x, Wxp.data_ptr(), Wp.data_ptr(), ptr(bias), ptr(peep), None, *state, *out, None,
            threads(),
        )  # fmt: skip

    def backward(self, saved, g_out: Tensor, g_finals, needs):
        x2, lens, Hs, Cs, G, W_ih, W_hh, peep = saved
        T, B, H4 = G.shape
        H = H4 // 4
        dh, dc = (g.contiguous().clone() for g in g_finals)
        dPre, db = G.new_empty(T * B, H4), G.new_zeros(H4)  # dL/d(pre-activations), Σ dPre
        dpeep = G.new_zeros(3, H) if peep is not None else None
        Wb, scratch = padded(W_hh), torch.empty_like(dh)
        lib_fn("rk_lstm_bwd", G)(
            T, B, H, G.data_ptr(), Cs.data_ptr(), Wb.data_ptr(), Wb.shape[1], ptr(peep), ptr(lens),
            g_out.data_ptr(), dh.data_ptr(), scratch.data_ptr(), dc.data_ptr(), dPre.data_ptr(), db.data_ptr(),
            ptr(dpeep), int(needs[1]), threads(),
        )  # fmt: skip
        dx, dW_ih = _input_grads(needs[0], needs[3], dPre, x2, W_ih, T)
        dW_hh = gemm(dPre.t(), Hs[:T].view(T * B, H))  # Σ_t dPre_tᵀ h_{t-1}
        db = db if self.has_bias else None
        return dx, dh if needs[1] else None, dc, dW_ih, db, db, dW_hh, dpeep


class GRUSpec:
    """params: W_ih, b_ih, b_hh, W_hh (reset after the product). Saved: r, z, n and W_hn h + b_hn."""

    n_state = 1

    def __init__(self, H: int) -> None:
        self.H = H

    def pack(self, params) -> tuple[Tensor, ...]:
        W_ih, b_ih, b_hh, W_hh = params
        return pack(W_ih, 3), pack(W_hh, 3), b_ih, b_hh

    def forward(self, x: Tensor, lens: Tensor | None, state, params, save: bool):
        W_ih, b_ih, b_hh, W_hh = params
        (T, B, _), H = x.shape, self.H
        x2, (Hs,) = _start(x, state)
        G = x2.new_empty(T, B, 3 * H) if save else None
        HN = x2.new_empty(T, B, H) if save else None
        Wxp, Wp, _, _ = self.pack(params)
        lib_fn("rk_gru_fwd", x2)(
            T, B, H, x2.shape[1], x2.data_ptr(), Wxp.data_ptr(), Wp.data_ptr(), ptr(b_ih), ptr(b_hh), ptr(lens),
            Hs.data_ptr(), Hs[1:].data_ptr(), ptr(G), ptr(HN), threads(),
        )  # fmt: skip
        self.has_bias = b_ih is not None
        return Hs[1:], (Hs[T].clone(),), [x2, lens, Hs, G, HN, W_ih, W_hh]

    def step(self, B: int, x: int, F: int, state: list[int], out: list[int], packed) -> None:
        Wxp, Wp, b_ih, b_hh = packed
        lib_fn("rk_gru_fwd", Wp)(
            1, B, self.H, F, x, Wxp.data_ptr(), Wp.data_ptr(), ptr(b_ih), ptr(b_hh), None, *state, *out, None, None,
            threads(),
        )  # fmt: skip

    def backward(self, saved, g_out: Tensor, g_finals, needs):
        x2, lens, Hs, G, HN, W_ih, W_hh = saved
        T, B, H3 = G.shape
        H = H3 // 3
        dh = g_finals[0].contiguous().clone()
        dPre, dHH = G.new_empty(T * B, H3), G.new_empty(T * B, H3)  # of x's and of h's projections
        db_ih, db_hh = G.new_zeros(H3), G.new_zeros(H3)
        Wb, scratch = padded(W_hh), torch.empty_like(dh)
        lib_fn("rk_gru_bwd", G)(
            T, B, H, G.data_ptr(), HN.data_ptr(), Hs.data_ptr(), Wb.data_ptr(), Wb.shape[1], ptr(lens),
            g_out.data_ptr(), dh.data_ptr(), scratch.data_ptr(), dPre.data_ptr(), dHH.data_ptr(), db_ih.data_ptr(),
            db_hh.data_ptr(), int(needs[1]), threads(),
        )  # fmt: skip
        dx, dW_ih = _input_grads(needs[0], needs[2], dPre, x2, W_ih, T)
        dW_hh = gemm(dHH.t(), Hs[:T].view(T * B, H))  # Σ_t dHH_tᵀ h_{t-1}
        if not self.has_bias:
            db_ih = db_hh = None
        return dx, dh if needs[1] else None, dW_ih, db_ih, db_hh, dW_hh


class ElmanSpec:
    """params: W_ih, b_ih, b_hh, W_hh. Saved: h_0 … h_T (the activation's derivative comes from its output)."""

    n_state = 1

    def __init__(self, act: str, H: int) -> None:
        self.act, self.H = ACT_CODES[act], H

    def pack(self, params) -> tuple[Tensor, ...]:
        W_ih, b_ih, b_hh, W_hh = params
        U = 4 * vl(W_ih)
        return pack(W_ih, 1, U), pack(W_hh, 1, U), _sum(b_ih, b_hh)

    def forward(self, x: Tensor, lens: Tensor | None, state, params, save: bool):
        W_ih, b_ih, b_hh, W_hh = params
        (T, B, _), H = x.shape, self.H
        x2, (Hs,) = _start(x, state)
        Wxp, Wp, bias = self.pack(params)
        lib_fn("rk_elman_fwd", x2)(
            T, B, H, x2.shape[1], self.act, x2.data_ptr(), Wxp.data_ptr(), Wp.data_ptr(), ptr(bias), ptr(lens),
            Hs.data_ptr(), Hs[1:].data_ptr(), threads(),
        )  # fmt: skip
        self.has_bias = b_ih is not None
        return Hs[1:], (Hs[T].clone(),), [x2, lens, Hs, W_ih, W_hh]

    def step(self, B: int, x: int, F: int, state: list[int], out: list[int], packed) -> None:
        Wxp, Wp, bias = packed
        lib_fn("rk_elman_fwd", Wp)(
            1, B, self.H, F, self.act, x, Wxp.data_ptr(), Wp.data_ptr(), ptr(bias), None, *state, *out, threads()
        )  # fmt: skip

    def backward(self, saved, g_out: Tensor, g_finals, needs):
        x2, lens, Hs, W_ih, W_hh = saved
        T1, B, H = Hs.shape
        T = T1 - 1
        dh = g_finals[0].contiguous().clone()
        dPre, db = Hs.new_empty(T * B, H), Hs.new_zeros(H)
        Wb, scratch = padded(W_hh), torch.empty_like(dh)
        lib_fn("rk_elman_bwd", Hs)(
            T, B, H, self.act, Hs.data_ptr(), Wb.data_ptr(), Wb.shape[1], ptr(lens), g_out.data_ptr(), dh.data_ptr(),
            scratch.data_ptr(), dPre.data_ptr(), db.data_ptr(), int(needs[1]), threads(),
        )  # fmt: skip
        dx, dW_ih = _input_grads(needs[0], needs[2], dPre, x2, W_ih, T)
        dW_hh = gemm(dPre.t(), Hs[:T].view(T * B, H))
        db = db if self.has_bias else None
        return dx, dh if needs[1] else None, dW_ih, db, db, dW_hh


class JordanSpec:
    """params: W_ih, b_ih, W_yh, b_yh, W_hy, b_hy. Saved: y_0 … y_T and the hidden layers h_1 … h_T."""

    n_state = 1

    def __init__(self, act: str, out_act: str, H: int, O: int) -> None:
        self.act, self.out_act, self.H, self.O = ACT_CODES[act], ACT_CODES[out_act], H, O

    def pack(self, params) -> tuple[Tensor, ...]:
        W_ih, b_ih, W_yh, b_yh, W_hy, b_hy = params
        U = 4 * vl(W_ih)
        return pack(W_ih, 1, U), pack(W_yh, 1, U), pack(W_hy, 1, U), _sum(b_ih, b_yh), b_hy

    def forward(self, x: Tensor, lens: Tensor | None, state, params, save: bool):
        W_ih, b_ih, W_yh, b_yh, W_hy, b_hy = params
        (T, B, _), H, O = x.shape, self.H, self.O
        x2, (Ys,) = _start(x, state)
        Hh = x2.new_empty(T, B, H)
        Wxp, Wyp, Whp, bias, _ = self.pack(params)
        lib_fn("rk_jordan_fwd", x2)(
            T, B, H, O, x2.shape[1], self.act, self.out_act, x2.data_ptr(), Wxp.data_ptr(), Wyp.data_ptr(),
            Whp.data_ptr(), ptr(bias), ptr(b_hy), ptr(lens), Ys.data_ptr(), Ys[1:].data_ptr(), Hh.data_ptr(), threads(),
        )  # fmt: skip
        self.has_bias = b_ih is not None
        return Ys[1:], (Ys[T].clone(),), [x2, lens, Ys, Hh, W_ih, W_yh, W_hy]

    def step(self, B: int, x: int, F: int, state: list[int], out: list[int], packed) -> None:
        Wxp, Wyp, Whp, bias, b_hy = packed
        h = Wxp.new_empty(B, self.H)  # the hidden layer: within a step the threads exchange it
        lib_fn("rk_jordan_fwd", Wxp)(
            1, B, self.H, self.O, F, self.act, self.out_act, x, Wxp.data_ptr(), Wyp.data_ptr(), Whp.data_ptr(),
            ptr(bias), ptr(b_hy), None, *state, *out, h.data_ptr(), threads(),
        )  # fmt: skip

    def backward(self, saved, g_out: Tensor, g_finals, needs):
        x2, lens, Ys, Hh, W_ih, W_yh, W_hy = saved
        T, B, H = Hh.shape
        O = Ys.shape[2]
        dy = g_finals[0].contiguous().clone()
        dPre, dPreY = Hh.new_empty(T * B, H), Hh.new_empty(T * B, O)  # of the hidden and output pre-activations
        db, db_hy = Hh.new_zeros(H), Hh.new_zeros(O)
        W_yh_b, W_hy_b = padded(W_yh), padded(W_hy)
        scratch, dh = torch.empty_like(dy), Hh.new_empty(B, H)
        lib_fn("rk_jordan_bwd", Hh)(
            T, B, H, O, self.act, self.out_act, Ys.data_ptr(), Hh.data_ptr(), W_yh_b.data_ptr(), W_yh_b.shape[1],
            W_hy_b.data_ptr(), W_hy_b.shape[1], ptr(lens), g_out.data_ptr(), dy.data_ptr(), scratch.data_ptr(),
            dh.data_ptr(), dPre.data_ptr(), dPreY.data_ptr(), db.data_ptr(), db_hy.data_ptr(), int(needs[1]), threads(),
        )  # fmt: skip
        dx, dW_ih = _input_grads(needs[0], needs[2], dPre, x2, W_ih, T)
        dW_yh = gemm(dPre.t(), Ys[:T].view(T * B, O))  # Σ_t dPre_tᵀ y_{t-1}
        dW_hy = gemm(dPreY.t(), Hh.view(T * B, H))  # Σ_t dPreY_tᵀ h_t
        if not self.has_bias:
            db = db_hy = None
        return dx, dy if needs[1] else None, dW_ih, db, dW_yh, db, dW_hy, db_hy


def spec_for(cell: Any, w: Any) -> tuple[Any, list[Tensor | None]]:
    """The spec that runs ``cell`` and its parameters in the order the spec takes them."""
    kind, H = type(cell), cell.hidden_size
    if kind is GRUCell:
        return GRUSpec(H), [w.weight_ih, w.bias_ih, w.bias_hh, w.weight_hh]
    if kind is RNNCell:
        return ElmanSpec(act_name(cell.activation), H), [w.weight_ih, w.bias_ih, w.bias_hh, w.weight_hh]
    if kind is JordanCell:
        spec = JordanSpec(act_name(cell.activation), act_name(cell.output_activation), H, cell.jordan_output_size)
        return spec, [w.weight_ih, w.bias_ih, w.weight_yh, w.bias_yh, w.weight_hy, w.bias_hy]
    peep = None
    if kind is PeepholeLSTMCell:
        peep = torch.stack([w.weight_ci, w.weight_cf, w.weight_co])  # (3, H), differentiable
    return LSTMSpec(H), [w.weight_ih, w.bias_ih, w.bias_hh, w.weight_hh, peep]
