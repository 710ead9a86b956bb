"""Run under ``torchrun --nproc_per_node 2``: the toy task with the loop's data parallelism (see test_ddp.py)."""

import sys

import torch

from _toy import ToyTask
from rnnkit.models import LanguageModel
from rnnkit.train import OptimConfig, TrainConfig, train


def setup():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = LanguageModel(6, "lstm", 12, 2, 0.0, "embedding", 8, dtype=torch.float64)
    cfg = TrainConfig(steps=8, eval_every=4, log_every=1, plot=False, optim=OptimConfig(lr=1e-2, warmup=2))
    return model, ToyTask(batch_size=4), cfg


if __name__ == "__main__":
    model, task, cfg = setup()
    train(model, task, cfg, out_dir=sys.argv[1])
    torch.distributed.destroy_process_group()
