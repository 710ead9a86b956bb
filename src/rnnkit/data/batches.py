"""Token-id streams -> (X, Y) minibatches for truncated BPTT, as in d2l (random and sequential sampling).

Every batch is a pair of LongTensors ``X, Y`` of shape (B, T) with ``Y[b, t]`` the token after ``X[b, t]``.
The training iterators are endless; each epoch draws its randomness from the ``torch.Generator`` passed in,
and a batch is built only when asked for (index arithmetic on a view), so resuming by replaying
``next()`` k times costs microseconds per batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor


def as_ids(ids: Sequence[int] | Tensor) -> Tensor:
    """A 1-D LongTensor view of ``ids`` (a list of ints or a tensor)."""
    t = ids if isinstance(ids, Tensor) else torch.as_tensor(list(ids), dtype=torch.long)
    if t.dim() != 1:
        raise ValueError(f"token ids must be 1-D, got shape {tuple(t.shape)}")
    return t.long()


def split_ids(
    ids: Sequence[int] | Tensor, fractions: Sequence[float] = (0.9, 0.05, 0.05)
) -> tuple[Tensor, Tensor, Tensor]:
    """Contiguous (train, val, test) parts: the first ``fractions[0]`` of the ids, the next, the rest.

    Boundaries are ``int(n * cumulative fraction)``, so ``(0.9, 0.1, 0.0)`` is nanoGPT's ``shakespeare_char``
    split exactly. A part with fraction 0 is empty on purpose; an empty part with a positive fraction is an error.
    """
    t = as_ids(ids)
    if len(fractions) != 3:
        raise ValueError(f"fractions must be (train, val, test), got {tuple(fractions)}")
    if any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {tuple(fractions)}")
    n = len(t)
    b1 = int(n * fractions[0])
    b2 = n if fractions[2] == 0 else int(n * (fractions[0] + fractions[1]))
    parts = (t[:b1], t[b1:b2], t[b2:])
    for name, part, frac in zip(("train", "val", "test"), parts, fractions):
        if frac > 0 and len(part) == 0:
            raise ValueError(
                f"the {name} part is empty: {n} tokens × {frac} < 1; use a longer text or a larger {name} fraction"
            )
    return parts


class BatchIterator:
    """Endless (X, Y) batches over ``ids``; base of :func:`random_batches` and :func:`sequential_batches`.

    ``epoch`` counts epochs begun (1 after the first batch), ``index`` is the batch's position in its
    epoch (0 = this batch starts a new epoch: a carried state should be reset there), ``batches_per_epoch``
    how many batches the current epoch holds.
    """

    kind = "batches"

    def __init__(
        self, ids: Sequence[int] | Tensor, batch_size: int, num_steps: int, generator: torch.Generator | None = None
    ):
        if batch_size < 1 or num_steps < 1:
            raise ValueError(f"batch_size and num_steps must be >= 1, got {batch_size} and {num_steps}")
        self.ids = as_ids(ids)
        self.batch_size = batch_size
        self.num_steps = num_steps
        self.generator = generator
        self.epoch = 0
        self.index = -1
        self.batches_per_epoch = 0
        need = self.min_tokens()
        if len(self.ids) < need:
            raise ValueError(
                f"the text has {len(self.ids)} tokens but {self.kind}(batch_size={batch_size}, "
                f"num_steps={num_steps}) needs at least {need}; use a longer text or a smaller batch_size/num_steps"
            )

    def min_tokens(self) -> int:
        raise NotImplementedError

    def _new_epoch(self) -> None:
        raise NotImplementedError

    def _batch(self, i: int) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    @property
    def starts_epoch(self) -> bool:
        """True when the batch last returned is the first of an epoch."""
        return self.index == 0

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self

    def _advance(self) -> None:
        self.index += 1
        if self.epoch == 0 or self.index >= self.batches_per_epoch:
            self.epoch += 1
            self.index = 0
            self._new_epoch()

    def __next__(self) -> tuple[Tensor, Tensor]:
        self._advance()
        return self._batch(self.index)

    def skip(self, k: int) -> BatchIterator:
        """Advance as ``k`` calls of ``next()`` would (same generator draws) without building the batches."""
        for _ in range(k):
            self._advance()
        return self


class _RandomBatches(BatchIterator):
    kind = "random_batches"

    def min_tokens(self) -> int:
        # worst offset T-1 must still leave B whole subsequences plus one target token
        return self.batch_size * self.num_steps + self.num_steps

    def _new_epoch(self) -> None:
        T = self.num_steps
        offset = int(torch.randint(0, T, (1,), generator=self.generator))  # d2l: randint(0, T-1)
        num_subseqs = (len(self.ids) - offset - 1) // T
        # start of every subsequence, in a random order; each is used once per epoch (no overlap)
        self.starts = offset + T * torch.randperm(num_subseqs, generator=self.generator)
        self.batches_per_epoch = num_subseqs // self.batch_size

    def _batch(self, i: int) -> tuple[Tensor, Tensor]:
        B, T = self.batch_size, self.num_steps
        rows = self.starts[i * B : (i + 1) * B, None] + torch.arange(T)  # (B, T) positions
        return self.ids[rows], self.ids[rows + 1]


class _SequentialBatches(BatchIterator):
    kind = "sequential_batches"

    def min_tokens(self) -> int:
        # worst offset T must still leave each of the B streams T inputs plus a target
        return self.batch_size * self.num_steps + self.num_steps + 1

    def _new_epoch(self) -> None:
        B, T = self.batch_size, self.num_steps
        offset = int(torch.randint(0, T + 1, (1,), generator=self.generator))  # d2l: randint(0, T)
        length = (len(self.ids) - offset - 1) // B  # tokens per stream
        # row b is the contiguous stream ids[offset + b*length : offset + (b+1)*length]
        self.xs = self.ids[offset : offset + B * length].view(B, length)  # (B, L)
        self.ys = self.ids[offset + 1 : offset + 1 + B * length].view(B, length)  # (B, L)
        self.batches_per_epoch = length // T

    def _batch(self, i: int) -> tuple[Tensor, Tensor]:
        T = self.num_steps
        return self.xs[:, i * T : (i + 1) * T].contiguous(), self.ys[:, i * T : (i + 1) * T].contiguous()


def random_batches(
    ids: Sequence[int] | Tensor, batch_size: int, num_steps: int, generator: torch.Generator | None = None
) -> BatchIterator:
    """d2l's random sampling: each epoch drops a random 0..T-1 prefix, cuts the rest into T-token
    subsequences and serves them in random order, B per batch. Neighbouring batches are unrelated, so the
    state starts fresh for every batch."""
    return _RandomBatches(ids, batch_size, num_steps, generator)


def sequential_batches(
    ids: Sequence[int] | Tensor, batch_size: int, num_steps: int, generator: torch.Generator | None = None
) -> BatchIterator:
    """d2l's sequential partitioning: each epoch drops a random 0..T prefix and splits the rest into B
    contiguous streams; batch k holds tokens k*T..(k+1)*T-1 of every stream, so the final state of one
    batch is the right initial state of the next (carry it, detached). Reset it when ``starts_epoch``."""
    return _SequentialBatches(ids, batch_size, num_steps, generator)


def eval_batches(ids: Sequence[int] | Tensor, batch_size: int, num_steps: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Deterministic full pass for evaluation with a carried state: B contiguous streams from offset 0,
    read T steps at a time; the last chunk may be shorter than T. Every target is scored once except the
    last ``(len(ids) - 1) % batch_size`` tokens (``batch_size=1`` scores them all). Weight losses by ``Y.numel()``."""
    t = as_ids(ids)
    if batch_size < 1 or num_steps < 1:
        raise ValueError(f"batch_size and num_steps must be >= 1, got {batch_size} and {num_steps}")
    length = (len(t) - 1) // batch_size
    if length < 1:
        raise ValueError(
            f"the text has {len(t)} tokens but eval_batches(batch_size={batch_size}) needs at least "
            f"{batch_size + 1}; use a longer text or a smaller batch_size"
        )
    xs = t[: batch_size * length].view(batch_size, length)  # (B, L)
    ys = t[1 : 1 + batch_size * length].view(batch_size, length)  # (B, L)

    def chunks() -> Iterator[tuple[Tensor, Tensor]]:
        for s in range(0, length, num_steps):
            yield xs[:, s : s + num_steps], ys[:, s : s + num_steps]

    return chunks()


def eval_windows(ids: Sequence[int] | Tensor, window: int, batch_size: int = 256) -> Iterator[tuple[Tensor, Tensor]]:
    """Independent, non-overlapping ``window``-token windows, each to be scored from a fresh state (the
    protocol that compares fairly with fixed-context models such as a 64-token transformer). Yields (X, Y)
    of shape (≤ batch_size, window); the last ``(len(ids) - 1) % window`` targets are not scored."""
    t = as_ids(ids)
    if window < 1 or batch_size < 1:
        raise ValueError(f"window and batch_size must be >= 1, got {window} and {batch_size}")
    n_windows = (len(t) - 1) // window
    if n_windows < 1:
        raise ValueError(
            f"the text has {len(t)} tokens but eval_windows(window={window}) needs at least {window + 1}; "
            "use a longer text or a smaller window"
        )
    xs = t[: n_windows * window].view(n_windows, window)  # (N, W)
    ys = t[1 : 1 + n_windows * window].view(n_windows, window)  # (N, W)

    def chunks() -> Iterator[tuple[Tensor, Tensor]]:
        for s in range(0, n_windows, batch_size):
            yield xs[s : s + batch_size], ys[s : s + batch_size]

    return chunks()
