"""Child process for test_kill_resume: trains the toy language model with ``resume=True`` (which starts a run
that has no checkpoint yet) and SIGKILLs itself at the point named on the command line.

    python _kill_worker.py OUT POINT

POINT is ``none`` or one of (S: the run's step, counted across resumes)

* ``loss:S`` — in training step S;
* ``checkpoint:S:NAME`` — as the checkpoint NAME (best, last) of step S starts to be written;
* ``save_file:S`` — after the first tensor file of step S's first checkpoint: a folder half written;
* ``swap:S`` — between the two renames that swap in step S's first checkpoint;
* ``replace:FILE:N`` — as the Nth atomic rename onto FILE (metrics.csv, curves.png) of this process starts.
"""

import json
import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import rnnkit.atomic  # noqa: E402
import rnnkit.checkpoint as ck  # noqa: E402
from _toy import ToyTask  # noqa: E402
from rnnkit.models import LanguageModel  # noqa: E402
from rnnkit.train import OptimConfig, TrainConfig, train  # noqa: E402


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str, start: int) -> None:
    kind, *rest = point.split(":")
    writing = {"step": -1, "name": ""}  # the checkpoint being written
    real_ckpt, real_save, real_replace, real_loss = ck.save_checkpoint, ck.save_file, os.replace, ToyTask.loss
    done = set()

    def once(key: object) -> bool:
        if key in done:
            return False
        done.add(key)
        return True

    def save_checkpoint(path, model, state, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        writing.update(step=state["step"], name=Path(path).name)
        if kind == "checkpoint" and (state["step"], writing["name"]) == (int(rest[0]), rest[1]):
            die()
        return real_ckpt(path, model, state, *a, **k)

    def save_file(*a, **k):  # noqa: ANN002, ANN003, ANN202
        real_save(*a, **k)
        if kind == "save_file" and writing["step"] == int(rest[0]) and once("save_file"):
            die()

    def replace(src, dst, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        src, dst = Path(src), Path(dst)
        if kind == "swap" and writing["step"] == int(rest[0]) and src.name.startswith(".tmp-"):
            if any(dst.parent.glob(f".old-{dst.name}-*")) and once("swap"):  # the old folder is already aside
                die()
        if kind == "replace" and dst.name == rest[0]:
            done.add(len(done))
            if len(done) == int(rest[1]):
                die()
        return real_replace(src, dst, *a, **k)

    def loss(self, *a):  # noqa: ANN001, ANN202
        if kind == "loss" and start + self.calls + 1 == int(rest[0]):
            die()
        return real_loss(self, *a)

    if kind not in ("none", "loss", "checkpoint", "save_file", "swap", "replace"):
        raise SystemExit(f"unknown kill point {point!r}")
    ck.save_checkpoint, ck.save_file, ToyTask.loss = save_checkpoint, save_file, loss
    rnnkit.atomic.os.replace = replace  # this child's own os module: nothing outlives the process


if __name__ == "__main__":
    out, point = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    last = Path(out) / "last" / "state.json"
    arm(point, json.loads(last.read_text())["step"] if last.is_file() else 0)
    torch.manual_seed(0)
    model = LanguageModel(6, "lstm", 16, 2, 0.3, "embedding", 8)
    opt = OptimConfig(lr=5e-3, warmup=3, schedule="cosine", min_lr=1e-4, weight_decay=0.1)
    cfg = TrainConfig(steps=24, eval_every=4, log_every=2, plot=True, optim=opt)
    result = train(model, ToyTask(), cfg, out_dir=out, resume=True)
    print(f"finished step {result.step} new {result.new_steps}")
