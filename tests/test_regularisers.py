"""The layer regularisers (rnnkit.regularisers): variational masks are the same at every step, zoneout masks are
not, every one is off (or its expectation) at evaluation, the drop rate is p, fused == reference under one seed,
gradcheck; merge_mode against a hand computation; stateful carries the state; bad input fails in one line."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch

import rnnkit
from rnnkit.engines.fused import build
from rnnkit.layer import Recurrent
from rnnkit.regularisers import ZONEOUT_H, hash32, stream_key, zoneout_mask

F64 = torch.float64
IN, HID = 3, 4
OPTIONS = ("input_dropout", "recurrent_dropout", "zoneout", "zoneout_cell", "weight_dropout")
needs_c = pytest.mark.skipif(not build.available(), reason="no C compiler: no fused kernels")


def make(kind: str, **kw) -> Recurrent:
    kw.setdefault("dtype", F64)
    if kind == "rnn":
        return rnnkit.RNN(IN, HID, **kw)
    if kind == "gru":
        return rnnkit.GRU(IN, HID, **kw)
    if kind == "gru_reset_before":
        return rnnkit.GRU(IN, HID, reset_after=False, **kw)
    if kind == "lstm":
        return rnnkit.LSTM(IN, HID, forget_bias=1.0, **kw)
    if kind == "lstm_proj":
        return rnnkit.LSTM(IN, HID, proj_size=2, **kw)
    if kind == "peephole":
        return rnnkit.PeepholeLSTM(IN, HID, **kw)
    if kind == "jordan":
        return rnnkit.Jordan(IN, HID, 2, **kw)
    if kind in NEW_CELLS:
        return NEW_CELLS[kind](IN, HID, **kw)
    raise AssertionError(kind)


NEW_CELLS = {
    "mgu": rnnkit.MGU, "indrnn": rnnkit.IndRNN, "mingru": rnnkit.MinGRU, "minlstm": rnnkit.MinLSTM,
    "lnlstm": rnnkit.LayerNormLSTM, "lngru": rnnkit.LayerNormGRU,
}  # fmt: skip


# ---- the hash -------------------------------------------------------------------------------------------------


def test_hash_is_lowbias32_worked_by_hand() -> None:
    # lowbias32 on 1, step by step in Python's unbounded integers (the C function's definition)
    x = 1
    x ^= x >> 16
    x = (x * 0x7FEB352D) % 2**32
    x ^= x >> 15
    x = (x * 0x846CA68B) % 2**32
    x ^= x >> 16
    assert int(hash32(torch.tensor([1]))) == x
    big = torch.tensor([0xFFFFFFFF, 0x80000000, 12345])  # the int64 tensor code must not overflow
    for v, h in zip(big.tolist(), hash32(big).tolist()):
        y = v ^ (v >> 16)
        y = (y * 0x7FEB352D) % 2**32
        y ^= y >> 15
        y = (y * 0x846CA68B) % 2**32
        assert h == y ^ (y >> 16)


# ---- bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPTIONS)
@pytest.mark.parametrize("value", [1.0, -0.1, 1.5])
def test_probability_outside_range_is_one_clear_line(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be in \[0, 1\), got {value}$"):
        rnnkit.LSTM(IN, HID, **{name: value})


def test_probability_of_wrong_type() -> None:
    with pytest.raises(TypeError, match=r"zoneout must be a float in \[0, 1\), got str \('0.1'\)"):
        rnnkit.GRU(IN, HID, zoneout="0.1")


@pytest.mark.parametrize("kind", ["rnn", "gru", "jordan"])
def test_zoneout_cell_needs_a_memory_cell(kind: str) -> None:
    with pytest.raises(ValueError, match=r"zoneout_cell=0.2 needs a cell with a memory cell c .* has only h"):
        make(kind, zoneout_cell=0.2)


def test_merge_mode_errors() -> None:
    with pytest.raises(ValueError, match="merge_mode='sum' needs bidirectional=True"):
        rnnkit.GRU(IN, HID, merge_mode="sum")
    with pytest.raises(ValueError, match="merge_mode must be one of 'concat', 'sum', 'mul', 'ave' or None, got 'max'"):
        rnnkit.GRU(IN, HID, bidirectional=True, merge_mode="max")


def test_stateful_batch_change_names_both_sizes_and_the_fix() -> None:
    layer = rnnkit.LSTM(IN, HID, stateful=True)
    layer(torch.randn(5, 2, IN))
    with pytest.raises(ValueError, match=r"carries the state of a batch of 2 sequences, got a batch of 3: call "
                                         r"reset_states\(\)"):  # fmt: skip
        layer(torch.randn(5, 3, IN))
    layer.reset_states()
    layer(torch.randn(5, 3, IN))  # fine after a reset


def test_recurrent_dropout_refused_by_a_cell_without_the_hook() -> None:
    class MyCell(rnnkit.cells.RNNCell):
        supports_recurrent_dropout = False

    with pytest.raises(ValueError, match="MyCell does not route its recurrent product through recurrent_input"):
        Recurrent(MyCell, IN, HID, recurrent_dropout=0.1)


def test_torch_engine_declines_in_loop_regularisers() -> None:
    layer = rnnkit.LSTM(IN, HID, zoneout=0.1, engine="torch")
    with pytest.raises(ValueError, match="engine='torch' cannot run this call: .*zoneout acts inside every step"):
        layer(torch.randn(4, 2, IN))
    layer = rnnkit.LSTM(IN, HID, recurrent_dropout=0.1, engine="torch")
    with pytest.raises(ValueError, match="recurrent_dropout=0.1 acts inside every step"):
        layer(torch.randn(4, 2, IN))
    layer.eval()
    layer(torch.randn(4, 2, IN))  # recurrent dropout is off at evaluation: torch's kernels can run it


# ---- variational: the same mask at every step -------------------------------------------------------------------


def linear_rnn(H: int, w_ih: torch.Tensor | None, w_hh: torch.Tensor | None, act: str = "identity", **kw) -> rnnkit.RNN:
    """An Elman layer with identity activation, no bias and the given matrices: h_t = W_ih x_t + W_hh h_{t-1}
    (``act="relu"`` for torch's kernels: the same on non-negative values)."""
    layer = rnnkit.RNN(H, H, bias=False, activation=act, dtype=F64, **kw)
    with torch.no_grad():
        layer.weight_ih_l0.copy_(torch.zeros(H, H, dtype=F64) if w_ih is None else w_ih)
        layer.weight_hh_l0.copy_(torch.zeros(H, H, dtype=F64) if w_hh is None else w_hh)
    return layer


@pytest.mark.parametrize("engine", ["reference", "fused", "torch"])
def test_input_dropout_one_mask_per_sequence(engine: str) -> None:
    if engine == "fused" and not build.available():
        pytest.skip("no fused kernels")
    p, H, T, B = 0.3, 64, 5, 32
    act = "relu" if engine == "torch" else "identity"
    layer = linear_rnn(H, torch.eye(H, dtype=F64), None, act, input_dropout=p, engine=engine)
    out, _ = layer(torch.ones(T, B, H, dtype=F64))  # h_t = m ⊙ x_t / (1 - p)
    for t in range(1, T):
        assert torch.equal(out[t], out[0])  # variational: the same mask at every step
    values = set(out.unique().tolist())
    assert values <= {0.0, 1 / (1 - p)}
    dropped = (out[0] == 0).double().mean().item()
    assert abs(dropped - p) < 5 * (p * (1 - p) / (B * H)) ** 0.5
    out2, _ = layer(torch.ones(T, B, H, dtype=F64))
    assert not torch.equal(out2, out)  # the next call draws another mask


@pytest.mark.parametrize("engine", ["reference", "fused"])
def test_recurrent_dropout_one_mask_per_sequence(engine: str) -> None:
    if engine == "fused" and not build.available():
        pytest.skip("no fused kernels")
    p, H, T, B = 0.25, 64, 4, 32
    layer = linear_rnn(H, None, torch.eye(H, dtype=F64), recurrent_dropout=p, engine=engine)
    h0 = torch.ones(1, B, H, dtype=F64)
    out, _ = layer(torch.zeros(T, B, H, dtype=F64), h0)  # h_t = (m / (1 - p)) ⊙ h_{t-1}
    s = out[0]
    for t in range(T):
        torch.testing.assert_close(out[t], s ** (t + 1), rtol=1e-14, atol=0)  # the same m at every step
    dropped = (s == 0).double().mean().item()
    assert abs(dropped - p) < 5 * (p * (1 - p) / (B * H)) ** 0.5


@pytest.mark.parametrize("kind", ["gru", "gru_reset_before", "lstm", "peephole"])
def test_recurrent_dropout_does_not_touch_the_carried_state(kind: str) -> None:
    # with W_hh = 0 the recurrent product is constant, so only a mask on the carried state (GRU's z ⊙ h, LSTM's c)
    # could change the output: there must be none
    torch.manual_seed(3)
    plain = make(kind, engine="reference")
    drop = make(kind, recurrent_dropout=0.5, engine="reference")
    with torch.no_grad():
        plain.weight_hh_l0.zero_()
    drop.load_state_dict(plain.state_dict())
    x, h0 = torch.randn(6, 3, IN, dtype=F64), torch.randn(1, 3, plain.cells[0].state_sizes[0], dtype=F64)
    hx = h0 if len(plain.cells[0].state_sizes) == 1 else (h0, torch.randn(1, 3, HID, dtype=F64))
    torch.testing.assert_close(drop(x, hx)[0], plain(x, hx)[0], rtol=0, atol=0)


def test_weight_dropout_one_mask_per_call_and_gradient_to_the_undropped_weight() -> None:
    p, H = 0.4, 48
    W = torch.randn(H, H, dtype=F64)
    layer = linear_rnn(H, None, W, weight_dropout=p, engine="reference")
    # h_1 = W̃ h_0 with h_0 the basis vectors (batch b = e_b): output[0] = W̃ᵀ; h_2 = W̃ h_1: the same W̃
    out, _ = layer(torch.zeros(2, H, H, dtype=F64), torch.eye(H, dtype=F64).unsqueeze(0))
    Wd = out[0].t()
    kept = Wd != 0
    torch.testing.assert_close(Wd[kept], W[kept] / (1 - p), rtol=1e-14, atol=0)
    torch.testing.assert_close(out[1], out[0] @ Wd.t(), rtol=1e-12, atol=1e-12)  # one mask for the whole call
    dropped = 1 - kept.double().mean().item()
    assert abs(dropped - p) < 5 * (p * (1 - p) / H**2) ** 0.5
    layer.zero_grad()
    out[0].sum().backward()  # d/dW Σ_ij W̃_ij (one basis vector per column) = mask / (1 - p)
    torch.testing.assert_close(layer.weight_hh_l0.grad, kept.double() / (1 - p))
    assert torch.equal(layer.weight_hh_l0.detach(), W)  # the parameter itself is never dropped


# ---- zoneout: a new mask at every step --------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["reference", "fused"])
def test_zoneout_masks_differ_per_step_and_keep_with_probability_p(engine: str) -> None:
    if engine == "fused" and not build.available():
        pytest.skip("no fused kernels")
    p, H, T, B = 0.3, 32, 8, 16
    layer = linear_rnn(H, torch.eye(H, dtype=F64), None, zoneout=p, engine=engine)
    x = torch.arange(1, T + 1, dtype=F64).view(T, 1, 1).expand(T, B, H)  # the new value at step t is t + 1
    out, _ = layer(x)  # h_t = d_t ⊙ h_{t-1} + (1 - d_t) ⊙ (t + 1)
    prev = torch.cat([torch.zeros(1, B, H, dtype=F64), out[:-1]])
    kept = out == prev
    assert torch.all(kept | (out == x))  # each unit is either its previous value or the new one
    masks = [kept[t] for t in range(T)]
    assert not all(torch.equal(masks[0], m) for m in masks[1:])  # not variational
    rate = kept.double().mean().item()
    assert abs(rate - p) < 5 * (p * (1 - p) / (T * B * H)) ** 0.5
    # the masks are the documented hash of (seed, cell, stream, index)
    torch.manual_seed(11)
    out, _ = layer(x)
    torch.manual_seed(11)
    seed = torch.randint(0, 2**62, (1,))
    key = stream_key(seed, 0, ZONEOUT_H)
    for t in range(1, T):
        d = zoneout_mask(key, t, (B, H), p)
        torch.testing.assert_close(out[t], torch.where(d, out[t - 1], x[t]), rtol=0, atol=0)


@pytest.mark.parametrize("cell_p", [0.0, 0.4])
def test_zoneout_at_evaluation_is_the_expectation_worked_by_hand(cell_p: float) -> None:
    p = 0.3
    lstm = make("lstm", zoneout=p, zoneout_cell=cell_p, engine="reference").eval()
    cell, w = lstm.cells[0], lstm.weights(0)
    x = torch.randn(5, 2, IN, dtype=F64)
    h, c = torch.zeros(2, HID, dtype=F64), torch.zeros(2, HID, dtype=F64)
    outs = []
    for t in range(5):
        (hn, cn), _ = cell.step(x[t], (h, c), w)
        h, c = p * h + (1 - p) * hn, cell_p * c + (1 - cell_p) * cn
        outs.append(h)
    out, (h_n, c_n) = lstm(x)
    torch.testing.assert_close(out, torch.stack(outs), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(c_n[0], c, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(lstm(x)[0], out, rtol=0, atol=0)  # deterministic


# ---- off at evaluation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm", "jordan"])
@pytest.mark.parametrize("name", ["input_dropout", "recurrent_dropout", "weight_dropout"])
def test_off_at_evaluation(kind: str, name: str) -> None:
    plain = make(kind, num_layers=2, bidirectional=True)
    reg = make(kind, num_layers=2, bidirectional=True, **{name: 0.5})
    reg.load_state_dict(plain.state_dict())
    x = torch.randn(5, 3, IN, dtype=F64)
    reg.train()
    assert not torch.equal(reg(x)[0], plain(x)[0])  # on in training
    reg.eval()
    torch.testing.assert_close(reg(x)[0], plain(x)[0], rtol=0, atol=0)
    torch.testing.assert_close(reg(x)[0], reg(x)[0], rtol=0, atol=0)


# ---- fused == reference under one seed ----------------------------------------------------------------------


def run_and_grad(layer: Recurrent, engine: str, seed: int, x, hx, lengths) -> list[torch.Tensor]:
    layer.engine = engine
    x = x.detach().clone().requires_grad_()
    hx = tuple(h.detach().clone().requires_grad_() for h in hx)
    torch.manual_seed(seed)
    out, state = layer(x, hx if len(hx) > 1 else hx[0], lengths=lengths)
    state = state if isinstance(state, tuple) else (state,)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    loss = (out * weights).sum() + sum((s**2).sum() for s in state)
    layer.zero_grad()
    loss.backward()
    grads = [x.grad, *(h.grad for h in hx), *(p.grad for p in layer.parameters())]
    assert all(g is not None for g in grads)
    return [out, *state, *grads]


FUSED_CONFIGS = [
    {"input_dropout": 0.3},
    {"weight_dropout": 0.4},
    {"input_dropout": 0.2, "weight_dropout": 0.3, "merge_mode": "sum"},
    {"recurrent_dropout": 0.3},
    {"zoneout": 0.3},
    {"zoneout": 0.2, "zoneout_cell": 0.3, "recurrent_dropout": 0.2},
]


@needs_c
@pytest.mark.parametrize("kind", ["rnn", "gru", "gru_reset_before", "lstm", "lstm_proj", "peephole", "jordan"])
@pytest.mark.parametrize("cfg", range(len(FUSED_CONFIGS)))
@pytest.mark.parametrize("training", [True, False])
def test_fused_equals_reference_under_one_seed(kind: str, cfg: int, training: bool) -> None:
    options = dict(FUSED_CONFIGS[cfg])
    if "zoneout_cell" in options and kind not in ("lstm", "lstm_proj", "peephole"):
        options.pop("zoneout_cell")
    options.setdefault("bidirectional", True)
    layer = make(kind, num_layers=2, **options)
    layer.train(training)
    T, B = 7, 3
    x = torch.randn(T, B, IN, dtype=F64)
    reason = rnnkit.engines.ENGINES["fused"].unsupported(layer, x.requires_grad_(), False)
    if not training and "zoneout" in options and kind in ("rnn", "jordan"):
        assert "zoneout's expectation" in reason  # the reference loop takes these gradients
        return
    assert reason is None  # every built-in cell, in C
    LD = 4
    hx = tuple(torch.randn(LD, B, s, dtype=F64) for s in layer.cells[0].state_sizes)
    lengths = torch.tensor([7, 3, 5])
    ref = run_and_grad(layer, "reference", 5, x, hx, lengths)
    fused = run_and_grad(layer, "fused", 5, x, hx, lengths)
    for a, b in zip(ref, fused, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


@needs_c
@pytest.mark.parametrize("name", ["input_dropout", "weight_dropout"])
def test_torch_engine_equals_reference_under_one_seed(name: str) -> None:
    layer = make("lstm", **{name: 0.3})
    x, hx = torch.randn(6, 3, IN, dtype=F64), (torch.randn(1, 3, HID, dtype=F64), torch.randn(1, 3, HID, dtype=F64))
    ref = run_and_grad(layer, "reference", 2, x, hx, None)
    got = run_and_grad(layer, "torch", 2, x, hx, None)
    for a, b in zip(ref, got, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


# ---- gradcheck on the reference path ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gru", "lstm", "jordan"])
@pytest.mark.parametrize("name", OPTIONS)
def test_gradcheck_reference(kind: str, name: str) -> None:
    if name == "zoneout_cell" and kind != "lstm":
        pytest.skip("zoneout_cell needs c")
    layer = make(kind, engine="reference", bidirectional=True, **{name: 0.4})
    recurrent = layer.cells[0].recurrent_weights[0] + "_l0"
    x = torch.randn(4, 2, IN, dtype=F64, requires_grad=True)
    w = getattr(layer, recurrent).detach().clone().requires_grad_()
    lengths = torch.tensor([4, 2])

    def f(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(0)  # the same masks at every evaluation
        return torch.func.functional_call(layer, {recurrent: w}, (x,), {"lengths": lengths})[0]

    assert torch.autograd.gradcheck(f, (x, w))


# ---- merge_mode ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["reference", "fused", "torch"])
def test_merge_modes_against_the_two_directions(engine: str) -> None:
    if engine == "fused" and not build.available():
        pytest.skip("no fused kernels")
    concat = rnnkit.GRU(IN, HID, bidirectional=True, dtype=F64, engine=engine)
    x, lengths = torch.randn(6, 3, IN, dtype=F64), torch.tensor([6, 2, 4])
    both, h_n = concat(x, lengths=lengths)
    fwd, bwd = both[..., :HID], both[..., HID:]
    expected = {"sum": fwd + bwd, "mul": fwd * bwd, "ave": (fwd + bwd) / 2, None: torch.stack([fwd, bwd], dim=2)}
    for mode, want in expected.items():
        layer = rnnkit.GRU(IN, HID, bidirectional=True, dtype=F64, engine=engine, merge_mode=mode)
        layer.load_state_dict(concat.state_dict())
        got, h = layer(x, lengths=lengths)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        torch.testing.assert_close(h, h_n, rtol=0, atol=0)  # the final states are not merged


def test_merge_mode_none_batch_first_and_unbatched() -> None:
    layer = rnnkit.LSTM(IN, HID, bidirectional=True, batch_first=True, merge_mode=None)
    assert layer(torch.randn(2, 5, IN))[0].shape == (2, 5, 2, HID)
    assert layer(torch.randn(5, IN))[0].shape == (5, 2, HID)


@pytest.mark.parametrize("mode", ["sum", "ave", None])
def test_stacked_layers_read_the_merged_output(mode) -> None:
    kw = {"bidirectional": True, "dtype": F64, "engine": "reference"}
    deep = rnnkit.LSTM(IN, HID, num_layers=2, merge_mode=mode, **kw)
    width = 2 * HID if mode is None else HID  # None: stacked layers read the concatenation
    assert deep.weight_ih_l1.shape == (4 * HID, width)
    first = rnnkit.LSTM(IN, HID, merge_mode="concat" if mode is None else mode, **kw)
    second = rnnkit.LSTM(width, HID, merge_mode=mode, **kw)
    state = deep.state_dict()
    first.load_state_dict({k.replace("_l0", "_l0"): v for k, v in state.items() if "_l0" in k})
    second.load_state_dict({k.replace("_l1", "_l0"): v for k, v in state.items() if "_l1" in k})
    x = torch.randn(5, 2, IN, dtype=F64)
    torch.testing.assert_close(deep(x)[0], second(first(x)[0])[0], rtol=0, atol=0)


# ---- stateful --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gru", "lstm"])
@pytest.mark.parametrize("engine", ["reference", "auto"])
def test_stateful_two_calls_equal_one_call(kind: str, engine: str) -> None:
    layer = make(kind, num_layers=2, stateful=True, engine=engine, batch_first=True)
    plain = make(kind, num_layers=2, engine=engine, batch_first=True)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(3, 9, IN, dtype=F64)
    a, _ = layer(x[:, :4])
    b, state = layer(x[:, 4:])
    whole, whole_state = plain(x)
    torch.testing.assert_close(torch.cat([a, b], dim=1), whole, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state, whole_state, rtol=1e-12, atol=1e-12)
    layer.reset_states()
    again, _ = layer(x[:, :4])
    torch.testing.assert_close(again, a, rtol=0, atol=0)  # reset: from zeros again


def test_stateful_carried_state_is_detached() -> None:
    layer = rnnkit.GRU(IN, HID, stateful=True)
    layer(torch.randn(4, 2, IN))
    out, _ = layer(torch.randn(4, 2, IN))
    out.sum().backward()  # the first call's graph is not reached (it was freed: this would fail otherwise)
    assert all(not s.requires_grad for s in layer._carried)


def test_stateful_an_explicit_state_wins() -> None:
    layer = rnnkit.GRU(IN, HID, stateful=True)
    plain = rnnkit.GRU(IN, HID)
    plain.load_state_dict(layer.state_dict())
    x, h0 = torch.randn(4, 2, IN), torch.randn(1, 2, HID)
    layer(x)
    torch.testing.assert_close(layer(x, h0)[0], plain(x, h0)[0])


def test_extra_repr_names_the_options() -> None:
    layer = rnnkit.LSTM(IN, HID, bidirectional=True, zoneout=0.1, merge_mode="sum", stateful=True)
    assert "zoneout=0.1" in repr(layer) and "merge_mode='sum'" in repr(layer) and "stateful=True" in repr(layer)


def test_all_combinations_construct() -> None:
    for a, b in itertools.product(OPTIONS, OPTIONS):
        make("lstm", **{a: 0.1, b: 0.2})


# ---- the language model and the command line -------------------------------------------------------------------


def test_language_model_passes_the_options_and_is_deterministic_in_eval() -> None:
    from rnnkit.models import LanguageModel, ModelConfig

    model = ModelConfig(cell="lstm", hidden_size=6, zoneout=0.1, zoneout_cell=0.05, weight_dropout=0.2,
                        input_dropout=0.1, recurrent_dropout=0.1).build(11, dtype=F64)  # fmt: skip
    regs = model.rnn.regularisers
    assert (regs.zoneout, regs.zoneout_cell, regs.weight_dropout, regs.input_dropout, regs.recurrent_dropout) == (
        0.1, 0.05, 0.2, 0.1, 0.1)  # fmt: skip
    tokens = torch.randint(0, 11, (2, 5))
    model.eval()
    torch.testing.assert_close(model(tokens)[0], model(tokens)[0], rtol=0, atol=0)
    logits, state = model.step(tokens[:, 0])  # the stepper, with zoneout's expectation
    assert model._stepper_cache is not None
    torch.testing.assert_close(logits, model(tokens[:, :1])[0][:, 0])
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        LanguageModel(11, zonout=0.1)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"zoneout": 1.0}, r"model.zoneout must be in \[0, 1\), got 1.0"),
     ({"weight_dropout": -0.5}, r"model.weight_dropout must be in \[0, 1\)"),
     ({"cell": "gru", "zoneout_cell": 0.1}, "model.zoneout_cell needs a memory cell")],
)  # fmt: skip
def test_model_config_errors(kwargs, message) -> None:
    from rnnkit.models import ModelConfig

    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_train_flags_and_preset() -> None:
    from rnnkit.commands.train import PRESETS, LMTrainConfig
    from rnnkit.config import from_dict, parse_config

    cfg, _ = parse_config(LMTrainConfig, ["--model.zoneout", "0.1", "--model.weight-dropout", "0.3"], prog="t",
                          presets=PRESETS)  # fmt: skip
    assert (cfg.model.zoneout, cfg.model.weight_dropout) == (0.1, 0.3)
    reg = from_dict(LMTrainConfig, PRESETS["regularised"]).model
    assert any(getattr(reg, n) for n in ("input_dropout", "recurrent_dropout", "zoneout", "weight_dropout"))


@needs_c
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", ["rnn", "gru", "gru_reset_before", "lstm", "lstm_proj", "peephole", "jordan"])
def test_fused_equals_reference_wide_and_threaded(kind: str, threads: int) -> None:
    """Sizes of several vector blocks and panels plus a partial one, split over threads (each owns its units)."""
    kernels = torch.ops.rnnkit_c
    before, threshold = torch.get_num_threads(), kernels.set_min_step_work(0)
    torch.set_num_threads(threads)
    try:
        options = {"zoneout": 0.2, "recurrent_dropout": 0.3, "input_dropout": 0.1, "weight_dropout": 0.2}
        if kind in ("lstm", "lstm_proj", "peephole"):
            options["zoneout_cell"] = 0.25
        F, H, T, B = 5, 37, 9, 6
        ctor = {"rnn": rnnkit.RNN, "gru": rnnkit.GRU, "lstm": rnnkit.LSTM, "peephole": rnnkit.PeepholeLSTM}
        if kind == "jordan":
            layer = rnnkit.Jordan(F, H, 70, dtype=F64, **options)
        elif kind == "lstm_proj":
            layer = rnnkit.LSTM(F, H, proj_size=33, dtype=F64, **options)
        elif kind == "gru_reset_before":
            layer = rnnkit.GRU(F, H, reset_after=False, dtype=F64, **options)
        else:
            layer = ctor[kind](F, H, dtype=F64, **options)
        x = torch.randn(T, B, F, dtype=F64)
        hx = tuple(torch.randn(1, B, s, dtype=F64) for s in layer.cells[0].state_sizes)
        lengths = torch.tensor([9, 4, 9, 1, 7, 8])
        ref = run_and_grad(layer, "reference", 8, x, hx, lengths)
        fused = run_and_grad(layer, "fused", 8, x, hx, lengths)
        for a, b in zip(ref, fused, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    finally:
        torch.set_num_threads(before)
        kernels.set_min_step_work(threshold)


@needs_c
@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_fused_float32_close_to_float64_reference(kind: str) -> None:
    layer = make(kind, zoneout=0.1, recurrent_dropout=0.2, dtype=torch.float32)
    x, hx = torch.randn(8, 3, IN), tuple(torch.randn(1, 3, s) for s in layer.cells[0].state_sizes)
    got = run_and_grad(layer, "fused", 4, x, hx, None)
    double = copy.deepcopy(layer).double()
    want = run_and_grad(double, "reference", 4, x.double(), tuple(h.double() for h in hx), None)
    for a, b in zip(want, got, strict=True):
        torch.testing.assert_close(b, a.float(), rtol=1e-4, atol=1e-5)


@needs_c
def test_torch_compile_runs_the_regularised_layer_as_eager() -> None:
    options = {"zoneout": 0.1, "zoneout_cell": 0.1, "recurrent_dropout": 0.2, "weight_dropout": 0.3}
    layer = rnnkit.LSTM(IN, HID, num_layers=2, engine="fused", **options)
    compiled = torch.compile(layer, backend="aot_eager")
    x = torch.randn(20, 2, IN)
    try:
        for training in (True, False):
            layer.train(training)
            torch.manual_seed(1)
            eager = layer(x)[0]
            torch.manual_seed(1)
            got = compiled(x)[0]
            torch.testing.assert_close(got, eager)  # the same seed, the same masks
            got.sum().backward()
    finally:
        torch._dynamo.reset()


@needs_c
@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_double_backward_through_the_fused_regularisers(kind: str) -> None:
    """create_graph=True recomputes the fused buffers through the cells with the same masks (ops.reference_buffers)."""
    layer = make(kind, zoneout=0.3, recurrent_dropout=0.3)
    x = torch.randn(6, 2, IN, dtype=F64)

    def penalty(engine: str) -> list[torch.Tensor]:
        layer.engine = engine
        xi = x.clone().requires_grad_()
        torch.manual_seed(3)
        out = layer(xi)[0]
        (g,) = torch.autograd.grad(out.pow(2).sum(), xi, create_graph=True)
        return torch.autograd.grad(g.pow(2).sum(), [xi, layer.weight_hh_l0])

    for a, b in zip(penalty("reference"), penalty("fused"), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


def test_to_torch_refuses_a_layer_whose_options_torch_lacks() -> None:
    with pytest.raises(ValueError, match="torch.nn has no zoneout, merge_mode"):
        rnnkit.to_torch(rnnkit.LSTM(IN, HID, bidirectional=True, zoneout=0.1, merge_mode="sum"))
    assert isinstance(rnnkit.to_torch(rnnkit.LSTM(IN, HID)), torch.nn.LSTM)


@pytest.mark.parametrize("kind", list(NEW_CELLS))
@pytest.mark.parametrize("cfg", range(len(FUSED_CONFIGS)))
def test_newer_cells_auto_equals_reference_under_one_seed(kind: str, cfg: int) -> None:
    """MGU, IndRNN, minGRU, minLSTM and the layer-norm cells take every regulariser they have a place for: "auto"
    (their fast paths for input and weight dropout, the reference loop for the in-loop ones) gives the reference's
    numbers under one seed."""
    options = {k: v for k, v in FUSED_CONFIGS[cfg].items() if k != "zoneout_cell"}
    if kind in ("mingru", "minlstm"):  # no recurrent product: nothing for recurrent dropout to mask
        options.pop("recurrent_dropout", None)
    if kind in ("indrnn", "mingru", "minlstm"):  # IndRNN's u is a vector, the min cells have no recurrent weight
        options.pop("weight_dropout", None)
    options.setdefault("bidirectional", True)
    layer = make(kind, num_layers=2, **options)
    T, B = 7, 3
    x = torch.randn(T, B, IN, dtype=F64)
    hx = tuple(torch.randn(4, B, s, dtype=F64) for s in layer.cells[0].state_sizes)
    lengths = torch.tensor([7, 3, 5])
    ref = run_and_grad(layer, "reference", 5, x, hx, lengths)
    auto = run_and_grad(layer, "auto", 5, x, hx, lengths)
    for a, b in zip(ref, auto, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    layer.eval()
    torch.testing.assert_close(layer(x)[0], layer(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["indrnn", "mingru", "minlstm"])
def test_weight_dropout_refused_without_a_recurrent_matrix(kind: str) -> None:
    with pytest.raises(ValueError, match="has no recurrent weight matrix to drop connections from"):
        make(kind, weight_dropout=0.2)


def test_any_sees_every_regulariser():
    from dataclasses import fields

    from rnnkit.regularisers import Regularisers

    assert not Regularisers().any()
    for f in fields(Regularisers):
        assert Regularisers(**{f.name: 0.1}).any(), f.name
