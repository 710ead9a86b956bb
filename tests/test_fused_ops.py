"""The fused engine as torch operators: torch.compile, torch.export, torch.jit.trace, double backward,
torch.func and ONNX export all either work or route to an engine that does — never a silent wrong answer."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import rnnkit
from rnnkit.engines import select_engine
from rnnkit.engines.fused import build
from rnnkit.models import LanguageModel

pytestmark = pytest.mark.skipif(not build.available(), reason="no C compiler: the native operators are off")
F64 = torch.float64
LM_CELLS = ["lstm", "gru", "peephole", "jordan"]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    yield
    torch._dynamo.reset()  # compiled graphs hold on to the models of each test


def layer(kind: str, **kw) -> rnnkit.Recurrent:
    return {
        "lstm": lambda: rnnkit.LSTM(3, 5, **kw),
        "lstm_proj": lambda: rnnkit.LSTM(3, 5, proj_size=2, **kw),
        "gru": lambda: rnnkit.GRU(3, 5, **kw),
        "gru_reset_before": lambda: rnnkit.GRU(3, 5, reset_after=False, **kw),
        "peephole": lambda: rnnkit.PeepholeLSTM(3, 5, **kw),
        "rnn": lambda: rnnkit.RNN(3, 5, **kw),
        "jordan": lambda: rnnkit.Jordan(3, 5, 4, **kw),
        "indrnn": lambda: rnnkit.IndRNN(3, 5, **kw),
        "mgu": lambda: rnnkit.MGU(3, 5, **kw),
    }[kind]()


class _Recorded(torch.overrides.TorchFunctionMode):
    """A function mode that changes nothing but makes the fused engine call its operator through the dispatcher
    (what torch.compile and torch.export record) instead of calling the implementation directly."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def assert_engines_agree(lay: rnnkit.Recurrent, x: torch.Tensor, run, operator: bool = False) -> None:
    """``run(lay)`` computes and back-propagates a loss and returns any further tensors to compare: on the fused
    engine it must give what it gives on the reference loop (those tensors, x's and every parameter's gradient).
    ``operator``: the fused engine's operator form too (its own outputs, autograd formula and backward op)."""
    results = []
    for engine, mode in [("reference", None), ("fused", None)] + [("fused", _Recorded)] * operator:
        lay.engine = engine
        lay.zero_grad()
        x.grad = None
        if mode is None:
            extra = run(lay)
        else:
            with mode():
                extra = run(lay)
        results.append([*extra, x.grad, *(p.grad for p in lay.parameters())])
    for other in results[1:]:
        for e, g in zip(results[0], other, strict=True):
            torch.testing.assert_close(g, e, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "kind,reg",
    [("lstm_proj", False), ("gru_reset_before", False), ("peephole", False), ("rnn", False), ("jordan", False),
     ("indrnn", False), ("mgu", False),
     ("lstm_proj", True), ("gru", True), ("gru_reset_before", True), ("rnn", True), ("jordan", True)],
)  # fmt: skip
def test_opcheck(kind: str, reg: bool) -> None:
    """torch's own checks of a custom operator: schema, fake tensors, autograd registration, AOT dispatch."""
    from rnnkit.engines.fused import ops  # noqa: F401
    from rnnkit.engines.fused.specs import SPECS

    torch.manual_seed(0)
    lay = layer(kind, dtype=F64)
    cell = lay.cells[0]
    spec = SPECS[type(cell)]
    config, params = spec.config_and_params(cell, lay.weights(0))
    x = torch.randn(4, 2, 3, dtype=F64, requires_grad=True)
    state = [torch.randn(2, s, dtype=F64, requires_grad=True) for s in cell.state_sizes]
    args = (
        spec.name,
        config,
        x,
        state,
        [p.detach().requires_grad_() for p in params],
        torch.tensor([4, 2]),
        True,
        False,
        [],
    )
    if reg:  # the in-loop regularisers: zoneout (p_h, p_c, train, key_h, key_c) and recurrent-dropout multipliers
        zone = torch.tensor([0.3, 0.2 if kind.startswith("lstm") else 0.0, 1.0, 12345.0, 678.0], dtype=F64)
        rmask = (torch.rand(2, cell.state_sizes[0], dtype=F64) > 0.4).to(F64) / 0.6
        args = (*args[:-1], [zone, rmask])
    torch.library.opcheck(torch.ops.rnnkit.sequence.default, args)


