"""``rnnkit evaluate``: loss (nats/token), perplexity and bits per character of a checkpoint on any text.

    rnnkit evaluate --checkpoint runs/lm                        # the training corpus' test split
    rnnkit evaluate --checkpoint runs/shakespeare --data tinyshakespeare --split val --window 64
    rnnkit evaluate --checkpoint runs/lm --data other.txt --json   # a whole other file

By default the state is carried through the whole text (one stream); ``--window N`` scores independent
N-token windows instead, each from a fresh state (the protocol that compares fairly with fixed-context
models such as a 64-token transformer).
"""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import dataclass
from typing import Any, Literal

from rnnkit.config import parse_config

log = logging.getLogger("rnnkit.evaluate")


@dataclass
class EvaluateCommand:
    checkpoint: str = "runs/lm"
    """a run directory of rnnkit train or a checkpoint folder"""
    which: Literal["best", "last"] = "best"
    """in a run directory: the best (by validation loss) or the last checkpoint"""
    data: str = ""
    """corpus name or text file to score (empty: the corpus the model was trained on)"""
    split: Literal["auto", "train", "val", "test", "all"] = "auto"
    """part of the text, cut with the training split fractions (auto: test of the training corpus, else all)"""
    window: int = 0
    """score independent N-token windows from a fresh state (0 = carry the state through the text)"""
    batch_size: int = 1
    """parallel streams with a carried state (1 = exactly one pass through the text)"""
    num_steps: int = 256
    """tokens per forward call (speed only, with a carried state)"""
    device: str = "cpu"
    """cpu, cuda or auto"""

    def __post_init__(self) -> None:
        if self.window < 0 or self.batch_size < 1 or self.num_steps < 1:
            raise ValueError("window must be >= 0, batch_size and num_steps >= 1")


def evaluate_checkpoint(cfg: EvaluateCommand) -> dict[str, Any]:
    """Scores of ``cfg.checkpoint`` on ``cfg.data``/``cfg.split`` (see :class:`EvaluateCommand`)."""
    import torch

    from rnnkit.data import load_corpus, split_ids
    from rnnkit.tasks.lm import load_language_model, score

    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    model, vocab, saved = load_language_model(cfg.checkpoint, prefer=cfg.which, device=device)
    trained_on = saved.state["task"]["corpus"]
    source = cfg.data or ("stdlib" if trained_on["source"] == "embedded" else trained_on["source"])
    corpus = load_corpus(source)
    same = corpus.sha1 == trained_on["sha1"]
    split = cfg.split if cfg.split != "auto" else ("test" if same else "all")
    tokens = vocab.tokenize(corpus.text)
    unknown = sum(1 for t in tokens if t not in vocab)
    if unknown:
        log.warning("%d of %d tokens are not in the model's vocabulary and count as <unk>", unknown, len(tokens))
    ids = torch.tensor(vocab.encode(tokens), dtype=torch.long)
    if split != "all":
        fractions = tuple(saved.state.get("task", {}).get("split", (0.9, 0.05, 0.05)))
        if split == "test" and fractions[2] == 0:
            split = "val"  # trained with no test part (e.g. nanoGPT's 90/10 split): the held-out part is val
        ids = dict(zip(("train", "val", "test"), split_ids(ids, fractions)))[split]
    with torch.no_grad():
        result = score(model, ids, level=vocab.level, window=cfg.window, batch_size=cfg.batch_size,
                       num_steps=cfg.num_steps)  # fmt: skip
    if not math.isfinite(result["loss"]):
        # e.g. an IndRNN whose |u| grew past 1 in training: fine over its training windows, unbounded over a stream
        log.warning("the loss is not finite: the state grew without bound over %s; %s", "the carried stream"
                    if not cfg.window else f"{cfg.window}-token windows", "score shorter --window N instead"
                    if not cfg.window else "the model itself is unstable")  # fmt: skip
    return {"checkpoint": str(saved.path), "step": saved.step, "data": corpus.name, "split": split,
            "window": cfg.window, "unknown_tokens": unknown, **result}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    def extra(p: Any) -> None:
        p.add_argument("--json", action="store_true", help="print the scores as one JSON object")

    cfg, ns = parse_config(
        EvaluateCommand,
        argv,
        prog="rnnkit evaluate",
        extra=extra,
        description="Score a language-model checkpoint: loss (nats/token), perplexity, bits.",
    )
    try:
        result = evaluate_checkpoint(cfg)
    except (ValueError, TypeError, OSError) as e:
        print(f"rnnkit evaluate: error: {e}", file=sys.stderr)
        return 1
    if ns.json:
        print(json.dumps(result))
    else:
        from rnnkit.commands.train import format_scores

        how = f"{cfg.window}-token windows" if cfg.window else "carried state"
        print(f"{format_scores(result)} | {result['data']} {result['split']}, {result['tokens']:,} tokens, {how}, "
              f"step {result['step']}")  # fmt: skip
    return 0
