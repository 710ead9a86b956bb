"""The generic layer: torch.nn parity (both engines), lengths=, gates, stepping the cell by hand, errors."""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit.layer import Recurrent

D = torch.float64
ENGINES = ["reference", "torch"]

# (rnnkit class, torch class, extra constructor kwargs)
PAIRS = [
    (rnnkit.RNN, torch.nn.RNN, {}),
    (rnnkit.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    (rnnkit.GRU, torch.nn.GRU, {}),
    (rnnkit.LSTM, torch.nn.LSTM, {}),
    (rnnkit.LSTM, torch.nn.LSTM, {"proj_size": 2}),
]
LAYOUTS = [
    {"num_layers": 1},
    {"num_layers": 2, "bidirectional": True},
    {"num_layers": 3, "batch_first": True},
    {"num_layers": 2, "bidirectional": True, "batch_first": True, "bias": False},
]


def _pair(ours_cls, theirs_cls, engine, **kw):
    theirs = theirs_cls(3, 4, dtype=D, **kw)
    ours = ours_cls(3, 4, dtype=D, engine=engine, **kw)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _state(theirs, batch):
    D_ = 2 if theirs.bidirectional else 1
    n = theirs.num_layers * D_
    h_size = getattr(theirs, "proj_size", 0) or theirs.hidden_size
    shape = (n, batch, h_size) if batch else (n, h_size)
    h = torch.randn(shape, dtype=D)
    if isinstance(theirs, torch.nn.LSTM):
        c = torch.randn(shape[:-1] + (theirs.hidden_size,), dtype=D)
        return (h, c)
    return h


def _flat(out):
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in _flat(o)]


def _run(module, x, hx, pack_lengths=None, **kw):
    module.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    hx = tuple(h.clone().requires_grad_() for h in _flat(hx))
    inp = x if pack_lengths is None else pack_padded_sequence(x, pack_lengths, enforce_sorted=False)
    out = module(inp, hx if len(hx) > 1 else hx[0], **kw)
    tensors = _flat(out[0].data if hasattr(out[0], "batch_sizes") else out[0]) + _flat(out[1])
    loss = sum(((k + 1) * t).sin().sum() for k, t in enumerate(tensors))
    loss.backward()
    grads = [p.grad for p in module.parameters()] + [x.grad] + [h.grad for h in hx]
    return [t.detach() for t in tensors], grads


