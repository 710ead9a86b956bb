"""Sequence classification (many→one): an RNN reads a variable-length sequence and one label is predicted from
its final state or from its outputs pooled over the valid steps; trained by :func:`rnnkit.train.train`.

Real data, offline: scikit-learn's 8×8 handwritten digits read as a sequence of glimpses (many-to-one),
row by row (8 steps × 8 pixels), column by column, or pixel by pixel (64 steps × 1). With ``trim=True``
all-blank leading and trailing glimpses are dropped, so sequences have different lengths (reading by
columns gives 2–8 steps) and the batch is padded and run with ``lengths=`` — never sorted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.dropout import Dropout
from rnnkit.rnn import CellName, check_cell
from rnnkit.tasks.layers import build_layer, top_final_state

log = logging.getLogger(__name__)


@dataclass
class ClassifyDataConfig:
    dataset: Literal["digits"] = "digits"
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), shipped offline"""
    read: Literal["rows", "columns", "pixels"] = "rows"
    """how an image becomes a sequence: rows (8 steps x 8), columns (8 x 8) or pixels (64 x 1)"""
    trim: bool = False
    """drop all-blank leading/trailing steps: variable lengths, run with lengths= (columns: 2-8 steps)"""
    val_frac: float = 0.15
    """stratified validation fraction (picks the best checkpoint)"""
    test_frac: float = 0.2
    """stratified held-out test fraction (the reported accuracy)"""
    seed: int = 0
    """seed of the stratified split"""

    def __post_init__(self) -> None:
        if not (0 < self.val_frac < 1 and 0 < self.test_frac < 1 and self.val_frac + self.test_frac < 1):
            raise ValueError(
                f"val_frac and test_frac must be in (0, 1) with sum < 1, got {self.val_frac}, {self.test_frac}"
            )


@dataclass
class ClassifyModelConfig:
    cell: CellName = "gru"
    """recurrent cell"""
    hidden_size: int = 64
    """hidden units per layer and direction"""
    num_layers: int = 1
    """stacked layers"""
    dropout: float = 0.0
    """dropout between stacked layers and before the classifier"""
    bidirectional: bool = False
    """read each sequence both ways"""
    readout: Literal["last", "mean", "max"] = "last"
    """final state at each sequence's last valid step, or mean/max of the outputs over valid steps"""
    engine: str = "auto"
    """rnnkit engine (auto, torch, reference, ...)"""

    def __post_init__(self) -> None:
        check_cell(self.cell, "model.cell")
        if self.hidden_size < 1 or self.num_layers < 1:
            raise ValueError(f"hidden_size and num_layers must be >= 1, got {self.hidden_size}, {self.num_layers}")


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------
@dataclass
class SequenceSet:
    """Padded sequences (N, T, F), their lengths (N,) and labels (N,)."""

    x: np.ndarray
    lengths: np.ndarray
    y: np.ndarray
    classes: list[str]


