"""Child process of test_fuzz_api: Hypothesis draws layer configurations, shapes, dtypes, lengths and states,
runs each through every engine by the public layer API and checks it against the reference engine.

    python _fuzz_api_worker.py CASES SEED CASEFILE

Before each case its description is written to CASEFILE, so that if the process dies in native code
(a segfault, an abort) the parent can say which case killed it. A case passes when the engine gives the
reference engine's outputs, final states, gates and gradients, or when both refuse the call with a
one-line ValueError/TypeError (an engine may also decline a call it does not support, by name, in one
line). The process prints ``ran N cases`` and exits 0, or prints the failing case and exits 1.
"""

from __future__ import annotations

import os
import sys

import torch
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

import rnnkit

ENGINES = ("reference", "torch", "fused", "auto")
CELLS = ("rnn_tanh", "rnn_relu", "gru", "gru_reset_before", "lstm", "lstm_proj", "peephole", "peephole_proj", "jordan")
MISTAKES = (None, None, None, None, "feature_size", "rank", "int_input", "half_input", "state_shape", "lengths")


@st.composite
def cases(draw: st.DrawFn) -> dict:
    c = {
        "cell": draw(st.sampled_from(CELLS)),
        "engine": draw(st.sampled_from(ENGINES)),
        "input_size": draw(st.integers(1, 5)),
        "hidden_size": draw(st.integers(1, 5)),
        "num_layers": draw(st.integers(1, 3)),
        "bidirectional": draw(st.booleans()),
        "bias": draw(st.booleans()),
        "batch_first": draw(st.booleans()),
        "dtype": draw(st.sampled_from(("float64", "float32"))),
        "T": draw(st.integers(1, 6)),
        "B": draw(st.integers(1, 4)),
        "unbatched": draw(st.integers(0, 5)) == 0,
        "state": draw(st.sampled_from(("none", "given"))),
        "return_gates": draw(st.booleans()),
        "backward": draw(st.booleans()),
        "non_contiguous": draw(st.booleans()),
        "mistake": draw(st.sampled_from(MISTAKES)),
        "stepper": draw(st.booleans()),  # also run it one token at a time through layer.stepper()
        "seed": draw(st.integers(0, 2**31 - 1)),
    }
    if not c["unbatched"] and draw(st.booleans()):
        c["lengths"] = draw(st.lists(st.integers(1, c["T"]), min_size=c["B"], max_size=c["B"]))
    return c


def build(c: dict) -> rnnkit.Recurrent:
    dtype = getattr(torch, c["dtype"])
    common = {"num_layers": c["num_layers"], "bias": c["bias"], "batch_first": c["batch_first"],
              "bidirectional": c["bidirectional"], "dtype": dtype}  # fmt: skip
    I, H, cell = c["input_size"], c["hidden_size"], c["cell"]
    torch.manual_seed(c["seed"])
    if cell.startswith("rnn"):
        return rnnkit.RNN(I, H, nonlinearity=cell[4:], **common)
    if cell.startswith("gru"):
        return rnnkit.GRU(I, H, reset_after=cell == "gru", **common)
    if cell in ("lstm", "lstm_proj", "peephole", "peephole_proj"):
        cls = rnnkit.LSTM if cell.startswith("lstm") else rnnkit.PeepholeLSTM
        return cls(I, H, proj_size=max(1, H - 1) if cell.endswith("proj") and H > 1 else 0, **common)
    return rnnkit.Jordan(I, H, max(1, H - 1), **common)


def inputs(c: dict, layer: rnnkit.Recurrent) -> tuple[torch.Tensor, object, object]:
    """(input, hx, lengths) for the case, with its deliberate mistake if it has one."""
    g = torch.Generator().manual_seed(c["seed"])
    dtype = getattr(torch, c["dtype"])
    T, B, F = c["T"], c["B"], c["input_size"] + (c["mistake"] == "feature_size")
    shape = (T, F) if c["unbatched"] else ((B, T, F) if c["batch_first"] else (T, B, F))
    if c["non_contiguous"]:  # same values, strided memory
        x = torch.randn(*shape[:-1], 2 * F, generator=g, dtype=dtype)[..., ::2]
    else:
        x = torch.randn(*shape, generator=g, dtype=dtype)
    if c["mistake"] == "rank":
        x = x.unsqueeze(0)
    elif c["mistake"] == "int_input":
        x = (x * 3).long()
    elif c["mistake"] == "half_input":
        x = x.half()
    hx = None
    if c["state"] == "given" or c["mistake"] == "state_shape":
        LD = c["num_layers"] * (2 if c["bidirectional"] else 1)
        if isinstance(layer, rnnkit.LSTM):
            sizes = [layer.proj_size or c["hidden_size"], c["hidden_size"]]
        elif isinstance(layer, rnnkit.Jordan):
            sizes = [max(1, c["hidden_size"] - 1)]
        else:
            sizes = [c["hidden_size"]]
        bad = c["mistake"] == "state_shape"
        states = [torch.randn(*((LD,) if c["unbatched"] else (LD, B)), s + bad, generator=g, dtype=dtype)
                  for s in sizes]  # fmt: skip
        hx = states[0] if len(states) == 1 else tuple(states)
    lengths = c.get("lengths")
    if c["mistake"] == "lengths":
        lengths = [T + 1] * B if c["unbatched"] or lengths is None else [*lengths[:-1], 0]
    return x, hx, lengths


