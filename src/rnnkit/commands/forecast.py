"""``rnnkit forecast``: train an RNN forecaster with the one training loop, then score it on the held-out tail
against naive, seasonal-naive, Holt-Winters and ARIMA forecasts at the same points, and plot forecast vs truth.

    rnnkit forecast                                        # sunspots, LSTM, direct 6-year forecasts, 60 s
    rnnkit forecast --preset sunspots                      # GRU, recursive, AR(9) as the classical baseline
    rnnkit forecast --preset co2 --out runs/co2            # Mauna Loa CO₂, monthly, 12-month horizon
    rnnkit forecast --data.csv sales.csv --data.columns units --data.season 7 --data.horizon 14
    rnnkit forecast --model.strategy recursive --model.cell gru --max-time 30 --out runs/rec

Outputs in ``--out``: the training loop's checkpoints and curves, ``report.json`` (every model's
MAE/RMSE/MASE on the test tail, the series notes, the configuration) and ``forecast.png``.
In Python: ``run_forecast(ForecastRunConfig(...))``.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnkit import runner
from rnnkit.atomic import save_figure, write_json
from rnnkit.config import to_dict
from rnnkit.runner import RunConfig, Setup, run
from rnnkit.tasks.forecast import ForecastDataConfig, ForecastModelConfig

log = logging.getLogger("rnnkit.forecast")

BASELINES = ("naive", "seasonal-naive", "holt-winters", "arima")


@dataclass
class ForecastRunConfig(RunConfig):
    """Everything ``rnnkit forecast`` needs: the series, the model, optimisation, the loop, the baselines."""

    steps: int = 4000
    """optimisation steps in total (also the cosine horizon); max_time usually ends the run first"""
    max_time: float = 60.0
    """training-time budget in seconds, evaluation excluded (0 = none); stops at steps or max_time"""
    eval_every: int = 100
    """evaluate on the validation part (and checkpoint) every N steps, and at the end"""
    out: str = "runs/forecast"
    """run directory: checkpoints (last/, best/), metrics, curves.png, report.json, forecast.png"""
    batch_size: int = 32
    """windows per training batch"""
    threads: int = 1
    """torch intra-op threads while the command runs (0 = torch's default; small models run fastest on one)"""
    baselines: tuple[str, ...] = BASELINES
    """baselines scored at the same test points: naive, seasonal-naive, holt-winters, arima"""
    arima_order: tuple[int, ...] = (2, 1, 1)
    """ARIMA (p,d,q) order of the arima baseline"""
    data: ForecastDataConfig = field(default_factory=ForecastDataConfig)
    model: ForecastModelConfig = field(default_factory=ForecastModelConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise ValueError(f"unknown baseline {unknown[0]!r}: choose from {', '.join(BASELINES)}")
        if len(self.arima_order) != 3 or min(self.arima_order) < 0:
            raise ValueError(f"arima_order must be three non-negative integers p,d,q, got {self.arima_order}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


#: named starting points (flags and --config override them)
PRESETS: dict[str, dict[str, Any]] = {
    # yearly sunspots: two solar cycles in, 6 years out. Model: the lowest validation loss of five settings tried
    # (docs/results.md); ARIMA: AR(9), the classical sunspot model (stronger here than AIC's pick, (6,1,1))
    "sunspots": {
        "data": {"dataset": "sunspots", "window": 24, "horizon": 6},
        "arima_order": (9, 0, 0),
        "model": {"cell": "gru", "hidden_size": 32, "strategy": "recursive", "relative": False},
    },
    # monthly CO₂: three years in, one year out; ARIMA order picked by AIC on the training part
    "co2": {"data": {"dataset": "co2", "window": 36, "horizon": 12}, "arima_order": (9, 1, 0)},
    # a few seconds on the synthetic series (examples, smoke tests)
    "quick": {
        "data": {"dataset": "synthetic", "window": 24, "horizon": 6},
        "model": {"hidden_size": 32},
        "max_time": 10.0,
        "eval_every": 50,
        "baselines": ("naive", "seasonal-naive"),
    },  # fmt: skip
}


def run_forecast(
    cfg: ForecastRunConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = False
) -> dict[str, Any]:
    """Train, reload the best checkpoint (by validation loss), score it and the baselines on the test tail,
    write ``report.json`` and ``forecast.png``; returns the report."""
    return run(cfg, _setup, _report, resume=resume, overwrite=overwrite, progress=progress)


def _setup(cfg: ForecastRunConfig, device: str, dtype: Any) -> Setup:
    from rnnkit.tasks.forecast import ForecastTask

    d = cfg.data
    series = d.load()
    task = ForecastTask(series, d.window, d.horizon, target=d.target, val_frac=d.val_frac, test_frac=d.test_frac,
                        batch_size=cfg.batch_size, dtype=dtype)  # fmt: skip
    model = task.build_model(cfg.model).to(device)
    model.config = cfg.model  # recorded in the checkpoint signature: a resume with another model is refused
    describe = (f"{series.name}: {len(series)} steps x {len(series.columns)} column(s) ({series.span[0]}.."
                f"{series.span[1]}), season {series.season}; train {task.a} / val {task.b - task.a} / test "
                f"{len(series) - task.b} steps, {len(task.at['test'])} test origins; {model.rnn.describe_cell()}, "
                f"{sum(p.numel() for p in model.parameters()):,} parameters")  # fmt: skip
    describe += "".join(f"\n{series.name}: {note}" for note in series.notes)
    return Setup(model, task, describe)


def _report(cfg: ForecastRunConfig, s: Setup, best: Any, result: Any) -> dict[str, Any]:
    from rnnkit.tasks.forecast import format_report

    task, series, d = s.task, s.task.series, cfg.data
    report = task.report(s.model, cfg.baselines, tuple(cfg.arima_order))  # type: ignore[arg-type]
    out = Path(cfg.out)
    summary = {
        "series": {"name": series.name, "length": len(series), "columns": series.columns, "span": series.span,
                   "season": series.season, "notes": series.notes, "target": [series.columns[i] for i in
                   task.target_index]},
        "split": {"train": [0, task.a], "val": [task.a, task.b], "test": [task.b, len(series)]},
        "window": d.window, "horizon": d.horizon, "test_origins": len(task.at["test"]),
        "test_points": report["test_points"], "metrics": report["metrics"], "best_step": best.step,
        "steps": result.step, "train_time": round(result.train_time, 1), "config": to_dict(cfg),
    }  # fmt: skip
    write_json(out / "report.json", summary)
    plot_forecast(task, report, out / "forecast.png")
    summary["table"] = format_report(report["metrics"])
    return summary


def plot_forecast(task: Any, report: dict[str, Any], path: Path, context: int = 0) -> None:
    """Truth over the last part of the series and, on the test tail, H-step forecasts from every H-th origin
    (so consecutive forecast paths tile the tail) of the RNN and the best baseline by MASE."""
    import numpy as np
    from matplotlib.figure import Figure

    series, H = task.series, task.horizon
    metrics = report["metrics"]
    others = [k for k in metrics if k != "rnn"]
    shown = ["rnn"] + ([min(others, key=lambda k: metrics[k]["mase"])] if others else [])
    start = max(0, task.b - (context or 3 * max(task.window, len(series) - task.b)))
    t = np.arange(len(series))
    f = 0  # first target column
    col = task.target_index[f]
    fig = Figure(figsize=(10, 3.8))
    ax = fig.subplots()
    ax.plot(t[start:], series.values[start:, col], color="black", lw=1.2, label="truth")
    ax.axvline(task.b, color="gray", ls=":", lw=1)
    ax.text(task.b, ax.get_ylim()[1], " test", va="top", color="gray")
    for name, color in zip(shown, ("tab:red", "tab:blue")):
        fc = report["forecasts"][name]
        for i in range(0, len(report["origins"]), H):
            o = int(report["origins"][i])
            ax.plot(t[o : o + H], fc[i, :, f], color=color, lw=1.4, label=name if i == 0 else None)
    m = metrics["rnn"]
    ax.set_title(f"{series.name} [{series.columns[col]}]: {H}-step forecasts on the test tail "
                 f"(RNN MASE {m['mase']:.3f}; {shown[-1]} {metrics[shown[-1]]['mase']:.3f})")  # fmt: skip
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    def show(cfg: ForecastRunConfig, summary: dict[str, Any]) -> None:
        print(f"test tail of {summary['series']['name']}: {summary['test_origins']} origins x {summary['horizon']} "
              f"steps, best checkpoint of step {summary['best_step']} ({summary['train_time']}s training)")  # fmt: skip
        print(summary["table"])
        print(f"report: {cfg.out}/report.json | plot: {cfg.out}/forecast.png")

    return runner.main("rnnkit forecast", ForecastRunConfig, argv, run_forecast, show, presets=PRESETS,
                       description="Train an RNN forecaster and compare it with naive, seasonal-naive, Holt-Winters "
                       "and ARIMA forecasts on the held-out tail; every setting is a flag.")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
