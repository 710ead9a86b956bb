"""Checks every fused cell kernel passes, shared by the per-cell kernel tests."""

from __future__ import annotations

import torch

import rnnkit


def assert_gradcheck_with_lengths(layer: rnnkit.Recurrent) -> None:
    """gradcheck and gradgradcheck of ``layer`` (float64, 2 features in) over padded sequences of lengths 4 and 3,
    through every input and parameter."""
    names = [n for n, _ in layer.named_parameters()]
    x = torch.randn(4, 2, layer.input_size, dtype=torch.float64, requires_grad=True)
    ps = [p.detach().clone().requires_grad_() for p in layer.parameters()]

    def f(x, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (x,), {"lengths": torch.tensor([4, 3])})[0]

    assert torch.autograd.gradcheck(f, (x, *ps))
    assert torch.autograd.gradgradcheck(f, (x, *ps))


def assert_stepper_matches_layer(layer: rnnkit.Recurrent, steps: int = 5, batch: int = 2) -> None:
    """``layer.stepper()`` token by token gives the layer's outputs and final state (float64, to 1e-12)."""
    step = layer.stepper()
    x = torch.randn(steps, batch, layer.input_size, dtype=torch.float64)
    out, hn = layer(x)
    state = None
    for t in range(steps):
        y, state = step(x[t], state)
        torch.testing.assert_close(y, out[t], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state, hn, rtol=1e-12, atol=1e-12)
