"""Outputs written atomically (temporary file + rename): a crash or Ctrl-C never leaves half a file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: Path, obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as JSON through a temporary file, so a reader never sees half a file; arrays become lists."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        json.dumps(obj, indent=indent, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)),
        encoding="utf-8",
    )
    os.replace(tmp, path)


def save_figure(fig: Any, path: Path, dpi: int = 90) -> None:
    """Save a matplotlib figure atomically (PNG) and close it."""
    import matplotlib.pyplot as plt

    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    os.replace(tmp, path)
