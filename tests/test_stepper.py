"""Stepper: one token at a time gives exactly what the layer gives on the whole sequence."""

from __future__ import annotations

import pytest
import torch

import rnnkit

F64 = torch.float64


def build(kind: str) -> rnnkit.Recurrent:
    kw = {"num_layers": 2, "dtype": F64}
    return {
        "rnn": lambda: rnnkit.RNN(3, 5, nonlinearity="relu", **kw),
        "gru": lambda: rnnkit.GRU(3, 5, **kw),
        "gru_reset_before": lambda: rnnkit.GRU(3, 5, reset_after=False, **kw),
        "lstm": lambda: rnnkit.LSTM(3, 5, **kw),
        "lstm_proj": lambda: rnnkit.LSTM(3, 5, proj_size=2, **kw),
        "peephole": lambda: rnnkit.PeepholeLSTM(3, 5, **kw),
        "jordan": lambda: rnnkit.Jordan(3, 5, 4, **kw),
        "jordan_nobias": lambda: rnnkit.Jordan(3, 5, 4, bias=False, **kw),
    }[kind]()


@pytest.mark.parametrize(
    "kind", ["rnn", "gru", "gru_reset_before", "lstm", "lstm_proj", "peephole", "jordan", "jordan_nobias"]
)
def test_steps_equal_the_sequence(kind: str) -> None:
    torch.manual_seed(0)
    layer = build(kind)
    layer.engine = "reference"
    x = torch.randn(6, 2, 3, dtype=F64)
    hx = tuple(torch.randn(2, 2, s, dtype=F64) for s in layer.cells[0].state_sizes)
    hx = hx if len(hx) > 1 else hx[0]
    with torch.no_grad():
        expected, expected_state = layer(x, hx)
    stepper = layer.stepper()
    state = hx
    for t in range(6):
        y, state = stepper(x[t], state)
        torch.testing.assert_close(y, expected[t], rtol=0, atol=1e-12)
    for got, exp in zip(
        state if isinstance(state, tuple) else (state,),
        expected_state if isinstance(state, tuple) else (expected_state,),
    ):
        torch.testing.assert_close(got, exp, rtol=0, atol=1e-12)


def test_unbatched_zero_state_and_parameter_updates() -> None:
    torch.manual_seed(1)
    layer = rnnkit.LSTM(3, 4, dtype=F64)
    stepper = layer.stepper()
    x = torch.randn(3, dtype=F64)
    y, (h, c) = stepper(x)
    with torch.no_grad():
        out, (h_ref, c_ref) = layer(x.unsqueeze(0))
    assert y.shape == (4,) and h.shape == (1, 4)
    torch.testing.assert_close(y, out[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(c, c_ref, rtol=0, atol=1e-12)
    with torch.no_grad():  # training changes the weights in place: the stepper must follow
        layer.bias_hh_l0.add_(0.5)
        out, _ = layer(x.unsqueeze(0))
    torch.testing.assert_close(stepper(x)[0], out[0], rtol=0, atol=1e-12)


def test_refuses_what_it_cannot_step() -> None:
    with pytest.raises(ValueError, match="bidirectional"):
        rnnkit.GRU(3, 4, bidirectional=True).stepper()
    with pytest.raises(ValueError, match="activation"):
        rnnkit.RNN(3, 4, activation=lambda v: v * 2).stepper()
    with pytest.raises(ValueError, match="shape"):
        rnnkit.RNN(3, 4).stepper()(torch.randn(2, 5))


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm", "peephole", "jordan"])
def test_float32_steps_match_the_layer(kind: str) -> None:
    """The float32 native path (one sequence-kernel call per layer) against the layer on the whole sequence."""
    from rnnkit.engines.fused import build as native

    torch.manual_seed(0)
    layer = build(kind).float()
    assert layer.stepper().native == native.available()
    x = torch.randn(5, 3, 3)
    with torch.no_grad():
        expected, _ = layer(x)
    stepper, state = layer.stepper(), None
    for t in range(5):
        y, state = stepper(x[t], state)
        torch.testing.assert_close(y, expected[t], rtol=1e-5, atol=1e-6)


def test_bad_state_and_dtype_fail_with_one_line() -> None:
    stepper = rnnkit.LSTM(3, 4, num_layers=2).stepper()
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match=r"state of shapes \[\(2, 2, 4\), \(2, 2, 4\)\]"):
        stepper(x, (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)))
    with pytest.raises(ValueError, match="torch.float32 input"):
        stepper(x.double())
    y, (h, c) = stepper(x, (torch.zeros(2, 4, 2).transpose(1, 2), torch.zeros(2, 2, 4)))  # any strides
    torch.testing.assert_close(y, stepper(x)[0], rtol=0, atol=0)


