import json
import math

import pytest
import torch

from _toy import ToyTask, unigram_entropy
from rnnkit.models import LanguageModel
from rnnkit.train import NonFiniteLossError, OptimConfig, TrainConfig, learning_rate, train


def model(hidden=16, dropout=0.0, layers=1, dtype=torch.float64, cell="lstm"):
    torch.manual_seed(0)
    return LanguageModel(6, cell, hidden, layers, dropout, "embedding", 8, dtype=dtype)


def rows(out, split="train"):
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


def test_loss_beats_unigram_baseline(tmp_path):
    task = ToyTask()
    cfg = TrainConfig(steps=150, eval_every=50, log_every=25, plot=False, optim=OptimConfig(lr=1e-2))
    result = train(model(), task, cfg, out_dir=tmp_path)
    baseline = unigram_entropy(task.val_ids, 6)  # the best a model without context can do
    assert result.best["loss"] < 0.6 * baseline
    assert result.step == 150 and result.stop_reason == "steps"
    val = rows(tmp_path, "val")
    assert [r["step"] for r in val] == [50, 100, 150]
    assert val[-1]["loss"] < val[0]["loss"]
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0].startswith("step,split,time,loss")
    assert (tmp_path / "best" / "state.json").is_file() and (tmp_path / "last" / "model.safetensors").is_file()


def test_schedule_warmup_and_cosine():
    o = OptimConfig(lr=1.0, warmup=4, schedule="cosine", min_lr=0.1)
    assert learning_rate(o, 0, 0.0) == pytest.approx(0.25)
    assert learning_rate(o, 3, 0.0) == pytest.approx(1.0)
    assert learning_rate(o, 10, 0.5) == pytest.approx(0.55)
    assert learning_rate(o, 10, 1.0) == pytest.approx(0.1)
    assert learning_rate(OptimConfig(lr=0.5), 99, 0.9) == 0.5


