"""Layer-normalised LSTM and GRU (Ba, Kiros & Hinton 2016): golden values worked out by hand, the layer against
the cell stepped by hand, gradcheck, lengths / both directions / depth, the NumPy BPTT (finite differences and
autograd), every engine against the reference in float64, the cost model and the ONNX export."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import rnnkit
from rnnkit import numpy_bptt as nb
from rnnkit.cells import LayerNormGRUCell, LayerNormLSTMCell
from rnnkit.costs import layer_cost
from rnnkit.engines import ENGINES

D = torch.float64
IN, HID = 3, 5
KINDS = ["lnlstm", "lngru", "lnlstm_nobias", "lngru_nobias"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make(kind: str, dtype: torch.dtype = D, input_size: int = IN, hidden: int = HID, **kw) -> rnnkit.Recurrent:
    cls = rnnkit.LayerNormLSTM if kind.startswith("lnlstm") else rnnkit.LayerNormGRU
    if kind.endswith("_nobias"):
        kw["bias"] = False
    layer = cls(input_size, hidden, dtype=dtype, **kw)
    with torch.no_grad():  # gains and shifts away from 1 and 0, so that a mix-up of them shows
        for name, p in layer.named_parameters():
            if name.startswith("ln_") or "bias" in name:
                p.copy_(torch.empty_like(p).uniform_(0.5, 1.5) if "weight" in name else torch.randn_like(p) * 0.3)
    return layer


# --------------------------------------------------------------------------------------------------
# Golden values: one step of a tiny cell, computed with plain Python arithmetic
def ln(v: list[float], gain: list[float], shift: list[float]) -> list[float]:
    """Layer norm by hand: (v − mean) / sqrt(variance + 1e-5), then gain and shift."""
    mu = sum(v) / len(v)
    var = sum((a - mu) ** 2 for a in v) / len(v)
    return [g * (a - mu) / math.sqrt(var + 1e-5) + s for a, g, s in zip(v, gain, shift)]


def sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def fill(cell: torch.nn.Module, values: dict[str, list]) -> None:
    with torch.no_grad():
        for name, v in values.items():
            getattr(cell, name).copy_(torch.tensor(v, dtype=D))


def test_golden_lstm_step_by_hand() -> None:
    """F = 1, H = 2: the eight gate pre-activations of x and of h are each normalised over all eight."""
    cell = LayerNormLSTMCell(1, 2, dtype=D)
    W_ih = [[0.1 * (k + 1)] for k in range(8)]
    W_hh = [[0.2 * k - 0.5, 0.3 - 0.1 * k] for k in range(8)]
    a_x, b_x = [0.5 + 0.1 * k for k in range(8)], [0.05 * k for k in range(8)]
    a_h, b_h = [1.5 - 0.1 * k for k in range(8)], [-0.02 * k for k in range(8)]
    a_c, b_c = [0.7, 1.3], [0.1, -0.2]
    fill(cell, dict(weight_ih=W_ih, weight_hh=W_hh, bias_ih=b_x, bias_hh=b_h, ln_ih_weight=a_x, ln_hh_weight=a_h,
                    ln_c_weight=a_c, ln_c_bias=b_c))  # fmt: skip
    x, h0, c0 = 2.0, [0.5, -0.5], [0.3, -0.2]
    zx = ln([w[0] * x for w in W_ih], a_x, b_x)
    zh = ln([w[0] * h0[0] + w[1] * h0[1] for w in W_hh], a_h, b_h)
    a = [p + q for p, q in zip(zx, zh)]
    i, f = [sig(v) for v in a[0:2]], [sig(v) for v in a[2:4]]
    g, o = [math.tanh(v) for v in a[4:6]], [sig(v) for v in a[6:8]]
    c = [f[u] * c0[u] + i[u] * g[u] for u in range(2)]
    h = [o[u] * math.tanh(v) for u, v in enumerate(ln(c, a_c, b_c))]
    h1, c1 = cell(torch.tensor([[x]], dtype=D), (torch.tensor([h0], dtype=D), torch.tensor([c0], dtype=D)))
    torch.testing.assert_close(h1[0], torch.tensor(h, dtype=D), rtol=0, atol=1e-12)
    torch.testing.assert_close(c1[0], torch.tensor(c, dtype=D), rtol=0, atol=1e-12)


def test_golden_gru_step_by_hand() -> None:
    cell = LayerNormGRUCell(1, 2, dtype=D)
    W_ih = [[0.3 - 0.1 * k] for k in range(6)]
    W_hh = [[0.1 * k, -0.2 * k + 0.4] for k in range(6)]
    a_x, b_x = [1.0 + 0.1 * k for k in range(6)], [0.1 - 0.03 * k for k in range(6)]
    a_h, b_h = [0.8 + 0.05 * k for k in range(6)], [0.02 * k for k in range(6)]
    fill(cell, dict(weight_ih=W_ih, weight_hh=W_hh, bias_ih=b_x, bias_hh=b_h, ln_ih_weight=a_x, ln_hh_weight=a_h))
    x, h0 = -1.5, [0.4, 0.9]
    zx = ln([w[0] * x for w in W_ih], a_x, b_x)
    zh = ln([w[0] * h0[0] + w[1] * h0[1] for w in W_hh], a_h, b_h)
    r = [sig(zx[u] + zh[u]) for u in range(2)]
    z = [sig(zx[2 + u] + zh[2 + u]) for u in range(2)]
    n = [math.tanh(zx[4 + u] + r[u] * zh[4 + u]) for u in range(2)]
    h = [(1 - z[u]) * n[u] + z[u] * h0[u] for u in range(2)]
    h1 = cell(torch.tensor([x], dtype=D), torch.tensor(h0, dtype=D))  # unbatched, as torch.nn.GRUCell
    torch.testing.assert_close(h1, torch.tensor(h, dtype=D), rtol=0, atol=1e-12)


def test_init_and_names() -> None:
    lstm, gru = rnnkit.LayerNormLSTM(3, 4, forget_bias=1.0), rnnkit.LayerNormGRU(3, 4, bias=False)
    assert [n for n, _ in lstm.named_parameters()] == [
        "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "ln_ih_weight_l0", "ln_hh_weight_l0",
        "ln_c_weight_l0", "ln_c_bias_l0",
    ]  # fmt: skip
    assert [n for n, _ in gru.named_parameters()] == ["weight_ih_l0", "weight_hh_l0", "ln_ih_weight_l0",
                                                      "ln_hh_weight_l0"]  # fmt: skip
    for name in ("ln_ih_weight_l0", "ln_hh_weight_l0", "ln_c_weight_l0"):
        assert torch.equal(getattr(lstm, name), torch.ones_like(getattr(lstm, name)))
    assert torch.equal(lstm.bias_hh_l0, torch.zeros(16)) and torch.equal(lstm.ln_c_bias_l0, torch.zeros(4))
    assert torch.equal(lstm.bias_ih_l0, torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 8))  # forget_bias on f
    bound = 1 / math.sqrt(4)
    for W in (lstm.weight_ih_l0, lstm.weight_hh_l0, gru.weight_hh_l0):
        assert W.abs().max() <= bound and W.std() > bound / 4  # torch's U(-1/√H, 1/√H)
    with pytest.raises(ValueError, match="forget_bias needs bias=True"):
        rnnkit.LayerNormLSTM(3, 4, bias=False, forget_bias=1.0)
    assert rnnkit.rnn.make_layer("lnlstm", 3, 4).cells[0].gate_names == ("i", "f", "g", "o", "c")
    assert isinstance(rnnkit.rnn.make_layer("lngru", 3, 4), rnnkit.LayerNormGRU)


def test_cost_model_counts_every_parameter() -> None:
    for kind in KINDS:
        layer = make(kind, input_size=7, hidden=6, num_layers=2, bidirectional=True)
        cost = layer_cost(layer)
        assert cost.params == sum(p.numel() for p in layer.parameters()), kind
    # per token of one cell: 2·(4H·F + 4H·H) matmul FLOPs; three LNs over 4H, 4H, H features at 7 each, + 13 H
    assert layer_cost(rnnkit.LayerNormLSTM(3, 4)).as_dict()["pointwise_flops"] == 7 * 36 + 13 * 4
    assert layer_cost(rnnkit.LayerNormGRU(3, 4)).as_dict()["matmul_flops"] == 2 * (12 * 3 + 12 * 4)


# --------------------------------------------------------------------------------------------------
# The layer against the cell stepped by hand; gradcheck; lengths, directions, depth
def cell_of(layer: rnnkit.Recurrent, k: int) -> torch.nn.Module:
    """A standalone cell holding the weights of the layer's cell k."""
    cell = type(layer.cells[k])(layer.cells[k].input_size, layer.hidden_size, layer.bias, dtype=D)
    cell.load_state_dict({n: t for n, t in vars(layer.weights(k)).items() if t is not None})
    return cell


