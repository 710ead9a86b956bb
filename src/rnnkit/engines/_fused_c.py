"""Optional C pointwise kernels for the fused engine's LSTM and GRU steps, built on first use.

A time step of an LSTM is one GEMM and then ~8 element-wise passes (sigmoid, tanh, products, sums), each
a separate torch call with its own dispatch and its own sweep over memory; torch's float32 ``tanh`` is also
about 3× slower than its ``sigmoid`` on this CPU. Here each step's element-wise work — forward or
backward — is one loop in C that reads every input once, vectorised by the compiler (glibc's vector
``exp``/``tanh``). It is plain C over raw pointers called through :mod:`ctypes` (no torch headers), so it
compiles in about a second with the system's ``cc`` into a cache directory (``$RNNKIT_CACHE_DIR`` or
``~/.cache/rnnkit``). Where no compiler is found, or ``RNNKIT_NO_CEXT=1``, :func:`get` returns ``None``
and the kernels use their torch ops instead (same numbers to rounding; tests cover both).
Only the default activations (sigmoid gates, tanh) on contiguous CPU float32/float64 tensors use it.
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

_TEMPLATE = r"""
/* ---- {T} kernels. Every function works on one batch row of H features; `restrict` tells the compiler the
   rows do not overlap, so each loop is vectorised (glibc's vector exp/tanh). ---- */
static inline {T} sig_{S}({T} x) {{ return ({T})1 / (({T})1 + {EXP}(-x)); }}

/* LSTM forward: x = W_ih x_t + b and g = W_hh h_{{t-1}} (4H each, gate order i, f, g, o); g becomes the
   activated gates; c = f*cp + i*g; m = o*tanh(c). Peepholes wci, wcf, wco (zero vectors when absent). */
static void lstm_fwd_row_{S}(const {T} *restrict x, {T} *restrict g, const {T} *restrict cp, {T} *restrict c,
                             {T} *restrict m, const {T} *restrict wci, const {T} *restrict wcf,
                             const {T} *restrict wco, long H) {{
    for (long j = 0; j < H; j++) {{
        {T} i = sig_{S}(x[j] + g[j] + wci[j] * cp[j]);
        {T} f = sig_{S}(x[H + j] + g[H + j] + wcf[j] * cp[j]);
        {T} gv = {TANH}(x[2 * H + j] + g[2 * H + j]);
        {T} cv = f * cp[j] + i * gv;
        {T} o = sig_{S}(x[3 * H + j] + g[3 * H + j] + wco[j] * cv);
        g[j] = i; g[H + j] = f; g[2 * H + j] = gv; g[3 * H + j] = o; c[j] = cv; m[j] = o * {TANH}(cv);
    }}
}}
void lstm_fwd_{S}(const {T} *x, {T} *g, const {T} *cp, {T} *c, {T} *m, const {T} *wci, const {T} *wcf,
                  const {T} *wco, long B, long H) {{
    for (long b = 0; b < B; b++)
        lstm_fwd_row_{S}(x + b * 4 * H, g + b * 4 * H, cp + b * H, c + b * H, m + b * H, wci, wcf, wco, H);
}}

/* LSTM backward: g = activated gates, dm = dL/dm_t; dc holds dL/dc_t from later steps and becomes
   dL/dc_{{t-1}}; dp = the gradients of the four pre-activations. */
static void lstm_bwd_row_{S}(const {T} *restrict g, const {T} *restrict cp, const {T} *restrict c,
                             const {T} *restrict dm, {T} *restrict dc, {T} *restrict dp,
                             const {T} *restrict wci, const {T} *restrict wcf, const {T} *restrict wco, long H) {{
    for (long j = 0; j < H; j++) {{
        {T} i = g[j], f = g[H + j], gv = g[2 * H + j], o = g[3 * H + j], tc = {TANH}(c[j]);
        {T} dpo = dm[j] * tc * o * (({T})1 - o);
        {T} dcn = dc[j] + dm[j] * o * (({T})1 - tc * tc) + dpo * wco[j];
        {T} dpi = dcn * gv * i * (({T})1 - i), dpf = dcn * cp[j] * f * (({T})1 - f);
        dp[j] = dpi; dp[H + j] = dpf; dp[2 * H + j] = dcn * i * (({T})1 - gv * gv); dp[3 * H + j] = dpo;
        dc[j] = dcn * f + dpi * wci[j] + dpf * wcf[j];
    }}
}}
void lstm_bwd_{S}(const {T} *g, const {T} *cp, const {T} *c, const {T} *dm, {T} *dc, {T} *dp, const {T} *wci,
                  const {T} *wcf, const {T} *wco, long B, long H) {{
    for (long b = 0; b < B; b++)
        lstm_bwd_row_{S}(g + b * 4 * H, cp + b * H, c + b * H, dm + b * H, dc + b * H, dp + b * 4 * H,
                         wci, wcf, wco, H);
}}

