"""``rnnkit caption train|eval``: spell the name of an 8×8 digit image, character by character (one→many).

    rnnkit caption train --out runs/caption                  # train, then test exact-match vs baselines
    rnnkit caption eval --checkpoint runs/caption --show 8   # scores, and 8 test images with their captions

Data: scikit-learn's ``load_digits`` (offline, 1,797 images). The report puts the captioner's exact-match
accuracy beside chance, the majority digit and a logistic-regression classifier on the same pixels.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from typing import Any

from rnnkit import runner
from rnnkit.atomic import write_json
from rnnkit.commands.common import dispatch
from rnnkit.config import from_dict, parse_config
from rnnkit.runner import RunConfig, Setup, run
from rnnkit.tasks.caption import CaptionData, CaptionModel

log = logging.getLogger("rnnkit.caption")


@dataclass
class CaptionTrainConfig(RunConfig):
    """Everything ``rnnkit caption train`` needs."""

    steps: int = 1500
    "optimisation steps in total"
    eval_every: int = 250
    "evaluate (validation loss, exact match) and checkpoint every N steps, and at the end"
    log_every: int = 50
    "log the training loss every N steps"
    out: str = "runs/caption"
    "run directory: checkpoints (last/, best/), metrics, curves.png, test.json"
    data: CaptionData = field(default_factory=CaptionData)
    model: CaptionModel = field(default_factory=CaptionModel)


def ascii_digit(image: Any) -> list[str]:
    """An 8×8 image in [0, 1] as 8 lines of shade characters."""
    shades = " .:-=+*#%@"
    return ["".join(shades[min(9, int(float(v) * 9.999))] * 2 for v in row) for row in image.view(8, 8)]


def test_report(model: Any, task: Any, show: int = 0) -> dict[str, Any]:
    """Test exact-match accuracy beside the baselines, and the first ``show`` test captions."""
    from rnnkit.tasks.caption import NAMES

    scores = task.evaluate(model, "test")
    x, y = task.splits["test"]
    p = next(model.parameters())
    x = x.to(p.device, p.dtype)
    captions = model.greedy(x[:show]) if show else []
    every = model.greedy(x)
    wrong = [(c, NAMES[int(d)]) for c, d in zip(every, y) if c != NAMES[int(d)]]
    return {"split": "test", "images": len(y), "loss": scores["loss"], "exact_match": scores["exact_match"],
            "baselines": task.baselines(), "mistakes": wrong[:10],
            "real_names": sum(c in NAMES for c in every) / len(every),
            "shown": [{"caption": c, "truth": NAMES[int(d)]} for c, d in zip(captions, y[:show])]}  # fmt: skip


def print_report(r: dict[str, Any], task: Any = None) -> None:
    b = r["baselines"]
    print(f"test ({r['images']} images): exact match {100 * r['exact_match']:.1f}% | baselines: chance "
          f"{100 * b['chance']:.0f}%, majority digit {100 * b['majority']:.1f}%, logistic regression (a classifier, "
          f"no spelling) {100 * b['logistic_regression']:.1f}% | {100 * r['real_names']:.1f}% of captions are "
          "real digit names")  # fmt: skip
    if r["mistakes"]:
        print("some mistakes (caption vs truth): " + ", ".join(f"{c!r} vs {t!r}" for c, t in r["mistakes"]))
    if r["shown"] and task is not None:
        x = task.splits["test"][0]
        for i, s in enumerate(r["shown"]):
            print("\n".join(ascii_digit(x[i])) + f"\n  -> {s['caption']!r} (truth {s['truth']!r})")


def train_captioner(cfg: CaptionTrainConfig, *, resume: bool = False, overwrite: bool = False,
                    progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """Train, then score the best checkpoint on the test images; writes ``out/test.json``."""
    return run(cfg, _setup, _report, resume=resume, overwrite=overwrite, progress=progress)


def _setup(cfg: CaptionTrainConfig, device: str, dtype: Any) -> Setup:
    from rnnkit.tasks.caption import Captioner, CaptionTask

    task = CaptionTask(cfg.data)
    model = Captioner(cfg=cfg.model).to(device, dtype)
    describe = f"captioner: {cfg.model.cell.upper()}, {sum(p.numel() for p in model.parameters()):,} parameters"
    return Setup(model, task, describe)


def _report(cfg: CaptionTrainConfig, s: Setup, best: Any, result: Any) -> dict[str, Any]:
    from pathlib import Path

    report = {"steps": result.step, "train_time": result.train_time, "best_step": best.step,
              **test_report(s.model, s.task)}  # fmt: skip
    write_json(Path(cfg.out) / "test.json", report, indent=1)
    return report


def _train(argv: list[str]) -> int:
    def show(cfg: CaptionTrainConfig, r: dict[str, Any]) -> None:
        print(f"{r['steps']} steps, {r['train_time']:.0f}s of training, best step {r['best_step']} | {cfg.out}")
        print_report(r)

    return runner.main("rnnkit caption train", CaptionTrainConfig, argv, train_captioner, show,
                       description="Train a digit image -> spelled name captioner.")  # fmt: skip


@dataclass
class EvalCommand:
    checkpoint: str = "runs/caption"
    "a run directory of rnnkit caption train, or a checkpoint folder"
    which: str = "best"
    "in a run directory: best (by validation loss) or last"
    show: int = 0
    "also draw the first N test images with their captions"

    def __post_init__(self) -> None:
        if self.which not in ("best", "last") or self.show < 0:
            raise ValueError("which must be best or last, show >= 0")


def _eval(argv: list[str]) -> int:
    def extra(p: Any) -> None:
        p.add_argument("--json", action="store_true", help="print the scores as one JSON object")

    cfg, ns = parse_config(EvalCommand, argv, prog="rnnkit caption eval", extra=extra,
                           description="Exact-match accuracy of a captioner on its test images.")  # fmt: skip
    try:
        from rnnkit import checkpoint as ckpt
        from rnnkit.tasks.caption import Captioner, CaptionTask

        saved = ckpt.load_checkpoint(cfg.checkpoint, prefer=cfg.which)
        if saved.state.get("task", {}).get("name") != "caption":
            raise ValueError(f"{saved.path} is not a captioning checkpoint")
        run = from_dict(CaptionTrainConfig, saved.state["config"])
        model = Captioner(cfg=run.model)
        ckpt.load_model_weights(model, saved)
        model.eval()
        task = CaptionTask(run.data)
        r = test_report(model, task, cfg.show)
    except (ValueError, TypeError, OSError) as e:
        print(f"rnnkit caption: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(r)) if ns.json else print_report(r, task)
    return 0


SUBCOMMANDS = {"train": _train, "eval": _eval}


def main(argv: list[str] | None = None) -> int:
    return dispatch("rnnkit caption", __doc__, SUBCOMMANDS, argv)
