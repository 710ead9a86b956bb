"""One runner for every training command (``train``, ``classify``, ``forecast``, ``translate train``,
``caption train``): the shared settings, then set-up -> :func:`rnnkit.train.train` -> reload the best
checkpoint -> the command's report, and the command-line wrapper around it.

A command supplies two functions::

    def setup(cfg, device, dtype) -> Setup          # data, task, model (+ one line describing them)
    def report(cfg, setup, best, result) -> dict    # held-out scores of the best checkpoint, files written

and :func:`run` does the rest the same way for all of them: threads (restored afterwards, so a Python
caller's process is left as it was), device and dtype, the seed, a writable ``out`` checked before any
work, resume/overwrite, the loop, the best checkpoint, and the finished-run short cut.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from rnnkit.config import parse_config, to_dict
from rnnkit.train import TrainConfig, TrainResult

log = logging.getLogger("rnnkit.train")

C = TypeVar("C", bound="RunConfig")

#: failures a user can fix (bad file, bad flag, refused resume, full disk): one line, exit status 1, no traceback
EXPECTED_ERRORS = (ValueError, TypeError, OSError, RuntimeError)


@dataclass
class RunConfig(TrainConfig):
    """What every training command shares: the loop's settings plus where and how it runs."""

    out: str = "runs/run"
    """run directory: checkpoints (last/, best/), metrics.jsonl/.csv, curves.png and the command's report"""
    device: str = "cpu"
    """cpu, cuda, cuda:N or auto"""
    dtype: Literal["float32", "float64"] = "float32"
    """parameter precision"""
    threads: int = 0
    """torch intra-op threads while the command runs (0 = torch's default)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0 = torch's default), got {self.threads}")
        if self.device not in ("cpu", "cuda", "auto") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be cpu, cuda, cuda:N or auto, got {self.device!r}")


@dataclass
class Setup:
    """What a command's set-up hands to the runner."""

    model: Any
    task: Any
    describe: str
    """one line about the data and the model, logged before training"""
    loop: TrainConfig | None = None
    """the loop's settings when they differ from the command's (the language model's epoch cap)"""
    extra: Any = None
    """anything the command's report needs besides the model and the task"""


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """``n`` intra-op threads inside the block (0 = leave them), the caller's setting again after it."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(before)


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: this machine has no CUDA device; use --device cpu (or auto)")
    return name


def check_writable(out: str | Path) -> None:
    """Fail before any work when ``out`` cannot be written (read-only, a file, no permission), in one line;
    creates nothing (a run that fails on its data leaves no empty folder behind)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, not a folder: choose another --out")
    place = out
    while not place.exists():  # the nearest existing folder is where mkdir will write
        place = place.parent
    if not os.access(place, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write to --out {str(out)!r}: {str(place)!r} is read-only or not yours; choose "
                         "another --out")  # fmt: skip


def run(
    cfg: RunConfig,
    setup: Callable[[Any, str, Any], Setup],
    report: Callable[[Any, Setup, Any, TrainResult], dict[str, Any]],
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Set up, train (or resume), reload the best checkpoint and report; returns the command's summary.

    Every summary has ``steps``, ``train_time``, ``units_per_s``, ``unit``, ``best_step`` and ``best_val``.
    A resumed run whose budget was already spent returns ``{"finished": True, ...}`` at once (the loop has
    said how to extend it) without scoring again.
    """
    import torch

    from rnnkit import checkpoint as ckpt
    from rnnkit.train import train

    with torch_threads(cfg.threads):
        device = resolve_device(cfg.device)
        if os.environ.get("RANK", "0") == "0":
            check_writable(cfg.out)
        torch.manual_seed(cfg.seed)  # the model's initialisation
        s = setup(cfg, device, getattr(torch, cfg.dtype))
        (log.info if os.environ.get("RANK", "0") == "0" else log.debug)(s.describe)
        result = train(s.model, s.task, s.loop or cfg, out_dir=cfg.out, resume=resume, overwrite=overwrite,
                       progress=progress, record=to_dict(cfg))  # fmt: skip
        common = {"steps": result.step, "train_time": result.train_time, "units_per_s": result.units_per_s,
                  "unit": result.unit, "best_val": result.best}  # fmt: skip
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()  # rank 0 has written its last checkpoint
            if torch.distributed.get_rank() != 0:
                return {"rank": torch.distributed.get_rank(), **common}
        if result.new_steps == 0 and resume:
            return {"finished": True, **common, "best_step": result.best.get("step")}
        best = ckpt.load_checkpoint(cfg.out, prefer="best")
        ckpt.load_model_weights(s.model, best)
        s.model.eval()
        with torch.no_grad():
            return {**common, "best_step": best.step, **report(cfg, s, best, result)}


# ------------------------------------------------------------------------------------------------
# the command line
def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """``--resume`` and ``--overwrite``: how this invocation treats ``--out`` (not settings of the run, so
    they are not stored in its checkpoints)."""
    resume = "continue the run in --out exactly where it stopped (starts it if it has no checkpoint yet)"
    parser.add_argument("--resume", action="store_true", help=resume)
    parser.add_argument("--overwrite", action="store_true", help="discard an existing run in --out")


def guarded(prog: str, fn: Callable[[], Any], *, on_interrupt: str) -> Any:
    """Call ``fn`` with log lines routed around the tqdm bar; returns its result, or the exit status after
    printing one line: 130 on Ctrl-C (``on_interrupt`` says where the work is), 1 on an expected error."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        with logging_redirect_tqdm():
            return fn()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {on_interrupt}", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1


def main(
    prog: str,
    cls: type[C],
    argv: list[str] | None,
    command: Callable[..., dict[str, Any]],
    show: Callable[[C, dict[str, Any]], None],
    *,
    description: str,
    presets: Mapping[str, Mapping[str, Any]] | None = None,
) -> int:
    """``rnnkit <command>`` for a training command: parse flags into ``cls``, run ``command(cfg, resume=,
    overwrite=, progress=True)`` guarded, then ``show`` its summary. Returns the exit status."""
    cfg, ns = parse_config(cls, argv, prog=prog, presets=presets, extra=add_run_flags, description=description)
    summary = guarded(prog, lambda: command(cfg, resume=ns.resume, overwrite=ns.overwrite, progress=True),
                      on_interrupt=f"the last checkpoint is in {cfg.out}/last (continue with --resume)")  # fmt: skip
    if isinstance(summary, int):
        return summary
    if "rank" in summary or summary.get("finished"):  # another torchrun process, or nothing was trained
        return 0
    show(cfg, summary)
    return 0
