"""The per-cell halves of the fused sequence operator: what each cell's C kernels take and give back (LSTM,
GRU, Elman, Jordan, IndRNN; MGU on the GRU's).

A spec runs one direction of one layer. It is stateless: everything about the cell travels in
``config``, a short list of integers (activation codes, flags), and its parameters in ``params``, a list of
the tensors present in a fixed order — the form a torch operator can take (:mod:`.ops`). Its parts:

* ``config_and_params(cell, w)`` — from an rnnkit cell and its layer's weights;
* ``pack(config, params)`` — the weights laid out in the kernels' panels (once per call, or once for the
  one-token stepper);
* ``run(config, packed, x, state, lengths, keep)`` — the kernels' forward: the *buffers*, every step's
  state (``Hs`` (T + 1, B, S) starts with the initial state) and, with ``keep``, what the backward and
  ``return_gates`` read (the gates ``G``);
* ``backward(config, x, state, params, lengths, buffers, grads, needs)`` — the gradients of the inputs
  from the gradients of the buffers: the kernels' backward walk, then the weight gradients as a few
  large GEMMs over all steps (``dW_hh = dPreᵀ H_prev``);
* ``buffer_shapes`` — for shape propagation under ``torch.compile``/``torch.export``;
* ``outputs(config, buffers)`` — the output sequence, final states and gates as views of the buffers;
* ``make_cell(config, ...)`` — the equivalent rnnkit cell, whose readable step the differentiable
  recomputation for double backward runs (:mod:`.ops`).

A spec with ``regularisers = True`` also takes ``reg`` in ``run`` and ``backward``: the in-loop regularisers of
:mod:`rnnkit.regularisers` (``[zone, rmask]``: zoneout's float64 (p_h, p_c, train, key_h, key_c) and the
recurrent-dropout multipliers (B, S) or an empty tensor; csrc/reg.h). The recurrent weight gradient then
multiplies the masked states, ``dW_hh = Σ_t dPre_tᵀ (m ⊙ h_{t-1})``.

The equations are the cells' (:mod:`rnnkit.cells`); the C files (``csrc/``) restate them.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

from rnnkit.activations import ACTIVATIONS, activation_name
from rnnkit.cells import (
    GRUCell,
    IndRNNCell,
    JordanCell,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    LSTMCell,
    MGUCell,
    PeepholeLSTMCell,
    RNNCell,
)
from rnnkit.cells.base import Weights

#: activation name -> the kernels' code (csrc/rnnkit_c.h)
ACT_CODES = {"identity": 0, "tanh": 1, "relu": 2, "sigmoid": 3, "hard_sigmoid": 4}
_CODE_NAMES = {v: k for k, v in ACT_CODES.items()}
_k = torch.ops.rnnkit_c  # the raw kernels (csrc/ops.cpp), resolved when first called


def act_code(fn: Any) -> int | None:
    """The kernels' code for activation ``fn``, or ``None`` if it is not one they can differentiate."""
    return ACT_CODES.get(activation_name(fn) or "")


def _act(code: int) -> Any:
    return ACTIVATIONS[_CODE_NAMES[code]]


def _grad_or_none(t: Tensor | None) -> Tensor | None:
    return None if t is None or t.numel() == 0 else t


def _mm(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` on rnnkit's GEMM (any strides; on some CPUs the BLAS is slow for these shapes)."""
    return _k.gemm(a, b)


def _mm_bf16(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` from bf16 operands (float32 result), on torch's bf16 GEMM (oneDNN: AMX where the CPU has it);
    for the weight gradients under autocast, as autocast computes a Linear layer's. (An operand already in bf16
    is used as it is.)"""
    return torch.mm(a.bfloat16(), b.bfloat16()).float()


@functools.cache
def _own_bf16_gemm() -> bool:
    """Whether the weight gradients under bf16 products run on rnnkit's kernel (``weight_grads_bf16``: vdpbf16ps,
    float32 results): where the products do. With AMX, torch's bf16 GEMM does (oneDNN's, on the tile unit)."""
    return _k.bf16_mode() == 1


def _own_fits(K: int, N: int) -> bool:
    """Whether rnnkit's bf16 weight-gradient kernel suits a sum over K rows of ``dᵀ x`` with N columns of x. It keeps
    a 64-column panel of d (K · 128 bytes) and all of x's rows (K · N · 2 bytes) in a core's L2, without blocking
    the sum: measured on a Zen 4 box (1 MiB of L2 per core; see docs/benchmarks.md), it beat torch's bf16 GEMM
    up to K = 4096, N = 256 (8.0 against 8.8 ms), tied at K = 2048, N = 512, and took twice as long at K = 6400,
    N = 1024 (the large benchmark). Past these sizes, torch's."""
    return K <= 4096 and K * N <= 1 << 20


def _weight_grads(d: Tensor, xs: list[Tensor], bf16: bool) -> list[Tensor]:
    """``[dᵀ x for x in xs]`` in float32: weight gradients, sums over the T·B rows (``d`` = dPre). With bf16
    products on rnnkit's kernel where it suits the sizes (one pass lays ``d`` out for all of them), else on
    torch's bf16 GEMM (see above)."""
    mm = _mm_bf16 if bf16 else _mm
    own = [bf16 and _own_bf16_gemm() and _own_fits(d.shape[0], x.shape[1]) for x in xs]
    done = iter(_k.weight_grads_bf16(d, [x for x, o in zip(xs, own) if o]) if any(own) else [])
    return [next(done) if o else _weight_grad(d, x, mm) for x, o in zip(xs, own)]


