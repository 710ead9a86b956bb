"""Data parallelism: 2 processes under torchrun (gloo, CPU) follow one process with the same global batch."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from _ddp_worker import setup
from rnnkit import checkpoint as ckpt
from rnnkit.train import train

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_losses(out: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if r["split"] in ("train", "val")]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    model, task, cfg = setup()
    train(model, task, cfg, out_dir=tmp_path / "one")

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(HERE)]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(HERE / "_ddp_worker.py"),
           str(tmp_path / "two")]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]

    one, two = train_losses(tmp_path / "one"), train_losses(tmp_path / "two")
    assert len(one) == len(two) == 8 + 2
    for (s1, l1), (s2, l2) in zip(one, two):
        assert s1 == s2 and abs(l1 - l2) < 1e-10, (s1, l1, l2)
    a, b = ckpt.load_checkpoint(tmp_path / "one", "last"), ckpt.load_checkpoint(tmp_path / "two", "last")
    assert b.state["world_size"] == 2
    for name, t in a.model_tensors.items():
        torch.testing.assert_close(b.model_tensors[name], t, rtol=0, atol=1e-10)
