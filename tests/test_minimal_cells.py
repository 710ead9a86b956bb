"""MGU, IndRNN, minGRU and minLSTM: golden values by hand, layer == the cell stepped by hand (lengths, depth,
direction), gradcheck, the NumPy BPTT (finite differences and autograd), names, init, engines, export."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import rnnkit
from rnnkit import numpy_bptt as nb
from rnnkit.cells import IndRNNCell, MGUCell, MinGRUCell, MinLSTMCell
from rnnkit.engines import ENGINES, select_engine
from rnnkit.rnn import LAYERS, make_layer

D = torch.float64
NAMES = ["mgu", "indrnn", "mingru", "minlstm"]


def sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def t(*rows: float) -> torch.Tensor:
    return torch.tensor([list(rows)], dtype=D)


def set_params(module: torch.nn.Module, **values: list) -> None:
    with torch.no_grad():
        for name, v in values.items():
            getattr(module, name).copy_(torch.tensor(v, dtype=D))


# --------------------------------------------------------------------------------------------------
# 1. One step of a tiny case, worked out with pencil math from the papers' equations
def test_golden_mgu_by_hand():
    cell = MGUCell(1, 1, dtype=D)
    set_params(cell, weight_ih=[[0.3], [0.7]], weight_hh=[[0.5], [-0.6]], bias_ih=[0.1, -0.1], bias_hh=[0.05, 0.3])
    x, h0 = 2.0, -0.5
    f = sig(0.3 * x + 0.1 + 0.5 * h0 + 0.05)  # f_t = σ(W_f x + U_f h + b_f)
    n = math.tanh(0.7 * x - 0.1 + (-0.6) * (f * h0) + 0.3)  # h̃_t = tanh(W_h x + U_h (f ⊙ h) + b_h)
    h = (1 - f) * h0 + f * n
    assert cell(t(x), t(h0)).item() == pytest.approx(h, abs=1e-14)
    _, gates = cell.step(t(x), (t(h0),))
    assert gates["f"].item() == pytest.approx(f, abs=1e-14) and gates["n"].item() == pytest.approx(n, abs=1e-14)


def test_golden_indrnn_by_hand():
    """Two units, each sees only its own past: unit 0 stays positive, unit 1 is cut by the ReLU."""
    cell = IndRNNCell(2, 2, dtype=D)
    set_params(
        cell, weight_ih=[[0.5, -0.25], [1.0, 0.5]], weight_hh=[0.9, 0.4], bias_ih=[0.1, 0.0], bias_hh=[0.0, -0.2]
    )
    x, h0 = (1.0, 2.0), (0.3, -1.0)
    h_0 = max(0.0, 0.5 * 1.0 - 0.25 * 2.0 + 0.1 + 0.9 * 0.3)  # 0.37
    h_1 = max(0.0, 1.0 * 1.0 + 0.5 * 2.0 - 0.2 + 0.4 * -1.0)  # 1.4
    got = cell(t(*x), t(*h0))[0]
    assert got.tolist() == pytest.approx([h_0, h_1], abs=1e-14)
    h0 = (0.3, -5.0)  # now unit 1's pre-activation is 1.8 - 2.0 < 0
    assert cell(t(*x), t(*h0))[0].tolist() == pytest.approx([h_0, 0.0], abs=1e-14)
    tanh_cell = IndRNNCell(2, 2, activation="tanh", dtype=D)
    tanh_cell.load_state_dict(cell.state_dict())
    assert tanh_cell(t(*x), t(0.3, -1.0))[0, 1].item() == pytest.approx(math.tanh(1.4), abs=1e-14)


def test_golden_mingru_by_hand():
    cell = MinGRUCell(1, 1, dtype=D)
    set_params(cell, weight_ih=[[0.8], [-1.5]], bias_ih=[-0.2, 0.4])
    x, h0 = 1.5, 0.25
    z = sig(0.8 * x - 0.2)  # z_t = σ(Linear_z(x_t)): no h in the gate
    h_tilde = -1.5 * x + 0.4  # h̃_t = Linear_h(x_t): no activation
    h = (1 - z) * h0 + z * h_tilde
    assert cell(t(x), t(h0)).item() == pytest.approx(h, abs=1e-14)


def test_golden_minlstm_by_hand():
    cell = MinLSTMCell(1, 1, dtype=D)
    set_params(cell, weight_ih=[[0.8], [-0.3], [2.0]], bias_ih=[0.1, 0.2, -0.5])
    x, h0 = 1.5, -0.75
    f, i = sig(0.8 * x + 0.1), sig(-0.3 * x + 0.2)
    f_, i_ = f / (f + i), i / (f + i)  # the paper's normalisation
    h = f_ * h0 + i_ * (2.0 * x - 0.5)
    assert cell(t(x), t(h0)).item() == pytest.approx(h, abs=1e-14)
    _, gates = cell.step(t(x), (t(h0),))
    assert gates["f"].item() == pytest.approx(f_, abs=1e-14) and gates["i"].item() == pytest.approx(i_, abs=1e-14)
    # gates that underflow together (σ(-200) = 0 in float32) still share the step evenly: no 0 / 0
    cell32 = MinLSTMCell(1, 1)
    set_params(cell32, weight_ih=[[0.0], [0.0], [1.0]], bias_ih=[-200.0, -200.0, 0.0])
    assert cell32(torch.tensor([[1.0]]), torch.tensor([[3.0]])).item() == pytest.approx(2.0)


# --------------------------------------------------------------------------------------------------
# 2. A layer equals the cell stepped by hand, sequence by sequence, cut to each sequence's length
def layer_of(name: str, F: int, H: int, **kw) -> rnnkit.Recurrent:
    return make_layer(name, F, H, dtype=D, **kw)


def by_hand(layer: rnnkit.Recurrent, x: torch.Tensor, h0: torch.Tensor, lengths: list[int]):
    """Every sequence on its own, truncated to its length (so no padding rule is involved): per layer and
    direction the cell's step in a Python loop, the reverse direction on the reversed sequence."""
    T, B, _ = x.shape
    D_ = layer.num_directions
    out = torch.zeros(T, B, D_ * layer.hidden_size, dtype=D)
    finals = torch.zeros_like(h0)
    for b in range(B):
        inp = x[: lengths[b], b]  # (L, F)
        for l in range(layer.num_layers):
            outs = []
            for d in range(D_):
                k = l * D_ + d
                cell, w = layer.cells[k], layer.weights(k)
                h, seq = h0[k, b : b + 1], []
                for x_t in inp.flip(0) if d else inp:
                    (h,), _ = cell.step(x_t[None], (h,), w)
                    seq.append(h[0])
                finals[k, b] = h[0]
                seq = torch.stack(seq)
                outs.append(seq.flip(0) if d else seq)
            inp = torch.cat(outs, dim=-1)
        out[: lengths[b], b] = inp
    return out, finals


