"""Behaving like torch.nn where user code can tell: exception types, edge shapes, attributes, packing, to_torch.

The error tables run each bad call on torch.nn and on rnnkit and require rnnkit's exception to be an
instance of torch's exception class (so an ``except`` written for torch catches it), with a one-line message.
"""

import copy
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit.errors import DeviceError, DtypeError, ShapeError

ENGINES = ["reference", "torch", "fused", "auto"]
D = torch.float64


def _raised(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about dropout with one layer before some checks
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - the point is to compare whatever was raised
            return e
    return None


# ---------------------------------------------------------------------------------------------------
# Constructors: (id, call(ns)) with ns = torch.nn or rnnkit; torch raises for each.
CTOR_CASES = [
    ("bias=1", lambda ns: ns.LSTM(3, 4, bias=1)),
    ("bias=None", lambda ns: ns.GRU(3, 4, bias=None)),
    ("batch_first=1", lambda ns: ns.GRU(3, 4, batch_first=1)),
    ("batch_first='yes'", lambda ns: ns.RNN(3, 4, batch_first="yes")),
    ("bias='True'", lambda ns: ns.LSTM(3, 4, bias="True")),
    ("batch_first=0", lambda ns: ns.GRU(3, 4, batch_first=0)),
    ("input_size='3'", lambda ns: ns.LSTM("3", 4)),
    ("input_size=3.0", lambda ns: ns.GRU(3.0, 4)),
    ("input_size=0", lambda ns: ns.LSTM(0, 4)),
    ("input_size=-2", lambda ns: ns.RNN(-2, 4)),
    ("hidden_size=4.0", lambda ns: ns.RNN(3, 4.0)),
    ("hidden_size=None", lambda ns: ns.GRU(3, None)),
    ("hidden_size=0", lambda ns: ns.LSTM(3, 0)),
    ("hidden_size=-1", lambda ns: ns.GRU(3, -1)),
    ("num_layers=0", lambda ns: ns.LSTM(3, 4, 0)),
    ("num_layers=-1", lambda ns: ns.GRU(3, 4, -1)),
    ("num_layers=1.5", lambda ns: ns.LSTM(3, 4, 1.5)),
    ("num_layers=2.0", lambda ns: ns.RNN(3, 4, 2.0)),
    ("num_layers='2'", lambda ns: ns.GRU(3, 4, "2")),
    ("dropout=1.5", lambda ns: ns.LSTM(3, 4, 2, dropout=1.5)),
    ("dropout=-0.1", lambda ns: ns.GRU(3, 4, 2, dropout=-0.1)),
    ("dropout='a'", lambda ns: ns.RNN(3, 4, 2, dropout="a")),
    ("dropout=True", lambda ns: ns.LSTM(3, 4, 2, dropout=True)),
    ("proj_size=-1", lambda ns: ns.LSTM(3, 4, proj_size=-1)),
    ("proj_size=hidden", lambda ns: ns.LSTM(3, 4, proj_size=4)),
    ("proj_size>hidden", lambda ns: ns.LSTM(3, 4, proj_size=9)),
    ("proj_size=1.5", lambda ns: ns.LSTM(3, 4, proj_size=1.5)),
    ("GRU proj_size=2", lambda ns: ns.GRU(3, 4, proj_size=2)),
    ("GRU proj_size=0", lambda ns: ns.GRU(3, 4, proj_size=0)),
    ("RNN proj_size=2", lambda ns: ns.RNN(3, 4, proj_size=2)),
    ("nonlinearity='gelu'", lambda ns: ns.RNN(3, 4, nonlinearity="gelu")),
    ("nonlinearity positional", lambda ns: ns.RNN(3, 4, 1, "sigmoid")),
    ("unknown keyword", lambda ns: ns.LSTM(3, 4, hidden=5)),
    ("integer dtype", lambda ns: ns.GRU(3, 4, dtype=torch.int64)),
    ("cell hidden_size=-1", lambda ns: ns.GRUCell(3, -1)),
    ("cell input_size=-3", lambda ns: ns.LSTMCell(-3, 4)),
    ("cell hidden_size='4'", lambda ns: ns.RNNCell(3, "4")),
    ("cell hidden_size=4.0", lambda ns: ns.LSTMCell(3, 4.0)),
    ("cell input_size=None", lambda ns: ns.GRUCell(None, 4)),
    ("cell unknown keyword", lambda ns: ns.LSTMCell(3, 4, nonlinearity="relu")),
    ("cell integer dtype", lambda ns: ns.RNNCell(3, 4, dtype=torch.int32)),
]


@pytest.mark.parametrize("case", CTOR_CASES, ids=[c[0] for c in CTOR_CASES])
def test_constructor_errors_have_torchs_type(case):
    _, call = case
    theirs, ours = _raised(lambda: call(nn)), _raised(lambda: call(rnnkit))
    assert theirs is not None, "the table lists only calls torch rejects"
    assert isinstance(ours, type(theirs)), f"torch raised {type(theirs).__name__}, rnnkit {ours!r}"
    assert "\n" not in str(ours)


# ---------------------------------------------------------------------------------------------------
# Forward calls: (id, make(ns) -> module, call(module)); made with float32 weights on the CPU.
x = torch.randn(5, 2, 3)
xu = torch.randn(5, 3)  # unbatched
c2 = torch.randn(2, 3)


def _z(*shape, **kw):
    return torch.zeros(*shape, **kw)


def _lstm(**kw):
    return lambda ns: ns.LSTM(3, 4, **kw)


def _gru(**kw):
    return lambda ns: ns.GRU(3, 4, **kw)


def _rnn(**kw):
    return lambda ns: ns.RNN(3, 4, **kw)


def _packed(t, lengths=(5, 3), **kw):
    return pack_padded_sequence(t, list(lengths), **kw)


LAYER_CASES = [
    # input rank and features
    ("1-D input", _lstm(), lambda m: m(torch.randn(3))),
    ("4-D input", _gru(), lambda m: m(torch.randn(1, 5, 2, 3))),
    ("0-D input", _rnn(), lambda m: m(torch.tensor(1.0))),
    ("features", _lstm(), lambda m: m(torch.randn(5, 2, 7))),
    ("features unbatched", _gru(), lambda m: m(torch.randn(5, 7))),
    ("features batch_first", _rnn(batch_first=True), lambda m: m(torch.randn(2, 5, 6))),
    ("features relu", _rnn(nonlinearity="relu"), lambda m: m(torch.randn(5, 2, 2))),
    ("features lstmp", _lstm(proj_size=2), lambda m: m(torch.randn(5, 2, 4))),
    ("no time steps", _lstm(), lambda m: m(torch.randn(0, 2, 3))),
    ("no time steps unbatched", _gru(), lambda m: m(torch.randn(0, 3))),
    ("no time steps batch_first", _rnn(batch_first=True), lambda m: m(torch.randn(2, 0, 3))),
    ("no steps and no batch", _lstm(), lambda m: m(torch.randn(0, 0, 3))),
    # dtype and device
    ("input float64", _lstm(), lambda m: m(x.double())),
    ("input int64", _gru(), lambda m: m(x.long())),
    ("input float16", _rnn(), lambda m: m(x.half())),
    ("input float64 unbatched", _gru(), lambda m: m(xu.double())),
    ("h_0 float64", _lstm(), lambda m: m(x, (_z(1, 2, 4, dtype=D), _z(1, 2, 4)))),
    ("c_0 float64", _lstm(), lambda m: m(x, (_z(1, 2, 4), _z(1, 2, 4, dtype=D)))),
    ("hx float64", _gru(), lambda m: m(x, _z(1, 2, 4, dtype=D))),
    ("rnn hx float64", _rnn(), lambda m: m(x, _z(1, 2, 4, dtype=D))),
    ("input on meta", _lstm(), lambda m: m(x.to("meta"))),
    ("hx on meta", _gru(), lambda m: m(x, _z(1, 2, 4, device="meta"))),
    ("h_0 on meta", _lstm(), lambda m: m(x, (_z(1, 2, 4, device="meta"), _z(1, 2, 4)))),
    # the state's shape
    ("hx 2-D, batched input", _gru(), lambda m: m(x, _z(2, 4))),
    ("hx 3-D, unbatched input", _gru(), lambda m: m(xu, _z(1, 2, 4))),
    ("rnn hx 2-D, batched input", _rnn(), lambda m: m(x, _z(2, 4))),
    ("rnn hx 3-D, unbatched input", _rnn(), lambda m: m(xu, _z(1, 1, 4))),
    ("hx batch", _gru(), lambda m: m(x, _z(1, 3, 4))),
    ("hx layers", _gru(), lambda m: m(x, _z(2, 2, 4))),
    ("hx directions", _gru(bidirectional=True), lambda m: m(x, _z(1, 2, 4))),
    ("hx size", _rnn(), lambda m: m(x, _z(1, 2, 5))),
    ("hx size unbatched", _gru(), lambda m: m(xu, _z(1, 5))),
    ("hx layers unbatched", _rnn(num_layers=2), lambda m: m(xu, _z(1, 4))),
    ("hx 4-D", _gru(), lambda m: m(x, _z(1, 1, 2, 4))),
    ("h_0 batch", _lstm(), lambda m: m(x, (_z(1, 3, 4), _z(1, 2, 4)))),
    ("c_0 batch", _lstm(), lambda m: m(x, (_z(1, 2, 4), _z(1, 3, 4)))),
    ("h_0 size", _lstm(), lambda m: m(x, (_z(1, 2, 5), _z(1, 2, 4)))),
    ("c_0 size", _lstm(), lambda m: m(x, (_z(1, 2, 4), _z(1, 2, 5)))),
    ("c_0 layers", _lstm(num_layers=2), lambda m: m(x, (_z(2, 2, 4), _z(1, 2, 4)))),
    ("lstmp h_0 of hidden size", _lstm(proj_size=2), lambda m: m(x, (_z(1, 2, 4), _z(1, 2, 4)))),
    ("lstmp c_0 of proj size", _lstm(proj_size=2), lambda m: m(x, (_z(1, 2, 2), _z(1, 2, 2)))),
    ("h_0 2-D, batched input", _lstm(), lambda m: m(x, (_z(2, 4), _z(1, 2, 4)))),
    ("c_0 2-D, batched input", _lstm(), lambda m: m(x, (_z(1, 2, 4), _z(2, 4)))),
    ("h_0 3-D, unbatched input", _lstm(), lambda m: m(xu, (_z(1, 1, 4), _z(1, 4)))),
    ("h_0 size unbatched", _lstm(), lambda m: m(xu, (_z(1, 5), _z(1, 4)))),
    ("three state tensors", _lstm(), lambda m: m(x, (_z(1, 2, 4),) * 3)),
    # PackedSequence
    ("packed features", _lstm(), lambda m: m(_packed(torch.randn(5, 2, 7)))),
    ("packed float64", _gru(), lambda m: m(_packed(x.double()))),
    ("packed hx batch", _gru(), lambda m: m(_packed(x), _z(1, 3, 4))),
    ("packed hx 2-D", _rnn(), lambda m: m(_packed(x), _z(2, 4))),
    ("packed h_0 size", _lstm(), lambda m: m(_packed(x), (_z(1, 2, 5), _z(1, 2, 4)))),
]

CELL_CASES = [
    ("cell 3-D input", lambda ns: ns.LSTMCell(3, 4), lambda m: m(torch.randn(1, 2, 3))),
    ("cell 0-D input", lambda ns: ns.GRUCell(3, 4), lambda m: m(torch.tensor(1.0))),
    ("rnncell 3-D input", lambda ns: ns.RNNCell(3, 4), lambda m: m(torch.randn(1, 2, 3))),
    ("cell features", lambda ns: ns.LSTMCell(3, 4), lambda m: m(torch.randn(2, 5))),
    ("cell features unbatched", lambda ns: ns.GRUCell(3, 4), lambda m: m(torch.randn(5))),
    ("rnncell features", lambda ns: ns.RNNCell(3, 4, nonlinearity="relu"), lambda m: m(torch.randn(2, 2))),
    ("cell hx 3-D", lambda ns: ns.GRUCell(3, 4), lambda m: m(c2, _z(1, 2, 4))),
    ("cell hx 4-D", lambda ns: ns.RNNCell(3, 4, "relu"), lambda m: m(c2, _z(2, 1, 1, 4))),
    ("lstmcell both 4-D", lambda ns: ns.LSTMCell(3, 4), lambda m: m(c2, (_z(2, 1, 1, 4), _z(2, 1, 1, 4)))),
    ("cell hx (B, 1) would broadcast", lambda ns: ns.GRUCell(3, 4), lambda m: m(c2, _z(2, 1))),
    ("cell hx (1, H) would broadcast", lambda ns: ns.RNNCell(3, 4), lambda m: m(c2, _z(1, 4))),
    ("cell input batch 1, hx batch 2", lambda ns: ns.LSTMCell(3, 4), lambda m: m(c2[:1], (_z(2, 4), _z(2, 4)))),
    ("rnncell hx 3-D", lambda ns: ns.RNNCell(3, 4), lambda m: m(c2, _z(1, 2, 4))),
    ("lstmcell h 3-D", lambda ns: ns.LSTMCell(3, 4), lambda m: m(c2, (_z(1, 2, 4), _z(2, 4)))),
    ("lstmcell c 3-D", lambda ns: ns.LSTMCell(3, 4), lambda m: m(c2, (_z(2, 4), _z(1, 2, 4)))),
    ("cell hx batch", lambda ns: ns.GRUCell(3, 4), lambda m: m(c2, _z(3, 4))),
    ("cell hx size", lambda ns: ns.GRUCell(3, 4), lambda m: m(c2, _z(2, 5))),
    ("rnncell hx size", lambda ns: ns.RNNCell(3, 4), lambda m: m(c2, _z(2, 5))),
    ("lstmcell h size", lambda ns: ns.LSTMCell(3, 4), lambda m: m(c2, (_z(2, 5), _z(2, 4)))),
    ("lstmcell c size", lambda ns: ns.LSTMCell(3, 4), lambda m: m(c2, (_z(2, 4), _z(2, 5)))),
    ("lstmcell c batch", lambda ns: ns.LSTMCell(3, 4), lambda m: m(c2, (_z(2, 4), _z(3, 4)))),
    ("cell hx 1-D, batched input", lambda ns: ns.GRUCell(3, 4), lambda m: m(c2, _z(4))),
    ("cell hx 1-D, batch of one", lambda ns: ns.RNNCell(3, 4), lambda m: m(c2[:1], _z(4))),
    ("cell hx 2-D, unbatched input", lambda ns: ns.GRUCell(3, 4), lambda m: m(c2[0], _z(1, 4))),
    ("lstmcell one tensor", lambda ns: ns.LSTMCell(3, 4), lambda m: m(c2, _z(2, 4))),
    ("lstmcell one-tuple", lambda ns: ns.LSTMCell(3, 4), lambda m: m(c2, (_z(2, 4),))),
    ("lstmcell three tensors", lambda ns: ns.LSTMCell(3, 4), lambda m: m(c2, (_z(2, 4),) * 3)),
    ("cell input float64", lambda ns: ns.GRUCell(3, 4), lambda m: m(c2.double())),
    ("lstmcell input float64", lambda ns: ns.LSTMCell(3, 4), lambda m: m(c2.double())),
    ("rnncell input int64", lambda ns: ns.RNNCell(3, 4), lambda m: m(c2.long())),
    ("cell hx float64", lambda ns: ns.GRUCell(3, 4), lambda m: m(c2, _z(2, 4, dtype=D))),
    ("cell input on meta", lambda ns: ns.GRUCell(3, 4), lambda m: m(c2.to("meta"))),
    ("lstmcell h on meta", lambda ns: ns.LSTMCell(3, 4), lambda m: m(c2, (_z(2, 4, device="meta"), _z(2, 4)))),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_layer_forward_errors_have_torchs_type(case, engine):
    _, make, call = case
    theirs = _raised(lambda: call(make(nn)))
    ours_layer = make(rnnkit)
    ours_layer.engine = engine
    ours = _raised(lambda: call(ours_layer))
    assert theirs is not None, "the table lists only calls torch rejects"
    assert isinstance(ours, type(theirs)), f"torch raised {theirs!r}, rnnkit {ours!r}"
    assert isinstance(ours, (ShapeError, DtypeError, DeviceError)), "rnnkit's own check, not an accident downstream"
    assert "\n" not in str(ours) and type(ours_layer).__name__ in str(ours)


@pytest.mark.parametrize("case", CELL_CASES, ids=[c[0] for c in CELL_CASES])
def test_cell_forward_errors_have_torchs_type(case):
    _, make, call = case
    theirs, ours = _raised(lambda: call(make(nn))), _raised(lambda: call(make(rnnkit)))
    assert theirs is not None, "the table lists only calls torch rejects"
    assert isinstance(ours, type(theirs)), f"torch raised {theirs!r}, rnnkit {ours!r}"
    assert "\n" not in str(ours)


def test_error_classes_are_caught_both_ways():
    lstm = rnnkit.LSTM(3, 4)
    for bad, types in [
        (lambda: lstm(torch.randn(5, 2, 7)), (ValueError, RuntimeError)),
        (lambda: lstm(torch.randn(5, 2, 3, dtype=D)), (ValueError, TypeError, RuntimeError)),
        (lambda: lstm(torch.randn(5, 2, 3, device="meta")), (ValueError, RuntimeError)),
    ]:
        for t in types:
            with pytest.raises(t):
                bad()
    with pytest.raises(ShapeError, match=r"LSTM: expected input of shape \(T, B, 3\) \(batch_first=False\), got"):
        lstm(torch.randn(5, 2, 7))


# Where torch fails by accident (an AttributeError or IndexError from inside its forward) rnnkit raises a
# one-line error of the type that names the mistake; where torch accepts a nonsensical argument rnnkit refuses.
RNNKIT_ONLY = [
    ("list input", lambda: rnnkit.LSTM(3, 4)([[1.0, 2.0, 3.0]]), TypeError, "expected input to be a Tensor"),
    ("list cell input", lambda: rnnkit.GRUCell(3, 4)([1.0, 2.0, 3.0]), TypeError, "expected input to be a torch"),
    ("LSTM state as one tensor", lambda: rnnkit.LSTM(3, 4)(x, _z(1, 2, 4)), TypeError, r"a tuple \(h_0, c_0\)"),
    ("LSTM state as a 1-tuple", lambda: rnnkit.LSTM(3, 4)(x, (_z(1, 2, 4),)), ShapeError, "got 1 tensor"),
    ("GRU state as a pair", lambda: rnnkit.GRU(3, 4)(x, (_z(1, 2, 4),) * 2), ShapeError, "got 2 tensor"),
    ("state of floats", lambda: rnnkit.GRU(3, 4)(x, [1.0]), TypeError, "expected hx to be a Tensor, got float"),
    # torch.nn.LSTM does not check the state of a PackedSequence call: its kernel broadcasts a batch-1 c_0
    ("packed c_0 batch", lambda: rnnkit.LSTM(3, 4)(_packed(x), (_z(1, 2, 4), _z(1, 1, 4))), ShapeError, "c_0"),
    # torch.nn.LSTMCell promotes a float64 c to a float64 result
    ("cell c float64", lambda: rnnkit.LSTMCell(3, 4)(c2, (_z(2, 4), _z(2, 4, dtype=D))), DtypeError, r"hx\[1\]"),
    ("bool input_size", lambda: rnnkit.LSTM(True, 4), TypeError, "input_size should be of type int, got: bool"),
    ("bool cell hidden_size", lambda: rnnkit.RNNCell(3, True), TypeError, "hidden_size should be of type int"),
    ("cell nonlinearity", lambda: rnnkit.RNNCell(3, 4, nonlinearity="gelu"), ValueError, "Unknown nonlinearity"),
]


@pytest.mark.parametrize("case", RNNKIT_ONLY, ids=[c[0] for c in RNNKIT_ONLY])
def test_clear_errors_where_torch_has_none(case):
    _, call, exc, message = case
    with pytest.raises(exc, match=message):
        call()


# ---------------------------------------------------------------------------------------------------
# Edge shapes torch accepts
def _copy_pair(ours_cls, theirs_cls, engine, **kw):
    theirs = theirs_cls(3, 4, dtype=D, **kw)
    ours = ours_cls(3, 4, dtype=D, engine=engine, **kw)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
def test_empty_batch_gives_empty_outputs_on_every_engine(kind, batch_first, engine):
    kw = {"num_layers": 2, "bidirectional": True, "batch_first": batch_first, "dropout": 0.2}
    if kind == "LSTM":
        kw["proj_size"] = 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either
        ours, theirs = _copy_pair(getattr(rnnkit, kind), getattr(nn, kind), engine, **kw)
    inp = torch.randn((0, 6, 3) if batch_first else (6, 0, 3), dtype=D, requires_grad=True)
    results = []
    for module in (ours, theirs):
        out, state = module(inp)
        states = state if isinstance(state, tuple) else (state,)
        (out.sum() + sum(s.sum() for s in states)).backward()
        grads = [p.grad for p in module.parameters()]
        results.append((out, states, grads))
        module.zero_grad()
    (o1, s1, g1), (o2, s2, g2) = results
    assert o1.shape == o2.shape and [s.shape for s in s1] == [s.shape for s in s2]
    assert all(g.shape == p.shape and g.abs().sum() == 0 for g, p in zip(g1, ours.parameters(), strict=True))
    assert len(g1) == len(g2)
    # with a given (empty) state and lengths=, too
    hx = tuple(torch.zeros(4, 0, s.shape[-1], dtype=D) for s in s1)
    out, _ = ours(inp, hx if kind == "LSTM" else hx[0], lengths=torch.zeros(0, dtype=torch.long))
    assert out.shape == o1.shape


@pytest.mark.parametrize("engine", ["reference", "fused", "auto"])
@pytest.mark.parametrize("kind", ["PeepholeLSTM", "Jordan"])
def test_empty_batch_for_layers_torch_lacks(kind, engine):
    layer = rnnkit.Jordan(3, 4, 2, engine=engine) if kind == "Jordan" else rnnkit.PeepholeLSTM(3, 4, engine=engine)
    out, state, gates = layer(torch.randn(4, 0, 3), return_gates=True)
    assert out.shape == (4, 0, layer.output_size)
    assert all(g.shape[:3] == (1, 4, 0) for g in gates.values())


@pytest.mark.parametrize("kind", ["RNNCell", "GRUCell", "LSTMCell"])
@pytest.mark.parametrize("sizes", [(3, 0), (0, 4), (0, 0)], ids=["hidden=0", "input=0", "both=0"])
def test_cells_with_zero_sizes_match_torch(kind, sizes):
    theirs = getattr(nn, kind)(*sizes, dtype=D)
    ours = getattr(rnnkit, kind)(*sizes, dtype=D)
    ours.load_state_dict(theirs.state_dict())
    for inp in (torch.randn(2, sizes[0], dtype=D), torch.randn(sizes[0], dtype=D), torch.randn(0, sizes[0], dtype=D)):
        a, b = ours(inp), theirs(inp)
        for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,), strict=True):
            torch.testing.assert_close(u, v, rtol=0, atol=1e-12)
    # and a given state, stepped twice
    state = theirs(torch.randn(2, sizes[0], dtype=D))
    a = ours(torch.randn(2, sizes[0], dtype=D), state)
    n_states = 2 if kind == "LSTMCell" else 1
    assert [t.shape for t in (a if isinstance(a, tuple) else (a,))] == [(2, sizes[1])] * n_states