def step_by_hand(cell: torch.nn.Module, x: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
    outs = []
    for x_t in x:
        new = cell(x_t, state if len(state) > 1 else state[0])
        state = new if isinstance(new, tuple) else (new,)
        outs.append(state[0])
    return torch.stack(outs), state


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("kind", KINDS)
def test_layer_equals_the_cell_stepped_by_hand(kind: str, engine: str) -> None:
    torch.manual_seed(1)
    layer = make(kind, engine=engine)
    x = torch.randn(6, 2, IN, dtype=D)
    reason = ENGINES[engine].unsupported(layer, x, False)
    if reason is not None:
        pytest.skip(reason)
    hx = tuple(torch.randn(1, 2, HID, dtype=D) for _ in layer.cells[0].state_sizes)
    out, final = layer(x, hx if len(hx) > 1 else hx[0])
    want_out, want_final = step_by_hand(cell_of(layer, 0), x, tuple(h[0] for h in hx))
    torch.testing.assert_close(out, want_out, rtol=0, atol=1e-12)
    for got, want in zip(final if isinstance(final, tuple) else (final,), want_final, strict=True):
        torch.testing.assert_close(got[0], want, rtol=0, atol=1e-12)


def test_lengths_directions_and_depth_on_the_reference_engine() -> None:
    """Each sequence alone (cut to its length), the reverse direction on the flipped sequence, and layer 2
    reading layer 1's concatenated outputs: built from standalone cells, against one two-layer bidirectional call."""
    torch.manual_seed(2)
    layer = make("lnlstm", num_layers=2, bidirectional=True, engine="reference")
    T, B = 5, 3
    x, lengths = torch.randn(T, B, IN, dtype=D), torch.tensor([5, 2, 4])
    out, (h_n, c_n) = layer(x, lengths=lengths)
    zeros = (torch.zeros(1, HID, dtype=D), torch.zeros(1, HID, dtype=D))
    for b, n in enumerate(lengths.tolist()):
        inp = x[:n, b : b + 1]
        for l in range(2):
            fwd, s_f = step_by_hand(cell_of(layer, 2 * l), inp, zeros)
            bwd, s_b = step_by_hand(cell_of(layer, 2 * l + 1), inp.flip(0), zeros)
            inp = torch.cat([fwd, bwd.flip(0)], dim=-1)
            for k, s in enumerate((s_f, s_b)):
                torch.testing.assert_close(h_n[2 * l + k, b], s[0][0], rtol=0, atol=1e-12)
                torch.testing.assert_close(c_n[2 * l + k, b], s[1][0], rtol=0, atol=1e-12)
        torch.testing.assert_close(out[:n, b : b + 1], inp, rtol=0, atol=1e-12)
        assert torch.equal(out[n:, b], torch.zeros_like(out[n:, b]))  # past its end a sequence emits zeros


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_the_cell(kind: str) -> None:
    torch.manual_seed(3)
    cell = cell_of(make(kind, input_size=2, hidden=3), 0)
    x = torch.randn(2, 2, dtype=D, requires_grad=True)
    state = tuple(torch.randn(2, 3, dtype=D, requires_grad=True) for _ in cell.state_sizes)
    names = [n for n, _ in cell.named_parameters()]

    def f(x, *args):
        st, ps = args[: len(state)], args[len(state) :]
        w = rnnkit.cells.base.Weights({n: None for n in cell.parameter_shapes()} | dict(zip(names, ps, strict=True)))
        return cell.step(x, st, w)[0]

    assert torch.autograd.gradcheck(f, (x, *state, *cell.parameters()))


@pytest.mark.parametrize("engine", ["reference", "fused"])
@pytest.mark.parametrize("kind", ["lnlstm", "lngru"])
def test_gradcheck_the_layer(kind: str, engine: str) -> None:
    """Two layers, both directions, lengths: every input, state and parameter, on each engine."""
    torch.manual_seed(4)
    layer = make(kind, input_size=2, hidden=3, num_layers=2, bidirectional=True, engine=engine)
    x = torch.randn(4, 2, 2, dtype=D, requires_grad=True)
    reason = ENGINES[engine].unsupported(layer, x, False)
    if reason is not None:
        pytest.skip(reason)
    hx = tuple(torch.randn(4, 2, 3, dtype=D, requires_grad=True) for _ in layer.cells[0].state_sizes)
    names = [n for n, _ in layer.named_parameters()]
    lens = torch.tensor([4, 3])

    def f(x, *args):
        hs, ps = args[: len(hx)], args[len(hx) :]
        args = (x, hs if len(hs) > 1 else hs[0])
        out, final = torch.func.functional_call(layer, dict(zip(names, ps, strict=True)), args, {"lengths": lens})
        return out, *(final if isinstance(final, tuple) else (final,))

    assert torch.autograd.gradcheck(f, (x, *hx, *layer.parameters()), check_batched_grad=False)


# --------------------------------------------------------------------------------------------------
# The fast engines give the reference engine's numbers (float64): outputs, states, gates, every gradient
def run_and_grad(layer: rnnkit.Recurrent, engine: str, x, hx, lengths, gates: bool) -> list[torch.Tensor]:
    layer.engine = engine
    x = x.clone().requires_grad_()
    hx = tuple(h.clone().requires_grad_() for h in hx)
    res = layer(x, hx if len(hx) > 1 else hx[0], lengths=lengths, return_gates=gates)
    out, state = res[0], res[1] if isinstance(res[1], tuple) else (res[1],)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    loss = (out * weights).sum() + sum((s**2).sum() for s in state)
    if gates:
        loss = loss + sum(0.3 * (g * g).sum() for g in res[2].values())
    layer.zero_grad()
    loss.backward()
    grads = [x.grad, *(h.grad for h in hx), *(p.grad for p in layer.parameters())]
    return [out, *state, *(res[2].values() if gates else ()), *grads]


@pytest.mark.parametrize("engine", [e for e in ENGINES if e != "reference"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layers,bidirectional,lengths,gates", list(itertools.product([1, 2], *[[False, True]] * 3)))
def test_engine_matches_reference_float64(kind, engine, layers, bidirectional, lengths, gates) -> None:
    torch.manual_seed(5)
    layer = make(kind, num_layers=layers, bidirectional=bidirectional)
    T, B = 6, 3
    x = torch.randn(T, B, IN, dtype=D)
    reason = ENGINES[engine].unsupported(layer, x, gates)
    if reason is not None:
        pytest.skip(reason)
    hx = tuple(torch.randn(layers * (1 + bidirectional), B, HID, dtype=D) for _ in layer.cells[0].state_sizes)
    lens = torch.tensor([6, 2, 5]) if lengths else None
    ref = run_and_grad(layer, "reference", x, hx, lens, gates)
    got = run_and_grad(layer, engine, x, hx, lens, gates)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["lnlstm", "lngru"])
def test_fused_float32_and_wide_layers_match_reference(kind: str) -> None:
    """float32, a hidden size that is not a whole number of vectors and a batch split over threads."""
    torch.manual_seed(6)
    layer = make(kind, dtype=torch.float32, input_size=7, hidden=37)
    x = torch.randn(9, 13, 7)
    if ENGINES["fused"].unsupported(layer, x, False) is not None:
        pytest.skip("no fused kernel")
    hx = tuple(torch.randn(1, 13, 37) for _ in layer.cells[0].state_sizes)
    lens = torch.randint(1, 10, (13,))
    before = torch.ops.rnnkit_c.set_min_step_work(0)  # every thread, even for this small problem
    torch.set_num_threads(2)
    try:
        ref = run_and_grad(layer, "reference", x, hx, lens, True)
        got = run_and_grad(layer, "fused", x, hx, lens, True)
    finally:
        torch.ops.rnnkit_c.set_min_step_work(before)
        torch.set_num_threads(1)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-4, atol=2e-5)


def test_double_backward_and_bf16_autocast_on_the_fused_engine() -> None:
    torch.manual_seed(7)
    layer = make("lnlstm", input_size=2, hidden=3)
    x = torch.randn(3, 2, 2, dtype=D, requires_grad=True)
    if ENGINES["fused"].unsupported(layer, x, False) is not None:
        pytest.skip("no fused kernel")
    grads = []
    for engine in ("reference", "fused"):
        layer.engine = engine
        (g,) = torch.autograd.grad(layer(x)[0].pow(2).sum(), x, create_graph=True)
        grads.append(torch.autograd.grad(g.pow(2).sum(), layer.weight_hh_l0)[0])
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-9, atol=1e-12)
    layer32 = make("lnlstm", dtype=torch.float32, engine="fused")
    x32 = torch.randn(4, 2, IN)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # float32 products in the kernels: the same as without
        out, _ = layer32(x32)
    layer32.engine = "reference"
    torch.testing.assert_close(out, layer32(x32)[0], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# The NumPy BPTT: finite differences, and equality with autograd on the rnnkit layer
NB = {
    "lnlstm": lambda: nb.LayerNormLSTM(4),
    "lngru": lambda: nb.LayerNormGRU(4),
    "lnlstm_nobias": lambda: nb.LayerNormLSTM(4, bias=False),
    "lngru_nobias": lambda: nb.LayerNormGRU(4, bias=False),
}


def problem(cell, seed: int):
    rng = np.random.default_rng(seed)
    params = {n: rng.uniform(-0.8, 0.8, size=s) for n, s in cell.parameter_shapes(3).items()}
    for n in params:
        if n.startswith("ln_") and n.endswith("weight"):
            params[n] = rng.uniform(0.5, 1.5, size=params[n].shape)
    params["V"], params["c"] = rng.normal(size=(3, 4)), rng.normal(size=3)
    x, y = rng.normal(size=(4, 2, 3)), rng.integers(0, 3, size=(4, 2))
    state0 = tuple(rng.normal(scale=0.5, size=(2, s)) for s in cell.state_sizes)
    return params, x, y, state0


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
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300))


