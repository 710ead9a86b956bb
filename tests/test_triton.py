"""The Triton engine gives the reference engine's numbers: outputs, final states, gates and every gradient.

On a machine with a GPU the kernels run compiled on CUDA tensors. Without one they run on CPU tensors under
Triton's interpreter: ``TRITON_INTERPRET=1`` must be set when Triton decorates the kernels (at their first
import), so the ``interpreter`` fixture sets it and (re)imports them; the rest of the session is unaffected.
Sizes are tiny: the interpreter executes every block operation in NumPy. One test compiles every kernel for
an H100/H200-class GPU (sm_90) without one, in a child process, so GPU-only compile errors show up here too.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import rnnkit
from rnnkit.engines import AUTO_ORDER, ENGINES, select_engine

if importlib.util.find_spec("triton") is None:  # importing it here would fix its mode before conftest's setting
    pytest.skip("Triton is not installed", allow_module_level=True)
sys.path.insert(0, os.path.dirname(__file__))
from test_fused import CELLS, IN, make, run_and_grad  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def interpreter():
    """Without a GPU, the kernels must run under Triton's interpreter (set by conftest.py before any import of
    Triton: it decides when it decorates a kernel, its own library's included)."""
    from rnnkit.engines.triton.dispatch import interpreting

    if not CUDA and not interpreting():
        pytest.skip("no GPU, and TRITON_INTERPRET was not set before Triton was first imported")
    yield


def on_device(model: rnnkit.Recurrent, *tensors: torch.Tensor):
    return model.to(DEVICE), *(t.to(DEVICE) for t in tensors)


def compare(kind: str, dtype: torch.dtype, layers: int, bidirectional: bool, lengths: bool, gates: bool, tol: dict):
    torch.manual_seed(0)
    model = make(kind, dtype=dtype, num_layers=layers, bidirectional=bidirectional)
    T, B = 4, 3
    LD = layers * (2 if bidirectional else 1)
    x = torch.randn(T, B, IN, dtype=dtype)
    hx = tuple(torch.randn(LD, B, s, dtype=dtype) for s in model.cells[0].state_sizes)
    model, x, *hx = on_device(model, x, *hx)
    lens = torch.tensor([4, 1, 3], device=DEVICE) if lengths else None
    expected = run_and_grad(model, "reference", x, tuple(hx), lens, gates)
    got = run_and_grad(model, "triton", x, tuple(hx), lens, gates)
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        assert e.shape == g.shape and g.device.type == DEVICE
        torch.testing.assert_close(g, e, **tol)


#: one launch per sequence for every cell; one launch per phase and step for each kernel with several phases
LAUNCHES = [(k, "sequence") for k in CELLS] + [(k, "step") for k in ("rnn_tanh", "gru", "gru_reset_before",
                                                                      "lstm_proj", "jordan")]  # fmt: skip


@pytest.mark.parametrize("kind,launch", LAUNCHES)
def test_matches_reference_float64(kind: str, launch: str, monkeypatch) -> None:
    """Two bidirectional layers, ragged lengths, gates in the loss: every buffer and gradient path at once."""
    monkeypatch.setenv("RNNKIT_TRITON_LAUNCH", launch)
    compare(kind, F64, 2, True, True, True, {"rtol": 0, "atol": 1e-10})


@pytest.mark.parametrize("kind", CELLS)
def test_matches_reference_float32(kind: str) -> None:
    """float32, full sequences, no gates: the kernels' other paths (no lengths, no gate gradients)."""
    compare(kind, torch.float32, 2, False, False, False, {"rtol": 1e-4, "atol": 1e-5})


@pytest.mark.parametrize(
    "kind,launch", [("peephole_proj", "sequence"), ("peephole_proj", "step"), ("gru_reset_before", "sequence"),
                    ("gru_reset_before", "step"), ("jordan", "sequence")]
)  # fmt: skip
def test_several_blocks_of_rows_units_and_depth(kind: str, launch: str, monkeypatch) -> None:
    """20 rows (two programs' worth), 70 units (two tiles of 64) and 70-deep products (three slices of 32)."""
    monkeypatch.setenv("RNNKIT_TRITON_LAUNCH", launch)
    torch.manual_seed(6)
    model = {
        "peephole_proj": lambda: rnnkit.PeepholeLSTM(IN, 70, proj_size=66, dtype=F64),
        "gru_reset_before": lambda: rnnkit.GRU(IN, 70, reset_after=False, dtype=F64),
        "jordan": lambda: rnnkit.Jordan(IN, 70, 67, dtype=F64),
    }[kind]()
    x = torch.randn(3, 20, IN, dtype=F64)
    hx = tuple(torch.randn(1, 20, s, dtype=F64) for s in model.cells[0].state_sizes)
    model, x, *hx = on_device(model, x, *hx)
    lens = torch.arange(20, device=DEVICE) % 3 + 1
    expected = run_and_grad(model, "reference", x, tuple(hx), lens, True)
    got = run_and_grad(model, "triton", x, tuple(hx), lens, True)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ["gru_reset_before", "lstm_proj", "jordan"])
