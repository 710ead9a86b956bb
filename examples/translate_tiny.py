"""English→French in CPU seconds: a tiny attention encoder–decoder on the shortest Tatoeba pairs.

    RNNKIT_DATA_DIR=path/to/corpora PYTHONPATH=src python examples/translate_tiny.py   # or let it download

Data: English-French pairs from the Tatoeba Project (CC BY 2.0 FR), www.manythings.org/anki and
tatoeba.org, as in d2l's fra-eng.zip (found through RNNKIT_DATA_DIR, the cache, or downloaded).

It trains on the first 3,000 pairs (split by English sentence, so every test sentence is unseen) with
the same loop as every rnnkit task, then compares corpus BLEU on the held-out sentences with a named
baseline: answering every sentence with the training set's most frequent French sentence.
"""

import logging
import tempfile
from collections import Counter

import torch

from rnnkit.tasks.bleu import corpus_bleu
from rnnkit.tasks.seq2seq import Seq2SeqConfig
from rnnkit.tasks.translate import TranslateData, TranslationTask
from rnnkit.train import OptimConfig, TrainConfig, train


def main(steps: int = 300) -> dict:
    torch.set_num_threads(1)  # tiny matrices: one thread is faster, and much faster on a busy CPU
    torch.manual_seed(0)
    task = TranslationTask(TranslateData(max_pairs=3000, batch_size=32, val_fraction=0.1, test_fraction=0.1))
    model = Seq2SeqConfig(embed_size=32, hidden_size=64, num_layers=1, dropout=0.1).build(
        len(task.src_vocab), len(task.tgt_vocab)
    )
    cfg = TrainConfig(steps=steps, eval_every=steps, log_every=100, plot=False, optim=OptimConfig(lr=5e-3))
    with tempfile.TemporaryDirectory() as out:
        train(model, task, cfg, out_dir=out)
    model.eval()
    test = task.test_split
    hyps = task.translate_tokens(model, test.sources)
    bleu = corpus_bleu(hyps, test.references)
    constant = Counter(" ".join(t) for _, t in task.train_split.pairs).most_common(1)[0][0]
    baseline = corpus_bleu([constant] * len(test.sources), test.references)
    print(
        f"held-out corpus BLEU {bleu:.1f} ({len(hyps)} unseen English sentences) | baseline "
        f"'always {constant}' {baseline:.1f}"
    )
    for en in ("go .", "i lost .", "he's calm .", "i'm home ."):
        print(f"  {en} => {task.translate_tokens(model, [en.split()])[0]}")
    assert bleu > baseline + 1, (bleu, baseline)
    return {"bleu": bleu, "baseline": baseline}


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()
