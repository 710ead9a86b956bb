"""Fuzzed calls into every engine through the public layer API, in a child process (tests/_fuzz_api_worker.py).

Hypothesis draws the cell, sizes, depth, direction, bias, layout, dtype, lengths, initial state, gates,
backward pass, strides and one deliberate mistake per case; each engine ('reference', 'torch', 'fused',
'auto') must give the reference engine's numbers and gradients, or a one-line ValueError/TypeError. A native
crash kills only the child, and this test names the case it died on.

Cases per run: ``RNNKIT_FUZZ_CASES`` (default 300, ~5 s here); the seed is random per run unless
``RNNKIT_FUZZ_SEED`` is set, and every failure message gives it, so ``RNNKIT_FUZZ_SEED=<seed>`` reproduces it.
"""

import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

WORKER = str(Path(__file__).with_name("_fuzz_api_worker.py"))
SRC = str(Path(__file__).resolve().parents[1] / "src")
CASES = int(os.environ.get("RNNKIT_FUZZ_CASES", "300"))
SEED = int(os.environ.get("RNNKIT_FUZZ_SEED") or random.randrange(2**31))


def fuzz(tmp_path: Path, cases: int, seed: int, **env: str) -> tuple[int, str, str]:
    """Run the worker; returns (exit status, what it said, the last case it started)."""
    casefile = tmp_path / "case.txt"
    env = {**os.environ, **env, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run([sys.executable, WORKER, str(cases), str(seed), str(casefile)], capture_output=True,
                       text=True, env=env, timeout=600)  # fmt: skip
    return p.returncode, p.stdout + p.stderr, casefile.read_text() if casefile.exists() else ""


def verdict(status: int, said: str, case: str, seed: int) -> str:
    """'' when the run passed, else one message naming the seed and the case (and the signal of a crash)."""
    if status < 0:
        return f"native crash ({signal.Signals(-status).name}) on case {case} (RNNKIT_FUZZ_SEED={seed})"
    if status != 0:
        return f"fuzzed API case failed (RNNKIT_FUZZ_SEED={seed}):\n{said[-6000:]}"
    return ""


def test_engines_match_the_reference_on_fuzzed_calls(tmp_path):
    status, said, case = fuzz(tmp_path, CASES, SEED)
    problem = verdict(status, said, case, SEED)
    assert not problem, problem
    summary = re.search(r"ran (\d+) cases.*", said)
    assert int(summary.group(1)) >= CASES, f"only {summary.group(1)} of {CASES} cases ran"
    print(f"{summary.group()} (RNNKIT_FUZZ_SEED={SEED})")


def test_a_native_crash_is_reported_with_its_case(tmp_path):
    status, said, case = fuzz(tmp_path, 5, 7, RNNKIT_FUZZ_CRASH_AT="3")
    problem = verdict(status, said, case, 7)
    assert problem.startswith("native crash (SIGSEGV) on case {'cell': ")
    assert "RNNKIT_FUZZ_SEED=7" in problem
