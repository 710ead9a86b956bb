"""The fused engine gives the reference engine's numbers: outputs, final states, gates and every gradient."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit
from rnnkit.cells import LSTMCell
from rnnkit.engines import ENGINES, select_engine
from rnnkit.layer import Recurrent

F64 = torch.float64
CELLS = ["rnn_tanh", "rnn_relu", "gru", "gru_reset_before", "lstm", "lstm_proj", "peephole", "peephole_proj", "jordan"]
IN, HID = 3, 5


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny GEMMs split over OpenMP threads are slower than one thread, and far slower on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make(kind: str, dtype: torch.dtype = F64, **kw) -> Recurrent:
    if kind == "rnn_tanh":
        return rnnkit.RNN(IN, HID, dtype=dtype, **kw)
    if kind == "rnn_relu":
        return rnnkit.RNN(IN, HID, nonlinearity="relu", dtype=dtype, **kw)
    if kind == "gru":
        return rnnkit.GRU(IN, HID, dtype=dtype, **kw)
    if kind == "gru_reset_before":
        return rnnkit.GRU(IN, HID, reset_after=False, dtype=dtype, **kw)
    if kind == "lstm":
        return rnnkit.LSTM(IN, HID, dtype=dtype, forget_bias=1.0, **kw)
    if kind == "lstm_proj":
        return rnnkit.LSTM(IN, HID, proj_size=2, dtype=dtype, **kw)
    if kind == "peephole":
        return rnnkit.PeepholeLSTM(IN, HID, dtype=dtype, **kw)
    if kind == "peephole_proj":
        return rnnkit.PeepholeLSTM(IN, HID, proj_size=3, dtype=dtype, **kw)
    if kind == "jordan":
        return rnnkit.Jordan(IN, HID, 2, dtype=dtype, **kw)
    raise AssertionError(kind)


def run_and_grad(model: Recurrent, engine: str, x, hx, lengths, gates: bool) -> list[torch.Tensor]:
    """Outputs, final states, gates and the gradients of a loss that touches all of them."""
    model.engine = engine
    x = x.clone().requires_grad_()
    hx = tuple(h.clone().requires_grad_() for h in hx)
    res = model(x, hx if len(hx) > 1 else hx[0], lengths=lengths, return_gates=gates)
    out, state = res[0], res[1]
    state = state if isinstance(state, tuple) else (state,)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).view_as(out)  # non-symmetric
    loss = (out * weights).sum() + sum((s**2).sum() for s in state)
    if gates:
        loss = loss + sum(0.3 * (g * g).sum() for g in res[2].values())
    model.zero_grad()
    loss.backward()
    grads = [x.grad, *(h.grad for h in hx), *(p.grad for p in model.parameters())]
    assert all(g is not None for g in grads)
    return [out, *state, *(res[2].values() if gates else ()), *grads]


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize(
    "layers,bidirectional,lengths,gates", list(itertools.product([1, 2], [False, True], [False, True], [False, True]))
)
def test_matches_reference_float64(kind: str, layers: int, bidirectional: bool, lengths: bool, gates: bool) -> None:
    torch.manual_seed(0)
    model = make(kind, num_layers=layers, bidirectional=bidirectional)
    T, B = 6, 3
    x = torch.randn(T, B, IN, dtype=F64)
    LD = layers * (2 if bidirectional else 1)
    hx = tuple(torch.randn(LD, B, s, dtype=F64) for s in model.cells[0].state_sizes)
    lens = torch.tensor([6, 2, 4]) if lengths else None
    expected = run_and_grad(model, "reference", x, hx, lens, gates)
    got = run_and_grad(model, "fused", x, hx, lens, gates)
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        assert e.shape == g.shape
        torch.testing.assert_close(g, e, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", CELLS)
def test_gradcheck(kind: str) -> None:
    """Finite differences agree with the hand-written backward (both directions, ragged lengths)."""
    torch.manual_seed(1)
    small = {"rnn_tanh", "rnn_relu", "gru", "gru_reset_before", "jordan"}
    model = make(kind, bidirectional=True, engine="fused")
    if kind not in small:  # keep the Jacobian small: fewer parameters for the LSTM family
        for p in model.parameters():
            if p.dim() == 2:
                p.requires_grad_(False)
    x = torch.randn(3, 2, IN, dtype=F64, requires_grad=True)
    hx = tuple(torch.randn(2, 2, s, dtype=F64, requires_grad=True) for s in model.cells[0].state_sizes)
    params = [p for p in model.parameters() if p.requires_grad]
    lengths = torch.tensor([3, 2])

    def f(x, *rest):
        state = rest[: len(hx)]
        out, final = model(x, state if len(state) > 1 else state[0], lengths=lengths)
        return (out, *(final if isinstance(final, tuple) else (final,)))

    assert torch.autograd.gradcheck(f, (x, *hx, *params), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", CELLS)
def test_inference_and_float32(kind: str) -> None:
    """Without autograd the engine takes its no-save path; float32 agrees with the reference to rounding."""
    torch.manual_seed(2)
    model = make(kind, dtype=torch.float32, num_layers=2, bidirectional=True)
    x = torch.randn(7, 4, IN)
    with torch.no_grad():
        model.engine = "reference"
        ref_out, ref_state = model(x, lengths=[7, 3, 5, 1])
        model.engine = "fused"
        out, state = model(x, lengths=[7, 3, 5, 1])
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    for a, b in zip(
        state if isinstance(state, tuple) else (state,), ref_state if isinstance(ref_state, tuple) else (ref_state,)
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    exp = run_and_grad(
        model, "reference", x, tuple(torch.zeros(4, 4, s) for s in model.cells[0].state_sizes), None, False
    )
    got = run_and_grad(model, "fused", x, tuple(torch.zeros(4, 4, s) for s in model.cells[0].state_sizes), None, False)
    for e, g in zip(exp, got):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["gru", "lstm", "jordan"])
def test_dropout_between_layers(kind: str) -> None:
    """Training-mode dropout draws the same masks as the reference engine, so the numbers agree."""
    model = make(kind, num_layers=3, dropout=0.5)
    model.train()
    x = torch.randn(5, 2, IN, dtype=F64)
    hx = tuple(torch.zeros(3, 2, s, dtype=F64) for s in model.cells[0].state_sizes)
    torch.manual_seed(3)
    expected = run_and_grad(model, "reference", x, hx, None, False)
    torch.manual_seed(3)
    got = run_and_grad(model, "fused", x, hx, None, False)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-10)
    torch.manual_seed(4)
    other = run_and_grad(model, "fused", x, hx, None, False)
    assert not torch.equal(other[0], got[0])  # dropout really is active


@pytest.mark.parametrize("kind", ["lstm_proj", "gru_reset_before", "peephole"])
def test_layouts(kind: str) -> None:
    """batch_first, unbatched input and PackedSequence all reach the engine normalised, as for the reference."""
    torch.manual_seed(5)
    model = make(kind, batch_first=True, bidirectional=True)
    x = torch.randn(3, 6, IN, dtype=F64)  # (B, T, F)
    packed = pack_padded_sequence(x, torch.tensor([6, 2, 5]), batch_first=True, enforce_sorted=False)
    for inp in (x, x[0], packed):
        results = []
        for engine in ("reference", "fused"):
            model.engine = engine
            out, state = model(inp)
            out = out.data if isinstance(out, torch.nn.utils.rnn.PackedSequence) else out
            results.append([out, *(state if isinstance(state, tuple) else (state,))])
        for e, g in zip(*results):
            torch.testing.assert_close(g, e, rtol=0, atol=1e-12)


def test_only_some_inputs_require_grad() -> None:
    torch.manual_seed(6)
    model = make("peephole")
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn(4, 2, IN, dtype=F64, requires_grad=True)
    grads = []
    for engine in ("reference", "fused"):
        model.engine = engine
        out, _ = model(x)
        (g,) = torch.autograd.grad(out.sum(), x)
        grads.append(g)
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=1e-12)


def test_unsupported_configurations_fall_back() -> None:
    def softsign(v: torch.Tensor) -> torch.Tensor:
        return v / (1 + v.abs())

    model = rnnkit.LSTM(IN, HID, activation=softsign)
    x = torch.randn(3, 2, IN)
    assert "activation" in ENGINES["fused"].unsupported(model, x, False)
    assert select_engine(model, x, False).name == "reference"
    model.engine = "fused"
    with pytest.raises(ValueError, match="fused"):
        model(x)

    class MyCell(LSTMCell):  # a subclass may change the equations: the fused kernel must not guess
        pass

    layer = Recurrent(MyCell, IN, HID)
    assert ENGINES["fused"].unsupported(layer, x, False) is not None


def test_auto_picks_fused_where_torch_has_no_kernel() -> None:
    x = torch.randn(3, 2, IN)
    for model in (rnnkit.PeepholeLSTM(IN, HID), rnnkit.Jordan(IN, HID, 2), rnnkit.GRU(IN, HID, reset_after=False)):
        assert select_engine(model, x, False).name == "fused"
    assert select_engine(rnnkit.LSTM(IN, HID), x, True).name == "fused"  # gates: torch cannot report them
    assert select_engine(rnnkit.LSTM(IN, HID), x, False).name == "torch"  # 3 steps: per-call cost dominates
    assert select_engine(rnnkit.RNN(IN, HID, activation="sigmoid"), x, False).name == "fused"
    assert select_engine(rnnkit.LSTM(IN, HID, recurrent_activation="hard_sigmoid"), x, False).name == "fused"
    assert select_engine(rnnkit.GRU(IN, HID), x, False).name == "torch"  # 3 steps: per-call cost dominates


def test_auto_takes_fused_for_long_sequences_on_cpu() -> None:
    """Where the native kernels run the call, auto takes them over torch's for 16+ steps (measured faster)."""
    from rnnkit.engines.fused import build
    from rnnkit.engines.fused.engine import AUTO_MIN_STEPS

    x = torch.randn(AUTO_MIN_STEPS, 2, IN)
    expected = "fused" if build.available() else "torch"
    for model in (rnnkit.GRU(IN, HID), rnnkit.LSTM(IN, HID), rnnkit.RNN(IN, HID, nonlinearity="relu")):
        assert select_engine(model, x, False).name == expected
    assert select_engine(rnnkit.LSTM(IN, HID, proj_size=2), x, False).name == expected  # projection: in C too
