"""What PyTorch's own RNN tests check, written for rnnkit (benchmarks/torch_rnn_tests.py runs those tests
themselves with rnnkit swapped in; docs/torch_compat.md has the counts).

Error messages code written for torch.nn can still recognise: each rnnkit message contains torch.nn's own
sentence for the same mistake (code and test suites match those with regular expressions) and keeps rnnkit's
one line naming what was expected. Every case runs the same call on torch.nn and on rnnkit and asserts that
torch's whole message, as the installed torch words it, appears inside rnnkit's; layer calls run on every engine.
Then whole-module pickling, and a batched backward (``is_grads_batched``, gradcheck's batched-grad check).
"""

from __future__ import annotations

import io
import pickle
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import rnnkit

ENGINES = ["auto", "reference", "torch", "fused"]
D = torch.float64
x = torch.randn(5, 4, 3)


def _message(call: Callable[[], Any]) -> tuple[type, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call()
        except Exception as e:  # noqa: BLE001 - the point is to see what each library raises
            return type(e), str(e)
    raise AssertionError("no error raised")


# (id, build the module from a namespace (torch.nn or rnnkit), call it or None for a constructor error)
LAYER_FORWARD = [
    ("input features", lambda ns: ns.LSTM(3, 5, 2), lambda m: m(torch.randn(5, 4, 7))),
    ("input features, batch_first", lambda ns: ns.GRU(3, 5, batch_first=True), lambda m: m(torch.randn(4, 5, 7))),
    ("state batch", lambda ns: ns.GRU(3, 5, 2), lambda m: m(x, torch.zeros(2, 7, 5))),
    ("state size", lambda ns: ns.RNN(3, 5, 2), lambda m: m(x, torch.zeros(2, 4, 6))),
    ("state layers", lambda ns: ns.RNN(3, 5, 2, bidirectional=True), lambda m: m(x, torch.zeros(2, 4, 5))),
    ("lstm h_0", lambda ns: ns.LSTM(3, 5, 2), lambda m: m(x, (torch.zeros(2, 7, 5), torch.zeros(2, 4, 5)))),
    ("lstm c_0", lambda ns: ns.LSTM(3, 5, 2), lambda m: m(x, (torch.zeros(2, 4, 5), torch.zeros(2, 4, 6)))),
    ("lstm proj h_0", lambda ns: ns.LSTM(3, 5, proj_size=2), lambda m: m(x, (torch.zeros(1, 4, 5),) * 2)),
    ("input dtype", lambda ns: ns.LSTM(3, 5), lambda m: m(x.double())),
    ("packed dtype", lambda ns: ns.GRU(3, 5), lambda m: m(nn.utils.rnn.pack_padded_sequence(x.double(), [5, 4, 3, 2]))),
    ("no time steps", lambda ns: ns.LSTM(3, 5), lambda m: m(torch.randn(0, 4, 3))),
    ("check_forward_args dims", lambda ns: ns.GRU(3, 5), lambda m: m.check_forward_args(x[0], None, None)),
]

CONSTRUCTORS = [
    ("bias not bool", lambda ns: ns.GRU(3, 5, bias=0)),
    ("batch_first not bool", lambda ns: ns.LSTM(3, 5, batch_first="False")),
    ("input_size float", lambda ns: ns.LSTM(3.0, 5)),
    ("hidden_size float", lambda ns: ns.RNN(3, 5.0)),
    ("input_size 0", lambda ns: ns.LSTM(0, 5)),
    ("hidden_size 0", lambda ns: ns.RNN(3, 0)),
    ("num_layers 0", lambda ns: ns.GRU(3, 5, 0)),
    ("proj_size not below hidden_size", lambda ns: ns.LSTM(3, 5, proj_size=5)),
    ("proj_size negative", lambda ns: ns.LSTM(3, 5, proj_size=-1)),
    ("dropout out of range", lambda ns: ns.LSTM(3, 5, 2, dropout=1.5)),
    ("unknown nonlinearity", lambda ns: ns.RNN(3, 5, nonlinearity="garbage")),
    ("proj_size on GRU", lambda ns: ns.GRU(3, 5, proj_size=2)),
    ("proj_size on RNN", lambda ns: ns.RNN(3, 5, proj_size=2)),
]

c3 = torch.randn(3, 10)
CELL_FORWARD = [
    ("input features", lambda ns: ns.LSTMCell(10, 20), lambda m: m(torch.randn(3, 11))),
    ("input 3-D", lambda ns: ns.GRUCell(10, 20), lambda m: m(torch.randn(1, 3, 10))),
    ("hx size", lambda ns: ns.RNNCell(10, 20), lambda m: m(c3, torch.randn(3, 21))),
    ("hx batch", lambda ns: ns.GRUCell(10, 20), lambda m: m(c3, torch.randn(5, 20))),
    ("hx 4-D", lambda ns: ns.RNNCell(10, 20, "relu"), lambda m: m(c3, torch.randn(3, 1, 1, 20))),
    ("lstmcell h size", lambda ns: ns.LSTMCell(10, 20), lambda m: m(c3, (torch.randn(3, 21), torch.randn(3, 20)))),
    ("lstmcell c size", lambda ns: ns.LSTMCell(10, 20), lambda m: m(c3, (torch.randn(3, 20), torch.randn(3, 21)))),
    ("lstmcell c batch", lambda ns: ns.LSTMCell(10, 20), lambda m: m(c3, (torch.randn(3, 20), torch.randn(5, 20)))),
    ("lstmcell h 4-D", lambda ns: ns.LSTMCell(10, 20), lambda m: m(c3, (torch.randn(3, 1, 1, 20),) * 2)),
    ("lstmcell c 4-D", lambda ns: ns.LSTMCell(10, 20), lambda m: m(c3, (torch.randn(3, 20), torch.randn(3, 1, 1, 20)))),
    ("unbatched hx size", lambda ns: ns.GRUCell(10, 20), lambda m: m(torch.randn(10), torch.randn(21))),
    # two mistakes (dtype and state size): torch checks shapes first, and so does rnnkit
    ("shape before dtype", lambda ns: ns.GRUCell(10, 20), lambda m: m(c3.to(D), torch.randn(3, 21, dtype=D))),
]


def _assert_contains_torch_message(theirs: tuple[type, str], ours: tuple[type, str], owner: str | None) -> None:
    assert issubclass(ours[0], theirs[0]), f"torch raised {theirs[0].__name__}, rnnkit {ours[0].__name__}"
    assert theirs[1] in ours[1], f"torch's message {theirs[1]!r} is not in rnnkit's {ours[1]!r}"
    assert "\n" not in ours[1]
    if owner is not None:  # a forward error names the module
        assert ours[1].startswith(f"{owner}: ")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", LAYER_FORWARD, ids=[c[0] for c in LAYER_FORWARD])
def test_layer_messages_contain_torchs(case, engine):
    _, make, call = case
    ours_layer = make(rnnkit)
    ours_layer.engine = engine
    theirs, ours = _message(lambda: call(make(nn))), _message(lambda: call(ours_layer))
    _assert_contains_torch_message(theirs, ours, type(ours_layer).__name__)


@pytest.mark.parametrize("case", CONSTRUCTORS, ids=[c[0] for c in CONSTRUCTORS])
def test_constructor_messages_contain_torchs_and_say_more(case):
    _, make = case
    theirs, ours = _message(lambda: make(nn)), _message(lambda: make(rnnkit))
    _assert_contains_torch_message(theirs, ours, None)
    assert len(ours[1]) > len(theirs[1]), "rnnkit also names the value it got, or the way out"


@pytest.mark.parametrize("case", CELL_FORWARD, ids=[c[0] for c in CELL_FORWARD])
def test_cell_messages_contain_torchs(case):
    _, make, call = case
    theirs, ours = _message(lambda: call(make(nn))), _message(lambda: call(make(rnnkit)))
    _assert_contains_torch_message(theirs, ours, type(make(rnnkit)).__name__)


def test_messages_keep_rnnkits_expected_shapes():
    """torch's sentence leads or follows; rnnkit's statement of the expected shape is still there."""
    cases = [
        (lambda: rnnkit.LSTMCell(10, 20)(torch.randn(3, 11)), "expected input of shape (B, 10) or (10,), got (3, 11)"),
        (lambda: rnnkit.GRUCell(10, 20)(c3, torch.randn(5, 20)), "expected hx of shape (3, 20), got (5, 20)"),
        (lambda: rnnkit.LSTM(3, 5)(x, (torch.zeros(1, 4, 5), torch.zeros(1, 4, 6))), "expected c_0 of shape (1, 4, 5)"),
        (lambda: rnnkit.LSTM(3, 5)(torch.randn(5, 4, 7)), "expected input of shape (T, B, 3) (batch_first=False)"),
        (lambda: rnnkit.RNN(3, 5, nonlinearity="gelu"), "Any other function goes in activation="),
    ]
    for call, phrase in cases:
        assert phrase in _message(call)[1]


def test_dtype_fix_for_an_integer_input_converts_the_input_only():
    """torch.nn suggests model.to(input dtype); for an integer input that is no fix, so rnnkit leaves it out."""
    kind, message = _message(lambda: rnnkit.GRU(3, 5)(x.long()))
    assert issubclass(kind, rnnkit.DtypeError)
    assert "Convert input: input.to(torch.float32)" in message and "model.to" not in message


# ---------------------------------------------------------------------------------------------------
# Whole modules pickled (torch.save(model)), as torch.nn's are
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
def test_whole_layer_pickles_like_torchs(kind, engine):
    layer = getattr(rnnkit, kind)(3, 4, 2, bidirectional=True, engine=engine, dtype=D)
    inp = torch.randn(6, 2, 3, dtype=D)
    buf = io.BytesIO()
    torch.save(layer, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    again = pickle.loads(pickle.dumps(layer))
    assert type(loaded) is type(layer) and loaded.engine == engine
    for copy_ in (loaded, again):
        for a, b in zip(torch.utils._pytree.tree_leaves(copy_(inp)), torch.utils._pytree.tree_leaves(layer(inp))):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    # torch.load's default (weights_only=True) refuses a pickled module, torch.nn's and rnnkit's alike
    for module in (layer, getattr(nn, kind)(3, 4)):
        buf = io.BytesIO()
        torch.save(module, buf)
        buf.seek(0)
        with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
            torch.load(buf)


@pytest.mark.parametrize("kind", ["RNNCell", "GRUCell", "LSTMCell"])
def test_whole_cell_pickles_like_torchs(kind):
    cell = getattr(rnnkit, kind)(3, 4, dtype=D)
    inp = torch.randn(2, 3, dtype=D)
    again = pickle.loads(pickle.dumps(cell))
    for a, b in zip(torch.utils._pytree.tree_leaves(again(inp)), torch.utils._pytree.tree_leaves(cell(inp))):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------
# A batched backward: autograd.grad(..., is_grads_batched=True) runs the backward under vmap (gradcheck's
# check_batched_grad does the same). torch.nn supports it, and so does every engine: the fused operator's
# backward has a batching rule (rnnkit::sequence_backward), which "auto" reaches from 16 steps.


def _batched_grad(layer: nn.Module, steps: int) -> torch.Tensor:
    inp = torch.randn(steps, 1, 2, dtype=D, requires_grad=True)
    out = layer(inp)[0]
    eye = torch.eye(out.numel(), dtype=D).view(-1, *out.shape)
    return torch.autograd.grad(out, inp, eye, is_grads_batched=True)[0]


@pytest.mark.parametrize(
    ("engine", "steps"),
    [
        ("reference", 20),
        ("torch", 20),
        ("auto", 3),
        ("fused", 3),
        ("auto", 20),
    ],
)
def test_batched_backward_matches_torch(engine, steps):
    theirs = nn.GRU(2, 3, dtype=D)
    ours = rnnkit.GRU(2, 3, engine=engine, dtype=D)
    ours.load_state_dict(theirs.state_dict())
    torch.manual_seed(0)
    want = _batched_grad(theirs, steps)
    torch.manual_seed(0)
    torch.testing.assert_close(_batched_grad(ours, steps), want, rtol=1e-10, atol=1e-12)
