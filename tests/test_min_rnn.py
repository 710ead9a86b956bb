"""minGRU and minLSTM trained by the parallel scan: the scan equals the step loop (float64: outputs, states, every
gradient, with lengths= and both directions), stays finite and accurate in float32, and generation steps."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.engines import select_engine
from rnnkit.scan import linear_scan, step_loop

D = torch.float64


@pytest.mark.parametrize("T", [1, 2, 3, 5, 8, 13, 64])
def test_scan_equals_step_loop_float64(T: int):
    a = torch.rand(T, 3, 4, dtype=D, requires_grad=True)
    b = torch.randn(T, 3, 4, dtype=D, requires_grad=True)
    h0 = torch.randn(3, 4, dtype=D, requires_grad=True)
    got, want = linear_scan(a, b, h0), step_loop(a, b, h0)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)
    g = torch.randn_like(got)
    grads = torch.autograd.grad(got, (a, b, h0), g)
    wants = torch.autograd.grad(want, (a, b, h0), g)
    for x, y in zip(grads, wants):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


def test_scan_gradcheck():
    a = torch.rand(6, 2, dtype=D, requires_grad=True)
    b = torch.randn(6, 2, dtype=D, requires_grad=True)
    h0 = torch.randn(2, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(linear_scan, (a, b, h0))
    assert torch.autograd.gradgradcheck(linear_scan, (a, b, h0))


def test_scan_float32_long_sequences_stay_accurate():
    """4096 steps with gates near 0 and near 1 (products that underflow, states that persist): float32 scan within
    float32 rounding of the float64 loop, and never inf or NaN (a log-space scan would divide by underflowed
    products here)."""
    g = torch.Generator().manual_seed(0)
    T = 4096
    k = torch.cat([torch.randn(T, 8, 16, generator=g) * 8, torch.full((T, 8, 16), 12.0)], dim=1)  # some σ(k) ≈ 1
    a64 = torch.sigmoid(-k.double())  # 1 - z, from about 1e-14 to 1
    b64 = torch.randn(T, 16, 16, generator=g, dtype=D) * (1 - a64)
    h0 = torch.randn(16, 16, generator=g, dtype=D)
    want = step_loop(a64, b64, h0)
    got = linear_scan(a64.float(), b64.float(), h0.float())
    assert torch.isfinite(got).all()
    assert float((got.double() - want).abs().max()) < 1e-4


def layer_pair(cls: type, **kw) -> tuple[rnnkit.Recurrent, rnnkit.Recurrent]:
    scan = cls(3, 5, dtype=D, engine="fused", **kw)
    loop = cls(3, 5, dtype=D, engine="reference", **kw)
    loop.load_state_dict(scan.state_dict())
    return scan, loop


@pytest.mark.parametrize("gates", [False, True])
@pytest.mark.parametrize("lengths", [None, [7, 3, 1, 5]])
@pytest.mark.parametrize("cls", [rnnkit.MinGRU, rnnkit.MinLSTM])
def test_scan_layer_equals_step_loop_float64(cls: type, lengths, gates: bool):
    """Outputs, final states, gates and every gradient (parameters, input, initial state), two layers, both
    directions, padded or not."""
    scan, loop = layer_pair(cls, num_layers=2, bidirectional=True)
    x = torch.randn(7, 4, 3, dtype=D)
    h0 = torch.randn(4, 4, 5, dtype=D)
    results = []
    for layer in (scan, loop):
        xi, hi = x.clone().requires_grad_(), h0.clone().requires_grad_()
        res = layer(xi, hi, lengths=lengths, return_gates=gates)
        out, hn = res[:2]
        loss = (out * torch.linspace(-1, 1, out.shape[-1], dtype=D)).sum() + (hn**2).sum()
        if gates:
            loss = loss + sum((g * (k + 1)).sum() for k, g in enumerate(res[2].values()))
        layer.zero_grad()
        loss.backward()
        results.append((res, xi.grad, hi.grad, [p.grad.clone() for p in layer.parameters()]))
    (r1, dx1, dh1, dp1), (r2, dx2, dh2, dp2) = results
    tol = {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(r1[0], r2[0], **tol)
    torch.testing.assert_close(r1[1], r2[1], **tol)
    if gates:
        assert r1[2].keys() == r2[2].keys()
        for n in r1[2]:
            torch.testing.assert_close(r1[2][n], r2[2][n], **tol)
    torch.testing.assert_close(dx1, dx2, **tol)
    torch.testing.assert_close(dh1, dh2, **tol)
    for g1, g2 in zip(dp1, dp2):
        torch.testing.assert_close(g1, g2, **tol)


def test_padding_freezes_the_scanned_state():
    """A sequence padded with garbage ends where it would end alone."""
    layer = rnnkit.MinGRU(2, 3, dtype=D, engine="fused", bidirectional=True)
    x = torch.randn(6, 1, 2, dtype=D)
    short_out, short_h = layer(x[:4])
    padded = torch.cat([x[:4], 100 * torch.randn(2, 1, 2, dtype=D)])
    out, h = layer(padded, lengths=[4])
    torch.testing.assert_close(out[:4], short_out, rtol=1e-13, atol=1e-13)
    assert out[4:].abs().max() == 0
    torch.testing.assert_close(h, short_h, rtol=1e-13, atol=1e-13)


def test_auto_takes_the_scan_and_batch_first_works():
    layer = rnnkit.MinLSTM(3, 4, batch_first=True)
    x = torch.randn(2, 9, 3)
    assert select_engine(layer, x.transpose(0, 1), False).name == "fused"
    out, h = layer(x)
    layer.engine = "reference"
    ref_out, ref_h = layer(x)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h, ref_h, rtol=1e-5, atol=1e-6)


def test_compile_and_export_see_through_the_scan():
    """torch.compile (fullgraph, forward and backward) and torch.export trace the scan: same numbers as eager."""
    layer = rnnkit.MinGRU(3, 5, num_layers=2, bidirectional=True, dtype=D)
    x = torch.randn(7, 2, 3, dtype=D)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    out, h = compiled(x)
    want, want_h = layer(x)
    torch.testing.assert_close(out, want, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(h, want_h, rtol=1e-13, atol=1e-13)
    out.sum().backward()
    grads = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    want.sum().backward()
    for g, p in zip(grads, layer.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-12, atol=1e-12)
    exported = torch.export.export(layer, (x,)).module()
    torch.testing.assert_close(exported(x)[0], want, rtol=1e-13, atol=1e-13)


def test_autocast_keeps_the_scanned_state_in_float32():
    """Under bf16 autocast the input projection runs in bf16, the state's recurrence in float32, as the step loop."""
    layer = rnnkit.MinLSTM(3, 8)
    x = torch.randn(300, 2, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, h = layer(x)
        layer.engine = "reference"
        ref, ref_h = layer(x)
    assert out.dtype == h.dtype == torch.float32 == ref_h.dtype
    torch.testing.assert_close(out, ref.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h, ref_h, rtol=1e-5, atol=1e-5)
