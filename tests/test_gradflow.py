"""Gradient-flow diagnostics: the measured ‖∂L_T/∂h_t‖ is autograd's, obeys the seed's product bound, and
shows the vanishing / exploding / gated behaviour the docs describe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.diagnostics.gradflow import (
    GradFlowConfig,
    format_table,
    gradient_flow,
    gradient_norms,
    set_spectral_radius,
    spectral_radius,
    table_distances,
)
from rnnkit.tasks.longrange import SequenceModel, adding_problem

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one intra-op thread is fastest, and on a shared machine the only sane choice."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def measured(
    cell: str, radius: float | None, T: int = 30, H: int = 8, seed: int = 0
) -> tuple[SequenceModel, np.ndarray]:
    torch.manual_seed(seed)
    model = SequenceModel(cell, 2, H, 1)
    if radius is not None:
        set_spectral_radius(model.rnn, radius)
    x, y = adding_problem(16, T, torch.Generator().manual_seed(seed + 1))
    return model, gradient_norms(model, x, y)


def test_table_distances() -> None:
    assert table_distances(100) == [1, 2, 5, 10, 20, 50, 99]
    assert table_distances(12) == [1, 2, 5, 10, 11]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_set_spectral_radius(cell: str) -> None:
    torch.manual_seed(0)
    model = SequenceModel(cell, 2, 6, 1)
    set_spectral_radius(model.rnn, 1.7)
    assert spectral_radius(model.rnn) == pytest.approx(1.7, rel=1e-6)
    w = model.rnn.weight_hh_l0.detach().double()
    for block in w.split(6):  # every gate block, not just the largest
        assert torch.linalg.eigvals(block).abs().max().item() == pytest.approx(1.7, rel=1e-5)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_norms_match_autograd_on_the_carried_states(cell: str) -> None:
    """Run the layer one step at a time, keep every h_t, and let autograd compute ∂L_T/∂h_t."""
    torch.manual_seed(3)
    T, B = 9, 5
    model = SequenceModel(cell, 2, 4, 1).double()
    x, y = adding_problem(B, T, torch.Generator().manual_seed(4))
    x, y = x.double(), y.double()
    state, hs = None, []
    for t in range(T):
        _, state = model.rnn(x[:, t : t + 1], state)
        h = state[0] if isinstance(state, tuple) else state
        h.retain_grad()
        hs.append(h)
    loss = 0.5 * ((model.head(hs[-1][0])[:, 0] - y) ** 2).sum()  # L = Σ_b ½ (ŷ_T - y)²
    loss.backward()
    expected = np.array([h.grad[0].norm(dim=-1).mean().item() for h in hs])
    np.testing.assert_allclose(gradient_norms(model, x, y), expected, rtol=1e-6)


@pytest.mark.parametrize("radius", [0.5, 0.9, 2.0])
def test_elman_norms_obey_the_product_bound(radius: float) -> None:
    """∂L/∂h_t = ∂L/∂h_T ∏ diag(tanh') W, and tanh' ≤ 1, so ‖∂L/∂h_{T-d}‖ ≤ ‖∂L/∂h_T‖ ‖W‖₂^d per sequence."""
    model, norms = measured("rnn", radius)
    sigma = torch.linalg.matrix_norm(model.rnn.weight_hh_l0.detach().double(), ord=2).item()
    d = np.arange(len(norms))
    assert (norms[::-1] <= norms[-1] * sigma**d * (1 + 1e-9)).all()


def test_vanishing_exploding_and_the_lstm_memory_path() -> None:
    _, small = measured("rnn", 0.5)
    _, large = measured("rnn", 2.0, H=16)
    assert small[-21] < 1e-4 * small[-1]  # ρ < 1: 20 steps back the gradient has all but vanished
    assert large[-21] > large[-1]  # ρ = 2: it grows (w > 1 grows the product) …
    _, saturated = measured("rnn", 3.0, H=8)
    assert saturated[-21] < 1e-4 * saturated[-1]  # … unless tanh saturates: tanh' ≈ 0 kills the product again
    # an LSTM whose forget gates are open (f ≈ 0.99) carries the gradient along c_t = f ⊙ c_{t-1} + …
    torch.manual_seed(0)
    model = SequenceModel("lstm", 2, 8, 1)
    set_spectral_radius(model.rnn, 0.5)
    with torch.no_grad():
        model.rnn.bias_ih_l0[8:16] = 5.0  # forget-gate bias: σ(5) ≈ 0.993
    x, y = adding_problem(16, 30, torch.Generator().manual_seed(1))
    lstm = gradient_norms(model, x, y)
    ratio_lstm, ratio_rnn = lstm[-21] / lstm[-1], small[-21] / small[-1]
    assert ratio_lstm > 1e-2 and ratio_lstm > 1e2 * ratio_rnn


def test_gradient_flow_conditions_and_table() -> None:
    cfg = GradFlowConfig(cells=("rnn", "lstm"), hidden_size=4, seq_len=12, batch_size=4, radii=(0.5,), train_steps=0)
    results = gradient_flow(cfg)
    assert list(results["rnn"]) == ["init", "init ρ=0.5"]
    assert results["lstm"]["init ρ=0.5"]["rho"] == pytest.approx(0.5)
    assert all(
        e["norms"].shape == (12,) and np.isfinite(e["norms"]).all() for c in results.values() for e in c.values()
    )
    table = format_table(results, 12)
    assert "d=11" in table and table.count("\n") == 1 + 4


def test_gradflow_config_validation() -> None:
    with pytest.raises(ValueError, match="cells must be a comma list"):
        GradFlowConfig(cells=("rnn", "mlp"))
    with pytest.raises(ValueError, match="radii must be positive"):
        GradFlowConfig(radii=(0.0,))


def test_gradflow_command(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    train = [] if _has_train() else ["--train_steps", "0"]
    out = tmp_path / "gf"
    cmd = [sys.executable, "-m", "rnnkit", "gradflow", "--quick", "--out", str(out), *train]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "‖∂L_T/∂h_t‖" in proc.stdout and "init ρ=2" in proc.stdout
    assert (out / "gradflow.png").stat().st_size > 1000
    record = json.loads((out / "gradflow.json").read_text())
    assert len(record["results"]["lstm"]["init"]["norms"]) == 12
    if not train:
        assert "trained+clip1" in record["results"]["gru"]
    bad = subprocess.run([*cmd[:4], "--seq_len", "1"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "error: seq_len must be at least 2" in bad.stderr


def _has_train() -> bool:
    try:
        import rnnkit.train  # noqa: F401
    except ImportError:
        return False
    return True


def test_clipping_rescues_sgd_from_exploding_gradients() -> None:
    """Plain SGD from ρ = 2: without clipping the Elman net blows up, with clipping it trains (d2l's remedy)."""
    pytest.importorskip("rnnkit.train")
    cfg = GradFlowConfig(cells=("rnn",), hidden_size=16, seq_len=30, batch_size=16, radii=(), train_steps=40,
                         optimizer="sgd", lr=0.1, train_radius=2.0)  # fmt: skip
    results = gradient_flow(cfg)["rnn"]
    free, clipped = results["trained from ρ=2"], results["trained from ρ=2+clip1"]
    assert clipped.get("diverged") is None and clipped["mse"] < 1.0
    assert free.get("diverged") or free["mse"] > 100 * clipped["mse"]
    assert "diverged" in format_table({"rnn": {"x": {"diverged": "loss became nan", "norms": None}}}, 30)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm", "jordan"])
def test_lm_gradient_norms_match_the_numpy_bptt(cell: str) -> None:
    """A language model's ‖∂L_T/∂s_t‖ on text (carried start states, softmax loss at the window's end) equals
    the hand-written NumPy BPTT's, window by window, at every distance."""
    import torch.nn.functional as F

    from rnnkit import numpy_bptt as nb
    from rnnkit.diagnostics.gradflow import lm_gradient_norms
    from rnnkit.models import LanguageModel

    V, H, T = 7, 5, 6
    model = LanguageModel(V, cell, H, 1, dtype=torch.float64).eval()
    ids = torch.randint(0, V, (40,))
    got = lm_gradient_norms(model, ids, steps=T, windows=3)
    assert got.shape == (1, T)
    want = np.zeros(T)
    starts = [0, 16, 33]  # three windows spread evenly over the starts 0 .. 40 - 1 - T
    for p in starts:
        with torch.no_grad():
            state = model(ids[None, :p])[1] if p else None
        s0 = None if state is None else tuple(s[0].numpy() for s in ((state,) if torch.is_tensor(state) else state))
        x = F.one_hot(ids[p : p + T], V).double()[:, None].numpy()
        r = nb.bptt(nb.cell_from_layer(model.rnn), nb.params_from_torch(model.rnn, head=model.head), x,
                    np.array([int(ids[p + T])]), head="softmax", loss_steps="last", state0=s0)  # fmt: skip
        dist = [np.linalg.norm(r.dstates[0][T - 1 - d, 0]) for d in range(1, T)] + [np.linalg.norm(r.dstate0[0][0])]
        want += np.array(dist) / len(starts)
    np.testing.assert_allclose(got[0], want, rtol=1e-9, atol=1e-15)


def test_lm_gradient_norms_every_layer_and_short_texts() -> None:
    from rnnkit.diagnostics.gradflow import lm_gradient_norms
    from rnnkit.models import LanguageModel

    model = LanguageModel(9, "lstm", 6, 3)
    norms = lm_gradient_norms(model, torch.randint(0, 9, (30,)), steps=50, windows=4)  # steps cut to 29
    assert norms.shape == (3, 29) and np.isfinite(norms).all() and (norms > 0).all()
    assert not any(p.grad is not None for p in model.parameters())  # measured, nothing accumulated
    with pytest.raises(ValueError, match="at least 2 tokens"):
        lm_gradient_norms(model, torch.tensor([3]))
