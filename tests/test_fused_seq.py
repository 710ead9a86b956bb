"""The fused engine's C sequence kernels (csrc/, _fused_seq*.py) give the reference engine's numbers.

test_fused.py already runs every cell through the fused engine on one thread; here the sizes are chosen to
exercise what only the C path has: several blocks of hidden units split over two threads, a last partial
block, tiles of every height, the threaded GEMM on strided operands, and the shortcuts taken when the
initial state needs no gradient.
"""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.engines import _fused_c, _fused_seq
from rnnkit.engines._fused_seq_cells import spec_for

pytestmark = pytest.mark.skipif(_fused_c.get() is None, reason="no C compiler: the C sequence path is off")

F64 = torch.float64
KINDS = ["rnn_tanh", "rnn_relu", "jordan", "jordan_tanh_out", "gru", "lstm", "peephole"]


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
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
    if kind == "lstm":
        return rnnkit.LSTM(F, H, dtype=dtype, forget_bias=1.0, **kw)
    if kind == "peephole":
        return rnnkit.PeepholeLSTM(F, H, dtype=dtype, **kw)
    raise AssertionError(kind)


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
    assert _fused_seq.supports(model.cells[0], x, False)
    expected = outputs_and_grads(model, "reference", x, hx, lengths)
    got = outputs_and_grads(model, "fused", x, hx, lengths)
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-10)


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
        torch.testing.assert_close(g, e, rtol=0, atol=1e-10)


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
        got = _fused_seq.gemm(a.t(), b.t(), bias)
        tol = 1e-4 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(got, a.t() @ b.t() + bias, rtol=tol, atol=tol)
        got = _fused_seq.gemm(a.t().contiguous(), b.t().contiguous())  # row-major both
        torch.testing.assert_close(got, a.t() @ b.t(), rtol=tol, atol=tol)


def test_packed_layout() -> None:
    """Panel p, depth k, gate g, lane v holds W[g·H + p·U + v, k] (zero past H)."""
    H, K, G, U = 11, 4, 3, 8
    W = torch.arange(G * H * K, dtype=F64).view(G * H, K)
    P = _fused_seq.pack(W, G).view(-1, K, G, U)
    for p in range(P.shape[0]):
        for g in range(G):
            for v in range(U):
                u = p * U + v
                expect = W[g * H + u] if u < H else torch.zeros(K, dtype=F64)
                assert torch.equal(P[p, :, g, v], expect)


def test_spec_order_matches_parameters() -> None:
    """spec_for hands each spec the layer's parameters in the order the spec unpacks them."""
    layer = rnnkit.Jordan(3, 4, 2)
    spec, params = spec_for(layer.cells[0], layer.weights(0))
    assert [p.shape for p in params] == [(4, 3), (4,), (4, 2), (4,), (2, 4), (2,)]


def test_unsupported_calls_fall_back() -> None:
    x = torch.randn(3, 2, 4)
    assert not _fused_seq.supports(rnnkit.LSTM(4, 5, proj_size=2).cells[0], x, False)  # projection
    assert not _fused_seq.supports(rnnkit.GRU(4, 5, reset_after=False).cells[0], x, False)
    assert not _fused_seq.supports(rnnkit.LSTM(4, 5).cells[0], x, True)  # gates asked for
    assert not _fused_seq.supports(rnnkit.LSTM(4, 5).cells[0], x.half(), False)
    cell = rnnkit.GRU(4, 5, activation=lambda t: t.tanh()).cells[0]
    assert not _fused_seq.supports(cell, x, False)
