"""Time series for forecasting: loading (offline datasets, CSV columns, a synthetic generator), chronological
splits, standardisation fitted on the training part only, and windowing into (input window, horizon) pairs.

Everything here is numpy float64; :mod:`rnnkit.tasks.forecast` turns it into tensors. Errors are one-line
``ValueError`` s that name the problem and the fix.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: datasets that ship offline with installed packages (statsmodels) or are generated
DATASETS = ("sunspots", "co2", "synthetic")


@dataclass
class Series:
    """A (N, F) float64 array of observations in time order, with its column names and provenance."""

    values: np.ndarray
    columns: list[str]
    name: str
    #: seasonal period in steps (1 = none); drives seasonal-naive, MASE's scale and Holt-Winters
    season: int = 1
    #: first and last time stamp as text, for reports ("1700", "2001-12")
    span: tuple[str, str] = ("0", "0")
    #: how the raw data was turned into ``values`` (resampling, filling), in words
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.values.shape[0]

    def fingerprint(self) -> str:
        """sha1 of the values, so a checkpoint can tell whether it is evaluated on the series it was trained on."""
        return hashlib.sha1(np.ascontiguousarray(self.values, dtype=np.float64).tobytes()).hexdigest()


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------
def synthetic_series(
    n: int = 480, season: int = 12, trend: float = 0.02, noise: float = 0.2, seed: int = 0, features: int = 1
) -> Series:
    """Noisy seasonal sine plus a linear trend: y_t = sin(2πt/season + φ_f) + trend·t + noise·ε_t.

    With ``features > 1`` each column has its own phase φ_f = f·π/4 (a multivariate series whose
    columns help predict each other).
    """
    if n < 2 or season < 1:
        raise ValueError(f"synthetic series needs n >= 2 and season >= 1, got n={n}, season={season}")
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)[:, None]  # (N, 1)
    phase = np.arange(features, dtype=np.float64)[None, :] * math.pi / 4  # (1, F)
    y = np.sin(2 * math.pi * t / season + phase) + trend * t + noise * rng.standard_normal((n, features))
    cols = ["y"] if features == 1 else [f"y{f}" for f in range(features)]
    return Series(y, cols, "synthetic", season, ("0", str(n - 1)), [f"seed {seed}, noise {noise}, trend {trend}"])


def load_sunspots() -> Series:
    """Yearly mean sunspot numbers 1700–2008 (statsmodels' copy of SIDC data); the solar cycle is ~11 years."""
    import statsmodels.api as sm

    df = sm.datasets.sunspots.load_pandas().data
    values = df["SUNACTIVITY"].to_numpy(dtype=np.float64)[:, None]
    years = df["YEAR"].astype(int)
    return Series(values, ["SUNACTIVITY"], "sunspots", 11, (str(years.iloc[0]), str(years.iloc[-1])))


def load_co2() -> Series:
    """Mauna Loa CO₂ (ppm), statsmodels' weekly series 1958–2001, as monthly means.

    The weekly series has missing weeks (NaN). We average the weeks available in each calendar month
    (a month's mean of its observed weeks), then fill months with no observation at all by linear
    interpolation in time; both counts are recorded in ``notes``. Monthly data has an exact
    12-step season, which weekly data (52.18 weeks a year) lacks.
    """
    import statsmodels.api as sm

    weekly = sm.datasets.co2.load_pandas().data["co2"]
    missing_weeks = int(weekly.isna().sum())
    monthly = weekly.resample("MS").mean()
    empty_months = int(monthly.isna().sum())
    monthly = monthly.interpolate(method="time")
    values = monthly.to_numpy(dtype=np.float64)[:, None]
    notes = [
        f"weekly -> monthly means of the observed weeks ({missing_weeks} of {len(weekly)} weeks missing)",
        f"{empty_months} month(s) with no observation filled by linear interpolation",
    ]
    span = (monthly.index[0].strftime("%Y-%m"), monthly.index[-1].strftime("%Y-%m"))
    return Series(values, ["co2"], "co2", 12, span, notes)


def load_csv(path: str | Path, columns: tuple[str, ...], *, fill: bool = False, season: int = 1) -> Series:
    """Numeric ``columns`` of a CSV file, in file order. NaNs are an error unless ``fill`` (linear interpolation)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"CSV file {str(path)!r} does not exist")
    if not columns:
        raise ValueError(f"name the column(s) to forecast in {path.name}: --data.columns NAME[,NAME...]")
    try:
        df = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise ValueError(f"could not read {str(path)!r} as CSV: {str(e).splitlines()[0]}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        have = ", ".join(map(str, df.columns[:12]))
        raise ValueError(f"{path.name} has no column {missing[0]!r}; its columns are: {have}")
    out = []
    notes = []
    for c in columns:
        col = pd.to_numeric(df[c], errors="coerce")
        bad = col.isna() & df[c].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"column {c!r} of {path.name} is not numeric: row {row + 2} holds {df[c].iloc[row]!r}")
        n_nan = int(col.isna().sum())
        if n_nan:
            if not fill:
                raise ValueError(
                    f"column {c!r} of {path.name} has {n_nan} missing value(s); "
                    "fill them yourself or pass --data.fill true (linear interpolation)"
                )
            col = col.interpolate(method="linear", limit_direction="both")
            notes.append(f"{c}: {n_nan} missing value(s) filled by linear interpolation")
        out.append(col.to_numpy(dtype=np.float64))
    values = np.stack(out, axis=1)
    return Series(values, list(columns), path.name, season, ("row 0", f"row {len(values) - 1}"), notes)


def load_series(
    dataset: str = "sunspots",
    *,
    csv: str | None = None,
    columns: tuple[str, ...] = (),
    fill: bool = False,
    season: int | None = None,
    seed: int = 0,
) -> Series:
    """One entry point: a named dataset, or ``csv`` + ``columns``; ``season`` overrides the dataset's period."""
    if csv:
        series = load_csv(csv, columns, fill=fill, season=season or 1)
    elif dataset == "sunspots":
        series = load_sunspots()
    elif dataset == "co2":
        series = load_co2()
    elif dataset == "synthetic":
        series = synthetic_series(season=season or 12, seed=seed)
    else:
        raise ValueError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)} or pass --data.csv PATH")
    if season is not None:
        series.season = season
    check_finite(series)
    return series