def test_resume_is_exact(tmp_path):
    """N steps straight == N/2 + stop + resume + N/2, bitwise: weights and every logged loss."""
    opt = OptimConfig(lr=5e-3, warmup=3, schedule="cosine", min_lr=1e-4, weight_decay=0.1, clip_norm=0.5)
    cfg = TrainConfig(steps=14, eval_every=4, log_every=1, plot=False, optim=opt)
    straight = model(dropout=0.3, layers=2)
    train(straight, ToyTask(), cfg, out_dir=tmp_path / "a")

    first = model(dropout=0.3, layers=2)
    half = TrainConfig(**{**cfg.__dict__, "stop_at": 7})
    r1 = train(first, ToyTask(), half, out_dir=tmp_path / "b")
    assert r1.stop_reason == "stop_at" and r1.step == 7
    second = model(dropout=0.3, layers=2)  # fresh process: weights come from the checkpoint
    torch.manual_seed(123)  # and so does every RNG state
    r2 = train(second, ToyTask(), cfg, out_dir=tmp_path / "b", resume=True)
    assert r2.step == 14

    for a, b in zip(straight.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    la = [(r["step"], r["loss"], r["lr"]) for r in rows(tmp_path / "a")]
    lb = [(r["step"], r["loss"], r["lr"]) for r in rows(tmp_path / "b")]
    assert la == lb and len(la) == 14
    va = {r["step"]: r["loss"] for r in rows(tmp_path / "a", "val")}
    vb = {r["step"]: r["loss"] for r in rows(tmp_path / "b", "val")}
    assert all(vb[s] == v for s, v in va.items())


def test_resume_refuses_changed_model_and_lists_differences(tmp_path):
    cfg = TrainConfig(steps=4, eval_every=2, log_every=2, plot=False)
    train(model(), ToyTask(), cfg, out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"hidden_size: 16 -> 24") as e:
        train(model(hidden=24), ToyTask(), TrainConfig(steps=8, plot=False), out_dir=tmp_path, resume=True)
    assert "cannot resume" in str(e.value)
    with pytest.raises(ValueError, match=r"vocab_size: 6 -> 5"):
        task = ToyTask()
        task.metadata = lambda: {"vocab_size": 5}
        train(model(), task, TrainConfig(steps=8, plot=False), out_dir=tmp_path, resume=True)


def test_existing_run_is_not_overwritten(tmp_path):
    cfg = TrainConfig(steps=4, eval_every=2, log_every=2, plot=False)
    train(model(), ToyTask(), cfg, out_dir=tmp_path)
    before = (tmp_path / "metrics.jsonl").read_bytes()
    with pytest.raises(ValueError, match="already holds a run"):
        train(model(), ToyTask(), cfg, out_dir=tmp_path)
    assert (tmp_path / "metrics.jsonl").read_bytes() == before
    train(model(), ToyTask(), cfg, out_dir=tmp_path, overwrite=True)
    assert len(rows(tmp_path)) == 2


def test_resume_with_no_checkpoint_yet_starts_the_run(tmp_path, caplog):
    """A run killed before its first checkpoint: --resume starts it (and says so); without it, one line says how."""
    cfg = TrainConfig(steps=4, eval_every=2, log_every=1, plot=False)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "split": "train", "loss": 1.0}\n{"step": 2, "spl')
    (tmp_path / ".tmp-last-x8y").mkdir()  # a checkpoint write cut short
    with pytest.raises(ValueError, match=r"holds a run that stopped before its first checkpoint .*--resume"):
        train(model(), ToyTask(), cfg, out_dir=tmp_path)
    with caplog.at_level("INFO"):
        result = train(model(), ToyTask(), cfg, out_dir=tmp_path, resume=True)
    assert "no checkpoint in" in caplog.text and "starting the run from step 0" in caplog.text
    assert result.step == 4 and result.new_steps == 4 and [r["step"] for r in rows(tmp_path)] == [1, 2, 3, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "last", "metrics.csv", "metrics.jsonl"]
    fresh = train(model(), ToyTask(), cfg, out_dir=tmp_path / "new", resume=True)  # nothing there at all: starts
    assert fresh.step == 4


def test_resume_of_a_finished_run_says_so_at_once(tmp_path, caplog):
    cfg = TrainConfig(steps=4, eval_every=2, log_every=1, plot=False)
    train(model(), ToyTask(), cfg, out_dir=tmp_path)
    task = ToyTask()
    with caplog.at_level("INFO"):
        result = train(model(), task, cfg, out_dir=tmp_path, resume=True)
    assert result.new_steps == 0 and result.step == 4 and task.calls == 0
    assert "is finished: its budget (4 steps) is spent at step 4" in caplog.text
    assert "resume with a larger --steps (now 4)" in caplog.text
    assert train(model(), ToyTask(), TrainConfig(**{**cfg.__dict__, "steps": 6}), out_dir=tmp_path,
                 resume=True).new_steps == 2  # fmt: skip


def test_resume_reports_only_real_changes(tmp_path, caplog):
    """Lists read back from JSON equal the tuples they were saved from: no false 'changed settings'."""
    cfg = TrainConfig(steps=4, eval_every=2, log_every=2, plot=False, optim=OptimConfig(betas=(0.9, 0.99)), stop_at=2)
    train(model(), ToyTask(), cfg, out_dir=tmp_path)
    with caplog.at_level("WARNING"):
        train(model(), ToyTask(), TrainConfig(**{**cfg.__dict__, "stop_at": 3}), out_dir=tmp_path, resume=True)
    assert caplog.text.count("changed settings") == 1 and "stop_at: 2 -> 3" in caplog.text
    assert "betas" not in caplog.text


def test_progress_header_and_a_line_every_few_seconds(tmp_path, caplog, monkeypatch):
    import rnnkit.progress

    monkeypatch.setattr(rnnkit.progress, "HEARTBEAT_S", 0.0)  # a line after every step that prints none
    cfg = TrainConfig(steps=6, max_time=30, eval_every=3, log_every=100, plot=True)
    with caplog.at_level("INFO"):
        train(model(), ToyTask(), cfg, out_dir=tmp_path)
    lines = caplog.text.splitlines()
    header = next(line for line in lines if "training for" in line)
    assert "training for up to 30 s (evaluation excluded) or 6 steps" in header
    assert "last/ and best/ checkpoints, metrics.jsonl, metrics.csv, curves.png" in header and str(tmp_path) in header
    beats = [line for line in lines if " of 30s | train loss" in line]
    assert len(beats) == 4 and all("units/s" in line for line in beats)  # steps 1, 2, 4, 5 (3 and 6 evaluate)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = TrainConfig(steps=20, eval_every=3, log_every=1, plot=False)
    with pytest.raises(NonFiniteLossError, match=r"training loss became nan by step 5.*step 3"):
        train(model(), ToyTask(nan_at=5), cfg, out_dir=tmp_path)
    state = json.loads((tmp_path / "last" / "state.json").read_text())
    assert state["step"] == 3 and math.isfinite(state["last_eval"]["loss"])


def test_time_budget_and_random_sampling(tmp_path):
    cfg = TrainConfig(steps=10**6, max_time=0.5, eval_every=10**6, log_every=10, plot=True)
    result = train(model(dtype=torch.float32, cell="gru"), ToyTask(sequential=False), cfg, out_dir=tmp_path)
    assert result.stop_reason == "max_time" and 0.5 <= result.train_time < 1.5
    assert result.last["step"] == result.step  # a final evaluation at the stop
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_config_validation():
    with pytest.raises(ValueError, match="optim.lr"):
        OptimConfig(lr=0)
    with pytest.raises(ValueError, match="betas"):
        OptimConfig(betas=(0.9,))
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)


