"""Forecasting: windowing, scaling without leakage, metrics, baselines, the model's two strategies, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from rnnkit.tasks import baselines as bl
from rnnkit.tasks.forecast import Forecaster, ForecastModelConfig, ForecastTask, format_report
from rnnkit.tasks.series import (
    Scaler,
    Series,
    load_co2,
    load_csv,
    load_series,
    load_sunspots,
    make_windows,
    origins,
    split_points,
    synthetic_series,
)


def small_series(n: int = 60, features: int = 1) -> Series:
    return synthetic_series(n=n, season=6, noise=0.1, features=features)


# --- windowing and splits -----------------------------------------------------------------------
def test_windows_hold_the_right_values():
    values = np.arange(20, dtype=np.float64)[:, None] * np.array([[1.0, 10.0]])  # (20, 2)
    at = np.array([3, 7])
    x, y = make_windows(values, at, window=3, horizon=2)
    assert x.shape == (2, 3, 2) and y.shape == (2, 2, 2)
    np.testing.assert_array_equal(x[1, :, 0], [4, 5, 6])
    np.testing.assert_array_equal(y[1, :, 1], [70, 80])


def test_origins_keep_targets_inside_their_part():
    a, b = split_points(100, 0.2, 0.1)
    assert (a, b) == (70, 90)
    for lo, hi in ((0, a), (a, b), (b, 100)):
        at = origins(lo, hi, window=5, horizon=4)
        assert at.min() >= max(lo, 5) and at.max() + 4 <= hi
        assert len(at) == hi - max(lo, 5) - 4 + 1


def test_scaler_is_fitted_on_the_training_part_only():
    s = small_series(80)
    task = ForecastTask(s, 8, 3, val_frac=0.2, test_frac=0.2)
    np.testing.assert_allclose(task.scaler.mean, s.values[: task.a].mean(0))
    # corrupt everything after the training part: scaler and training windows must not change
    s2 = Series(s.values.copy(), s.columns, s.name, s.season)
    s2.values[task.a :] = 1e6
    task2 = ForecastTask(s2, 8, 3, val_frac=0.2, test_frac=0.2)
    np.testing.assert_array_equal(task.scaler.mean, task2.scaler.mean)
    np.testing.assert_array_equal(task.scaler.std, task2.scaler.std)
    assert torch.equal(task.x_train, task2.x_train) and torch.equal(task.y_train, task2.y_train)


def test_scaler_roundtrip_and_constant_column():
    v = np.array([[1.0, 5.0], [3.0, 5.0]])
    sc = Scaler.fit(v)
    np.testing.assert_allclose(sc.transform(v), [[-1, 0], [1, 0]])
    np.testing.assert_allclose(sc.inverse(sc.transform(v)), v)
    sc2 = Scaler.from_dict(sc.to_dict())
    np.testing.assert_array_equal(sc2.std, sc.std)


# --- metrics and baselines: golden values ---------------------------------------------------------
def test_metrics_golden_values():
    truth = np.array([[[1.0], [2.0]], [[3.0], [4.0]]])  # (2, 2, 1)
    pred = np.array([[[2.0], [2.0]], [[1.0], [4.0]]])  # errors 1, 0, -2, 0
    assert bl.mae(truth, pred) == pytest.approx(0.75)
    assert bl.rmse(truth, pred) == pytest.approx(np.sqrt(5 / 4))
    train = np.array([[0.0], [1.0], [3.0], [6.0]])  # |diffs| at lag 1: 1, 2, 3 -> 2; at lag 2: 3, 5 -> 4
    np.testing.assert_allclose(bl.mase_scale(train, 1), [2.0])
    np.testing.assert_allclose(bl.mase_scale(train, 2), [4.0])
    assert bl.mase(truth, pred, bl.mase_scale(train, 2)) == pytest.approx(0.75 / 4)


def test_naive_and_seasonal_naive_golden_values():
    y = np.arange(30, dtype=np.float64)[:, None]  # y_t = t
    at = np.array([10, 20])
    np.testing.assert_array_equal(bl.naive(y, at, 3)[:, :, 0], [[9, 9, 9], [19, 19, 19]])
    # season 4: h = 0..5 -> lags 4,4,4,4,8,8
    np.testing.assert_array_equal(bl.seasonal_naive(y, at, 6, 4)[0, :, 0], [6, 7, 8, 9, 6, 7])
    np.testing.assert_array_equal(bl.seasonal_naive(y, at, 2, 1), bl.naive(y, at, 2))


@pytest.mark.filterwarnings("ignore::Warning")  # statsmodels convergence chatter on a tiny series
def test_classical_forecasts_use_only_the_past():
    s = synthetic_series(n=96, season=12, noise=0.1)
    y, at = s.values, np.array([80, 85])
    pred = bl.classical("holt-winters", y, 72, at, 4, season=12)
    # the same forecast from a model whose data stops at the origin: the future cannot leak in
    from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ExponentialSmoothing(y[:72, 0], trend=True, seasonal=12, initialization_method="estimated").fit(
            disp=False
        )
        direct = fit.apply(y[:85, 0]).forecast(4)
    np.testing.assert_allclose(pred[1, :, 0], direct, rtol=1e-8)
    # on a clean seasonal series Holt-Winters beats the naive forecast by far
    truth = make_windows(y, at, 1, 4)[1]
    assert bl.mae(truth, pred) < 0.5 * bl.mae(truth, bl.naive(y, at, 4))


def test_report_table_marks_the_best():
    text = format_report({"a": {"mae": 1, "rmse": 2, "mase": 0.5}, "b": {"mae": 2, "rmse": 3, "mase": 0.9}})
    assert text.splitlines()[1].startswith("a") and text.splitlines()[1].endswith("*")


# --- model -------------------------------------------------------------------------------------------
def test_direct_and_recursive_shapes():
    x = torch.randn(5, 10, 2, dtype=torch.float64)
    for strategy in ("direct", "recursive"):
        m = Forecaster(2, 2, 4, hidden_size=8, strategy=strategy).double()
        assert m(x).shape == (5, 4, 2)


def test_recursive_forecast_equals_teacher_forcing_on_its_own_predictions():
    torch.manual_seed(0)
    m = Forecaster(1, 1, 5, cell="gru", hidden_size=8, strategy="recursive").double()
    x = torch.randn(3, 7, 1, dtype=torch.float64)
    fc = m(x)
    pred, _ = m.teacher_forced(x, fc)  # fed its own forecasts, teacher forcing reproduces them
    torch.testing.assert_close(pred[:, -5:] + x[:, -1:], fc)


@pytest.mark.parametrize("strategy", ["direct", "recursive"])
def test_relative_forecasts_shift_with_the_input(strategy):
    torch.manual_seed(0)
    m = Forecaster(2, 2, 3, hidden_size=8, strategy=strategy, relative=True).double()
    x = torch.randn(4, 6, 2, dtype=torch.float64)
    torch.testing.assert_close(m(x + 3.0), m(x) + 3.0)


def test_loss_gradients_reach_every_parameter():
    task = ForecastTask(small_series(), 8, 3, val_frac=0.2, test_frac=0.2, dtype=torch.float64)
    for strategy in ("direct", "recursive"):
        m = task.build_model(ForecastModelConfig(hidden_size=8, strategy=strategy))
        batch = next(task.train_batches(torch.Generator().manual_seed(0)))
        loss, state, n = task.loss(m, batch, None)
        loss.backward()
        assert state is None and n == batch[0].shape[0]
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


def test_evaluate_and_report_cover_the_same_points():
    task = ForecastTask(small_series(80), 8, 3, val_frac=0.2, test_frac=0.2, dtype=torch.float64)
    m = task.build_model(ForecastModelConfig(hidden_size=8))
    ev = task.evaluate(m)
    assert {"loss", "mae", "rmse", "mase"} <= set(ev)
    r = task.report(m, baselines=("naive", "seasonal-naive"))
    n_origins = 16 - 3 + 1
    assert r["test_points"] == n_origins * 3 and set(r["metrics"]) == {"rnn", "naive", "seasonal-naive"}
    assert r["forecasts"]["naive"].shape == r["truth"].shape == (n_origins, 3, 1)


def test_multivariate_target_subset():
    s = small_series(features=3)
    task = ForecastTask(s, 8, 2, target=("y2",), val_frac=0.2, test_frac=0.2, dtype=torch.float64)
    m = task.build_model(ForecastModelConfig(hidden_size=8))
    assert m(task.x_train[:4]).shape == (4, 2, 1)
    with pytest.raises(ValueError, match="recursive strategy"):
        task.build_model(ForecastModelConfig(strategy="recursive"))


# --- datasets --------------------------------------------------------------------------------------
def test_real_datasets_load_without_gaps():
    sun = load_sunspots()
    assert len(sun) == 309 and sun.season == 11 and sun.span == ("1700", "2008")
    co2 = load_co2()
    assert np.isfinite(co2.values).all() and co2.season == 12
    assert co2.span == ("1958-03", "2001-12") and len(co2) == 526
    assert any("interpolation" in n for n in co2.notes)


# --- bad input: one clear line --------------------------------------------------------------------
def test_bad_csv_inputs(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("date,sales,label\n1,3.0,a\n2,,b\n3,5.0,c\n")
    with pytest.raises(ValueError, match="has no column 'price'; its columns are: date, sales, label"):
        load_csv(p, ("price",))
    with pytest.raises(ValueError, match="column 'label' of s.csv is not numeric: row 2 holds 'a'"):
        load_csv(p, ("label",))
    with pytest.raises(ValueError, match="1 missing value.*--data.fill true"):
        load_csv(p, ("sales",))
    np.testing.assert_allclose(load_csv(p, ("sales",), fill=True).values[:, 0], [3, 4, 5])
    with pytest.raises(ValueError, match="does not exist"):
        load_csv(tmp_path / "nope.csv", ("sales",))


def test_series_too_short():
    s = small_series(20)
    with pytest.raises(ValueError, match="fewer than window \\+ horizon = 16 \\+ 6"):
        ForecastTask(s, 16, 6)
    with pytest.raises(ValueError, match="the test part .* holds no full forecast"):
        ForecastTask(small_series(40), 4, 6, val_frac=0.3, test_frac=0.1)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_series("nope")


# --- end to end through the one training loop, and the command line ---------------------------------
def _tiny_run(out, **over):
    from rnnkit.commands.forecast import ForecastRunConfig
    from rnnkit.config import from_dict

    base = {"out": str(out), "steps": 300, "max_time": 0.0, "eval_every": 100, "log_every": 100, "plot": False,
            "baselines": ("naive", "seasonal-naive"), "data": {"dataset": "synthetic", "window": 24, "horizon": 6},
            "model": {"hidden_size": 16}}  # fmt: skip
    for k, v in over.items():
        base.setdefault(k, {}).update(v) if isinstance(v, dict) else base.__setitem__(k, v)
    return from_dict(ForecastRunConfig, base)


@pytest.mark.parametrize("strategy", ["direct", "recursive"])
def test_tiny_run_beats_the_naive_forecast(tmp_path, strategy):
    from rnnkit.commands.forecast import run_forecast

    s = run_forecast(_tiny_run(tmp_path / strategy, model={"strategy": strategy}))
    m = s["metrics"]
    assert m["rnn"]["rmse"] < 0.5 * m["naive"]["rmse"]
    assert (tmp_path / strategy / "report.json").is_file() and (tmp_path / strategy / "forecast.png").is_file()
    assert s["test_points"] == s["test_origins"] * 6 and s["best_step"] in (100, 200, 300)


def _cli(*args):
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "rnnkit", "forecast", *args], capture_output=True, text=True, env=env)


def test_cli_bad_input_is_one_line_and_nonzero(tmp_path, capsys):
    from rnnkit.commands.forecast import main

    p = tmp_path / "s.csv"
    p.write_text("t,v,w\n" + "".join(f"{i},{i % 7},x\n" for i in range(30)))
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    cases = [
        (["--data.csv", str(p), "--data.columns", "price"], "has no column 'price'"),
        (["--data.csv", str(p), "--data.columns", "w"], "is not numeric"),
        (["--data.csv", str(p), "--data.columns", "v", "--data.window", "28"], "fewer than window + horizon"),
        (["--data.csv", str(tmp_path / "nope.csv"), "--data.columns", "v"], "does not exist"),
    ]
    for args, message in cases:
        assert main([*args, "--out", str(out)]) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rnnkit forecast: error:") and message in lines[0], lines
    with pytest.raises(SystemExit) as e:  # a failed validation: argparse's usage, then one error line, exit 2
        main(["--data.csv", str(p), "--out", str(out)])
    assert e.value.code == 2 and "needs --data.columns" in capsys.readouterr().err.strip().splitlines()[-1]
    assert (out / "keep.txt").read_text() == "mine" and sorted(x.name for x in out.iterdir()) == ["keep.txt"]


def test_cli_help_lists_the_flags():
    r = _cli("--help")
    assert r.returncode == 0
    for flag in ("--max-time", "--out", "--data.csv", "--data.columns", "--model.strategy", "--resume", "--preset"):
        assert flag in r.stdout


@pytest.mark.parametrize("name", ["forecast_direct.py", "forecast_recursive_co2.py"])
def test_examples_run_and_beat_their_baseline(name):
    """The examples assert their own result (better than the baseline they name); run them in-process."""
    import runpy
    from pathlib import Path

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "examples" / name), run_name="__main__")


def test_stop_and_resume_equals_a_straight_run(tmp_path):
    """The task's batch stream depends only on the loop's generator, so a resumed run is the same run."""
    from rnnkit.commands.forecast import run_forecast

    over = {"steps": 40, "eval_every": 20, "log_every": 20, "baselines": ("naive",)}
    straight = run_forecast(_tiny_run(tmp_path / "a", **over))
    run_forecast(_tiny_run(tmp_path / "b", stop_at=20, **over))
    resumed = run_forecast(_tiny_run(tmp_path / "b", **over), resume=True)
    assert resumed["steps"] == straight["steps"] == 40
    assert resumed["metrics"]["rnn"] == straight["metrics"]["rnn"]
    with pytest.raises(ValueError, match="model or data changed"):
        run_forecast(_tiny_run(tmp_path / "b", model={"hidden_size": 8}, **over), resume=True)


def test_cli_multivariate_csv_end_to_end(tmp_path, capsys):
    """Two CSV columns in, one forecast; a gap filled on request; the report covers the target only."""
    import json

    from rnnkit.commands.forecast import main

    s = synthetic_series(n=200, season=8, noise=0.1, features=2).values
    rows = [f"{i},{a:.5f},{'' if i == 50 else f'{b:.5f}'}" for i, (a, b) in enumerate(s)]
    p = tmp_path / "two.csv"
    p.write_text("t,a,b\n" + "\n".join(rows) + "\n")
    out = tmp_path / "run"
    args = ["--data.csv", str(p), "--data.columns", "a,b", "--data.target", "b", "--data.season", "8",
            "--data.window", "16", "--data.horizon", "4", "--steps", "30", "--eval_every", "30", "--max-time", "0",
            "--model.hidden_size", "8", "--baselines", "naive,seasonal-naive", "--out", str(out)]  # fmt: skip
    assert main(args) == 1 and "1 missing value(s)" in capsys.readouterr().err
    assert main([*args, "--data.fill", "true"]) == 0
    assert "seasonal-naive" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["series"]["target"] == ["b"] and report["series"]["season"] == 8
    assert set(report["metrics"]) == {"rnn", "naive", "seasonal-naive"} and report["test_points"] == 27 * 4
