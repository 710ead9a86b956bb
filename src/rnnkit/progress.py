"""What the training loop tells its user: the budget up front, a bar on a terminal or a line at least every
:data:`HEARTBEAT_S` seconds elsewhere, how to extend a finished run, and failed writes as one line."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rnnkit.train import TrainConfig

#: with no progress bar (not a terminal), a progress line at least this often (seconds of wall time)
HEARTBEAT_S = 10.0


def fmt(metrics: dict[str, Any]) -> str:
    """``loss 1.482 ppl 4.4``: floats to four significant digits."""
    return " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())


def budget(cfg: TrainConfig) -> str:
    """``150 s of training or 1,000,000 steps`` — what ends the run, in the flags' terms."""
    parts = [f"{cfg.max_time:g} s (evaluation excluded)"] if cfg.max_time else []
    parts.append(f"{cfg.steps:,} steps" + (f" ({cfg.epochs:g} epochs)" if getattr(cfg, "epochs", 0) else ""))
    if cfg.stop_at:
        parts.append(f"a pause at step {cfg.stop_at:,}")
    return " or ".join(parts)


def finished(cfg: TrainConfig, step: int, train_time: float) -> str:
    """Why a run at ``step``/``train_time`` cannot train further under ``cfg`` ('' if it can)."""
    if step >= cfg.steps:
        return "steps"
    if cfg.stop_at and step >= cfg.stop_at:
        return "stop_at"
    if cfg.max_time and train_time >= cfg.max_time:
        return "max_time"
    return ""


def finished_line(out: Path, cfg: TrainConfig, step: int, train_time: float, reason: str) -> str:
    """What a resume of a run whose budget is spent says, instead of training 0 steps."""
    return (f"{out} is finished: its budget ({budget(cfg)}) is spent at step {step}, {train_time:.1f} s of "
            f"training. To train longer, resume with {extend_hint(reason, cfg)}")  # fmt: skip


def extend_hint(reason: str, cfg: TrainConfig) -> str:
    if reason == "max_time":
        return f"a larger --max-time (now {cfg.max_time:g})"
    if reason == "stop_at":
        return f"a later --stop-at (now {cfg.stop_at}) or --stop-at 0"
    if getattr(cfg, "epochs", 0):
        return f"a larger --epochs (now {cfg.epochs:g}, {cfg.steps:,} steps)"
    return f"a larger --steps (now {cfg.steps:,})"


@contextlib.contextmanager
def writing(what: str, out: Path) -> Iterator[None]:
    """Turn a failed write (full disk, file-size limit, read-only folder) into one line that says what to do."""
    try:
        yield
    except OSError as e:
        raise OSError(
            f"cannot write {what} in {str(out)!r}: {e.strerror or e}; free space or choose another --out "
            "(the last complete checkpoint is kept: continue it with --resume)"
        ) from None


def bar(total: float, initial: float, by_time: bool) -> Any:
    """A tqdm bar on stderr when it is a terminal (None otherwise). A terminal that reports no size (some IDE
    consoles, remote and scripted shells say 0 x 0) gets 100 columns and 20 rows: from 0 x 0 tqdm derives a
    width of -1 and a height that hides every bar, so nothing appeared at all."""
    from tqdm import tqdm

    size = shutil.get_terminal_size((0, 0))
    width = size.columns if size.lines > 0 else 0
    fmt = "{l_bar}{bar}| {n:.0f}/{total:.0f}s [{elapsed}<{remaining}{postfix}]" if by_time else None
    bar = tqdm(total=total, initial=min(initial, total), bar_format=fmt, unit="step", leave=False, disable=None,
               dynamic_ncols=width > 0, ncols=None if width > 0 else 100, nrows=None if width > 0 else 20)  # fmt: skip
    return None if bar.disable else bar
