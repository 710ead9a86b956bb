"""Long-range dependency benchmarks: the adding problem and the copy-memory task, as data and as tasks.

Both are the classic proofs that gates matter: the answer depends on inputs seen T steps earlier, so the
training signal has to cross T steps of the product ``∏ ∂s_i/∂s_{i-1}`` (why gradients vanish).

* **Adding problem** (Hochreiter & Schmidhuber 1997, experiment 4; the form of Le et al. 2015): each step
  carries a value ``u ~ U(0, 1)`` and a marker; exactly two steps are marked, one in each half of the
  sequence. Target: the sum of the two marked values, read at the last step. Predicting the mean, 1,
  scores MSE = Var(u₁ + u₂) = 2/12 ≈ 0.167 — a model below that has learned to remember.
* **Copy memory** (Hochreiter & Schmidhuber 1997, experiment 2; the form of Arjovsky et al. 2016): the
  input is ``K`` symbols from an alphabet of ``A``, ``T`` blanks (the last one replaced by a "go" marker)
  and ``K`` more blanks; the target is blanks everywhere except the last ``K`` steps, which must repeat
  the symbols. A memoryless model that outputs blanks and then guesses scores a cross-entropy of
  ``K ln A / (T + 2K)`` per step and an accuracy of ``1/A`` on the recalled symbols.

Tokens: 0 = blank, 1..A = symbols, A + 1 = go marker. Batches are batch-first ``(B, L, F)`` tensors.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.rnn import make_layer


def adding_problem(n: int, seq_len: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``n`` adding-problem sequences: inputs (n, T, 2) = (value, marker), targets (n,) = sum of marked values."""
    if seq_len < 2:
        raise ValueError(f"the adding problem needs seq_len >= 2 (one marker per half), got {seq_len}")
    values = torch.rand(n, seq_len, generator=generator)  # u_t ~ U(0, 1)
    half = seq_len // 2
    first = torch.randint(0, half, (n,), generator=generator)  # one marker in the first half …
    second = torch.randint(half, seq_len, (n,), generator=generator)  # … and one in the second
    markers = torch.zeros(n, seq_len)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    target = values[rows, first] + values[rows, second]  # y = u_first + u_second
    return torch.stack([values, markers], dim=-1), target


def copy_memory(
    n: int, delay: int, generator: torch.Generator | None = None, *, n_symbols: int = 8, copy_len: int = 10
) -> tuple[Tensor, Tensor]:
    """``n`` copy-memory sequences of length ``delay + 2 copy_len``: input tokens and target tokens, both (n, L)."""
    if delay < 1 or n_symbols < 2 or copy_len < 1:
        raise ValueError(f"copy memory needs delay >= 1, n_symbols >= 2, copy_len >= 1; got {delay}, "
                         f"{n_symbols}, {copy_len}")  # fmt: skip
    L = delay + 2 * copy_len
    symbols = torch.randint(1, n_symbols + 1, (n, copy_len), generator=generator)  # what must be remembered
    inputs = torch.zeros(n, L, dtype=torch.long)
    inputs[:, :copy_len] = symbols
    inputs[:, copy_len + delay - 1] = n_symbols + 1  # "go": start recalling after this step
    targets = torch.zeros(n, L, dtype=torch.long)
    targets[:, -copy_len:] = symbols  # recall the symbols in the last copy_len steps
    return inputs, targets


class SequenceModel(nn.Module):
    """An rnnkit recurrent layer and a linear read-out at every step: (B, T, F) -> (B, T, O), batch first.

    ``forget_bias`` is passed to LSTM cells (ignored by the others)."""

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        engine: str = "auto",
        forget_bias: float = 0.0,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.config = {"cell": cell, "input_size": input_size, "hidden_size": hidden_size, "output_size": output_size}
        extra: dict[str, Any] = {}
        if cell in ("lstm", "peephole", "lnlstm"):
            extra["forget_bias"] = forget_bias  # added to the forget-gate bias at init (LSTMs only)
        self.rnn = make_layer(cell, input_size, hidden_size, batch_first=True, engine=engine, dtype=dtype, **extra)
        self.head = nn.Linear(self.rnn.output_size, output_size, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)  # (B, T, H)
        return self.head(out)  # (B, T, O)


