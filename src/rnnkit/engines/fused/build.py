"""Build and load the fused engine's native kernels: ``csrc/`` compiled into torch operators on first use.

The kernels are plain C (``kernels.c``), compiled once per instruction set — AVX-512, AVX2 and a portable
build (SSE2 on x86, NEON on Arm) — and linked with ``ops.cpp``, which registers them as torch operators
(namespace ``rnnkit_c``) through :func:`torch.utils.cpp_extension.load`. Which instruction set runs is
decided at load time from the CPU (``RNNKIT_ISA=avx512|avx2|generic`` forces one), so one build serves
every machine that shares the cache — no ``-march=native``. The library is cached under
``$RNNKIT_CACHE_DIR`` (default ``~/.cache/rnnkit``), keyed by the sources, torch, Python and the compiler.

Where it cannot be built (no compiler, no ninja, ``RNNKIT_NO_NATIVE=1``) the fused engine runs the
torch-op reference loop instead; :func:`announce_fallback` says so once, as a warning naming the reason,
and ``RNNKIT_REQUIRE_NATIVE=1`` turns that into an error (CI sets it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch

log = logging.getLogger(__name__)

CSRC = Path(__file__).with_name("csrc")
#: instruction set -> (extra compiler flags, vector bytes); x86 builds all three, other machines the last
_X86_ISAS = {
    "avx512": (["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma"], 64),
    "avx2": (["-mavx2", "-mfma"], 32),
}
# No -ffast-math: the vector exp relies on exact rounding steps that it would fold away.
_CFLAGS = ["-O3", "-fPIC", "-std=gnu11"]

_state: dict[str, str | None] = {}  # "reason": why the native kernels are unavailable (None: loaded)
_announced = False


def _cache_dir() -> Path:
    return Path(os.environ.get("RNNKIT_CACHE_DIR") or Path.home() / ".cache" / "rnnkit")


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _compile_kernels(cc: str, out: Path) -> tuple[list[str], list[str], bool]:
    """Compile kernels.c once per instruction set into ``out``: (object files, defines for ops.cpp, openmp)."""
    isas = {**(_X86_ISAS if _is_x86() else {}), "generic": ([], 16)}
    for openmp in (["-fopenmp"], []):  # a compiler without OpenMP still builds the kernels, single-threaded
        objs, defines, procs = [], [], []
        for isa, (flags, vbytes) in isas.items():
            obj = out / f"kernels_{isa}.o"
            cmd = [cc, *_CFLAGS, *openmp, *flags, f"-DRK_ISA={isa}", f"-DRK_VBYTES={vbytes}", "-I", str(CSRC)]
            cmd += ["-c", str(CSRC / "kernels.c"), "-o", str(obj)]
            procs.append((isa, obj, subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)))
        for isa, obj, proc in procs:  # the variants compile side by side
            _, err = proc.communicate()
            if proc.returncode == 0:
                objs.append(str(obj))
                defines.append(f"-DRK_HAVE_{isa.upper()}")
            elif isa == "generic":
                log.debug("rnnkit: compiling the kernels failed: %s", err.strip()[:300])
        if any(o.endswith("kernels_generic.o") for o in objs):
            return objs, [d for d in defines if d != "-DRK_HAVE_GENERIC"], bool(openmp)
    raise RuntimeError(f"{cc} could not compile rnnkit's kernels")


def _key(cc: str) -> str:
    sources = "".join(p.read_text() for p in sorted(CSRC.glob("*.[ch]*")))
    parts = [sources, " ".join(_CFLAGS), cc, torch.__version__, sys.version, platform.machine(), sys.platform]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _build() -> None:
    """Compile (or reuse) and load the library; raises with a short reason where that is impossible."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise RuntimeError("no C compiler found (install gcc or clang, or set CC)")
    from torch.utils import cpp_extension

    try:  # ninja from PyPI lives beside the interpreter, which need not be on PATH
        import ninja

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    except ImportError:
        pass
    key = _key(cc)
    where = _cache_dir() / f"native_{key}"
    where.mkdir(parents=True, exist_ok=True)
    stamp = where / "kernels.ok"
    if stamp.exists():
        objs, defines, openmp = stamp.read_text().split("\n")[:3]
        objs_l, defines_l = objs.split(), defines.split()
        use_openmp = openmp == "1"
    else:
        with tempfile.TemporaryDirectory(dir=where) as tmp:
            objs_l, defines_l, use_openmp = _compile_kernels(cc, Path(tmp))
            final = []
            for o in objs_l:  # atomic: a concurrent first use never sees a half-written object
                os.replace(o, where / Path(o).name)
                final.append(str(where / Path(o).name))
            objs_l = final
        stamp.write_text(f"{' '.join(objs_l)}\n{' '.join(defines_l)}\n{int(use_openmp)}\n")
    omp = ["-fopenmp"] if use_openmp else []
    cpp_extension.load(
        name=f"rnnkit_native_{key}",
        sources=[str(CSRC / "ops.cpp")],
        extra_cflags=["-O2", *defines_l, *omp],
        extra_ldflags=[*objs_l, *omp],
        extra_include_paths=[str(CSRC)],
        build_directory=str(where),
        is_python_module=False,
        verbose=False,
    )
    isa = torch.ops.rnnkit_c.select_isa(os.environ.get("RNNKIT_ISA", ""))
    log.debug("rnnkit: native kernels loaded (%s)", isa)


@torch.compiler.assume_constant_result  # under torch.compile, found out eagerly (the build does file I/O)
def unavailable() -> str | None:
    """``None`` once the native kernels are loaded (building them on the first call), else why not.
    A constant for torch.compile: a compiled model's first call may be the process's first use of rnnkit."""
    if "reason" not in _state:
        if os.environ.get("RNNKIT_NO_NATIVE"):
            _state["reason"] = "RNNKIT_NO_NATIVE is set"
        else:
            try:
                _build()
                _state["reason"] = None
            except Exception as err:  # no compiler, no ninja, a failed build or load: the torch ops still work
                _state["reason"] = f"building them failed: {str(err).strip().splitlines()[-1][:200]}"
        if _state["reason"] is not None and os.environ.get("RNNKIT_REQUIRE_NATIVE"):
            reason = _state["reason"]
            raise RuntimeError(f"rnnkit: native kernels unavailable ({reason}) and RNNKIT_REQUIRE_NATIVE is set")
    return _state["reason"]


def available() -> bool:
    return unavailable() is None


def isa() -> str | None:
    """The instruction set the loaded kernels run (``"avx512 (vectors of 64 bytes)"``…), or ``None``."""
    return torch.ops.rnnkit_c.info() if available() else None


def announce_fallback(what: str) -> None:
    """Warn once per process that ``what`` runs the slower torch-op path because the kernels are missing."""
    global _announced
    reason = unavailable()
    if reason is None or _announced:
        return
    _announced = True
    warnings.warn(
        f"rnnkit: native kernels unavailable ({reason}); {what} runs on the slower torch-op loop. "
        "Set RNNKIT_REQUIRE_NATIVE=1 to make this an error.",
        RuntimeWarning,
        stacklevel=3,
    )