@pytest.mark.parametrize("kind", list(NB))
def test_numpy_bptt_matches_finite_differences(kind: str) -> None:
    cell = NB[kind]()
    params, x, y, state0 = problem(cell, 0)
    state0 = [s.copy() for s in state0]
    result = nb.bptt(cell, params, x, y, state0=tuple(state0))

    def loss() -> float:
        return nb.loss(cell, params, x, y, state0=tuple(state0))

    for name, value in params.items():
        assert rel_err(central_difference(loss, value), result.grads[name]) < 1e-6, name
    for k, s in enumerate(state0):
        assert rel_err(central_difference(loss, s), result.dstate0[k]) < 1e-6, f"state0[{k}]"
    assert rel_err(central_difference(loss, x), result.dx) < 1e-6


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("kind", list(NB))
def test_numpy_bptt_matches_autograd_on_the_layer(kind: str, engine: str) -> None:
    cell = NB[kind]()
    params, x, y, state0 = problem(cell, 1)
    layer = make(kind, hidden=4, engine=engine)
    assert nb.cell_from_layer(layer) == cell
    assert set(nb.params_from_torch(layer)) == set(cell.parameter_shapes(3))
    with torch.no_grad():
        for name, p in layer.named_parameters():
            p.copy_(torch.from_numpy(params[name.removesuffix("_l0")]))
    xt = torch.tensor(x, requires_grad=True)
    if ENGINES[engine].unsupported(layer, xt, False) is not None:
        pytest.skip(f"engine {engine!r} cannot run it")
    hx = tuple(torch.tensor(s[None], requires_grad=True) for s in state0)
    V, c = (torch.tensor(params[n], requires_grad=True) for n in ("V", "c"))
    out, final = layer(xt, hx if len(hx) > 1 else hx[0])
    z = out @ V.T + c
    loss = torch.nn.functional.cross_entropy(z.reshape(-1, 3), torch.tensor(y).reshape(-1), reduction="sum")
    loss.backward()
    result = nb.bptt(cell, params, x, y, state0=state0)
    tol = {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(result.states[0], out.detach().numpy(), **tol)
    assert result.loss == pytest.approx(loss.item(), rel=1e-10)
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(result.grads[name.removesuffix("_l0")], p.grad.numpy(), **tol, err_msg=name)
    np.testing.assert_allclose(result.dx, xt.grad.numpy(), **tol)
    for k, s in enumerate(hx):
        np.testing.assert_allclose(result.dstate0[k], s.grad[0].numpy(), **tol)


# --------------------------------------------------------------------------------------------------
# ONNX: a Scan over the cell's step, with ONNX's LayerNormalization
@pytest.mark.parametrize("kind", KINDS)
def test_onnx_export_runs_the_same_numbers(kind: str, tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from rnnkit.export import to_onnx

    torch.manual_seed(8)
    layer = make(kind, dtype=torch.float32, num_layers=2, bidirectional=True).eval()
    x, lengths = torch.randn(4, 2, IN), torch.tensor([4, 3])
    path = tmp_path / "ln.onnx"
    to_onnx(layer, x, path, lengths=lengths)
    x, lengths = torch.randn(6, 3, IN), torch.tensor([6, 2, 5])
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy(), "lengths": lengths.numpy()}
    )
    with torch.no_grad():
        out, final = layer(x, lengths=lengths)
    want = [out, *(final if isinstance(final, tuple) else (final,))]
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# What switches on cell names: the inspect report reads the gate names from the cell
@pytest.mark.parametrize("cell, gates, kinds", [("lnlstm", "ifgoc", ["c", "h"]), ("lngru", "rzn", ["h"])])
def test_inspect_report_reads_the_cells_gates(cell: str, gates: str, kinds: list[str]) -> None:
    from rnnkit.data import Vocab
    from rnnkit.diagnostics.report import inspect_model
    from rnnkit.models import LanguageModel

    text = "layer norm keeps every gate in its working range. " * 3
    vocab = Vocab.from_text(text)
    d = inspect_model(LanguageModel(len(vocab), cell, 6, 2), vocab, text[:80], gradflow_steps=8).data
    for block in d["blocks"]:
        assert [g["name"] for g in block["gates"]] == list(gates)
        assert [s["kind"] for s in block["states"]] == kinds


