"""The fused engine's native kernels (engines/fused/csrc) give the reference engine's numbers.

test_fused.py already runs every cell and option through the fused engine on one thread; here the sizes are
chosen to exercise what only the kernels have: several blocks of hidden units split over two threads, a
last partial block, tiles of every height, the threaded GEMM on strided operands, the packed layout, the
shortcuts taken when the initial state needs no gradient, and the operators' checks of bad tensors.
"""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.engines.fused import build
from rnnkit.engines.fused.specs import SPECS

pytestmark = pytest.mark.skipif(not build.available(), reason="no C compiler: the native kernels are off")
kernels = torch.ops.rnnkit_c

F64 = torch.float64
KINDS = ["rnn_tanh", "rnn_relu", "jordan", "jordan_tanh_out", "gru", "gru_reset_before", "lstm", "peephole"]
KINDS += ["lstm_proj", "lstm_hard", "gru_relu"]


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """The kernels run small problems on one thread (the per-step meeting costs more than it saves): lift that
    threshold so that these tiny sizes exercise the work split over two threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    threshold = kernels.set_min_step_work(0)
    yield request.param
    kernels.set_min_step_work(threshold)
    torch.set_num_threads(before)


def make(kind: str, F: int, H: int, dtype=F64, **kw):
    if kind == "rnn_tanh":
        return rnnkit.RNN(F, H, dtype=dtype, **kw)
    if kind == "rnn_relu":
        return rnnkit.RNN(F, H, nonlinearity="relu", dtype=dtype, **kw)
    if kind == "jordan":
        return rnnkit.Jordan(F, H, H + 3, dtype=dtype, **kw)  # output width ≠ hidden width
    if kind == "jordan_tanh_out":
        return rnnkit.Jordan(F, H, 9, output_activation="tanh", dtype=dtype, **kw)
    if kind == "gru":
        return rnnkit.GRU(F, H, dtype=dtype, **kw)
    if kind == "gru_reset_before":
        return rnnkit.GRU(F, H, reset_after=False, dtype=dtype, **kw)
    if kind == "gru_relu":
        return rnnkit.GRU(F, H, activation="relu", recurrent_activation="hard_sigmoid", dtype=dtype, **kw)
    if kind == "lstm_proj":
        return rnnkit.LSTM(F, H, proj_size=H // 2 + 1, dtype=dtype, **kw)
    if kind == "lstm_hard":
        return rnnkit.LSTM(F, H, activation="identity", recurrent_activation="hard_sigmoid", dtype=dtype, **kw)
    if kind == "lstm":
        return rnnkit.LSTM(F, H, dtype=dtype, forget_bias=1.0, **kw)
    if kind == "peephole":
        return rnnkit.PeepholeLSTM(F, H, dtype=dtype, **kw)
    raise AssertionError(kind)


def atol_for(kind: str) -> float:
    """torch's hardsigmoid backward multiplies by 1/6 rounded to float32 even in float64 (0.16666667163…, a
    relative error of 3e-8); the kernels use the exact 1/6, so the reference's gradients are that far off."""
    return 1e-6 if kind in ("lstm_hard", "gru_relu") else 1e-10


def outputs_and_grads(model, engine: str, x, hx, lengths) -> list[torch.Tensor]:
    model.engine = engine
    x = x.clone().requires_grad_()
    hx = tuple(h.clone().requires_grad_() for h in hx)
    out, state = model(x, hx if len(hx) > 1 else hx[0], lengths=lengths)
    state = state if isinstance(state, tuple) else (state,)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    loss = (out * weights).sum() + sum((s**2).sum() for s in state)
    model.zero_grad()
    loss.backward()
    return [out, *state, x.grad, *(h.grad for h in hx), *(p.grad for p in model.parameters())]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("H", [5, 40, 70])  # one partial block; several blocks; blocks of 4 vectors + a remainder
