"""bf16: every layer and engine under torch.autocast, the fused LSTM's bf16 products (AMX tiles or vdpbf16ps)
against an exact emulation, and a language model trained under autocast against float32."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import Tensor

import rnnkit
from rnnkit.engines.fused import build
from rnnkit.models import LanguageModel

F64 = torch.float64
LAYERS = {
    "lstm": lambda: rnnkit.LSTM(6, 16, num_layers=2),
    "lstm_proj": lambda: rnnkit.LSTM(6, 16, proj_size=5),
    "peephole": lambda: rnnkit.PeepholeLSTM(6, 16, bidirectional=True),
    "gru": lambda: rnnkit.GRU(6, 16),
    "gru_reset_before": lambda: rnnkit.GRU(6, 16, reset_after=False),
    "rnn": lambda: rnnkit.RNN(6, 16, nonlinearity="relu"),
    "jordan": lambda: rnnkit.Jordan(6, 16, 7),
}


def bf16_kernels() -> bool:
    return build.available() and torch.ops.rnnkit_c.bf16_products()


def autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("engine", ["auto", "reference", "torch", "fused"])
def test_every_layer_and_engine_runs_under_autocast(kind: str, engine: str) -> None:
    """A bf16 input (what an autocast Linear hands on), bf16 or float32 states: the layer runs, its outputs are
    float32's to bf16 precision and its gradients reach every parameter."""
    torch.manual_seed(0)
    layer = LAYERS[kind]()
    layer.engine = engine
    x = torch.randn(9, 3, 6)
    if engine != "auto" and rnnkit.engines.ENGINES[engine].unsupported(layer, x, False) is not None:
        pytest.skip(f"{engine} does not run {kind}")
    with torch.no_grad():
        expected, _ = layer(x)
    with autocast():
        out, state = layer(x.bfloat16())
        again, _ = layer(x, state)  # the state one call returned goes back in
    assert out.shape == expected.shape and again.shape == expected.shape
    torch.testing.assert_close(out.float(), expected, rtol=0, atol=0.05)
    out.float().square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())


def emulated_lstm(layer: rnnkit.LSTM, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor) -> torch.Tensor:
    """The fused LSTM's bf16 arithmetic in float64: operands of both products rounded to bf16, everything else
    (sums, gates, c, h) in float32 rounding."""
    W_ih, W_hh = (w.detach().bfloat16().double() for w in (layer.weight_ih_l0, layer.weight_hh_l0))
    b = (layer.bias_ih_l0 + layer.bias_hh_l0).detach().double()
    h, c, outs = h0.double(), c0.double(), []
    for t in range(x.shape[0]):
        pre = x[t].bfloat16().double() @ W_ih.t() + h.float().bfloat16().double() @ W_hh.t() + b
        i, f, g, o = pre.chunk(4, -1)
        c = (f.sigmoid() * c + i.sigmoid() * g.tanh()).float().double()
        h = (o.sigmoid() * c.tanh()).float().double()
        outs.append(h)
    return torch.stack(outs)


def emulated_gru(layer: rnnkit.GRU, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """The same for the GRU (reset after the product)."""
    H = layer.hidden_size
    W_ih, W_hh = (w.detach().bfloat16().double() for w in (layer.weight_ih_l0, layer.weight_hh_l0))
    b_ih, b_hh = (b.detach().double() for b in (layer.bias_ih_l0, layer.bias_hh_l0))
    h, outs = h0.double(), []
    for t in range(x.shape[0]):
        gx = x[t].bfloat16().double() @ W_ih.t() + b_ih
        gh = h.float().bfloat16().double() @ W_hh.t() + b_hh
        r, z = (gx[:, :H] + gh[:, :H]).sigmoid(), (gx[:, H : 2 * H] + gh[:, H : 2 * H]).sigmoid()
        n = (gx[:, 2 * H :] + r * gh[:, 2 * H :]).tanh()
        h = ((1 - z) * n + z * h).float().double()
        outs.append(h)
    return torch.stack(outs)


@pytest.mark.skipif(not bf16_kernels(), reason="this CPU has no AVX512_BF16: float32 products under autocast")
@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("shape", [(28, 64, 8), (5, 37, 19), (40, 100, 33)])
def test_fused_products_take_bf16_operands_and_float32_sums(kind: str, shape) -> None:
    """One step equals the emulation to float32 rounding. Over several steps the float32 states' last bits (exp
    and tanh are computed differently) sometimes round to the neighbouring bf16 value in the next step's
    operand, so the steps agree to bf16's resolution there, far closer than to float32 products."""
    F, H, B = shape
    torch.manual_seed(1)
    layer = (rnnkit.LSTM if kind == "lstm" else rnnkit.GRU)(F, H, engine="fused")
    x, state = torch.randn(6, B, F), [torch.randn(1, B, H) for _ in range(2 if kind == "lstm" else 1)]
    emulate = emulated_lstm if kind == "lstm" else emulated_gru
    with torch.no_grad(), autocast():
        out, final = layer(x, tuple(state) if kind == "lstm" else state[0])
    assert out.dtype == torch.float32 and all(s.dtype == torch.float32 for s in torch.atleast_1d(final))
    expected = emulate(layer, x, *(s[0] for s in state))
    torch.testing.assert_close(out[0].double(), expected[0], rtol=0, atol=2e-6)
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-3)