# --------------------------------------------------------------------------------------------------
# The fused operator as torch sees it: opcheck, torch.compile without a graph break, the one-token stepper
def fused_or_skip(layer: rnnkit.Recurrent) -> None:
    reason = ENGINES["fused"].unsupported(layer, layer.weight_ih_l0, False)
    if reason is not None:
        pytest.skip(reason)


@pytest.mark.parametrize("kind", KINDS)
def test_opcheck(kind: str) -> None:
    """torch's own checks of the operator for these cells: schema, fake tensors, autograd, AOT dispatch."""
    from rnnkit.engines.fused import ops  # noqa: F401
    from rnnkit.engines.fused.specs import SPECS

    torch.manual_seed(9)
    lay = make(kind)
    fused_or_skip(lay)
    cell = lay.cells[0]
    spec = SPECS[type(cell)]
    config, params = spec.config_and_params(cell, lay.weights(0))
    x = torch.randn(4, 2, IN, dtype=D, requires_grad=True)
    state = [torch.randn(2, s, dtype=D, requires_grad=True) for s in cell.state_sizes]
    params = [p.detach().requires_grad_() for p in params]
    torch.library.opcheck(torch.ops.rnnkit.sequence.default,
                          (spec.name, config, x, state, params, torch.tensor([4, 2]), True, False, []))  # fmt: skip


