"""``rnnkit sweep``: d2l's hyper-parameter exercise — train a grid of language models for the same short budget
and compare run time with perplexity.

    rnnkit sweep                                           # Time Machine, d2l preset, 2×2×2×2 grid, 300 steps each
    rnnkit sweep --hidden_size 64,128,256 --lr 1,2 --steps 500 --out runs/sweep-h
    rnnkit sweep --preset recommended --data tinyshakespeare --num_layers 1,2 --max_time 30

Every run goes through ``rnnkit train``'s own function (:func:`rnnkit.commands.train.train_language_model`,
hence the one training loop) into ``OUT/runs/<name>/``; the sweep writes ``OUT/results.csv``,
``OUT/results.md`` (sorted by validation perplexity) and ``OUT/sweep.png`` (training time vs perplexity).
"""

from __future__ import annotations

import csv
import itertools
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rnnkit.atomic import atomic_file, save_figure, write_text
from rnnkit.config import flatten, from_flat, parse_config
from rnnkit.rnn import CellName
from rnnkit.runner import guarded

log = logging.getLogger("rnnkit.sweep")
PROG = "rnnkit sweep"
COLUMNS = ["run", "hidden_size", "num_steps", "lr", "num_layers", "parameters", "steps", "train_time_s",
           "tokens_per_s", "best_step", "val_ppl", "test_ppl", "test_bpc"]  # fmt: skip


@dataclass
class SweepConfig:
    """The grid (comma-separated values) and what every run shares."""

    data: str = "timemachine"
    """corpus: timemachine (the seed's), stdlib, tinyshakespeare, or a UTF-8 text file"""
    preset: Literal["d2l", "recommended", "regularised"] = "d2l"
    """rnnkit train preset every run starts from (d2l: one-hot LSTM, SGD, letters only)"""
    cell: CellName = "lstm"
    """recurrent cell of every run"""
    hidden_size: tuple[int, ...] = (128, 256)
    """grid: hidden units per layer"""
    num_steps: tuple[int, ...] = (16, 35)
    """grid: time steps per batch (truncated-BPTT length)"""
    lr: tuple[float, ...] = (1.0, 2.0)
    """grid: peak learning rate"""
    num_layers: tuple[int, ...] = (1, 2)
    """grid: stacked recurrent layers"""
    steps: int = 300
    """budget of every run in optimisation steps (so faster settings finish sooner)"""
    max_time: float = 0.0
    """cap on every run's training time in seconds (0 = none)"""
    eval_every: int = 100
    """validation (and best-checkpoint) cadence of every run, in steps"""
    seed: int = 0
    """seed of every run (same initialisation stream and batch order)"""
    threads: int = 0
    """torch intra-op threads (0 = torch's default)"""
    out: str = "runs/sweep"
    """sweep directory: runs/<name>/, results.csv, results.md, sweep.png"""

    def __post_init__(self) -> None:
        grid = {"hidden_size": self.hidden_size, "num_steps": self.num_steps, "num_layers": self.num_layers}
        for name, values in grid.items():
            if not values or any(v < 1 for v in values):
                raise ValueError(f"--{name} needs positive integers separated by commas, got {values!r}")
        if not self.lr or any(not (v > 0 and math.isfinite(v)) for v in self.lr):
            raise ValueError(f"--lr needs positive numbers separated by commas, got {self.lr!r}")
        if self.steps < 1 or self.eval_every < 1 or self.max_time < 0 or self.threads < 0:
            raise ValueError("--steps and --eval_every must be >= 1, --max_time and --threads >= 0")


def grid(cfg: SweepConfig) -> list[dict[str, Any]]:
    """The runs, in a fixed order: hidden size, then steps, lr, layers."""
    runs = []
    for h, t, lr, n in itertools.product(cfg.hidden_size, cfg.num_steps, cfg.lr, cfg.num_layers):
        runs.append({"run": f"h{h}-t{t}-lr{lr:g}-l{n}", "hidden_size": h, "num_steps": t, "lr": lr, "num_layers": n})
    return runs


def run_config(cfg: SweepConfig, point: dict[str, Any]) -> Any:
    """The ``rnnkit train`` configuration of one grid point: preset, shared settings, the point."""
    from rnnkit.commands.train import PRESETS, LMTrainConfig

    values = flatten(PRESETS[cfg.preset])
    values.update({
        "data": cfg.data, "steps": cfg.steps, "max_time": cfg.max_time, "eval_every": cfg.eval_every,
        "log_every": cfg.eval_every, "seed": cfg.seed, "threads": cfg.threads, "sample.num_tokens": 0,
        "out": str(Path(cfg.out) / "runs" / point["run"]), "model.cell": cfg.cell,
        "model.hidden_size": point["hidden_size"], "model.num_layers": point["num_layers"],
        "lm.num_steps": point["num_steps"], "optim.lr": point["lr"],
    })  # fmt: skip
    if values.get("optim.min_lr", 0.0) > point["lr"]:  # a cosine floor above a small grid lr would be refused
        values["optim.min_lr"] = point["lr"] / 10
    return from_flat(LMTrainConfig, values)


