"""generate(): priming, greedy = argmax, top-k / top-p sets, temperature limit, seeds, streaming, errors."""

import math
from collections import Counter

import pytest
import torch
from torch import nn

from rnnkit.data import Vocab
from rnnkit.generate import filter_logits, generate

VOCAB = Vocab(list("abcde"))  # ids: <unk>=0, a..e = 1..5 (all tied: code point order)


class Bigram(nn.Module):
    """logits[t] = table[token[t]]: a fake LM whose next-token distribution we choose; records what it is fed."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table.clone())
        self.fed: list[int] = []
        self.modes: list[bool] = []

    def forward(self, tokens, state=None):
        assert tokens.dim() == 2 and tokens.dtype == torch.long
        self.fed += tokens[0].tolist()
        self.modes.append(self.training or torch.is_grad_enabled())
        steps = 0 if state is None else int(state)
        return self.table[tokens], torch.tensor(steps + tokens.shape[1])


def cycle_table(v: int = 6) -> torch.Tensor:
    """Most likely successor of id i is i + 1 (wrapping a..e), with a decreasing tail after it."""
    table = torch.full((v, v), -5.0)
    for i in range(1, v):
        for rank, j in enumerate([(i + k - 1) % (v - 1) + 1 for k in range(1, v)]):
            table[i, j] = 3.0 - rank
    return table


def test_greedy_is_argmax_chain_and_prefix_primes_the_state():
    model = Bigram(cycle_table())
    assert VOCAB.idx_to_token == ["<unk>", "a", "b", "c", "d", "e"]
    out = generate(model, VOCAB, "ab", 6)
    assert out == "ab" + "cdeabc"
    # the whole prefix was fed first, then each prediction except the last (never needed)
    assert model.fed == VOCAB.encode("abcdeab")
    assert not any(model.modes) and model.training  # eval + no_grad during, training mode restored after


def test_temperature_to_zero_equals_greedy():
    model = Bigram(cycle_table())
    greedy = generate(model, VOCAB, "e", 20)
    g = torch.Generator().manual_seed(0)
    assert generate(model, VOCAB, "e", 20, strategy="sample", temperature=1e-4, generator=g) == greedy
    assert generate(model, VOCAB, "e", 20, strategy="sample", temperature=0) == greedy


def sample_counts(logits: torch.Tensor, n: int = 3000, **kw) -> Counter:
    """Next-token counts after prefix 'a' when every row of the table is ``logits``."""
    model = Bigram(logits.expand(6, 6))
    g = torch.Generator().manual_seed(1)
    return Counter(generate(model, VOCAB, "a", n, strategy="sample", generator=g, **kw)[1:])


LOGITS = torch.log(torch.tensor([1e-9, 0.40, 0.25, 0.20, 0.10, 0.05]))  # p(a..e) = .40 .25 .20 .10 .05


def test_plain_sampling_matches_softmax():
    counts = sample_counts(LOGITS, n=4000)
    for tok, p in zip("abcde", [0.40, 0.25, 0.20, 0.10, 0.05]):
        assert abs(counts[tok] / 4000 - p) < 4 * math.sqrt(p * (1 - p) / 4000)  # within 4 sigma


def test_top_k_samples_only_the_k_most_likely():
    counts = sample_counts(LOGITS, top_k=3)
    assert set(counts) == {"a", "b", "c"}
    # renormalised: .40/.85, .25/.85, .20/.85
    assert abs(counts["a"] / 3000 - 0.40 / 0.85) < 0.04


@pytest.mark.parametrize(("top_p", "expected"), [(0.3, "a"), (0.4, "a"), (0.6, "ab"), (0.65, "ab"), (0.7, "abc")])
def test_top_p_keeps_the_smallest_nucleus(top_p, expected):
    counts = sample_counts(LOGITS, top_p=top_p)
    assert set(counts) == set(expected)


def test_filter_logits_sets_directly():
    kept = lambda x: torch.isfinite(x).nonzero().flatten().tolist()  # noqa: E731
    assert kept(filter_logits(LOGITS, top_k=2)) == [1, 2]
    assert kept(filter_logits(LOGITS, top_p=0.86)) == [1, 2, 3, 4]
    assert kept(filter_logits(LOGITS, top_k=2, top_p=0.5)) == [1]  # top-p applies to the renormalised top-k
    assert kept(filter_logits(LOGITS, top_p=1e-6)) == [1]  # the best token always survives
    assert torch.allclose(filter_logits(LOGITS, temperature=2.0), LOGITS / 2)


def test_seeds_reproduce_and_differ():
    model = Bigram(LOGITS.expand(6, 6))

    def run(seed):
        return generate(model, VOCAB, "a", 50, strategy="sample", generator=torch.Generator().manual_seed(seed))

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_on_token_streams_each_new_piece():
    pieces = []
    out = generate(Bigram(cycle_table()), VOCAB, "cd", 5, on_token=pieces.append)
    assert pieces == list("eabcd") and out == "cd" + "".join(pieces)


def test_word_level_joins_with_spaces_and_uses_vocab_normalisation():
    vocab = Vocab.from_text("the time traveller the time", "word", "d2l")
    assert vocab.idx_to_token == ["<unk>", "the", "time", "traveller"]
    table = torch.full((4, 4), -5.0)
    table[1, 2] = table[2, 3] = table[3, 1] = 1.0  # the -> time -> traveller -> the
    pieces = []
    assert generate(Bigram(table), vocab, "The", 3, on_token=pieces.append) == "the time traveller the"
    assert pieces == [" time", " traveller", " the"]


def test_word_level_streaming_matches_punctuation_spacing():
    vocab = Vocab.from_text("yes , no . yes", "word")
    assert vocab.idx_to_token == ["<unk>", "yes", ",", ".", "no"]
    table = torch.full((5, 5), -5.0)
    table[1, 2] = table[2, 4] = table[4, 3] = table[3, 1] = 1.0  # yes -> , -> no -> . -> yes
    pieces = []
    out = generate(Bigram(table), vocab, "yes", 5, on_token=pieces.append)
    assert out == "yes, no. yes," and pieces == [",", " no", ".", " yes", ","]
    assert "yes" + "".join(pieces) == out


def test_errors():
    model = Bigram(cycle_table())
    with pytest.raises(ValueError, match=r"2 token\(s\) the model's vocabulary does not know: 'z', 'Q'"):
        generate(model, VOCAB, "azQz", 3)
    with pytest.raises(ValueError, match="prefix is empty"):
        generate(model, VOCAB, "", 3)
    with pytest.raises(ValueError, match="unknown strategy 'beam'"):
        generate(model, VOCAB, "a", 3, strategy="beam")
    with pytest.raises(ValueError, match="only apply to strategy='sample'"):
        generate(model, VOCAB, "a", 3, top_k=2)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        generate(model, VOCAB, "a", 3, strategy="sample", top_p=0)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        generate(model, VOCAB, "a", 3, strategy="sample", temperature=-1)
    with pytest.raises(ValueError, match="top_k must be >= 0"):
        generate(model, VOCAB, "a", 3, strategy="sample", top_k=-1)
    assert generate(model, VOCAB, "a", 0) == "a"


def test_works_with_a_real_recurrent_model():
    torch.manual_seed(0)

    class TinyLM(nn.Module):
        def __init__(self, v=6, h=8):
            super().__init__()
            self.emb, self.rnn, self.out = nn.Embedding(v, h), nn.GRU(h, h, batch_first=True), nn.Linear(h, v)

        def forward(self, tokens, state=None):
            y, state = self.rnn(self.emb(tokens), state)
            return self.out(y), state

    model = TinyLM()
    out = generate(model, VOCAB, "abc", 10)
    # priming in one pass == d2l's token-by-token warm-up: recompute the greedy chain step by step
    ids, state = VOCAB.encode("abc"), None
    with torch.no_grad():
        for t in ids:
            logits, state = model(torch.tensor([[t]]), state)
        for _ in range(10):
            ids.append(int(logits[0, -1].argmax()))
            logits, state = model(torch.tensor([[ids[-1]]]), state)
    assert out == VOCAB.decode(ids)


def test_never_emits_unk() -> None:
    """A model that puts nearly all its mass on <unk> still generates known tokens only."""
    vocab = Vocab(list("abcabc"))

    class LovesUnk(torch.nn.Module):
        def forward(self, tokens, state=None):
            logits = torch.zeros(*tokens.shape, len(vocab))
            logits[..., vocab.unk] = 20.0  # e^20 : 1 against every other token
            return logits, state

        def parameters(self, recurse=True):
            return iter([torch.zeros(1)])

    for strategy in ("greedy", "sample"):
        text = generate(LovesUnk(), vocab, "ab", 50, strategy=strategy, generator=torch.Generator().manual_seed(0))
        assert "<unk>" not in text and len(text) == 52


@pytest.mark.parametrize("cell", ["lstm", "jordan"])
def test_language_model_steps_like_its_forward(cell) -> None:
    """generate() feeds an rnnkit LanguageModel through its stepper: the same text as through forward."""
    from rnnkit.models import ModelConfig

    torch.manual_seed(0)
    model = ModelConfig(cell=cell, hidden_size=16, num_layers=2, input="embedding").build(len(VOCAB))

    class ForwardOnly(nn.Module):  # not a LanguageModel: generate() calls it on (1, 1) tokens
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, tokens, state=None):
            return self.inner(tokens, state)

    for strategy in ("greedy", "sample"):
        texts = [
            generate(m, VOCAB, "ab", 40, strategy=strategy, generator=torch.Generator().manual_seed(3))
            for m in (model, ForwardOnly())
        ]
        assert texts[0] == texts[1] and len(texts[0]) == 42
