"""Language modelling as a :class:`~rnnkit.tasks.base.Task`: corpus -> tokens -> vocabulary -> split -> batches.

Training follows d2l: ``random`` sampling starts every batch from a zero state; ``sequential`` sampling
carries the (detached) state from one batch to the next — truncated BPTT over ``num_steps`` — and resets
it at each epoch's start. Scores are the mean next-token cross-entropy in nats, its exponential
(perplexity) and in bits (bits per character at character level).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.data import (
    Corpus,
    Vocab,
    eval_batches,
    eval_windows,
    load_corpus,
    normalize_text,
    random_batches,
    sequential_batches,
    split_ids,
    tokenize,
)
from rnnkit.data.vocab import char_codes
from rnnkit.models import LanguageModel, ModelConfig, detach_state


@dataclass
class LMConfig:
    """Tokenisation, split and batching of a language-modelling corpus."""

    level: Literal["char", "word"] = "char"
    """tokens: characters or words"""
    normalize: Literal["none", "d2l"] = "none"
    """text normalisation: none, or d2l's (letters and spaces only, lower case)"""
    min_freq: int = 0
    """tokens seen fewer times map to <unk>"""
    split: tuple[float, ...] = (0.9, 0.05, 0.05)
    """contiguous train,val,test fractions (0.9,0.1,0 = nanoGPT's split)"""
    batch_size: int = 32
    """sequences per training batch"""
    num_steps: int = 128
    """time steps per batch (the truncated-BPTT length)"""
    sampling: Literal["random", "sequential"] = "sequential"
    """random: fresh state per batch (d2l default); sequential: state carried across batches"""
    eval_batch_size: int = 16
    """parallel streams when scoring with a carried state (1 = one stream through the whole split)"""
    eval_window: int = 0
    """score independent windows of N tokens, each from a fresh state (0 = carry the state throughout)"""

    def __post_init__(self) -> None:
        for name in ("batch_size", "num_steps", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"lm.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.min_freq < 0 or self.eval_window < 0:
            raise ValueError("lm.min_freq and lm.eval_window must be >= 0")
        if len(self.split) != 3 or any(f < 0 for f in self.split) or not math.isclose(sum(self.split), 1.0):
            raise ValueError(f"lm.split must be three fractions train,val,test summing to 1, got {self.split!r}")
        if self.split[1] <= 0:
            raise ValueError("lm.split needs a validation part (second fraction > 0): it picks the best checkpoint")


def score(
    model: nn.Module, ids: Tensor, *, level: str = "char", window: int = 0, batch_size: int = 16, num_steps: int = 128
) -> dict[str, float]:
    """Mean next-token loss (nats), perplexity and bits over ``ids``; call under ``no_grad`` in eval mode.

    ``window=0`` carries the state through ``batch_size`` contiguous streams; ``window=N`` scores
    independent N-token windows from a zero state.
    """
    device = next(model.parameters()).device
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    state = None
    chunks = eval_windows(ids, window) if window else eval_batches(ids, batch_size, num_steps)
    for X, Y in chunks:
        X, Y = X.to(device), Y.to(device)
        logits, state = model(X, None if window else state)  # (B, T, V)
        total += F.cross_entropy(logits.flatten(0, 1).double(), Y.flatten(), reduction="sum")
        count += Y.numel()
    loss = float(total) / count
    bits = "bpc" if level == "char" else "bits_per_word"
    return {"loss": loss, "ppl": math.exp(min(loss, 700.0)), bits: loss / math.log(2), "tokens": count}


class LanguageModelTask:
    """Next-token prediction on a corpus; ``vocab`` (e.g. from a checkpoint) overrides building one."""

    name = "lm"
    unit = "tokens"  # what loss() counts, for throughput

    def __init__(self, corpus: Corpus | str | Path = "stdlib", cfg: LMConfig | None = None, vocab: Vocab | None = None):
        self.cfg = cfg = cfg or LMConfig()
        self.corpus = corpus if isinstance(corpus, Corpus) else load_corpus(corpus)
        if cfg.level == "char":  # counted and encoded in NumPy: a 10^8-character corpus in seconds, not minutes
            codes = char_codes(normalize_text(self.corpus.text, cfg.normalize))
            n_tokens = len(codes)
        else:
            tokens = tokenize(self.corpus.text, cfg.level, cfg.normalize)
            n_tokens = len(tokens)
        if not n_tokens:
            raise ValueError(f"corpus {self.corpus.name!r} holds no tokens after normalize={cfg.normalize!r}")
        if vocab is None and cfg.level == "char":
            vocab = Vocab.from_char_codes(codes, cfg.min_freq, normalize=cfg.normalize)
        elif vocab is None:
            vocab = Vocab(tokens, cfg.min_freq, level=cfg.level, normalize=cfg.normalize)
        self.vocab = vocab
        if cfg.level == "char" and vocab.level == "char":
            ids = torch.from_numpy(vocab.encode_char_codes(codes)).long()
            del codes
        else:
            tokens = tokens if cfg.level != "char" else tokenize(self.corpus.text, cfg.level, cfg.normalize)
            ids = torch.tensor(vocab.encode(tokens), dtype=torch.long)
        self.train_ids, self.val_ids, self.test_ids = split_ids(ids, cfg.split)
        need = cfg.batch_size * cfg.num_steps + cfg.num_steps + 1
        if len(self.train_ids) < need:
            raise ValueError(
                f"corpus {self.corpus.name!r} is too short: its training part has {len(self.train_ids)} tokens but "
                f"batch_size {cfg.batch_size} × num_steps {cfg.num_steps} needs {need}; use a longer text or "
                "smaller --lm.batch_size/--lm.num_steps"
            )
        self._batches: Any = None

    def split(self, name: str) -> Tensor:
        """Token ids of ``train``, ``val``, ``test`` or ``all``."""
        parts = {"train": self.train_ids, "val": self.val_ids, "test": self.test_ids}
        if name == "all":
            return torch.cat(list(parts.values()))
        if name not in parts:
            raise ValueError(f"unknown split {name!r}: use train, val, test or all")
        return parts[name]

    # ---- the Task protocol ------------------------------------------------------------------------
    def train_batches(self, generator: torch.Generator) -> Any:
        make = random_batches if self.cfg.sampling == "random" else sequential_batches
        self._batches = make(self.train_ids, self.cfg.batch_size, self.cfg.num_steps, generator)
        return self._batches

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor], state: Any) -> tuple[Tensor, Any, int]:
        X, Y = batch  # (B, T) inputs and next tokens
        carry = self.cfg.sampling == "sequential" and not (self._batches is not None and self._batches.starts_epoch)
        logits, state = model(X, state if carry else None)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), Y.flatten())  # mean over B*T tokens, in nats
        return loss, detach_state(state) if self.cfg.sampling == "sequential" else None, Y.numel()

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return self.score(model, "val")

    def score(self, model: nn.Module, split: str = "val", window: int | None = None) -> dict[str, float]:
        """Scores on a split (``window`` defaults to ``cfg.eval_window``)."""
        c = self.cfg
        window = c.eval_window if window is None else window
        return score(model, self.split(split), level=self.vocab.level, window=window,
                     batch_size=c.eval_batch_size, num_steps=c.num_steps)  # fmt: skip

    def metadata(self) -> dict[str, Any]:
        return {
            "vocab": self.vocab.to_dict(),
            "corpus": self.corpus.metadata(),
            "tokenization": {"level": self.cfg.level, "normalize": self.cfg.normalize, "min_freq": self.cfg.min_freq},
            "split": list(self.cfg.split),
            "prompt": self.prompt(),
        }

    def prompt(self, n: int = 12) -> str:
        """The first ``n`` known tokens of the validation split: a default prefix for generation."""
        ids = [i for i in self.val_ids[: 4 * n].tolist() if i != self.vocab.unk][:n]
        return self.vocab.decode(ids)


def load_language_model(path: str | Path, prefer: str = "best", device: Any = None) -> tuple[LanguageModel, Vocab, Any]:
    """(model in eval mode, vocabulary, checkpoint) from a checkpoint folder or run directory of ``rnnkit train``."""
    from rnnkit import checkpoint as ckpt

    saved = ckpt.load_checkpoint(path, prefer)
    sig = saved.state.get("signature", {})
    kind = sig.get("model", {}).get("class")
    task = saved.state.get("task", {})
    if kind != "LanguageModel" or task.get("name") != "lm" or "vocab" not in task:
        raise ValueError(f"checkpoint {str(saved.path)!r} holds a {kind or 'unknown'} model for task "
                         f"{task.get('name')!r}, not a language model from rnnkit train")  # fmt: skip
    vocab = Vocab.from_dict(task["vocab"])
    cfg = ModelConfig(**sig["model"]["config"])
    dtype = next(t.dtype for t in saved.model_tensors.values() if t.is_floating_point())  # trained precision
    model = cfg.build(len(vocab), device=device, dtype=dtype)
    ckpt.load_model_weights(model, saved)
    model.eval()
    return model, vocab, saved
