"""Cells: parity with torch.nn cells, gradcheck, hand-computed golden values, init options, input checks."""

import math

import pytest
import torch

import rnnkit
from rnnkit.cells import GRUCell, JordanCell, LSTMCell, PeepholeLSTMCell, RNNCell

D = torch.float64

TORCH_PEERS = [
    (lambda: RNNCell(3, 4, dtype=D), lambda: torch.nn.RNNCell(3, 4, dtype=D)),
    (lambda: RNNCell(3, 4, nonlinearity="relu", dtype=D), lambda: torch.nn.RNNCell(3, 4, nonlinearity="relu", dtype=D)),
    (lambda: RNNCell(3, 4, bias=False, dtype=D), lambda: torch.nn.RNNCell(3, 4, bias=False, dtype=D)),
    (lambda: GRUCell(3, 4, dtype=D), lambda: torch.nn.GRUCell(3, 4, dtype=D)),
    (lambda: LSTMCell(3, 4, dtype=D), lambda: torch.nn.LSTMCell(3, 4, dtype=D)),
    (lambda: LSTMCell(3, 4, bias=False, dtype=D), lambda: torch.nn.LSTMCell(3, 4, bias=False, dtype=D)),
]


def _grads(module, *tensors):
    return [p.grad.clone() for p in module.parameters()] + [t.grad.clone() for t in tensors]


def _as_tuple(s):
    return s if isinstance(s, tuple) else (s,)


@pytest.mark.parametrize("make_ours, make_theirs", TORCH_PEERS)
@pytest.mark.parametrize("batched", [True, False])
def test_cell_matches_torch_after_copying_weights(make_ours, make_theirs, batched):
    theirs, ours = make_theirs(), make_ours()
    ours.load_state_dict(theirs.state_dict())  # torch -> rnnkit
    shape = (5, 3) if batched else (3,)
    x = torch.randn(shape, dtype=D)
    state_shape = (5, 4) if batched else (4,)
    n_states = 2 if isinstance(theirs, torch.nn.LSTMCell) else 1
    hx = tuple(torch.randn(state_shape, dtype=D) for _ in range(n_states))
    outs = []
    for m in (theirs, ours):
        xi = x.clone().requires_grad_()
        hi = tuple(h.clone().requires_grad_() for h in hx)
        out = _as_tuple(m(xi, hi if n_states == 2 else hi[0]))
        sum((o * (k + 1.5)).sum() for k, o in enumerate(out)).backward()
        outs.append(([o.detach() for o in out], _grads(m, xi, *hi)))
    for a, b in zip(outs[0][0] + outs[0][1], outs[1][0] + outs[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("make_ours, make_theirs", TORCH_PEERS)
def test_state_dict_moves_both_ways(make_ours, make_theirs):
    ours, theirs = make_ours(), make_theirs()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())  # rnnkit -> torch
    for (n1, p1), (n2, p2) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2)


ALL_CELLS = {
    "elman-tanh": lambda: RNNCell(3, 4, dtype=D),
    "elman-relu": lambda: RNNCell(3, 4, nonlinearity="relu", dtype=D),
    "jordan": lambda: JordanCell(3, 4, 2, dtype=D),
    "jordan-sigmoid-out": lambda: JordanCell(3, 4, 2, output_activation="sigmoid", dtype=D),
    "gru": lambda: GRUCell(3, 4, dtype=D),
    "gru-reset-before": lambda: GRUCell(3, 4, reset_after=False, dtype=D),
    "lstm": lambda: LSTMCell(3, 4, dtype=D),
    "lstm-proj": lambda: LSTMCell(3, 4, proj_size=2, dtype=D),
    "lstm-hard-sigmoid": lambda: LSTMCell(3, 4, recurrent_activation="hard_sigmoid", dtype=D),
    "peephole": lambda: PeepholeLSTMCell(3, 4, dtype=D),
    "peephole-proj": lambda: PeepholeLSTMCell(3, 4, proj_size=2, dtype=D),
}


@pytest.mark.parametrize("name", list(ALL_CELLS))
def test_gradcheck_every_cell(name):
    cell = ALL_CELLS[name]()
    x = torch.randn(2, 3, dtype=D, requires_grad=True)
    state = tuple(torch.randn(2, s, dtype=D, requires_grad=True) for s in cell.state_sizes)
    params = [p for p in cell.parameters()]

    def f(x, *args):
        st, ps = args[: len(state)], args[len(state) :]
        w = type("W", (), dict(zip([n for n, _ in cell.named_parameters()], ps, strict=True)))
        for n in cell.parameter_shapes():
            if not hasattr(w, n):
                setattr(w, n, None)
        new_state, _ = cell.step(x, st, w)
        return new_state

    assert torch.autograd.gradcheck(f, (x, *state, *params))


def sig(v):
    return 1 / (1 + math.exp(-v))


def test_golden_peephole_by_hand():
    """One unit, one input, every weight 0.5 except the peepholes (0.1, 0.2, 0.3): computed with pencil math."""
    cell = PeepholeLSTMCell(1, 1, dtype=D)
    with torch.no_grad():
        for p in cell.parameters():
            p.fill_(0.5)
        cell.weight_ci.fill_(0.1), cell.weight_cf.fill_(0.2), cell.weight_co.fill_(0.3)
    x, h0, c0 = 1.0, 0.2, -0.4
    a = 0.5 * x + 0.5 + 0.5 * h0 + 0.5  # every gate's x/h pre-activation: 1.6
    i, f, g = sig(a + 0.1 * c0), sig(a + 0.2 * c0), math.tanh(a)
    c = f * c0 + i * g
    o = sig(a + 0.3 * c)
    h = o * math.tanh(c)
    h1, c1 = cell(torch.tensor([[x]], dtype=D), (torch.tensor([[h0]], dtype=D), torch.tensor([[c0]], dtype=D)))
    assert h1.item() == pytest.approx(h, abs=1e-14) and c1.item() == pytest.approx(c, abs=1e-14)


