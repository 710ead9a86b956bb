"""``rnnkit demo``: Hung-yi Lee's worked LSTM example, step by step, then a small training demo.

The worked example (Hung-yi Lee's lecture) is one LSTM unit with a linear cell input and output
(``activation="identity"``) and sigmoid gates driven by large weights, so each gate is ~0 or ~1:

* x1 is the value to store; x2 = +1 opens the input gate (write), x2 = -1 closes the forget gate (erase);
  x3 = 1 opens the output gate (read).
* i = σ(100·x2 − 10), f = σ(100·x2 + 10), o = σ(100·x3 − 10), g = x1, c' = f·c + i·g, y = o·c'.

Inputs [3,1,0], [4,1,0], [2,0,0], [1,0,1], [3,-1,0] give memory 3, 7, 7, 7, 0 and output 0, 0, 0, 7, 0.
"""

from __future__ import annotations

import argparse
import logging
import time

import torch

from rnnkit.cells import LSTMCell

log = logging.getLogger(__name__)

LEE_INPUTS = [[3, 1, 0], [4, 1, 0], [2, 0, 0], [1, 0, 1], [3, -1, 0]]
LEE_MEMORY = [3, 7, 7, 7, 0]
LEE_OUTPUT = [0, 0, 0, 7, 0]


def lee_cell() -> LSTMCell:
    """The lecture's LSTM unit as an rnnkit ``LSTMCell(3, 1, activation="identity")`` with its weights set."""
    cell = LSTMCell(3, 1, activation="identity", dtype=torch.float64)
    with torch.no_grad():
        cell.weight_hh.zero_()
        cell.bias_hh.zero_()
        #                 rows: i (input gate), f (forget gate), g (cell input), o (output gate)
        cell.weight_ih.copy_(torch.tensor([[0, 100, 0], [0, 100, 0], [1, 0, 0], [0, 0, 100]], dtype=torch.float64))
        cell.bias_ih.copy_(torch.tensor([-10, 10, 0, -10], dtype=torch.float64))
    return cell


def lee_table() -> list[dict[str, float]]:
    """Run the worked example; one row per step with the input, every gate, the memory and the output."""
    cell = lee_cell()
    state = cell.zero_state(1)
    rows = []
    with torch.no_grad():
        for x in LEE_INPUTS:
            state, g = cell.step(torch.tensor([x], dtype=torch.float64), state)
            h, c = state
            rows.append({"x": x, **{k: float(g[k]) for k in "ifgo"}, "c": float(c), "y": float(h)})
    return rows


def format_table(rows: list[dict[str, float]]) -> str:
    lines = ["step  x            i     f     g      o     memory c  output y"]
    for t, r in enumerate(rows, 1):
        x = "[" + ",".join(f"{v:2d}" for v in r["x"]) + "]"
        lines.append(
            f"{t:4d}  {x:11s}  {r['i']:.2f}  {r['f']:.2f}  {r['g']:5.2f}  {r['o']:.2f}  {r['c']:8.3f}  {r['y']:8.3f}"
        )
    return "\n".join(lines)


def train_demo(steps: int = 300, seed: int = 0) -> tuple[float, float, float]:
    """Teach a small rnnkit LSTM to output the running sum of its inputs; returns (first loss, last loss, seconds).

    A task a gated memory solves by adding, the point Hung-yi Lee's lecture makes: c_t = f·c + i·g with f≈1, i≈1.
    """
    from rnnkit.rnn import LSTM

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    lstm, head = LSTM(1, 16, batch_first=True), torch.nn.Linear(16, 1)
    opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=1e-2)
    first = last = float("nan")
    start = time.perf_counter()
    for step in range(steps):
        x = torch.rand(32, 20, 1, generator=gen) * 2 - 1  # (B, T, 1)
        y = x.cumsum(dim=1)  # the running sum, (B, T, 1)
        out, _ = lstm(x)
        loss = torch.nn.functional.mse_loss(head(out), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == 0:
            first = loss.item()
    last = loss.item()
    return first, last, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rnnkit demo", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps for the running-sum demo")
    args = parser.parse_args(argv)
    print("Hung-yi Lee's worked example: one LSTM unit, identity cell input/output, gates driven by large weights")
    rows = lee_table()
    print(format_table(rows))
    print(f"memory rounds to {[round(r['c']) for r in rows]} (lecture: {LEE_MEMORY})")
    print(f"output rounds to {[round(r['y']) for r in rows]} (lecture: {LEE_OUTPUT})")
    first, last, secs = train_demo(args.steps)
    print(f"\nTraining an rnnkit.LSTM(1, 16) to emit the running sum of 20 inputs: MSE {first:.3f} -> {last:.4f} "
          f"in {args.steps} steps ({secs:.1f} s)")  # fmt: skip
    return 0
