"""A run's metrics on disk: ``metrics.jsonl`` (appended as they come), ``metrics.csv`` and ``curves.png``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from rnnkit.atomic import atomic_file, save_figure, write_text


class MetricsLog:
    """Rows of metrics (dicts with ``step`` and ``split``) appended to ``out/metrics.jsonl``.

    ``keep_until``: rows with a larger step are dropped on open (a resume replays them exactly).
    """

    def __init__(self, out: Path, keep_until: int = 0, enabled: bool = True) -> None:
        self.out, self.enabled = Path(out), enabled
        self.rows: list[dict[str, Any]] = []
        self._file = None
        if not enabled:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "metrics.jsonl"
        if keep_until and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except ValueError:  # a line cut short by a crash
                    continue
                if row.get("step", 0) <= keep_until:
                    self.rows.append(row)
        write_text(path, "".join(json.dumps(r) + "\n" for r in self.rows))
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the whole run

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self._file is not None:
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()

    def write_csv(self) -> None:
        if not self.enabled:
            return
        columns: list[str] = []
        for row in self.rows:
            columns.extend(k for k in row if k not in columns)
        with atomic_file(self.out / "metrics.csv", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self.write_csv()


def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    """Train and validation loss against training time and step, as a PNG (matplotlib, no pyplot)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 2)
    for split, style in (("train", "-"), ("val", "o-")):
        pts = [r for r in rows if r.get("split") == split and "loss" in r]
        for ax, x in zip(axes, ("step", "time")):
            ax.plot([r[x] for r in pts], [r["loss"] for r in pts], style, label=split, markersize=3)
    for ax, x in zip(axes, ("step", "training time (s)")):
        ax.set_xlabel(x)
        ax.set_ylabel("loss (nats per unit)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
