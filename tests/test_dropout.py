"""rnnkit.dropout: inverted dropout with a hashed mask — the right distribution, the same mask forward and
backward, reproducible from torch's seed, torch's own dropout where the C kernels do not apply."""

from __future__ import annotations

import pytest
import torch

from rnnkit.dropout import Dropout, dropout
from rnnkit.engines.fused import build

needs_c = pytest.mark.skipif(not build.available(), reason="no C compiler: torch's dropout is used")


@needs_c
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keeps_the_right_fraction_and_scales(dtype: torch.dtype, p: float) -> None:
    torch.manual_seed(0)
    x = torch.rand(200_000, dtype=dtype) + 0.5  # no zeros of its own
    y = dropout(x, p)
    kept = y != 0
    # binomial: the kept fraction is within 5 standard deviations of 1 - p
    assert abs(kept.double().mean().item() - (1 - p)) < 5 * (p * (1 - p) / x.numel()) ** 0.5
    torch.testing.assert_close(y[kept], x[kept] / (1 - p))  # scaled by 1 / (1 - p), to rounding
    # unbiased: E[y] = E[x]; the mean's standard deviation is sqrt(E[x²] p / (1 - p) / n)
    sd = ((x.double() ** 2).mean().item() * p / (1 - p) / x.numel()) ** 0.5
    assert abs(y.double().mean().item() - x.double().mean().item()) < 5 * sd


@needs_c
def test_backward_uses_the_forward_mask(monkeypatch) -> None:
    torch.manual_seed(1)
    x = torch.randn(3, 70, 50, dtype=torch.float64, requires_grad=True)
    y = dropout(x, 0.3)
    g = torch.randn_like(y)
    y.backward(g)
    mask = (y != 0).double()
    torch.testing.assert_close(x.grad, g * mask / 0.7, rtol=0, atol=1e-15)


@needs_c
def test_reproducible_from_torch_seed_and_independent_of_threads() -> None:
    x = torch.randn(100_000)
    before = torch.get_num_threads()
    try:
        torch.manual_seed(7)
        torch.set_num_threads(1)
        a, a2 = dropout(x, 0.5), dropout(x, 0.5)
        torch.manual_seed(7)
        torch.set_num_threads(2)
        b = dropout(x, 0.5)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(a, b)  # same seed, another thread count: same mask
    assert not torch.equal(a, a2)  # the next call draws a new seed
    # masks of neighbouring elements are not correlated
    m = (a != 0).double()
    assert abs(torch.corrcoef(torch.stack([m[:-1], m[1:]]))[0, 1].item()) < 0.02


def test_edge_cases_and_fallback() -> None:
    x = torch.randn(10, 4)
    assert dropout(x, 0.0) is x and dropout(x, 0.7, training=False) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dropout(x, 1.5)
    half = torch.randn(1000, dtype=torch.bfloat16)  # not a C dtype: torch's dropout
    assert ((dropout(half, 0.5) != 0).float().mean() - 0.5).abs() < 0.1
    layer = Dropout(0.25)
    assert "p=0.25" in repr(layer)
    layer.eval()
    assert layer(x) is x