def test_follows_a_converted_layer() -> None:
    """layer.double() replaces the parameters' storage: the stepper notices and re-packs in the new dtype."""
    torch.manual_seed(2)
    layer = rnnkit.GRU(3, 4)
    stepper = layer.stepper()
    stepper(torch.randn(2, 3))
    layer.double()
    x = torch.randn(2, 3, dtype=F64)
    with torch.no_grad():
        expected, _ = layer(x.unsqueeze(0))
    torch.testing.assert_close(stepper(x)[0], expected[0], rtol=0, atol=1e-12)


def zoned(kind: str, p: float, p_cell: float) -> rnnkit.Recurrent:
    kw = {"num_layers": 2, "dtype": F64, "zoneout": p}
    return {
        "rnn": lambda: rnnkit.RNN(3, 5, **kw),
        "gru": lambda: rnnkit.GRU(3, 5, **kw),
        "gru_reset_before": lambda: rnnkit.GRU(3, 5, reset_after=False, **kw),
        "lstm": lambda: rnnkit.LSTM(3, 5, zoneout_cell=p_cell, **kw),
        "jordan": lambda: rnnkit.Jordan(3, 5, 4, **kw),
        "mingru": lambda: rnnkit.MinGRU(3, 5, **kw),
    }[kind]().eval()


@pytest.mark.parametrize("kind", ["rnn", "gru", "gru_reset_before", "lstm", "jordan", "mingru"])
def test_zoneout_steps_as_the_layer_evaluates(kind: str) -> None:
    """A layer trained with zoneout evaluates with its expectation p·old + (1 - p)·new; so does its stepper."""
    torch.manual_seed(0)
    layer, plain = zoned(kind, 0.3, 0.2), zoned(kind, 0.0, 0.0)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(6, 2, 3, dtype=F64)
    with torch.no_grad():
        expected, expected_state = layer(x)
        assert not torch.allclose(plain(x)[0], expected)  # zoneout changes the outputs: the test compares something
    stepper, state = layer.stepper(), None
    for t in range(6):
        y, state = stepper(x[t], state)
        torch.testing.assert_close(y, expected[t], rtol=0, atol=1e-12)
    for got, exp in zip(state if isinstance(state, tuple) else (state,),
                        expected_state if isinstance(expected_state, tuple) else (expected_state,)):  # fmt: skip
        torch.testing.assert_close(got, exp, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_a_handed_back_state_steps_as_a_fresh_one(kind: str) -> None:
    """A loop that hands back the state the stepper returned skips its checks: the same numbers as a copy of it
    (which is checked), batched and unbatched; a state of the wrong shape is still refused."""
    torch.manual_seed(14)
    layer = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU}[kind](3, 5, num_layers=2).eval()
    step = layer.stepper()
    for shape in ((2, 3), (3,)):
        xs = torch.randn(4, *shape)
        _, state = step(xs[0])
        _, copied = step(xs[0])
        for x in xs[1:]:
            y, state = step(x, state)
            y2, copied = step(x, tuple(s.clone() for s in copied) if kind == "lstm" else copied.clone())
            torch.testing.assert_close(y, y2, rtol=0, atol=0)
    with pytest.raises(ValueError, match="expected a state of shapes"):
        step(torch.randn(2, 3), tuple(s[:, :1] for s in state) if kind == "lstm" else state[:, :1])


