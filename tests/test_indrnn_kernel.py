"""IndRNN on the fused engine's C kernels equals the reference loop in float64: outputs, final states, gates and
every gradient, with lengths= and both directions, for each named activation; the stepper and double backward."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from _kernel_checks import assert_gradcheck_with_lengths, assert_stepper_matches_layer
from rnnkit.engines import ENGINES, select_engine
from rnnkit.engines.fused import build

D = torch.float64
pytestmark = pytest.mark.skipif(not build.available(), reason="the native kernels are not built here")


def pair(**kw) -> tuple[rnnkit.IndRNN, rnnkit.IndRNN]:
    fused = rnnkit.IndRNN(3, 19, dtype=D, engine="fused", **kw)  # 19 units: whole vectors and a partial one
    ref = rnnkit.IndRNN(3, 19, dtype=D, engine="reference", **kw)
    ref.load_state_dict(fused.state_dict())
    return fused, ref


def run(layer, x, h0, lengths, gates):
    x, h0 = x.clone().requires_grad_(), h0.clone().requires_grad_()
    res = layer(x, h0, lengths=lengths, return_gates=gates)
    out, hn = res[:2]
    loss = (out * torch.linspace(-1, 1, out.shape[-1], dtype=D)).sum() + (hn**3).sum()
    if gates:
        loss = loss + (res[2]["h"] ** 2).sum()
    layer.zero_grad()
    loss.backward()
    return [*res[:2], *(res[2].values() if gates else []), x.grad, h0.grad, *(p.grad for p in layer.parameters())]


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "identity", "hard_sigmoid"])
@pytest.mark.parametrize("lengths", [None, [6, 2, 5, 1]])
@pytest.mark.parametrize("gates", [False, True])
def test_kernel_equals_reference_float64(activation, lengths, gates):
    fused, ref = pair(num_layers=2, bidirectional=True, activation=activation, bias=lengths is None)
    x, h0 = torch.randn(6, 4, 3, dtype=D), torch.randn(4, 4, 19, dtype=D)
    assert select_engine(fused, x, gates) is ENGINES["fused"]
    # torch's hardsigmoid backward multiplies by 1/6 rounded to float32; the kernels use the exact 1/6 (engines.md)
    tol = 1e-6 if activation == "hard_sigmoid" else 1e-12
    for a, b in zip(run(fused, x, h0, lengths, gates), run(ref, x, h0, lengths, gates), strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_auto_takes_the_kernel_and_float32_agrees():
    fused, ref = pair()
    fused, ref = fused.float(), ref.float()
    fused.engine = "auto"
    x = torch.randn(40, 3, 3)
    assert select_engine(fused, x, False).name == "fused"
    torch.testing.assert_close(fused(x)[0], ref(x)[0], rtol=1e-5, atol=1e-5)


def test_double_backward_and_gradcheck():
    assert_gradcheck_with_lengths(rnnkit.IndRNN(2, 3, dtype=D, engine="fused", activation="tanh", bidirectional=True))


def test_stepper_runs_the_kernel_per_token():
    assert_stepper_matches_layer(rnnkit.IndRNN(3, 5, num_layers=2, dtype=D))


def test_bad_input_is_one_line():
    with pytest.raises(ValueError, match=r"expected u \(weight_hh\) of shape \[5\]"):
        torch.ops.rnnkit_c.indrnn_fwd(torch.zeros(2, 1, 5), torch.zeros(4), None, torch.zeros(1, 5), 2)
