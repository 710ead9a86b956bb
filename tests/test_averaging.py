import pytest
import torch
from torch import nn

from _toy import ToyTask
from rnnkit import checkpoint as ckpt
from rnnkit.averaging import WeightAverage
from rnnkit.models import LanguageModel
from rnnkit.train import OptimConfig, TrainConfig, train


def model(seed=0):
    torch.manual_seed(seed)
    return LanguageModel(6, "gru", 12, 2, 0.0, "embedding", 8, dtype=torch.float64)


def test_average_follows_its_formula():
    """θ̄_t = d_t θ̄_{t-1} + (1 - d_t) θ_t with d_t = min(decay, t / (t + 10)), from θ̄_0 = θ_0, by hand."""
    net = nn.Linear(3, 2).double()
    avg = WeightAverage(net, decay=0.8)
    expected = [p.detach().clone() for p in net.parameters()]
    for t in range(1, 40):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        avg.update(t)
        d = min(0.8, t / (t + 10))
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, net.parameters())]
    for a, e in zip(avg.average, expected):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


def test_swapped_puts_the_live_weights_back_even_after_an_error():
    net = nn.Linear(3, 2).double()
    avg = WeightAverage(net, decay=0.5)
    with torch.no_grad():
        avg.average[0].fill_(7.0)
    live = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"), avg.swapped():
        assert torch.all(net.weight == 7.0)
        raise RuntimeError("boom")
    for k, v in net.state_dict().items():
        assert torch.equal(v, live[k])


def test_training_evaluates_and_keeps_the_average(tmp_path):
    """With ``ema`` the validation loss is the averaged weights' (it equals scoring best/'s weights), best/
    holds the average and last/ the live weights plus the average; a resume equals the straight run."""
    cfg = TrainConfig(steps=12, eval_every=12, log_every=4, plot=False, ema=0.9, optim=OptimConfig(lr=2e-2))
    task = ToyTask()
    net = model()
    result = train(net, task, cfg, out_dir=tmp_path / "a")
    best, last = ckpt.load_checkpoint(tmp_path / "a", "best"), ckpt.load_checkpoint(tmp_path / "a", "last")
    for name, w in net.state_dict().items():  # live weights in last/, and they are not the average
        assert torch.equal(last.model_tensors[name], w)
        assert torch.equal(best.model_tensors[name], last.tensors["ema." + name])
    assert not torch.equal(best.model_tensors["rnn.weight_hh_l0"], last.model_tensors["rnn.weight_hh_l0"])
    scored = model(seed=1)
    ckpt.load_model_weights(scored, best)
    scored.eval()
    with torch.no_grad():
        assert task.evaluate(scored)["loss"] == pytest.approx(result.best["loss"], rel=1e-12)

    # stop at step 5, resume in a fresh model: same live weights, same average, same validation losses
    train(model(), task, TrainConfig(**{**cfg.__dict__, "stop_at": 5}), out_dir=tmp_path / "b")
    resumed = model(seed=2)
    again = train(resumed, task, cfg, out_dir=tmp_path / "b", resume=True)
    for name, w in net.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], w)
    ema_b = ckpt.load_checkpoint(tmp_path / "b", "last").tensors
    for name in net.state_dict():
        assert torch.equal(ema_b["ema." + name], last.tensors["ema." + name])
    assert again.last["loss"] == result.last["loss"]


def test_ema_is_validated():
    with pytest.raises(ValueError, match=r"ema must be in \[0, 1\)"):
        TrainConfig(ema=1.0)
    with pytest.raises(ValueError, match="decay must be in"):
        WeightAverage(nn.Linear(2, 2), decay=0.0)
