"""Generation cost per token for whole language models: ``LanguageModel.step`` (the layer's one-token stepper,
what ``rnnkit generate`` uses) against calling the model on (1, 1) tokens, and torch.nn.LSTM's own per-token
cost at one and two layers with oneDNN on and off, and beam search in the translation model with its decoder
stepped by the stepper or by the layer (docs/engines.md, "One token at a time").

Run from the repository root: ``PYTHONPATH=src python benchmarks/generation.py`` (about a minute on 2 cores).
Same process, interleaved, median of 5 rounds.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from rnnkit.data import Vocab
from rnnkit.generate import generate
from rnnkit.models import ModelConfig
from rnnkit.tasks.seq2seq import Seq2Seq

TOKENS = 1000


class ForwardOnly(nn.Module):
    """The same model seen as a plain module: generate() then calls it on (1, 1) tokens."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens, state=None):
        return self.model(tokens, state)


def per_token_us(fn, n: int) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) / n * 1e6


def models() -> None:
    vocab = Vocab(list("abcdefghijklmnopqrstuvwxyz .,\n"))
    for cell in ("gru", "lstm"):
        torch.manual_seed(0)
        model = ModelConfig(cell=cell, hidden_size=256, num_layers=2, input="embedding", embed_size=64).build(
            len(vocab)
        )
        runs: dict[str, list[float]] = {"step": [], "forward": []}
        for _ in range(5):
            for name, m in (("step", model), ("forward", ForwardOnly(model))):
                gen = torch.Generator().manual_seed(0)
                run = lambda m=m, g=gen: generate(m, vocab, "ab", TOKENS, generator=g)  # noqa: E731
                runs[name].append(per_token_us(run, TOKENS))
        step, fwd = (statistics.median(runs[k]) for k in ("step", "forward"))
        print(f"{cell} LM 2x256: LanguageModel.step {step:7.1f} us/token | model(tokens[:, None]) {fwd:7.1f} us/token")


def torch_lstm() -> None:
    x = torch.randn(1, 1, 64)
    for layers in (1, 2):
        m = nn.LSTM(64, 256, num_layers=layers).eval()
        with torch.no_grad():
            _, s = m(x)
            for onednn in (True, False):
                with torch.backends.mkldnn.flags(enabled=onednn):
                    for _ in range(20):
                        m(x, s)
                    run = lambda m=m, s=s: [m(x, s) for _ in range(200)]  # noqa: E731
                    us = statistics.median(per_token_us(run, 200) for _ in range(5))
                state = "on " if onednn else "off"
                print(f"torch.nn.LSTM(64, 256, num_layers={layers}), oneDNN {state}: {us:7.1f} us/token")


def decoding() -> None:
    src, src_len = torch.randint(4, 5000, (1, 8)), torch.tensor([8])
    for cell in ("gru", "lstm"):
        torch.manual_seed(0)
        model = Seq2Seq(5000, 5000, cell=cell).eval()  # the task's defaults: 2 x 256, embedding 256, attention
        runs: dict[str, list[float]] = {"stepper": [], "layer": []}
        for _ in range(5):
            for name in runs:
                model.__dict__.pop("_stepper_cache", None)  # the stepper is made (weights packed) inside the timing
                if name == "layer":
                    model.__dict__["_stepper_cache"] = None  # None = no stepper: the decoder layer runs each step
                start = time.perf_counter()
                model.beam_search(src, src_len, beam_size=4, max_len=20)
                runs[name].append((time.perf_counter() - start) * 1e3)
        stepper, layer = (statistics.median(runs[k]) for k in ("stepper", "layer"))
        print(f"{cell} translation model, beam 4 x 20 steps: stepper {stepper:6.1f} ms | layer {layer:6.1f} ms")


if __name__ == "__main__":
    models()
    decoding()
    torch_lstm()