def test_trainer_keeps_indrnn_inside_its_bound(tmp_path):
    """model.recurrent_max: after every optimiser step the trainer clips IndRNN's |u| (drawn from U(0, 1), so mostly
    past 0.3, and moved by an lr of 0.5); another cell with recurrent_max is refused in one line."""
    torch.manual_seed(0)
    net = LanguageModel(6, "indrnn", 16, 2, 0.0, "embedding", 8, dtype=torch.float64, recurrent_max=0.3)
    u0 = net.rnn.weight_hh_l1.detach().clone()
    train(net, ToyTask(), TrainConfig(steps=3, plot=False, optim=OptimConfig(lr=0.5)), out_dir=tmp_path)
    for name, p in net.rnn.named_parameters():
        if name.startswith("weight_hh"):
            assert float(p.detach().abs().max()) <= 0.3
    assert not torch.equal(net.rnn.weight_hh_l1.detach(), u0)
    with pytest.raises(ValueError, match="model.recurrent_max bounds IndRNN's recurrent weights"):
        LanguageModel(6, "lstm", 16, recurrent_max=0.3)


def test_compiled_training_equals_eager(tmp_path):
    """``compile=True`` runs the model and the loss through torch.compile: the same steps give the same weights
    and losses as eager (to float64 rounding; inductor may reorder sums), with the carried state of sequential
    batches (a second graph once the state is a tensor) and the fused engine."""
    cfg = TrainConfig(steps=6, eval_every=3, log_every=1, plot=False, optim=OptimConfig(lr=1e-2))
    runs = {}
    for compiled in (False, True):
        net = model(layers=2, cell="gru")
        net.engine = "fused"
        train(net, ToyTask(), TrainConfig(**{**cfg.__dict__, "compile": compiled}), out_dir=tmp_path / str(compiled))
        runs[compiled] = (net.state_dict(), [r["loss"] for r in rows(tmp_path / str(compiled))])
    torch._dynamo.reset()
    for name, w in runs[False][0].items():
        torch.testing.assert_close(runs[True][0][name], w, rtol=1e-9, atol=1e-12)
    assert runs[True][1] == pytest.approx(runs[False][1], rel=1e-9)