def test_inference_without_saved_gates(kind: str) -> None:
    """Under no_grad nothing is kept for a backward (the reset-before GRU passes r, z through scratch)."""
    torch.manual_seed(2)
    model = make(kind, dtype=torch.float32, bidirectional=True)
    x = torch.randn(5, 2, IN)
    model, x = on_device(model, x)
    results = []
    with torch.no_grad():
        for engine in ("reference", "triton"):
            model.engine = engine
            out, state = model(x, lengths=[5, 3])
            results.append([out, *(state if isinstance(state, tuple) else (state,))])
    for e, g in zip(*results):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)


def test_dropout_between_layers() -> None:
    """Training-mode dropout between layers draws the same masks as for the reference engine."""
    model = make("lstm", num_layers=3, dropout=0.5)
    model.train()
    x = torch.randn(4, 2, IN, dtype=F64)
    hx = tuple(torch.zeros(3, 2, s, dtype=F64) for s in model.cells[0].state_sizes)
    model, x, *hx = on_device(model, x, *hx)
    torch.manual_seed(3)
    expected = run_and_grad(model, "reference", x, tuple(hx), None, False)
    torch.manual_seed(3)
    got = run_and_grad(model, "triton", x, tuple(hx), None, False)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-10)


def test_double_backward() -> None:
    """A gradient penalty (create_graph=True) differentiates the gradients again, as on the reference engine."""
    torch.manual_seed(4)
    model = make("gru_reset_before")
    x = torch.randn(3, 2, IN, dtype=F64)
    model, x = on_device(model, x)
    grads = []
    for engine in ("reference", "triton"):
        model.engine = engine
        model.zero_grad()
        xi = x.clone().requires_grad_()
        out, _ = model(xi)
        (gx,) = torch.autograd.grad(out.square().sum(), xi, create_graph=True)
        gx.square().sum().backward()
        grads.append([gx.detach(), *(p.grad.clone() for p in model.parameters())])
    for e, g in zip(*grads):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", CELLS)
