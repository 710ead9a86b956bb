"""What every Triton sequence kernel shares: activations, block products, and how a kernel walks the steps.

**Work split.** A kernel instance (a *program*) owns ``BB`` batch rows. One step of a cell is one to three
*phases*; a phase computes a tile of ``BU`` units (of one gate each, or of every gate of those units) from
full-width products (``h_{t-1} W_hhᵀ`` needs all of ``h_{t-1}``), so a phase may start only when the
previous one has finished for every unit. Two ways to run the steps, from the same kernel:

* ``"sequence"``: one launch for the whole sequence, one program per block of batch rows; each program
  walks every step and every unit tile itself, with a barrier between phases. Fewest launches; suits small
  hidden sizes and batches (the one-token stepper, the d2l configuration).
* ``"step"``: one launch per phase and step, one program per (block of rows, unit tile): the units of a
  step are spread over the whole GPU, and the launch boundary is the barrier. Suits large hidden sizes.

``"auto"`` picks ``"sequence"`` while a phase has at most :data:`SEQUENCE_MAX_TILES` unit tiles (a guess,
to be tuned on a GPU: docs/engines.md); ``RNNKIT_TRITON_LAUNCH=sequence|step`` forces one (tests run both).
Triton's interpreter (``TRITON_INTERPRET=1``) runs the programs of a launch one after another on CPU
tensors, which both ways allow: no program ever waits for another of the same launch.

Products use ``tl.dot`` (tensor cores where the dtype allows) over ``BK``-wide slices; float32 products
are exact ("ieee") unless torch allows TF32 for matmuls (``torch.backends.cuda.matmul.allow_tf32``), as
torch's own CUDA matmuls do. Offsets that scale with the sequence are 64-bit (T·B·4H passes 2³¹ for long
sequences at large sizes).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor

BB = 16  # batch rows per program: tl.dot needs at least 16 on every side
SEQUENCE_MAX_TILES = 4
#: compiler options: fused multiply-adds, as the C kernels (said explicitly: Triton 3.9 warns when it is left unset)
_OPTIONS = {"enable_fp_fusion": True}
# activation codes (rnnkit.engines.fused.specs.ACT_CODES): identity 0, tanh 1, relu 2, sigmoid 3, hard_sigmoid 4


@triton.jit
def act(x, CODE: tl.constexpr):
    """The named activation ``CODE`` of ``x``; σ and tanh from ``exp(-|x|)``, which cannot overflow."""
    if CODE == 1:
        e = tl.exp(-2.0 * tl.abs(x))
        y = (1.0 - e) / (1.0 + e)
        y = tl.where(x < 0, -y, y)
    elif CODE == 2:
        y = tl.where(x < 0, 0.0, x)  # NaN passes through, as in torch
    elif CODE == 3:
        e = tl.exp(-tl.abs(x))
        y = tl.where(x < 0, e / (1.0 + e), 1.0 / (1.0 + e))
    elif CODE == 4:
        y = tl.minimum(tl.maximum(x / 6.0 + 0.5, 0.0), 1.0)
    else:
        y = x
    return y


@triton.jit
def act_grad(y, CODE: tl.constexpr):
    """The derivative of activation ``CODE`` from its output ``y``, as autograd takes it."""
    if CODE == 1:
        d = 1.0 - y * y
    elif CODE == 2:
        d = tl.where(y > 0, 1.0, 0.0)
    elif CODE == 3:
        d = y * (1.0 - y)
    elif CODE == 4:
        d = tl.where((y > 0) & (y < 1), 1.0 / 6.0, 0.0)
    else:
        d = y * 0.0 + 1.0
    return d


@triton.jit
def load2(ptr, rows, rmask, cols, cmask, s_r, s_c):
    """The block ``ptr[rows, cols]`` (strides ``s_r``, ``s_c``), zero outside the masks."""
    return tl.load(ptr + rows[:, None] * s_r + cols[None, :] * s_c, mask=rmask[:, None] & cmask[None, :], other=0.0)


@triton.jit
def store2(ptr, value, rows, rmask, cols, cmask, s_r):
    tl.store(ptr + rows[:, None] * s_r + cols[None, :], value, mask=rmask[:, None] & cmask[None, :])


@triton.jit
def mm(acc, a, s_a, rows, rmask, K, w, s_wk, s_wn, cols, cmask, BK: tl.constexpr, PREC: tl.constexpr):
    """``acc + A[rows, :K] @ W[:K, cols]``: A row-major (row stride ``s_a``), W through strides (k, n)."""
    for k0 in range(0, K, BK):
        ks = k0 + tl.arange(0, BK)
        km = ks < K
        acc = tl.dot(load2(a, rows, rmask, ks, km, s_a, 1), load2(w, ks, km, cols, cmask, s_wk, s_wn), acc,
                     input_precision=PREC)  # fmt: skip
    return acc


@triton.jit
def alive_rows(len_ptr, rows, rmask, t, HAS_LEN: tl.constexpr):
    """(BB, 1): True where row ``b`` is a real row still inside its sequence at step ``t``."""
    if HAS_LEN:
        n = tl.load(len_ptr + rows, mask=rmask, other=0)
        alive = rmask & (t < n)
    else:
        alive = rmask
    return alive[:, None]


# ---- host side ----------------------------------------------------------------------------------------


def precision(x: Tensor) -> str:
    """``tl.dot``'s input precision: TF32 only where torch allows it for float32 matmuls on the GPU."""
    tf32 = x.dtype == torch.float32 and x.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
    return "tf32" if tf32 else "ieee"


