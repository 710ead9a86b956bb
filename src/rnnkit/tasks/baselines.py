"""Forecast metrics (MAE, RMSE, MASE) and the baselines an RNN forecaster must beat, at the same test points.

Every forecaster here answers the same question as the RNN: from origin ``t`` (knowing y[:t]) predict
y[t : t+H]. ``y`` is (N, F) in data units; ``at`` holds the origins; forecasts are (len(at), H, F).
The classical models are fitted once on the training part; at each origin their state is updated with
the observations up to that origin, parameters fixed (rolling-origin evaluation, no refitting).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------
def mae(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean absolute error: mean |y − ŷ|."""
    return float(np.mean(np.abs(truth - pred)))


def rmse(truth: np.ndarray, pred: np.ndarray) -> float:
    """Root mean squared error: sqrt(mean (y − ŷ)²)."""
    return float(np.sqrt(np.mean((truth - pred) ** 2)))


def mase_scale(train: np.ndarray, season: int = 1) -> np.ndarray:
    """MASE's denominator per column: the in-sample MAE of the seasonal-naive forecast on the training part,
    mean |y_t − y_{t−m}| (Hyndman & Koehler 2006; m = 1 is the plain naive forecast)."""
    m = season if len(train) > season else 1
    scale = np.mean(np.abs(train[m:] - train[:-m]), axis=0)
    return np.where(scale > 0, scale, 1.0)  # (F,)


def mase(truth: np.ndarray, pred: np.ndarray, scale: np.ndarray) -> float:
    """Mean absolute scaled error: MAE / scale, per column (last axis), averaged over columns.
    Below 1 means better than the in-sample seasonal-naive forecast."""
    err = np.abs(truth - pred).reshape(-1, truth.shape[-1]).mean(axis=0)  # (F,)
    return float(np.mean(err / scale))


def scores(truth: np.ndarray, pred: np.ndarray, scale: np.ndarray) -> dict[str, float]:
    """MAE, RMSE (data units) and MASE of forecasts ``pred`` against ``truth``, both (N, H, F)."""
    return {"mae": mae(truth, pred), "rmse": rmse(truth, pred), "mase": mase(truth, pred, scale)}


# ------------------------------------------------------------------------------------------------
# Baselines
# ------------------------------------------------------------------------------------------------
def naive(y: np.ndarray, at: np.ndarray, horizon: int) -> np.ndarray:
    """Last value carried forward: ŷ[t+h] = y[t−1]."""
    return np.repeat(y[at - 1][:, None, :], horizon, axis=1)


def seasonal_naive(y: np.ndarray, at: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Value one season ago: ŷ[t+h] = y[t+h − m·(⌊h/m⌋+1)], the latest observed value at the same phase."""
    h = np.arange(horizon)
    lag = season * (h // season + 1)  # (H,), ≥ h+1 so the value is always observed
    return y[at[:, None] + h[None, :] - lag[None, :]]


def _classical(kind: str, train: np.ndarray, season: int, order: tuple[int, int, int]):
    from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    if kind == "holt-winters":
        # additive trend and (when there is a season) additive seasonality, parameters by maximum likelihood
        return ExponentialSmoothing(
            train, trend=True, seasonal=season if season > 1 else None, initialization_method="estimated"
        )
    if kind == "arima":
        return SARIMAX(train, order=order, trend="c" if order[1] == 0 else "n")
    raise ValueError(f"unknown classical model {kind!r}: choose holt-winters or arima")


def classical(
    kind: str,
    y: np.ndarray,
    train_end: int,
    at: np.ndarray,
    horizon: int,
    season: int = 1,
    order: tuple[int, int, int] = (2, 1, 1),
) -> np.ndarray:
    """Holt-Winters (state-space exponential smoothing) or ARIMA ``order``, fitted on y[:train_end] per column.

    At each origin t the fitted model is filtered over y[:t] with its parameters fixed and forecasts H
    steps (``dynamic`` prediction from t), exactly the information the RNN gets.
    """
    from threadpoolctl import threadpool_limits

    out = np.empty((len(at), horizon, y.shape[1]))
    for f in range(y.shape[1]):
        with warnings.catch_warnings(), threadpool_limits(1):  # tiny matrices: BLAS threads only contend
            # statsmodels warns about convergence and frequency on plain arrays; the numbers speak for the fit
            warnings.simplefilter("ignore")
            fit = _classical(kind, y[:train_end, f], season, order).fit(disp=False)
            full = fit.apply(y[:, f])
            for i, t in enumerate(at):
                pred = full.get_prediction(start=int(t), end=int(t) + horizon - 1, dynamic=True)
                out[i, :, f] = pred.predicted_mean
    return out


def baseline_forecasts(
    y: np.ndarray,
    train_end: int,
    at: np.ndarray,
    horizon: int,
    season: int,
    models: tuple[str, ...] = ("naive", "seasonal-naive", "holt-winters", "arima"),
    order: tuple[int, int, int] = (2, 1, 1),
) -> dict[str, np.ndarray]:
    """Forecasts (len(at), H, F) of each named baseline at origins ``at``."""
    out: dict[str, np.ndarray] = {}
    for name in models:
        if name == "naive":
            out[name] = naive(y, at, horizon)
        elif name == "seasonal-naive":
            out[name] = seasonal_naive(y, at, horizon, season)
        elif name in ("holt-winters", "arima"):
            label = name if name == "holt-winters" else f"arima{order}".replace(" ", "")
            out[label] = classical(name, y, train_end, at, horizon, season, order)
        else:
            raise ValueError(f"unknown baseline {name!r}: choose from naive, seasonal-naive, holt-winters, arima")
    return out