def _weight_grad(d: Tensor, x2: Tensor, mm: Any = _mm) -> Tensor:
    """``dᵀ x2``; for a narrow ``x2`` (a few features, e.g. one-hot characters) as ``(x2ᵀ d)ᵀ``, whose long
    side then runs along the vectors (about 2.5× faster for 28 features)."""
    if x2.shape[1] >= 64:
        return mm(d.t(), x2)
    return mm(x2.t(), d).t().contiguous()


def _input_grads(
    needs: list[bool], dPre2: Tensor, x: Tensor, W_ih: Tensor, bf16: bool = False, more: tuple[Tensor, ...] = ()
) -> tuple[Any, Any, list[Tensor]]:
    """dL/dx = dPre W_ih (T, B, F) and dL/dW_ih = dPreᵀ X, each only if asked for, then dPreᵀ m for each m of
    ``more`` (the recurrent weights' gradient from h_{t-1}): the weight gradients in one call of _weight_grads."""
    T, B, F = x.shape
    dx = (_mm_bf16 if bf16 else _mm)(dPre2, W_ih).view(T, B, F) if needs[0] else None
    grads = _weight_grads(dPre2, ([x.reshape(T * B, F)] if needs[1] else []) + list(more), bf16)
    return dx, grads.pop(0) if needs[1] else None, grads


def _prev(S: Tensor, rmask: Tensor | None = None) -> Tensor:
    """``S[:T]`` (each step's previous state) as (T·B, n); with ``rmask`` (B, n), as the recurrent product saw it."""
    prev = S[:-1] if rmask is None else S[:-1] * rmask
    return prev.reshape(-1, S.shape[-1])


def _reg(reg: list[Tensor] | None) -> tuple[Tensor | None, Tensor | None]:
    """(zone, rmask) for the kernels from a spec's ``reg`` argument (None where absent)."""
    if not reg:
        return None, None
    zone, rmask = reg
    return zone, (rmask if rmask.numel() else None)


