"""Forecasting (many→many numeric): an RNN reads the last ``window`` steps of a series and forecasts the next
``horizon`` steps, trained by the one training loop (:func:`rnnkit.train.train`) through :class:`ForecastTask`.

Two multi-step strategies:

* ``direct``: the final hidden state emits all H steps at once, ŷ[t:t+H] = W_out h_t + b_out.
* ``recursive``: the model learns one-step-ahead prediction at every position (teacher forcing over
  window + horizon, a many→many loss); to forecast it feeds each prediction back as the next input.

With ``relative=True`` (the default) the model sees the window minus its last value and predicts changes from
that value, so a trending series (CO₂) does not push inputs outside the range seen in training.
Data are standardised with mean/std of the training part only (:class:`rnnkit.tasks.series.Scaler`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.rnn import CellName, check_cell
from rnnkit.tasks import baselines as bl
from rnnkit.tasks.layers import build_layer
from rnnkit.tasks.series import Scaler, Series, check_lengths, load_series, make_windows, origins, split_points

log = logging.getLogger(__name__)


@dataclass
class ForecastDataConfig:
    dataset: Literal["sunspots", "co2", "synthetic"] = "sunspots"
    """named series: sunspots (yearly 1700-2008), co2 (Mauna Loa, monthly means), synthetic (seasonal sine + trend)"""
    csv: str = ""
    """path of a CSV file to forecast instead of the named dataset"""
    columns: tuple[str, ...] = ()
    """CSV column(s) to read, comma separated (several = a multivariate series)"""
    target: tuple[str, ...] = ()
    """column(s) to forecast (default: every column); the others are inputs only"""
    fill: bool = False
    """fill missing CSV values by linear interpolation (otherwise they are an error)"""
    season: int = 0
    """seasonal period in steps for seasonal-naive, MASE and Holt-Winters (0: the dataset's own)"""
    window: int = 24
    """input window length (steps the model reads)"""
    horizon: int = 6
    """forecast horizon (steps predicted from each origin)"""
    val_frac: float = 0.15
    """fraction of the series (before the test tail) held out for validation, chronologically"""
    test_frac: float = 0.15
    """fraction of the series at its end held out for the test report"""
    seed: int = 0
    """seed of the synthetic series"""

    def __post_init__(self) -> None:
        if self.window < 1 or self.horizon < 1:
            raise ValueError(f"window and horizon must be >= 1, got {self.window} and {self.horizon}")
        if not (0 < self.val_frac < 1 and 0 < self.test_frac < 1 and self.val_frac + self.test_frac < 1):
            raise ValueError(
                f"val_frac and test_frac must be in (0, 1) with sum < 1, got {self.val_frac}, {self.test_frac}"
            )
        if self.csv and not self.columns:
            raise ValueError("--data.csv needs --data.columns NAME[,NAME...]: the column(s) to forecast")
        if self.season < 0:
            raise ValueError(f"season must be >= 0 (0 = the dataset's own), got {self.season}")

    def load(self) -> Series:
        return load_series(
            self.dataset, csv=self.csv or None, columns=self.columns, fill=self.fill, season=self.season or None,
            seed=self.seed,
        )  # fmt: skip


@dataclass
class ForecastModelConfig:
    cell: CellName = "lstm"
    """recurrent cell"""
    hidden_size: int = 64
    """hidden units per layer"""
    num_layers: int = 1
    """stacked layers"""
    dropout: float = 0.0
    """dropout between stacked layers"""
    strategy: Literal["direct", "recursive"] = "direct"
    """multi-step strategy: direct (emit H steps at once) or recursive (feed predictions back)"""
    relative: bool = True
    """inputs relative to the window's last value, outputs as changes from it"""
    engine: str = "auto"
    """rnnkit engine (auto, torch, reference, ...)"""

    def __post_init__(self) -> None:
        check_cell(self.cell, "model.cell")
        if self.hidden_size < 1 or self.num_layers < 1:
            raise ValueError(f"hidden_size and num_layers must be >= 1, got {self.hidden_size}, {self.num_layers}")


class Forecaster(nn.Module):
    """RNN forecaster on (B, window, F) standardised inputs -> (B, horizon, F_target) standardised forecasts."""

    def __init__(
        self,
        input_size: int,
        target_size: int,
        horizon: int,
        *,
        cell: str = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        strategy: str = "direct",
        relative: bool = True,
        target_index: list[int] | None = None,
        engine: str = "auto",
    ) -> None:
        super().__init__()
        if strategy not in ("direct", "recursive"):
            raise ValueError(f"strategy must be 'direct' or 'recursive', got {strategy!r}")
        if strategy == "recursive" and target_size != input_size:
            raise ValueError(
                "the recursive strategy feeds forecasts back as inputs, so every input column must be a target: "
                "drop --data.target or use --model.strategy direct"
            )
        self.input_size, self.target_size, self.horizon = input_size, target_size, horizon
        self.strategy, self.relative = strategy, relative
        self.target_index = list(range(target_size)) if target_index is None else list(target_index)
        self.rnn = build_layer(cell, input_size, hidden_size, num_layers, dropout, engine=engine)
        out_steps = horizon if strategy == "direct" else 1
        self.head = nn.Linear(self.rnn.output_size, out_steps * target_size)

    def _reference(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The value inputs and outputs are taken relative to: the window's last step (or zero)."""
        last = x[:, -1:, :]  # (B, 1, F)
        if not self.relative:
            last = torch.zeros_like(last)
        return last, last[..., self.target_index]

    def forward(self, x: Tensor) -> Tensor:
        """Forecast ``horizon`` steps after each window: (B, W, F) -> (B, H, F_target)."""
        ref_in, ref_out = self._reference(x)
        out, state = self.rnn(x - ref_in)  # (B, W, S)
        if self.strategy == "direct":
            return self.head(out[:, -1]).view(-1, self.horizon, self.target_size) + ref_out
        # recursive: feed each one-step prediction back, carrying the state
        step = self.head(out[:, -1:])  # (B, 1, F) relative to ref
        preds = [step]
        for _ in range(self.horizon - 1):
            out, state = self.rnn(step, state)
            step = self.head(out)
            preds.append(step)
        return torch.cat(preds, dim=1) + ref_out

    def teacher_forced(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Recursive strategy's training view: one-step predictions along window + horizon and their targets.

        Inputs z = [x, y[:-1]] (B, W+H−1, F); prediction at position i is of z[i+1] (targets [x[1:], y]).
        """
        ref_in, _ = self._reference(x)
        z = torch.cat([x, y[:, :-1]], dim=1) - ref_in  # (B, W+H-1, F)
        out, _ = self.rnn(z)
        pred = self.head(out)  # (B, W+H-1, F)
        target = torch.cat([x[:, 1:], y], dim=1) - ref_in
        return pred, target


class ForecastTask:
    """Windows of a standardised series for :func:`rnnkit.train.train`: MSE loss in standardised units.

    Parts are chronological: train [0, a), validation [a, b), test [b, N). A forecast from origin t reads
    y[t−window:t]; its targets y[t:t+horizon] always lie inside one part (see :func:`origins`).
    """

    name = "forecast"
    unit = "windows"  # what loss() counts, for throughput

    def __init__(
        self,
        series: Series,
        window: int,
        horizon: int,
        *,
        target: tuple[str, ...] = (),
        val_frac: float = 0.15,
        test_frac: float = 0.15,
        batch_size: int = 32,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.series, self.window, self.horizon, self.batch_size, self.dtype = series, window, horizon, batch_size, dtype
        unknown = [c for c in target if c not in series.columns]
        if unknown:
            raise ValueError(f"target column {unknown[0]!r} is not among the series' columns {series.columns}")
        self.target_index = [series.columns.index(c) for c in target] if target else list(range(len(series.columns)))
        n = len(series)
        self.a, self.b = split_points(n, val_frac, test_frac)
        check_lengths(n, self.a, self.b, window, horizon, series.name)
        self.scaler = Scaler.fit(series.values[: self.a])  # training part only: no peeking at val/test
        self.scaled = self.scaler.transform(series.values)  # (N, F)
        self.at = {
            "train": origins(0, self.a, window, horizon),
            "val": origins(self.a, self.b, window, horizon),
            "test": origins(self.b, n, window, horizon),
        }
        self._x, self._y = make_windows(self.scaled, self.at["train"], window, horizon)
        self.x_train = torch.as_tensor(self._x, dtype=dtype)  # (N, W, F)
        self.y_train = torch.as_tensor(self._y, dtype=dtype)  # (N, H, F)

    # --- the Task protocol ----------------------------------------------------------------------
    def train_batches(self, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        n = self.x_train.shape[0]
        while True:
            idx = torch.randint(n, (min(self.batch_size, n),), generator=generator)
            yield self.x_train[idx], self.y_train[idx]

    def loss(self, model: Forecaster, batch: tuple[Tensor, Tensor], state: Any) -> tuple[Tensor, None, int]:
        x, y = batch
        if model.strategy == "recursive":
            pred, target = model.teacher_forced(x, y)
        else:
            pred, target = model(x), y[..., self.target_index]
        return torch.mean((pred - target) ** 2), None, x.shape[0]

    @torch.no_grad()
    def evaluate(self, model: Forecaster) -> dict[str, float]:
        """Validation: MSE of free-running H-step forecasts (standardised units) as ``loss``, MAE/RMSE in data units."""
        pred, truth = self.forecast(model, "val", scaled=True)
        out = {"loss": float(np.mean((pred - truth) ** 2))}
        cols = self.target_index
        out.update(
            bl.scores(self.scaler.inverse(truth, cols), self.scaler.inverse(pred, cols), self.mase_scale())
        )  # fmt: skip
        return out

    def metadata(self) -> dict[str, Any]:
        s = self.series
        return {
            "task": self.name,
            "series": {
                "name": s.name,
                "columns": s.columns,
                "length": len(s),
                "season": s.season,
                "span": list(s.span),
            },
            "fingerprint": s.fingerprint(),
            "notes": s.notes,
            "window": self.window,
            "horizon": self.horizon,
            "target_index": self.target_index,
            "split": {"train_end": self.a, "val_end": self.b},
            "scaler": self.scaler.to_dict(),
        }

    # --- forecasting and the test report ----------------------------------------------------------
    def build_model(self, cfg: ForecastModelConfig) -> Forecaster:
        return Forecaster(
            len(self.series.columns), len(self.target_index), self.horizon, cell=cfg.cell,
            hidden_size=cfg.hidden_size, num_layers=cfg.num_layers, dropout=cfg.dropout, strategy=cfg.strategy,
            relative=cfg.relative, target_index=self.target_index, engine=cfg.engine,
        ).to(self.dtype)  # fmt: skip

    def mase_scale(self) -> np.ndarray:
        return bl.mase_scale(self.series.values[: self.a][:, self.target_index], self.series.season)

    @torch.no_grad()
    def forecast(self, model: Forecaster, part: str = "test", *, scaled: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Forecasts and truths (N, H, F_target) at every origin of ``part``, in data units unless ``scaled``."""
        was_training = model.training
        model.eval()
        x, y = make_windows(self.scaled, self.at[part], self.window, self.horizon)
        device = next(model.parameters()).device
        pred = model(torch.as_tensor(x, dtype=self.dtype, device=device)).double().cpu().numpy()
        model.train(was_training)
        truth = y[..., self.target_index]
        if scaled:
            return pred, truth
        cols = self.target_index
        return self.scaler.inverse(pred, cols), self.scaler.inverse(truth, cols)

    def report(
        self,
        model: Forecaster,
        baselines: tuple[str, ...] = ("naive", "seasonal-naive", "holt-winters", "arima"),
        arima_order: tuple[int, int, int] = (2, 1, 1),
    ) -> dict[str, Any]:
        """Test-tail MAE/RMSE/MASE of the model and of each baseline at the same origins, and the forecasts."""
        pred, truth = self.forecast(model, "test")
        y = self.series.values[:, self.target_index]
        at = self.at["test"]
        fc = {"rnn": pred}
        fc.update(bl.baseline_forecasts(y, self.a, at, self.horizon, self.series.season, baselines, arima_order))
        scale = self.mase_scale()
        return {
            "metrics": {name: bl.scores(truth, p, scale) for name, p in fc.items()},
            "forecasts": fc,
            "truth": truth,
            "origins": at,
            "test_points": int(truth.shape[0] * truth.shape[1]),
        }


def format_report(metrics: dict[str, dict[str, float]]) -> str:
    """A plain-text table, best MASE first marked with ``*``."""
    best = min(metrics, key=lambda k: metrics[k]["mase"])
    width = max(len(k) for k in metrics)
    lines = [f"{'model'.ljust(width)}  {'MAE':>10} {'RMSE':>10} {'MASE':>7}"]
    for name, m in sorted(metrics.items(), key=lambda kv: kv[1]["mase"]):
        mark = " *" if name == best else ""
        lines.append(f"{name.ljust(width)}  {m['mae']:>10.4g} {m['rmse']:>10.4g} {m['mase']:>7.3f}{mark}")
    return "\n".join(lines)