def images_to_sequences(images: np.ndarray, read: str = "rows", trim: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(N, R, C) images -> padded sequences (N, T, F) and lengths (N,); blank steps trimmed if ``trim``.

    Trimmed sequences are moved to start at step 0 and zero-padded at the end, as ``lengths=`` expects.
    """
    if read == "rows":
        seq = images  # (N, R, C): step = a row
    elif read == "columns":
        seq = images.transpose(0, 2, 1)  # (N, C, R): step = a column
    elif read == "pixels":
        seq = images.reshape(len(images), -1, 1)  # (N, R*C, 1)
    else:
        raise ValueError(f"read must be rows, columns or pixels, got {read!r}")
    N, T, _ = seq.shape
    lengths = np.full(N, T)
    if not trim:
        return seq.astype(np.float64), lengths
    out = np.zeros_like(seq, dtype=np.float64)
    ink = np.abs(seq).sum(axis=2) > 0  # (N, T)
    for i in range(N):
        steps = np.flatnonzero(ink[i])
        lo, hi = (steps[0], steps[-1] + 1) if len(steps) else (0, 1)  # a blank image keeps one step
        lengths[i] = hi - lo
        out[i, : hi - lo] = seq[i, lo:hi]
    return out, lengths


def load_digits_sequences(read: str = "rows", trim: bool = False) -> SequenceSet:
    """scikit-learn's digits, pixel intensities 0..16 scaled to [0, 1], as sequences."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, lengths = images_to_sequences(d.images / 16.0, read, trim)
    return SequenceSet(x, lengths, d.target.astype(np.int64), [str(c) for c in d.target_names])


def stratified_split(y: np.ndarray, val_frac: float, test_frac: float, seed: int) -> dict[str, np.ndarray]:
    """Index arrays train/val/test with the class proportions of ``y`` in each, reproducible from ``seed``."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=test_frac, stratify=y, random_state=seed)
    train, val = train_test_split(rest, test_size=val_frac / (1 - test_frac), stratify=y[rest], random_state=seed)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


# ------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------
class SequenceClassifier(nn.Module):
    """RNN over (B, T, F) with ``lengths`` (B,) -> class logits (B, K)."""

    def __init__(
        self,
        input_size: int,
        num_classes: int,
        *,
        cell: str = "gru",
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        readout: str = "last",
        engine: str = "auto",
    ) -> None:
        super().__init__()
        if readout not in ("last", "mean", "max"):
            raise ValueError(f"readout must be last, mean or max, got {readout!r}")
        self.readout = readout
        self.rnn = build_layer(cell, input_size, hidden_size, num_layers, dropout, bidirectional, engine)
        self.drop = Dropout(dropout)
        self.head = nn.Linear(self.rnn.num_directions * self.rnn.output_size, num_classes)

    def features(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The sequence summary (B, D·S) the classifier reads."""
        out, state = self.rnn(x, lengths=lengths)  # out (B, T, D·S), zero past each length
        if self.readout == "last":
            return top_final_state(self.rnn, state)
        T = x.shape[1]
        if lengths is None:
            lengths = torch.full((x.shape[0],), T)
        lengths = torch.as_tensor(lengths, device=x.device)
        valid = (torch.arange(T, device=x.device)[None, :] < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
        if self.readout == "mean":
            return (out * valid).sum(1) / lengths[:, None].to(out.dtype)
        return out.masked_fill(~valid, float("-inf")).amax(1)  # max over valid steps only

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.head(self.drop(self.features(x, lengths)))  # (B, K)


# ------------------------------------------------------------------------------------------------
# Task
# ------------------------------------------------------------------------------------------------
class ClassifyTask:
    """Stratified train/val/test split of a :class:`SequenceSet`; cross-entropy loss; accuracy on val."""

    name = "classify"
    unit = "sequences"  # what loss() counts, for throughput

    def __init__(
        self,
        data: SequenceSet,
        *,
        val_frac: float = 0.15,
        test_frac: float = 0.2,
        seed: int = 0,
        batch_size: int = 64,
        dtype: torch.dtype = torch.float32,
        description: dict[str, Any] | None = None,
    ) -> None:
        self.data, self.batch_size, self.dtype = data, batch_size, dtype
        self.description = dict(description or {})
        self.split = stratified_split(data.y, val_frac, test_frac, seed)
        self.tensors = {part: self._tensors(idx) for part, idx in self.split.items()}

    @classmethod
    def from_config(cls, cfg: ClassifyDataConfig, batch_size: int = 64, dtype: torch.dtype = torch.float32):
        data = load_digits_sequences(cfg.read, cfg.trim)
        desc = {"dataset": cfg.dataset, "read": cfg.read, "trim": cfg.trim}
        return cls(data, val_frac=cfg.val_frac, test_frac=cfg.test_frac, seed=cfg.seed, batch_size=batch_size,
                   dtype=dtype, description=desc)  # fmt: skip

    def _tensors(self, idx: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
        x = torch.as_tensor(self.data.x[idx], dtype=self.dtype)  # (N, T, F)
        return x, torch.as_tensor(self.data.lengths[idx]), torch.as_tensor(self.data.y[idx])

    def build_model(self, cfg: ClassifyModelConfig) -> SequenceClassifier:
        return SequenceClassifier(
            self.data.x.shape[2], len(self.data.classes), cell=cfg.cell, hidden_size=cfg.hidden_size,
            num_layers=cfg.num_layers, dropout=cfg.dropout, bidirectional=cfg.bidirectional, readout=cfg.readout,
            engine=cfg.engine,
        ).to(self.dtype)  # fmt: skip

    # --- the Task protocol ----------------------------------------------------------------------
    def train_batches(self, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """Endless minibatches drawn as seeded permutations (every example once per epoch)."""
        x, lengths, y = self.tensors["train"]
        n = x.shape[0]
        while True:
            perm = torch.randperm(n, generator=generator)
            for i in range(0, n - self.batch_size + 1 if n >= self.batch_size else 1, self.batch_size):
                idx = perm[i : i + self.batch_size]
                T = int(lengths[idx].max())  # trim the batch's padding to its longest sequence
                yield x[idx, :T], lengths[idx], y[idx]

    def loss(self, model: SequenceClassifier, batch: tuple[Tensor, Tensor, Tensor], state: Any):
        x, lengths, y = batch
        logits = model(x, lengths)
        return nn.functional.cross_entropy(logits, y), None, x.shape[0]

    @torch.no_grad()
    def predict(self, model: SequenceClassifier, part: str = "test") -> tuple[np.ndarray, np.ndarray]:
        """Predicted and true labels of ``part``."""
        was_training = model.training
        model.eval()
        x, lengths, y = self.tensors[part]
        pred = model(x.to(_device(model)), lengths).argmax(-1)
        model.train(was_training)
        return pred.cpu().numpy(), y.numpy()

    @torch.no_grad()
    def evaluate(self, model: SequenceClassifier) -> dict[str, float]:
        was_training = model.training
        model.eval()
        x, lengths, y = self.tensors["val"]
        logits = model(x.to(_device(model)), lengths).cpu()
        model.train(was_training)
        loss = nn.functional.cross_entropy(logits.double(), y)
        return {"loss": float(loss), "accuracy": float((logits.argmax(-1) == y).double().mean())}

    def metadata(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "data": self.description,
            "classes": self.data.classes,
            "input_size": int(self.data.x.shape[2]),
            "max_length": int(self.data.x.shape[1]),
            "split_sizes": {k: len(v) for k, v in self.split.items()},
        }

    def report(self, model: SequenceClassifier) -> dict[str, Any]:
        """Held-out test accuracy and confusion matrix, with the majority-class and logistic-regression baselines."""
        pred, truth = self.predict(model, "test")
        K = len(self.data.classes)
        return {
            "accuracy": float(np.mean(pred == truth)),
            "confusion": confusion_matrix(truth, pred, K),
            "baselines": self.baselines(),
            "test_size": int(len(truth)),
        }

    def baselines(self) -> dict[str, float]:
        """Test accuracy of predicting the training part's most common class, and of multinomial logistic
        regression on the flattened padded sequence (a strong non-recurrent reference, not a bound)."""
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits

        tr, te = self.split["train"], self.split["test"]
        y = self.data.y
        majority = np.bincount(y[tr]).argmax()
        flat = self.data.x.reshape(len(y), -1)
        with threadpool_limits(1):  # a 1167 x 64 problem: BLAS threads only contend (100x slower on a busy CPU)
            clf = LogisticRegression(max_iter=2000).fit(flat[tr], y[tr])
        return {
            "majority class": float(np.mean(y[te] == majority)),
            "logistic regression": float(clf.score(flat[te], y[te])),
        }


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts: row = true class, column = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (truth, pred), 1)
    return cm


def format_confusion(cm: np.ndarray, classes: list[str]) -> str:
    w = max(3, len(str(cm.max())), *(len(c) for c in classes))
    head = "true\\pred ".rjust(w + 1) + " ".join(c.rjust(w) for c in classes)
    rows = [f"{c.rjust(w)}  " + " ".join(str(v).rjust(w) for v in row) for c, row in zip(classes, cm)]
    return "\n".join([head, *rows])
