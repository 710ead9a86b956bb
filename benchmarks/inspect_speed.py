"""What an ``rnnkit inspect`` report costs: a 2-layer, 256-unit language model of each cell over 10,000 characters
of the Time Machine (docs/inspect.md, "Cost").

For each cell, in one process and interleaved over rounds (median of ``--rounds``): the whole report
(``inspect_model`` + the HTML page: reading the text, every gate and state, loss, features, contexts, the
gradient flow), its parts, the HTML size, and two peers — a plain forward pass over the same text (what any
use of the model costs) and one direct ``layer(x, return_gates=True)`` call over it (what the report would pay
without the chunked reading of :mod:`rnnkit.diagnostics.record`).

Run from the repository root: ``RNNKIT_DATA_DIR=... PYTHONPATH=src python benchmarks/inspect_speed.py``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from rnnkit.data import Vocab, load_corpus
from rnnkit.diagnostics.gradflow import lm_gradient_norms
from rnnkit.diagnostics.report import inspect_model, read_text
from rnnkit.models import LanguageModel


def timed(fn):  # noqa: ANN001, ANN201
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chars", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cells", default="lstm,gru,rnn,peephole,jordan")
    args = p.parse_args()
    text = load_corpus("timemachine").text[20_000 : 20_000 + args.chars]
    vocab = Vocab.from_text(text)
    torch.manual_seed(0)
    cells = args.cells.split(",")
    models = {c: LanguageModel(len(vocab), c, 256, 2, input="embedding", embed_size=64).eval() for c in cells}
    ids = torch.tensor(vocab.encode(text))
    times: dict[str, dict[str, list[float]]] = {c: {} for c in cells}
    sizes: dict[str, float] = {}
    for _ in range(args.rounds):
        for c, m in models.items():
            row = times[c]
            with torch.no_grad():
                row.setdefault("plain forward", []).append(timed(lambda m=m: m(ids[None]))[0])
            row.setdefault("read (gates, states, loss)", []).append(timed(lambda m=m: read_text(m, vocab, text))[0])
            row.setdefault("gradient flow", []).append(timed(lambda m=m: lm_gradient_norms(m, ids))[0])
            t, page = timed(lambda m=m: inspect_model(m, vocab, text).html())
            row.setdefault("whole report + HTML", []).append(t)
            sizes[c] = len(page.encode("utf-8")) / 1e6
            with torch.no_grad():
                x = m._inputs(ids[None])
                t = timed(lambda m=m, x=x: m.rnn(x, return_gates=True))[0]
            row.setdefault("direct return_gates call", []).append(t)
    where = (
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"{where}, {time.strftime('%Y-%m-%d')}; {args.chars:,} characters, 2 x 256 units, median of {args.rounds}")
    keys = list(next(iter(times.values())))
    print("seconds, median (fastest) of the rounds; the machine is shared, so the fastest is the least disturbed")
    print("| cell | " + " | ".join(keys) + " | HTML MB |")
    print("|" + " --- |" * (len(keys) + 2))
    for c in cells:
        cols = " | ".join(f"{statistics.median(times[c][k]):.2f} ({min(times[c][k]):.2f})" for k in keys)
        print(f"| {c} | {cols} | {sizes[c]:.2f} |")


if __name__ == "__main__":
    main()
