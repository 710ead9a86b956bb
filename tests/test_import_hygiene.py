"""Importing rnnkit (every module of it) changes nothing process-wide, and plotting never touches pyplot."""

import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")

SNAPSHOT = """
import logging, os, random, sys, warnings
import numpy as np, torch
def snap():
    return {"env": dict(os.environ), "threads": torch.get_num_threads(),
            "interop": torch.get_num_interop_threads(), "dtype": str(torch.get_default_dtype()),
            "grad": torch.is_grad_enabled(), "deterministic": torch.are_deterministic_algorithms_enabled(),
            "anomaly": torch.is_anomaly_enabled(), "torch_rng": torch.get_rng_state().tolist(),
            "py_rng": random.getstate(), "np_rng": np.random.get_state()[1].tolist(),
            "root_handlers": [type(h).__name__ for h in logging.getLogger().handlers],
            "root_level": logging.getLogger().level, "warnings": [repr(f) for f in warnings.filters],
            "excepthook": repr(sys.excepthook), "recursion": sys.getrecursionlimit(),
            "np_print": np.get_printoptions(), "np_err": np.geterr(), "pyplot": "matplotlib.pyplot" in sys.modules}
"""

IMPORT_ALL = """
before = snap()
import importlib, pkgutil, rnnkit
for m in pkgutil.walk_packages(rnnkit.__path__, "rnnkit."):
    if not m.name.endswith("__main__"):
        importlib.import_module(m.name)
after = snap()
changed = sorted(k for k in before if before[k] != after[k])
print("changed:", changed)
"""

PLOT = """
import matplotlib
matplotlib.use("svg")  # a notebook's choice, say
from pathlib import Path
from rnnkit.metrics_log import plot_curves
rows = [{"step": s, "time": s / 10, "split": "train", "loss": 2 / s} for s in range(1, 9)]
plot_curves(rows, Path(sys.argv[1]) / "curves.png")
print("backend:", matplotlib.get_backend(), "pyplot:", "matplotlib.pyplot" in sys.modules)
"""


def python(code: str, *args: str) -> str:
    env = {"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_importing_every_module_changes_nothing_process_wide():
    assert python(SNAPSHOT + IMPORT_ALL).strip() == "changed: []"


def test_plots_leave_the_backend_and_pyplot_alone(tmp_path):
    out = python("import sys\n" + PLOT, str(tmp_path))
    assert out.strip() == "backend: svg pyplot: False"
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
