"""English→French translation on Tatoeba's sentence pairs: preprocessing, vocabularies, splits, the task.

The pairs are ``English<TAB>French`` lines (d2l's ``fra-eng/fra.txt``; data from the Tatoeba Project,
CC BY 2.0 FR — :data:`ATTRIBUTION`). Preprocessing follows d2l: the narrow and ordinary no-break
spaces (U+202F, U+00A0) become spaces, text is lower-cased and a space goes before ``, . ! ?`` so
punctuation is a word of its own; words are then split on spaces.

Splits are made by *English sentence*: every French translation of one English sentence lands in the
same split, so no test source was seen in training, and evaluation scores each source against all of
its translations (multi-reference BLEU).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rnnkit.tasks.bleu import corpus_bleu, mean_d2l_bleu
from rnnkit.tasks.seq2seq import masked_cross_entropy

log = logging.getLogger(__name__)

ATTRIBUTION = "English-French pairs: Tatoeba Project, CC BY 2.0 FR - www.manythings.org/anki and tatoeba.org"
PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)


# --------------------------------------------------------------------------------------------------
# Text
def preprocess(text: str) -> str:
    """d2l's ``preprocess_nmt``: no-break spaces -> space, lower case, a space before ``, . ! ?``."""
    text = text.replace("\u202f", " ").replace("\xa0", " ").lower()
    out = []
    for i, ch in enumerate(text):
        if ch in ",.!?" and i > 0 and text[i - 1] != " ":
            out.append(" ")
        out.append(ch)
    return "".join(out)


def tokenize(sentence: str) -> list[str]:
    """Words of a preprocessed sentence (split on whitespace)."""
    return sentence.split()


def read_pairs(path: str | Path, max_pairs: int | None = None) -> list[tuple[str, str]]:
    """Raw (English, French) pairs from a tab-separated file; the first ``max_pairs`` if given.

    Each line must have 2 columns (d2l's file), or 3 where the third is the attribution column of newer
    manythings.org exports. Anything else is a ValueError naming the line.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"sentence-pair file {str(path)!r} does not exist")
    pairs = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            cols = line.split("\t")
            if len(cols) not in (2, 3) or not cols[0].strip() or not cols[1].strip():
                raise ValueError(
                    f"{path}:{lineno}: expected 'English<TAB>French' (2 tab-separated columns, or 3 with "
                    f"attribution), got {len(cols)} column(s): {line[:60]!r}"
                )
            pairs.append((cols[0], cols[1]))
            if max_pairs is not None and len(pairs) >= max_pairs:
                break
    if not pairs:
        raise ValueError(f"sentence-pair file {str(path)!r} holds no sentence pairs")
    return pairs


def corpus_path(path: str = "") -> Path:
    """The pair file: ``path``, or the fra-eng corpus (``$RNNKIT_DATA_DIR``, the cache, else d2l's download)."""
    from rnnkit.data.corpora import resolve_corpus_path

    return resolve_corpus_path(path or "fra-eng")


# --------------------------------------------------------------------------------------------------
# Vocabulary
class Vocab:
    """Token <-> id. Ids 0–3 are ``<pad> <bos> <eos> <unk>``; then tokens by decreasing frequency."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if tuple(tokens[:4]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {' '.join(SPECIALS)}, got {list(tokens[:4])}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("a vocabulary must not repeat tokens")
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, sentences: Sequence[Sequence[str]], min_freq: int = 1) -> Vocab:
        """Every token seen at least ``min_freq`` times (ties broken alphabetically, so builds are repeatable)."""
        counts = Counter(t for s in sentences for t in s)
        kept = [t for t, c in counts.items() if c >= min_freq and t not in SPECIALS]
        kept.sort(key=lambda t: (-counts[t], t))
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.itos)

    pad, bos, eos, unk = 0, 1, 2, 3

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi.get(t, self.unk) for t in tokens]

    def unknown(self, tokens: Sequence[str]) -> list[str]:
        return [t for t in tokens if t not in self.stoi]

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.itos[i] for i in ids]


def pad_batch(seqs: Sequence[Sequence[int]], pad: int = 0) -> tuple[Tensor, Tensor]:
    """Right-pad id lists into (B, L) and their lengths (B,)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lengths.max())), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out, lengths


def padding_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """(B, L) boolean, True at real positions: ``mask[b, t] = t < lengths[b]``."""
    L = int(lengths.max()) if max_len is None else max_len
    return torch.arange(L)[None, :] < lengths[:, None]


