"""``rnnkit train``: train a character- or word-level language model; the same function from Python.

    rnnkit train                                   # quick start: embedded stdlib corpus, recommended preset
    rnnkit train --data timemachine --lm.normalize d2l --preset d2l --max-time 180 --out runs/d2l
    rnnkit train --data my.txt --model.cell gru --model.hidden_size 512 --out runs/mine
    rnnkit train --out runs/d2l --resume            # continue exactly where it stopped

In Python: ``train_language_model(LMTrainConfig(data="timemachine", max_time=60, out="runs/x"))``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from dataclasses import dataclass, field
from typing import Any

from rnnkit import runner
from rnnkit.commands.generate import SampleConfig
from rnnkit.models import ModelConfig
from rnnkit.runner import RunConfig, Setup, run
from rnnkit.tasks.lm import LMConfig

log = logging.getLogger("rnnkit.train")


@dataclass
class LMTrainConfig(RunConfig):
    """Everything ``rnnkit train`` needs: data, model, optimisation, the loop, the closing sample."""

    steps: int = 1_000_000
    """optimisation steps in total (also the cosine horizon); max_time usually ends the run first"""
    max_time: float = 150.0
    """training-time budget in seconds, evaluation excluded (0 = none); stops at steps or max_time"""
    epochs: float = 0.0
    """stop after this many passes over the training split (0 = no limit): caps steps, so the cosine
    schedule anneals by then on a corpus too small for the time budget (where more steps only overfit)"""
    eval_every: int = 250
    """evaluate on the validation split (and checkpoint) every N steps, and at the end"""
    data: str = "stdlib"
    """corpus: stdlib (embedded Python source), timemachine, tinyshakespeare, fra-eng, or a UTF-8 text file"""
    out: str = "runs/lm"
    """run directory: checkpoints (last/, best/), metrics.jsonl/.csv, curves.png"""
    lm: LMConfig = field(default_factory=LMConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0 (0 = no limit), got {self.epochs}")


#: named starting points; flags and --config override them
PRESETS: dict[str, dict[str, Any]] = {
    # d2l's LSTM chapter exactly: one-hot input, 1×256 LSTM, random sampling, batch 32 × 35 steps, SGD lr 1, clip 1
    "d2l": {
        "lm": {"normalize": "d2l", "batch_size": 32, "num_steps": 35, "sampling": "random"},
        "model": {
            "cell": "lstm",
            "hidden_size": 256,
            "num_layers": 1,
            "dropout": 0.0,
            "input": "onehot",
            "embed_size": 0,
            "tie_weights": False,
        },
        "optim": {
            "name": "sgd",
            "lr": 1.0,
            "momentum": 0.0,
            "weight_decay": 0.0,
            "warmup": 0,
            "schedule": "constant",
            "min_lr": 0.0,
            "clip_norm": 1.0,
            "clip_value": 0.0,
        },
    },  # fmt: skip
    # tuned for quality per second on a 2-core CPU (docs/results.md has the search): a 2×256 GRU, which the
    # fused engine trains ~3× faster than torch.nn.GRU; a small embedding (the input projection is part of
    # every step's work); random 64-token batches; a high AdamW rate; no dropout, because on the corpora
    # that the budget does not exhaust it only slows learning; and a 10-epoch cap that anneals the rate
    # early on corpora the budget would overfit (the Time Machine: 10 epochs ≈ 26 s here).
    "recommended": {
        "epochs": 10,
        "lm": {"batch_size": 32, "num_steps": 64, "sampling": "random"},
        "model": {
            "cell": "gru",
            "hidden_size": 256,
            "num_layers": 2,
            "dropout": 0.0,
            "input": "embedding",
            "embed_size": 64,
            "tie_weights": False,
        },
        "optim": {
            "name": "adamw",
            "lr": 6e-3,
            "betas": (0.9, 0.99),
            "weight_decay": 0.1,
            "warmup": 20,
            "schedule": "cosine",
            "min_lr": 1e-4,
            "clip_norm": 1.0,
            "clip_value": 0.0,
        },
    },  # fmt: skip
}
# The recommended preset with zoneout 0.1 on h (Krueger et al. 2017; inside the fused GRU kernels), for runs
# long enough to overfit (the Time Machine past ~10 epochs), and no epoch cap: the cosine schedule spans the
# whole time budget, which zoneout lets the model use. Chosen by the ablation in docs/results.md (2026-12-02,
# 2 cores): of each regulariser alone, zoneout 0.1 helped the Time Machine most (test ppl 3.69 after 3,000
# steps, against 3.99 without and 3.74 with DropConnect 0.3), and in 180 s this preset reaches 3.69-3.70
# against the recommended preset's 3.76 — with DropConnect 0.3 added, 3.74 in the same minutes. On
# tiny-shakespeare, which the 2 × 256 GRU does not overfit within 3,000 steps, zoneout cost 0.06 nats there.
PRESETS["regularised"] = {
    **PRESETS["recommended"],
    "epochs": 0,
    "model": {**PRESETS["recommended"]["model"], "zoneout": 0.1},
}


def train_language_model(
    cfg: LMTrainConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = False
) -> dict[str, Any]:
    """Train, then score the best checkpoint on the held-out split and sample from it; returns the summary."""
    return run(cfg, _setup, _report, resume=resume, overwrite=overwrite, progress=progress)


def _setup(cfg: LMTrainConfig, device: str, dtype: Any) -> Setup:
    from rnnkit.tasks.lm import LanguageModelTask

    # On resume the vocabulary is rebuilt from the corpus: train() refuses if it differs from the saved one.
    task = LanguageModelTask(cfg.data, cfg.lm)
    model = cfg.model.build(len(task.vocab), device=device, dtype=dtype)
    describe = (f"{task.corpus.name}: {sum(len(task.split(s)) for s in ('train', 'val', 'test')):,} tokens (train "
                f"{len(task.train_ids):,}, val {len(task.val_ids):,}, test {len(task.test_ids):,}), vocabulary "
                f"{len(task.vocab)}; model {model.rnn.describe_cell()}, {sum(p.numel() for p in model.parameters()):,} "
                "parameters")  # fmt: skip
    loop = None
    if cfg.epochs:  # the step budget of `epochs` passes: each step reads batch_size × num_steps tokens
        per_epoch = len(task.train_ids) / (cfg.lm.batch_size * cfg.lm.num_steps)
        loop = dataclasses.replace(cfg, steps=min(cfg.steps, max(1, math.ceil(cfg.epochs * per_epoch))))
    return Setup(model, task, describe, loop)


def _report(cfg: LMTrainConfig, s: Setup, best: Any, result: Any) -> dict[str, Any]:
    """Held-out score of the best checkpoint (by validation loss), then a sample from it."""
    from rnnkit.commands.generate import sample_text

    task = s.task
    held_out = "test" if len(task.test_ids) > 1 else "val"
    summary = {"split": held_out, **task.score(s.model, held_out)}
    if cfg.sample.num_tokens:  # a few milliseconds: printed whole by the command, not streamed
        seed = cfg.seed if cfg.sample.seed is None else cfg.sample.seed  # the run's seed: a rerun samples alike
        summary["sample"] = sample_text(s.model, task.vocab, cfg.sample, task.prompt(), seed=seed)
    return summary


def format_scores(scores: dict[str, Any]) -> str:
    """``loss 1.482 | ppl 4.40 | bpc 2.138``."""
    bits = next(k for k in ("bpc", "bits_per_word") if k in scores)
    return f"loss {scores['loss']:.3f} | ppl {scores['ppl']:.2f} | {bits} {scores[bits]:.3f}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = ["--preset", "recommended", *argv]  # the default preset; a --preset flag given later wins

    def show(cfg: LMTrainConfig, summary: dict[str, Any]) -> None:
        if "sample" in summary:
            print(f"sample (best checkpoint, step {summary['best_step']}):\n{summary['sample']}")
        print(f"{summary['split']} ({summary['tokens']:,} tokens, best checkpoint of step {summary['best_step']}): "
              f"{format_scores(summary)} | trained {summary['train_time']:.0f}s at {summary['units_per_s']:,.0f} "
              f"tokens/s | {cfg.out}")  # fmt: skip

    return runner.main("rnnkit train", LMTrainConfig, argv, train_language_model, show, presets=PRESETS,
                       description="Train a language model with truncated BPTT; every setting is a flag.")  # fmt: skip
