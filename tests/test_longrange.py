"""Long-range benchmarks: the generators follow their definitions, the baselines are what the docs claim,
the tasks plug into the one training loop and a trained gated cell beats the baseline."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rnnkit.tasks.base import Task
from rnnkit.tasks.longrange import AddingTask, CopyTask, SequenceModel, adding_problem, copy_memory

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one intra-op thread is fastest, and on a shared machine the only sane choice."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "rnnkit", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_adding_problem_follows_its_definition() -> None:
    x, y = adding_problem(500, 20, torch.Generator().manual_seed(0))
    assert x.shape == (500, 20, 2) and y.shape == (500,)
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert (markers.sum(1) == 2).all()  # exactly two marked steps …
    assert (markers[:, :10].sum(1) == 1).all() and (markers[:, 10:].sum(1) == 1).all()  # … one per half
    torch.testing.assert_close(y, (values * markers).sum(1))  # target = sum of the marked values
    with pytest.raises(ValueError, match="seq_len >= 2"):
        adding_problem(3, 1)


def test_adding_baseline_is_the_variance_of_the_sum() -> None:
    """Answering 1 (the mean of u₁ + u₂) scores Var(u₁ + u₂) = 2/12."""
    _, y = adding_problem(200_000, 10, torch.Generator().manual_seed(1))
    mse = F.mse_loss(torch.ones_like(y), y).item()
    assert mse == pytest.approx(2 / 12, abs=0.003)


def test_copy_memory_follows_its_definition() -> None:
    x, y = copy_memory(50, 7, torch.Generator().manual_seed(0), n_symbols=5, copy_len=4)
    assert x.shape == y.shape == (50, 7 + 2 * 4)
    symbols = x[:, :4]
    assert ((symbols >= 1) & (symbols <= 5)).all()
    assert (x[:, 4 + 7 - 1] == 6).all()  # the "go" marker on the last blank of the delay
    assert (x[:, 4:10] == 0).all() and (x[:, 11:] == 0).all()  # blanks everywhere else
    assert (y[:, :-4] == 0).all()
    torch.testing.assert_close(y[:, -4:], symbols)  # recall the symbols at the end


def test_copy_baseline_is_the_memoryless_cross_entropy() -> None:
    """The strategy 'blank, then guess uniformly' scores exactly ``baseline_loss`` and ``1/A`` per symbol."""
    task = CopyTask(12, val_size=64, n_symbols=8, copy_len=5)
    L = 12 + 2 * 5
    logits = torch.full((64, L, 10), -1e9, dtype=torch.float64)
    logits[:, : L - 5, 0] = 0.0  # certain blank while nothing is recalled
    logits[:, L - 5 :, 1:9] = 0.0  # uniform over the 8 symbols afterwards
    ce = F.cross_entropy(logits.reshape(-1, 10), task.val_y.reshape(-1)).item()
    assert ce == pytest.approx(task.baseline_loss, rel=1e-9)
    assert task.baseline_loss == pytest.approx(5 * math.log(8) / L)


@pytest.mark.parametrize("task", [AddingTask(8, batch_size=4, val_size=16), CopyTask(6, batch_size=4, val_size=16)])
def test_tasks_follow_the_task_protocol(task) -> None:
    assert isinstance(task, Task)
    model = SequenceModel("gru", task.input_size, 5, task.output_size)
    batch = next(task.train_batches(torch.Generator().manual_seed(0)))
    loss, state, units = task.loss(model, batch, None)
    assert loss.dim() == 0 and loss.requires_grad and state is None and units == 4
    metrics = task.evaluate(model)
    assert math.isfinite(metrics["loss"])
    json.dumps(task.metadata())
    # the batch stream depends only on the generator (what the training loop's resume relies on)
    again = next(task.train_batches(torch.Generator().manual_seed(0)))
    torch.testing.assert_close(again, batch)


def test_sequence_model_rejects_unknown_cells() -> None:
    with pytest.raises(ValueError, match="unknown cell 'transformer'"):
        SequenceModel("transformer", 2, 4, 1)


def test_lstm_learns_the_adding_problem_beyond_the_baseline(tmp_path: Path) -> None:
    train_mod = pytest.importorskip("rnnkit.train")
    task = AddingTask(10, batch_size=32, val_size=256)
    torch.manual_seed(0)
    model = SequenceModel("lstm", 2, 16, 1)
    before = task.evaluate(model)["mse"]
    cfg = train_mod.TrainConfig(steps=300, eval_every=300, log_every=300, plot=False,
                                optim=train_mod.OptimConfig(lr=1e-2))  # fmt: skip
    result = train_mod.train(model, task, cfg, out_dir=tmp_path)
    baseline = result.last["baseline_mse"]
    assert baseline == pytest.approx(2 / 12, abs=0.03)
    assert result.last["mse"] < 0.25 * baseline < before  # learned to add, not just to answer the mean


def test_longrange_command_quick(tmp_path: Path) -> None:
    pytest.importorskip("rnnkit.train")
    out = tmp_path / "lr"
    proc = run_cli("longrange", "--quick", "--cells", "rnn,lstm", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "adding problem: validation MSE" in proc.stdout and "copy memory: accuracy" in proc.stdout
    runs = json.loads((out / "longrange.json").read_text())["runs"]
    assert {(r["task"], r["cell"], r["T"]) for r in runs} == {
        (t, c, T) for t in ("adding", "copy") for c in ("rnn", "lstm") for T in (5, 10)
    }
    assert all(math.isfinite(r["loss"]) for r in runs)


def test_longrange_command_bad_input_is_one_line(tmp_path: Path) -> None:
    proc = run_cli("longrange", "--cells", "rnn,transformer", cwd=tmp_path)
    assert proc.returncode == 2
    assert "error: cells must be a comma list of" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()