# --------------------------------------------------------------------------------------------------
# Data
@dataclass
class TranslateData:
    """Which pairs, how long, how split."""

    path: str = ""
    "tab-separated English<TAB>French file; empty = the fra-eng corpus (RNNKIT_DATA_DIR, cache or download)"
    max_pairs: int = 20000
    "read only the first N pairs of the file (it is ordered roughly by length); 0 = all"
    max_len: int = 10
    "longest sentence in words (punctuation counts), either side, before <eos>"
    long_pairs: Literal["drop", "truncate"] = "drop"
    "what to do with a pair longer than max_len: drop it or cut it to max_len words"
    min_freq: int = 2
    "a word seen fewer times than this in the training split becomes <unk>"
    val_fraction: float = 0.05
    "fraction of distinct English sentences held out for validation"
    test_fraction: float = 0.05
    "fraction of distinct English sentences held out for the test score"
    split_seed: int = 0
    "seed of the random split (by English sentence)"
    batch_size: int = 64
    "sentence pairs per training batch"

    def __post_init__(self) -> None:
        if self.max_pairs < 0:
            raise ValueError(f"data.max_pairs must be >= 0 (0 = all), got {self.max_pairs}")
        if self.max_len < 1:
            raise ValueError(f"data.max_len must be >= 1, got {self.max_len}")
        if self.min_freq < 1:
            raise ValueError(f"data.min_freq must be >= 1, got {self.min_freq}")
        fractions = (self.val_fraction, self.test_fraction)
        if not (all(0 < f < 1 for f in fractions) and sum(fractions) < 1):
            raise ValueError("data.val_fraction and data.test_fraction must be in (0, 1) and sum to less than 1")
        if self.batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {self.batch_size}")


@dataclass
class Split:
    """Tokenised pairs of one split, and each distinct source with all its references."""

    pairs: list[tuple[list[str], list[str]]]
    sources: list[list[str]] = field(default_factory=list)  # distinct English sentences
    references: list[list[str]] = field(default_factory=list)  # all French translations of each, as strings


def prepare(cfg: TranslateData) -> tuple[Split, Split, Split]:
    """Read, preprocess, filter and split the pairs: (train, val, test)."""
    path = corpus_path(cfg.path)
    raw = read_pairs(path, cfg.max_pairs or None)
    pairs, dropped = [], 0
    for en, fr in raw:
        src, tgt = tokenize(preprocess(en)), tokenize(preprocess(fr))
        if len(src) > cfg.max_len or len(tgt) > cfg.max_len:
            if cfg.long_pairs == "drop":
                dropped += 1
                continue
            src, tgt = src[: cfg.max_len], tgt[: cfg.max_len]
        pairs.append((src, tgt))
    if not pairs:
        raise ValueError(f"no pair has at most {cfg.max_len} words on both sides: raise data.max_len")
    by_source: dict[tuple[str, ...], list[list[str]]] = {}
    for src, tgt in pairs:
        by_source.setdefault(tuple(src), []).append(tgt)
    sources = list(by_source)
    g = torch.Generator().manual_seed(cfg.split_seed)
    order = torch.randperm(len(sources), generator=g).tolist()
    n_val, n_test = round(cfg.val_fraction * len(sources)), round(cfg.test_fraction * len(sources))
    if n_val < 1 or n_test < 1 or len(sources) - n_val - n_test < 1:
        raise ValueError(f"only {len(sources)} distinct sentences: too few to split into train/val/test")
    parts = (order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test])
    splits = []
    for idx in parts:
        chosen = [sources[i] for i in idx]
        splits.append(
            Split(
                pairs=[(list(s), t) for s in chosen for t in by_source[s]],
                sources=[list(s) for s in chosen],
                references=[[" ".join(t) for t in by_source[s]] for s in chosen],
            )
        )
    log.info(
        "translate: %d pairs read, %d longer than %d words dropped; %d/%d/%d train/val/test pairs "
        "(%d/%d/%d distinct English sentences)",
        len(raw), dropped, cfg.max_len, *(len(s.pairs) for s in splits), *(len(s.sources) for s in splits),
    )  # fmt: skip
    return splits[0], splits[1], splits[2]


def make_batch(pairs: Sequence[tuple[list[str], list[str]]], src_vocab: Vocab, tgt_vocab: Vocab) -> dict[str, Tensor]:
    """Padded id tensors for a list of (English, French) token lists (a dict, so the loop can move it)::

    src (B, S) source ids · src_len (B,) true lengths · tgt_in (B, T) ``<bos> y_1 … y_n`` (decoder inputs
    under teacher forcing) · tgt_out (B, T) ``y_1 … y_n <eos>`` (what the decoder must predict).
    """
    src, src_len = pad_batch([src_vocab.encode(s) for s, _ in pairs])
    tgt = [tgt_vocab.encode(t) for _, t in pairs]
    tgt_in, _ = pad_batch([[Vocab.bos, *t] for t in tgt])
    tgt_out, _ = pad_batch([[*t, Vocab.eos] for t in tgt])
    return {"src": src, "src_len": src_len, "tgt_in": tgt_in, "tgt_out": tgt_out}