def blocks(units: Sequence[int], depths: Sequence[int]) -> dict[str, int]:
    """Tile sizes: ``BU`` units per tile (16…64) and ``BK`` per product slice (16 or 32)."""
    BU = min(64, max(16, triton.next_power_of_2(max(units))))
    BK = 16 if max(depths) <= 16 else 32
    return {"BU": BU, "BK": BK}


def launch_mode(units: Sequence[int], BU: int) -> str:
    mode = os.environ.get("RNNKIT_TRITON_LAUNCH", "auto")
    if mode not in ("auto", "sequence", "step"):
        raise ValueError(f"RNNKIT_TRITON_LAUNCH={mode!r}: use auto, sequence or step")
    if mode == "auto":
        mode = "sequence" if max(triton.cdiv(n, BU) for n in units) <= SEQUENCE_MAX_TILES else "step"
    return mode


def walk(kernel, args: Sequence, B: int, T: int, units: Sequence[int], reverse: bool, *, depths: Sequence[int],
         **meta) -> None:  # fmt: skip
    """Run ``kernel`` over steps 0 … T - 1 (or back from T - 1 with ``reverse``), phase ``p`` of each step
    over ``units[p]`` units; ``args`` are the kernel's own arguments, before (t0, n_steps, tiles…);
    ``depths`` the lengths of its products (for the tile sizes); ``meta`` its own compile-time constants."""
    if T == 0 or B == 0:
        return
    meta.update(blocks(units, depths))
    BU, nb, n_phases = meta["BU"], triton.cdiv(B, BB), len(units)
    tiles = [triton.cdiv(n, BU) for n in units] + [0] * (3 - len(units))
    first, direction = (T - 1, -1) if reverse else (0, 1)
    if launch_mode(units, BU) == "sequence":
        flags = {f"DO_{'ABC'[p]}": p < n_phases for p in range(3)}
        kernel[(nb, 1)](*args, first, T, *tiles, DIR=direction, BB=BB, **flags, **meta, **_OPTIONS)
        return
    for i in range(T):
        for p in range(n_phases):
            flags = {f"DO_{'ABC'[q]}": q == p for q in range(3)}
            step = first + direction * i
            kernel[(nb, tiles[p])](*args, step, 1, 1, 1, 1, DIR=direction, BB=BB, **flags, **meta, **_OPTIONS)


def input_projection(x: Tensor, W_ih: Tensor, bias: Tensor | None) -> Tensor:
    """``x W_ihᵀ (+ bias)`` for every step at once: (T, B, gates) — one large GEMM before the recurrence."""
    T, B, F = x.shape
    x2 = x.reshape(T * B, F)
    out = torch.mm(x2, W_ih.t()) if bias is None else torch.addmm(bias, x2, W_ih.t())
    return out.view(T, B, -1)


def weight_grad(d: Tensor, a: Tensor) -> Tensor:
    """``Σ_t d_tᵀ a_t`` for d (T, B, n), a (T, B, m): a weight's gradient over all steps as one GEMM."""
    return torch.mm(d.reshape(-1, d.shape[-1]).t(), a.reshape(-1, a.shape[-1]))


def input_grads(needs: Sequence[bool], dPre: Tensor, x: Tensor, W_ih: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """dL/dx = dPre W_ih and dL/dW_ih = Σ_t dPre_tᵀ x_t, each only if asked for."""
    T, B, F = x.shape
    dx = torch.mm(dPre.reshape(T * B, -1), W_ih).view(T, B, F) if needs[0] else None
    return dx, (weight_grad(dPre, x) if needs[1] else None)


def grad_or_none(g: Tensor | None) -> Tensor | None:
    return None if g is None or g.numel() == 0 else g


def recurrent_grads(B: int, S: int, like: Tensor) -> Tensor:
    """Two (B, S) slots for dL/dh that the backward walk alternates between (the later one starts at 0)."""
    return torch.zeros(2, B, S, dtype=like.dtype, device=like.device)
