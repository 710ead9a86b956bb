"""Resume after a real kill at any moment equals the uninterrupted run, bit for bit (step budget, CPU).

Each case runs the toy language model in child processes (tests/_kill_worker.py) that SIGKILL themselves at
named points — before the first checkpoint, in a training step, half-way through writing a checkpoint folder,
between the two renames of a checkpoint swap, between best/ and last/, while metrics.csv or curves.png is
renamed into place — or are killed by this process at random moments; every next process resumes what the
previous one left. The last one's weights, optimizer and RNG state, and every logged loss, must equal those
of a run that was never interrupted, and the run directory must hold no leftovers.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = str(Path(__file__).with_name("_kill_worker.py"))
SRC = str(Path(__file__).resolve().parents[1] / "src")
FILES = ["best", "curves.png", "last", "metrics.csv", "metrics.jsonl"]


def child(out: Path, point: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, WORKER, str(out), point], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def run(out: Path, point: str) -> int:
    p = child(out, point)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode in (0, -signal.SIGKILL), f"{point}: exit {p.returncode}\n{stderr[-3000:]}"
    if point == "none":
        assert p.returncode == 0 and "finished step 24" in stdout, stderr[-3000:]
    return p.returncode


def snapshot(out: Path) -> dict:
    """Everything that must not depend on interruptions (times and speeds excluded)."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    state = json.loads((out / "last" / "state.json").read_text())
    best = json.loads((out / "best" / "state.json").read_text())
    return {
        "model": load_file(str(out / "last" / "model.safetensors")),
        "train_state": load_file(str(out / "last" / "train_state.safetensors")),
        "best_model": load_file(str(out / "best" / "model.safetensors")),
        "steps": (state["step"], best["step"], state["best"], state["last_eval"]),
        "rng": state["rng"],
        "rows": [{k: v for k, v in r.items() if k not in ("time", "units_per_s")} for r in rows],
    }


def assert_same(a: dict, b: dict, label: str) -> None:
    for key in ("model", "train_state", "best_model"):
        assert a[key].keys() == b[key].keys(), f"{label}: {key} tensors differ in names"
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{label}: {key}/{name} differs"
    for key in ("steps", "rng", "rows"):
        assert a[key] == b[key], f"{label}: {key} differs"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    run(out, "none")
    return snapshot(out)


#: each chain is one run killed at these points in turn (every process resumes the last one's run)
CHAINS = {
    # in step 3 (the first evaluation is at 4); half of step 4's first checkpoint written; mid-swap at step 8
    "first-steps": ["loss:3", "save_file:4", "swap:8"],
    # between best/ and last/ of step 12; renaming metrics.csv (step 16); in step 18; half a folder at 20;
    # mid-swap at 24; after the final checkpoint, renaming curves.png (then a finished run is resumed)
    "later": ["checkpoint:12:last", "replace:metrics.csv:1", "loss:18", "save_file:20", "swap:24",
              "replace:curves.png:1"],
}  # fmt: skip


@pytest.mark.parametrize("chain", list(CHAINS))
def test_resume_after_kills_at_named_points_equals_the_straight_run(tmp_path, reference, chain):
    out = tmp_path / "run"
    killed = [point for point in CHAINS[chain] if run(out, point) == -signal.SIGKILL]
    assert killed == CHAINS[chain], f"some kill points were never reached: {set(CHAINS[chain]) - set(killed)}"
    run(out, "none")
    assert sorted(os.listdir(out)) == FILES  # no temporary or .old- folder left behind
    assert_same(snapshot(out), reference, f"chain {chain}")


def test_resume_after_kills_at_random_moments_equals_the_straight_run(tmp_path, reference):
    out, rng = tmp_path / "run", random.Random(18)
    kills = 0
    for _ in range(2):  # each child is killed by this process at a random moment of its run
        p = child(out, "none")
        time.sleep(rng.uniform(1.0, 3.0))  # a child takes ~1 s to start and ~0.5 s to train 24 steps
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.communicate(timeout=120)
    run(out, "none")
    assert sorted(os.listdir(out)) == FILES
    assert_same(snapshot(out), reference, f"{kills} random kills")
