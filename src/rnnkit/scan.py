"""The linear recurrence ``h_t = a_t ⊙ h_{t-1} + b_t`` over all time steps at once: a chunked scan.

minGRU and minLSTM (:mod:`rnnkit.cells.min_rnn`) update their state linearly, with coefficients that depend on
the input only. Composing steps gives a step of the same form,

    h_t = a_t ⊙ (a_s ⊙ h_{s-1} + b_s) + b_t = (a_t ⊙ a_s) ⊙ h_{s-1} + (a_t ⊙ b_s + b_t),

so a stretch of steps can be run before the state entering it is known, and fixed up afterwards. The scan
cuts the T steps into N chunks of C ≈ √T steps and

1. runs every chunk at once from a zero state, one step of all chunks per operation: ``L`` (the chunk's own
   contribution) and ``A`` (the product of its ``a`` so far) — C operations on (N, …) slices;
2. carries the true state across chunk boundaries, one chunk per operation — N operations on (…);
3. fixes every step up at once: ``h = L + A ⊙ (state entering the chunk)`` — one operation.

About 2√T dependent operations instead of T, each over many elements, and about ten passes over the (T, B, H)
data in all (a log-depth scan such as Hillis & Steele's, "Data parallel algorithms" 1986, needs log2 T passes of
several reads each: more memory traffic, which is what a CPU pays for). Why not the paper's ``logcumsumexp``:
this multiplies and adds the very numbers the step loop does — no logarithm, no exponential, no division — so
it cannot overflow, needs no positive candidate, and in float64 equals the loop to rounding
(``tests/test_min_rnn.py``); products of ``a`` in [0, 1] can only shrink towards 0, where they belong.

The backward is one more scan, backwards in time (:class:`_LinearScan`); everything is torch ops, so
``torch.compile`` and ``torch.export`` see through it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


def linear_scan(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """Every ``h_t = a_t ⊙ h_{t-1} + b_t`` for t = 1..T: ``a``, ``b`` (T, ...), ``h0`` (...) -> (T, ...).

    A step with ``a_t = 1, b_t = 0`` leaves the state unchanged: that is how padding freezes it. Differentiable,
    twice too (:class:`_LinearScan`).
    """
    if torch.is_grad_enabled() and any(t.requires_grad for t in (a, b, h0)):
        return _LinearScan.apply(a, b, h0)
    return _chunked(a, b, h0)


def _chunked(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """The scan (module docstring), in plain out-of-place ops (so ``torch.compile`` traces it)."""
    T, rest = a.shape[0], a.shape[1:]
    if T == 0:
        return b.clone()
    C = math.isqrt(T - 1) + 1  # ⌈√T⌉ steps per chunk
    N = -(-T // C)  # chunks
    if N * C > T:  # pad with steps that keep the state: a = 1, b = 0
        a = torch.cat([a, a.new_ones(N * C - T, *rest)])
        b = torch.cat([b, b.new_zeros(N * C - T, *rest)])
    a, b = a.reshape(N, C, *rest), b.reshape(N, C, *rest)
    # 1. every chunk at once from a zero state: L_j = a_j ⊙ L_{j-1} + b_j, A_j = a_j ⊙ A_{j-1}, each (N, ...)
    Ls, As = [b[:, 0]], [a[:, 0]]
    for j in range(1, C):
        Ls.append(torch.addcmul(b[:, j], a[:, j], Ls[-1]))
        As.append(a[:, j] * As[-1])
    # 2. the state entering each chunk: s_{n+1} = A_{n, last} ⊙ s_n + L_{n, last}, from s_0 = h_0
    entering = [h0]
    for n in range(1, N):
        entering.append(torch.addcmul(Ls[-1][n - 1], As[-1][n - 1], entering[-1]))
    # 3. every step fixed up at once: h = L + A ⊙ (state entering its chunk)
    h = torch.addcmul(torch.stack(Ls, 1), torch.stack(As, 1), torch.stack(entering).unsqueeze(1))
    return h.reshape(N * C, *rest)[:T]


class _LinearScan(torch.autograd.Function):
    """The scan with its backward written out: with ``g_t = ∂L/∂h_t`` from outside, the total gradient reaching
    ``h_t`` is ``δ_t = g_t + a_{t+1} ⊙ δ_{t+1}`` — the same recurrence run backwards in time, so one more scan —
    and then ``∂L/∂b_t = δ_t``, ``∂L/∂a_t = δ_t ⊙ h_{t-1}``, ``∂L/∂h_0 = a_1 ⊙ δ_1``. It saves ``a`` and the
    states, what the step loop would keep. Written with differentiable ops, so it can be differentiated again."""

    generate_vmap_rule = True

    @staticmethod
    def forward(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
        return _chunked(a, b, h0)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor, Tensor], output: Tensor) -> None:
        a, _, h0 = inputs
        ctx.save_for_backward(a, h0, output)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a, h0, h = ctx.saved_tensors
        a_next = torch.cat([a[1:], torch.zeros_like(a[:1])])  # a_{t+1}; nothing after the last step
        delta = linear_scan(a_next.flip(0), g.flip(0), torch.zeros_like(h0)).flip(0)  # δ_t, backwards in time
        h_prev = torch.cat([h0.unsqueeze(0), h[:-1]])  # h_{t-1}
        return delta * h_prev, delta, a[0] * delta[0]


def step_loop(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """The same recurrence one step at a time: the definition :func:`linear_scan` is tested against."""
    h, out = h0, []
    for t in range(a.shape[0]):
        h = a[t] * h + b[t]
        out.append(h)
    return torch.stack(out) if out else b
