"""Recursive forecasting on real data: Mauna Loa CO₂ (statsmodels' weekly series as monthly means), a GRU
trained one step ahead at every position (teacher forcing), then fed its own predictions for 12 months.

300 training steps (seconds); asserts the 12-month forecasts on the held-out tail have a lower RMSE than the
naive forecast (the last observed value). Run: ``python examples/forecast_recursive_co2.py``.
"""

import tempfile

from rnnkit.commands.forecast import ForecastRunConfig, run_forecast
from rnnkit.tasks.forecast import ForecastDataConfig, ForecastModelConfig

with tempfile.TemporaryDirectory() as out:
    cfg = ForecastRunConfig(
        out=out, steps=300, max_time=0, eval_every=100, plot=False, baselines=("naive", "seasonal-naive"),
        data=ForecastDataConfig(dataset="co2", window=36, horizon=12),
        model=ForecastModelConfig(cell="gru", hidden_size=32, strategy="recursive"),
    )  # fmt: skip
    report = run_forecast(cfg)

print("\n".join(report["series"]["notes"]))
print(report["table"])
m = report["metrics"]
assert m["rnn"]["rmse"] < m["naive"]["rmse"], "the GRU should beat the last-value forecast"
print(f"OK: GRU RMSE {m['rnn']['rmse']:.3f} ppm < naive {m['naive']['rmse']:.3f} ppm")
