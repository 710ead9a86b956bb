"""The native kernels' build: every instruction-set variant gives the reference's numbers, and a machine
without the kernels falls back loudly (once) — or, with RNNKIT_REQUIRE_NATIVE=1, fails.

Each case runs in a child process, because the instruction set is chosen when the library loads.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rnnkit.engines.fused import build

CHECK = r"""
import torch, rnnkit
from rnnkit.engines.fused import build
torch.set_num_threads(2)
print("ISA", build.isa())
torch.ops.rnnkit_c.set_min_step_work(0)  # these small problems on both threads too
torch.manual_seed(0)
F64 = torch.float64
layers = [
    rnnkit.LSTM(6, 37, proj_size=9, num_layers=2, bidirectional=True, dtype=F64),
    rnnkit.PeepholeLSTM(6, 20, recurrent_activation="hard_sigmoid", dtype=F64),
    rnnkit.GRU(6, 37, num_layers=2, dtype=F64),
    rnnkit.GRU(6, 21, reset_after=False, bidirectional=True, dtype=F64),
    rnnkit.RNN(6, 70, nonlinearity="relu", dtype=F64),
    rnnkit.Jordan(6, 19, 11, output_activation="tanh", dtype=F64),
    rnnkit.IndRNN(6, 37, activation="tanh", bidirectional=True, dtype=F64),
    rnnkit.MGU(6, 21, bidirectional=True, dtype=F64),
]
x = torch.randn(7, 9, 6, dtype=F64)
lengths = torch.tensor([7, 2, 5, 1, 7, 3, 6, 4, 7])
for lay in layers:
    got = []
    for engine in ("reference", "fused"):
        lay.engine = engine
        lay.zero_grad()
        xx = x.clone().requires_grad_()
        out, state = lay(xx, lengths=lengths)
        (out.tanh().sum() + sum(s.square().sum() for s in torch.atleast_1d(state))).backward()
        got.append([out, xx.grad, *(p.grad for p in lay.parameters())])
    for e, g in zip(*got):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-6 if "hard" in repr(lay) else 1e-10)
    with torch.no_grad():
        torch.testing.assert_close(lay(x, lengths=lengths)[0], out.detach(), rtol=0, atol=0)  # inference path
print("OK")
"""


def run_child(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("RNNKIT_") or k == "RNNKIT_CACHE_DIR"}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=600)


needs_native = pytest.mark.skipif(not build.available(), reason="no C compiler: the native kernels are off")


@needs_native
@pytest.mark.parametrize("isa", ["avx512", "avx2", "generic"])
def test_each_instruction_set_matches_the_reference(isa: str) -> None:
    """CI runs every variant the machine can: the portable build and AVX2 on any x86-64, AVX-512 where present."""
    if isa != "generic" and not build._is_x86():
        pytest.skip("x86 instruction sets")
    res = run_child(CHECK, RNNKIT_ISA=isa)
    if isa == "avx512" and "cannot run the avx512" in res.stderr:
        pytest.skip("this CPU has no AVX-512")
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"ISA {isa} (vectors of" in res.stdout and "OK" in res.stdout


@needs_native
def test_an_unknown_instruction_set_is_refused_in_one_line() -> None:
    res = run_child("from rnnkit.engines.fused import build; print(build.unavailable())", RNNKIT_ISA="sse9")
    assert "unknown instruction set 'sse9'" in res.stdout


FALLBACK = r"""
import warnings, torch, rnnkit
warnings.simplefilter("always")
lay = rnnkit.PeepholeLSTM(3, 4, engine="fused", dtype=torch.float64)
x = torch.randn(5, 2, 3, dtype=torch.float64)
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    a = lay(x)[0]
    b = lay(x)[0]
    stepper = lay.stepper()
    stepper(x[0])
lay.engine = "reference"
torch.testing.assert_close(a, lay(x)[0])
notes = [str(w.message) for w in seen if "native kernels unavailable" in str(w.message)]
print(len(notes), notes[0] if notes else "")
"""


def test_without_native_kernels_the_fallback_is_announced_once() -> None:
    res = run_child(FALLBACK, RNNKIT_NO_NATIVE="1")
    assert res.returncode == 0, res.stderr[-2000:]
    count, message = res.stdout.strip().split(" ", 1)
    assert count == "1", res.stdout  # once per process, not per call
    assert "RNNKIT_NO_NATIVE is set" in message and "RNNKIT_REQUIRE_NATIVE=1" in message


def test_require_native_turns_the_fallback_into_an_error() -> None:
    res = run_child(FALLBACK, RNNKIT_NO_NATIVE="1", RNNKIT_REQUIRE_NATIVE="1")
    assert res.returncode != 0
    assert "RNNKIT_REQUIRE_NATIVE is set" in res.stderr.strip().splitlines()[-1]
