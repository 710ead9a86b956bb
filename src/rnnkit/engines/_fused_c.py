"""rnnkit's C kernels (``csrc/``), built on first use and called through :mod:`ctypes`.

``csrc/kernels.c`` is plain C over raw pointers (no torch headers), so it compiles in a few seconds with the
system's ``cc`` into a cache directory — ``$RNNKIT_CACHE_DIR`` or ``~/.cache/rnnkit`` — keyed by the
sources, flags, compiler and CPU (it is built with ``-march=native``). It holds a threaded register-tiled
GEMM, whole-sequence LSTM, GRU, Elman and Jordan passes (forward and backward; driven by
:mod:`rnnkit.engines._fused_seq`), single-step LSTM/GRU pointwise updates (the per-step kernels of
:mod:`rnnkit.engines._fused_gated`) and dropout (:mod:`rnnkit.dropout`). Threads come from OpenMP, the
runtime torch already loaded.

Where no compiler is found, or ``RNNKIT_NO_CEXT=1``, :func:`get` returns ``None`` and the engine uses
torch ops instead (same numbers to rounding; tests cover both).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)

_CSRC = Path(__file__).with_name("csrc")
# No -ffast-math: the vector exp relies on exact rounding steps that it would fold away.
_CFLAGS = ["-O3", "-march=native", "-fPIC", "-fopenmp", "-I", str(_CSRC)]
_LIB: ctypes.CDLL | None = None
_TRIED = False
_P = ctypes.c_void_p
_L = ctypes.c_long
_I = ctypes.c_int
#: exported function -> argument types ("real": float for _f32, double for _f64); each exists as _f32 and _f64
_SIGNATURES = {
    "lstm_fwd": [_P] * 8 + [_L] * 2,
    "lstm_bwd": [_P] * 9 + [_L] * 2,
    "gru_fwd": [_P] * 5 + [_L] * 2,
    "gru_bwd": [_P] * 7 + [_L] * 2,
    "rk_gemm": [_L] * 3 + [_P, _L, _L, _P, _L, _L, _P, _L, "real", _P, _I],
    "rk_pack_gates": [_L] * 4 + [_P, _P, _I],
    "rk_lstm_fwd": [_L] * 4 + [_P] * 11 + [_I],
    "rk_lstm_bwd": [_L] * 3 + [_P] * 3 + [_L] + [_P] * 9 + [_I, _I],
    "rk_gru_fwd": [_L] * 4 + [_P] * 10 + [_I],
    "rk_gru_bwd": [_L] * 3 + [_P] * 4 + [_L] + [_P] * 8 + [_I, _I],
    "rk_elman_fwd": [_L] * 4 + [_I] + [_P] * 7 + [_I],
    "rk_elman_bwd": [_L] * 3 + [_I] + [_P] * 2 + [_L] + [_P] * 6 + [_I, _I],
    "rk_jordan_fwd": [_L] * 5 + [_I] * 2 + [_P] * 10 + [_I],
    "rk_jordan_bwd": [_L] * 4 + [_I] * 2 + [_P] * 3 + [_L, _P, _L] + [_P] * 9 + [_I, _I],
    "rk_dropout": [_L, _P, _P, ctypes.c_uint64, ctypes.c_double, _I],
}
_RETURNS_INT = {"rk_gemm"}


def _cache_dir() -> Path:
    return Path(os.environ.get("RNNKIT_CACHE_DIR") or Path.home() / ".cache" / "rnnkit")


def _cpu_id() -> str:
    """The CPU's model and feature flags: ``-march=native`` code built on one CPU may crash on another,
    so a cache shared between machines (a network home directory) must key the library by CPU too."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))]
    except OSError:
        return platform.machine()
    return platform.machine() + "".join(dict.fromkeys(lines))


def _sources() -> str:
    return "".join(p.read_text() for p in sorted(_CSRC.glob("*.[ch]")))


def _build() -> ctypes.CDLL | None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None or not sys.platform.startswith("linux"):
        log.debug("fused engine: no C compiler (or not Linux); using torch ops")
        return None
    key = hashlib.sha256((_sources() + " ".join(_CFLAGS) + cc + _cpu_id()).encode()).hexdigest()[:16]
    target = _cache_dir() / f"fused_{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            so = Path(tmp, "k.so")
            # a compiler without OpenMP still builds the kernels, single-threaded
            for flags in (_CFLAGS, [f for f in _CFLAGS if f != "-fopenmp"]):
                cmd = [cc, *flags, "-shared", str(_CSRC / "kernels.c"), "-o", str(so), "-lm"]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode == 0:
                    break
                log.debug("fused engine: building the C kernels failed (%s)", res.stderr.strip()[:300])
            else:
                return None  # the engine uses torch ops
            os.replace(so, target)  # atomic: concurrent first uses never see a half-written library
    lib = ctypes.CDLL(str(target))
    for name, argtypes in _SIGNATURES.items():
        for suffix, real in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
            fn = getattr(lib, f"{name}_{suffix}")
            fn.argtypes = [real if a == "real" else a for a in argtypes]
            fn.restype = ctypes.c_int if name in _RETURNS_INT else None
    return lib


def get() -> ctypes.CDLL | None:
    """The compiled kernels, building them on first call; ``None`` where unavailable or disabled."""
    global _LIB, _TRIED
    if os.environ.get("RNNKIT_NO_CEXT"):
        return None
    if not _TRIED:
        _TRIED = True
        try:
            _LIB = _build()
        except OSError as err:  # unwritable cache, failed load: the torch-op path still works
            log.debug("fused engine: C kernels unavailable (%s); using torch ops", err)
            _LIB = None
    return _LIB


def usable(x: Tensor) -> bool:
    """Whether the C kernels can run on tensors like ``x`` (CPU float32/float64) and are built."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and get() is not None


def fn(name: str, x: Tensor):
    """The C function ``name`` for ``x``'s dtype."""
    return getattr(_LIB, f"{name}_{'f32' if x.dtype == torch.float32 else 'f64'}")


def ptr(t: Tensor | None) -> int | None:
    """Raw pointer of a contiguous tensor (``None`` -> NULL)."""
    if t is None:
        return None
    assert t.is_contiguous()
    return t.data_ptr()