class AddingTask:
    """The adding problem at length ``seq_len`` for :func:`rnnkit.train.train` (MSE at the last step)."""

    name = "adding"
    unit = "sequences"
    input_size, output_size = 2, 1

    def __init__(self, seq_len: int, batch_size: int = 32, val_size: int = 1000, seed: int = 1234) -> None:
        if batch_size < 1 or val_size < 1:
            raise ValueError(f"batch_size and val_size must be positive, got {batch_size}, {val_size}")
        self.seq_len, self.batch_size = seq_len, batch_size
        self.val_x, self.val_y = adding_problem(val_size, seq_len, torch.Generator().manual_seed(seed))

    def train_batches(self, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            yield adding_problem(self.batch_size, self.seq_len, generator)

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor], state: Any) -> tuple[Tensor, None, int]:
        x, y = batch
        dtype = next(model.parameters()).dtype
        pred = model(x.to(dtype))[:, -1, 0]  # read the answer at the last step
        return F.mse_loss(pred, y.to(dtype)), None, x.shape[0]

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        p = next(model.parameters())
        pred = model(self.val_x.to(p.device, p.dtype))[:, -1, 0].float().cpu()
        mse = F.mse_loss(pred, self.val_y).item()
        baseline = F.mse_loss(torch.ones_like(self.val_y), self.val_y).item()  # always answer 1
        return {"loss": mse, "mse": mse, "baseline_mse": baseline}

    def metadata(self) -> dict[str, Any]:
        return {"seq_len": self.seq_len, "batch_size": self.batch_size}


class CopyTask:
    """Copy memory with ``delay`` blanks for :func:`rnnkit.train.train` (cross-entropy at every step)."""

    name = "copy"
    unit = "sequences"

    def __init__(
        self,
        delay: int,
        batch_size: int = 32,
        val_size: int = 1000,
        seed: int = 1234,
        *,
        n_symbols: int = 8,
        copy_len: int = 10,
    ) -> None:
        if batch_size < 1 or val_size < 1:
            raise ValueError(f"batch_size and val_size must be positive, got {batch_size}, {val_size}")
        self.delay, self.batch_size, self.n_symbols, self.copy_len = delay, batch_size, n_symbols, copy_len
        self.input_size = self.output_size = n_symbols + 2  # blank, symbols, go
        gen = torch.Generator().manual_seed(seed)
        self.val_x, self.val_y = copy_memory(val_size, delay, gen, n_symbols=n_symbols, copy_len=copy_len)

    @property
    def baseline_loss(self) -> float:
        """Per-step cross-entropy of the memoryless strategy: blanks, then a uniform guess for each symbol."""
        return self.copy_len * math.log(self.n_symbols) / (self.delay + 2 * self.copy_len)

    def train_batches(self, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            yield copy_memory(self.batch_size, self.delay, generator, n_symbols=self.n_symbols, copy_len=self.copy_len)

    def _logits(self, model: nn.Module, tokens: Tensor) -> Tensor:
        dtype = next(model.parameters()).dtype
        return model(F.one_hot(tokens, self.input_size).to(dtype))  # (B, L, A + 2)

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor], state: Any) -> tuple[Tensor, None, int]:
        x, y = batch
        logits = self._logits(model, x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)), None, x.shape[0]

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        p = next(model.parameters())
        logits = self._logits(model, self.val_x.to(p.device)).float().cpu()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), self.val_y.reshape(-1)).item()
        recalled = logits[:, -self.copy_len :].argmax(-1) == self.val_y[:, -self.copy_len :]
        return {"loss": loss, "accuracy": recalled.double().mean().item(), "baseline_loss": self.baseline_loss,
                "baseline_accuracy": 1.0 / self.n_symbols}  # fmt: skip

    def metadata(self) -> dict[str, Any]:
        return {"delay": self.delay, "batch_size": self.batch_size, "n_symbols": self.n_symbols,
                "copy_len": self.copy_len}  # fmt: skip