/* GRU (reset after the product) forward: x = W_ih x_t + b_ih, hh = W_hh h + b_hh (3H each, order r, z, n);
   g = r, z, n; h = n + z * (hp - n). */
static void gru_fwd_row_{S}(const {T} *restrict x, const {T} *restrict hh, const {T} *restrict hp,
                            {T} *restrict g, {T} *restrict h, long H) {{
    for (long j = 0; j < H; j++) {{
        {T} r = sig_{S}(x[j] + hh[j]), z = sig_{S}(x[H + j] + hh[H + j]);
        {T} n = {TANH}(x[2 * H + j] + r * hh[2 * H + j]);
        g[j] = r; g[H + j] = z; g[2 * H + j] = n; h[j] = n + z * (hp[j] - n);
    }}
}}
void gru_fwd_{S}(const {T} *x, const {T} *hh, const {T} *hp, {T} *g, {T} *h, long B, long H) {{
    for (long b = 0; b < B; b++)
        gru_fwd_row_{S}(x + b * 3 * H, hh + b * 3 * H, hp + b * H, g + b * 3 * H, h + b * H, H);
}}

/* GRU backward: dh = dL/dh_t, hn = W_hn h + b_hn; dp = gradients of x's pre-activations, dhh = gradient
   of W_hh h + b_hh, dhp = the direct part z * dh of dL/dh_{{t-1}}. */
static void gru_bwd_row_{S}(const {T} *restrict g, const {T} *restrict hn, const {T} *restrict hp,
                            const {T} *restrict dh, {T} *restrict dp, {T} *restrict dhh, {T} *restrict dhp, long H) {{
    for (long j = 0; j < H; j++) {{
        {T} r = g[j], z = g[H + j], n = g[2 * H + j], d = dh[j];
        {T} dpn = (d - d * z) * (({T})1 - n * n);
        {T} dpr = dpn * hn[j] * r * (({T})1 - r), dpz = d * (hp[j] - n) * z * (({T})1 - z);
        dp[j] = dpr; dp[H + j] = dpz; dp[2 * H + j] = dpn;
        dhh[j] = dpr; dhh[H + j] = dpz; dhh[2 * H + j] = dpn * r; dhp[j] = d * z;
    }}
}}
void gru_bwd_{S}(const {T} *g, const {T} *hn, const {T} *hp, const {T} *dh, {T} *dp, {T} *dhh, {T} *dhp,
                 long B, long H) {{
    for (long b = 0; b < B; b++)
        gru_bwd_row_{S}(g + b * 3 * H, hn + b * H, hp + b * H, dh + b * H, dp + b * 3 * H, dhh + b * 3 * H,
                        dhp + b * H, H);
}}
"""
_SOURCE = "#include <math.h>\n" + "".join(
    _TEMPLATE.format(T=T, S=S, EXP=EXP, TANH=TANH)
    for T, S, EXP, TANH in (("float", "f32", "expf", "tanhf"), ("double", "f64", "exp", "tanh"))
)

# -ffast-math lets gcc call glibc's vector exp/tanh (libmvec, glibc >= 2.35 for tanh); it is used for compiling
# only, not for linking, so the library does not switch the whole process to flush-denormals (crtfastmath.o).
# The code has no comparisons, so finite-math assumptions cannot change a result (exp overflow -> sigmoid 0).
_CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fPIC"]
_LIB: ctypes.CDLL | None = None
_TRIED = False
_P = ctypes.c_void_p
_L = ctypes.c_long
_SIGNATURES = {
    "lstm_fwd": [_P] * 8 + [_L] * 2,
    "lstm_bwd": [_P] * 9 + [_L] * 2,
    "gru_fwd": [_P] * 5 + [_L] * 2,
    "gru_bwd": [_P] * 7 + [_L] * 2,
}


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


def _build() -> ctypes.CDLL | None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None or not sys.platform.startswith("linux"):
        log.debug("fused engine: no C compiler (or not Linux); using torch ops for the pointwise steps")
        return None
    key = hashlib.sha256((_SOURCE + " ".join(_CFLAGS) + cc + _cpu_id()).encode()).hexdigest()[:16]
    target = _cache_dir() / f"fused_{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            src, obj, so = Path(tmp, "k.c"), Path(tmp, "k.o"), Path(tmp, "k.so")
            src.write_text(_SOURCE)
            for cmd in (
                [cc, *_CFLAGS, "-c", str(src), "-o", str(obj)],
                [cc, "-shared", str(obj), "-o", str(so), "-lmvec", "-lm"],
            ):
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    log.debug(
                        "fused engine: building the C kernels failed (%s); using torch ops", res.stderr.strip()[:200]
                    )
                    return None
            os.replace(so, target)  # atomic: concurrent first uses never see a half-written library
    lib = ctypes.CDLL(str(target))
    for name, argtypes in _SIGNATURES.items():
        for suffix in ("f32", "f64"):
            fn = getattr(lib, f"{name}_{suffix}")
            fn.argtypes, fn.restype = argtypes, None
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
