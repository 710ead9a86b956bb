"""Measuring code fairly: interleaved timing with medians, and the peak memory of one call.

Speed on a shared machine drifts by tens of percent within seconds, so contenders are never timed one
after the other. :func:`time_interleaved` warms every contender up, then takes one sample of each in
turn (round robin, rotating who goes first), ``repeats`` times. A ratio between two contenders is the
median over rounds of their times *in the same round* (:func:`paired_ratio`), which cancels most drift.

:func:`peak_memory` measures the bytes a call allocates above what was live before it, at its peak:

* CPU: with ``torch.profiler``'s memory profiling every allocation through torch's CPU allocator is
  reported with the running total of bytes allocated since profiling started; the peak is the largest
  running total. It counts tensors and kernel workspaces (oneDNN's included), not Python objects or
  the allocator's own slack, and it does not depend on what earlier calls in the process did (unlike
  ``ru_maxrss``, a high-water mark that only ever grows).
* CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence

import torch

CPU = torch.device("cpu")


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits for queued work on ``device`` (a no-op on CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_interleaved(
    calls: Sequence[Callable[[], object]],
    *,
    repeats: int,
    warmup: int,
    min_time: float,
    device: torch.device = CPU,
    on_sample: Callable[[], None] | None = None,
) -> list[list[float]]:
    """Seconds per call of each of ``calls``: ``repeats`` interleaved samples each.

    A sample repeats its call ``n`` times (``n`` fixed per call after warm-up, so that a sample lasts
    about ``min_time``) and reports the mean, so that short calls are not lost in timer noise; with
    ``warmup=0`` every sample is a single call (for long calls, and for the first call's cost).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    sync = synchronizer(device)
    inner = []
    for call in calls:
        elapsed = math.inf  # no warm-up: one call per sample
        for _ in range(warmup):
            sync()
            t0 = time.perf_counter()
            call()
            sync()
            elapsed = time.perf_counter() - t0  # the last warm-up call is the most representative
        inner.append(max(1, math.ceil(min_time / max(elapsed, 1e-9))) if elapsed < math.inf else 1)
    samples: list[list[float]] = [[] for _ in calls]
    order = list(range(len(calls)))
    for r in range(repeats):
        shift = r % len(order)
        for i in order[shift:] + order[:shift]:  # rotate who goes first, so no one always follows the same neighbour
            sync()
            t0 = time.perf_counter()
            for _ in range(inner[i]):
                calls[i]()
            sync()
            samples[i].append((time.perf_counter() - t0) / inner[i])
            if on_sample is not None:
                on_sample()
    return samples


def paired_ratio(base: Sequence[float], other: Sequence[float]) -> float:
    """Median over rounds of ``base[r] / other[r]``: how many times faster ``other`` is than ``base``."""
    return statistics.median(b / o for b, o in zip(base, other))


def peak_memory(call: Callable[[], object], device: torch.device = CPU) -> int:
    """Peak bytes allocated by ``call()`` above what was allocated before it (see the module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        call()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    fd, path = tempfile.mkstemp(suffix=".json", prefix="rnnkit-memory-")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path, encoding="utf-8") as f:
            events = json.load(f)["traceEvents"]
    finally:
        os.unlink(path)
    events = sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"])
    memory = [e["args"] for e in events if e["args"].get("Device Type") == 0]  # 0: CPU
    if not memory:
        return 0
    # The running total may include blocks allocated under an earlier profiler session and still alive:
    # start from the total just before the first event of this one.
    start = memory[0]["Total Allocated"] - memory[0]["Bytes"]
    return int(max(m["Total Allocated"] for m in memory) - start)