@pytest.mark.parametrize("cell", ["lnlstm", "lngru"])
def test_compiled_language_model_equals_eager(cell: str) -> None:
    from rnnkit.models import LanguageModel

    torch.manual_seed(10)
    model = LanguageModel(11, cell, hidden_size=6, num_layers=2, input="embedding", embed_size=5, engine="fused")
    fused_or_skip(model.rnn)
    tokens = torch.randint(0, 11, (3, 7))
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")  # fullgraph: no graph break allowed
    results = []
    for m in (model, compiled):
        model.zero_grad()
        logits, _ = m(tokens)
        logits.square().mean().backward()
        results.append([logits.detach(), *(p.grad.clone() for p in model.parameters())])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_stepper_equals_the_sequence(kind: str) -> None:
    torch.manual_seed(11)
    layer = make(kind, num_layers=2, engine="reference")
    fused_or_skip(layer)
    x = torch.randn(6, 2, IN, dtype=D)
    hx = tuple(torch.randn(2, 2, HID, dtype=D) for _ in layer.cells[0].state_sizes)
    hx = hx if len(hx) > 1 else hx[0]
    with torch.no_grad():
        expected, expected_state = layer(x, hx)
    stepper, state = layer.stepper(), hx
    for t in range(6):
        y, state = stepper(x[t], state)
        torch.testing.assert_close(y, expected[t], rtol=0, atol=1e-12)
    for got, want in zip(state if isinstance(state, tuple) else (state,),
                         expected_state if isinstance(state, tuple) else (expected_state,), strict=True):  # fmt: skip
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("cell", "input_kind"), [("lnlstm", "onehot"), ("lngru", "embedding")])
def test_language_model_exports_one_token_steps(cell: str, input_kind: str, tmp_path) -> None:
    """``rnnkit export``'s writer checks each file against LanguageModel.step before writing it; the ONNX file
    is also run over a 10-token stream at batch 2 against the model."""
    import json

    ort = pytest.importorskip("onnxruntime")
    from rnnkit.data import Vocab
    from rnnkit.export.lm import export_language_model
    from rnnkit.models import LanguageModel

    torch.manual_seed(12)
    vocab = Vocab(list("abcdefgh"))
    model = LanguageModel(len(vocab), cell, hidden_size=7, num_layers=2, input=input_kind, embed_size=5).eval()
    path = export_language_model(model, vocab, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["rnnkit"])
    tokens = torch.randint(0, len(vocab), (2, 10))
    with torch.no_grad():
        want, _ = model(tokens)
    feeds = {s["input"]: np.zeros((s["shape"][0], 2, s["shape"][2]), np.float32) for s in meta["state"]}
    for t in range(10):
        logits, *states = session.run(None, {"token": tokens[:, t].numpy(), **feeds})
        feeds = dict(zip(feeds, states))
        np.testing.assert_allclose(logits, want[:, t].numpy(), rtol=1e-5, atol=1e-5)
    assert export_language_model(model, vocab, tmp_path / "m.pt2", "torch-export").is_file()