def test_stepper(kind: str) -> None:
    """The GPU stepper (here, under the interpreter) equals the layer token by token."""
    from rnnkit.engines.triton.stepper import Stepper

    torch.manual_seed(5)
    model = make(kind, num_layers=2)
    x = torch.randn(3, 2, IN, dtype=F64)
    model, x = on_device(model, x)
    model.engine = "reference"
    with torch.no_grad():
        expected, final = model(x)
    step, state, outs = Stepper(model), None, []
    for x_t in x:
        y, state = step(x_t, state)
        outs.append(y)
    torch.testing.assert_close(torch.stack(outs), expected, rtol=0, atol=1e-12)
    for a, b in zip(state if isinstance(state, tuple) else (state,), final if isinstance(final, tuple) else (final,)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    y1, _ = step(x[0, 0])  # unbatched
    torch.testing.assert_close(y1, expected[0, 0], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="expected a state of shapes"):
        step(x[0], torch.zeros(1, 2, 1, dtype=F64, device=DEVICE))


def test_operators_have_cuda_kernels() -> None:
    """rnnkit::sequence and its backward dispatch CUDA tensors to the Triton implementation."""
    from rnnkit.engines.fused import ops  # noqa: F401

    for op in ("rnnkit::sequence", "rnnkit::sequence_backward"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA")


def test_engine_choice() -> None:
    """auto never takes the interpreter on the CPU; on CUDA it takes cuDNN where torch has the cell, else Triton."""
    x = torch.randn(20, 2, IN, device=DEVICE)
    assert AUTO_ORDER.index("triton") > AUTO_ORDER.index("torch")
    lstm, peephole = rnnkit.LSTM(IN, 5, device=DEVICE), rnnkit.PeepholeLSTM(IN, 5, device=DEVICE)
    assert ENGINES["triton"].unsupported(lstm, x, True) is None
    if CUDA:
        assert select_engine(lstm, x, False).name == "torch"
        assert select_engine(lstm, x, True).name == "triton"  # gates: cuDNN cannot report them
        assert select_engine(peephole, x, False).name == "triton"
        assert select_engine(rnnkit.GRU(IN, 5, reset_after=False, device=DEVICE), x, False).name == "triton"
        assert type(lstm.stepper()).__module__ == "rnnkit.engines.triton.stepper"
    else:
        assert select_engine(peephole, x, False).name != "triton"
    with pytest.raises(ValueError, match="float32 or float64"):
        rnnkit.LSTM(IN, 5, engine="triton", dtype=torch.bfloat16, device=DEVICE)(x.bfloat16())


def test_launch_variable_is_checked(monkeypatch) -> None:
    monkeypatch.setenv("RNNKIT_TRITON_LAUNCH", "persistent")
    model, x = on_device(rnnkit.RNN(IN, 5, engine="triton"), torch.randn(2, 1, IN))
    with pytest.raises(ValueError, match="RNNKIT_TRITON_LAUNCH='persistent': use auto, sequence or step"):
        model(x)


# ---- on a GPU only: the operator with its CUDA kernel under torch's own checks, compile and export ---------------

cuda_only = pytest.mark.skipif(not CUDA, reason="needs a CUDA device (benchmarks/gpu_check.sh runs these)")


@cuda_only
@pytest.mark.parametrize("kind", ["lstm_proj", "peephole", "gru_reset_before", "rnn_tanh", "jordan"])
def test_opcheck_on_cuda(kind: str) -> None:
    """Schema, fake tensors, autograd registration and AOT dispatch of rnnkit::sequence with CUDA tensors."""
    from rnnkit.engines.fused import ops  # noqa: F401
    from rnnkit.engines.fused.specs import SPECS

    torch.manual_seed(0)
    model = make(kind).to(DEVICE)
    cell = model.cells[0]
    spec = SPECS[type(cell)]
    config, params = spec.config_and_params(cell, model.weights(0))
    x = torch.randn(4, 2, IN, dtype=F64, device=DEVICE, requires_grad=True)
    state = [torch.randn(2, s, dtype=F64, device=DEVICE, requires_grad=True) for s in cell.state_sizes]
    lengths = torch.tensor([4, 2], device=DEVICE)
    args = (spec.name, config, x, state, [p.detach().requires_grad_() for p in params], lengths, True, False, [])
    torch.library.opcheck(torch.ops.rnnkit.sequence.default, args)


@cuda_only
@pytest.mark.parametrize("cell", ["lstm", "gru", "peephole", "jordan"])
def test_compiled_language_model_on_cuda(cell: str) -> None:
    """torch.compile(fullgraph=True) sees one operator per layer and direction on CUDA too; equal to eager."""
    from rnnkit.models import LanguageModel

    torch.manual_seed(1)
    model = LanguageModel(11, cell, hidden_size=6, num_layers=2, input="embedding", embed_size=5, engine="triton")
    model = model.to(DEVICE)
    tokens = torch.randint(0, 11, (3, 7), device=DEVICE)
    results = []
    for m in (model, torch.compile(model, fullgraph=True, backend="aot_eager")):
        model.zero_grad()
        logits, _ = m(tokens)
        logits.square().mean().backward()
        results.append([logits.detach(), *(p.grad.clone() for p in model.parameters())])
    for e, g in zip(*results, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)
    torch._dynamo.reset()


@cuda_only
def test_export_on_cuda() -> None:
    torch.manual_seed(2)
    model = rnnkit.PeepholeLSTM(IN, 5, engine="triton", device=DEVICE)
    x = torch.randn(6, 2, IN, device=DEVICE)
    program = torch.export.export(model, (x,))
    assert "rnnkit.sequence" in str(program.graph)
    torch.testing.assert_close(program.module()(x)[0], model(x)[0])


COMPILE_CHECK = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from rnnkit.engines.triton import gru, lstm, simple

INTS = {"B", "H", "S", "O", "sG", "t0", "n_steps", "tiles_a", "tiles_b", "tiles_c"}
BASE = dict(DIR=1, BB=16, DO_A=True, DO_B=True, DO_C=True, BU=64, BK=32, HAS_LEN=True)
VARIANTS = [
    (lstm.lstm_fwd, dict(ACT=1, REC=3, PEEPHOLE=True, PROJ=True, KEEP=True)),
    (lstm.lstm_bwd, dict(ACT=1, REC=3, PEEPHOLE=True, PROJ=True, HAS_GC=True, HAS_GG=True, DIR=-1)),
    (gru.gru_fwd, dict(ACT=1, REC=3, AFTER=True, HAS_BIAS=True, KEEP=True)),
    (gru.gru_fwd, dict(ACT=2, REC=4, AFTER=False, HAS_BIAS=True, KEEP=False)),
    (gru.gru_bwd, dict(ACT=1, REC=3, AFTER=True, HAS_GG=True, DIR=-1)),
    (gru.gru_bwd, dict(ACT=0, REC=4, AFTER=False, HAS_GG=True, DIR=-1)),
    (simple.elman_fwd, dict(ACT=2)),
    (simple.elman_bwd, dict(ACT=2, DIR=-1)),
    (simple.jordan_fwd, dict(ACT=1, OUT=3, HAS_BIAS=True)),
    (simple.jordan_bwd, dict(ACT=1, OUT=3, HAS_GH=True, DIR=-1)),
]
for dtype, prec, variants in (("fp32", "tf32", VARIANTS), ("fp64", "ieee", VARIANTS[:1])):
    for fn, const in variants:
        sig = {p.name: "constexpr" if p.is_constexpr else "i32" if p.name in INTS else "*i64" if p.name == "LEN"
               else "*" + dtype for p in fn.params}
        src = ASTSource(fn, signature=sig, constexprs={**BASE, **const, "PREC": prec})
        triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"enable_fp_fusion": True})
print("compiled", len(VARIANTS) + 1)
"""


def test_kernels_compile_for_a_gpu() -> None:
    """Every kernel (all options on) compiles to sm_90 machine code; no GPU needed, only Triton's ptxas."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(COMPILE_CHECK)], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    if proc.returncode != 0 and "ptxas" in proc.stderr and "not found" in proc.stderr.lower():
        pytest.skip("this Triton build has no ptxas")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "compiled 11" in proc.stdout