GRADS = r"""
import torch, rnnkit
torch.manual_seed(2)
results = []
for layer in (rnnkit.LSTM(13, 40, engine="fused", bidirectional=True), rnnkit.GRU(13, 40, engine="fused")):
    x = torch.randn(6, 21, 13, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = layer(x, lengths=torch.tensor([6, 2] + [5] * 19))
    out.square().sum().backward()
    results += [out.detach(), x.grad, *(p.grad for p in layer.parameters())]
print("MODE", torch.ops.rnnkit_c.bf16_mode())
torch.save(results, __import__("sys").argv[1])
"""


@pytest.mark.skipif(not bf16_kernels(), reason="this CPU has no AVX512_BF16")
def test_tile_unit_and_vector_products_agree(tmp_path) -> None:
    """Where the CPU has AMX, the tile path and the vdpbf16ps path (RNNKIT_BF16=dot) give the same numbers up to
    the order of float32 sums; everywhere, bf16 training is float32's to bf16 precision."""
    results = {}
    for mode in ("", "dot"):
        env = {**os.environ, "RNNKIT_BF16": mode}
        path = tmp_path / f"r{mode}.pt"
        res = subprocess.run([sys.executable, "-c", GRADS, str(path)], env=env, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-2000:]
        results[mode] = (res.stdout.split("MODE")[1].strip(), torch.load(path))
    assert results["dot"][0] == "1"
    for a, b in zip(results[""][1], results["dot"][1], strict=True):  # the weight gradients are bf16 GEMM results:
        torch.testing.assert_close(a, b, rtol=1e-2, atol=3e-3)  # two sum orders may round 2 bf16 ulps apart


def test_language_model_trains_under_autocast_like_float32() -> None:
    """Same steps, same seed: the bf16 model's loss ends within 0.05 nats/char of float32's (a tiny model and
    corpus; docs/benchmarks.md has the full-size comparison)."""
    text = ("the time machine by h g wells " * 40).encode()
    data = torch.tensor(list(text)) % 32
    losses = {}
    for mode in ("none", "bf16"):
        torch.manual_seed(3)
        model = LanguageModel(32, "lstm", hidden_size=48, input="embedding", embed_size=16)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(120):
            i = torch.randint(0, len(data) - 33, (16,))
            batch = torch.stack([data[j : j + 33] for j in i])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
                logits, _ = model(batch[:, :-1])
                loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            logits, _ = model(data[None, :400])
            losses[mode] = torch.nn.functional.cross_entropy(logits[0, :-1], data[1:400]).item()
    assert losses["none"] < 1.0  # it learnt the repeated sentence
    assert abs(losses["bf16"] - losses["none"]) < 0.05, losses


