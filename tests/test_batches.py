"""Batch iterators: targets are the next token, coverage without overlap, contiguous streams, determinism."""

import itertools

import pytest
import torch

from rnnkit.data import eval_batches, eval_windows, random_batches, sequential_batches, split_ids

IDS = torch.arange(1000)  # token id == position, so every check below is arithmetic on positions


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_split_is_contiguous_without_overlap():
    train, val, test = split_ids(IDS)
    assert (len(train), len(val), len(test)) == (900, 50, 50)
    assert torch.equal(torch.cat([train, val, test]), IDS)


def test_split_matches_nanogpt_shakespeare_char():
    ids = list(range(1_115_394))
    n = len(ids)
    train, val, test = split_ids(ids, (0.9, 0.1, 0.0))
    assert train.tolist() == ids[: int(n * 0.9)] and val.tolist() == ids[int(n * 0.9) :] and len(test) == 0


def test_split_errors():
    with pytest.raises(ValueError, match="the val part is empty"):
        split_ids(torch.arange(10), (0.9, 0.05, 0.05))
    with pytest.raises(ValueError, match="sum to 1"):
        split_ids(IDS, (0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match=r"\(train, val, test\)"):
        split_ids(IDS, (0.5, 0.5))
    with pytest.raises(ValueError, match="must be 1-D"):
        split_ids(torch.zeros(2, 3, dtype=torch.long))


@pytest.mark.parametrize("make", [random_batches, sequential_batches])
def test_every_target_is_the_next_token(make):
    it = make(IDS, 4, 7, gen())
    for X, Y in itertools.islice(it, 500):  # several epochs
        assert X.shape == Y.shape == (4, 7) and X.dtype == torch.long
        assert torch.equal(Y, X + 1)


def test_random_epoch_covers_data_without_overlap():
    B, T = 4, 7
    it = random_batches(IDS, B, T, gen(1))
    for _ in range(3):  # three epochs
        X, _ = next(it)
        assert it.starts_epoch
        batches = [X] + [next(it)[0] for _ in range(it.batches_per_epoch - 1)]
        starts = torch.cat([b[:, 0] for b in batches])
        offset = int(starts.min()) % T
        assert 0 <= offset < T and torch.all((starts - offset) % T == 0)
        # every subsequence is whole, used once, and B * batches_per_epoch of them tile the text from the offset
        positions = torch.cat([b.flatten() for b in batches]).sort().values
        assert positions.unique().numel() == positions.numel()
        n_sub = (len(IDS) - offset - 1) // T
        assert it.batches_per_epoch == n_sub // B
        grid = set((offset + T * torch.arange(n_sub)).tolist())  # whole subsequences, each ending before the last token
        assert set(starts.tolist()) <= grid and len(set(starts.tolist())) == len(starts)
        assert len(starts) == B * it.batches_per_epoch


def test_random_batches_are_in_random_order():
    it = random_batches(IDS, 4, 7, gen(0))
    firsts = [int(next(it)[0][0, 0]) for _ in range(10)]
    assert firsts != sorted(firsts)


def test_sequential_streams_are_contiguous_across_batches():
    B, T = 4, 7
    it = sequential_batches(IDS, B, T, gen(3))
    for _ in range(3):  # epochs
        X, _ = next(it)
        assert it.starts_epoch
        offset = int(X[0, 0])
        assert 0 <= offset <= T
        length = (len(IDS) - offset - 1) // B
        assert torch.equal(X[:, 0], offset + length * torch.arange(B))  # stream b starts at offset + b * length
        prev = X
        for _ in range(it.batches_per_epoch - 1):
            X, _ = next(it)
            assert not it.starts_epoch
            assert torch.equal(X[:, 0], prev[:, -1] + 1)  # each row continues where it stopped
            prev = X
        assert it.batches_per_epoch == length // T


@pytest.mark.parametrize("make", [random_batches, sequential_batches])
def test_determinism_per_seed_and_fast_forward(make):
    a = [x for x, _ in itertools.islice(make(IDS, 4, 7, gen(5)), 200)]
    b = [x for x, _ in itertools.islice(make(IDS, 4, 7, gen(5)), 200)]
    c = [x for x, _ in itertools.islice(make(IDS, 4, 7, gen(6)), 200)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    # resume: a fresh iterator on the same seed, advanced k times, continues identically
    it = make(IDS, 4, 7, gen(5))
    for _ in range(150):
        next(it)
    assert all(torch.equal(next(it)[0], x) for x in a[150:])
    # skip(k) draws the same randomness as k next() calls without building batches
    it = make(IDS, 4, 7, gen(5)).skip(150)
    assert all(torch.equal(next(it)[0], x) for x in a[150:])


@pytest.mark.parametrize(("make", "need"), [(random_batches, 4 * 7 + 7), (sequential_batches, 4 * 7 + 7 + 1)])
def test_too_short_corpus_error_says_how_long(make, need):
    with pytest.raises(ValueError, match=f"has {need - 1} tokens .* needs at least {need}"):
        make(torch.arange(need - 1), 4, 7, gen())
    X, Y = next(make(torch.arange(need), 4, 7, gen()))  # exactly enough works, whatever the offset
    assert X.shape == (4, 7)
    for seed in range(20):
        it = make(torch.arange(need), 4, 7, gen(seed))
        for _ in range(5):
            assert next(it)[0].shape == (4, 7)


def test_eval_batches_full_pass_carrying_state():
    chunks = list(eval_batches(IDS, 3, 10))
    length = 999 // 3
    assert [x.shape[1] for x, _ in chunks] == [10] * 33 + [3]  # last chunk shorter
    X = torch.cat([x for x, _ in chunks], dim=1)
    Y = torch.cat([y for _, y in chunks], dim=1)
    assert torch.equal(X, torch.arange(3 * length).view(3, length)) and torch.equal(Y, X + 1)
    scored = sorted(Y.flatten().tolist())
    assert scored == list(range(1, 1000))  # 999 % 3 == 0: every target scored once
    one = list(eval_batches(IDS, 1, 64))
    assert sum(y.numel() for _, y in one) == 999
    assert list(eval_batches(IDS, 3, 10))[0][0].tolist() == chunks[0][0].tolist()  # deterministic


def test_eval_windows_are_independent_and_cover_the_text():
    chunks = list(eval_windows(IDS, 64, batch_size=5))
    X = torch.cat([x for x, _ in chunks])
    Y = torch.cat([y for _, y in chunks])
    assert X.shape == (999 // 64, 64) and [len(x) for x, _ in chunks] == [5, 5, 5]
    assert torch.equal(X.flatten(), torch.arange(X.numel())) and torch.equal(Y, X + 1)


def test_eval_errors():
    with pytest.raises(ValueError, match="needs at least 5"):
        eval_batches(torch.arange(4), 4, 10)
    with pytest.raises(ValueError, match="needs at least 65"):
        eval_windows(torch.arange(64), 64)
    with pytest.raises(ValueError, match="must be >= 1"):
        random_batches(IDS, 0, 5, gen())
