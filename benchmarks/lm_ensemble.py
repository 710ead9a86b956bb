"""Perplexity of an ensemble of language-model checkpoints: the average of their next-token probabilities.

    RNNKIT_DATA_DIR=path/to/corpora PYTHONPATH=src python benchmarks/lm_ensemble.py runs/a runs/b runs/c [--split val]

Each checkpoint (a run directory of ``rnnkit train``; its best checkpoint) reads its training corpus' split as one
stream with a carried state, as ``rnnkit evaluate`` does by default; all of them must share the vocabulary and the
split fractions. Prints each model's perplexity, then that of every ensemble of the first k (k = 2 … n). It
measures what averaging independently trained models buys (docs/results.md: the Time Machine target); it is not a
product feature.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F

from rnnkit.data import load_corpus, split_ids
from rnnkit.tasks.lm import load_language_model


def log_probs(run: str, split: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(next-token log-probabilities (N, V), targets (N,), what must match across the ensemble)"""
    model, vocab, saved = load_language_model(run)
    model.train(False)
    task = saved.state["task"]
    corpus = load_corpus(task["corpus"]["source"])
    ids = torch.tensor(vocab.encode(vocab.tokenize(corpus.text)), dtype=torch.long)
    part = dict(zip(("train", "val", "test"), split_ids(ids, tuple(task["split"]))))[split]
    with torch.no_grad():
        logits, _ = model(part[:-1].unsqueeze(0), None)  # one stream, the state carried through
    return F.log_softmax(logits[0].double(), -1), part[1:], {"vocab": vocab.to_dict(), "split": task["split"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run directories of rnnkit train")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    args = p.parse_args()
    scored = [log_probs(run, args.split) for run in args.runs]
    for run, (lp, y, same) in zip(args.runs, scored, strict=True):
        if same != scored[0][2]:
            raise SystemExit(f"lm_ensemble: {run} has another vocabulary or split than {args.runs[0]}")
        print(f"{run}: {args.split} perplexity {math.exp(F.nll_loss(lp, y).item()):.4f}")
    y = scored[0][1]
    for k in range(2, len(scored) + 1):
        mean = torch.stack([lp for lp, _, _ in scored[:k]]).logsumexp(0) - math.log(k)  # log of the mean probability
        print(f"ensemble of the first {k}: {args.split} perplexity {math.exp(F.nll_loss(mean, y).item()):.4f}")


if __name__ == "__main__":
    main()