def call(layer: rnnkit.Recurrent, engine: str, c: dict) -> tuple[object, list[torch.Tensor]]:
    """Run the case on ``engine``; returns (outputs, gradients) or the exception it raised."""
    layer.engine = engine
    x, hx, lengths = inputs(c, layer)
    if c["backward"] and x.is_floating_point():
        x.requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    try:
        out = layer(x, hx, lengths=torch.tensor(lengths) if lengths is not None else None,
                    return_gates=c["return_gates"])  # fmt: skip
    except (ValueError, TypeError) as e:
        return e, []
    flat = [out[0], *(out[1] if isinstance(out[1], tuple) else (out[1],))]
    if c["return_gates"]:
        flat += [out[2][k] for k in sorted(out[2])]
    grads: list[torch.Tensor] = []
    if c["backward"] and x.requires_grad:
        g = torch.Generator().manual_seed(c["seed"] + 1)
        loss = sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum() for t in flat[:3])
        loss.backward()
        grads = [x.grad] + [p.grad if p.grad is not None else torch.zeros_like(p) for p in layer.parameters()]
    return [t.detach() for t in flat], grads


COUNT = {"cases": 0}
#: a self-test of the crash report: die in native code (SIGSEGV) on this case number
CRASH_AT = int(os.environ.get("RNNKIT_FUZZ_CRASH_AT", "0"))


def check(c: dict) -> None:
    with open(CASEFILE, "w") as f:  # written before the case runs: a native crash leaves it behind
        f.write(repr(c))
    COUNT["cases"] += 1
    if COUNT["cases"] == CRASH_AT:
        import ctypes

        ctypes.string_at(0)  # a real segfault, as a broken kernel would cause
    layer = build(c)
    ref, ref_grads = call(layer, "reference", c)
    got, got_grads = call(layer, c["engine"], c)
    for result in (ref, got):
        if isinstance(result, Exception):
            assert "\n" not in str(result), f"error message spans lines: {result}"
    if isinstance(ref, Exception):
        assert isinstance(got, (ValueError, TypeError)), f"reference refused ({ref}) but {c['engine']} ran"
        return
    if isinstance(got, Exception):
        assert c["engine"] in ("torch", "fused") and "cannot run this call" in str(got), f"{c['engine']}: {got}"
        return
    tol = {"rtol": 1e-9, "atol": 1e-10} if c["dtype"] == "float64" else {"rtol": 1e-4, "atol": 1e-5}
    assert len(ref) == len(got)
    for k, (a, b) in enumerate(zip(ref, got)):
        assert a.shape == b.shape and a.dtype == b.dtype, f"value {k}: {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
        assert torch.allclose(a, b, **tol), f"value {k} differs by {(a - b).abs().max():.3g}"
    for k, (a, b) in enumerate(zip(ref_grads, got_grads)):
        assert torch.allclose(a, b, **tol), f"gradient {k} differs by {(a - b).abs().max():.3g}"
    if c["stepper"] and c["mistake"] is None and not c["bidirectional"] and c.get("lengths") is None:
        check_stepper(layer, c, ref, tol)


def check_stepper(layer: rnnkit.Recurrent, c: dict, ref: list[torch.Tensor], tol: dict) -> None:
    """``layer.stepper()`` fed one token at a time gives the reference's outputs and final state."""
    x, hx, _ = inputs(c, layer)
    if c["batch_first"] and not c["unbatched"]:
        x = x.transpose(0, 1)
    stepper = layer.stepper()
    state, outs = hx, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            y, state = stepper(x[t], state)
            outs.append(y)
    out = ref[0].transpose(0, 1) if c["batch_first"] and not c["unbatched"] else ref[0]
    got = torch.stack(outs)
    assert got.shape == out.shape, f"stepper output {tuple(got.shape)} vs {tuple(out.shape)}"
    assert torch.allclose(got, out, **tol), f"stepper output differs by {(got - out).abs().max():.3g}"
    final = state if isinstance(state, tuple) else (state,)
    for k, (a, b) in enumerate(zip(final, ref[1 : 1 + len(final)])):
        assert torch.allclose(a, b, **tol), f"stepper state {k} differs by {(a - b).abs().max():.3g}"


if __name__ == "__main__":
    n_cases, fuzz_seed, CASEFILE = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(1)
    run = seed(fuzz_seed)(
        settings(max_examples=n_cases, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                 phases=(Phase.generate, Phase.shrink), print_blob=True)(given(cases())(check))
    )  # fmt: skip
    run()
    print(f"ran {COUNT['cases']} cases")
    sys.stdout.flush()
    os._exit(0)
