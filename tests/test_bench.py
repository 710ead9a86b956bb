"""``rnnkit bench --quick``: the structure of what it measures (never how fast anything is)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rnnkit
from rnnkit.bench import CELLS, WORKLOADS, BenchConfig, build_contenders, format_tables, main, run
from rnnkit.costs import layer_cost
from rnnkit.engines import ENGINES

ROOT = Path(__file__).resolve().parents[1]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.fixture(scope="module")
def quick():
    return run(BenchConfig(quick=True, workloads=tuple(WORKLOADS)))


def test_every_cell_runs_on_every_engine_that_supports_it(quick):
    assert [w["name"] for w in quick["workloads"]] == list(WORKLOADS)
    for w in quick["workloads"]:
        for mode in WORKLOADS[w["name"]][4]:
            for cell in CELLS:
                rows = [r for r in w["rows"] if r["mode"] == mode and r["cell"] == cell]
                names = [r["contender"] for r in rows]
                assert names[0] == f"torch.nn.{rnnkit.bench.BASELINES.get(cell, torch.nn.LSTM).__name__}"
                layer = rnnkit.bench.rnnkit_layer(cell, 5, 8, "reference")
                x = layer.weight_ih_l0
                runnable = [  # not an engine that would run under an interpreter (the Triton one, in tests)
                    e
                    for e, eng in ENGINES.items()
                    if eng.unsupported(layer, x, False) is None and not getattr(eng, "interpreted", lambda x: 0)(x)
                ]
                assert names[1 : 1 + len(runnable)] == [f"rnnkit[{e}]" for e in runnable]
                assert ("scratch (d2l)" in names) == (cell in ("rnn", "gru", "lstm"))
                # the generation loop also runs through the layer's one-token stepper, and only there
                assert ("rnnkit stepper" in names) == (mode == "generate")


def test_every_number_is_positive_and_finite(quick):
    rows = [r for w in quick["workloads"] for r in w["rows"]]
    assert rows
    for r in rows:
        for key in ("seconds", "tokens_per_s", "speedup_vs_torch", "flops_per_token", "train_flops_per_token"):
            assert math.isfinite(r[key]) and r[key] > 0, (key, r)
        assert len(r["seconds_runs"]) == 2
        if r["contender"].startswith("torch.nn"):
            assert r["speedup_vs_torch"] == 1.0
        if r["mode"] == "train":
            assert isinstance(r["peak_bytes"], int) and r["peak_bytes"] > 0
        else:
            assert r["peak_bytes"] is None
        if r["mode"] == "generate":
            assert r["batch"] == 1 and r["us_per_token"] == pytest.approx(1e6 * r["seconds"] / r["steps"])


def test_contenders_compute_the_same_function(quick):
    checked = [r for w in quick["workloads"] for r in w["rows"] if "max_abs_diff" in r]
    # rnnkit's engines (and d2l's rnn, lstm) against torch.nn; peephole and Jordan engines against each other
    many_engines = len([e for e in ENGINES if e != "torch"]) > 1
    assert {r["cell"] for r in checked} == set(CELLS if many_engines else ("rnn", "gru", "lstm"))
    assert all(r["max_abs_diff"] < 1e-5 for r in checked)  # float32, same weights


def test_params_and_flops_are_the_cost_model(quick):
    for r in (r for w in quick["workloads"] for r in w["rows"] if r["kind"] == "rnnkit"):
        layer = rnnkit.bench.rnnkit_layer(r["cell"], r["input_size"], r["hidden"], "reference")
        cost = layer_cost(layer)
        assert r["params"] == cost.params == sum(p.numel() for p in layer.parameters())
        assert r["flops_per_token"] == cost.flops


def test_machine_and_allocator_are_recorded(quick):
    m = quick["machine"]
    assert m["torch"] and m["torch_threads"] >= 1 and "tuning" in m["malloc"]
    text = format_tables(quick)
    assert "d2l — training (forward + backward)" in text and "µs/token" in text and "peak MiB" in text


def test_overrides_and_engine_selection():
    cfg = BenchConfig(quick=True, cells=("lstm",), engines=("reference",), scratch=False, hidden=6, steps=3)
    result = run(cfg)
    assert [w["name"] for w in result["workloads"]] == ["d2l", "latency"]
    rows = result["workloads"][0]["rows"]
    assert [r["contender"] for r in rows if r["mode"] == "train"] == ["torch.nn.LSTM", "rnnkit[reference]"]
    assert rows[0]["hidden"] == 6 and rows[0]["steps"] == 3
    x = rnnkit.bench.rnnkit_layer("lstm", 5, 6, "reference").weight_ih_l0.new_zeros(3, 2, 5)
    contenders, notes = build_contenders(BenchConfig(cells=("jordan",), engines=("torch",)), "jordan", 5, 6, x)
    assert len(contenders) == 1 and "torch has no kernel" in notes[0]


def test_regularised_rows_time_training_next_to_the_plain_engine():
    cfg = BenchConfig(quick=True, workloads=("d2l",), cells=("lstm", "mingru"), engines=("fused",), scratch=False,
                      regularisers=("zoneout=0.1", "weight_dropout=0.3+input_dropout=0.2"))  # fmt: skip
    result = run(cfg)
    rows = result["workloads"][0]["rows"]
    train = [r["contender"] for r in rows if r["mode"] == "train" and r["cell"] == "lstm"]
    assert train == ["torch.nn.LSTM", "rnnkit[fused]", "rnnkit[fused] zoneout=0.1",
                     "rnnkit[fused] weight_dropout=0.3+input_dropout=0.2"]  # fmt: skip
    assert not any("zoneout" in r["contender"] for r in rows if r["mode"] == "infer")
    assert all("max_abs_diff" not in r for r in rows if "=" in r["contender"])  # random masks: not compared
    notes = result["workloads"][0]["notes"]  # minGRU: zoneout falls to the reference loop, no recurrent matrix
    assert any("mingru: engine 'fused' with zoneout=0.1 skipped" in n for n in notes)
    assert any("has no recurrent weight matrix" in n for n in notes)


def test_regularised_rows_are_timed_under_autocast_too():
    cfg = BenchConfig(quick=True, workloads=("d2l",), cells=("gru",), engines=("fused",), scratch=False,
                      regularisers=("zoneout=0.1",), autocast="bf16")  # fmt: skip
    rows = run(cfg)["workloads"][0]["rows"]
    train = [r["contender"] for r in rows if r["mode"] == "train"]
    assert "rnnkit[fused] zoneout=0.1 bf16" in train and "rnnkit[fused] zoneout=0.1" in train
    assert all("max_abs_diff" not in r for r in rows if "=" in r["contender"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--regularisers", "zoneout=1.5"], "zoneout must be in [0, 1)"),
        (["--regularisers", "dropconnect=0.1"], "expected name=p joined by +"),
        (["--workloads", "huge"], "unknown workload 'huge'"),
        (["--engines", "warp"], "unknown engine 'warp'"),
        (["--hidden", "0"], "--hidden must be a positive integer"),
        (["--json", "/no/such/dir/out.json"], "does not exist"),
    ],
)
def test_bad_flags_are_one_error_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("rnnkit bench: error:")


def test_cli_writes_json(tmp_path):
    path = tmp_path / "bench.json"
    argv = ["--quick", "--threads", "1", "--cells", "rnn", "--workloads", "d2l", "--json", str(path)]
    proc = subprocess.run(
        [sys.executable, "-m", "rnnkit", "bench", *argv], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "torch.nn.RNN" in proc.stdout
    data = json.loads(path.read_text())
    assert data["config"]["quick"] is True and data["command"].startswith("rnnkit bench --quick")
    assert data["machine"]["malloc"]["tuning"]  # the CLI tuned malloc (or says why not)