class LSTMSpec:
    """config: act, rec_act, bias, proj, peephole. params: W_ih, W_hh, [b_ih, b_hh], [W_hr], [w_ci, w_cf, w_co].
    Buffers: Hs (T + 1, B, S), Cs (T + 1, B, H), G (T, B, 4H) i, f, g, o, M (T, B, H) = o ⊙ act(c) (projection)."""

    name, gate_names, n_state = "lstm", ("i", "f", "g", "o", "c"), 2
    regularisers = True

    @staticmethod
    def bf16_products(config: list[int]) -> bool:
        """Whether the kernels have bf16 products for this configuration (not with a projection)."""
        return not config[3]

    @staticmethod
    def config_and_params(cell: Any, w: Any) -> tuple[list[int], list[Tensor]]:
        peep = type(cell) is PeepholeLSTMCell
        config = [act_code(cell.activation), act_code(cell.recurrent_activation), int(w.bias_ih is not None)]
        config += [int(cell.proj_size > 0), int(peep)]
        params = [w.weight_ih, w.weight_hh]
        params += [w.bias_ih, w.bias_hh] if config[2] else []
        params += [w.weight_hr] if config[3] else []
        params += [w.weight_ci, w.weight_cf, w.weight_co] if peep else []
        return config, params

    @staticmethod
    def _unpack(config: list[int], params: list[Tensor]) -> tuple[Any, ...]:
        it = iter(params)
        W_ih, W_hh = next(it), next(it)
        b_ih, b_hh = (next(it), next(it)) if config[2] else (None, None)
        W_hr = next(it) if config[3] else None
        peep = [next(it) for _ in range(3)] if config[4] else None
        return W_ih, W_hh, b_ih, b_hh, W_hr, peep

    @classmethod
    def pack(cls, config: list[int], params: list[Tensor], bf16: bool = False) -> list[Tensor | None]:
        W_ih, W_hh, b_ih, b_hh, W_hr, peep = cls._unpack(config, params)
        pack = (lambda W, n: _k.pack_bf16(W, n, 16)) if bf16 else (lambda W, n: _k.pack(W, n, False))
        return [
            pack(W_ih, 4),
            pack(W_hh, 4),
            None if W_hr is None else _k.pack(W_hr, 1, True),
            None if b_ih is None else b_ih + b_hh,
            None if peep is None else torch.stack(peep),  # (3, H)
        ]

    @staticmethod
    def run(
        config: list[int],
        packed: list,
        x: Tensor,
        state: list[Tensor],
        lengths: Tensor | None,
        keep: bool,
        bf16: bool = False,
        reg: list[Tensor] | None = None,
    ):
        Wxp, Wp, Whrp, bias, peep = packed
        h0, c0 = state
        return list(_k.lstm_fwd(x, Wxp, Wp, Whrp, bias, peep, lengths, h0, c0, config[0], config[1], keep, bf16,
                                *_reg(reg)))  # fmt: skip

    @staticmethod
    def buffer_shapes(config: list[int], x: Tensor, state: list[Tensor], keep: bool) -> list[tuple[int, ...]]:
        (T, B, _), S, H = x.shape, state[0].shape[-1], state[1].shape[-1]
        return [(T + 1, B, S), (T + 1, B, H), (T, B, 4 * H) if keep else (0,), (T, B, H) if config[3] else (0,)]

    @classmethod
    def backward(cls, config, x, state, params, lengths, buffers, grads, needs, bf16=False, reg=None) -> list:
        W_ih, W_hh, b_ih, _, W_hr, peep = cls._unpack(config, params)
        Hs, Cs, G, M = buffers
        gHs, gCs, gG, _ = (_grad_or_none(g) for g in grads)
        gHs = torch.zeros_like(Hs) if gHs is None else gHs
        stacked = None if peep is None else torch.stack(peep)
        zone, rmask = _reg(reg)
        dPre, dh0, dc0, db, dpeep, dHt = _k.lstm_bwd(
            G, Cs, M, W_hh, W_hr, stacked, lengths, gHs, gCs, gG, config[0], config[1], needs[1], bf16, zone, rmask
        )
        T, B, H4 = G.shape
        # with bf16 products the kernel wrote dPre only in bf16 (its own next product's operand): the products
        # below take it as it is
        dPre2 = dPre.reshape(T * B, H4)
        dx, dW_ih, (dW_hh,) = _input_grads([needs[0], needs[3]], dPre2, x, W_ih, bf16, (_prev(Hs, rmask),))
        grads_p = [dW_ih, dW_hh]  # dW_hh = Σ_t dPre_tᵀ h_{t-1}
        grads_p += [db, db.clone()] if b_ih is not None else []
        grads_p += [_mm(dHt.view(T * B, -1).t(), M.view(T * B, -1))] if W_hr is not None else []  # Σ dh_tᵀ m_t
        grads_p += [d.clone() for d in dpeep.unbind(0)] if peep is not None else []  # outputs must not alias
        return [dx, dh0, dc0, *grads_p]

    @staticmethod
    def outputs(config: list[int], buffers: list[Tensor]) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        Hs, Cs, G, _ = buffers
        gates = list(G.chunk(4, dim=-1)) + [Cs[1:]] if G.dim() == 3 else []  # (0,): not kept
        return Hs[1:], [Hs[-1], Cs[-1]], gates

    @staticmethod
    def make_cell(config: list[int], F: int, H: int, S: int) -> Any:
        kind = PeepholeLSTMCell if config[4] else LSTMCell
        return kind(F, H, bool(config[2]), proj_size=S if config[3] else 0, activation=_act(config[0]),
                    recurrent_activation=_act(config[1]), device="meta")  # fmt: skip

    @classmethod
    def weights(cls, config: list[int], params: list[Tensor]) -> Weights:
        W_ih, W_hh, b_ih, b_hh, W_hr, peep = cls._unpack(config, params)
        names = {"weight_ih": W_ih, "weight_hh": W_hh, "bias_ih": b_ih, "bias_hh": b_hh, "weight_hr": W_hr}
        if peep is not None:
            names.update(zip(("weight_ci", "weight_cf", "weight_co"), peep, strict=True))
        return Weights(names)


