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

from rnnkit.atomic import write_json
from rnnkit.commands.common import add_run_flags, dispatch, run_guarded
from rnnkit.config import from_dict, parse_config, to_dict
from rnnkit.tasks.caption import CaptionData, CaptionModel
from rnnkit.train import TrainConfig

log = logging.getLogger("rnnkit.caption")


@dataclass
class CaptionTrainConfig(TrainConfig):
    """Everything ``rnnkit caption train`` needs."""

    steps: int = 1500
    "optimisation steps in total"
    eval_every: int = 250
    "evaluate (validation loss, exact match) and checkpoint every N steps, and at the end"
    log_every: int = 50
    "log the training loss every N steps"
    out: str = "runs/caption"
    "run directory: checkpoints (last/, best/), metrics, curves.png, test.json"
    threads: int = 0
    "torch intra-op threads (0 = torch's default)"
    data: CaptionData = field(default_factory=CaptionData)
    model: CaptionModel = field(default_factory=CaptionModel)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


def ascii_digit(image: Any) -> list[str]:
    """An 8×8 image in [0, 1] as 8 lines of shade characters."""
    shades = " .:-=+*#%@"
    return ["".join(shades[min(9, int(float(v) * 9.999))] * 2 for v in row) for row in image.view(8, 8)]


def test_report(model: Any, task: Any, show: int = 0) -> dict[str, Any]:
    """Test exact-match accuracy beside the baselines, and the first ``show`` test captions."""
    from rnnkit.tasks.caption import NAMES

    scores = task.evaluate(model, "test")
    x, y = task.splits["test"]
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
                    progress: bool = False) -> tuple[dict[str, Any], Any]:  # fmt: skip
    """Train, then score the best checkpoint on the test images; writes ``out/test.json``."""
    from pathlib import Path

    import torch

    from rnnkit import checkpoint as ckpt
    from rnnkit.tasks.caption import Captioner, CaptionTask
    from rnnkit.train import train

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    task = CaptionTask(cfg.data)
    torch.manual_seed(cfg.seed)
    model = Captioner(cfg=cfg.model)
    result = train(model, task, cfg, out_dir=cfg.out, resume=resume, overwrite=overwrite, progress=progress,
                   record=to_dict(cfg))  # fmt: skip
    best = ckpt.load_checkpoint(cfg.out, prefer="best")
    ckpt.load_model_weights(model, best)
    model.eval()
    report = {"steps": result.step, "train_time": result.train_time, "best_step": best.step,
              **test_report(model, task)}  # fmt: skip
    write_json(Path(cfg.out) / "test.json", report, indent=1)
    return report, task


def _train(argv: list[str]) -> int:
    cfg, ns = parse_config(CaptionTrainConfig, argv, prog="rnnkit caption train", extra=add_run_flags,
                           description="Train a digit image -> spelled name captioner.")  # fmt: skip
    result = run_guarded(
        "rnnkit caption",
        lambda: train_captioner(cfg, resume=ns.resume, overwrite=ns.overwrite, progress=True),
        on_interrupt=f"the last checkpoint is in {cfg.out}/last (--resume)",
    )
    if isinstance(result, int):
        return result
    r, _ = result
    print(f"{r['steps']} steps, {r['train_time']:.0f}s of training, best step {r['best_step']} | {cfg.out}")
    print_report(r)
    return 0


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
