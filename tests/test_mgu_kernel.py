"""MGU on the fused engine (the GRU kernels with r = f, z = 1 - f) equals the reference loop in float64: outputs,
final states, gates and every gradient, with lengths= and both directions; gradcheck, double backward, stepper."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.engines import ENGINES, select_engine
from rnnkit.engines.fused import build

D = torch.float64
pytestmark = pytest.mark.skipif(not build.available(), reason="the native kernels are not built here")


def run(layer, x, h0, lengths):
    x, h0 = x.clone().requires_grad_(), h0.clone().requires_grad_()
    out, hn, gates = layer(x, h0, lengths=lengths, return_gates=True)
    loss = (out * torch.linspace(-1, 1, out.shape[-1], dtype=D)).sum() + (hn**3).sum()
    loss = loss + (gates["f"] * 2).sum() + (gates["n"] ** 2).sum()
    layer.zero_grad()
    loss.backward()
    return [out, hn, gates["f"], gates["n"], x.grad, h0.grad, *(p.grad for p in layer.parameters())]


@pytest.mark.parametrize("recurrent_activation", ["sigmoid", "hard_sigmoid"])
@pytest.mark.parametrize("lengths", [None, [6, 2, 5, 1]])
def test_kernel_equals_reference_float64(recurrent_activation, lengths):
    kw = dict(num_layers=2, bidirectional=True, dtype=D, recurrent_activation=recurrent_activation)
    kw.update(bias=lengths is None, activation="tanh" if lengths is None else "relu")
    fused, ref = rnnkit.MGU(3, 19, engine="fused", **kw), rnnkit.MGU(3, 19, engine="reference", **kw)
    ref.load_state_dict(fused.state_dict())
    x, h0 = torch.randn(6, 4, 3, dtype=D), torch.randn(4, 4, 19, dtype=D)
    assert select_engine(fused, x, True) is ENGINES["fused"]
    # torch's hardsigmoid backward multiplies by 1/6 rounded to float32; the kernels use the exact 1/6 (engines.md)
    tol = 1e-6 if recurrent_activation == "hard_sigmoid" else 1e-12
    for a, b in zip(run(fused, x, h0, lengths), run(ref, x, h0, lengths), strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_other_gate_activations_stay_on_the_reference_loop():
    layer = rnnkit.MGU(3, 4, recurrent_activation="tanh")
    x = torch.randn(20, 2, 3)
    assert select_engine(layer, x, False).name == "reference"
    layer.engine = "fused"
    with pytest.raises(ValueError, match="needs recurrent_activation sigmoid or hard_sigmoid"):
        layer(x)


def test_gradcheck_and_double_backward():
    layer = rnnkit.MGU(2, 3, dtype=D, engine="fused", bidirectional=True)
    names = [n for n, _ in layer.named_parameters()]
    x = torch.randn(4, 2, 2, dtype=D, requires_grad=True)
    ps = [p.detach().clone().requires_grad_() for p in layer.parameters()]

    def f(x, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (x,), {"lengths": torch.tensor([4, 3])})[0]

    assert torch.autograd.gradcheck(f, (x, *ps))
    assert torch.autograd.gradgradcheck(f, (x, *ps))


def test_stepper_runs_the_kernel_per_token():
    layer = rnnkit.MGU(3, 5, num_layers=2, dtype=D)
    step = layer.stepper()
    x = torch.randn(5, 2, 3, dtype=D)
    out, hn = layer(x)
    state = None
    for t in range(5):
        y, state = step(x[t], state)
        torch.testing.assert_close(y, out[t], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state, hn, rtol=1e-12, atol=1e-12)