@pytest.mark.skipif(not bf16_kernels(), reason="this CPU has no AVX512_BF16: float32 products under autocast")
@pytest.mark.parametrize(
    "kind,options",
    [("lstm", {"zoneout": 0.3}), ("lstm", {"zoneout": 0.2, "zoneout_cell": 0.3}), ("lstm", {"recurrent_dropout": 0.3}),
     ("gru", {"zoneout": 0.3}), ("gru", {"zoneout": 0.2, "recurrent_dropout": 0.3})],
)  # fmt: skip
def test_bf16_products_with_the_in_loop_regularisers(kind: str, options: dict) -> None:
    """Zoneout and recurrent dropout inside the bf16 kernels: with the same masks (same seed) the outputs, final
    states and every gradient are float32's to bf16 precision — two layers, both directions, ragged lengths —
    while other masks give other numbers (so the masks are applied, forward and backward)."""
    torch.manual_seed(1)
    layer = getattr(rnnkit, kind.upper())(24, 48, num_layers=2, bidirectional=True, engine="fused", **options)
    x, lengths = torch.randn(12, 5, 24), torch.tensor([12, 3, 9, 12, 1])

    def run(bf16: bool, seed: int = 5) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        xx = x.clone().requires_grad_()
        layer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out, state = layer(xx, lengths=lengths)
        state = state if isinstance(state, tuple) else (state,)
        weights = torch.linspace(-1, 1, out.numel()).view_as(out)
        ((out.float() * weights).sum() + sum(s.float().square().sum() for s in state)).backward()
        grads = [xx.grad, *(p.grad for p in layer.parameters())]
        return [out.detach().float(), *(s.detach().float() for s in state), *grads]

    exact, low, other = run(False), run(True), run(True, seed=6)
    assert not torch.equal(low[0], exact[0])  # bf16 products ran (float32 ones would be bitwise equal)
    for e, g in zip(exact, low, strict=True):
        assert ((g - e).norm() / e.norm()).item() < 0.02
    assert max(((o - e).norm() / e.norm()).item() for o, e in zip(other, exact, strict=True)) > 0.2