def sweep(cfg: SweepConfig, *, overwrite: bool = False, progress: bool = False) -> list[dict[str, Any]]:
    """Train every grid point; write results.csv, results.md and sweep.png; return the result rows."""
    from rnnkit.commands.train import train_language_model

    out = Path(cfg.out)
    outputs = [out / n for n in ("results.csv", "results.md", "sweep.png", "runs")]
    if any(p.exists() for p in outputs) and not overwrite:
        raise ValueError(f"{str(out)!r} already holds a sweep: pass --overwrite to replace it, or choose another --out")
    points = grid(cfg)
    configs = [run_config(cfg, p) for p in points]  # validate every run before training any
    if overwrite:  # explicit: the old sweep goes only once every new run configuration is valid
        for p in outputs:
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    rows = []
    for i, (point, run_cfg) in enumerate(zip(points, configs), 1):
        log.info("sweep run %d/%d: %s", i, len(points), point["run"])
        summary = train_language_model(run_cfg, overwrite=True, progress=progress)
        rows.append(result_row(point, summary, run_cfg))
        write_results(rows, out)  # after every run, so an interrupted sweep keeps what it measured
        log.info("%s: val ppl %.3f, %s ppl %.3f, %.1fs", point["run"], rows[-1]["val_ppl"], summary["split"],
                 rows[-1]["test_ppl"], rows[-1]["train_time_s"])  # fmt: skip
    plot_sweep(rows, out / "sweep.png", cfg)
    return rows


def result_row(point: dict[str, Any], summary: dict[str, Any], run_cfg: Any) -> dict[str, Any]:
    from rnnkit import checkpoint as ckpt

    saved = ckpt.load_checkpoint(run_cfg.out, prefer="best")
    parameters = sum(t.numel() for t in saved.model_tensors.values())
    bits = next(k for k in ("bpc", "bits_per_word") if k in summary)
    return {
        **point,
        "parameters": parameters,
        "steps": summary["steps"],
        "train_time_s": round(summary["train_time"], 2),
        "tokens_per_s": round(summary["units_per_s"]),
        "best_step": summary["best_step"],
        "val_ppl": round(summary["best_val"]["ppl"], 4),
        "test_ppl": round(summary["ppl"], 4),
        "test_bpc": round(summary[bits], 4),
    }


def write_results(rows: list[dict[str, Any]], out: Path) -> None:
    """results.csv (grid order) and results.md (best validation perplexity first), each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "results.csv", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in sorted(rows, key=lambda r: r["val_ppl"]):
        lines.append("| " + " | ".join(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in COLUMNS) + " |")
    write_text(out / "results.md", "\n".join(lines) + "\n")


def plot_sweep(rows: list[dict[str, Any]], path: Path, cfg: SweepConfig) -> None:
    """Training time (x) against best validation perplexity (y); colour = hidden size, marker = layers."""
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    sizes = sorted({r["hidden_size"] for r in rows})
    markers = dict(zip(sorted({r["num_layers"] for r in rows}), "os^Dv<>p*"))
    colours = matplotlib.colormaps["viridis"]
    for r in rows:
        colour = colours(sizes.index(r["hidden_size"]) / max(1, len(sizes) - 1))
        ax.scatter(r["train_time_s"], r["val_ppl"], color=colour, marker=markers.get(r["num_layers"], "o"), s=40)
        ax.annotate(f"T{r['num_steps']} lr{r['lr']:g}", (r["train_time_s"], r["val_ppl"]), fontsize=7,
                    xytext=(4, 2), textcoords="offset points")  # fmt: skip
    for h in sizes:
        ax.scatter([], [], color=colours(sizes.index(h) / max(1, len(sizes) - 1)), label=f"hidden {h}")
    for n, m in markers.items():
        ax.scatter([], [], color="grey", marker=m, label=f"{n} layer{'s' if n > 1 else ''}")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("best validation perplexity")
    budget = f"{cfg.steps} steps" + (f" or {cfg.max_time:g}s" if cfg.max_time else "")
    ax.set_title(f"{cfg.cell} on {cfg.data}, preset {cfg.preset}, {budget} per run", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    def extra(p: Any) -> None:
        p.add_argument("--overwrite", action="store_true", help="replace an existing sweep in --out")

    cfg, ns = parse_config(SweepConfig, argv, prog=PROG, extra=extra,
                           description="Train a grid of language models for the same budget; table + plot of "
                           "training time vs perplexity (d2l's hyper-parameter exercise).")  # fmt: skip
    result = guarded(
        PROG,
        lambda: sweep(cfg, overwrite=ns.overwrite, progress=True),
        on_interrupt=f"finished runs are in {cfg.out}/results.csv",
    )
    if isinstance(result, int):
        return result
    rows = result
    print((Path(cfg.out) / "results.md").read_text(encoding="utf-8"), end="")
    best = min(rows, key=lambda r: r["val_ppl"])
    print(f"best: {best['run']} (val ppl {best['val_ppl']:.3f}, test ppl {best['test_ppl']:.3f}) | "
          f"{len(rows)} runs | {cfg.out}/results.csv, results.md, sweep.png")  # fmt: skip
    return 0
