"""``rnnkit classify``: sequence classification (many→one) with the one training loop, scored on a held-out,
stratified test split: accuracy, confusion matrix, and the majority-class and logistic-regression baselines.

    rnnkit classify                                         # digits read row by row, GRU, last-state readout
    rnnkit classify --data.read columns --data.trim true    # variable lengths (2-8 columns), run with lengths=
    rnnkit classify --model.bidirectional true --model.readout mean --model.cell lstm --out runs/bi

Outputs in ``--out``: the training loop's checkpoints and curves, ``report.json`` and ``confusion.png``.
In Python: ``run_classify(ClassifyRunConfig(...))``.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnkit import runner
from rnnkit.atomic import save_figure, write_json
from rnnkit.config import to_dict
from rnnkit.runner import RunConfig, Setup, run
from rnnkit.tasks.classify import ClassifyDataConfig, ClassifyModelConfig

log = logging.getLogger("rnnkit.classify")


@dataclass
class ClassifyRunConfig(RunConfig):
    """Everything ``rnnkit classify`` needs: the data, the model, optimisation and the loop."""

    steps: int = 3000
    """optimisation steps in total (also the cosine horizon); max_time usually ends the run first"""
    max_time: float = 60.0
    """training-time budget in seconds, evaluation excluded (0 = none); stops at steps or max_time"""
    eval_every: int = 100
    """evaluate on the validation split (and checkpoint) every N steps, and at the end"""
    out: str = "runs/classify"
    """run directory: checkpoints (last/, best/), metrics, curves.png, report.json, confusion.png"""
    batch_size: int = 64
    """sequences per training batch"""
    threads: int = 1
    """torch intra-op threads while the command runs (0 = torch's default; small models run fastest on one)"""
    data: ClassifyDataConfig = field(default_factory=ClassifyDataConfig)
    model: ClassifyModelConfig = field(default_factory=ClassifyModelConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


PRESETS: dict[str, dict[str, Any]] = {
    # the variable-length variant: columns with blank leading/trailing columns dropped (2-8 steps)
    "variable": {"data": {"read": "columns", "trim": True}},
    # pixel by pixel: 64 steps of one value, the long-sequence version
    "pixels": {"data": {"read": "pixels"}, "model": {"cell": "lstm"}, "max_time": 120.0},
    # a few seconds (examples, smoke tests)
    "quick": {"model": {"hidden_size": 32}, "max_time": 10.0, "eval_every": 50},
}


def run_classify(
    cfg: ClassifyRunConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = False
) -> dict[str, Any]:
    """Train, reload the best checkpoint (by validation loss), score it on the test split; returns the report."""
    return run(cfg, _setup, _report, resume=resume, overwrite=overwrite, progress=progress)


def _setup(cfg: ClassifyRunConfig, device: str, dtype: Any) -> Setup:
    from rnnkit.tasks.classify import ClassifyTask

    task = ClassifyTask.from_config(cfg.data, batch_size=cfg.batch_size, dtype=dtype)
    model = task.build_model(cfg.model).to(device)
    model.config = cfg.model  # recorded in the checkpoint signature: a resume with another model is refused
    L = task.data.lengths
    describe = (f"digits read by {cfg.data.read}{' (trimmed)' if cfg.data.trim else ''}: {len(L)} sequences of "
                f"{L.min()}-{L.max()} steps x {task.data.x.shape[2]} features (mean length {L.mean():.2f}), "
                f"{len(task.data.classes)} classes; split {'/'.join(str(len(v)) for v in task.split.values())}; "
                f"{model.rnn.describe_cell()}{' bidirectional' if cfg.model.bidirectional else ''}, readout "
                f"{cfg.model.readout}, {sum(p.numel() for p in model.parameters()):,} parameters")  # fmt: skip
    return Setup(model, task, describe)


def _report(cfg: ClassifyRunConfig, s: Setup, best: Any, result: Any) -> dict[str, Any]:
    import numpy as np

    task = s.task
    report = task.report(s.model)
    cm = report["confusion"]
    summary = {
        "accuracy": report["accuracy"], "test_size": report["test_size"], "baselines": report["baselines"],
        "per_class_recall": (np.diag(cm) / np.maximum(cm.sum(1), 1)).round(4).tolist(),
        "confusion": cm.tolist(), "classes": task.data.classes, "lengths": np.bincount(task.data.lengths).tolist(),
        "best_step": best.step, "best_val": result.best, "steps": result.step,
        "train_time": round(result.train_time, 1), "config": to_dict(cfg),
    }  # fmt: skip
    out = Path(cfg.out)
    write_json(out / "report.json", summary)
    plot_confusion(cm, task.data.classes, report["accuracy"], out / "confusion.png")
    return summary


def plot_confusion(cm: Any, classes: list[str], accuracy: float, path: Path) -> None:
    """Confusion matrix as a PNG: rows true class, columns predicted, counts in the cells."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 4.2))
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")  # fmt: skip
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"test accuracy {accuracy:.3f}")
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    def show(cfg: ClassifyRunConfig, s: dict[str, Any]) -> None:
        import numpy as np

        from rnnkit.tasks.classify import format_confusion

        print(format_confusion(np.asarray(s["confusion"]), s["classes"]))
        base = " | ".join(f"{k} {v:.3f}" for k, v in s["baselines"].items())
        print(f"test accuracy {s['accuracy']:.4f} on {s['test_size']} held-out sequences (best checkpoint of step "
              f"{s['best_step']}, {s['train_time']}s training) | baselines: {base}")  # fmt: skip
        print(f"report: {cfg.out}/report.json | plot: {cfg.out}/confusion.png")

    return runner.main("rnnkit classify", ClassifyRunConfig, argv, run_classify, show, presets=PRESETS,
                       description="Classify sequences (scikit-learn's 8x8 digits read as glimpses) with an RNN; "
                       "every setting is a flag.")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
