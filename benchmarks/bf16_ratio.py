"""rnnkit's bf16 training step against torch.nn's under the same autocast, with the spread over rounds, and what the
weight gradients on rnnkit's kernel buy over torch's bf16 GEMM (the same step with ``specs._own_bf16_gemm``
switched off in the same process).

Run from the repository root: ``PYTHONPATH=src python benchmarks/bf16_ratio.py [lstm|gru] [rounds]``. d2l sizes
(one-hot 28, hidden 256, batch 32, 35 steps), forward + backward, malloc tuned as ``rnnkit bench`` does; the
contenders alternate round by round, so a machine whose speed drifts (a shared cloud box) moves them together.
``rnnkit bench`` reports medians of the times; this reports the median and quartiles of the per-round ratios.
"""

from __future__ import annotations

import statistics
import sys

import torch

import rnnkit
import rnnkit.engines.fused.specs as specs
from rnnkit.allocator import tune_malloc
from rnnkit.timing import time_interleaved


def step(model: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor, bf16: bool = True, own: bool = True):
    own_gemm = specs._own_bf16_gemm

    def run() -> None:
        specs._own_bf16_gemm = own_gemm if own else (lambda: False)
        for p in model.parameters():
            p.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)[0].float()
        out.backward(grad)
        specs._own_bf16_gemm = own_gemm

    return run


def spread(a: list[float], b: list[float]) -> str:
    """median (quartiles) of the per-round ratios a / b"""
    r = sorted(x / y for x, y in zip(a, b, strict=True))
    n = len(r)
    return f"{statistics.median(r):.3f} ({r[n // 4]:.3f}-{r[(3 * n) // 4]:.3f})"


def main(cell: str = "lstm", rounds: int = 21) -> None:
    tune_malloc()
    torch.manual_seed(0)
    F, H, B, T = 28, 256, 32, 35
    x = torch.nn.functional.one_hot(torch.randint(F, (T, B)), F).float()
    grad = torch.randn(T, B, H)
    base = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(F, H)
    ours = (rnnkit.LSTM if cell == "lstm" else rnnkit.GRU)(F, H, engine="fused")
    ours.load_state_dict(base.state_dict())
    calls = [step(base, x, grad, bf16=False), step(base, x, grad), step(ours, x, grad), step(ours, x, grad, own=False)]
    t32, t16, mine, theirs = time_interleaved(calls, repeats=rounds, warmup=2, min_time=0.3)
    ms = [f"{statistics.median(t) * 1e3:.2f}" for t in (t32, t16, mine, theirs)]
    print(f"{cell}, d2l training, {rounds} rounds, ms: torch float32 {ms[0]}, torch bf16 {ms[1]}, rnnkit bf16 {ms[2]} "
          f"(weight gradients on torch's GEMM: {ms[3]})")  # fmt: skip
    print(f"  rnnkit bf16 speed over torch bf16: {spread(t16, mine)}; over torch float32: {spread(t32, mine)}; "
          f"own weight-gradient kernel over torch's GEMM: {spread(theirs, mine)}")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "lstm", int(sys.argv[2]) if len(sys.argv) > 2 else 21)