@pytest.mark.parametrize("engine", ["reference", "auto"])
@pytest.mark.parametrize("name", NAMES)
def test_layer_equals_cell_stepped_by_hand(name: str, engine: str):
    layer = layer_of(name, 3, 4, num_layers=2, bidirectional=True, engine=engine)
    x, h0 = torch.randn(5, 3, 3, dtype=D), torch.randn(4, 3, 4, dtype=D)
    lengths = [5, 2, 4]
    out, hn = layer(x, h0, lengths=lengths)
    want_out, want_hn = by_hand(layer, x, h0, lengths)
    torch.testing.assert_close(out, want_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hn, want_hn, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_return_gates_are_the_cells(name: str):
    layer = layer_of(name, 2, 3, engine="reference")
    x = torch.randn(4, 1, 2, dtype=D)
    _, _, gates = layer(x, return_gates=True)
    cell, w = layer.cells[0], layer.weights(0)
    assert tuple(gates) == cell.gate_names
    h = torch.zeros(1, 3, dtype=D)
    for s in range(4):
        (h,), g = cell.step(x[s], (h,), w)
        for n in cell.gate_names:
            torch.testing.assert_close(gates[n][0, s], g[n], rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------
# 3. gradcheck in float64: every parameter, the input and the initial state, with padding and both directions
@pytest.mark.parametrize("engine", ["reference", "auto"])
@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(name: str, engine: str):
    layer = layer_of(name, 2, 3, num_layers=2, bidirectional=True, engine=engine)
    names = [n for n, _ in layer.named_parameters()]
    x = torch.randn(4, 2, 2, dtype=D, requires_grad=True)
    h0 = torch.randn(4, 2, 3, dtype=D, requires_grad=True)
    lengths = torch.tensor([4, 2])

    def f(x, h0, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (x, h0), {"lengths": lengths})

    ps = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    assert torch.autograd.gradcheck(f, (x, h0, *ps), eps=1e-6, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# 4. Parameters, init, names, errors
def test_parameter_names_and_shapes():
    sd = {n: tuple(p.shape) for n, p in rnnkit.MGU(3, 4).named_parameters()}
    assert sd == {"weight_ih_l0": (8, 3), "weight_hh_l0": (8, 4), "bias_ih_l0": (8,), "bias_hh_l0": (8,)}
    sd = {n: tuple(p.shape) for n, p in rnnkit.IndRNN(3, 4, bidirectional=True).named_parameters()}
    assert sd["weight_hh_l0"] == (4,) and sd["weight_hh_l0_reverse"] == (4,) and sd["weight_ih_l0"] == (4, 3)
    assert {n: tuple(p.shape) for n, p in rnnkit.MinGRU(3, 4).named_parameters()} == {
        "weight_ih_l0": (8, 3),
        "bias_ih_l0": (8,),
    }
    assert [n for n, _ in rnnkit.MinLSTM(3, 4, bias=False).named_parameters()] == ["weight_ih_l0"]
    assert rnnkit.MinLSTM(3, 4).weight_ih_l0.shape == (12, 3)


def test_init():
    H = 16
    cell = IndRNNCell(5, H)
    u = cell.weight_hh.detach()
    assert float(u.min()) >= 0 and float(u.max()) <= 1  # U(0, 1) without max_steps
    bound = 2 ** (1 / 50)
    u = IndRNNCell(5, H, max_steps=50).weight_hh.detach()
    assert float(u.min()) >= 0 and float(u.max()) <= bound
    for c in (cell, MGUCell(5, H), MinGRUCell(5, H), MinLSTMCell(5, H)):
        assert float(c.weight_ih.detach().abs().max()) <= 1 / math.sqrt(H)
    with pytest.raises(ValueError, match="max_steps must be a positive number of time steps or None, got 0"):
        IndRNNCell(5, H, max_steps=0)
    layer = rnnkit.IndRNN(5, H, max_steps=50, num_layers=2)
    assert float(layer.weight_hh_l1.detach().max()) <= bound
    layer.reset_parameters()
    assert float(layer.weight_hh_l1.detach().min()) >= 0 and float(layer.weight_hh_l1.detach().max()) <= bound


def test_cell_names_everywhere():
    for name, cls in zip(NAMES, (rnnkit.MGU, rnnkit.IndRNN, rnnkit.MinGRU, rnnkit.MinLSTM)):
        assert LAYERS[name] is cls and isinstance(make_layer(name, 3, 4), cls)
    from rnnkit.models import LanguageModel, ModelConfig

    for name in NAMES:
        assert ModelConfig(cell=name).cell == name
        model = LanguageModel(7, name, hidden_size=6).eval()
        tokens = torch.randint(7, (2, 5))
        logits, _ = model(tokens)
        # generation, one token at a time, gives the same logits as the whole sequence
        state, steps = None, []
        for s in range(5):
            step_logits, state = model.step(tokens[:, s], state)
            steps.append(step_logits)
        torch.testing.assert_close(torch.stack(steps, 1), logits, rtol=1e-5, atol=1e-5)


def test_engines_pick_or_refuse():
    x = torch.randn(20, 2, 3)

    class MyMGU(MGUCell):  # a subclass may change the equations: auto runs the reference loop, fused says why
        pass

    layer = rnnkit.Recurrent(MyMGU, 3, 4)
    assert select_engine(layer, x, False).name == "reference"
    layer.engine = "fused"
    with pytest.raises(ValueError, match="engine='fused' cannot run this call: no fused kernel for MyMGU"):
        layer(x)
    for name in ("indrnn", "mgu", "mingru", "minlstm"):  # no Triton kernels
        assert "no Triton kernel" in ENGINES["triton"].unsupported(make_layer(name, 3, 4), x, False)
    for name in ("mingru", "minlstm"):  # the scan
        assert select_engine(make_layer(name, 3, 4), x, False).name == "fused"
    for name in ("indrnn", "mgu"):  # the C kernels, where built
        if ENGINES["fused"].unsupported(make_layer(name, 3, 4), x, False) is None:
            assert select_engine(make_layer(name, 3, 4), x, False).name == "fused"
    with pytest.raises(ValueError, match="is not a named activation"):  # a callable: no derivative by hand
        rnnkit.IndRNN(3, 4, activation=torch.nn.functional.silu, engine="fused")(x)
    with pytest.raises(ValueError, match="engine='torch' cannot run this call"):
        rnnkit.MinGRU(3, 4, engine="torch")(x)


def test_stepper_equals_layer():
    for name in NAMES:
        layer = layer_of(name, 3, 4, num_layers=2)
        step = layer.stepper()
        x = torch.randn(6, 2, 3, dtype=D)
        out, hn = layer(x)
        state = None
        for s in range(6):
            y, state = step(x[s], state)
            torch.testing.assert_close(y, out[s], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(state, hn, rtol=1e-12, atol=1e-12)


def test_costs_count_the_parameters():
    from rnnkit.costs import layer_cost

    for name in NAMES:
        for bias in (True, False):
            layer = make_layer(name, 5, 7, bias=bias, bidirectional=True)
            assert layer_cost(layer).params == sum(p.numel() for p in layer.parameters()), (name, bias)


def test_onnx_export_matches(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from rnnkit.export import to_onnx

    for name in NAMES:
        layer = make_layer(name, 3, 4, num_layers=2, bidirectional=True).eval()
        path = tmp_path / f"{name}.onnx"
        to_onnx(layer, torch.randn(4, 2, 3), path, lengths=torch.tensor([4, 3]))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x, lengths = torch.randn(6, 3, 3), torch.tensor([6, 2, 5])
        got = session.run(None, {"input": x.numpy(), "lengths": lengths.numpy()})
        with torch.no_grad():
            out, hn = layer(x, lengths=lengths)
        np.testing.assert_allclose(got[0], out.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(got[1], hn.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)


# --------------------------------------------------------------------------------------------------
# 5. The NumPy BPTT: finite differences, and equality with autograd on the rnnkit layer
T, B, IN, H, O = 5, 2, 3, 4, 3
NUMPY_CASES = {
    "mgu": (nb.MGU(H), lambda: rnnkit.MGU(IN, H)),
    "mgu-nobias": (nb.MGU(H, bias=False), lambda: rnnkit.MGU(IN, H, bias=False)),
    "indrnn": (nb.IndRNN(H), lambda: rnnkit.IndRNN(IN, H)),
    "indrnn-tanh": (nb.IndRNN(H, "tanh"), lambda: rnnkit.IndRNN(IN, H, activation="tanh")),
    "mingru": (nb.MinGRU(H), lambda: rnnkit.MinGRU(IN, H)),
    "minlstm": (nb.MinLSTM(H), lambda: rnnkit.MinLSTM(IN, H)),
    "minlstm-nobias": (nb.MinLSTM(H, bias=False), lambda: rnnkit.MinLSTM(IN, H, bias=False)),
}


def random_problem(cell, head: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = {n: rng.uniform(-0.8, 0.8, size=s) for n, s in cell.parameter_shapes(IN).items()}
    params["V"], params["c"] = rng.normal(size=(O, H)), rng.normal(size=O)
    x = rng.normal(size=(T, B, IN))
    y = rng.integers(0, O, size=(T, B)) if head == "softmax" else rng.normal(size=(T, B, O))
    return params, x, y, (rng.normal(scale=0.5, size=(B, H)),)


def central_difference(f, a: np.ndarray, eps: float = 1e-6) -> np.ndarray:
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


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return float(np.linalg.norm(a - b) / scale) if scale > 0 else 0.0


@pytest.mark.parametrize("head", ["softmax", "mse"])
@pytest.mark.parametrize("case", list(NUMPY_CASES))
def test_numpy_bptt_matches_finite_differences(case: str, head: str):
    cell = NUMPY_CASES[case][0]
    params, x, y, state0 = random_problem(cell, head)
    state0 = (state0[0].copy(),)
    result = nb.bptt(cell, params, x, y, head=head, state0=state0)

    def loss() -> float:
        return nb.loss(cell, params, x, y, head=head, state0=state0)

    for name, value in params.items():
        assert rel_err(central_difference(loss, value), result.grads[name]) < 1e-6, name
    assert rel_err(central_difference(loss, state0[0]), result.dstate0[0]) < 1e-6, "state0"
    assert rel_err(central_difference(loss, x), result.dx) < 1e-6, "x"


@pytest.mark.parametrize("engine", ["reference", "auto"])
@pytest.mark.parametrize("case", list(NUMPY_CASES))
def test_numpy_bptt_matches_autograd_on_the_layer(case: str, engine: str):
    cell, make = NUMPY_CASES[case]
    params, x, y, state0 = random_problem(cell, "softmax", seed=1)
    layer = make().double()
    layer.engine = engine
    assert type(nb.cell_from_layer(layer)) is type(cell)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            p.copy_(torch.from_numpy(params[name.removesuffix("_l0")]))
    xt = torch.tensor(x, requires_grad=True)
    h0 = torch.tensor(state0[0][None], requires_grad=True)
    V, c = (torch.tensor(params[n], requires_grad=True) for n in ("V", "c"))
    out, hn = layer(xt, h0)
    z = out @ V.T + c
    loss = torch.nn.functional.cross_entropy(z.reshape(-1, O), torch.tensor(y).reshape(-1), reduction="sum")
    loss.backward()

    result = nb.bptt(cell, params, x, y, state0=state0)
    tol = {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(result.states[0], out.detach().numpy(), **tol)
    np.testing.assert_allclose(result.states[0][-1], hn[0].detach().numpy(), **tol)
    assert result.loss == pytest.approx(loss.item(), rel=1e-10)
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(result.grads[name.removesuffix("_l0")], p.grad.numpy(), **tol, err_msg=name)
    np.testing.assert_allclose(result.grads["V"], V.grad.numpy(), **tol)
    np.testing.assert_allclose(result.dx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(result.dstate0[0], h0.grad[0].numpy(), **tol)


def test_recurrent_max_keeps_u_inside_the_bound():
    """IndRNN's constraint (Li et al. 2018): constrain_() clips |u| of every layer and direction to recurrent_max
    and leaves every other parameter alone; without recurrent_max it changes nothing; bad bounds fail in one line."""
    torch.manual_seed(15)
    layer = rnnkit.IndRNN(3, 6, num_layers=2, bidirectional=True, recurrent_max=0.5)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 2)
    before = {n: p.detach().clone() for n, p in layer.named_parameters()}
    rnnkit.constrain(torch.nn.Sequential(layer))
    for name, p in layer.named_parameters():
        if name.startswith("weight_hh"):
            torch.testing.assert_close(p.detach(), before[name].clamp(-0.5, 0.5), rtol=0, atol=0)
            assert float(p.detach().abs().max()) == 0.5  # some entries were outside the bound
        else:
            torch.testing.assert_close(p.detach(), before[name], rtol=0, atol=0)
    free = rnnkit.IndRNN(3, 6)
    with torch.no_grad():
        free.weight_hh_l0.fill_(3.0)
    free.constrain_()
    assert float(free.weight_hh_l0.detach().min()) == 3.0
    assert "recurrent_max=0.5" in repr(layer)
    for bad in (0, -1.0, float("inf"), True):
        with pytest.raises(ValueError, match="recurrent_max must be a positive bound on \\|u\\| or None"):
            IndRNNCell(3, 4, recurrent_max=bad)
