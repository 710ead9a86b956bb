"""BLEU, two ways: d2l's per-sentence score (written out below) and corpus BLEU from ``sacrebleu``.

d2l's per-sentence BLEU of a prediction against one label, both space-separated token strings, is

    BLEU = exp(min(0, 1 - len_label / len_pred)) * prod_{n=1..k} p_n ** (1 / 2**n)

where ``p_n`` is the clipped n-gram precision (each label n-gram can be matched at most as often as it
occurs in the label). The brevity penalty punishes predictions shorter than the label; the weights
1/2^n make a mismatch in longer n-grams cost less. It is not smoothed: one n-gram order with no match
gives 0. Corpus BLEU (Papineni et al., with the standard 4-gram geometric mean and one brevity
penalty for the whole corpus) is what papers report; we take it from ``sacrebleu`` rather than
re-implementing it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def d2l_bleu(pred: str, label: str, k: int = 2) -> float:
    """d2l's per-sentence BLEU of ``pred`` against ``label`` (token strings) with n-grams up to ``k``."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k (the largest n-gram order) must be a positive integer, got {k!r}")
    pred_tokens, label_tokens = pred.split(), label.split()
    len_pred, len_label = len(pred_tokens), len(label_tokens)
    if len_pred == 0:
        return 0.0  # nothing predicted: no precision can be computed, and the brevity penalty is infinite
    score = math.exp(min(0.0, 1.0 - len_label / len_pred))  # brevity penalty
    for n in range(1, min(k, len_pred) + 1):
        pred_grams, label_grams = _ngrams(pred_tokens, n), _ngrams(label_tokens, n)
        matches = sum(min(count, label_grams[g]) for g, count in pred_grams.items())  # clipped matches
        p_n = matches / (len_pred - n + 1)
        score *= p_n ** (0.5**n)
    return score


def mean_d2l_bleu(preds: Sequence[str], references: Sequence[Sequence[str]], k: int = 2) -> float:
    """Average over sentences of :func:`d2l_bleu`, each prediction scored against its best reference."""
    if len(preds) != len(references):
        raise ValueError(f"got {len(preds)} predictions but {len(references)} reference lists")
    if not preds:
        raise ValueError("cannot score an empty list of predictions")
    return sum(max(d2l_bleu(p, r, k) for r in refs) for p, refs in zip(preds, references)) / len(preds)


def corpus_bleu(preds: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU (0–100) by ``sacrebleu`` over our own tokens (``tokenize="none"``), any number of references.

    ``references[i]`` lists every acceptable translation of sentence ``i`` (Tatoeba often has several).
    """
    import sacrebleu

    if len(preds) != len(references):
        raise ValueError(f"got {len(preds)} predictions but {len(references)} reference lists")
    if not preds or any(len(r) == 0 for r in references):
        raise ValueError("corpus BLEU needs at least one prediction and at least one reference per prediction")
    width = max(len(r) for r in references)
    # sacrebleu wants one stream per reference slot; a sentence with fewer references pads with None.
    streams = [[refs[j] if j < len(refs) else None for refs in references] for j in range(width)]
    return float(sacrebleu.corpus_bleu(list(preds), streams, tokenize="none", force=True).score)