class GRUSpec:
    """config: act, rec_act, bias, reset_after. params: W_ih, W_hh, [b_ih, b_hh].
    Buffers: Hs (T + 1, B, H), G (T, B, 3H) r, z, n, HN (T, B, H): W_hn h + b_hn (reset after) or r ⊙ h."""

    name, gate_names, n_state = "gru", ("r", "z", "n"), 1
    regularisers = True

    @staticmethod
    def bf16_products(config: list[int]) -> bool:
        """Whether the kernels have bf16 products for this configuration (torch's reset-after form)."""
        return bool(config[3])

    @staticmethod
    def config_and_params(cell: Any, w: Any) -> tuple[list[int], list[Tensor]]:
        config = [act_code(cell.activation), act_code(cell.recurrent_activation), int(w.bias_ih is not None)]
        config.append(int(cell.reset_after))
        params = [w.weight_ih, w.weight_hh] + ([w.bias_ih, w.bias_hh] if config[2] else [])
        return config, params

    @staticmethod
    def pack(config: list[int], params: list[Tensor], bf16: bool = False) -> list[Tensor | None]:
        W_ih, W_hh = params[:2]
        b_ih, b_hh = params[2:4] if config[2] else (None, None)
        H = W_hh.shape[1]
        if bf16:
            return [_k.pack_bf16(W_ih, 3, 16), _k.pack_bf16(W_hh, 3, 16), None, b_ih, b_hh]
        if config[3]:
            return [_k.pack(W_ih, 3, False), _k.pack(W_hh, 3, False), None, b_ih, b_hh]
        return [_k.pack(W_ih, 3, False), _k.pack(W_hh[: 2 * H], 2, False), _k.pack(W_hh[2 * H :], 1, False), b_ih, b_hh]

    @staticmethod
    def run(
        config: list[int],
        packed: list,
        x: Tensor,
        state: list[Tensor],
        lengths: Tensor | None,
        keep: bool,
        bf16: bool = False,
        reg: list[Tensor] | None = None,
    ):
        Wxp, Wp, Wnp, b_ih, b_hh = packed
        act, rec, after = config[0], config[1], bool(config[3])
        return list(_k.gru_fwd(x, Wxp, Wp, Wnp, b_ih, b_hh, lengths, state[0], act, rec, after, keep, bf16, *_reg(reg)))

    @staticmethod
    def buffer_shapes(config: list[int], x: Tensor, state: list[Tensor], keep: bool) -> list[tuple[int, ...]]:
        (T, B, _), H = x.shape, state[0].shape[-1]
        return [(T + 1, B, H), (T, B, 3 * H) if keep else (0,), (T, B, H) if keep else (0,)]

    @staticmethod
    def backward(config, x, state, params, lengths, buffers, grads, needs, bf16=False, reg=None) -> list:
        W_ih, W_hh = params[:2]
        Hs, G, HN = buffers
        gHs, gG, _ = (_grad_or_none(g) for g in grads)
        gHs = torch.zeros_like(Hs) if gHs is None else gHs
        zone, rmask = _reg(reg)
        dPre, dHH, dh0, db_ih, db_hh = _k.gru_bwd(
            G, HN, Hs, W_hh, lengths, gHs, gG, config[0], config[1], bool(config[3]), needs[1], bf16, zone, rmask
        )
        T, B, H3 = dPre.shape
        # with bf16 products the kernel wrote dPre and dHH in bf16 only (the products below take them as they are)
        dPre2, Hp = dPre.view(T * B, H3), _prev(Hs, rmask)
        dx, dW_ih, _ = _input_grads([needs[0], needs[2]], dPre2, x, W_ih, bf16)
        if config[3]:  # reset after: dW_hh = Σ_t dHH_tᵀ h_{t-1} (with bf16 products, the kernel's bf16 dHH)
            dW_hh = _weight_grads(dHH.view(T * B, H3), [Hp], bf16)[0]
        else:  # reset before: the r, z rows see h_{t-1}, the n rows r ⊙ h_{t-1} (both masked: HN is r ⊙ m ⊙ h)
            H = H3 // 3
            dW_hh = torch.cat([_mm(dPre2[:, : 2 * H].t(), Hp), _mm(dPre2[:, 2 * H :].t(), HN.view(T * B, H))])
        return [dx, dh0, dW_ih, dW_hh, *([db_ih, db_hh] if config[2] else [])]

    @staticmethod
    def outputs(config: list[int], buffers: list[Tensor]) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        Hs, G, _ = buffers
        return Hs[1:], [Hs[-1]], list(G.chunk(3, dim=-1)) if G.dim() == 3 else []

    @staticmethod
    def make_cell(config: list[int], F: int, H: int, S: int) -> Any:
        return GRUCell(F, H, bool(config[2]), reset_after=bool(config[3]), activation=_act(config[0]),
                       recurrent_activation=_act(config[1]), device="meta")  # fmt: skip

    @staticmethod
    def weights(config: list[int], params: list[Tensor]) -> Weights:
        b = params[2:4] if config[2] else (None, None)
        return Weights({"weight_ih": params[0], "weight_hh": params[1], "bias_ih": b[0], "bias_hh": b[1]})


class ElmanSpec:
    """config: act, bias. params: W_ih, W_hh, [b_ih, b_hh]. Buffers: Hs (T + 1, B, H)."""

    name, gate_names, n_state = "elman", ("h",), 1
    regularisers = True

    @staticmethod
    def bf16_products(config: list[int]) -> bool:
        return False

    @staticmethod
    def config_and_params(cell: Any, w: Any) -> tuple[list[int], list[Tensor]]:
        config = [act_code(cell.activation), int(w.bias_ih is not None)]
        return config, [w.weight_ih, w.weight_hh] + ([w.bias_ih, w.bias_hh] if config[1] else [])

    @staticmethod
    def pack(config: list[int], params: list[Tensor], bf16: bool = False) -> list[Tensor | None]:
        bias = params[2] + params[3] if config[1] else None
        return [_k.pack(params[0], 1, True), _k.pack(params[1], 1, True), bias]

    @staticmethod
    def run(
        config: list[int],
        packed: list,
        x: Tensor,
        state: list[Tensor],
        lengths: Tensor | None,
        keep: bool,
        bf16: bool = False,
        reg: list[Tensor] | None = None,
    ):
        Wxp, Wp, bias = packed
        return [_k.elman_fwd(x, Wxp, Wp, bias, lengths, state[0], config[0], *_reg(reg))]

    @staticmethod
    def buffer_shapes(config: list[int], x: Tensor, state: list[Tensor], keep: bool) -> list[tuple[int, ...]]:
        return [(x.shape[0] + 1, x.shape[1], state[0].shape[-1])]

    @staticmethod
    def backward(config, x, state, params, lengths, buffers, grads, needs, bf16=False, reg=None) -> list:
        (Hs,), gHs = buffers, _grad_or_none(grads[0])
        gHs = torch.zeros_like(Hs) if gHs is None else gHs
        zone, rmask = _reg(reg)
        dPre, dh0, db = _k.elman_bwd(Hs, params[1], lengths, gHs, config[0], needs[1], zone, rmask)
        T, B, H = dPre.shape
        dPre2 = dPre.view(T * B, H)
        dx, dW_ih, _ = _input_grads([needs[0], needs[2]], dPre2, x, params[0])
        return [dx, dh0, dW_ih, _mm(dPre2.t(), _prev(Hs, rmask)), *([db, db.clone()] if config[1] else [])]

    @staticmethod
    def outputs(config: list[int], buffers: list[Tensor]) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        (Hs,) = buffers
        return Hs[1:], [Hs[-1]], [Hs[1:]]

    @staticmethod
    def make_cell(config: list[int], F: int, H: int, S: int) -> Any:
        return RNNCell(F, H, bool(config[1]), activation=_act(config[0]), device="meta")

    @staticmethod
    def weights(config: list[int], params: list[Tensor]) -> Weights:
        b = params[2:4] if config[1] else (None, None)
        return Weights({"weight_ih": params[0], "weight_hh": params[1], "bias_ih": b[0], "bias_hh": b[1]})


