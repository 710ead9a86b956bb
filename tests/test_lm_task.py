import math

import pytest
import torch

from rnnkit.data import Corpus, eval_batches
from rnnkit.models import LanguageModel
from rnnkit.tasks.base import Task
from rnnkit.tasks.lm import LanguageModelTask, LMConfig, score


def corpus(text="abcabd " * 300):
    return Corpus("toy", text, "memory", "0" * 40, len(text))


def test_is_a_task_with_contiguous_split_and_metadata():
    task = LanguageModelTask(corpus(), LMConfig(batch_size=4, num_steps=8))
    assert isinstance(task, Task)
    n = len(task.train_ids) + len(task.val_ids) + len(task.test_ids)
    assert n == 2100 and len(task.train_ids) == 1890
    assert torch.equal(task.split("all"), torch.tensor(task.vocab.encode(corpus().text)))
    meta = task.metadata()
    assert meta["corpus"]["name"] == "toy" and meta["vocab"]["idx_to_token"][0] == "<unk>"
    assert meta["tokenization"] == {"level": "char", "normalize": "none", "min_freq": 0}
    assert set(meta["prompt"]) <= set("abcd ")


def test_sequential_carries_state_and_resets_at_epoch_start():
    task = LanguageModelTask(corpus(), LMConfig(batch_size=2, num_steps=8, sampling="sequential"))
    model = LanguageModel(len(task.vocab), "gru", 4, dtype=torch.float64)
    batches = task.train_batches(torch.Generator().manual_seed(0))
    first = next(batches)
    _, state, units = task.loss(model, first, None)
    assert units == 16 and state is not None and not state.requires_grad
    # the second batch continues each stream: carrying the state == running both batches as one sequence
    second = next(batches)
    loss2, _, _ = task.loss(model, second, state)
    X = torch.cat([first[0], second[0]], 1)
    logits, _ = model(X)
    expected = torch.nn.functional.cross_entropy(logits[:, 8:].flatten(0, 1), second[1].flatten())
    torch.testing.assert_close(loss2, expected, rtol=0, atol=1e-12)
    while not batches.starts_epoch:  # at a new epoch the carried state is dropped
        batch = next(batches)
    fresh, _, _ = task.loss(model, batch, None)
    assert task.loss(model, batch, torch.ones_like(state))[0] == fresh


def test_random_sampling_never_carries():
    task = LanguageModelTask(corpus(), LMConfig(batch_size=2, num_steps=8, sampling="random"))
    model = LanguageModel(len(task.vocab), "rnn", 4)
    batch = next(task.train_batches(torch.Generator().manual_seed(0)))
    loss, state, _ = task.loss(model, batch, None)
    assert state is None and task.loss(model, batch, torch.ones(1, 2, 4))[0] == loss


def test_score_carried_equals_one_pass_and_windows_start_fresh():
    task = LanguageModelTask(corpus(), LMConfig(batch_size=2, num_steps=8))
    model = LanguageModel(len(task.vocab), "lstm", 5, dtype=torch.float64).eval()
    ids = task.val_ids
    with torch.no_grad():
        carried = score(model, ids, batch_size=1, num_steps=7)
        logits, _ = model(ids[None, :-1])
        one = torch.nn.functional.cross_entropy(logits[0], ids[1:]).item()
        windows = score(model, ids, window=10)
    assert carried["tokens"] == len(ids) - 1 and carried["loss"] == pytest.approx(one, abs=1e-12)
    assert carried["ppl"] == pytest.approx(math.exp(one)) and carried["bpc"] == pytest.approx(one / math.log(2))
    assert windows["tokens"] == (len(ids) - 1) // 10 * 10 and windows["loss"] != carried["loss"]
    assert sum(Y.numel() for _, Y in eval_batches(ids, 1, 7)) == carried["tokens"]


def test_word_level_and_errors():
    task = LanguageModelTask(corpus("the cat sat on the mat . " * 60), LMConfig(level="word", batch_size=2,
                                                                               num_steps=4))  # fmt: skip
    assert task.vocab.level == "word" and len(task.vocab) == 7
    model = LanguageModel(len(task.vocab), hidden_size=4).eval()
    with torch.no_grad():
        assert "bits_per_word" in task.score(model, "val")
    with pytest.raises(ValueError, match="too short"):
        LanguageModelTask(corpus("abc" * 10), LMConfig(batch_size=4, num_steps=8))
    with pytest.raises(ValueError, match="holds no tokens"):
        LanguageModelTask(corpus("123 456 " * 40), LMConfig(normalize="d2l", level="word"))
    with pytest.raises(ValueError, match="validation part"):
        LMConfig(split=(1.0, 0.0, 0.0))
