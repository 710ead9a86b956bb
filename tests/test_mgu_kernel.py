"""MGU on the fused engine (the GRU kernels with r = f, z = 1 - f) equals the reference loop in float64: outputs,
final states, gates and every gradient, with lengths= and both directions; gradcheck, double backward, stepper."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from _kernel_checks import assert_gradcheck_with_lengths, assert_stepper_matches_layer
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
    assert_gradcheck_with_lengths(rnnkit.MGU(2, 3, dtype=D, engine="fused", bidirectional=True))


def test_stepper_runs_the_kernel_per_token():
    assert_stepper_matches_layer(rnnkit.MGU(3, 5, num_layers=2, dtype=D))