class JordanSpec:
    """config: act, out_act, bias, hidden size. params: W_ih, W_yh, W_hy, [b_ih, b_yh, b_hy].
    Buffers: Ys (T + 1, B, O) the fed-back outputs, Hh (T, B, H) the hidden layers."""

    name, gate_names, n_state = "jordan", ("h", "y"), 1
    regularisers = True

    @staticmethod
    def bf16_products(config: list[int]) -> bool:
        return False

    @staticmethod
    def config_and_params(cell: Any, w: Any) -> tuple[list[int], list[Tensor]]:
        config = [act_code(cell.activation), act_code(cell.output_activation), int(w.bias_ih is not None)]
        config.append(cell.hidden_size)
        params = [w.weight_ih, w.weight_yh, w.weight_hy]
        return config, params + ([w.bias_ih, w.bias_yh, w.bias_hy] if config[2] else [])

    @staticmethod
    def pack(config: list[int], params: list[Tensor], bf16: bool = False) -> list[Tensor | None]:
        W_ih, W_yh, W_hy = params[:3]
        bias, b_hy = (params[3] + params[4], params[5]) if config[2] else (None, None)
        return [_k.pack(W_ih, 1, True), _k.pack(W_yh, 1, True), _k.pack(W_hy, 1, True), bias, b_hy]

    @staticmethod
    def run(
        config: list[int],
        packed: list,
        x: Tensor,
        state: list[Tensor],
        lengths: Tensor | None,
        keep: bool,
        bf16: bool = False,
        reg: list[Tensor] | None = None,
    ):
        Wxp, Wyp, Whp, bias, b_hy = packed
        return list(_k.jordan_fwd(x, Wxp, Wyp, Whp, bias, b_hy, lengths, state[0], config[3], config[0], config[1],
                                  *_reg(reg)))  # fmt: skip

    @staticmethod
    def buffer_shapes(config: list[int], x: Tensor, state: list[Tensor], keep: bool) -> list[tuple[int, ...]]:
        (T, B, _), O = x.shape, state[0].shape[-1]
        return [(T + 1, B, O), (T, B, config[3])]

    @staticmethod
    def backward(config, x, state, params, lengths, buffers, grads, needs, bf16=False, reg=None) -> list:
        W_ih, W_yh, W_hy = params[:3]
        Ys, Hh = buffers
        gYs, gHh = (_grad_or_none(g) for g in grads)
        gYs = torch.zeros_like(Ys) if gYs is None else gYs
        act, out_act = config[0], config[1]
        zone, rmask = _reg(reg)
        dPre, dPreY, dy0, db, db_hy = _k.jordan_bwd(
            Ys, Hh, W_yh, W_hy, lengths, gYs, gHh, act, out_act, needs[1], zone, rmask
        )
        T, B, H = dPre.shape
        dPre2 = dPre.view(T * B, H)
        dx, dW_ih, _ = _input_grads([needs[0], needs[2]], dPre2, x, W_ih)
        dW_yh = _mm(dPre2.t(), _prev(Ys, rmask))  # Σ_t dPre_tᵀ y_{t-1}
        dW_hy = _mm(dPreY.view(T * B, -1).t(), Hh.view(T * B, H))  # Σ_t dPreY_tᵀ h_t
        return [dx, dy0, dW_ih, dW_yh, dW_hy, *([db, db.clone(), db_hy] if config[2] else [])]

    @staticmethod
    def outputs(config: list[int], buffers: list[Tensor]) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        Ys, Hh = buffers
        return Ys[1:], [Ys[-1]], [Hh, Ys[1:]]

    @staticmethod
    def make_cell(config: list[int], F: int, H: int, S: int) -> Any:
        return JordanCell(F, H, S, bool(config[2]), activation=_act(config[0]),
                          output_activation=_act(config[1]), device="meta")  # fmt: skip

    @staticmethod
    def weights(config: list[int], params: list[Tensor]) -> Weights:
        b = params[3:6] if config[2] else (None, None, None)
        names = ("weight_ih", "weight_yh", "weight_hy", "bias_ih", "bias_yh", "bias_hy")
        return Weights(dict(zip(names, [*params[:3], *b], strict=True)))