def _assert_all_close(a, b, tol=1e-10):
    assert len(a) == len(b)
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v, rtol=tol, atol=tol)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
@pytest.mark.parametrize("ours_cls, theirs_cls, extra", PAIRS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_layer_matches_torch_outputs_and_gradients(ours_cls, theirs_cls, extra, layout, engine):
    ours, theirs = _pair(ours_cls, theirs_cls, engine, **extra, **layout)
    x = torch.randn((5, 6, 3) if layout.get("batch_first") else (6, 5, 3), dtype=D)
    hx = _state(theirs, 5)
    out_ours, grads_ours = _run(ours, x, hx)
    out_theirs, grads_theirs = _run(theirs, x, hx)
    _assert_all_close(out_ours, out_theirs)
    _assert_all_close(grads_ours, grads_theirs)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("ours_cls, theirs_cls, extra", PAIRS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_unbatched_and_default_state(ours_cls, theirs_cls, extra, engine):
    ours, theirs = _pair(ours_cls, theirs_cls, engine, num_layers=2, bidirectional=True, **extra)
    x = torch.randn(7, 3, dtype=D)
    hx = _state(theirs, 0)
    _assert_all_close(*[sum(_run(m, x, hx), []) for m in (ours, theirs)])
    _assert_all_close(_flat(ours(x)), _flat(theirs(x)))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("ours_cls, theirs_cls, extra", PAIRS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_packed_sequence_and_lengths_match_torch_packed(ours_cls, theirs_cls, extra, engine):
    ours, theirs = _pair(ours_cls, theirs_cls, engine, num_layers=2, bidirectional=True, **extra)
    lengths = torch.tensor([3, 6, 1, 4])  # unsorted on purpose
    x = torch.randn(6, 4, 3, dtype=D)
    hx = _state(theirs, 4)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    ref_out, ref_grads = _run(theirs, x, hx, lengths)
    # PackedSequence in, PackedSequence out
    out, grads = _run(ours, x, hx, lengths)
    _assert_all_close(out, ref_out)
    _assert_all_close(grads, ref_grads)

    # padded batch + lengths: outputs zero past each length, states at the last valid step
    o_t, s_t = theirs(packed, hx)
    o_t, _ = pad_packed_sequence(o_t, total_length=6)
    o_r, s_r = ours(x, hx, lengths=lengths)
    _assert_all_close(_flat(o_r) + _flat(s_r), _flat(o_t) + _flat(s_t))
    for b, n in enumerate(lengths.tolist()):
        assert o_r[n:, b].abs().sum() == 0
    # and the gradients through lengths= equal torch's through the packed path
    _assert_all_close(_run(ours, x, hx, lengths=lengths)[1], ref_grads)


def test_state_dict_names_and_order_are_torchs():
    lstm_kw = {"num_layers": 2, "bidirectional": True, "proj_size": 2}
    for ours, theirs in [
        (rnnkit.LSTM(3, 4, **lstm_kw), torch.nn.LSTM(3, 4, **lstm_kw)),
        (rnnkit.GRU(3, 4, 3, bias=False), torch.nn.GRU(3, 4, 3, bias=False)),
    ]:
        assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
        theirs.load_state_dict(ours.state_dict())
        assert ours.weight_hh_l1.shape == theirs.weight_hh_l1.shape
        shapes = [[[p.shape for p in ws] for ws in m.all_weights] for m in (ours, theirs)]
        assert shapes[0] == shapes[1]


CUSTOM = {
    "peephole": lambda f, h, **kw: rnnkit.PeepholeLSTM(f, h, **kw),
    "peephole-proj": lambda f, h, **kw: rnnkit.PeepholeLSTM(f, h, proj_size=h - 1, **kw),
    "jordan": lambda f, h, **kw: rnnkit.Jordan(f, h, 2, **kw),
    "gru-reset-before": lambda f, h, **kw: rnnkit.GRU(f, h, reset_after=False, **kw),
    "lstm-hard-sigmoid": lambda f, h, **kw: rnnkit.LSTM(f, h, recurrent_activation="hard_sigmoid", **kw),
    "elman-identity": lambda f, h, **kw: rnnkit.RNN(f, h, activation="identity", **kw),
}


def _step_by_hand(layer: Recurrent, x, lengths):
    """Drive each (layer, direction) cell one step at a time in plain Python: the definition of the layer."""
    T, B = x.shape[:2]
    D_ = layer.num_directions
    inp = x
    finals = []
    for l in range(layer.num_layers):
        outs = []
        for d in range(D_):
            k = l * D_ + d
            cell, w = layer.cells[k], layer.weights(k)
            out = torch.zeros(T, B, cell.output_size, dtype=x.dtype)
            last = []
            for b in range(B):
                n = int(lengths[b])
                state = cell.zero_state(1, device=x.device, dtype=x.dtype)
                order = range(n) if d == 0 else range(n - 1, -1, -1)
                for t in order:
                    state, _ = cell.step(inp[t, b : b + 1], state, w)
                    out[t, b] = state[0][0]
                last.append(state)
            finals.append(tuple(torch.cat(s) for s in zip(*last)))
            outs.append(out)
        inp = torch.cat(outs, -1)
    return inp, tuple(torch.stack(s) for s in zip(*finals))


@pytest.mark.parametrize("name", list(CUSTOM))
def test_layer_equals_stepping_the_cell_by_hand(name):
    layer = CUSTOM[name](3, 4, num_layers=2, bidirectional=True, dtype=D)
    x = torch.randn(5, 3, 3, dtype=D)
    lengths = torch.tensor([5, 2, 4])
    want_out, want_state = _step_by_hand(layer, x, lengths)
    out, state = layer(x, lengths=lengths)
    _assert_all_close(_flat(out) + _flat(state), _flat(want_out) + _flat(want_state), tol=1e-12)


@pytest.mark.parametrize("name", list(CUSTOM))
def test_gradcheck_layers_without_torch_peer(name):
    layer = CUSTOM[name](2, 2, num_layers=2, bidirectional=True, dtype=D)
    x = torch.randn(3, 2, 2, dtype=D, requires_grad=True)
    params = list(layer.parameters())

    names = [n for n, _ in layer.named_parameters()]

    def f(x, *ps):
        return _flat(torch.func.functional_call(layer, dict(zip(names, ps, strict=True)), (x,)))

    assert torch.autograd.gradcheck(f, (x, *params))


def test_return_gates_match_stepping_and_zero_past_length():
    layer = rnnkit.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=D)
    x = torch.randn(5, 2, 3, dtype=D)
    lengths = torch.tensor([5, 3])
    out, (h, c), gates = layer(x, lengths=lengths, return_gates=True)
    assert set(gates) == {"i", "f", "g", "o", "c"}
    assert gates["i"].shape == (4, 5, 2, 4)
    # forward direction of layer 0, sequence 0, step by step
    cell, w = layer.cells[0], layer.weights(0)
    state = cell.zero_state(1, dtype=D)
    for t in range(5):
        state, g = cell.step(x[t, :1], state, w)
        for name in ("i", "f", "g", "o", "c"):
            torch.testing.assert_close(gates[name][0, t, 0], g[name][0], rtol=0, atol=1e-12)
    assert gates["f"][:, 3:, 1].abs().max() == 0  # past sequence 1's length
    # c_n of each direction is the gate record's c at the last valid step (reverse: at t = 0)
    torch.testing.assert_close(c[0, 1], gates["c"][0, 2, 1])
    torch.testing.assert_close(c[1, 1], gates["c"][1, 0, 1])
    # batch_first moves the batch axis of the gate record too
    layer.batch_first = True
    _, _, gates_bf = layer(x.transpose(0, 1), lengths=lengths, return_gates=True)
    torch.testing.assert_close(gates_bf["o"], gates["o"].transpose(1, 2))


def test_auto_engine_choice_and_explicit_engine_errors():
    from rnnkit.engines import select_engine

    x = torch.randn(3, 2, 3)
    assert select_engine(rnnkit.LSTM(3, 4), x, False).name in ("torch", "fused")
    assert select_engine(rnnkit.LSTM(3, 4), x, True).name != "torch"
    with pytest.raises(ValueError, match="engine='torch' cannot run this call: torch has no kernel for PeepholeLSTM"):
        rnnkit.PeepholeLSTM(3, 4, engine="torch")(x)
    with pytest.raises(ValueError, match="cannot run this call: torch's kernels do not expose gate activations"):
        rnnkit.GRU(3, 4, engine="torch")(x, return_gates=True)
    with pytest.raises(ValueError, match="unknown engine 'warp'"):
        rnnkit.LSTM(3, 4, engine="warp")


def test_layer_errors_name_expected_and_got():
    lstm = rnnkit.LSTM(28, 8)
    with pytest.raises(ValueError, match=r"expected input of shape \(T, B, 28\) \(batch_first=False\) or unbatched"):
        lstm(torch.randn(32))
    with pytest.raises(ValueError, match=r"expected input of shape \(T, B, 28\) \(batch_first=False\), got \(32, 35\)"):
        lstm(torch.randn(32, 35))
    with pytest.raises(ValueError, match=r"expected input of shape \(B, T, 28\) \(batch_first=True\)"):
        rnnkit.GRU(28, 8, batch_first=True)(torch.randn(2, 3, 27))
    with pytest.raises(TypeError, match=r"RNN input dtype \(torch.float64\) does not match weight dtype"):
        lstm(torch.randn(3, 2, 28, dtype=D))
    with pytest.raises(ValueError, match="input is on meta but the parameters are on cpu; move them to one device"):
        lstm(torch.randn(3, 2, 28, device="meta"))
    with pytest.raises(ValueError, match=r"expected h_0 of shape \(1, 2, 8\)"):
        lstm(torch.randn(3, 2, 28), (torch.zeros(2, 2, 8), torch.zeros(1, 2, 8)))
    with pytest.raises(TypeError, match=r"expected the initial state as a tuple \(h_0, c_0\), got one Tensor"):
        lstm(torch.randn(3, 2, 28), torch.zeros(1, 2, 8))
    with pytest.raises(ValueError, match=r"every length must be in \[1, T=3\], got min 1 max 4"):
        lstm(torch.randn(3, 2, 28), lengths=[4, 1])
    with pytest.raises(ValueError, match=r"every length must be in \[1, T=3\], got min 0"):
        lstm(torch.randn(3, 2, 28), lengths=[0, 3])
    with pytest.raises(ValueError, match="lengths must be 2 integers"):
        lstm(torch.randn(3, 2, 28), lengths=[1, 2, 3])
    with pytest.raises(ValueError, match="proj_size"):
        rnnkit.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match=r"dropout should be a number in range \[0, 1\]"):
        rnnkit.GRU(3, 4, 2, dropout=1.5)
    with pytest.warns(UserWarning, match="no effect with num_layers=1"):
        rnnkit.GRU(3, 4, dropout=0.5)


def test_dropout_between_layers_is_active_only_in_training():
    layer = rnnkit.GRU(3, 16, num_layers=2, dropout=0.5, engine="reference")
    x = torch.randn(4, 2, 3)
    layer.eval()
    a, b = layer(x)[0], layer(x)[0]
    assert torch.equal(a, b)
    layer.train()
    assert not torch.equal(layer(x)[0], layer(x)[0])