def packed_reference(W: torch.Tensor, ngates: int, units: int, kmult: int) -> torch.Tensor:
    """``rnnkit_c::pack_bf16``'s layout written out: per panel of ``units`` units, per k-pair, per gate, per unit
    the pair (W[row, 2kk], W[row, 2kk + 1]) rounded to bf16, zeros past H and past K."""
    H, K = W.shape[0] // ngates, W.shape[1]
    pad = max(kmult, 2)
    KK, panels = (K + pad - 1) // pad * pad // 2, (H + units - 1) // units
    out = torch.zeros(panels, KK, ngates, units, 2, dtype=torch.bfloat16)
    Wb = W.bfloat16()
    for p in range(panels):
        n = min(units, H - p * units)
        for g in range(ngates):
            for k in range(K):
                out[p, k // 2, g, :n, k % 2] = Wb[g * H + p * units : g * H + p * units + n, k]
    return out.flatten()


@pytest.mark.skipif(not bf16_kernels(), reason="this CPU has no AVX512_BF16")
@pytest.mark.parametrize("ngates,H,K,units", [(4, 64, 28, 16), (3, 37, 19, 16), (4, 48, 33, 64), (1, 20, 7, 16)])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided"])
def test_bf16_packing_of_any_layout(ngates: int, H: int, K: int, units: int, layout: str) -> None:
    """The packer rounds 16 units at a time and reads W through its strides (the backward packs W_hhᵀ as a
    view): the same bits as the layout written out, ragged units and odd K included."""
    torch.manual_seed(4)
    W = torch.randn(ngates * H, K)
    view = {"contiguous": W, "transposed": W.t().contiguous().t(),
            "strided": torch.zeros(ngates * H, 2 * K)[:, ::2].copy_(W)}[layout]  # fmt: skip
    kmult = 32 if torch.ops.rnnkit_c.bf16_mode() == 2 else 2
    got = torch.ops.rnnkit_c.pack_bf16(view, ngates, units)
    assert torch.equal(got.view(torch.int16), packed_reference(W, ngates, units, kmult).view(torch.int16))


def assert_rounded_by_torch(got: Tensor, exact: Tensor) -> None:
    """``got`` (bf16) is ``exact`` (float32) rounded as torch rounds, bit for bit; NaN where it is NaN (a NaN's
    sign and payload depend on the order of operands, which differs between the kernels' two builds of a step)."""
    expected = exact.bfloat16()
    nan = expected.isnan()
    assert got.dtype == torch.bfloat16 and torch.equal(got.isnan(), nan)
    assert torch.equal(got[~nan].view(torch.int16), expected[~nan].view(torch.int16))


@pytest.mark.skipif(not bf16_kernels(), reason="this CPU has no AVX512_BF16")
@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("H", [32, 37])
def test_backward_writes_its_bf16_gradients_as_torch_rounds(kind: str, H: int) -> None:
    """With bf16 products the LSTM and GRU backward write dPre (and the GRU dHH) only in bf16, rounded in
    registers. The last step has no product behind it (nothing flows back from later steps), so there they must
    equal the float32 kernel's, rounded by torch: ragged unit blocks, an ended sequence (zeros) and a NaN
    included."""
    from rnnkit.engines.fused.specs import ACT_CODES

    torch.manual_seed(5)
    T, B, NG = 3, 5, 4 if kind == "lstm" else 3
    G = torch.cat([torch.rand(T, B, H) * (2 if k == 2 else 1) - (1 if k == 2 else 0) for k in range(NG)], -1)
    S, W_hh = torch.randn(T + 1, B, H), torch.randn(NG * H, H) / 6  # c_0 … c_T (LSTM), h_0 … h_T (GRU)
    gHs = torch.randn(T + 1, B, H)
    gHs[-1, 0, 3] = float("nan")
    lengths = torch.tensor([3, 3, 1, 3, 2])
    codes = ACT_CODES["tanh"], ACT_CODES["sigmoid"]
    HN = torch.randn(T, B, H)  # the GRU's W_hn h + b_hn

    def run(bf16: bool) -> list[Tensor]:
        if kind == "lstm":
            out = torch.ops.rnnkit_c.lstm_bwd(G, S, torch.empty(0), W_hh, None, None, lengths, gHs, None, None,
                                              *codes, True, bf16, None, None)  # fmt: skip
            return [out[0]]
        out = torch.ops.rnnkit_c.gru_bwd(G, HN, S, W_hh, lengths, gHs, None, *codes, True, True, bf16, None, None)
        return [out[0], out[1]]  # dPre, dHH

    for got, exact in zip(run(True), run(False), strict=True):
        assert got.shape == (T, B, NG * H) and got[-1, 0].isnan().any() and (got[-1, 2] == 0).all()
        assert_rounded_by_torch(got[-1], exact[-1])


@pytest.mark.skipif(not bf16_kernels(), reason="this CPU has no AVX512_BF16")
@pytest.mark.parametrize("K,M,N", [(70, 1024, 28), (33, 100, 64), (7, 37, 19), (1, 5, 3), (0, 4, 4), (9, 200, 70)])
def test_weight_gradients_from_bf16_operands(K: int, M: int, N: int) -> None:
    """``weight_grads_bf16(d, xs)`` = [dᵀ x] in float32 from bf16-rounded operands (the weight gradients under bf16
    products): equal to the float64 product of the rounded operands to float32 accumulation; odd K (a last pair
    completed by zeros), ragged M and N, float32 or bf16 operands, a row-strided d."""
    torch.manual_seed(6)
    d_full, x = torch.randn(K, M + 6), torch.randn(K, N)
    d = d_full[:, :M]  # row stride M + 6, as the kernels' padded bf16 rows
    for d_in, x_in in [(d, x), (d.bfloat16(), x), (d.bfloat16(), x.bfloat16())]:
        got = torch.ops.rnnkit_c.weight_grads_bf16(d_in, [x_in, x_in[:, : N // 2 + 1]])
        exact = d.bfloat16().double().t() @ x.bfloat16().double()
        assert got[0].dtype == torch.float32 and got[0].shape == (M, N)
        torch.testing.assert_close(got[0].double(), exact, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got[1].double(), exact[:, : N // 2 + 1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="rows like d"):
        torch.ops.rnnkit_c.weight_grads_bf16(d, [torch.randn(K + 1, N)])


@pytest.mark.skipif(not bf16_kernels(), reason="this CPU has no AVX512_BF16")
def test_weight_gradients_take_torchs_gemm_past_the_kernels_sizes() -> None:
    """Per x, rnnkit's kernel where its panels fit a core's L2, torch's bf16 GEMM past that (its result is rounded
    to bf16): both in the order asked for, both the product of the rounded operands."""
    from rnnkit.engines.fused.specs import _own_fits, _weight_grads

    torch.manual_seed(7)
    d, wide, narrow = torch.randn(1024, 40).bfloat16(), torch.randn(1024, 1100), torch.randn(1024, 8)
    assert not _own_fits(1024, 1100) and _own_fits(1024, 8)
    got = _weight_grads(d, [wide, narrow, wide], bf16=True)
    for g, x in zip(got, [wide, narrow, wide], strict=True):
        exact = d.double().t() @ x.bfloat16().double()
        assert g.dtype == torch.float32 and g.shape == exact.shape
        torch.testing.assert_close(g.double(), exact, rtol=1e-2, atol=0.1)  # bf16-rounded sums past the kernel's