class IndRNNSpec:
    """config: act, bias. params: W_ih, u (weight_hh, (H,)), [b_ih, b_hh]. Buffers: Hs (T + 1, B, H).
    The input projection of all steps is one GEMM here; the kernel runs only the elementwise recurrence."""

    name, gate_names, n_state = "indrnn", ("h",), 1

    @staticmethod
    def bf16_products(config: list[int]) -> bool:
        return False

    @staticmethod
    def config_and_params(cell: Any, w: Any) -> tuple[list[int], list[Tensor]]:
        config = [act_code(cell.activation), int(w.bias_ih is not None)]
        return config, [w.weight_ih, w.weight_hh] + ([w.bias_ih, w.bias_hh] if config[1] else [])

    @staticmethod
    def pack(config: list[int], params: list[Tensor], bf16: bool = False) -> list[Tensor | None]:
        return [params[0], params[1], params[2] + params[3] if config[1] else None]

    @staticmethod
    def run(
        config: list[int],
        packed: list,
        x: Tensor,
        state: list[Tensor],
        lengths: Tensor | None,
        keep: bool,
        bf16: bool = False,
    ):
        W_ih, u, bias = packed
        T, B, F = x.shape
        xw = _mm(x.reshape(T * B, F), W_ih.t())  # W_ih x_t for every step at once
        xw = (xw if bias is None else xw + bias).view(T, B, -1)
        return [_k.indrnn_fwd(xw, u, lengths, state[0], config[0])]

    @staticmethod
    def buffer_shapes(config: list[int], x: Tensor, state: list[Tensor], keep: bool) -> list[tuple[int, ...]]:
        return [(x.shape[0] + 1, x.shape[1], state[0].shape[-1])]

    @staticmethod
    def backward(config, x, state, params, lengths, buffers, grads, needs, bf16=False) -> list[Tensor | None]:
        (Hs,), gHs = buffers, _grad_or_none(grads[0])
        gHs = torch.zeros_like(Hs) if gHs is None else gHs
        dPre, dh0, du = _k.indrnn_bwd(Hs, params[1], lengths, gHs, config[0])
        T, B, H = dPre.shape
        dx, dW_ih, _ = _input_grads([needs[0], needs[2]], dPre.view(T * B, H), x, params[0])
        db = dPre.sum((0, 1))
        return [dx, dh0, dW_ih, du, *([db, db.clone()] if config[1] else [])]

    # Elman's buffer (Hs) and parameter layout (W_ih, W_hh = u, [b_ih, b_hh]), so Elman's readers serve
    outputs = staticmethod(ElmanSpec.outputs)
    weights = staticmethod(ElmanSpec.weights)

    @staticmethod
    def make_cell(config: list[int], F: int, H: int, S: int) -> Any:
        return IndRNNCell(F, H, bool(config[1]), activation=_act(config[0]), device="meta")


class MGUSpec:
    """MGU on the GRU kernels (reset before). With ``z = 1 - f`` and ``r = f``, Cho's GRU *is* the MGU:
    ``n = act(W_in x + W_hn (f ⊙ h) + b)``, ``h' = (1 - z) ⊙ n + z ⊙ h = (1 - f) ⊙ h + f ⊙ n``, and
    ``1 - σ(a) = σ(-a)``, so the GRU's z rows are the f rows negated. The kernels then compute the f rows twice
    (1.5× an MGU kernel's recurrent products), which buys the GRU's tuned, tested forward and backward. Needs a
    ``recurrent_activation`` with ``σ(-a) = 1 - σ(a)``: sigmoid or hard_sigmoid (:meth:`unsupported`).
    config: act, rec_act, bias. params: W_ih (2H, F), W_hh (2H, H), [b_ih, b_hh], blocks f, n.
    Buffers: the GRU's, Hs (T + 1, B, H), G (T, B, 3H) f, 1 - f, n, HN (T, B, H) f ⊙ h."""

    name, gate_names, n_state = "mgu", ("f", "n"), 1

    @staticmethod
    def unsupported(cell: Any) -> str | None:
        if activation_name(cell.recurrent_activation) not in ("sigmoid", "hard_sigmoid"):
            return ("the fused MGU runs on the GRU kernels with z = 1 - f = σ(-a), which needs recurrent_activation "
                    "sigmoid or hard_sigmoid")  # fmt: skip
        return None

    @staticmethod
    def bf16_products(config: list[int]) -> bool:
        return False

    @staticmethod
    def config_and_params(cell: Any, w: Any) -> tuple[list[int], list[Tensor]]:
        config = [act_code(cell.activation), act_code(cell.recurrent_activation), int(w.bias_ih is not None)]
        return config, [w.weight_ih, w.weight_hh] + ([w.bias_ih, w.bias_hh] if config[2] else [])

    @staticmethod
    def _gru(config: list[int], params: list[Tensor]) -> tuple[list[int], list[Tensor]]:
        """The GRU (reset before) that computes this MGU: every stacked f block becomes [f; -f] (r and z)."""
        return config + [0], [torch.cat([f, -f, n]) for f, n in (p.chunk(2) for p in params)]

    @staticmethod
    def _mgu_grad(g: Tensor | None) -> Tensor | None:
        """A GRU parameter's gradient -> the MGU's: f appears as r and as -z."""
        if g is None:
            return None
        r, z, n = g.chunk(3)
        return torch.cat([r - z, n])

    @classmethod
    def pack(cls, config: list[int], params: list[Tensor], bf16: bool = False) -> list[Tensor | None]:
        return GRUSpec.pack(*cls._gru(config, params))

    @staticmethod
    def run(
        config: list[int],
        packed: list,
        x: Tensor,
        state: list[Tensor],
        lengths: Tensor | None,
        keep: bool,
        bf16: bool = False,
    ):
        return GRUSpec.run(config + [0], packed, x, state, lengths, keep)

    @staticmethod
    def buffer_shapes(config: list[int], x: Tensor, state: list[Tensor], keep: bool) -> list[tuple[int, ...]]:
        return GRUSpec.buffer_shapes(config + [0], x, state, keep)

    @classmethod
    def backward(cls, config, x, state, params, lengths, buffers, grads, needs, bf16=False) -> list[Tensor | None]:
        gconfig, gparams = cls._gru(config, params)
        dx, dh0, *dparams = GRUSpec.backward(gconfig, x, state, gparams, lengths, buffers, grads, needs)
        return [dx, dh0, *(cls._mgu_grad(g) for g in dparams)]

    @staticmethod
    def outputs(config: list[int], buffers: list[Tensor]) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        Hs, G, _ = buffers
        gates = [] if G.dim() != 3 else [G.narrow(-1, 0, Hs.shape[-1]), G.narrow(-1, 2 * Hs.shape[-1], Hs.shape[-1])]
        return Hs[1:], [Hs[-1]], gates

    @staticmethod
    def make_cell(config: list[int], F: int, H: int, S: int) -> Any:
        return MGUCell(F, H, bool(config[2]), activation=_act(config[0]), recurrent_activation=_act(config[1]),
                       device="meta")  # fmt: skip

    @staticmethod
    def weights(config: list[int], params: list[Tensor]) -> Weights:
        b = params[2:4] if config[2] else (None, None)
        return Weights({"weight_ih": params[0], "weight_hh": params[1], "bias_ih": b[0], "bias_hh": b[1]})


