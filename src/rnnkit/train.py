"""The one training loop: ``train(model, task, cfg, out_dir=...)`` for every task in rnnkit.

Contract (stable; every task plugs in here, see :class:`rnnkit.tasks.base.Task`):

* ``task.train_batches(generator)`` — endless iterator; the loop draws one batch per optimisation step and,
  on resume, fast-forwards a fresh iterator (same seed) by the number of steps already taken (with its
  ``skip(k)`` method if it has one, else ``k`` calls of ``next``), so a batch stream must depend only on
  ``generator``. A batch is a tensor or (nested) tuple/list/dict of tensors with
  the batch on dim 0; the loop moves it to the model's device and, under ``torchrun``, gives each process
  its slice (rows ``rank::world_size``) of the same global batch.
* ``task.loss(model, batch, state) -> (mean loss, state to carry or None, units)`` — ``state`` is what the
  previous call returned (None at the start); carry it detached (truncated BPTT). ``units`` (tokens,
  samples) feed the throughput figure.
* ``task.evaluate(model) -> {"loss": ..., ...}`` — called in ``eval()`` mode under ``no_grad``; the
  lowest ``"loss"`` picks ``best/``.
* ``task.metadata()`` — JSON facts stored in checkpoints; a resume whose metadata (e.g. vocabulary) or
  model configuration differs is refused with the list of differences.

Outputs in ``out_dir``: ``last/`` and ``best/`` checkpoints (see :mod:`rnnkit.checkpoint`),
``metrics.jsonl`` and ``metrics.csv`` (one row per log/eval), ``curves.png``. Time is training time
(evaluation and checkpointing excluded); ``max_time`` budgets it and, with a cosine schedule, the LR
decays over whichever of ``steps`` and ``max_time`` runs out first.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit import checkpoint as ckpt
from rnnkit import progress as ui  # (train() has a `progress` flag: the bar)
from rnnkit.averaging import WeightAverage
from rnnkit.config import to_dict
from rnnkit.layer import constrain
from rnnkit.metrics_log import MetricsLog, plot_curves

log = logging.getLogger("rnnkit.train")


@dataclass
class OptimConfig:
    """Optimizer, learning-rate schedule and gradient clipping."""

    name: Literal["sgd", "adamw"] = "adamw"
    """optimizer: sgd (d2l) or adamw"""
    lr: float = 3e-3
    """peak learning rate"""
    weight_decay: float = 0.0
    """decoupled weight decay, applied to matrices only (not biases)"""
    betas: tuple[float, ...] = (0.9, 0.999)
    """AdamW's beta1,beta2"""
    momentum: float = 0.0
    """SGD momentum"""
    warmup: int = 0
    """linear warm-up steps"""
    schedule: Literal["constant", "cosine"] = "constant"
    """after warm-up: constant, or cosine decay to min_lr over the budget (steps or max_time)"""
    min_lr: float = 0.0
    """learning rate at the end of the cosine decay"""
    clip_norm: float = 1.0
    """clip gradients to this global L2 norm (0 = off)"""
    clip_value: float = 0.0
    """clip each gradient element to [-v, v] (0 = off); applied before clip_norm"""

    def __post_init__(self) -> None:
        if self.name not in ("sgd", "adamw"):
            raise ValueError(f"optim.name must be sgd or adamw, got {self.name!r}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"optim.lr must be a positive number, got {self.lr!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must be two numbers in [0, 1), e.g. 0.9,0.999, got {self.betas!r}")
        for name in ("weight_decay", "momentum", "warmup", "min_lr", "clip_norm", "clip_value"):
            if getattr(self, name) < 0:
                raise ValueError(f"optim.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.min_lr > self.lr:
            raise ValueError(f"optim.min_lr ({self.min_lr}) must not exceed optim.lr ({self.lr})")


@dataclass
class TrainConfig:
    """The training loop's settings (the task and the model have their own)."""

    steps: int = 1000
    """optimisation steps in total (also the cosine horizon)"""
    max_time: float = 0.0
    """training-time budget in seconds, evaluation excluded (0 = none); stops at steps or max_time"""
    stop_at: int = 0
    """stop this run after this step with a checkpoint, to continue later with resume (0 = off)"""
    eval_every: int = 200
    """evaluate on the validation split (and checkpoint) every N steps, and at the end"""
    log_every: int = 50
    """log the training loss and throughput every N steps"""
    seed: int = 0
    """seed for the batch order, dropout and initialisation"""
    plot: bool = True
    """write curves.png (train/val loss) at the end"""
    autocast: Literal["none", "bf16"] = "none"
    """mixed precision: bf16 runs each training forward under torch.autocast (float32 weights and optimizer)"""
    compile: bool = False
    """run the training forward and loss through torch.compile (inductor): compiles once (seconds) on first use"""
    ema: float = 0.0
    """evaluate, and keep as best/, an exponential moving average of the weights with this decay per step (0 = off)"""
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        if self.autocast not in ("none", "bf16"):
            raise ValueError(f"autocast must be none or bf16, got {self.autocast!r}")
        for name in ("steps", "eval_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1) (0 = off; e.g. 0.999), got {self.ema!r}")
        if self.max_time < 0 or self.stop_at < 0:
            raise ValueError("max_time and stop_at must be >= 0 (0 = off)")


class NonFiniteLossError(ValueError):
    """Training diverged (nan/inf loss); the last good checkpoint is kept."""


@dataclass
class TrainResult:
    step: int
    """optimisation steps taken in total (across resumes)"""
    train_time: float
    """seconds of training (evaluation excluded), across resumes"""
    units_per_s: float
    """throughput of this run (tokens/s for a language model)"""
    stop_reason: str
    """steps, max_time or stop_at"""
    best: dict[str, Any]
    """the best validation metrics and their step"""
    last: dict[str, Any]
    """the final validation metrics"""
    out_dir: Path
    new_steps: int = 0
    """steps taken by this call (0 when a resumed run had already spent its budget)"""
    unit: str = "units"
    """what ``units_per_s`` counts (the task's ``unit``: tokens, sequences, windows…)"""


# ------------------------------------------------------------------------------------------------
def learning_rate(o: OptimConfig, step: int, progress: float) -> float:
    """LR for the step about to be taken; ``progress`` in [0, 1] is the fraction of the budget used."""
    lr = o.lr
    if o.schedule == "cosine":
        lr = o.min_lr + (o.lr - o.min_lr) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if o.warmup and step < o.warmup:
        lr *= (step + 1) / o.warmup
    return lr


def make_optimizer(model: nn.Module, o: OptimConfig) -> torch.optim.Optimizer:
    """SGD or AdamW; weight decay on matrices (dim >= 2) only, never on biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum)
    return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas))  # type: ignore[arg-type]


def move(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(move(v, device) for v in batch)
    return batch


def shard(batch: Any, rank: int, world: int) -> Any:
    """This process' rows of a global batch (every tensor sliced ``rank::world`` on dim 0)."""
    if world == 1:
        return batch
    if isinstance(batch, Tensor):
        if batch.shape[0] % world:
            raise ValueError(f"batch size {batch.shape[0]} is not divisible by the {world} processes: change it")
        return batch[rank::world]
    if isinstance(batch, dict):
        return {k: shard(v, rank, world) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard(v, rank, world) for v in batch)
    return batch


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group under ``torchrun`` (gloo on CPU, nccl on GPU)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


RUN_FILES = ("last", "best", "metrics.jsonl", "metrics.csv", "curves.png")


def _run_files(out: Path) -> list[Path]:
    return [out / n for n in RUN_FILES if (out / n).exists()]


# ------------------------------------------------------------------------------------------------
def train(
    model: nn.Module,
    task: Any,
    cfg: TrainConfig,
    *,
    out_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    record: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` on ``task``; see the module docstring for the contract and the outputs.

    ``resume`` continues from ``out_dir/last`` exactly (same batches, RNG, optimizer and carried state) after
    putting back what a kill left half-done; with no checkpoint yet it starts the run, and a run whose budget
    is spent returns at once (``new_steps == 0``) after saying how to extend it. ``overwrite`` discards an
    existing run in ``out_dir``; otherwise an existing run is an error.
    ``record`` is the full configuration to store in checkpoints (default ``cfg``); ``progress`` shows a
    tqdm bar.
    """
    out = Path(out_dir)
    rank, world = _distributed()
    main_process = rank == 0
    device = next(model.parameters()).device
    if world > 1 and torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        model.to(device)
    unit = getattr(task, "unit", "units")
    saved = None
    if main_process:
        if resume:
            for line in ckpt.recover_run(out):  # a kill can leave a checkpoint mid-swap and half-written files
                log.info("%s: %s", out, line)
        existing = _run_files(out)
        if resume and ckpt.has_checkpoint(out):
            saved = ckpt.load_checkpoint(out, prefer="last")  # falls back to best/ (and says so) if last/ is damaged
        elif resume:
            log.info("no checkpoint in %s yet%s: starting the run from step 0", out,
                     " (it stopped before its first evaluation)" if existing else "")  # fmt: skip
        elif existing and not overwrite:
            what = "a run" if ckpt.has_checkpoint(out) else "a run that stopped before its first checkpoint"
            raise ValueError(f"{str(out)!r} already holds {what} ({existing[0].name}): continue it (--resume), "
                             "discard it (--overwrite) or choose another --out")  # fmt: skip
        if not saved:
            for p in existing:  # --overwrite, or a --resume with nothing to resume from
                p.unlink() if p.is_file() else shutil.rmtree(p)
            ckpt.recover_run(out)
    if world > 1:
        flag = torch.tensor([int(saved is not None)], device=device)
        torch.distributed.broadcast(flag, 0)  # rank 0 has looked at out_dir: every process resumes or none does
        if flag.item() and saved is None:
            saved = ckpt.load_checkpoint(out, prefer="last")
    record = to_dict(cfg) if record is None else record
    signature = {"model": ckpt.model_signature(model), "task": {"name": task.name, **task.metadata()}}
    optimizer = make_optimizer(model, cfg.optim)
    average = WeightAverage(model, cfg.ema) if cfg.ema else None
    o = cfg.optim

    # ---- start fresh, or restore everything a resume needs -------------------------------------
    step, train_time, carry = 0, 0.0, None
    best: dict[str, Any] = {}
    last_eval: dict[str, Any] = {}
    if saved is not None:
        diffs = ckpt.resume_differences(saved.state["signature"], signature)
        if diffs:
            raise ValueError(f"cannot resume {str(out)!r}: the model or data changed: " + "; ".join(diffs))
        changed = ckpt.describe_differences(saved.state.get("config", {}), record)
        if changed and main_process:
            log.warning("resuming with changed settings: %s", "; ".join(changed))
        ckpt.load_model_weights(model, saved)
        ckpt.optimizer_from_json(optimizer, saved.state["optimizer"], saved.tensors)
        ckpt.set_rng_state(saved.state["rng"], saved.tensors)
        carry = ckpt.carry_from_tensors(saved.state["carry"], saved.tensors, device)
        if average is not None and not average.load(saved.tensors) and main_process:
            log.warning("%s holds no weight average: it starts again from the resumed weights", saved.path)
        step, train_time = saved.step, float(saved.state["train_time"])
        best, last_eval = saved.state.get("best", {}), saved.state.get("last_eval", {})
        done = ui.finished(cfg, step, train_time)
        if done:  # nothing to train: say so at once instead of evaluating and reporting 0 units/s
            if main_process:
                log.info("%s", ui.finished_line(out, cfg, step, train_time, done))
                if not (out / "metrics.csv").exists() or (cfg.plot and not (out / "curves.png").exists()):
                    with ui.writing("metrics.csv", out):  # the run was killed after its last checkpoint
                        metrics = MetricsLog(out, keep_until=step)
                        metrics.close()
                    if cfg.plot:
                        with ui.writing("curves.png", out):
                            plot_curves(metrics.rows, out / "curves.png")
            return TrainResult(step, train_time, 0.0, done, best, last_eval, out, new_steps=0, unit=unit)
        if main_process:
            log.info("resumed %s at step %d (%.1f s of training)", saved.path, step, train_time)
    else:
        torch.manual_seed(cfg.seed + rank)  # dropout masks differ between processes, init does not matter here
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
    if main_process:
        log.info("training for up to %s, validating every %s steps; writing %s: last/ and best/ checkpoints, "
                 "metrics.jsonl, metrics.csv%s", ui.budget(cfg), f"{cfg.eval_every:,}", out,
                 ", curves.png" if cfg.plot else "")  # fmt: skip
    with ui.writing("metrics.jsonl", out):
        metrics = MetricsLog(out, keep_until=step, enabled=main_process)

    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net: nn.Module = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        net = model

    # The batch stream depends only on the seed: a resume replays it up to where the run stopped.
    generator = torch.Generator().manual_seed(cfg.seed)
    batches = task.train_batches(generator)
    if hasattr(batches, "skip"):
        batches.skip(step)  # same generator draws as `step` next() calls, without building the batches
    else:
        for _ in range(step):
            next(batches)

    def checkpoint(name: str) -> None:
        if not main_process:
            return
        opt_js, opt_t = ckpt.optimizer_to_json(optimizer)
        rng_js, rng_t = ckpt.rng_state()
        # Under torchrun each process carries its own rows' state; only rank 0 saves, so a resume restarts
        # the carried state from zero there (the one way a multi-process resume is not bit-exact).
        layout, carry_t = ckpt.carry_to_tensors(carry if world == 1 else None)
        ema_t = average.tensors() if average is not None else {}
        state = {"step": step, "train_time": train_time, "best": best, "last_eval": last_eval,
                 "config": record, "signature": signature, "task": signature["task"],
                 "optimizer": opt_js, "rng": rng_js, "carry": layout, "world_size": world}  # fmt: skip
        # best/ holds the weights that were evaluated (the average, when there is one); last/ the live ones
        averaged = average.swapped() if average is not None and name == "best" else nullcontext()
        with ui.writing(f"checkpoint {name}/", out), averaged:
            ckpt.save_checkpoint(out / name, model, state, {**opt_t, **rng_t, **carry_t, **ema_t})

    def evaluate() -> dict[str, Any]:
        model.eval()
        with torch.no_grad(), average.swapped() if average is not None else nullcontext():
            result = {k: float(v) for k, v in task.evaluate(model).items()}
        model.train()
        return result

    # A bar on a terminal; elsewhere (logs, CI, pipes) a line at least every ui.HEARTBEAT_S seconds.
    bar = None
    if progress and main_process:
        by_time = bool(cfg.max_time)
        bar = ui.bar(cfg.max_time if by_time else cfg.steps, train_time if by_time else step, by_time)
    heartbeat = time.monotonic()

    run_units, run_time, run_steps = 0, 0.0, 0
    window_units, window_time, window_loss, window_steps = (
        0,
        0.0,
        torch.zeros((), dtype=torch.float64, device=device),
        0,
    )
    stop_reason, lr = "", learning_rate(o, step, 0.0)
    # the model's forward and the task's loss as one graph (inductor fuses the head's bias into the loss); the
    # evaluation and the checkpoints use the model itself
    task_loss = torch.compile(task.loss) if cfg.compile else task.loss
    model.train()
    while True:
        # ---- stop? (steps, stop_at, time budget) ------------------------------------------------
        if step >= cfg.steps:
            stop_reason = "steps"
        elif cfg.stop_at and step >= cfg.stop_at:
            stop_reason = "stop_at"
        elif cfg.max_time and train_time >= cfg.max_time:
            stop_reason = "max_time"
        if stop_reason:
            break
        t0 = time.perf_counter()

        # ---- 1. batch: this process' share of the next global batch, on the model's device ----
        batch = move(shard(next(batches), rank, world), device)

        # ---- 2. schedule: LR for this step from the fraction of the budget used -------------
        progress_frac = max(step / cfg.steps, train_time / cfg.max_time if cfg.max_time else 0.0)
        lr = learning_rate(o, step, progress_frac)
        for group in optimizer.param_groups:
            group["lr"] = lr

        # ---- 3. forward + loss (the task carries detached state between batches) ---------------
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.autocast == "bf16"):
            loss, carry, units = task_loss(net, batch, carry)

        # ---- 4. backward ----------------------------------------------------------------------
        optimizer.zero_grad(set_to_none=True)
        loss.backward()

        # ---- 5. clip: by value, then by global norm ------------------------------------------
        if o.clip_value:
            nn.utils.clip_grad_value_(model.parameters(), o.clip_value)
        if o.clip_norm:
            nn.utils.clip_grad_norm_(model.parameters(), o.clip_norm)

        # ---- 6. step, weights back inside their cells' bounds (IndRNN's recurrent_max), average --
        optimizer.step()
        constrain(model)
        step += 1
        if average is not None:
            average.update(step)
        window_loss += loss.detach()
        window_steps += 1
        window_units += int(units) * world
        dt = time.perf_counter() - t0
        train_time += dt
        if world > 1:  # rank 0's clock decides the schedule and the stop for every process
            clock = torch.tensor([train_time], dtype=torch.float64, device=device)
            torch.distributed.broadcast(clock, 0)
            train_time = float(clock)
        window_time += dt
        run_units += int(units) * world
        run_steps += 1
        run_time += dt
        if bar is not None:  # never past the total: tqdm drops the total (and our format) when n exceeds it
            bar.update(min(dt, cfg.max_time - bar.n) if cfg.max_time else 1)

        # ---- 7. log: the only place values leave the device (.item()) -------------------------
        finished = step >= cfg.steps or (cfg.stop_at and step >= cfg.stop_at) or (
            cfg.max_time and train_time >= cfg.max_time)  # fmt: skip
        if step % cfg.log_every == 0 or step % cfg.eval_every == 0 or finished:
            if world > 1:
                torch.distributed.all_reduce(window_loss)
                window_loss /= world
            train_loss = window_loss.item() / window_steps
            speed = window_units / max(window_time, 1e-9)
            if not math.isfinite(train_loss):
                if bar is not None:
                    bar.close()
                metrics.close()
                where = f"the last good checkpoint (step {last_eval.get('step', 0)}) is in {out / 'last'}"
                raise NonFiniteLossError(
                    f"training loss became {train_loss} by step {step} (lr {lr:.3g}): lower --optim.lr or clip "
                    f"gradients (--optim.clip_norm); " + (where if last_eval else "no checkpoint was written")
                )
            with ui.writing("metrics.jsonl", out):
                metrics.add({"step": step, "split": "train", "time": round(train_time, 3), "loss": train_loss,
                             "lr": lr, "units_per_s": round(speed, 1)})  # fmt: skip
            if bar is not None:
                bar.set_postfix_str(f"loss {train_loss:.3f} | {speed:,.0f} {unit}/s")
            window_loss, window_steps, window_units, window_time = torch.zeros_like(window_loss), 0, 0, 0.0

            # ---- 8. evaluate on the validation split and checkpoint (last/, best/) -------------
            if step % cfg.eval_every == 0 or finished:
                last_eval = {"step": step, **evaluate()}
                if not math.isfinite(last_eval["loss"]):
                    metrics.close()
                    raise NonFiniteLossError(f"validation loss became {last_eval['loss']} at step {step}: lower "
                                             "--optim.lr; the last good checkpoint is kept")  # fmt: skip
                metrics.add({"step": step, "split": "val", "time": round(train_time, 3),
                             **{k: v for k, v in last_eval.items() if k != "step"}})  # fmt: skip
                is_best = not best or last_eval["loss"] < best["loss"]
                if is_best:
                    best = dict(last_eval)
                if main_process:
                    msg = (f"step {step} | {train_time:.1f}s | train loss {train_loss:.4f} | val "
                           f"{ui.fmt({k: v for k, v in last_eval.items() if k not in ('step', 'tokens')})} | "
                           f"{speed:,.0f} {unit}/s | lr {lr:.2e}{' | best' if is_best else ''}")  # fmt: skip
                    (bar.write if bar is not None else log.info)(msg)
                    heartbeat = time.monotonic()
                with ui.writing("metrics.csv", out):
                    metrics.write_csv()
                # best/ first: a kill between the two leaves last/ older, and the resume from it re-derives best/
                if is_best:
                    checkpoint("best")
                checkpoint("last")
        if bar is None and main_process and window_steps and time.monotonic() - heartbeat >= ui.HEARTBEAT_S:
            so_far = window_loss.item() / window_steps  # this log window's mean so far; the window goes on
            log.info("step %d | %.1fs%s | train loss %.4f | %s %s/s", step, train_time,
                     f" of {cfg.max_time:g}s" if cfg.max_time else f" (step budget {cfg.steps:,})", so_far,
                     f"{window_units / max(window_time, 1e-9):,.0f}", unit)  # fmt: skip
            heartbeat = time.monotonic()

    if bar is not None:
        bar.close()
    with ui.writing("metrics.csv", out):
        metrics.close()
    if cfg.plot and main_process:
        with ui.writing("curves.png", out):
            plot_curves(metrics.rows, out / "curves.png")
    result = TrainResult(step, train_time, run_units / max(run_time, 1e-9), stop_reason, best, last_eval, out,
                         new_steps=run_steps, unit=unit)  # fmt: skip
    if main_process:
        log.info("done: %d steps (%s) in %.1fs of training, %s %s/s; best val %s at step %s", step, stop_reason,
                 train_time, f"{result.units_per_s:,.0f}", unit,
                 ui.fmt({k: v for k, v in best.items() if k not in ("step", "tokens")}), best.get("step"))  # fmt: skip
    return result
