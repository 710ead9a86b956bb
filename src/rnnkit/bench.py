"""``rnnkit bench``: how fast and how big every cell is on every engine, next to torch.nn and from-scratch code.

For each workload and cell it builds the contenders — ``torch.nn`` (oneDNN on CPU, cuDNN on CUDA), every
registered rnnkit engine that can run the cell, and the d2l-style loop of :mod:`rnnkit.scratch` — with
the same weights, then times them in ONE process, interleaved (:mod:`rnnkit.timing`), and reports
medians, tokens/s, the speed ratio to ``torch.nn`` (median of same-round ratios), the peak memory of a
training step, parameter counts and FLOPs per token (:mod:`rnnkit.costs`). torch has no peephole LSTM
or Jordan network: those cells are compared with ``torch.nn.LSTM`` of the same sizes; likewise MGU, minGRU and
the layer-norm GRU with ``torch.nn.GRU``, IndRNN with ``torch.nn.RNN`` and minLSTM and the layer-norm LSTM with
``torch.nn.LSTM`` (:data:`BASELINES`).

Modes: ``train`` = forward + backward to every parameter (gradients reset to None first, no optimizer
step), ``infer`` = forward under ``torch.no_grad``, ``generate`` = batch 1, one token per call with the
state carried (the sampling loop), reported per token.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rnnkit.atomic import write_json
from rnnkit.config import parse_config, to_dict
from rnnkit.rnn import CELL_NAMES, make_layer

log = logging.getLogger(__name__)

CELLS = CELL_NAMES
#: the torch.nn layer each cell is timed against: its own where torch has it, else the nearest one
BASELINES: dict[str, type[nn.RNNBase]] = {
    "rnn": nn.RNN,
    "gru": nn.GRU,
    "mgu": nn.GRU,
    "mingru": nn.GRU,
    "indrnn": nn.RNN,
    "lngru": nn.GRU,
}
#: name -> (input size, hidden, batch, steps, modes)
WORKLOADS: dict[str, tuple[int, int, int, int, tuple[str, ...]]] = {
    "d2l": (28, 256, 32, 35, ("train", "infer")),  # d2l's char LM: one-hot vocab 28, 35-step BPTT windows
    "latency": (28, 256, 1, 50, ("generate",)),  # sampling: batch 1, one token per call
    "large": (28, 1024, 64, 100, ("train", "infer")),
    "long": (28, 256, 32, 2000, ("train",)),  # long sequences: what backpropagation through time costs in memory
}
QUICK = (5, 8, 2, 6)  # input, hidden, batch, steps of --quick


@dataclass
class BenchConfig:
    workloads: tuple[str, ...] = ()
    """workloads to run, comma-separated: d2l, latency, large, long (none given: d2l,latency)"""
    cells: tuple[str, ...] = CELLS
    """cells to time: rnn, gru, lstm, peephole, jordan, mgu, indrnn, mingru, minlstm, lnlstm, lngru"""
    engines: tuple[str, ...] = ()
    """rnnkit engines to time (none given: every registered engine)"""
    scratch: bool = True
    """also time the d2l-style from-scratch loop (rnn, gru, lstm)"""
    hidden: int | None = None
    """override the hidden size of every workload"""
    batch: int | None = None
    """override the batch size of every workload except latency"""
    steps: int | None = None
    """override the number of time steps of every workload"""
    input_size: int | None = None
    """override the input size (one-hot vocabulary) of every workload"""
    repeats: int = 5
    """interleaved timing rounds; medians are over these"""
    warmup: int = 2
    """untimed calls of each contender before timing"""
    min_time: float = 0.05
    """seconds per timed sample: short calls are repeated within a sample"""
    memory: bool = True
    """measure the peak memory of one training step per contender"""
    threads: int = 0
    """torch intra-op threads (0: torch's default)"""
    dtype: Literal["float32", "float64"] = "float32"
    """floating point type of inputs and parameters"""
    autocast: Literal["none", "bf16"] = "none"
    """bf16: also time torch.nn and every rnnkit engine under torch.autocast(dtype=bfloat16) (rows marked bf16)"""
    regularisers: tuple[str, ...] = ()
    """also time each rnnkit engine's training with these layer options, one row per set: name=p, several joined
    by + (e.g. zoneout=0.1,weight_dropout=0.3,zoneout=0.1+input_dropout=0.2)"""
    device: str = "cpu"
    """cpu or cuda"""
    malloc_check: int = 0
    """rounds of the subprocess malloc comparison (rnnkit.allocator.compare); 0 skips it"""
    profile: bool = False
    """print torch.profiler's top operators of one training step per contender (where the time goes)"""
    quick: bool = False
    """tiny sizes, 2 rounds, no warm-up: checks that everything runs (numbers mean nothing)"""
    json: str | None = None
    """also write every measurement to this JSON file"""
    seed: int = 0
    """random seed of weights and inputs"""

    def __post_init__(self) -> None:
        for name in self.workloads:
            if name not in WORKLOADS:
                raise ValueError(f"unknown workload {name!r}: use some of {', '.join(WORKLOADS)}")
        for name in self.cells:
            if name not in CELLS:
                raise ValueError(f"unknown cell {name!r}: use some of {', '.join(CELLS)}")
        if not self.cells:
            raise ValueError("--cells is empty: name at least one of " + ", ".join(CELLS))
        from rnnkit.engines import ENGINES

        for name in self.engines:
            if name not in ENGINES:
                raise ValueError(f"unknown engine {name!r}: use some of {', '.join(ENGINES)}")
        for name in ("hidden", "batch", "steps", "input_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
        if self.repeats < 1 or self.warmup < 0 or self.min_time < 0 or self.threads < 0 or self.malloc_check < 0:
            raise ValueError("--repeats must be >= 1; --warmup, --min-time, --threads, --malloc-check >= 0")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"unknown device {self.device!r}: use cpu or cuda")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {self.device}: torch sees no CUDA device here; use --device cpu")
        if self.autocast not in ("none", "bf16"):
            raise ValueError(f"--autocast must be none or bf16, got {self.autocast!r}")
        if self.autocast == "bf16" and self.dtype != "float32":
            raise ValueError("--autocast bf16 runs float32 models under autocast: use --dtype float32")
        for spec in self.regularisers:
            regulariser_options(spec)  # one clear line for a bad set
        if self.json is not None and not Path(self.json).parent.is_dir():
            raise ValueError(f"--json {self.json}: directory {str(Path(self.json).parent)!r} does not exist")


@dataclass
class Contender:
    """One way of running one cell: ``forward(x, state) -> (output, state)`` plus what it owns."""

    name: str
    kind: str  # "torch.nn" | "rnnkit" | "scratch"
    forward: Callable[[Tensor, Any], tuple[Tensor, Any]]
    params: list[Tensor]
    cost: dict[str, int]
    step: Callable[[Tensor, Any], tuple[Tensor, Any]] | None = None  # one token (B, F) -> (output, state)
    only: str | None = None  # the one mode this contender is for (the stepper: "generate")
    autocast: bool = False  # runs under torch.autocast(dtype=torch.bfloat16)
    exact: bool = True  # computes its twin's function (regularised rows draw random masks: not compared)


def regulariser_options(spec: str) -> dict[str, float]:
    """``"zoneout=0.1+weight_dropout=0.3"`` -> the layer options; a ValueError naming the bad part."""
    from rnnkit.regularisers import Regularisers

    names = [f.name for f in dataclasses.fields(Regularisers)]
    options = {}
    for part in spec.split("+"):
        name, _, value = part.partition("=")
        if name.strip() not in names or not value:
            raise ValueError(f"--regularisers {spec!r}: expected name=p joined by +, names from {', '.join(names)}")
        try:
            options[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--regularisers {spec!r}: {value!r} is not a probability") from None
    Regularisers(**options)  # range checks
    return options


def workload_sizes(cfg: BenchConfig, name: str) -> tuple[int, int, int, int]:
    """(input, hidden, batch, steps) of workload ``name`` after the quick mode and the overrides."""
    F, H, B, T, _ = WORKLOADS[name]
    if cfg.quick:
        F, H, B, T = QUICK
        B = 1 if name == "latency" else B
    F = cfg.input_size or F
    H = cfg.hidden or H
    B = B if name == "latency" else (cfg.batch or B)
    T = cfg.steps or T
    return F, H, B, T


def rnnkit_layer(cell: str, F: int, H: int, engine: str, **factory: Any) -> nn.Module:
    return make_layer(cell, F, H, engine=engine, **factory)  # a Jordan layer feeds back H features too


def build_contenders(cfg: BenchConfig, cell: str, F: int, H: int, x: Tensor) -> tuple[list[Contender], list[str]]:
    """The contenders for ``cell`` (baseline first) and a note per engine that cannot run it."""
    from rnnkit.costs import layer_cost
    from rnnkit.engines import ENGINES
    from rnnkit.scratch import SCRATCH, scratch_params

    factory = {"device": x.device, "dtype": x.dtype}
    torch_cls = BASELINES.get(cell, nn.LSTM)
    base = torch_cls(F, H, **factory)
    base_cell = {nn.RNN: "rnn", nn.GRU: "gru"}.get(torch_cls, "lstm")
    base_cost = layer_cost(rnnkit_layer(base_cell, F, H, "reference", **factory)).as_dict()
    contenders = [Contender(f"torch.nn.{torch_cls.__name__}", "torch.nn", base, list(base.parameters()), base_cost)]
    notes = []
    weights = base.state_dict() if cell in ("rnn", "gru", "lstm") else None  # same numbers as torch.nn
    for engine in cfg.engines or tuple(ENGINES):
        layer = rnnkit_layer(cell, F, H, engine, **factory)
        if weights is None:
            weights = layer.state_dict()  # peephole, Jordan: every engine gets the first one's weights
        layer.load_state_dict(weights)
        reason = ENGINES[engine].unsupported(layer, x, False)
        if reason is None and getattr(ENGINES[engine], "interpreted", lambda x: False)(x):
            reason = "its kernels would run under Triton's CPU interpreter (for correctness tests, not speed)"
        if reason is not None:
            notes.append(f"{cell}: engine {engine!r} skipped: {reason}")
            continue
        cost = layer_cost(layer).as_dict()
        contenders.append(Contender(f"rnnkit[{engine}]", "rnnkit", layer, list(layer.parameters()), cost))
        for spec in cfg.regularisers:  # the same weights with regularisers on: training rows only
            try:
                regularised = rnnkit_layer(cell, F, H, engine, **factory, **regulariser_options(spec))
            except ValueError as e:
                notes.append(f"{cell}: {spec} skipped: {e}")
                continue
            regularised.load_state_dict(weights)
            reason = ENGINES[engine].unsupported(regularised, x, False)
            if reason is not None:
                notes.append(f"{cell}: engine {engine!r} with {spec} skipped: {reason}")
                continue
            contenders.append(Contender(f"rnnkit[{engine}] {spec}", "rnnkit", regularised,
                                        list(regularised.parameters()), cost, only="train", exact=False))  # fmt: skip
    if len(contenders) > 1 and hasattr(contenders[1].forward, "stepper"):
        layer = contenders[1].forward
        try:
            stepper = layer.stepper()  # the generation loop's one-token API (rnnkit.engines.fused.stepper)
        except ValueError as e:
            notes.append(f"{cell}: no stepper: {e}")
        else:

            def stepped(inp: Tensor, state: Any, stepper: Any = stepper) -> tuple[Tensor, Any]:
                outputs = []
                for x_t in inp:  # (B, F)
                    y, state = stepper(x_t, state)
                    outputs.append(y)
                return torch.stack(outputs), state

            params = list(layer.parameters())
            cost = layer_cost(layer).as_dict()
            contenders.append(Contender("rnnkit stepper", "rnnkit", stepped, params, cost, stepper, "generate"))
    if cfg.scratch and cell in SCRATCH:
        source = rnnkit_layer(cell, F, H, "reference", **factory)
        if cell != "gru":
            source.load_state_dict(base.state_dict())
        params = scratch_params(cell, source)
        fn = SCRATCH[cell]
        n_state = 2 if cell == "lstm" else 1

        def forward(inp: Tensor, state: Any, fn: Callable = fn, params: list[Tensor] = params, n: int = n_state):
            if state is None:  # d2l's init_state: zeros
                state = tuple(inp.new_zeros(inp.shape[1], H) for _ in range(n))
            return fn(inp, state, params)

        contenders.append(Contender("scratch (d2l)", "scratch", forward, params, base_cost))
    if cfg.autocast == "bf16":  # the same modules again under autocast: torch.nn's and every rnnkit engine's
        twins = [c for c in contenders if c.kind in ("torch.nn", "rnnkit") and c.step is None]  # regularised too
        contenders += [dataclasses.replace(c, name=f"{c.name} bf16", autocast=True) for c in twins]
    return contenders, notes


def mode_call(c: Contender, mode: str, x: Tensor, grad: Tensor) -> Callable[[], object]:
    """The zero-argument function that one timed call of contender ``c`` runs in ``mode``."""
    bf16 = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=c.autocast)
    if mode == "train":

        def train() -> None:
            for p in c.params:
                p.grad = None
            with bf16:
                out, _ = c.forward(x, None)
            out.backward(grad.to(out.dtype))

        return train
    if mode == "infer":

        def infer() -> None:
            with torch.no_grad(), bf16:
                c.forward(x, None)

        return infer
    # split outside the timed loop: a layer gets (1, B, F) per token, a stepper (B, F)
    step, tokens = (c.step, list(x.unbind(0))) if c.step is not None else (c.forward, list(x.split(1)))

    def generate() -> None:
        with torch.no_grad():
            state = None
            for x_t in tokens:
                _, state = step(x_t, state)

    return generate


def profile_table(call: Callable[[], object], rows: int = 8) -> str:
    """torch.profiler's top operators of one call, by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    call()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def run_workload(cfg: BenchConfig, name: str, device: torch.device, dtype: torch.dtype, bar: Any) -> dict[str, Any]:
    from rnnkit.timing import paired_ratio, peak_memory, time_interleaved

    F, H, B, T = workload_sizes(cfg, name)
    modes = WORKLOADS[name][4]
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for cell in cfg.cells:
        torch.manual_seed(cfg.seed)
        tokens = torch.randint(F, (T, B), device=device)
        x = nn.functional.one_hot(tokens, F).to(dtype)  # (T, B, F): one-hot characters, as in d2l
        contenders, skipped = build_contenders(cfg, cell, F, H, x)
        notes += skipped
        with torch.no_grad():  # contenders that compute the same function must agree: record how closely
            outputs = []
            for c in contenders:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=c.autocast):
                    outputs.append(c.forward(x, None)[0].to(dtype))
        # rnn, gru, lstm: rnnkit engines (and d2l's rnn, lstm) compute torch.nn's function; peephole and Jordan
        # have no torch.nn twin, so their engines are compared with the first rnnkit engine
        first_rnnkit = next((i for i, c in enumerate(contenders) if c.kind == "rnnkit"), 0)
        twin = 0 if cell in ("rnn", "gru", "lstm") else first_rnnkit
        for mode in modes:
            grad = torch.randn(T, B, H, device=device, dtype=dtype)
            active = [i for i, c in enumerate(contenders) if c.only in (None, mode)]
            calls = [mode_call(contenders[i], mode, x, grad) for i in active]
            samples = time_interleaved(
                calls, repeats=cfg.repeats, warmup=cfg.warmup, min_time=cfg.min_time, device=device,
                on_sample=bar.update,
            )  # fmt: skip
            for i, call, times in zip(active, calls, samples):
                c = contenders[i]
                per_token = mode == "generate"
                median = sorted(times)[len(times) // 2]
                row = {
                    "workload": name, "mode": mode, "cell": cell, "contender": c.name, "kind": c.kind,
                    "input_size": F, "hidden": H, "batch": B, "steps": T,
                    "seconds": median, "seconds_runs": times,
                    "us_per_token": 1e6 * median / T if per_token else None,
                    "tokens_per_s": B * T / median,
                    "speedup_vs_torch": paired_ratio(samples[0], times),
                    "speedup_runs": [b / t for b, t in zip(samples[0], times)],  # per round, for the spread
                    "params": sum(p.numel() for p in c.params),
                    "gflops": B * T * (c.cost["train_flops"] if mode == "train" else c.cost["flops"]) / median / 1e9,
                    **{f"{k}_per_token": v for k, v in c.cost.items() if k != "params"},
                    "peak_bytes": None,
                }  # fmt: skip
                if mode == "train" and cfg.memory:
                    for p in c.params:  # free last call's gradients outside the measured call
                        p.grad = None
                    row["peak_bytes"] = peak_memory(call, device)
                if i != twin and c.exact and (c.kind == "rnnkit" or c.kind == "scratch" and cell != "gru"):
                    row["agrees_with"] = contenders[twin].name
                    row["max_abs_diff"] = float((outputs[i] - outputs[twin]).abs().max())
                row["peak_fraction"] = row["gflops"] / cfg_peak(cfg, dtype) if cfg_peak(cfg, dtype) else None
                rows.append(row)
                if cfg.profile and mode == "train":
                    print(f"\n-- {name} {cell} {c.name}: one training step, top operators by self CPU time")
                    print(profile_table(call))
    return {"name": name, "sizes": {"input": F, "hidden": H, "batch": B, "steps": T}, "rows": rows, "notes": notes}


_PEAK: dict[Any, float] = {}


def cfg_peak(cfg: BenchConfig, dtype: torch.dtype) -> float | None:
    """The machine's measured peak GFLOP/s on the torch threads (a pure multiply-add loop in rnnkit's native
    kernels, :func:`torch.ops.rnnkit_c.peak_flops`), measured once per run; None on a GPU or without them."""
    from rnnkit.engines.fused import build

    if cfg.device != "cpu" or not build.available():
        return None
    key = (str(dtype), torch.get_num_threads())
    if key not in _PEAK:
        name = "float64" if dtype == torch.float64 else "float32"
        _PEAK[key] = max(torch.ops.rnnkit_c.peak_flops(name, 0.25) for _ in range(3)) / 1e9  # best of 3: noise
    return _PEAK[key]


def machine_info(device: torch.device) -> dict[str, Any]:
    from rnnkit.allocator import malloc_settings

    cpu, family, model, flags = platform.processor() or platform.machine(), None, None, ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            fields = dict(line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        cpu, family, model, flags = (
            fields.get("model name", cpu),
            fields.get("cpu family"),
            fields.get("model"),
            fields.get("flags", ""),
        )
    except OSError:
        pass
    from rnnkit.engines.fused import build

    info = {
        "cpu": cpu,
        "cpu_family": family,
        "cpu_model": model,
        "cpu_features": [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags.split()],
        "kernels": build.isa(),
        "peak_gflops_float32": cfg_peak(BenchConfig(), torch.float32) if device.type == "cpu" else None,
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "malloc": malloc_settings(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cudnn"] = torch.backends.cudnn.version()
    return info


MODE_TITLES = {
    "train": "training (forward + backward)",
    "infer": "inference (no_grad forward)",
    "generate": "generation (batch 1, one token per call)",
}


def format_tables(result: dict[str, Any]) -> str:
    """The human-readable tables of :func:`run`'s result."""
    out = []
    for w in result["workloads"]:
        s = w["sizes"]
        for mode in WORKLOADS[w["name"]][4]:
            rows = [r for r in w["rows"] if r["mode"] == mode]
            if not rows:
                continue
            out.append(
                f"\n{w['name']} — {MODE_TITLES[mode]}: input {s['input']}, hidden {s['hidden']}, batch {s['batch']},"
                f" {s['steps']} steps; median of {len(rows[0]['seconds_runs'])} interleaved rounds"
            )
            time_head = "µs/token" if mode == "generate" else "ms/call"
            wide = max(24, *(len(r["contender"]) + 1 for r in rows))  # regularised rows have long names
            head = f"{'cell':<9}{'contender':<{wide}}{time_head:>10}{'tokens/s':>12}{'× torch.nn':>12}"
            head += f"{'peak MiB':>10}" if mode == "train" else ""
            head += f"{'params':>10}{'MFLOP/token':>13}{'GFLOP/s':>9}{'% peak':>8}"
            out.append(head)
            for r in rows:
                t = r["us_per_token"] if mode == "generate" else 1e3 * r["seconds"]
                line = f"{r['cell']:<9}{r['contender']:<{wide}}{t:>10.3f}{r['tokens_per_s']:>12,.0f}"
                line += f"{r['speedup_vs_torch']:>11.2f}×"
                if mode == "train":
                    line += f"{r['peak_bytes'] / 2**20:>10.1f}" if r["peak_bytes"] is not None else f"{'-':>10}"
                flops = r["train_flops_per_token"] if mode == "train" else r["flops_per_token"]
                line += f"{r['params']:>10,}{flops / 1e6:>13.3f}{r['gflops']:>9.1f}"
                line += f"{100 * r['peak_fraction']:>7.1f}%" if r.get("peak_fraction") else f"{'-':>8}"
                out.append(line)
        out += [f"note: {n}" for n in w["notes"]]
    m = result["machine"]
    if "gpu" in m:
        out.append(f"\nGPU: {m['gpu']}, cuDNN {m['cudnn']}")
    features = ", ".join(m.get("cpu_features", []))
    out.append(
        f"\n{m['cpu']} (family {m.get('cpu_family')}, model {m.get('cpu_model')}; {features}), "
        f"{m['logical_cpus']} logical CPUs, {m['torch_threads']} torch threads, torch {m['torch']}, "
        f"malloc: {m['malloc']['tuning']}, load {m['load_average_1m']:.1f}, {m['date_utc']}"
    )
    if m.get("peak_gflops_float32"):
        out.append(
            f"rnnkit kernels: {m['kernels']}; measured peak {m['peak_gflops_float32']:.0f} GFLOP/s (float32, "
            "a pure multiply-add loop on the torch threads): % peak = GFLOP/s of the row over it."
        )
    out.append("× torch.nn: median over rounds of (torch.nn time / contender time); > 1 is faster than torch.nn.")
    out.append("MFLOP/token: forward (training rows: forward + backward ≈ 3 × forward), see rnnkit.costs.")
    if result.get("malloc_check"):
        out.append("\nmalloc check (torch.nn.LSTM training step, fresh process per run; see rnnkit.allocator):")
        for probe, e in result["malloc_check"].items():
            for v in ("default", "env", "mallopt"):
                out.append(
                    f"  {probe:<12}{v:<9}{e[v]['ms_per_step']:>9.2f} ms/step {e[v]['minflt_per_step']:>8.0f} "
                    f"minor faults/step  {e[v]['speedup']:.2f}× vs default"
                )
    return "\n".join(out)


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the benchmark described by ``cfg``; returns everything measured (what ``--json`` writes)."""
    from tqdm import tqdm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device, dtype = torch.device(cfg.device), getattr(torch, cfg.dtype)
    names = cfg.workloads or ("d2l", "latency")
    if cfg.quick:
        cfg = dataclasses.replace(cfg, repeats=min(cfg.repeats, 2), warmup=0, min_time=0.0)
    from rnnkit.engines import ENGINES

    n_contenders = len(cfg.engines or ENGINES) * (1 + len(cfg.regularisers)) + 1 + int(cfg.scratch)
    total = sum(len(WORKLOADS[n][4]) for n in names) * len(cfg.cells) * n_contenders * cfg.repeats
    workloads = []
    with tqdm(total=total, desc="rnnkit bench", unit="sample", file=sys.stderr, leave=False, disable=None) as bar:
        for name in names:
            workloads.append(run_workload(cfg, name, device, dtype, bar))
    result: dict[str, Any] = {"config": to_dict(cfg), "machine": machine_info(device), "workloads": workloads}
    result["command"] = "rnnkit bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else None
    if cfg.malloc_check:
        from rnnkit.allocator import compare

        result["malloc_check"] = compare(repeats=cfg.malloc_check, threads=cfg.threads)
    return result


def main(argv: list[str] | None = None) -> int:
    cfg, _ = parse_config(
        BenchConfig,
        argv,
        prog="rnnkit bench",
        description="Time training, inference and generation of every cell on every engine against torch.nn "
        "and a from-scratch loop, interleaved in one process; report medians, ratios, memory, params, FLOPs.",
    )
    try:
        result = run(cfg)
    except (ValueError, TypeError, RuntimeError) as e:
        print(f"rnnkit bench: error: {e}", file=sys.stderr)
        return 1
    print(format_tables(result))
    if cfg.json:
        write_json(Path(cfg.json), result)  # atomic: an interrupted run never leaves half a file
        log.info("wrote %s", cfg.json)
    return 0