def test_golden_gru_reset_before_by_hand():
    """Cho et al.'s form: the reset gate scales h *before* W_hn. Weights chosen so r, z differ from 1/2."""
    cell = GRUCell(1, 1, reset_after=False, dtype=D)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor([[0.3], [-0.2], [0.7]], dtype=D))
        cell.weight_hh.copy_(torch.tensor([[0.5], [0.4], [-0.6]], dtype=D))
        cell.bias_ih.copy_(torch.tensor([0.1, 0.2, -0.1], dtype=D))
        cell.bias_hh.copy_(torch.tensor([0.05, -0.05, 0.3], dtype=D))
    x, h0 = 2.0, -0.5
    r = sig(0.3 * x + 0.1 + 0.5 * h0 + 0.05)
    z = sig(-0.2 * x + 0.2 + 0.4 * h0 - 0.05)
    n = math.tanh(0.7 * x - 0.1 + (-0.6) * (r * h0) + 0.3)
    h = (1 - z) * n + z * h0
    assert cell(torch.tensor([[x]], dtype=D), torch.tensor([[h0]], dtype=D)).item() == pytest.approx(h, abs=1e-14)
    # and it differs from the reset-after form with the same weights
    after = GRUCell(1, 1, dtype=D)
    after.load_state_dict(cell.state_dict())
    assert after(torch.tensor([[x]], dtype=D), torch.tensor([[h0]], dtype=D)).item() != pytest.approx(h, abs=1e-6)


def test_golden_jordan_by_hand():
    """Two steps, so the fed-back output y (not the hidden layer) visibly drives the second step."""
    cell = JordanCell(1, 2, 1, dtype=D)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor([[1.0], [-1.0]], dtype=D))
        cell.weight_yh.copy_(torch.tensor([[0.5], [2.0]], dtype=D))
        cell.weight_hy.copy_(torch.tensor([[1.0, 0.5]], dtype=D))
        for b in (cell.bias_ih, cell.bias_yh, cell.bias_hy):
            b.zero_()
    y = 0.0
    xs = [0.3, -0.7]
    for x in xs:
        h1, h2 = math.tanh(x + 0.5 * y), math.tanh(-x + 2.0 * y)
        y = h1 + 0.5 * h2
    out = None
    for x in xs:
        out = cell(torch.tensor([[x]], dtype=D), out)
    assert out.item() == pytest.approx(y, abs=1e-14)


def test_activations_by_name_and_callable():
    x = torch.linspace(-4, 4, 9, dtype=D)
    hs = rnnkit.get_activation("hard_sigmoid")
    torch.testing.assert_close(hs(x), torch.clamp(x / 6 + 0.5, 0, 1))
    assert rnnkit.get_activation("identity")(x) is x
    fn = torch.nn.functional.softsign
    cell = LSTMCell(2, 3, activation=fn, dtype=D)
    assert cell.activation is fn and cell.torch_mode() is None
    with pytest.raises(ValueError, match="unknown activation 'swishy'"):
        LSTMCell(2, 3, activation="swishy")
    with pytest.raises(ValueError, match="unknown recurrent_activation"):
        GRUCell(2, 3, recurrent_activation="nope")


def test_forget_bias_and_orthogonal_init():
    torch.manual_seed(1)
    plain = LSTMCell(3, 5)
    torch.manual_seed(1)
    biased = LSTMCell(3, 5, forget_bias=1.0)
    diff = biased.bias_ih - plain.bias_ih
    torch.testing.assert_close(diff[5:10], torch.ones(5))
    assert diff[:5].abs().max() == 0 and diff[10:].abs().max() == 0
    bound = 1 / math.sqrt(5)
    assert plain.weight_hh.abs().max() <= bound
    ortho = GRUCell(3, 5, recurrent_init="orthogonal", dtype=D)
    for block in ortho.weight_hh.split(5):
        torch.testing.assert_close(block @ block.T, torch.eye(5, dtype=D))
    with pytest.raises(ValueError, match="forget_bias needs bias=True"):
        LSTMCell(3, 5, bias=False, forget_bias=1.0)


def test_cell_input_errors_name_what_was_expected():
    cell = LSTMCell(3, 4)
    with pytest.raises(ValueError, match=r"inconsistent input_size: got 5 expected 3 \(expected input of shape"):
        cell(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"expected input of shape \(B, 3\) or \(3,\)"):
        cell(torch.randn(1, 2, 3))
    with pytest.raises(TypeError, match=r"input dtype \(torch.float64\) does not match weight dtype \(torch.float32\)"):
        cell(torch.randn(2, 3, dtype=D))
    with pytest.raises(ValueError, match=r"expected hx\[1\] of shape \(2, 4\), got \(2, 3\)"):
        cell(torch.randn(2, 3), (torch.zeros(2, 4), torch.zeros(2, 3)))
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size, got proj_size=4 and hidden"):
        LSTMCell(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="hidden_size must be at least 0, got -1"):
        RNNCell(3, -1)
    with pytest.raises(TypeError, match=r"hidden_size should be of type int, got: float \(4.0\)"):
        RNNCell(3, 4.0)
    with pytest.raises(ValueError, match="Unknown nonlinearity 'gelu'. Select from 'tanh' or 'relu'"):
        RNNCell(3, 4, nonlinearity="gelu")
