"""A tiny synthetic task for the training-loop tests: a noisy cyclic token stream, learnable and cheap."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rnnkit.models import detach_state


def cyclic_stream(n: int, vocab: int = 6, period: int = 5, seed: int = 0) -> torch.Tensor:
    """Tokens repeating a fixed cycle of ``period`` symbols with 10 % random substitutions."""
    g = torch.Generator().manual_seed(seed)
    cycle = torch.randint(0, vocab, (period,), generator=g)
    ids = cycle.repeat(n // period + 1)[:n].clone()
    noise = torch.rand(n, generator=g) < 0.1
    ids[noise] = torch.randint(0, vocab, (int(noise.sum()),), generator=g)
    return ids


def unigram_entropy(ids: torch.Tensor, vocab: int) -> float:
    p = torch.bincount(ids, minlength=vocab).double() / len(ids)
    return float(-(p[p > 0] * p[p > 0].log()).sum())


class ToyTask:
    """Language modelling on :func:`cyclic_stream`; sequential batches carry state like d2l's iterator."""

    name = "toy"

    def __init__(self, vocab: int = 6, batch_size: int = 4, num_steps: int = 8, sequential: bool = True,
                 nan_at: int = 0) -> None:  # fmt: skip
        self.vocab, self.B, self.T, self.sequential, self.nan_at = vocab, batch_size, num_steps, sequential, nan_at
        ids = cyclic_stream(3000, vocab)
        self.train_ids, self.val_ids = ids[:2600], ids[2600:]
        self.calls = 0

    def train_batches(self, generator: torch.Generator):
        B, T = self.B, self.T
        span = (len(self.train_ids) - 1) // B
        while True:
            offset = int(torch.randint(0, T, (1,), generator=generator))
            starts = torch.arange(B) * span + offset
            for t in range(0, span - T - offset, T):
                idx = starts[:, None] + t + torch.arange(T)
                yield self.train_ids[idx], self.train_ids[idx + 1]

    def loss(self, model, batch, state):
        X, Y = batch
        logits, state = model(X, state if self.sequential else None)
        loss = F.cross_entropy(logits.reshape(-1, self.vocab), Y.reshape(-1))
        self.calls += 1
        if self.nan_at and self.calls >= self.nan_at:
            loss = loss * math.nan
        return loss, detach_state(state) if self.sequential else None, Y.numel()

    def evaluate(self, model):
        X, Y = self.val_ids[None, :-1], self.val_ids[None, 1:]
        logits, _ = model(X)
        loss = F.cross_entropy(logits.reshape(-1, self.vocab), Y.reshape(-1))
        return {"loss": loss, "ppl": loss.exp()}

    def metadata(self):
        return {"vocab_size": self.vocab}
