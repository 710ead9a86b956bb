"""Interleaved timing bookkeeping and the profiler-based peak memory measurement."""

import pytest
import torch

from rnnkit.timing import paired_ratio, peak_memory, time_interleaved

MiB = 2**20


def test_time_interleaved_round_robin():
    log = []
    calls = [lambda: log.append("a"), lambda: log.append("b"), lambda: log.append("c")]
    samples = time_interleaved(calls, repeats=3, warmup=1, min_time=0.0)
    assert [len(s) for s in samples] == [3, 3, 3]
    assert all(t > 0 for s in samples for t in s)
    # one warm-up each, then rounds a b c, b c a, c a b: nobody always goes first
    assert "".join(log) == "abc" + "abc" + "bca" + "cab"
    log.clear()
    time_interleaved(calls, repeats=1, warmup=0, min_time=1.0)
    assert "".join(log) == "abc"  # no warm-up: one call per sample whatever min_time says


def test_time_interleaved_repeats_short_calls_within_a_sample():
    count = [0]

    def call():
        count[0] += 1

    time_interleaved([call], repeats=2, warmup=1, min_time=0.002)
    assert count[0] > 3  # each of the 2 samples ran the call many times
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        time_interleaved([call], repeats=0, warmup=1, min_time=0.0)


def test_paired_ratio_is_the_median_of_same_round_ratios():
    assert paired_ratio([2.0, 4.0, 6.0], [1.0, 2.0, 3.0]) == 2.0
    assert paired_ratio([1.0, 10.0, 1.0], [2.0, 1.0, 1.0]) == 1.0  # one disturbed round does not move it


def test_peak_memory_counts_live_bytes_at_the_peak():
    def one_at_a_time():
        for _ in range(3):
            torch.empty(MiB // 4).fill_(1.0)  # 1 MiB, freed before the next one

    def two_alive():
        a = torch.empty(MiB // 4).fill_(1.0)
        b = torch.empty(MiB // 4).fill_(2.0)
        return a.sum() + b.sum()

    kept = torch.empty(4 * MiB // 4)  # allocated before: not part of the call's peak
    assert MiB <= peak_memory(one_at_a_time) < 2 * MiB
    assert 2 * MiB <= peak_memory(two_alive) < 3 * MiB
    del kept
