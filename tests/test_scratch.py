"""The d2l-style from-scratch baselines compute the same function as torch.nn / rnnkit (float64)."""

import pytest
import torch

import rnnkit
from rnnkit.scratch import SCRATCH, scratch_params

F, H, T, B = 3, 5, 6, 2


@pytest.mark.parametrize(
    "kind, make",
    [
        ("rnn", lambda: torch.nn.RNN(F, H, dtype=torch.float64)),
        ("lstm", lambda: torch.nn.LSTM(F, H, dtype=torch.float64)),
        # d2l's GRU resets h before the product: Cho et al.'s form, rnnkit's reset_after=False
        ("gru", lambda: rnnkit.GRU(F, H, reset_after=False, engine="reference", dtype=torch.float64)),
    ],
)
def test_scratch_equals_the_layer(kind, make):
    layer = make()
    x = torch.randn(T, B, F, dtype=torch.float64)
    state = tuple(torch.randn(B, H, dtype=torch.float64) for _ in range(2 if kind == "lstm" else 1))
    out, final = SCRATCH[kind](x, state, scratch_params(kind, layer))
    hx = tuple(s.unsqueeze(0) for s in state)
    want, want_final = layer(x, hx if kind == "lstm" else hx[0])
    want_final = want_final if isinstance(want_final, tuple) else (want_final,)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-12)
    for got, ref in zip(final, want_final):
        torch.testing.assert_close(got, ref.squeeze(0), rtol=0, atol=1e-12)


def test_scratch_gru_differs_from_torchs_reset_after_form():
    layer = torch.nn.GRU(F, H, dtype=torch.float64)
    x = torch.randn(T, B, F, dtype=torch.float64)
    out, _ = SCRATCH["gru"](x, (torch.zeros(B, H, dtype=torch.float64),), scratch_params("gru", layer))
    assert (out - layer(x)[0]).abs().max() > 1e-6


def test_scratch_params_are_fresh_leaves_and_errors_are_clear():
    layer = torch.nn.LSTM(F, H)
    params = scratch_params("lstm", layer)
    assert all(p.is_leaf and p.requires_grad for p in params)
    assert [tuple(p.shape) for p in params[:3]] == [(F, H), (H, H), (H,)]
    params[0].data.zero_()
    assert layer.weight_ih_l0.abs().sum() > 0  # copies, not views of the layer's weights
    with pytest.raises(ValueError, match="no from-scratch 'peephole'"):
        scratch_params("peephole", layer)
    with pytest.raises(ValueError, match="single-layer"):
        scratch_params("lstm", torch.nn.LSTM(F, H, num_layers=2))
