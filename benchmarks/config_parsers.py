"""rnnkit.config against jsonargparse and tyro on ``rnnkit train``'s configuration: start-up time and what a user
sees on a mistake. Needs ``pip install jsonargparse tyro`` (neither is an rnnkit dependency); a missing one is
skipped. Every timing is a fresh interpreter (``python -c``), the median of ``--repeats`` runs, interleaved.

    python benchmarks/config_parsers.py --repeats 9 > config_parsers.txt
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")

# Each parser builds rnnkit train's LMTrainConfig (nested dataclasses, Literal choices, tuples, attribute
# docstrings) from ARGV and prints one field. What every command imports anyway (torch, the config classes)
# is imported before the clock starts: the time printed is the parser's own (its import, construction, parse).
PRELUDE = "import sys, time\nimport torch\nfrom rnnkit.commands.train import LMTrainConfig\nt0 = time.perf_counter()\n"
PARSERS = {
    "rnnkit.config": (
        "from rnnkit.config import parse_config\n"
        "cfg, _ = parse_config(LMTrainConfig, ARGV, prog='rnnkit train')\nprint(cfg.model.hidden_size)"
    ),
    "jsonargparse": (
        "from jsonargparse import ArgumentParser\n"
        "p = ArgumentParser(prog='rnnkit train')\np.add_class_arguments(LMTrainConfig, 'cfg')\n"
        "ns = p.parse_args(ARGV_J)\nprint(p.instantiate_classes(ns).cfg.model.hidden_size)"
    ),
    "tyro": (
        "import tyro\ncfg = tyro.cli(LMTrainConfig, args=ARGV_T, prog='rnnkit train')\nprint(cfg.model.hidden_size)"
    ),
}
CLOCK = "\nprint(f'{time.perf_counter() - t0:.4f}')"
# the same settings in each parser's syntax (jsonargparse nests under "cfg."; tyro spells fields with dashes)
GOOD = {
    "rnnkit.config": ["--model.hidden_size", "64", "--optim.betas", "0.9,0.99", "--max-time", "10"],
    "jsonargparse": ["--cfg.model.hidden_size", "64", "--cfg.optim.betas", "[0.9,0.99]", "--cfg.max_time", "10"],
    "tyro": ["--model.hidden-size", "64", "--optim.betas", "0.9", "0.99", "--max-time", "10"],
}
MISTAKES = {
    "not a number": {"rnnkit.config": ["--model.hidden_size", "big"], "jsonargparse":
                     ["--cfg.model.hidden_size", "big"], "tyro": ["--model.hidden-size", "big"]},
    "bad choice": {"rnnkit.config": ["--model.cell", "transformer"], "jsonargparse": ["--cfg.model.cell",
                   "transformer"], "tyro": ["--model.cell", "transformer"]},
    "typo in a flag": {"rnnkit.config": ["--model.hiden_size", "64"], "jsonargparse": ["--cfg.model.hiden_size",
                       "64"], "tyro": ["--model.hiden-size", "64"]},
    "fails validation": {"rnnkit.config": ["--optim.lr", "-1"], "jsonargparse": ["--cfg.optim.lr", "-1"],
                         "tyro": ["--optim.lr", "-1"]},
}  # fmt: skip


def script(name: str, argv: list[str]) -> str:
    return f"ARGV = ARGV_J = ARGV_T = {argv!r}\n" + PRELUDE + PARSERS[name] + CLOCK


def run(name: str, argv: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    """(the parser's own seconds, the process); the seconds are nan when it failed."""
    env = {**os.environ, "PYTHONPATH": SRC, "COLUMNS": "120"}
    p = subprocess.run([sys.executable, "-c", script(name, argv)], capture_output=True, text=True, env=env)
    return (float(p.stdout.split()[-1]) if p.returncode == 0 else float("nan")), p


def available(name: str) -> bool:
    return name == "rnnkit.config" or run(name, GOOD[name])[1].returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    names = [n for n in PARSERS if available(n)]
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.repeats):  # interleaved, so machine load hits every parser alike
        for n in names:
            dt, p = run(n, GOOD[n])
            assert p.returncode == 0 and p.stdout.split()[0] == "64", (n, p.stderr[-2000:])
            times[n].append(dt)
    print(
        f"# the parser's own start-up (import + build + parse rnnkit train's flags), median and range of "
        f"{args.repeats} fresh interpreters"
    )
    for n, ts in times.items():
        print(f"{n:15s} {1000 * statistics.median(ts):6.0f} ms  ({1000 * min(ts):.0f}-{1000 * max(ts):.0f})")
    code = PRELUDE + "from rnnkit.config import _walk\n_walk(LMTrainConfig, docs=True)" + CLOCK
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": SRC}
    )
    print(f"(rnnkit.config reads the field docstrings only for --help: {1000 * float(p.stdout):.0f} ms more)")
    for what, argvs in MISTAKES.items():
        print(f"\n# mistake: {what}")
        for n in names:
            _, p = run(n, argvs[n])
            err = p.stderr.strip().splitlines()
            print(f"## {n}: exit {p.returncode}, {len(err)} line(s) on stderr; last lines:")
            print("\n".join("    " + line for line in err[-4:]))


if __name__ == "__main__":
    main()
