"""Per-token generation latency: the exported one-token ONNX model in onnxruntime against rnnkit's own stepper.

    PYTHONPATH=src python benchmarks/onnx_latency.py [--checkpoint RUN] [--rounds 7] [--tokens 500]

Without ``--checkpoint`` it builds the ``recommended`` preset's model (2 x 256 GRU, embedding 64) for a
60-token vocabulary with torch's initial weights (latency does not depend on what the weights learned).
Each contestant generates ``--tokens`` tokens greedily (step, argmax, feed back) from a zero state, batch 1;
rounds interleave the contestants in one process and the table gives each one's median and its median
ratio to rnnkit's one-thread stepper on the same round (the machine may be shared: ratios are the robust
figure; on a loaded machine the two-thread runs suffer most, since their threads wait for each other).

Contestants: ``LanguageModel.step`` (rnnkit's stepper: one C call per layer) at 1 and torch's default threads;
the file ``rnnkit export`` writes (each layer's step as plain ONNX ops) in onnxruntime at 1 and 2 intra-op
threads; for comparison, the same model through ONNX's native GRU/LSTM op run for one time step
(``to_onnx`` of the whole model with a state input, fed (1, 1) tokens); and the ``torch-export`` files
traced on the reference engine (plain torch ops) and on the fused engine (rnnkit's kernels as torch
operators), run by torch on one thread.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import torch

from rnnkit.data import Vocab
from rnnkit.export.lm import export_language_model, load_program, metadata
from rnnkit.export.model import lm_graph
from rnnkit.export.step import lm_step_graph
from rnnkit.models import LanguageModel, ModelConfig


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def session(model_bytes: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def ort_loop(sess: ort.InferenceSession, names: list[str], shape: list[tuple[int, int]], seq: bool) -> Callable:
    """Greedy generation of n tokens through an onnxruntime session (numpy in, numpy out)."""
    token_name = "tokens" if seq else "token"

    def run(n: int) -> None:
        state = {f"{k}_0": np.zeros((L, 1, S), np.float32) for k, (L, S) in zip(names, shape)}
        token = np.array([[1]] if seq else [1], np.int64)
        for _ in range(n):
            logits, *new = sess.run(None, {token_name: token, **state})
            state = dict(zip(state, new))
            nxt = int(logits.reshape(-1)[-logits.shape[-1] :].argmax())
            token = np.array([[nxt]] if seq else [nxt], np.int64)

    return run


def rnnkit_loop(model: LanguageModel, threads: int) -> Callable:
    def run(n: int) -> None:
        saved = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            state, token = None, torch.tensor([1])
            with torch.no_grad():
                for _ in range(n):
                    logits, state = model.step(token, state)
                    token = logits.argmax(-1)
        finally:
            torch.set_num_threads(saved)

    return run


def program_loop(model: LanguageModel, vocab: Vocab, engine: str, folder: str) -> Callable:
    """Greedy generation through the torch.export program that ``rnnkit export --format torch-export`` writes."""
    path = export_language_model(model, vocab, f"{folder}/{engine}.pt2", "torch-export", engine=engine)
    program = load_program(path)
    L, sizes = model.rnn.num_layers, model.rnn.cells[0].state_sizes

    def run(n: int) -> None:
        saved = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            state, token = [torch.zeros(L, 1, s) for s in sizes], torch.tensor([1])
            with torch.no_grad():
                for _ in range(n):
                    logits, *state = program(token, *state)
                    token = logits.argmax(-1)
        finally:
            torch.set_num_threads(saved)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="", help="a run of rnnkit train (default: the recommended config)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=500)
    args = parser.parse_args()
    if args.checkpoint:
        from rnnkit.tasks.lm import load_language_model

        model, vocab, _ = load_language_model(args.checkpoint)
        what = f"checkpoint {args.checkpoint}"
    else:
        torch.manual_seed(0)
        vocab = Vocab([chr(33 + i) for i in range(59)])  # 59 tokens + <unk>
        cfg = ModelConfig(cell="gru", hidden_size=256, num_layers=2, input="embedding", embed_size=64)
        model = cfg.build(len(vocab))
        what = "recommended preset's model (untrained)"
    model.eval()
    layer = model.rnn
    meta = metadata(model, vocab)
    names = [s["input"][:-2] for s in meta["state"]]
    shape = [(s["shape"][0], s["shape"][2]) for s in meta["state"]]
    step_bytes = lm_step_graph(model).SerializeToString()
    native_bytes = lm_graph(model, with_state=True).SerializeToString()
    default_threads = torch.get_num_threads()
    contestants = {  # the first is the baseline of the ratios: one thread, as robust as timings get on a shared box
        "rnnkit stepper, 1 thread": rnnkit_loop(model, 1),
        f"rnnkit stepper, {default_threads} threads": rnnkit_loop(model, default_threads),
        "onnxruntime, exported step, 1 thread": ort_loop(session(step_bytes, 1), names, shape, False),
        "onnxruntime, exported step, 2 threads": ort_loop(session(step_bytes, 2), names, shape, False),
        "onnxruntime, native op (T=1), 1 thread": ort_loop(session(native_bytes, 1), names, shape, True),
    }
    folder = tempfile.mkdtemp()
    for engine in ("reference", "fused"):
        contestants[f"torch.export program ({engine}), 1 thread"] = program_loop(model, vocab, engine, folder)
    baseline = next(iter(contestants))
    for run in contestants.values():  # warm-up: packing, session allocations, first-call costs
        run(20)
    times: dict[str, list[float]] = {k: [] for k in contestants}
    for _ in range(args.rounds):
        for name, run in contestants.items():
            start = time.perf_counter()
            run(args.tokens)
            times[name].append((time.perf_counter() - start) / args.tokens * 1e6)
    print(f"{what}: {layer.describe_cell()} x {layer.num_layers}, vocabulary {len(vocab)}")
    print(
        f"CPU: {cpu_name()}; torch {torch.__version__}, onnxruntime {ort.__version__}; "
        f"{args.rounds} rounds x {args.tokens} tokens, batch 1, greedy"
    )
    print(f"{'contestant':42s} {'us/token (median)':>18s} {'ratio to ' + baseline:>40s}")
    for name, ts in times.items():
        ratios = [t / b for t, b in zip(ts, times[baseline])]
        print(f"{name:42s} {statistics.median(ts):18.1f} {statistics.median(ratios):40.2f}")


if __name__ == "__main__":
    main()