# --------------------------------------------------------------------------------------------------
# The task
class TranslationTask:
    """Sequence-to-sequence translation for :func:`rnnkit.train.train`: teacher-forced masked cross-entropy.

    ``evaluate`` reports the validation loss per target token (and its perplexity) and, on up to
    ``eval_sentences`` distinct validation sources decoded greedily, corpus BLEU (sacrebleu, all
    references) and d2l's mean per-sentence BLEU (k=2, best reference).
    """

    name = "translate"
    unit = "target tokens"  # what loss() counts, for throughput

    def __init__(
        self,
        cfg: TranslateData,
        splits: tuple[Split, Split, Split] | None = None,
        eval_sentences: int = 500,
        vocabs: tuple[Vocab, Vocab] | None = None,
    ) -> None:
        self.cfg = cfg
        self.train_split, self.val_split, self.test_split = splits if splits is not None else prepare(cfg)
        if vocabs is None:  # built from the training split only
            vocabs = (
                Vocab.build([s for s, _ in self.train_split.pairs], cfg.min_freq),
                Vocab.build([t for _, t in self.train_split.pairs], cfg.min_freq),
            )
        self.src_vocab, self.tgt_vocab = vocabs
        self.eval_sentences = eval_sentences
        log.info("translate: vocabularies of %d English and %d French words", len(self.src_vocab), len(self.tgt_vocab))

    def train_batches(self, generator: torch.Generator) -> Iterator[dict[str, Tensor]]:
        pairs, B = self.train_split.pairs, self.cfg.batch_size
        while True:  # endless: one fresh permutation per epoch
            order = torch.randperm(len(pairs), generator=generator).tolist()
            for i in range(0, len(order) - B + 1 if len(order) >= B else 1, B):
                yield make_batch([pairs[j] for j in order[i : i + B]], self.src_vocab, self.tgt_vocab)

    def loss(self, model: nn.Module, batch: dict[str, Tensor], state: Any) -> tuple[Tensor, None, int]:
        device = next(model.parameters()).device
        b = {k: v.to(device) for k, v in batch.items()}
        logits = model(b["src"], b["src_len"], b["tgt_in"])  # teacher forcing
        loss, n = masked_cross_entropy(logits, b["tgt_out"], Vocab.pad)
        return loss, None, n

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str = "val", max_sentences: int | None = None) -> dict[str, float]:
        data = {"val": self.val_split, "test": self.test_split, "train": self.train_split}[split]
        was_training = model.training
        model.eval()
        try:
            total, count = 0.0, 0
            for i in range(0, len(data.pairs), 256):
                batch = make_batch(data.pairs[i : i + 256], self.src_vocab, self.tgt_vocab)
                loss, _, n = self.loss(model, batch, None)
                total, count = total + float(loss) * n, count + n
            limit = self.eval_sentences if max_sentences is None else max_sentences
            n_sent = len(data.sources) if limit <= 0 else min(limit, len(data.sources))
            hyps = self.translate_tokens(model, data.sources[:n_sent])
            refs = data.references[:n_sent]
            loss = total / count
            return {
                "loss": loss,
                "ppl": float(torch.tensor(loss).exp()),
                "bleu": corpus_bleu(hyps, refs),
                "d2l_bleu": mean_d2l_bleu(hyps, refs, k=2),
            }
        finally:
            model.train(was_training)

    def translate_tokens(
        self, model: nn.Module, sources: Sequence[Sequence[str]], beam_size: int = 1, length_penalty: float = 0.75
    ) -> list[str]:
        """Translations of tokenised English sentences with this task's vocabularies (greedy at beam 1)."""
        return translate_tokens(model, sources, self.src_vocab, self.tgt_vocab, beam_size=beam_size,
                                length_penalty=length_penalty, max_len=self.cfg.max_len + 5)  # fmt: skip

    def metadata(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "task": self.name,
            "data": asdict(self.cfg),
            "src_vocab": self.src_vocab.itos,
            "tgt_vocab": self.tgt_vocab.itos,
            "attribution": ATTRIBUTION,
        }


@torch.no_grad()
def translate_tokens(
    model: nn.Module,
    sources: Sequence[Sequence[str]],
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    *,
    beam_size: int = 1,
    length_penalty: float = 0.75,
    max_len: int = 15,
) -> list[str]:
    """French translations (space-separated tokens) of tokenised English sentences; greedy at ``beam_size=1``.

    Unknown English words are read as ``<unk>``. Greedy decoding runs 256 sentences at a time.
    """
    device = next(model.parameters()).device
    out: list[str] = []
    for i in range(0, len(sources), 256):
        src, src_len = pad_batch([src_vocab.encode(s) or [Vocab.unk] for s in sources[i : i + 256]])
        src, src_len = src.to(device), src_len.to(device)
        if beam_size == 1:
            ids = model.greedy(src, src_len, max_len=max_len)
        else:
            ids = model.beam_search(src, src_len, beam_size, max_len=max_len, length_penalty=length_penalty)
        out.extend(" ".join(tgt_vocab.decode(seq)) for seq in ids)
    return out
