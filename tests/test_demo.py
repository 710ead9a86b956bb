"""Hung-yi Lee's worked LSTM example reproduced to the lecture's numbers, and the demo and example scripts run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rnnkit.demo import LEE_MEMORY, LEE_OUTPUT, lee_table, train_demo

ROOT = Path(__file__).resolve().parents[1]


def test_lee_memory_and_output():
    rows = lee_table()
    assert [r["c"] for r in rows] == pytest.approx(LEE_MEMORY, abs=1e-3)
    assert [r["y"] for r in rows] == pytest.approx(LEE_OUTPUT, abs=1e-3)
    # the gates really are switches: write on steps 1-2, read on step 4, erase on step 5
    assert [round(r["i"]) for r in rows] == [1, 1, 0, 0, 0]
    assert [round(r["f"]) for r in rows] == [1, 1, 1, 1, 0]
    assert [round(r["o"]) for r in rows] == [0, 0, 0, 1, 0]


def test_training_demo_learns_the_running_sum():
    first, last, _ = train_demo(steps=60)
    assert last < first / 4


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_worked_example_script_asserts_its_result():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "worked_lstm.py")], env=_env(), capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert "matches the lecture" in out


def test_demo_command_prints_the_table():
    proc = subprocess.run([sys.executable, "-m", "rnnkit", "demo", "--steps", "2"], env=_env(), capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "memory rounds to [3, 7, 7, 7, 0]" in proc.stdout
    assert "output rounds to [0, 0, 0, 7, 0]" in proc.stdout