def test_outputs_carry_no_gradient() -> None:
    """Inference only: an input or a state that requires a gradient gives outputs that do not."""
    layer = rnnkit.GRU(3, 5).eval()
    step = layer.stepper()
    x, h0 = torch.randn(2, 3, requires_grad=True), torch.zeros(1, 2, 5, requires_grad=True)
    y, h = step(x, h0)
    assert not y.requires_grad and not h.requires_grad
    torch.testing.assert_close(y, step(x.detach(), h0.detach())[0], rtol=0, atol=0)


# ---- a layer called one step at a time (a decoding loop) goes to the stepper it keeps ----------------------
ONE_STEP = ["rnn", "gru", "lstm", "lstm_proj", "jordan"]


def reference_copy(layer: rnnkit.Recurrent) -> rnnkit.Recurrent:
    import copy

    twin = copy.deepcopy(layer)
    twin.engine = "reference"
    return twin


@pytest.mark.parametrize("kind", ONE_STEP)
@pytest.mark.parametrize("engine", ["auto", "fused"])
def test_one_step_calls_without_gradient_use_the_kept_stepper(kind: str, engine: str) -> None:
    """``layer(x_t[None], state)`` under no_grad: the layer's kept stepper runs it (one native call for the
    stack), with the same outputs and states as the reference loop, batched, unbatched and batch_first; the
    output does not share memory with the state (as torch's do not)."""
    torch.manual_seed(0)
    layer = build(kind).eval()
    layer.engine = engine
    ref = reference_copy(layer)
    state = ref_state = None
    with torch.no_grad():
        for _ in range(4):
            x = torch.randn(1, 2, 3, dtype=F64)
            y, state = layer(x, state)
            y_ref, ref_state = ref(x, ref_state)
            torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
            for a, b in zip(*(s if isinstance(s, tuple) else (s,) for s in (state, ref_state))):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        assert "_stepper_cache" in layer.__dict__
        h = state[0] if isinstance(state, tuple) else state
        before = h.clone()
        y.add_(1.0)
        assert torch.equal(h, before)
        x1 = torch.randn(3, dtype=F64)  # unbatched (F,) as a one-step sequence (1, F)
        y1, _ = layer(x1[None])
        torch.testing.assert_close(y1, ref(x1[None])[0], rtol=1e-12, atol=1e-12)
        layer.batch_first = ref.batch_first = True
        xb = torch.randn(2, 1, 3, dtype=F64)
        torch.testing.assert_close(layer(xb)[0], ref(xb)[0], rtol=1e-12, atol=1e-12)


def test_one_step_follows_weight_updates_and_stays_out_of_gradients_and_training_randomness() -> None:
    import copy
    import pickle

    torch.manual_seed(0)
    layer = rnnkit.LSTM(3, 5, num_layers=2, dropout=0.5, dtype=F64)
    x = torch.randn(1, 2, 3, dtype=F64)
    layer.eval()
    with torch.no_grad():
        layer(x)
    assert "_stepper_cache" in layer.__dict__
    with torch.no_grad():  # an optimiser's in-place update: the kept stepper packs again
        layer.weight_hh_l1.add_(0.1)
        torch.testing.assert_close(layer(x)[0], reference_copy(layer)(x)[0], rtol=1e-12, atol=1e-12)
    for twin in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):  # the stepper is not copied
        assert "_stepper_cache" not in twin.__dict__
        with torch.no_grad():
            torch.testing.assert_close(twin(x)[0], layer(x)[0], rtol=0, atol=0)

    fresh = rnnkit.LSTM(3, 5, num_layers=2, dropout=0.5, dtype=F64)
    with torch.no_grad():  # training mode with dropout between layers: random, so not the stepper
        fresh.train()(x)
    assert "_stepper_cache" not in fresh.__dict__
    fresh.eval()
    y, _ = fresh(x.requires_grad_())  # a gradient is wanted: the operator, which records one
    y.sum().backward()
    assert "_stepper_cache" not in fresh.__dict__ and x.grad is not None and fresh.weight_ih_l0.grad is not None
