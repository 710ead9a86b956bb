"""ARIMA orders for the forecasting baselines: AIC of each candidate fitted on the training part (never the test
tail) of sunspots and CO₂, and the test-tail scores of a few orders at the presets' origins (docs/results.md).

Run from the repository root: ``PYTHONPATH=src python benchmarks/arima_aic.py`` (about a minute on 2 cores).
"""

import itertools
import warnings

from statsmodels.tsa.statespace.sarimax import SARIMAX
from threadpoolctl import threadpool_limits

from rnnkit.tasks import baselines as bl
from rnnkit.tasks.series import load_co2, load_sunspots, make_windows, origins, split_points

warnings.simplefilter("ignore")  # after importing statsmodels, which sets its own filters
for series, window, horizon in ((load_sunspots(), 24, 6), (load_co2(), 36, 12)):
    n = len(series)
    a, b = split_points(n, 0.15, 0.15)
    aic = []
    with threadpool_limits(1):
        for p, d, q in itertools.product((1, 2, 3, 6, 9), (0, 1), (0, 1)):
            fit = SARIMAX(series.values[:a, 0], order=(p, d, q), trend="c" if d == 0 else "n").fit(disp=False)
            aic.append((round(float(fit.aic), 1), (p, d, q)))
    aic.sort()
    print(f"{series.name}: lowest AIC on the training part: {aic[:3]}")
    at = origins(b, n, window, horizon)
    truth = make_windows(series.values, at, window, horizon)[1]
    scale = bl.mase_scale(series.values[:a], series.season)
    for order in ((2, 1, 1), aic[0][1], (9, 0, 0), (9, 1, 0)):
        pred = bl.classical("arima", series.values, a, at, horizon, series.season, order)
        s = bl.scores(truth, pred, scale)
        print(f"  ARIMA{order}: test MAE {s['mae']:.3f} RMSE {s['rmse']:.3f} MASE {s['mase']:.3f}")