def test_zero_sized_cells_init_and_other_cells():
    assert rnnkit.GRUCell(3, 0, recurrent_init="orthogonal").weight_hh.shape == (0, 0)
    assert rnnkit.JordanCell(3, 4, 0)(torch.randn(2, 3)).shape == (2, 0)
    assert rnnkit.PeepholeLSTMCell(0, 2)(torch.randn(5, 0))[1].shape == (5, 2)
    with pytest.raises(ValueError, match="output_size must be greater than zero, got 0"):  # a layer needs some
        rnnkit.Jordan(3, 4, 0)


# ---------------------------------------------------------------------------------------------------
# Attributes and methods torch's classes have
def test_mode_and_proj_size_attributes():
    pairs = [
        (rnnkit.RNN(3, 4), nn.RNN(3, 4)),
        (rnnkit.RNN(3, 4, nonlinearity="relu"), nn.RNN(3, 4, nonlinearity="relu")),
        (rnnkit.GRU(3, 4), nn.GRU(3, 4)),
        (rnnkit.LSTM(3, 4), nn.LSTM(3, 4)),
        (rnnkit.LSTM(3, 4, proj_size=2), nn.LSTM(3, 4, proj_size=2)),
        (rnnkit.GRU(3, 4, 3, bias=False, batch_first=True), nn.GRU(3, 4, 3, bias=False, batch_first=True)),
    ]
    for ours, theirs in pairs:
        assert (ours.mode, ours.proj_size) == (theirs.mode, theirs.proj_size)
        if ours.mode != "RNN_RELU":  # rnnkit's repr also shows nonlinearity='relu'
            assert repr(ours) == repr(theirs)
    assert repr(rnnkit.LSTM(3, 4, 2, proj_size=2, bidirectional=True)) == repr(
        nn.LSTM(3, 4, 2, proj_size=2, bidirectional=True)
    )
    assert rnnkit.RNN(3, 4, activation="relu").mode == "RNN_RELU"  # the kernel that computes it
    assert rnnkit.RNN(3, 4, activation="identity").cells[0].torch_mode() is None  # ... or that none does


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
def test_check_forward_args_and_permute_hidden_match_torch(kind):
    ours, theirs = getattr(rnnkit, kind)(3, 4, 2, batch_first=True), getattr(nn, kind)(3, 4, 2, batch_first=True)
    inp = torch.randn(2, 5, 3)

    def state(B, H=4, L=2):
        return (_z(L, B, H), _z(L, B, H)) if kind == "LSTM" else _z(L, B, H)

    for module in (ours, theirs):
        module.check_forward_args(inp, state(2), None)  # fine: no exception
        module.check_forward_args(torch.randn(7, 3), state(2), torch.tensor([2, 2, 2, 1]))
    for bad in [
        (torch.randn(2, 5, 6), state(2), None),
        (inp, state(3), None),
        (inp, state(2, H=5), None),
        (inp, state(2, L=1), None),
        (inp.double(), state(2), None),
        (torch.randn(7, 6), state(2), torch.tensor([2, 2, 2, 1])),
        (torch.randn(7, 3), state(3), torch.tensor([2, 2, 2, 1])),
    ]:
        theirs_exc = _raised(lambda: theirs.check_forward_args(*bad))  # noqa: B023
        ours_exc = _raised(lambda: ours.check_forward_args(*bad))  # noqa: B023
        assert theirs_exc is not None and isinstance(ours_exc, type(theirs_exc)), (theirs_exc, ours_exc)
    perm = torch.tensor([2, 0, 1])
    hx = (torch.randn(2, 3, 4), torch.randn(2, 3, 4)) if kind == "LSTM" else torch.randn(2, 3, 4)
    for a, b in zip(ours.permute_hidden(hx, perm), theirs.permute_hidden(hx, perm), strict=True):
        assert torch.equal(a, b)
    assert ours.permute_hidden(hx, None) is hx


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
def test_packed_output_is_packed_as_the_input(kind, enforce_sorted, engine):
    ours, theirs = _copy_pair(getattr(rnnkit, kind), getattr(nn, kind), engine, num_layers=2, bidirectional=True)
    lengths = [6, 4, 4, 1] if enforce_sorted else [4, 6, 1, 4]  # ties on purpose: packing must keep their order
    packed = pack_padded_sequence(torch.randn(6, 4, 3, dtype=D), lengths, enforce_sorted=enforce_sorted)
    (o1, s1), (o2, s2) = ours(packed), theirs(packed)
    assert (o1.sorted_indices is None) == enforce_sorted
    for a, b in [(o1.batch_sizes, o2.batch_sizes), (o1.sorted_indices, o2.sorted_indices)]:
        assert (a is None and b is None) or torch.equal(a, b)
    if not enforce_sorted:
        assert torch.equal(o1.unsorted_indices, o2.unsorted_indices)
    torch.testing.assert_close(o1.data, o2.data, rtol=1e-10, atol=1e-10)
    for a, b in zip(s1 if kind == "LSTM" else (s1,), s2 if kind == "LSTM" else (s2,), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # and it unpacks to the same padded batch
    torch.testing.assert_close(pad_packed_sequence(o1)[0], pad_packed_sequence(o2)[0], rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------------
# TorchScript and tools keyed on torch's classes
class _Tagger(nn.Module):
    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(4 * (2 if rnn.bidirectional else 1), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out)


def test_torchscript_fails_in_one_line_naming_to_torch():
    for module in (rnnkit.LSTM(3, 4), _Tagger(rnnkit.GRU(3, 4)), rnnkit.LSTMCell(3, 4)):
        with pytest.raises(RuntimeError, match=r"does not support rnnkit's \w+: script rnnkit.to_torch\(model\)"):
            torch.jit.script(module)


@pytest.mark.parametrize(
    "make",
    [
        lambda: rnnkit.LSTM(3, 4, 2, batch_first=True, bidirectional=True, dtype=D),
        lambda: rnnkit.LSTM(3, 4, proj_size=2, dtype=D, forget_bias=1.0, recurrent_init="orthogonal"),
        lambda: rnnkit.GRU(3, 4, 2, bias=False, dtype=D),
        lambda: rnnkit.RNN(3, 4, nonlinearity="relu", dtype=D),
        lambda: rnnkit.RNN(3, 4, activation="relu", dtype=D),
    ],
    ids=["lstm-bi", "lstmp", "gru-nobias", "rnn-relu", "rnn-activation-relu"],
)
def test_to_torch_shares_parameters_and_computes_the_same(make):
    ours = make()
    ref = copy.deepcopy(ours)
    theirs = rnnkit.to_torch(ours)
    assert type(theirs) is getattr(nn, type(ours).__name__)
    assert all(a is b for a, b in zip(theirs.parameters(), ours.parameters(), strict=True))
    inp = torch.randn(5, 2, 3, dtype=D)
    for a, b in zip(theirs(inp), ref(inp), strict=True):
        for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,), strict=True):
            torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-10)


