"""One→many generation in a few CPU seconds: spell the name of an 8×8 digit image, letter by letter.

    PYTHONPATH=src python examples/caption_digits.py

An MLP turns the image into the initial state of an rnnkit GRU, which then writes "seven" one character
at a time (greedy decoding). The example trains with the same loop as every rnnkit task and asserts
that the exact-match accuracy on held-out images beats the named baselines: chance (10 %) and always
answering the most common digit.
"""

import logging
import tempfile

import torch

from rnnkit.tasks.caption import CaptionData, Captioner, CaptionModel, CaptionTask
from rnnkit.train import OptimConfig, TrainConfig, train


def main() -> dict:
    torch.set_num_threads(1)  # tiny matrices: one thread is faster, and much faster on a busy CPU
    torch.manual_seed(0)
    task = CaptionTask(CaptionData())
    model = Captioner(cfg=CaptionModel(cell="gru", hidden_size=64))
    cfg = TrainConfig(steps=300, eval_every=100, log_every=100, plot=False, optim=OptimConfig(lr=1e-2))
    with tempfile.TemporaryDirectory() as out:
        train(model, task, cfg, out_dir=out)
    model.eval()
    scores = task.evaluate(model, "test")
    base = task.baselines()
    images, labels = task.splits["test"]
    print(
        f"test exact match {100 * scores['exact_match']:.1f}% | chance {100 * base['chance']:.0f}% | majority "
        f"digit {100 * base['majority']:.1f}% | logistic regression (a classifier) "
        f"{100 * base['logistic_regression']:.1f}%"
    )
    for caption, digit in zip(model.greedy(images[:5]), labels[:5]):
        print(f"  image of a {int(digit)} -> {caption!r}")
    assert scores["exact_match"] > max(base["chance"], base["majority"]) + 0.5, scores
    return {**scores, **base}


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()
