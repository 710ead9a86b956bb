"""What the fused engine's operator form costs or buys, measured: a torch.compile'd language model against the
eager one, and rnnkit's and torch.nn's training throughput with one core kept busy by another process.

Run from the repository root: ``PYTHONPATH=src python benchmarks/operators.py [compile|load|all]``.
Interleaved rounds in one process (the busy process is started and stopped between rounds), medians;
docs/benchmarks.md quotes the output with the machine and the date.
"""

from __future__ import annotations

import multiprocessing
import platform
import statistics
import sys
import time
from functools import partial

import torch

import rnnkit
from rnnkit.models import LanguageModel
from rnnkit.timing import time_interleaved


def lm_loss(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    logits, _ = model(tokens[:, :-1])
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())


def lm_step(model: torch.nn.Module, opt: torch.optim.Optimizer, tokens: torch.Tensor, loss_fn=lm_loss) -> None:
    loss = loss_fn(model, tokens)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def compile_vs_eager(rounds: int = 15) -> None:
    """Training steps of the recommended language model (2 x 256 GRU, embedding 64, 64-token windows of 32):
    eager against torch.compile (inductor) of the model, and of the model and the loss together (what
    ``rnnkit train --compile`` compiles), after the compiled ones have warmed up."""
    for cell in ("gru", "lstm"):
        torch.manual_seed(0)
        models = [LanguageModel(65, cell, hidden_size=256, num_layers=2, input="embedding", embed_size=64)]
        for _ in range(2):
            models.append(LanguageModel(65, cell, hidden_size=256, num_layers=2, input="embedding", embed_size=64))
            models[-1].load_state_dict(models[0].state_dict())
        tokens = torch.randint(0, 65, (32, 65))
        opts = [torch.optim.AdamW(m.parameters(), lr=1e-3) for m in models]
        calls = [partial(lm_step, models[0], opts[0], tokens),
                 partial(lm_step, torch.compile(models[1]), opts[1], tokens),
                 partial(lm_step, models[2], opts[2], tokens, torch.compile(lm_loss))]  # fmt: skip
        compile_s = []
        for call in calls[1:]:
            start = time.perf_counter()
            call()  # compiles
            compile_s.append(time.perf_counter() - start)
        eager, *compiled = time_interleaved(calls, repeats=rounds, warmup=2, min_time=0.2)
        for what, times, secs in zip(("model", "model and loss"), compiled, compile_s, strict=True):
            ratio = statistics.median(a / b for a, b in zip(eager, times))
            print(f"{cell}: eager {statistics.median(eager) * 1e3:.2f} ms/step, compiled {what} "
                  f"{statistics.median(times) * 1e3:.2f} ms/step, compiled/eager speed {ratio:.2f}x "
                  f"(first compiled step, compiling: {secs:.1f} s)")  # fmt: skip


def _busy(stop) -> None:
    while not stop.is_set():
        pass


def under_load(rounds: int = 5) -> None:
    """d2l GRU and LSTM training throughput, quiet and with one core spinning in another process."""
    torch.manual_seed(0)
    F, H, B, T = 28, 256, 32, 35
    x = torch.nn.functional.one_hot(torch.randint(F, (T, B)), F).float()
    grad = torch.randn(T, B, H)
    contenders = {}
    for cell, theirs in (("gru", torch.nn.GRU), ("lstm", torch.nn.LSTM)):
        base = theirs(F, H)
        ours = getattr(rnnkit, cell.upper())(F, H, engine="fused")
        ours.load_state_dict(base.state_dict())
        contenders[f"torch.nn.{cell.upper()}"] = base
        contenders[f"rnnkit {cell} fused"] = ours

    def call(m):
        def f():
            for p in m.parameters():
                p.grad = None
            m(x)[0].backward(grad)

        return f

    names, calls = list(contenders), [call(m) for m in contenders.values()]
    quiet = {n: [] for n in names}
    busy = {n: [] for n in names}
    ctx = multiprocessing.get_context("spawn")
    for _ in range(rounds):
        for store, load in ((quiet, False), (busy, True)):
            stop = ctx.Event()
            proc = ctx.Process(target=_busy, args=(stop,)) if load else None
            if proc:
                proc.start()
                time.sleep(0.5)
            samples = time_interleaved(calls, repeats=1, warmup=1, min_time=0.3)
            if proc:
                stop.set()
                proc.join()
                time.sleep(1.5)  # rnnkit runs one-threaded for a second after it saw contention: not "quiet"
            for n, s in zip(names, samples):
                store[n] += s
    for n in names:
        q, b = statistics.median(quiet[n]) * 1e3, statistics.median(busy[n]) * 1e3
        print(f"{n:<22} quiet {q:8.2f} ms  one core busy {b:9.2f} ms  kept {q / b:.2f}x of its throughput")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    if what in ("compile", "all"):
        compile_vs_eager()
    if what in ("load", "all"):
        under_load()