def check_finite(series: Series) -> None:
    bad = ~np.isfinite(series.values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{series.name}: {int(bad.sum())} missing or infinite value(s), first at row {row} of "
            f"column {series.columns[col]!r}; fill them (--data.fill true interpolates) or clean the data"
        )


# ------------------------------------------------------------------------------------------------
# Splitting, scaling, windowing
# ------------------------------------------------------------------------------------------------
def split_points(n: int, val_frac: float, test_frac: float) -> tuple[int, int]:
    """Chronological split of ``n`` steps: train = [0, a), val = [a, b), test = [b, n). Returns (a, b)."""
    n_test = int(round(n * test_frac))
    n_val = int(round(n * val_frac))
    b = n - n_test
    a = b - n_val
    return a, b


@dataclass
class Scaler:
    """Standardisation per column, x' = (x − mean) / std, with mean and std from the training part only."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, train_values: np.ndarray) -> Scaler:
        mean = train_values.mean(axis=0)
        std = train_values.std(axis=0)
        std = np.where(std > 0, std, 1.0)  # a constant column stays constant, not NaN
        return cls(mean, std)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def inverse(self, x: np.ndarray, cols: list[int] | None = None) -> np.ndarray:
        """Back to data units; ``cols`` picks the scaler columns that ``x``'s last axis holds."""
        mean, std = (self.mean, self.std) if cols is None else (self.mean[cols], self.std[cols])
        return x * std + mean

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scaler:
        return cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64))


def origins(start: int, stop: int, window: int, horizon: int) -> np.ndarray:
    """Forecast origins t whose targets y[t : t+horizon] lie in [start, stop) and whose input y[t−window : t] exists.

    The input window may reach back into earlier parts (history is known at forecast time); the targets never
    leave their part, so training targets never touch validation or test data.
    """
    first = max(start, window)
    last = stop - horizon  # inclusive
    return np.arange(first, last + 1) if last >= first else np.arange(0)


def make_windows(values: np.ndarray, at: np.ndarray, window: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (N, window, F) = values[t−window : t] and targets (N, horizon, F) = values[t : t+horizon], t in ``at``."""
    idx_in = at[:, None] + np.arange(-window, 0)[None, :]  # (N, window)
    idx_out = at[:, None] + np.arange(horizon)[None, :]  # (N, horizon)
    return values[idx_in], values[idx_out]


def check_lengths(n: int, a: int, b: int, window: int, horizon: int, name: str) -> None:
    """One clear line when a part is too short to hold a single (window, horizon) pair."""
    if n < window + horizon:
        raise ValueError(
            f"{name} has {n} steps, fewer than window + horizon = {window} + {horizon}: "
            "use a smaller --data.window/--data.horizon or a longer series"
        )
    for part, (lo, hi) in (("training", (0, a)), ("validation", (a, b)), ("test", (b, n))):
        if len(origins(lo, hi, window, horizon)) == 0:
            raise ValueError(
                f"{name}: the {part} part (steps {lo}..{hi - 1} of {n}) holds no full forecast of horizon {horizon} "
                f"after a window of {window}: shrink --data.window/--data.horizon or change --data.val_frac/test_frac"
            )
