"""``rnnkit longrange``: train each cell on the adding problem and copy memory at growing lengths T.

Every run is the one training loop (:func:`rnnkit.train.train`) on a task from
:mod:`rnnkit.tasks.longrange` with the same budget (steps, batch, learning rate, clipping), so the table
shows where each cell stops learning as the dependency gets longer. Adding problem: validation MSE
(always answering 1 scores ≈ 0.167). Copy memory: accuracy on the recalled symbols (guessing: 1/A).
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rnnkit.rnn import CELL_NAMES
from rnnkit.tasks.longrange import AddingTask, CopyTask, SequenceModel

log = logging.getLogger("rnnkit.longrange")

TASKS = ("adding", "copy")


@dataclass
class LongRangeConfig:
    """Settings of ``rnnkit longrange``."""

    cells: tuple[str, ...] = ("rnn", "gru", "lstm", "peephole")
    """cells to compare: rnn (Elman, tanh), gru, lstm, peephole, jordan, mgu, indrnn, mingru, minlstm"""
    tasks: tuple[str, ...] = ("adding", "copy")
    """benchmarks: adding (Hochreiter & Schmidhuber's adding problem), copy (copy memory)"""
    lengths: tuple[int, ...] = (10, 50, 100, 200)
    """sequence lengths T (adding) / delays T (copy: sequences are T + 2 * copy_len long)"""
    hidden_size: int = 64
    """hidden units"""
    steps: int = 500
    """training steps per run (the fixed budget)"""
    max_time: float = 0.0
    """training-time cap per run in seconds (0 = none)"""
    batch_size: int = 32
    """sequences per training batch"""
    lr: float = 1e-2
    """AdamW learning rate (high, for a short budget; clipping keeps it stable)"""
    clip_norm: float = 1.0
    """gradient-norm clipping (0 = off)"""
    val_size: int = 500
    """validation sequences per task"""
    copy_len: int = 10
    """copy memory: symbols to remember"""
    n_symbols: int = 8
    """copy memory: alphabet size"""
    engine: str = "auto"
    """engine running the recurrent layers (auto picks the fastest that fits each cell)"""
    seed: int = 0
    """seed for the initialisation and the training batches"""
    out: str = "runs/longrange"
    """output folder: longrange.json and longrange.md (the table)"""

    def __post_init__(self) -> None:
        bad = [c for c in self.cells if c not in CELL_NAMES]
        if bad or not self.cells:
            raise ValueError(f"cells must be a comma list of {', '.join(CELL_NAMES)}, got {','.join(self.cells)}")
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise ValueError(f"tasks must be a comma list of {', '.join(TASKS)}, got {','.join(self.tasks)}")
        if not self.lengths or min(self.lengths) < 2:
            raise ValueError(f"lengths must be integers >= 2, got {self.lengths}")
        for name in ("hidden_size", "steps", "batch_size", "val_size", "copy_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.n_symbols < 2:
            raise ValueError(f"n_symbols must be at least 2, got {self.n_symbols}")
        if self.lr <= 0 or self.clip_norm < 0 or self.max_time < 0:
            raise ValueError("lr must be > 0; clip_norm and max_time >= 0 (0 = off)")
        from rnnkit.engines import check_engine_name

        check_engine_name(self.engine)


def make_task(cfg: LongRangeConfig, task: str, length: int) -> AddingTask | CopyTask:
    if task == "adding":
        return AddingTask(length, batch_size=cfg.batch_size, val_size=cfg.val_size, seed=cfg.seed + 1)
    return CopyTask(length, batch_size=cfg.batch_size, val_size=cfg.val_size, seed=cfg.seed + 1,
                    n_symbols=cfg.n_symbols, copy_len=cfg.copy_len)  # fmt: skip


def run_one(cfg: LongRangeConfig, task_name: str, cell: str, length: int) -> dict[str, Any]:
    """Train one cell on one task at one length; returns the final validation metrics and the cost."""
    from rnnkit.train import NonFiniteLossError, OptimConfig, TrainConfig, train

    task = make_task(cfg, task_name, length)
    torch.manual_seed(cfg.seed)
    model = SequenceModel(cell, task.input_size, cfg.hidden_size, task.output_size, engine=cfg.engine)
    tcfg = TrainConfig(steps=cfg.steps, max_time=cfg.max_time, eval_every=cfg.steps, log_every=max(1, cfg.steps // 4),
                       seed=cfg.seed, plot=False, optim=OptimConfig(lr=cfg.lr, clip_norm=cfg.clip_norm))  # fmt: skip
    row: dict[str, Any] = {"task": task_name, "cell": cell, "T": length}
    with tempfile.TemporaryDirectory(prefix="rnnkit-longrange-") as tmp:
        try:
            result = train(model, task, tcfg, out_dir=tmp)
        except NonFiniteLossError as e:
            return {**row, "diverged": str(e)}
    return {**row, **result.last, "steps": result.step, "train_time": round(result.train_time, 2)}


def score(row: dict[str, Any]) -> str:
    if "diverged" in row:
        return "diverged"
    return f"{row['mse']:.4f}" if row["task"] == "adding" else f"{row['accuracy']:.3f}"


def format_tables(rows: list[dict[str, Any]], cfg: LongRangeConfig) -> str:
    """Markdown tables, one per task: a row per cell, a column per T."""
    out = []
    for task in cfg.tasks:
        task_rows = [r for r in rows if r["task"] == task]
        if not task_rows:
            continue
        if task == "adding":
            base = next((r["baseline_mse"] for r in task_rows if "baseline_mse" in r), 2 / 12)
            out.append(f"adding problem: validation MSE after {cfg.steps} steps (lower is better; "
                       f"always answering 1: {base:.3f})")  # fmt: skip
        else:
            out.append(f"copy memory: accuracy on the {cfg.copy_len} recalled symbols after {cfg.steps} steps "
                       f"(higher is better; guessing: {1 / cfg.n_symbols:.3f})")  # fmt: skip
        lengths = [T for T in cfg.lengths if any(r["T"] == T for r in task_rows)]
        out.append("| cell | " + " | ".join(f"T={T}" for T in lengths) + " |")
        out.append("|---|" + "---:|" * len(lengths))
        for cell in cfg.cells:
            cells = {r["T"]: score(r) for r in task_rows if r["cell"] == cell}
            out.append(f"| {cell} | " + " | ".join(cells.get(T, "") for T in lengths) + " |")
        out.append("")
    return "\n".join(out)


def run_longrange(cfg: LongRangeConfig, progress: Any = None) -> list[dict[str, Any]]:
    """Every (task, T, cell) run, shortest T first; one summary line logged per run."""
    rows = []
    quiet = logging.getLogger("rnnkit.train")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        for task in cfg.tasks:
            for length in sorted(cfg.lengths):
                for cell in cfg.cells:
                    row = run_one(cfg, task, cell, length)
                    rows.append(row)
                    msg = f"{task} T={length} {cell}: {score(row)} ({row.get('train_time', 0):.1f}s)"
                    (progress.write if progress is not None else log.info)(msg)
                    if progress is not None:
                        progress.update(1)
    finally:
        quiet.setLevel(level)
    return rows


QUICK = {"lengths": (5, 10), "steps": 20, "hidden_size": 8, "batch_size": 16, "val_size": 64, "copy_len": 3}


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from rnnkit.config import parse_config, to_dict

    argv = list(sys.argv[1:] if argv is None else argv)
    argv = [x for a in argv for x in (["--preset", "quick"] if a == "--quick" else [a])]  # --quick: CI-size run
    cfg, _ = parse_config(
        LongRangeConfig,
        argv,
        prog="rnnkit longrange",
        description="Train each cell on the adding problem and copy memory at growing lengths; print MSE/accuracy "
        "vs T. --quick (= --preset quick) is a CI-size run.",
        presets={"quick": QUICK},
    )
    out = Path(cfg.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"rnnkit longrange: error: cannot create {cfg.out!r}: {e.strerror}", file=sys.stderr)
        return 1
    n = len(cfg.tasks) * len(cfg.lengths) * len(cfg.cells)
    with tqdm(total=n, desc="longrange", unit="run", leave=False, dynamic_ncols=True, disable=None) as bar:
        try:
            rows = run_longrange(cfg, progress=bar)
        except ValueError as e:
            print(f"rnnkit longrange: error: {e}", file=sys.stderr)
            return 1
    table = format_tables(rows, cfg)
    print(table)
    (out / "longrange.json").write_text(json.dumps({"config": to_dict(cfg), "runs": rows}, indent=1))
    (out / "longrange.md").write_text(table)
    print(f"wrote {out / 'longrange.md'} and {out / 'longrange.json'}")
    return 0
