"""Variable-length sequences with ``lengths=`` (no sorting): digits read column by column with blank leading and
trailing columns dropped (2–8 steps), padded, and read both ways by a bidirectional LSTM whose outputs are
mean-pooled over each sequence's valid steps only.

First shows that a padded batch gives the same logits as each sequence run alone, then trains 300 steps and
asserts held-out accuracy far above the majority-class baseline. Run: ``python examples/classify_variable_length.py``.
"""

import tempfile

import torch

from rnnkit.commands.classify import ClassifyRunConfig, run_classify
from rnnkit.tasks.classify import ClassifyDataConfig, ClassifyModelConfig, SequenceClassifier, load_digits_sequences

data = load_digits_sequences(read="columns", trim=True)
print("lengths (steps: count):", {n: int((data.lengths == n).sum()) for n in sorted(set(data.lengths.tolist()))})

# padding is ignored: logits of a padded, unsorted batch == logits of each sequence alone
model = SequenceClassifier(8, 10, cell="lstm", hidden_size=16, bidirectional=True, readout="mean").double()
x, lengths = torch.as_tensor(data.x[:5]), torch.as_tensor(data.lengths[:5])
batched = model(x, lengths)
for i in range(5):
    torch.testing.assert_close(batched[i], model(x[i : i + 1, : lengths[i]])[0])

with tempfile.TemporaryDirectory() as out:
    cfg = ClassifyRunConfig(
        out=out, steps=300, max_time=0, eval_every=100, plot=False,
        data=ClassifyDataConfig(read="columns", trim=True),
        model=ClassifyModelConfig(cell="lstm", hidden_size=32, bidirectional=True, readout="mean"),
    )  # fmt: skip
    report = run_classify(cfg)

majority = report["baselines"]["majority class"]
print(f"test accuracy {report['accuracy']:.3f} on {report['test_size']} images; majority class {majority:.3f}")
assert report["accuracy"] > 0.8 > 5 * majority, "the LSTM should be far above the majority-class baseline"