def test_matches_reference(kind: str, H: int, threads: int) -> None:
    torch.manual_seed(0)
    model = make(kind, 6, H, num_layers=2, bidirectional=True)
    T, B = 7, 9  # 9 rows: tiles of unequal height
    x = torch.randn(T, B, 6, dtype=F64)
    hx = tuple(torch.randn(4, B, s, dtype=F64) for s in model.cells[0].state_sizes)
    lengths = torch.tensor([7, 2, 5, 1, 7, 3, 6, 4, 7])
    expected = outputs_and_grads(model, "reference", x, hx, lengths)
    got = outputs_and_grads(model, "fused", x, hx, lengths)
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=atol_for(kind))


def test_hard_sigmoid_derivative_is_exact() -> None:
    """The kernels' hard-sigmoid derivative is the exact 1/6 (finite differences agree to 1e-9)."""
    torch.manual_seed(5)
    model = make("lstm_hard", 3, 4, engine="fused")
    x = torch.randn(5, 2, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: model(v)[0], (x,), eps=1e-7, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_constant_initial_state_and_inference(kind: str, threads: int) -> None:
    """No initial state given (zeros, no gradient wanted: the last backward product is skipped), and the
    inference path that saves nothing: both equal the reference."""
    torch.manual_seed(1)
    model = make(kind, 5, 33)
    x = torch.randn(6, 4, 5, dtype=F64, requires_grad=True)
    results = {}
    for engine in ("reference", "fused"):
        model.engine = engine
        model.zero_grad()
        x.grad = None
        out, _ = model(x)
        out.pow(2).sum().backward()
        with torch.no_grad():
            out_nograd, state = model(x)
        results[engine] = [out, x.grad, *(p.grad for p in model.parameters()), out_nograd, *torch.atleast_1d(state)]
    for e, g in zip(results["reference"], results["fused"], strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=atol_for(kind))


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_float32_matches_torch_nn(kind: str, threads: int) -> None:
    torch.manual_seed(2)
    theirs = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[kind](28, 64, batch_first=True)
    ours = {"rnn": rnnkit.RNN, "gru": rnnkit.GRU, "lstm": rnnkit.LSTM}[kind](28, 64, batch_first=True, engine="fused")
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(8, 20, 28)
    y1, y2 = theirs(x)[0], ours(x)[0]
    torch.testing.assert_close(y2, y1, rtol=1e-5, atol=1e-5)
    y1.square().mean().backward()
    y2.square().mean().backward()
    for (name, p), q in zip(theirs.named_parameters(), ours.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("kind", ["jordan", "gru", "peephole"])
def test_gradcheck(kind: str) -> None:
    torch.manual_seed(3)
    model = make(kind, 3, 6, engine="fused")
    x = torch.randn(4, 2, 3, dtype=F64, requires_grad=True)
    h0 = tuple(torch.randn(1, 2, s, dtype=F64, requires_grad=True) for s in model.cells[0].state_sizes)
    lengths = torch.tensor([4, 2])

    def f(x, *rest):
        state = rest if len(rest) > 1 else rest[0]
        out, final = model(x, state, lengths=lengths)
        return (out, *torch.atleast_1d(final))

    assert torch.autograd.gradcheck(f, (x, *h0), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (7, 5, 3), (50, 300, 70), (97, 600, 130)])
def test_gemm_any_strides(M: int, K: int, N: int, threads: int) -> None:
    torch.manual_seed(4)
    for dtype in (torch.float32, F64):
        a, b, bias = torch.randn(K, M, dtype=dtype), torch.randn(N, K, dtype=dtype), torch.randn(N, dtype=dtype)
        # transposed views: a's rows have unit stride (read in place), b needs the packed copy
        got = kernels.gemm(a.t(), b.t(), bias)
        tol = 1e-4 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(got, a.t() @ b.t() + bias, rtol=tol, atol=tol)
        got = kernels.gemm(a.t().contiguous(), b.t().contiguous())  # row-major both
        torch.testing.assert_close(got, a.t() @ b.t(), rtol=tol, atol=tol)


def test_packed_layout() -> None:
    """Panel p, depth k, gate g, lane v holds W[g·H + p·U + v, k] (zero past H); U = one vector of units."""
    H, K, G = 11, 4, 3
    U = int(build.isa().split("vectors of ")[1].split()[0]) // 8  # doubles per vector
    W = torch.arange(G * H * K, dtype=F64).view(G * H, K)
    P = kernels.pack(W, G, False).view(-1, K, G, U)
    for p in range(P.shape[0]):
        for g in range(G):
            for v in range(U):
                u = p * U + v
                expect = W[g * H + u] if u < H else torch.zeros(K, dtype=F64)
                assert torch.equal(P[p, :, g, v], expect)


def test_spec_order_matches_parameters() -> None:
    """A spec takes the layer's parameters in the order it unpacks them."""
    layer = rnnkit.Jordan(3, 4, 2)
    config, params = SPECS[type(layer.cells[0])].config_and_params(layer.cells[0], layer.weights(0))
    assert [p.shape for p in params] == [(4, 3), (4, 2), (2, 4), (4,), (4,), (2,)]
    assert config == [1, 0, 1, 4]  # tanh, identity, bias, hidden size


def test_bad_tensors_fail_with_one_line() -> None:
    """The operators check what they are given: a wrong dtype, shape or packing is a one-line ValueError or
    TypeError, never a crash in the C code."""
    W = torch.randn(8, 3)
    packed = kernels.pack(W, 4, False)
    x, h = torch.randn(5, 2, 3), torch.zeros(2, 2)
    with pytest.raises(TypeError, match="float32 or float64"):
        kernels.pack(W.half(), 4, False)
    with pytest.raises(ValueError, match="cannot pack"):
        kernels.pack(W, 3, False)
    with pytest.raises(ValueError, match="cannot multiply"):
        kernels.gemm(W, W, None)
    with pytest.raises(TypeError, match="dtype"):
        kernels.lstm_fwd(x.double(), packed, packed, None, None, None, None, h, h, 1, 3, False)
    W5, W2 = kernels.pack(torch.randn(8, 5), 4, False), kernels.pack(torch.randn(8, 2), 4, False)
    with pytest.raises(ValueError, match="packed"):  # W_hh packed for another width
        kernels.lstm_fwd(x, packed, W5, None, None, None, None, h, h, 1, 3, False)
    with pytest.raises(ValueError, match="h0 of shape"):
        kernels.lstm_fwd(x, packed, W2, None, None, None, None, h[:1], h, 1, 3, False)
    with pytest.raises(ValueError, match="lengths must lie"):
        kernels.elman_fwd(x, kernels.pack(torch.randn(2, 3), 1, True), kernels.pack(torch.randn(2, 2), 1, True), None,
                          torch.tensor([6, 1]), h, 1)  # fmt: skip
    with pytest.raises(TypeError, match="int64"):
        kernels.elman_fwd(x, kernels.pack(torch.randn(2, 3), 1, True), kernels.pack(torch.randn(2, 2), 1, True), None,
                          torch.tensor([5, 1], dtype=torch.int32), h, 1)  # fmt: skip
    with pytest.raises(ValueError, match="activation"):
        kernels.elman_fwd(x, kernels.pack(torch.randn(2, 3), 1, True), kernels.pack(torch.randn(2, 2), 1, True), None,
                          None, h, 9)  # fmt: skip


def test_unsupported_calls_fall_back() -> None:
    from rnnkit.engines import ENGINES

    x = torch.randn(3, 2, 4)
    fused = ENGINES["fused"]
    assert fused.unsupported(rnnkit.LSTM(4, 5, proj_size=2), x, True) is None  # projection and gates: in C
    assert fused.unsupported(rnnkit.GRU(4, 5, reset_after=False), x, False) is None
    assert "float16" in fused.unsupported(rnnkit.LSTM(4, 5), x.half(), False)
    assert "activation" in fused.unsupported(rnnkit.GRU(4, 5, activation=lambda t: t.tanh()), x, False)