def test_to_torch_inside_a_model_then_quantize_dynamic():
    model = _Tagger(rnnkit.LSTM(3, 4, batch_first=True)).eval()
    inp = torch.randn(2, 7, 3)
    want = model(inp)
    converted = rnnkit.to_torch(copy.deepcopy(model))
    assert type(converted.rnn) is nn.LSTM and isinstance(model.rnn, rnnkit.LSTM)
    torch.testing.assert_close(torch.jit.script(converted)(inp), want)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao.quantization points to torchao
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.ao.quantization.quantize_dynamic(converted, {nn.LSTM})
    assert type(quantized.rnn) is torch.ao.nn.quantized.dynamic.LSTM
    torch.testing.assert_close(quantized(inp), want, rtol=0, atol=0.05)  # int8 weights: close, not equal


def test_to_torch_cells_and_what_it_refuses():
    cell = rnnkit.LSTMCell(3, 4, dtype=D)
    theirs = rnnkit.to_torch(cell)
    inp = torch.randn(2, 3, dtype=D)
    assert type(theirs) is nn.LSTMCell and theirs.weight_hh is cell.weight_hh
    for a, b in zip(theirs(inp), cell(inp), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert type(rnnkit.to_torch(rnnkit.RNNCell(3, 4, nonlinearity="relu"))) is nn.RNNCell
    assert rnnkit.to_torch(rnnkit.RNNCell(3, 4, nonlinearity="relu")).nonlinearity == "relu"
    model = nn.Sequential(rnnkit.GRU(3, 4), rnnkit.PeepholeLSTM(4, 4))
    with pytest.raises(ValueError, match="PeepholeLSTM '1' has no torch.nn equivalent: torch.nn has no PeepholeLSTM"):
        rnnkit.to_torch(model)
    for refused, reason in [
        (rnnkit.GRU(3, 4, reset_after=False), "torch has no kernel for GRUCell"),
        (rnnkit.LSTM(3, 4, recurrent_activation="hard_sigmoid"), "torch has no kernel for LSTMCell"),
        (rnnkit.LSTMCell(3, 4, proj_size=2), "torch.nn.LSTMCell has no proj_size"),
        (rnnkit.Jordan(3, 4, 2), "torch.nn has no Jordan"),
    ]:
        with pytest.raises(ValueError, match=reason):
            rnnkit.to_torch(refused)
    partly = rnnkit.to_torch(model, strict=False)
    assert type(partly[0]) is nn.GRU and type(partly[1]) is rnnkit.PeepholeLSTM