class LayerNormLSTMSpec:
    """The layer-normalised LSTM (NG = 4 gates; :class:`LayerNormGRUSpec`: the GRU, NG = 3). config: act, rec_act,
    bias. params: W_ih, W_hh, [b_ih, b_hh], α_x, α_h, and for the LSTM α_c, [β_c].

    ``W_ih x`` has no recurrence: one GEMM over all steps here; the kernels (``lnorm.h``) do everything else,
    its layer norm included, and on the way back sum the gains' and shifts' gradients; the weight gradients are
    then GEMMs over all steps. Buffers: Hs (T + 1, B, H), Cs (T + 1, B, H) (LSTM), G (T, B, NG·H) the gates, Zx
    (T, B, NG·H) = W_ih x, Yh (T, B, NG·H) the normalised W_hh h, the statistics Rh (1/σ of W_hh h), Mx, Rx (μ,
    1/σ of W_ih x), Mc, Rc (of c_t, LSTM), each (T, B); all but Hs and Cs empty when not kept."""

    name, gate_names, n_state, n_gates, cell = "lnlstm", ("i", "f", "g", "o", "c"), 2, 4, LayerNormLSTMCell

    @staticmethod
    def bf16_products(config: list[int]) -> bool:
        return False  # float32 products under autocast

    @classmethod
    def config_and_params(cls, cell: Any, w: Any) -> tuple[list[int], list[Tensor]]:
        config = [act_code(cell.activation), act_code(cell.recurrent_activation), int(w.bias_ih is not None)]
        params = [w.weight_ih, w.weight_hh] + ([w.bias_ih, w.bias_hh] if config[2] else [])
        params += [w.ln_ih_weight, w.ln_hh_weight]
        if cls.n_gates == 4:
            params += [w.ln_c_weight] + ([w.ln_c_bias] if config[2] else [])
        return config, params

    @classmethod
    def _unpack(cls, config: list[int], params: list[Tensor]) -> tuple[Any, ...]:
        """W_ih, W_hh, b_ih, b_hh, α_x, α_h, α_c, β_c (None where absent)."""
        it = iter(params)
        W_ih, W_hh = next(it), next(it)
        b_ih, b_hh = (next(it), next(it)) if config[2] else (None, None)
        a_x, a_h = next(it), next(it)
        a_c = next(it) if cls.n_gates == 4 else None
        b_c = next(it) if cls.n_gates == 4 and config[2] else None
        return W_ih, W_hh, b_ih, b_hh, a_x, a_h, a_c, b_c

    @classmethod
    def pack(cls, config: list[int], params: list[Tensor], bf16: bool = False) -> list[Tensor | None]:
        W_ih, W_hh, b_ih, b_hh, a_x, a_h, a_c, b_c = cls._unpack(config, params)
        return [W_ih, a_x, b_ih, _k.pack(W_hh, cls.n_gates, False), b_hh, a_h, a_c, b_c]

    @classmethod
    def run(cls, config: list[int], packed: list, x: Tensor, state: list[Tensor], lengths: Tensor | None, keep: bool,
            bf16: bool = False):  # fmt: skip
        W_ih, *rest = packed
        T, B, F = x.shape
        zx = _mm(x.reshape(T * B, F), W_ih.t()).view(T, B, -1)  # W_ih x for every step at once
        c0 = state[1] if cls.n_gates == 4 else None
        Hs, Cs, G, Yh, Rh, Mx, Rx, Mc, Rc = _k.ln_fwd(zx, *rest, lengths, state[0], c0, config[0], config[1], keep)
        return [Hs, Cs, G, zx if keep else x.new_empty(0), Yh, Rh, Mx, Rx, Mc, Rc]

    @classmethod
    def buffer_shapes(cls, config: list[int], x: Tensor, state: list[Tensor], keep: bool) -> list[tuple[int, ...]]:
        (T, B, _), H = x.shape, state[0].shape[-1]
        lstm, big, stat = cls.n_gates == 4, (T, B, cls.n_gates * H), (T, B)
        kept = [big, big, big, stat, stat, stat, *([stat] * 2 if lstm else [(0,)] * 2)] if keep else [(0,)] * 8
        return [(T + 1, B, H), (T + 1, B, H) if lstm else (0,), *kept]

    @classmethod
    def backward(cls, config, x, state, params, lengths, buffers, grads, needs, bf16=False) -> list[Tensor | None]:
        W_ih, W_hh, b_ih, b_hh, a_x, a_h, a_c, b_c = cls._unpack(config, params)
        Hs, Cs, G, Zx, Yh, Rh, Mx, Rx, Mc, Rc = buffers
        gHs, gCs, gG = (_grad_or_none(g) for g in grads[:3])
        gHs = torch.zeros_like(Hs) if gHs is None else gHs
        lstm = cls.n_gates == 4
        gCs = gCs if lstm else None
        dZx, dZ, dh0, dc0, sums = _k.ln_bwd(G, Yh, Rh, Hs, Cs, Mc, Rc, Zx, Mx, Rx, W_hh, a_x, b_hh, a_h, a_c, b_c,
                                            lengths, gHs, gCs, gG, config[0], config[1], needs[1])  # fmt: skip
        T, B, GH = dZx.shape
        dx, dW_ih, _ = _input_grads([needs[0], needs[1 + cls.n_state]], dZx.view(T * B, GH), x, W_ih)
        grads_p = [dW_ih, _mm(dZ.view(T * B, GH).t(), _prev(Hs))]  # dW_hh = Σ_t dZ_tᵀ h_{t-1}
        da_x, db_x, da_h, db_h, da_c, db_c = (s.clone() for s in sums.unbind(0))  # outputs must not alias
        grads_p += [db_x, db_h] if config[2] else []  # β_x, β_h
        grads_p += [da_x, da_h]  # α_x, α_h
        if lstm:
            H = GH // 4
            grads_p += [da_c[:H]] + ([db_c[:H]] if config[2] else [])  # α_c, β_c
        return [dx, dh0, *([dc0] if lstm else []), *grads_p]

    @classmethod
    def outputs(cls, config: list[int], buffers: list[Tensor]) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        Hs, Cs, G = buffers[:3]
        gates = list(G.chunk(cls.n_gates, dim=-1)) if G.dim() == 3 else []
        if cls.n_gates == 4:
            return Hs[1:], [Hs[-1], Cs[-1]], gates + [Cs[1:]] if gates else []
        return Hs[1:], [Hs[-1]], gates

    @classmethod
    def make_cell(cls, config: list[int], F: int, H: int, S: int) -> Any:
        return cls.cell(F, H, bool(config[2]), activation=_act(config[0]), recurrent_activation=_act(config[1]),
                        device="meta")  # fmt: skip

    @classmethod
    def weights(cls, config: list[int], params: list[Tensor]) -> Weights:
        W_ih, W_hh, b_ih, b_hh, a_x, a_h, a_c, b_c = cls._unpack(config, params)
        names = {"weight_ih": W_ih, "weight_hh": W_hh, "bias_ih": b_ih, "bias_hh": b_hh, "ln_ih_weight": a_x,
                 "ln_hh_weight": a_h}  # fmt: skip
        if cls.n_gates == 4:
            names.update(ln_c_weight=a_c, ln_c_bias=b_c)
        return Weights(names)


class LayerNormGRUSpec(LayerNormLSTMSpec):
    """The layer-normalised GRU: :class:`LayerNormLSTMSpec` with three gates and no memory cell."""

    name, gate_names, n_state, n_gates, cell = "lngru", ("r", "z", "n"), 1, 3, LayerNormGRUCell


#: exact cell type -> spec (a subclass may change the equations, so it is not matched)
SPECS: dict[type, Any] = {
    RNNCell: ElmanSpec,
    JordanCell: JordanSpec,
    GRUCell: GRUSpec,
    LSTMCell: LSTMSpec,
    PeepholeLSTMCell: LSTMSpec,
    IndRNNCell: IndRNNSpec,
    MGUCell: MGUSpec,
    LayerNormLSTMCell: LayerNormLSTMSpec,
    LayerNormGRUCell: LayerNormGRUSpec,
}
BY_NAME: dict[str, Any] = {spec.name: spec for spec in SPECS.values()}
