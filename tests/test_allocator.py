"""glibc malloc tuning: what tune_malloc does, and the subprocess probe behind docs/benchmarks.md."""

import math
import os
from pathlib import Path

import pytest

from rnnkit import allocator

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_tune_malloc_respects_the_environment(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "0")
    assert allocator.tune_malloc().startswith("environment: MALLOC_MMAP_MAX_=0")
    monkeypatch.delenv("MALLOC_MMAP_MAX_")
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.setenv("RNNKIT_MALLOC", "default")
    assert "RNNKIT_MALLOC=default" in allocator.tune_malloc()
    assert allocator.malloc_settings()["tuning"] == "glibc defaults (RNNKIT_MALLOC=default)"


@pytest.mark.skipif(allocator.glibc_version() is None, reason="mallopt is glibc's")
def test_tune_malloc_calls_mallopt(monkeypatch):
    for k in (*allocator.MALLOC_ENV, "RNNKIT_MALLOC"):
        monkeypatch.delenv(k, raising=False)
    assert allocator.tune_malloc().startswith("mallopt(M_MMAP_MAX=0")


def test_compare_runs_every_variant_in_fresh_processes(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = allocator.compare(repeats=1, iters=2, threads=1, probes={"tiny": (3, 4, 2, 3)})
    entry = result["tiny"]
    assert entry["input_hidden_batch_steps"] == [3, 4, 2, 3]
    for variant in allocator.VARIANTS:
        assert entry[variant]["ms_per_step"] > 0 and entry[variant]["minflt_per_step"] >= 0
        assert math.isfinite(entry[variant]["speedup"]) and entry[variant]["speedup"] > 0
    assert entry["default"]["speedup"] == 1.0
