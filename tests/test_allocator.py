"""glibc malloc tuning: what tune_malloc does, and the subprocess probe behind docs/benchmarks.md."""

import json
import math
import subprocess

import pytest

from rnnkit import allocator


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


def test_probe_measures_a_training_step(capsys):
    assert allocator.main(["--probe", "default", "3", "4", "2", "3", "2", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["seconds"] > 0 and result["minflt_per_step"] >= 0


def test_compare_interleaves_fresh_processes_and_pairs_the_ratios(monkeypatch):
    calls = []

    def fake_run(cmd, env, **kwargs):
        variant = cmd[cmd.index("--probe") + 1]
        calls.append((variant, env.get("MALLOC_MMAP_MAX_")))
        seconds = {"default": 0.3, "env": 0.2, "mallopt": 0.1}[variant] * (1 + len(calls) // 3)  # slower each round
        return subprocess.CompletedProcess(cmd, 0, json.dumps({"seconds": seconds, "minflt_per_step": 5.0}) + "\n")

    monkeypatch.setenv("MALLOC_MMAP_MAX_", "7")  # the parent's own setting must not leak into "default"
    monkeypatch.setattr(allocator.subprocess, "run", fake_run)
    result = allocator.compare(repeats=3, iters=2, threads=1, probes={"tiny": (3, 4, 2, 3)})
    # every round runs each variant once, rotating who goes first; only "env" gets the variables
    assert [v for v, _ in calls] == ["default", "env", "mallopt", "env", "mallopt", "default", "mallopt", "default",
                                     "env"]  # fmt: skip
    assert {v: e for v, e in calls} == {"default": None, "env": "0", "mallopt": None}
    entry = result["tiny"]
    assert entry["input_hidden_batch_steps"] == [3, 4, 2, 3]
    assert entry["default"]["speedup"] == 1.0
    assert entry["env"]["speedup"] == pytest.approx(1.5) and entry["mallopt"]["speedup"] == pytest.approx(3.0)
    assert all(math.isfinite(entry[v]["ms_per_step"]) for v in allocator.VARIANTS)