@pytest.mark.parametrize("cell", LM_CELLS)
def test_compiled_language_model_has_no_graph_break_and_equals_eager(cell: str) -> None:
    """fullgraph=True fails on any graph break; forward and every gradient equal eager."""
    torch.manual_seed(1)
    model = LanguageModel(11, cell, hidden_size=6, num_layers=2, input="embedding", embed_size=5, engine="fused")
    tokens = torch.randint(0, 11, (3, 7))
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    results = []
    for m in (model, compiled):
        model.zero_grad()
        logits, _ = m(tokens)
        logits.square().mean().backward()
        results.append([logits.detach(), *(p.grad.clone() for p in model.parameters())])
    for e, g in zip(*results, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)


def test_compiled_model_as_the_processes_first_use_of_rnnkit() -> None:
    """In a fresh process the first forward may be a compiled one: finding (and loading) the native kernels does
    file I/O, which fullgraph=True cannot trace; it must happen outside the graph."""
    code = (
        "import torch\n"
        "from rnnkit.models import LanguageModel\n"
        "m = LanguageModel(11, 'gru', hidden_size=6, num_layers=2, input='embedding', embed_size=5, engine='fused')\n"
        "c = torch.compile(m, fullgraph=True, backend='aot_eager')\n"
        "t = torch.randint(0, 11, (3, 7))\n"
        "torch.testing.assert_close(c(t)[0], m(t)[0])\n"
        "print('OK')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RNNKIT_NO_NATIVE"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize("engine", ["fused", "reference"])
def test_compiled_with_lengths_equals_eager(engine: str) -> None:
    """lengths= inside a compiled graph (no graph break: their range is checked only in eager mode)."""
    torch.manual_seed(2)
    layer = rnnkit.LSTM(3, 5, num_layers=2, bidirectional=True, engine=engine)
    x, lengths = torch.randn(7, 4, 3), torch.tensor([7, 3, 5, 1])
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    results = []
    for m in (layer, compiled):
        layer.zero_grad()
        out, (h, c) = m(x, lengths=lengths)
        (out.square().sum() + h.sum() + c.sum()).backward()
        results.append([out.detach(), h.detach(), c.detach(), *(p.grad.clone() for p in layer.parameters())])
    for e, g in zip(*results, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)


def test_compiled_with_inductor_trains_like_eager() -> None:
    """The default backend (inductor) too, with auto: the compiled model picks the operator, not a graph break."""
    torch.manual_seed(2)
    model = LanguageModel(9, "gru", hidden_size=8, input="embedding", embed_size=4)
    tokens = torch.randint(0, 9, (2, 5))
    eager, _ = model(tokens)
    compiled, _ = torch.compile(model, fullgraph=True)(tokens)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


def test_export_a_layer_and_a_language_model() -> None:
    torch.manual_seed(3)
    lay = layer("peephole", engine="fused")
    x = torch.randn(6, 2, 3)
    program = torch.export.export(lay, (x,))
    assert "rnnkit.sequence" in str(program.graph)
    torch.testing.assert_close(program.module()(x)[0], lay(x)[0])
    model = LanguageModel(7, "jordan", hidden_size=5, engine="fused")
    tokens = torch.randint(0, 7, (2, 4))
    program = torch.export.export(model, (tokens,))
    torch.testing.assert_close(program.module()(tokens)[0], model(tokens)[0])


def test_jit_trace_keeps_the_operator() -> None:
    torch.manual_seed(4)
    lay = layer("gru_reset_before", engine="fused")
    x = torch.randn(5, 2, 3)
    traced = torch.jit.trace(lay, (x,))
    assert "rnnkit::sequence" in str(traced.graph)
    other = torch.randn(8, 3, 3)  # another length and batch: the operator, not an unrolled loop
    torch.testing.assert_close(traced(other)[0], lay(other)[0])


@pytest.mark.parametrize("kind", ["lstm_proj", "gru", "gru_reset_before", "peephole", "rnn", "jordan"])
def test_double_backward_equals_the_reference(kind: str) -> None:
    """A gradient penalty (create_graph=True) through the fused operator: the same second-order gradients as
    the reference loop, also with ragged lengths and both directions."""
    torch.manual_seed(5)
    lay = layer(kind, dtype=F64, bidirectional=True)
    x = torch.randn(5, 3, 3, dtype=F64, requires_grad=True)
    lengths = torch.tensor([5, 2, 4])

    def penalty(lay: rnnkit.Recurrent) -> list[torch.Tensor]:
        out, _ = lay(x, lengths=lengths)
        (gx,) = torch.autograd.grad(out.tanh().sum(), x, create_graph=True)
        gx.square().sum().backward()
        return [gx.detach()]

    assert_engines_agree(lay, x, penalty)


def test_gradgradcheck() -> None:
    torch.manual_seed(6)
    lay = layer("lstm", dtype=F64, engine="fused")
    x = torch.randn(4, 2, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda v: lay(v)[0], (x,), eps=1e-6, atol=1e-6)


def test_torch_func_routes_to_the_reference_loop() -> None:
    """torch.func transforms need plain torch ops: auto runs them on the reference loop, an explicit
    engine='fused' says so in one line."""
    torch.manual_seed(7)
    lay = layer("gru", dtype=F64)
    x = torch.randn(20, 2, 3, dtype=F64)  # long enough that auto would pick fused
    assert select_engine(lay, x, False).name == "fused"
    jac = torch.func.jacrev(lambda v: lay(v)[0].sum(0))(x)
    lay.engine = "reference"
    expected = torch.func.jacrev(lambda v: lay(v)[0].sum(0))(x)
    torch.testing.assert_close(jac, expected)
    batched = torch.func.vmap(lambda v: lay(v)[0], in_dims=1, out_dims=1)(x)  # vmap over the batch
    torch.testing.assert_close(batched, lay(x)[0])
    lay.engine = "fused"
    with pytest.raises(ValueError, match="reference"):
        torch.func.grad(lambda v: lay(v)[0].sum())(x)


def test_onnx_export_by_tracing_never_records_the_fused_operator() -> None:
    """torch.onnx's TorchScript exporter only knows torch ops: under it auto picks torch's kernels (which it
    exports as ONNX LSTM/GRU/RNN nodes), and an explicit engine='fused' refuses in one line."""
    import io

    pytest.importorskip("onnx")
    torch.manual_seed(8)
    lay = layer("lstm")
    x = torch.randn(20, 2, 3)
    torch.onnx.export(lay, (x,), io.BytesIO(), dynamo=False)  # auto: torch's kernel, no error
    lay.engine = "fused"
    with pytest.raises(ValueError, match="onnx"):
        torch.onnx.export(lay, (x,), io.BytesIO(), dynamo=False)


def test_compiled_training_never_takes_the_failing_torch_kernel() -> None:
    """torch.compile of a training step on torch's CPU kernel fails inside torch (mkldnn_rnn_layer): auto takes
    the fused operator instead, even for a short sequence that it would otherwise leave to torch."""
    torch.manual_seed(9)
    lay = layer("lstm")
    x = torch.randn(8, 3, 3)
    assert select_engine(lay, x, False).name == "torch"  # eager: 8 steps stay with torch

    def loss(v):
        return lay(v)[0].square().sum()

    torch.compile(loss, fullgraph=True, backend="aot_eager")(x).backward()
    grads = [p.grad.clone() for p in lay.parameters()]
    lay.zero_grad()
    loss(x).backward()
    for g, p in zip(grads, lay.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-6)


def test_compiled_batch_first_model_with_strided_input() -> None:
    """A batch-first layer hands the operator a transposed (non-contiguous) input: the fake implementations
    must describe the gradients' real (contiguous) layout, or compiled training fails."""
    torch.manual_seed(10)
    model = LanguageModel(9, "gru", hidden_size=8, input="embedding", embed_size=4, engine="fused")
    tokens = torch.randint(0, 9, (3, 6))

    def loss(t):
        return model(t)[0].square().mean()

    torch.compile(loss, fullgraph=True, backend="aot_eager")(tokens).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_batched_gradients_through_the_fused_backward() -> None:
    """gradcheck's batched check runs the backward under vmap (is_grads_batched=True): the fused backward's
    batching rule gives what one backward per grad gives."""
    torch.manual_seed(11)
    lay = layer("gru", dtype=F64, engine="fused")
    x = torch.randn(20, 2, 3, dtype=F64, requires_grad=True)
    out, _ = lay(x)
    vs = torch.randn(3, *out.shape, dtype=F64)
    (batched,) = torch.autograd.grad(out, x, vs, is_grads_batched=True, retain_graph=True)
    for i in range(3):
        (one,) = torch.autograd.grad(out, x, vs[i], retain_graph=True)
        torch.testing.assert_close(batched[i], one)
    assert torch.autograd.gradcheck(lambda v: lay(v)[0], (x[:4].detach().requires_grad_(),), check_batched_grad=True)


@pytest.mark.parametrize("kind", ["lstm_proj", "gru", "gru_reset_before", "peephole", "rnn", "jordan", "indrnn", "mgu"])
@pytest.mark.parametrize("uses", ["output", "final", "both", "gates"])
def test_output_rows_and_final_state_gradients(kind: str, uses: str) -> None:
    """The output sequence and the final states are outputs of their own (their gradients reach the kernels
    without zero-filled (T + 1)-row tensors); the gates are views of the buffers. Whichever the loss reads, the
    gradients equal the reference loop's, with ragged lengths and both directions, called directly and through
    the operator."""
    torch.manual_seed(12)
    lay = layer(kind, dtype=F64, bidirectional=True, num_layers=2)
    x = torch.randn(6, 3, 3, dtype=F64, requires_grad=True)
    lengths = torch.tensor([6, 2, 5])

    def loss(lay: rnnkit.Recurrent) -> list[torch.Tensor]:
        out, state, gates = lay(x, lengths=lengths, return_gates=True)
        finals = state if isinstance(state, tuple) else (state,)
        total = out.sin().sum() if uses != "final" else 0
        total = total + sum(s.cos().sum() for s in finals) if uses != "output" else total
        if uses == "gates":  # the LSTM's gates include the cell states: both buffers take a gradient
            total = total + sum((g * (i + 1)).tanh().sum() for i, g in enumerate(gates.values()))
        total.backward()
        return []

    assert_engines_agree(lay, x, loss, operator=True)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_the_operator_with_no_steps_passes_the_final_gradient_to_the_initial_state(kind: str) -> None:
    """T = 0: the final states are the initial ones, so their gradients are the initial states' (operator and
    direct call)."""
    lay = layer(kind, dtype=F64, engine="fused")
    cell = lay.cells[0]
    from rnnkit.engines.fused import ops
    from rnnkit.engines.fused.specs import SPECS

    spec = SPECS[type(cell)]
    config, params = spec.config_and_params(cell, lay.weights(0))
    x = torch.zeros(0, 2, 3, dtype=F64)
    state = [torch.randn(2, 5, dtype=F64, requires_grad=True) for _ in range(spec.n_state)]
    for direct in (True, False):
        if direct:
            rows, finals, _ = ops.call_sequence(spec.name, config, x, state, params, None, True, False)
        else:
            with _Recorded():
                rows, finals, _ = ops.call_sequence(spec.name, config, x, state, params, None, True, False)
        assert rows.shape == (0, 2, 5)
        weights = [torch.randn(2, 5, dtype=F64) for _ in finals]
        grads = torch.autograd.grad([(f * w).sum() for f, w in zip(finals, weights)], state)
        for g, w in zip(grads, weights, strict=True):
            torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_sequence_backward_takes_the_output_rows_alone() -> None:
    """``rnnkit::sequence_backward`` reads the states' gradient as (T + 1, B, S) or as its rows 1..T alone."""
    from rnnkit.engines.fused.specs import SPECS

    torch.manual_seed(13)
    lay = layer("gru", dtype=F64)
    cell = lay.cells[0]
    spec = SPECS[type(cell)]
    config, params = spec.config_and_params(cell, lay.weights(0))
    x, h0 = torch.randn(4, 2, 3, dtype=F64), torch.randn(2, 5, dtype=F64)
    buffers = torch.ops.rnnkit.sequence(spec.name, config, x, [h0], params, None, True, False, [])[2:]
    g_rows = torch.randn(4, 2, 5, dtype=F64)
    needs = [True] * (2 + len(params))
    grads = [torch.cat([torch.zeros(1, 2, 5, dtype=F64), g_rows]), torch.empty(0), torch.empty(0)]
    call = torch.ops.rnnkit.sequence_backward
    full = call(spec.name, config, x, [h0], params, None, buffers, grads, needs, False, [])
    rows = call(spec.name, config, x, [h0], params, None, buffers, [g_rows, *grads[1:]], needs, False, [])
    for a, b in zip(full, rows, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"expected the gradient of Hs of shape \(5, 2, 5\) or \(4, 2, 5\)"):
        call(spec.name, config, x, [h0], params, None, buffers, [g_rows[:3], *grads[1:]], needs, False, [])


def test_changing_the_output_in_place_fails_the_backward() -> None:
    """The output rows share the saved states' version counter: changed in place, the backward says so."""
    lay = layer("gru", engine="fused")
    out, _ = lay(torch.randn(4, 2, 3, requires_grad=True))
    out.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()
