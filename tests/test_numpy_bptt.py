"""The hand-written NumPy BPTT against finite differences, and against rnnkit's torch layers on every engine.

Finite differences check the NumPy backward against its own forward; the torch comparisons check both
passes against rnnkit's layers (float64, autograd), so an engine that computes a wrong forward or a
wrong gradient fails here. Truncated BPTT is checked against an independent construction: torch autograd
on graphs where the carried state is ``.detach()``-ed where the truncation cuts it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import rnnkit
from rnnkit import numpy_bptt as nb
from rnnkit.engines import ENGINES

T, B, IN, H, O = 5, 2, 3, 4, 3

# id -> (NumPy cell, rnnkit layer factory); the layer must compute the same equations.
CASES: dict[str, tuple[nb.Cell, Callable[[], rnnkit.Recurrent]]] = {
    "elman-tanh": (nb.Elman(H), lambda: rnnkit.RNN(IN, H)),
    "elman-relu": (nb.Elman(H, "relu"), lambda: rnnkit.RNN(IN, H, nonlinearity="relu")),
    "elman-nobias": (nb.Elman(H, bias=False), lambda: rnnkit.RNN(IN, H, bias=False)),
    "jordan": (nb.Jordan(H, 2), lambda: rnnkit.Jordan(IN, H, 2)),
    "gru": (nb.GRU(H), lambda: rnnkit.GRU(IN, H)),
    "gru-reset-before": (nb.GRU(H, reset_after=False), lambda: rnnkit.GRU(IN, H, reset_after=False)),
    "lstm": (nb.LSTM(H), lambda: rnnkit.LSTM(IN, H)),
    "lstm-proj": (nb.LSTM(H, proj_size=2), lambda: rnnkit.LSTM(IN, H, proj_size=2)),
    "peephole": (nb.PeepholeLSTM(H), lambda: rnnkit.PeepholeLSTM(IN, H)),
    "peephole-proj": (nb.PeepholeLSTM(H, proj_size=3), lambda: rnnkit.PeepholeLSTM(IN, H, proj_size=3)),
}


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """‖a - b‖ / max(‖a‖, ‖b‖): the relative error of a whole gradient tensor."""
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return float(np.linalg.norm(a - b) / scale) if scale > 0 else 0.0


def random_problem(cell: nb.Cell, head: str, seed: int = 0, loss_steps: str = "all"):
    rng = np.random.default_rng(seed)
    params = {n: rng.uniform(-0.8, 0.8, size=s) for n, s in cell.parameter_shapes(IN).items()}
    params["V"] = rng.normal(size=(O, cell.state_sizes[0]))
    params["c"] = rng.normal(size=O)
    x = rng.normal(size=(T, B, IN))
    lead = (B,) if loss_steps == "last" else (T, B)
    y = rng.integers(0, O, size=lead) if head == "softmax" else rng.normal(size=(*lead, O))
    state0 = tuple(rng.normal(scale=0.5, size=(B, s)) for s in cell.state_sizes)
    return params, x, y, state0


def central_difference(f: Callable[[], float], a: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """∂f/∂a by (f(a + ε) - f(a - ε)) / 2ε, one entry at a time (``a`` is modified in place and restored)."""
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        up = f()
        a[i] = old - eps
        down = f()
        a[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


# --------------------------------------------------------------------------------------------------
# 1. Finite differences: every parameter, the initial state and the inputs, both heads
@pytest.mark.parametrize("head", ["softmax", "mse"])
@pytest.mark.parametrize("case", list(CASES))
def test_gradients_match_finite_differences(case: str, head: str) -> None:
    cell = CASES[case][0]
    params, x, y, state0 = random_problem(cell, head)
    state0 = [s.copy() for s in state0]
    result = nb.bptt(cell, params, x, y, head=head, state0=tuple(state0))

    def loss() -> float:
        return nb.loss(cell, params, x, y, head=head, state0=tuple(state0))

    for name, value in params.items():
        assert rel_err(central_difference(loss, value), result.grads[name]) < 1e-6, name
    for k, s in enumerate(state0):
        assert rel_err(central_difference(loss, s), result.dstate0[k]) < 1e-6, f"state0[{k}]"
    assert rel_err(central_difference(loss, x), result.dx) < 1e-6, "x"


def test_loss_on_last_step_only_matches_finite_differences() -> None:
    cell = nb.LSTM(H)
    params, x, y, state0 = random_problem(cell, "mse", loss_steps="last")
    result = nb.bptt(cell, params, x, y, head="mse", state0=state0, loss_steps="last")
    full_target = np.zeros((T, B, O))
    full_target[-1] = y

    def loss() -> float:
        return nb.loss(cell, params, x, y, head="mse", state0=state0, loss_steps="last")

    assert rel_err(central_difference(loss, params["weight_hh"]), result.grads["weight_hh"]) < 1e-6
    assert rel_err(central_difference(loss, x), result.dx) < 1e-6
    # ∂L_T/∂s_T is the head's gradient alone: nothing comes from later steps
    z_T = result.logits[-1]
    np.testing.assert_allclose(result.dstates[0][-1], (z_T - y) @ params["V"], rtol=1e-12)


# --------------------------------------------------------------------------------------------------
# 2. Equality with rnnkit's torch layers on every engine that runs the configuration
def make_layer(case: str, engine: str, params: dict[str, np.ndarray]) -> rnnkit.Recurrent:
    layer = CASES[case][1]().double()
    layer.engine = engine
    with torch.no_grad():
        for name, p in layer.named_parameters():
            p.copy_(torch.from_numpy(params[name.removesuffix("_l0")]))
    return layer


def engine_or_skip(layer: rnnkit.Recurrent, engine: str, x: torch.Tensor) -> None:
    reason = ENGINES[engine].unsupported(layer, x, False)
    if reason is not None:
        pytest.skip(f"engine {engine!r}: {reason}")


def torch_state(state: tuple[np.ndarray, ...]) -> torch.Tensor | tuple[torch.Tensor, ...]:
    ts = tuple(torch.tensor(s[None], requires_grad=True) for s in state)  # (1, B, S): one layer, one direction
    return ts[0] if len(ts) == 1 else ts


def as_tuple(state: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return (state,) if isinstance(state, torch.Tensor) else tuple(state)


def head_loss(out: torch.Tensor, V: torch.Tensor, c: torch.Tensor, y: torch.Tensor, head: str) -> torch.Tensor:
    z = out @ V.T + c
    if head == "softmax":
        return F.cross_entropy(z.reshape(-1, z.shape[-1]), y.reshape(-1), reduction="sum")
    return 0.5 * ((z - y) ** 2).sum()


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("head", ["softmax", "mse"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_rnnkit_layer_and_autograd(case: str, head: str, engine: str) -> None:
    cell = CASES[case][0]
    params, x, y, state0 = random_problem(cell, head, seed=1)
    layer = make_layer(case, engine, params)
    xt = torch.tensor(x, requires_grad=True)
    engine_or_skip(layer, engine, xt)
    V, c = (torch.tensor(params[n], requires_grad=True) for n in ("V", "c"))
    hx = torch_state(state0)
    out, final = layer(xt, hx)
    loss = head_loss(out, V, c, torch.tensor(y), head)
    loss.backward()

    result = nb.bptt(cell, params, x, y, head=head, state0=state0)
    tol = {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(result.states[0], out.detach().numpy(), **tol)
    for k, s in enumerate(as_tuple(final)):
        np.testing.assert_allclose(result.states[k][-1], s[0].detach().numpy(), **tol)
    assert result.loss == pytest.approx(loss.item(), rel=1e-10)
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(result.grads[name.removesuffix("_l0")], p.grad.numpy(), **tol, err_msg=name)
    np.testing.assert_allclose(result.grads["V"], V.grad.numpy(), **tol)
    np.testing.assert_allclose(result.grads["c"], c.grad.numpy(), **tol)
    np.testing.assert_allclose(result.dx, xt.grad.numpy(), **tol)
    for k, s in enumerate(as_tuple(hx)):
        np.testing.assert_allclose(result.dstate0[k], s.grad[0].numpy(), **tol)


@pytest.mark.parametrize("case", ["elman-tanh", "jordan", "gru", "lstm-proj", "peephole"])
def test_per_step_state_gradients_match_autograd(case: str) -> None:
    """``dstates`` is the total ∂L/∂s_t: split the run at t and differentiate w.r.t. the state handed over."""
    cell = CASES[case][0]
    params, x, y, state0 = random_problem(cell, "softmax", seed=2)
    result = nb.bptt(cell, params, x, y, state0=state0)
    layer = make_layer(case, "reference", params)
    V, c = (torch.tensor(params[n]) for n in ("V", "c"))
    xt, yt = torch.tensor(x), torch.tensor(y)
    for t in (1, 3, T - 1):  # split after t steps: s_t is handed from the first run to the second
        out1, mid = layer(xt[:t], torch_state(state0))
        mid = tuple(s.detach().requires_grad_() for s in as_tuple(mid))
        out2, _ = layer(xt[t:], mid[0] if len(mid) == 1 else mid)
        # E_t is read from the handed-over state itself, so that its gradient lands there too
        loss = (
            head_loss(out1[:-1], V, c, yt[: t - 1], "softmax")
            + head_loss(mid[0], V, c, yt[t - 1 : t], "softmax")
            + head_loss(out2, V, c, yt[t:], "softmax")
        )
        loss.backward()
        for k, s in enumerate(mid):
            np.testing.assert_allclose(result.dstates[k][t - 1], s.grad[0].numpy(), rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# 3. Truncated BPTT against torch autograd with the state detached where the truncation cuts it
def torch_states(layer: rnnkit.Recurrent, xt: torch.Tensor, state0: tuple[np.ndarray, ...]) -> list:
    """s_0..s_T as detached layer-shaped states, by running one step at a time."""
    states = [torch_state(state0)]
    with torch.no_grad():
        for t in range(xt.shape[0]):
            states.append(layer(xt[t : t + 1], states[-1])[1])
    return states


def detached(state):
    return state.detach() if isinstance(state, torch.Tensor) else tuple(s.detach() for s in state)


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("truncate", [1, 2, 4])
@pytest.mark.parametrize("case", ["elman-tanh", "gru-reset-before", "lstm", "peephole"])
def test_window_truncation_matches_detached_autograd(case: str, truncate: int, engine: str) -> None:
    """BPTT(k): E_τ backpropagates into s_τ … s_{τ-k+1}; the state s_{τ-k} it starts from is detached."""
    cell = CASES[case][0]
    params, x, y, state0 = random_problem(cell, "softmax", seed=3)
    layer = make_layer(case, engine, params)
    xt = torch.tensor(x, requires_grad=True)
    engine_or_skip(layer, engine, xt)
    V, c = (torch.tensor(params[n], requires_grad=True) for n in ("V", "c"))
    hx = torch_state(state0)
    states = torch_states(layer, xt, state0)
    total = 0.0
    for tau in range(1, T + 1):
        start = max(tau - truncate, 0)
        s_start = detached(states[start]) if tau - truncate >= 0 else hx  # the cut, or the window reaches s_0
        out, _ = layer(xt[start:tau], s_start)
        total = total + head_loss(out[-1:], V, c, torch.tensor(y[tau - 1 : tau]), "softmax")
    total.backward()

    result = nb.bptt(cell, params, x, y, state0=state0, truncate=truncate)
    tol = {"rtol": 1e-10, "atol": 1e-12}
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(result.grads[name.removesuffix("_l0")], p.grad.numpy(), **tol, err_msg=name)
    np.testing.assert_allclose(result.dx, xt.grad.numpy(), **tol)
    for k, s in enumerate(as_tuple(hx)):  # with k = 1 no window reaches s_0: autograd leaves grad None
        expected = np.zeros_like(state0[k]) if s.grad is None else s.grad[0].numpy()
        np.testing.assert_allclose(result.dstate0[k], expected, **tol)


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("truncate", [1, 2, 3])
@pytest.mark.parametrize("case", ["elman-relu", "jordan", "gru", "lstm-proj"])
def test_chunk_truncation_matches_detaching_every_k_steps(case: str, truncate: int, engine: str) -> None:
    """What a torch user does: run chunks of k steps, carrying ``state.detach()`` from one to the next."""
    cell = CASES[case][0]
    params, x, y, state0 = random_problem(cell, "mse", seed=4)
    layer = make_layer(case, engine, params)
    xt = torch.tensor(x, requires_grad=True)
    engine_or_skip(layer, engine, xt)
    V, c = (torch.tensor(params[n], requires_grad=True) for n in ("V", "c"))
    hx = state = torch_state(state0)
    total = 0.0
    for a in range(0, T, truncate):
        out, state = layer(xt[a : a + truncate], state)
        total = total + head_loss(out, V, c, torch.tensor(y[a : a + truncate]), "mse")
        state = detached(state)
    total.backward()

    result = nb.bptt(cell, params, x, y, head="mse", state0=state0, truncate=truncate, truncation="chunk")
    tol = {"rtol": 1e-10, "atol": 1e-12}
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(result.grads[name.removesuffix("_l0")], p.grad.numpy(), **tol, err_msg=name)
    np.testing.assert_allclose(result.grads["V"], V.grad.numpy(), **tol)
    np.testing.assert_allclose(result.dx, xt.grad.numpy(), **tol)
    for k, s in enumerate(as_tuple(hx)):
        np.testing.assert_allclose(result.dstate0[k], s.grad[0].numpy(), **tol)


@pytest.mark.parametrize("case", ["elman-tanh", "gru", "peephole"])
def test_truncation_to_whole_sequence_is_full_bptt(case: str) -> None:
    cell = CASES[case][0]
    params, x, y, state0 = random_problem(cell, "softmax", seed=5)
    full = nb.bptt(cell, params, x, y, state0=state0)
    chunk = nb.bptt(cell, params, x, y, state0=state0, truncate=T, truncation="chunk")
    window = nb.bptt(cell, params, x, y, state0=state0, truncate=T)
    for name in full.grads:
        np.testing.assert_allclose(chunk.grads[name], full.grads[name], rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(window.grads[name], full.grads[name], rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(window.dx, full.dx, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(chunk.dstate0[0], full.dstate0[0], rtol=1e-13, atol=1e-14)
    # the window of E_T (T steps) ends just above s_0: only E_1 … E_{T-1} reach the initial state
    short = nb.bptt(cell, params, x[:-1], y[:-1], state0=state0)
    np.testing.assert_allclose(window.dstate0[0], short.dstate0[0], rtol=1e-12, atol=1e-14)
    # and truncation really cuts: with k = 1 the recurrent weight sees only one step per loss term
    one = nb.bptt(cell, params, x, y, state0=state0, truncate=1)
    assert rel_err(one.grads["weight_hh"], full.grads["weight_hh"]) > 1e-3


# --------------------------------------------------------------------------------------------------
# 4. Bad input gets one clear ValueError
def test_bad_input_names_the_problem() -> None:
    cell = nb.LSTM(H)
    params, x, y, state0 = random_problem(cell, "softmax")
    with pytest.raises(ValueError, match=r"parameter 'weight_hh' has shape \(16, 3\).*needs \(16, 4\)"):
        nb.bptt(cell, {**params, "weight_hh": params["weight_hh"][:, :3]}, x, y)
    with pytest.raises(ValueError, match="missing bias_hh"):
        nb.bptt(cell, {n: v for n, v in params.items() if n != "bias_hh"}, x, y)
    with pytest.raises(ValueError, match="unexpected weight_ci"):
        nb.bptt(cell, {**params, "weight_ci": np.zeros(H)}, x, y)
    with pytest.raises(ValueError, match=r"shorter than the truncation window \(truncate=6\)"):
        nb.bptt(cell, params, x, y, truncate=T + 1)
    bad = x.copy()
    bad[2, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"x contains NaN or inf \(first at index \(2, 1, 0\)\)"):
        nb.bptt(cell, params, bad, y)
    with pytest.raises(ValueError, match=r"x must be a non-empty \(T, B, F\)"):
        nb.bptt(cell, params, x[:, 0], y)
    with pytest.raises(ValueError, match=r"class targets must be in \[0, 3\)"):
        nb.bptt(cell, params, x, y + 3)
    with pytest.raises(ValueError, match=r"state0\[1\] must have shape \(2, 4\)"):
        nb.bptt(cell, params, x, y, state0=(state0[0], state0[1][:, :2]))
    with pytest.raises(ValueError, match="truncate must be a positive"):
        nb.bptt(cell, params, x, y, truncate=0)
    with pytest.raises(ValueError, match="unknown nonlinearity"):
        nb.Elman(H, "swish")


def test_cell_from_layer_and_params_from_torch_round_trip() -> None:
    for case, (cell, factory) in CASES.items():
        layer = factory().double()
        assert nb.cell_from_layer(layer) == cell, case
        params = nb.params_from_torch(layer)
        assert set(params) == set(cell.parameter_shapes(IN)), case
    with pytest.raises(ValueError, match="one layer in one direction"):
        nb.cell_from_layer(rnnkit.GRU(IN, H, num_layers=2))
    with pytest.raises(ValueError, match="default gate activations"):
        nb.cell_from_layer(rnnkit.LSTM(IN, H, recurrent_activation="hard_sigmoid"))
