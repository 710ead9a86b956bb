"""glibc malloc settings for training processes, and the measurement that justifies them.

With glibc's defaults, a freed block larger than the (dynamic) mmap threshold goes back to the OS and
the next step's allocation of the same size is page-faulted in again, zero-filled page by page. An RNN
training step allocates and frees the same large buffers every step (gate activations, gradients of
the weights), so it can spend much of its time in minor page faults. Two settings stop that:

* ``M_MMAP_MAX = 0`` — never serve an allocation with its own ``mmap`` (so ``free`` cannot ``munmap`` it);
* ``M_TRIM_THRESHOLD`` large — never give the top of the heap back to the OS.

The same two settings can come from the environment (``MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=100000000000``, read when the process starts) or from ``mallopt`` at run time
(:func:`tune_malloc`), which affects every later allocation and needs no re-exec. ``rnnkit``'s CLI calls
:func:`tune_malloc` when it starts (opt out with ``RNNKIT_MALLOC=default``); library users may call it
themselves. The cost: memory freed after the peak is kept by the process instead of returned to the OS.

``python -m rnnkit.allocator`` runs :func:`compare` (the numbers are in docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

log = logging.getLogger(__name__)

#: the environment form of the fix, as glibc reads it at process start
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameter numbers from glibc's <malloc.h>
_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: 2 GiB is "never" for our purposes
_state = "glibc defaults"


def glibc_version() -> str | None:
    """The running glibc's version, or None on other C libraries (musl, macOS, Windows)."""
    lib, version = platform.libc_ver()
    return version if lib == "glibc" else None


def tune_malloc() -> str:
    """Keep freed memory in the process (see the module docstring); returns what was done, in words.

    Does nothing when the user already chose malloc settings through the environment, when
    ``RNNKIT_MALLOC=default``, or when the C library is not glibc.
    """
    global _state
    if any(k in os.environ for k in MALLOC_ENV):
        _state = "environment: " + " ".join(f"{k}={os.environ[k]}" for k in MALLOC_ENV if k in os.environ)
    elif os.environ.get("RNNKIT_MALLOC", "") == "default":
        _state = "glibc defaults (RNNKIT_MALLOC=default)"
    elif glibc_version() is None:
        _state = "not glibc: left alone"
    else:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
        _state = f"mallopt(M_MMAP_MAX=0, M_TRIM_THRESHOLD={_TRIM_THRESHOLD})" if ok else "mallopt failed: defaults"
    return _state


def malloc_settings() -> dict[str, Any]:
    """What this process runs with: glibc version and the tuning in effect (recorded in benchmark output)."""
    return {"glibc": glibc_version(), "tuning": _state, "env": {k: os.environ.get(k) for k in MALLOC_ENV}}


# --------------------------------------------------------------------------------------------------
# The measurement: the same torch.nn.LSTM training step in fresh processes, with and without the fix.

#: name -> (input, hidden, batch, steps) of the torch.nn.LSTM training step measured by :func:`compare`
PROBES = {"lstm-1x512": (512, 512, 1, 35), "d2l": (28, 256, 32, 35)}
VARIANTS = ("default", "env", "mallopt")


def probe(variant: str, input_size: int, hidden: int, batch: int, steps: int, iters: int, threads: int) -> dict:
    """In THIS process: median seconds and minor page faults per ``torch.nn.LSTM`` training step."""
    import torch  # the import itself allocates; tune after it, as the CLI does

    if variant == "mallopt":
        tune_malloc()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(input_size, hidden)
    x = torch.randn(steps, batch, input_size)
    grad = torch.randn(steps, batch, hidden)

    def step() -> None:
        for p in lstm.parameters():
            p.grad = None
        out, _ = lstm(x)
        out.backward(grad)

    for _ in range(3):
        step()
    times = []
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
    return {"seconds": statistics.median(times), "minflt_per_step": faults / iters}


def compare(
    repeats: int = 5, iters: int = 20, threads: int = 0, probes: dict[str, tuple[int, int, int, int]] | None = None
) -> dict:
    """Run :func:`probe` in fresh subprocesses for every variant, interleaved, ``repeats`` times; medians.

    ``default`` runs with no MALLOC_* variables, ``env`` with :data:`MALLOC_ENV`, ``mallopt`` calls
    :func:`tune_malloc` after importing torch (what the CLI does). ``speedup`` is the median over
    repeats of default time / variant time, measured back to back.
    """
    base_env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV and k != "RNNKIT_MALLOC"}
    results: dict[str, Any] = {}
    for name, sizes in (PROBES if probes is None else probes).items():
        runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        for r in range(repeats):
            for v in VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]:  # rotate who goes first
                env = {**base_env, **(MALLOC_ENV if v == "env" else {})}
                args = [v, *map(str, sizes), str(iters), str(threads)]
                out = subprocess.run(
                    [sys.executable, "-m", "rnnkit.allocator", "--probe", *args],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                runs[v].append(json.loads(out.stdout.strip().splitlines()[-1]))
        entry: dict[str, Any] = {"input_hidden_batch_steps": list(sizes)}
        for v in VARIANTS:
            secs = [run["seconds"] for run in runs[v]]
            entry[v] = {
                "ms_per_step": 1e3 * statistics.median(secs),
                "minflt_per_step": statistics.median(run["minflt_per_step"] for run in runs[v]),
                "speedup": statistics.median(d["seconds"] / s for d, s in zip(runs["default"], secs)),
                "ms_per_step_runs": [1e3 * s for s in secs],
            }
        results[name] = entry
        log.info(
            "%s: %s",
            name,
            ", ".join(
                f"{v} {entry[v]['ms_per_step']:.2f} ms/step {entry[v]['minflt_per_step']:.0f} faults/step "
                f"({entry[v]['speedup']:.2f}x)"
                for v in VARIANTS
            ),
        )
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--probe"]:
        variant, *nums = argv[1:]
        f, h, b, t, iters, threads = map(int, nums)
        print(json.dumps(probe(variant, f, h, b, t, iters, threads)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    repeats = int(argv[0]) if argv else 5  # python -m rnnkit.allocator [repeats] [threads]
    threads = int(argv[1]) if len(argv) > 1 else 0
    print(json.dumps(compare(repeats=repeats, threads=threads), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
